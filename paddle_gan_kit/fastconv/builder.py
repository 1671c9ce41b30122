"""Building the oneDNN convolution operators once per (Paddle, oneDNN, machine) into the cache.

What the build needs: g++, the Paddle wheel's own ``paddle/libs/libdnnl.so.3`` (Paddle's CPU
wheels ship it) and oneDNN's headers of the same major.minor version from PyPI's
``onednn-devel`` package, installed without its runtime dependencies (which are 650 MB of Intel
GPU and compiler libraries the CPU build does not use)::

    pip install --no-deps onednn-devel==2025.0.1     # oneDNN 3.6 headers, 200 KB

The package's ``dnnl_config.h`` describes Intel's TBB/SYCL build; the one used here is derived
from it with the runtime the wheel's library reports (``dnnl_version()``: OpenMP, no GPU).
Everything that can go wrong raises ``BuildError`` with one line saying why; the caller falls
back to Paddle's own convolutions.
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import importlib.util
import os
import platform
import re
import subprocess
import sys
import warnings
from importlib import metadata

from safe_files import cache_dir, write_text_atomic

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "onednn_conv.cc")
HEADERS_PACKAGE = "onednn-devel"
HEADERS_ENV = "PADDLE_GAN_KIT_ONEDNN_INCLUDE"  # a folder holding oneapi/dnnl/dnnl.hpp, instead of the package
INSTALL_HINT = "pip install --no-deps onednn-devel==2025.0.1"
_RUNTIMES = {0: "DNNL_RUNTIME_NONE", 1: "DNNL_RUNTIME_SEQ", 2: "DNNL_RUNTIME_OMP", 4: "DNNL_RUNTIME_TBB",
             8: "DNNL_RUNTIME_THREADPOOL"}


class BuildError(Exception):
    """The fast convolutions cannot be built or loaded here; the message says why in one line."""


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_int), ("minor", ctypes.c_int), ("patch", ctypes.c_int),
                ("hash", ctypes.c_char_p), ("cpu_runtime", ctypes.c_uint), ("gpu_runtime", ctypes.c_uint)]


def paddle_libs() -> str:
    import paddle

    return os.path.join(os.path.dirname(paddle.__file__), "libs")


def library_version() -> _Version:
    """The oneDNN the Paddle wheel ships: version and runtimes, from its ``dnnl_version()``."""
    path = os.path.join(paddle_libs(), "libdnnl.so.3")
    if not os.path.isfile(path):
        raise BuildError(f"this Paddle wheel ships no oneDNN ({path} is missing)")
    try:
        lib = ctypes.CDLL(path)
        lib.dnnl_version.restype = ctypes.POINTER(_Version)
        return lib.dnnl_version().contents
    except (OSError, AttributeError) as exc:
        raise BuildError(f"cannot read the oneDNN version of {path} ({exc})") from None


def headers_dir() -> str:
    """The folder that holds ``oneapi/dnnl/dnnl.hpp``: $PADDLE_GAN_KIT_ONEDNN_INCLUDE or the
    installed onednn-devel package."""
    given = os.environ.get(HEADERS_ENV)
    if given:
        if not os.path.isfile(os.path.join(given, "oneapi", "dnnl", "dnnl.hpp")):
            raise BuildError(f"{HEADERS_ENV}={given} holds no oneapi/dnnl/dnnl.hpp")
        return given
    try:
        files = metadata.distribution(HEADERS_PACKAGE).files or []
    except metadata.PackageNotFoundError:
        raise BuildError(f"oneDNN's headers are not installed ({INSTALL_HINT})") from None
    for file in files:
        if str(file).replace("\\", "/").endswith("include/oneapi/dnnl/dnnl.hpp"):
            return os.path.dirname(os.path.dirname(os.path.dirname(str(file.locate()))))
    raise BuildError(f"the {HEADERS_PACKAGE} package holds no oneapi/dnnl/dnnl.hpp; reinstall it ({INSTALL_HINT})")


def headers_version(include: str) -> tuple[int, int, int]:
    text = open(os.path.join(include, "oneapi", "dnnl", "dnnl_version.h"), encoding="utf-8").read()
    found = [re.search(rf"#define DNNL_VERSION_{part}\s+(\d+)", text) for part in ("MAJOR", "MINOR", "PATCH")]
    if not all(found):
        raise BuildError(f"cannot read the oneDNN version of the headers in {include}")
    return tuple(int(m.group(1)) for m in found)


def config_header(include: str, version: _Version) -> str:
    """``dnnl_config.h`` of the headers with the runtimes of the wheel's library."""
    text = open(os.path.join(include, "oneapi", "dnnl", "dnnl_config.h"), encoding="utf-8").read()
    if version.cpu_runtime not in _RUNTIMES or version.gpu_runtime != 0:
        raise BuildError(f"the wheel's oneDNN has CPU runtime {version.cpu_runtime} and GPU runtime "
                         f"{version.gpu_runtime}; only CPU builds with OpenMP/TBB/sequential threading are supported")
    runtime = _RUNTIMES[version.cpu_runtime]
    changes = [(r"#define DNNL_CPU_THREADING_RUNTIME \w+", f"#define DNNL_CPU_THREADING_RUNTIME {runtime}"),
               (r"#define DNNL_CPU_RUNTIME \w+", f"#define DNNL_CPU_RUNTIME {runtime}"),
               (r"#define DNNL_GPU_RUNTIME \w+", "#define DNNL_GPU_RUNTIME DNNL_RUNTIME_NONE"),
               (r"#define DNNL_GPU_VENDOR \w+", "#define DNNL_GPU_VENDOR DNNL_VENDOR_NONE"),
               (r"#define DNNL_WITH_SYCL\b", "/* #undef DNNL_WITH_SYCL */")]
    for pattern, replacement in changes:
        text, count = re.subn(pattern, replacement, text)
        if count != 1 and "SYCL" not in pattern:
            raise BuildError(f"unexpected dnnl_config.h in {include} ({pattern!r} found {count} times)")
    return text


def machine_key() -> str:
    """What a built operator depends on: Paddle, Python, the machine, our source and how it links."""
    import paddle

    flags = ""
    with contextlib.suppress(OSError):
        cpuinfo = open("/proc/cpuinfo", encoding="utf-8").read()
        flags = next((line for line in cpuinfo.splitlines() if line.startswith("flags")), "")
    digest = hashlib.sha256()
    parts = (paddle.__version__, sys.version, platform.machine(), flags, _SETUP, openmp_link_flag(paddle_libs()),
             open(SOURCE, "rb").read().hex())
    for part in parts:
        digest.update(str(part).encode())
    return f"paddle{paddle.__version__}-{platform.machine()}-{digest.hexdigest()[:12]}"


@contextlib.contextmanager
def _exclusive(folder: str):
    """One builder at a time (several ranks of a launch start together)."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, ".lock"), "w") as handle:
        try:
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_EX)
        except ImportError:
            pass
        yield


_SETUP = """# written by paddle_gan_kit.fastconv.builder: builds the oneDNN convolution operators
from paddle.utils.cpp_extension import CppExtension, setup

setup(name={name!r}, ext_modules=CppExtension(
    sources=[{source!r}], include_dirs={includes!r}, extra_compile_args={{"cxx": ["-O2", "-fopenmp"]}},
    extra_link_args=[{openmp!r}, "-L{libs}", "-l:libdnnl.so.3", "-Wl,-rpath,{libs}"]))
"""


def openmp_link_flag(libs: str) -> str:
    """Link the operators' own OpenMP loops to the runtime the wheel's oneDNN and Paddle use
    (Intel's ``libiomp5``, which serves GCC's ``GOMP_*`` entry points), so that one pool of
    threads runs everything. With GCC's ``-fopenmp`` they got a second runtime, libgomp, whose
    idle threads spun beside oneDNN's on the same cores: a WGAN-GP-64 step took 6-16% longer.
    Wheels without ``libiomp5`` keep ``-fopenmp``."""
    return "-l:libiomp5.so" if os.path.isfile(os.path.join(libs, "libiomp5.so")) else "-fopenmp"


def build(progress=None):
    """Build (once per machine key) and import the operators; returns their module.
    ``progress``: a function given one line before a build, which takes about half a minute.

    The build is Paddle's own ``cpp_extension.setup`` run in a subprocess, installed into the
    cache; later processes import the installed module directly (a few milliseconds)."""
    version = library_version()
    include = headers_dir()
    have = headers_version(include)
    if have[:2] != (version.major, version.minor):
        raise BuildError(f"the onednn-devel headers are oneDNN {'.'.join(map(str, have))} but this Paddle ships "
                         f"oneDNN {version.major}.{version.minor}.{version.patch}; install the matching headers")
    folder = os.path.join(str(cache_dir()), "fastconv", machine_key())
    name = "pgk_fastconv_" + os.path.basename(folder).rsplit("-", 1)[-1]
    module_init = os.path.join(folder, "lib", name, "__init__.py")
    with _exclusive(folder):
        if not os.path.isfile(module_init):
            if progress is not None:
                progress(f"building the oneDNN convolutions once for this machine into {folder} (about 30 s)")
            overlay = os.path.join(folder, "include")
            os.makedirs(os.path.join(overlay, "oneapi", "dnnl"), exist_ok=True)
            write_text_atomic(os.path.join(overlay, "oneapi", "dnnl", "dnnl_config.h"),
                              config_header(include, version))
            setup_py = os.path.join(folder, "setup.py")
            libs = paddle_libs()
            write_text_atomic(setup_py, _SETUP.format(name=name, source=SOURCE, includes=[overlay, include],
                                                      libs=libs, openmp=openmp_link_flag(libs)))
            result = subprocess.run([sys.executable, setup_py, "install", "--install-lib", os.path.join(folder, "lib")],
                                    cwd=folder, capture_output=True, text=True)
            if result.returncode != 0 or not os.path.isfile(module_init):
                lines = [line for line in (result.stderr + result.stdout).splitlines() if "error" in line.lower()]
                detail = (lines[0] if lines else (result.stderr.strip().splitlines() or ["no output"])[-1])[:300]
                raise BuildError(f"the build failed ({detail}); see {folder}")
        return _import(name, module_init)


def _import(name: str, init: str):
    """Import the installed operator module from its file (the cache is not on sys.path)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[os.path.dirname(init)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            spec.loader.exec_module(module)
    except Exception as exc:  # a library that does not load here (another Paddle, a missing symbol)
        del sys.modules[name]
        raise BuildError(f"the built operators do not load ({' '.join(str(exc).split())[:200]})") from None
    return module
