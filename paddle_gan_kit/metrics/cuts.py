"""The cut judge: which of the built-in gems' ten cuts a picture shows, and how sure it is.

FD in ImageNet features ranks one kind of blurry stone against another and cannot see whether a
stone is a trillion or a marquise; a person sees that at 32 px. The judge is a small CNN trained
on fresh procedural gems whose cut the renderer knows (seeds the training set never uses), shown
at 32 px; larger pictures are shrunk to 32 px the way the gems are made (area averaging). It is
also taught what an unrecognisable picture is: pixel- and patch-shuffled stones, heavily blurred
stones and smooth noise have a uniform target (outlier exposure, Hendrycks et al. 2019), so its
confidence means "a person could name this cut".

What it measures (:func:`cut_scores`):

- ``cut_recognised``: the share of pictures whose most likely cut has probability >= 0.9
  (``THRESHOLD``), and the same for the real gems (``cut_recognised_real``) and their ratio;
- ``cuts_found``: how many of the ten cuts are among the recognised pictures at no less than a
  third of their share of the data (and each cut's share, ``cut_share_<cut>``);
- for a conditional generator, ``cut_agreement`` (the recognised cut is the requested one, over
  all pictures) and ``colour_spread`` (per cut, how many of the hue bins the data fill are filled
  at no less than a third of the data's share, over the number the data fill; averaged over the
  cuts: 1 when every cut comes in every colour the data give it);
- ``cut_fd``: the Fréchet distance in the judge's 128-d penultimate features (ImageNet-free).

The weights are shipped beside this file (``cut_judge.safetensors``, checked by sha256) and
rebuilt, bit for bit on the same machine, by ``python -m paddle_gan_kit.metrics.cuts --out FILE``.
The judge is never used in training: not as D, not in a loss, not to pick a snapshot.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time

import cv2
import numpy as np
import paddle
from paddle import nn

from data_prep import gems
from paddle_gan_kit.models.layers import Conv2D, ReLU
from .errors import MetricsError
from .frechet import feature_stats, frechet_distance_from_stats
from .resize import check_images

CUTS = gems.CUTS
INPUT_SIZE = 32
THRESHOLD = 0.9
FOUND_FRACTION = 1 / 3  # a cut (or a colour) is found when it has at least a third of its data share
HUE_BINS = 12
WEIGHTS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cut_judge.safetensors")
WEIGHTS_SHA256 = "0e0ea986179e1eb723bb53edd807a0d20fb7063ed65bc2683e476e25211d3cc4"
# Fresh gems: the built-in training set is seed 0; the judge trains on one seed and is checked on another.
TRAIN_SEED, HOLDOUT_SEED = 101, 102
RECIPE = dict(n32=32000, n64=8000, epochs=6, batch_size=128, lr=2e-3, negatives=0.25, seed=0)


class CutNet(nn.Layer):
    """(N, 3, 32, 32) float32 in [-1, 1] -> logits (N, 10); ``features`` gives the (N, 128)
    penultimate activations. Three stride-2 stages of two 3x3 convs each, global average pooling."""

    def __init__(self, n_classes: int = len(CUTS), widths=(32, 64, 128)):
        super().__init__()
        layers, cin = [], 3
        for width in widths:
            layers += [Conv2D(cin, width, 3, padding=1), nn.BatchNorm2D(width), ReLU(),
                       Conv2D(width, width, 3, stride=2, padding=1), nn.BatchNorm2D(width), ReLU()]
            cin = width
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, 128)
        self.head = nn.Linear(128, n_classes)

    def features(self, x):
        x = self.body(x).mean(axis=[2, 3])                     # (N, 128) global average
        return nn.functional.relu(self.fc(x))                  # (N, 128)

    def forward(self, x):
        return self.head(self.features(x))


def judge_input(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, 3) -> (N, 3, 32, 32) float32 in [-1, 1]; larger pictures are area-averaged
    down to 32 px, as the gems themselves are rendered, smaller ones enlarged bilinearly."""
    images = check_images(images)
    if images.shape[-1] != 3:
        raise MetricsError(f"the cut judge reads colour pictures (the built-in gems), got {images.shape[-1]} channel(s)")
    if images.shape[1:3] != (INPUT_SIZE, INPUT_SIZE):
        shrink = images.shape[1] > INPUT_SIZE
        images = np.stack([cv2.resize(im, (INPUT_SIZE, INPUT_SIZE),
                                      interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR) for im in images])
    return (images.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0)


def _weights_sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def read_net(net: CutNet, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``net``'s (probabilities (N, 10), features (N, 128)) float64 of uint8 (N, H, W, 3) pictures."""
    x = judge_input(images)
    probs, feats = [], []
    with paddle.no_grad():
        for s in range(0, len(x), 500):
            f = net.features(paddle.to_tensor(x[s:s + 500]))
            feats.append(f.numpy())
            probs.append(nn.functional.softmax(net.head(f), axis=1).numpy())
    return np.concatenate(probs).astype(np.float64), np.concatenate(feats).astype(np.float64)


class CutJudge:
    """The trained judge. ``judge(images)`` -> (N, 128) float64 features (a feature extractor, as
    the Evaluator's others); ``probabilities(images)`` -> (N, 10); ``predict`` -> (N,) cut index.
    ``weights``: a file written by :func:`train_judge` (default: the shipped one, checked by sha256)."""

    name = "cut_judge"
    dim = 128

    def __init__(self, weights: str | None = None):
        from safetensors.numpy import load_file

        path = weights or WEIGHTS_FILE
        if not os.path.isfile(path):
            raise MetricsError(f"the cut judge's weights {path} are missing; reinstall paddle_gan_kit, or rebuild them "
                               "with python -m paddle_gan_kit.metrics.cuts --out FILE and pass that file")
        sha = _weights_sha256(path)
        if weights is None and sha != WEIGHTS_SHA256:
            raise MetricsError(f"{path} has sha256 {sha[:16]}..., not the shipped judge's {WEIGHTS_SHA256[:16]}...; "
                               "reinstall paddle_gan_kit to restore it")
        try:
            state = load_file(path)
        except Exception as exc:  # safetensors raises its own error type for a damaged file
            raise MetricsError(f"{path} is not a safetensors file of the cut judge ({exc}); rebuild it with "
                               "python -m paddle_gan_kit.metrics.cuts --out FILE") from None
        self.net = CutNet()
        own = self.net.state_dict()
        wrong = [k for k in own if k not in state or tuple(state[k].shape) != tuple(own[k].shape)]
        if wrong:
            raise MetricsError(f"{path} does not fit the cut judge ({wrong[0]}); rebuild it with "
                               "python -m paddle_gan_kit.metrics.cuts --out FILE")
        self.net.set_state_dict({k: paddle.to_tensor(state[k]) for k in own})
        self.net.eval()
        meta_path = path[: -len(".safetensors")] + ".json"
        self.info = {"weights_sha256": sha}
        if os.path.isfile(meta_path):
            with open(meta_path) as f:
                self.info.update(json.load(f))

    def read(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (N, H, W, 3) -> (probabilities (N, 10) of the cuts in :data:`CUTS` order,
        penultimate features (N, 128)), float64, in one pass."""
        return read_net(self.net, images)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        return self.read(images)[0]

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self.probabilities(images).argmax(axis=1)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.read(images)[1]

    def describe_resize(self, image_shape) -> str:
        h, w = image_shape[1], image_shape[2]
        if (h, w) == (INPUT_SIZE, INPUT_SIZE):
            return f"none ({h}x{w} native)"
        return f"OpenCV {'INTER_AREA' if h > INPUT_SIZE else 'INTER_LINEAR'} {h}x{w}->{INPUT_SIZE}x{INPUT_SIZE}"


# ---- what the judge's answers say about a set of pictures --------------------------------------
def stone_hues(images: np.ndarray) -> np.ndarray:
    """(N,) int: the hue bin (of :data:`HUE_BINS`) of each picture's stone, or -1 for a colourless
    one. The stone is what is saturated in the middle of the picture: pixels of the central half
    are weighted by saturation squared times value (backgrounds are pale or dark)."""
    images = check_images(images)
    n, h, w, _ = images.shape
    centre = images[:, h // 4: h - h // 4, w // 4: w - w // 4].astype(np.float32) / 255.0
    flat = centre.reshape(-1, 3)
    mx, mn = flat.max(axis=1), flat.min(axis=1)
    sat = np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-6), 0.0)
    hsv = cv2.cvtColor(np.ascontiguousarray(centre.reshape(1, -1, 3)), cv2.COLOR_RGB2HSV)[0]
    bins = np.minimum((hsv[:, 0] / 360.0 * HUE_BINS).astype(np.int64), HUE_BINS - 1)
    weight = (sat ** 2 * mx).reshape(n, -1)
    hist = np.zeros((n, HUE_BINS))
    np.add.at(hist, (np.repeat(np.arange(n), weight.shape[1]), bins), weight.ravel())
    colourless = weight.mean(axis=1) < 0.02
    return np.where(colourless, -1, hist.argmax(axis=1))


def hue_histogram(hues: np.ndarray) -> np.ndarray:
    """Shares of the (HUE_BINS + 1) colours (the hue bins, then "colourless") among ``hues``."""
    counts = np.bincount(np.where(hues < 0, HUE_BINS, hues), minlength=HUE_BINS + 1).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def found(shares: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Which nonzero entries of ``reference`` ``shares`` fill at no less than a third."""
    return (reference > 0) & (shares >= FOUND_FRACTION * reference)


class RealCuts:
    """What the judge says of the real pictures, once: their recognised rate, the data's share of
    each cut (from the labels), each cut's colours and the judge features' statistics."""

    def __init__(self, judge: CutJudge, real_images: np.ndarray, real_labels: np.ndarray):
        probs, feats = judge.read(real_images)
        self.stats = feature_stats(feats)
        self.recognised = float((probs.max(axis=1) >= THRESHOLD).mean())
        labels = np.asarray(real_labels, np.int64)
        self.cut_share = np.bincount(labels, minlength=len(CUTS)) / len(labels)
        hues = stone_hues(real_images)
        self.colours = np.stack([hue_histogram(hues[labels == c]) for c in range(len(CUTS))])


def cut_scores(judge: CutJudge, real: RealCuts, fake: np.ndarray, fake_labels=None) -> dict:
    """The judge's numbers for generated pictures uint8 (N, H, W, 3) (see the module's doc);
    ``fake_labels``: the cuts a conditional generator was asked for."""
    probs, feats = judge.read(fake)
    recognised = probs.max(axis=1) >= THRESHOLD
    cut = probs.argmax(axis=1)
    share = np.bincount(cut[recognised], minlength=len(CUTS)) / len(fake)  # of all pictures
    # a cut's share among recognised pictures, against its share of the data
    among = share / max(recognised.mean(), 1e-12)
    out = {
        "cut_fd": float(frechet_distance_from_stats(*real.stats, *feature_stats(feats))),
        "cut_recognised": float(recognised.mean()),
        "cut_recognised_real": real.recognised,
        "cut_recognised_ratio": float(recognised.mean() / max(real.recognised, 1e-12)),
        "cuts_found": int(found(among, real.cut_share).sum()) if recognised.any() else 0,
        **{f"cut_share_{name}": float(among[i]) for i, name in enumerate(CUTS)},
    }
    if fake_labels is not None:
        fake_labels = np.asarray(fake_labels, np.int64)
        out["cut_agreement"] = float((recognised & (cut == fake_labels)).mean())
        hues = stone_hues(fake)
        spreads = []
        for c in range(len(CUTS)):
            mine = fake_labels == c
            if mine.sum() == 0:
                continue
            wanted = real.colours[c] >= 0.05  # the colours the data give this cut, each at 5% or more
            got = found(hue_histogram(hues[mine]), real.colours[c]) & wanted
            spreads.append(got.sum() / max(wanted.sum(), 1))
        out["colour_spread"] = float(np.mean(spreads))
    return out


# ---- training: the deterministic recipe behind the shipped weights ------------------------------
def fresh_gems(n32: int, n64: int, seed: int, start: int = 0):
    """``n32`` gems rendered at 32 px and ``n64`` at 64 px (shrunk to 32 as the judge reads them),
    of gem seed ``seed``, with their cuts: (uint8 (n, 32, 32, 3), int64 (n,))."""
    small = gems.render_gems(n32, 32, seed, start)
    large = gems.render_gems(n64, 64, seed, start + n32)
    large = np.stack([cv2.resize(im, (32, 32), interpolation=cv2.INTER_AREA) for im in large]) if n64 else small[:0]
    return np.concatenate([small, large]), gems.gem_cuts(n32 + n64, seed, start)


def unrecognisable(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pictures no one can name the cut of, made from stones: pixels shuffled, 8x8 patches
    shuffled, a strong blur (sigma 1.5-3 px at 32 px), or smooth colour noise; uint8 like ``images``."""
    out = np.empty_like(images)
    n, h, w, c = images.shape
    for i, im in enumerate(images):
        kind = rng.integers(4)
        if kind == 0:
            out[i] = im.reshape(-1, c)[rng.permutation(h * w)].reshape(h, w, c)
        elif kind == 1:
            p = h // 4
            tiles = im.reshape(4, p, 4, p, c).transpose(0, 2, 1, 3, 4).reshape(16, p, p, c)[rng.permutation(16)]
            out[i] = tiles.reshape(4, 4, p, p, c).transpose(0, 2, 1, 3, 4).reshape(h, w, c)
        elif kind == 2:
            out[i] = cv2.GaussianBlur(im, (0, 0), float(rng.uniform(1.5, 3.0)))
        else:
            noise = rng.uniform(0, 255, size=(4, 4, c)).astype(np.float32)
            out[i] = np.clip(cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)
    return out


def accuracy(judge_net: CutNet, images: np.ndarray, labels: np.ndarray) -> float:
    """Share of ``images`` whose most likely cut is their label."""
    judge_net.eval()
    return float((read_net(judge_net, images)[0].argmax(axis=1) == labels).mean())


def train_judge(out: str, recipe: dict | None = None, log=print) -> dict:
    """Train the judge by ``recipe`` (default :data:`RECIPE`) on fresh gems of ``TRAIN_SEED`` and
    write its weights to ``out`` (safetensors) and its held-out accuracy beside it (``.json``).
    Deterministic for a given machine: every draw is seeded."""
    from safetensors.numpy import save_file

    recipe = dict(RECIPE, **(recipe or {}))
    started = time.perf_counter()
    images, labels = fresh_gems(recipe["n32"], recipe["n64"], TRAIN_SEED)
    log(f"rendered {len(images)} training gems in {time.perf_counter() - started:.0f} s")
    rng = np.random.default_rng(recipe["seed"])
    paddle.seed(recipe["seed"])
    net = CutNet()
    steps_per_epoch = len(images) // recipe["batch_size"]
    schedule = paddle.optimizer.lr.OneCycleLR(max_learning_rate=recipe["lr"],
                                              total_steps=steps_per_epoch * recipe["epochs"])
    opt = paddle.optimizer.Adam(learning_rate=schedule, parameters=net.parameters())
    n_neg = int(round(recipe["batch_size"] * recipe["negatives"]))
    for epoch in range(recipe["epochs"]):
        net.train()
        order = rng.permutation(len(images))
        for b in range(steps_per_epoch):
            idx = order[b * recipe["batch_size"]:(b + 1) * recipe["batch_size"]]
            batch = images[idx]
            # the cut does not change under flips and quarter turns
            if rng.random() < 0.5:
                batch = batch[:, :, ::-1]
            batch = np.rot90(batch, int(rng.integers(4)), axes=(1, 2))
            negatives = unrecognisable(batch[:n_neg], rng)
            x = paddle.to_tensor(judge_input(np.ascontiguousarray(np.concatenate([batch, negatives]))))
            logits = net(x)
            logp = nn.functional.log_softmax(logits, axis=1)
            y = paddle.to_tensor(labels[idx])
            loss = nn.functional.nll_loss(logp[:len(idx)], y) - logp[len(idx):].mean()
            loss.backward()
            opt.step()
            opt.clear_grad()
            schedule.step()
        log(f"epoch {epoch + 1}/{recipe['epochs']}: loss {float(loss):.4f} ({time.perf_counter() - started:.0f} s)")
    held = {}
    for size in (32, 64):
        x = gems.render_gems(2000, size, HOLDOUT_SEED)
        held[f"holdout_accuracy_{size}px"] = accuracy(net, x, gems.gem_cuts(2000, HOLDOUT_SEED))
    state = {k: v.numpy() for k, v in net.state_dict().items()}
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    save_file(state, out)
    info = {"recipe": recipe, "train_seed": TRAIN_SEED, "holdout_seed": HOLDOUT_SEED, "n_holdout": 2000, **held,
            "paddle": paddle.__version__, "seconds": round(time.perf_counter() - started)}
    with open(out[: -len(".safetensors")] + ".json", "w") as f:
        json.dump(info, f, indent=1)
    return info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m paddle_gan_kit.metrics.cuts",
                                     description="Train the cut judge of the built-in gems and write its weights.")
    parser.add_argument("--out", required=True, help="the .safetensors file to write (its .json beside it)")
    args = parser.parse_args(argv)
    if not args.out.endswith(".safetensors"):
        print(f"error: --out must end in .safetensors, got {args.out}", file=sys.stderr)
        return 2
    from paddle_gan_kit import fastconv

    print(fastconv.configure("auto", "cpu"), file=sys.stderr)
    info = train_judge(args.out)
    print(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
