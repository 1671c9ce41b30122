"""Features from a small CNN trained on the real labelled data, for digits and Fashion-MNIST.

ImageNet Inception features say little about 28x28 grayscale digits, so for labelled data the
toolkit trains its own classifier once and uses its 128-d penultimate layer as the feature space
(the "domain-specific FID" of the MNIST GAN literature). The trained weights are cached under a
hash of the data and the training settings, so the same real set always gives the same
extractor. The classifier's predictions on generated images also measure mode coverage:
:func:`class_coverage`.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings

import numpy as np
import paddle
from paddle import nn

from safe_files import atomic_path, cache_dir as default_cache_dir, write_text_atomic
from .errors import MetricsError
from .resize import RESIZER, check_images, describe_resize, resize_images

# Bump when the network or the training recipe changes, so stale cache files are not reused.
_RECIPE_VERSION = "cnn16s2-32s2-128/adam2e-3/v1"
# Below this held-out accuracy the features are too poor to trust; we warn rather than refuse
# because a hard dataset may still give useful relative numbers.
_LOW_ACCURACY = 0.9


class DigitCNN(nn.Layer):
    """(N, C, S, S) float32 in [-1, 1], S divisible by 4 -> logits (N, n_classes); ``features``
    gives the (N, 128) penultimate activations.

    Strided convolutions rather than conv + max-pool: half the work for the same accuracy on
    digits.
    """

    def __init__(self, in_channels, n_classes, input_size):
        super().__init__()
        self.conv1 = nn.Conv2D(in_channels, 16, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2D(16, 32, 3, stride=2, padding=1)
        self.fc = nn.Linear(32 * (input_size // 4) ** 2, 128)
        self.head = nn.Linear(128, n_classes)

    def features(self, x):
        x = nn.functional.relu(self.conv1(x))                    # (N, 16, S/2, S/2)
        x = nn.functional.relu(self.conv2(x))                    # (N, 32, S/4, S/4)
        return nn.functional.relu(self.fc(paddle.flatten(x, 1)))  # (N, 128)

    def forward(self, x):
        return self.head(self.features(x))                       # (N, n_classes)


@contextlib.contextmanager
def _private_paddle_rng(seed):
    """Seed Paddle's global RNG for the block, then restore the caller's state: building and
    training the classifier during evaluation must not change what a training run samples next."""
    state = paddle.get_rng_state()
    try:
        paddle.seed(seed)
        yield
    finally:
        paddle.set_rng_state(state)


def _to_input(images, input_size):
    """uint8 (N, H, W, C) -> (N, C, S, S) float32 in [-1, 1]."""
    x = resize_images(images, input_size)
    return (x.transpose(0, 3, 1, 2) / 127.5 - 1.0).astype(np.float32)


class ClassifierFeatures:
    """Penultimate-layer features of a CNN trained on the real labelled images.

    ``images``: uint8 (N, H, W, C), C = 1 or 3; ``labels``: (N,) ints in [0, n_classes).
    ``input_size``: 28 or 32 (any multiple of 4). A fraction ``holdout`` is kept out of training
    to measure accuracy (``info["holdout_accuracy"]``). Training is seeded (``seed``) and runs
    ``epochs`` epochs of Adam; its weights are cached in ``cache_dir`` (default: env
    PADDLE_GAN_KIT_CACHE or ~/.cache/paddle_gan_kit) under a hash of data and settings.
    Calling the extractor maps uint8 (N, H, W, C) images to (N, 128) float64 features.
    """

    name = "classifier"
    dim = 128
    resizer = RESIZER

    def __init__(self, images, labels, input_size=28, n_classes=None, epochs=4, seed=0, holdout=0.2,
                 batch_size=64, cache_dir=None):
        images = check_images(images, "real images")
        labels = np.asarray(labels)
        if labels.shape != (images.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
            raise MetricsError(f"labels must be {images.shape[0]} integers (one per image), "
                               f"got shape {labels.shape} dtype {labels.dtype}")
        if int(input_size) % 4:
            raise MetricsError(f"input_size must be a multiple of 4 (28 or 32), got {input_size}")
        n_classes = int(n_classes if n_classes is not None else labels.max() + 1)
        if labels.min() < 0 or labels.max() >= n_classes:
            raise MetricsError(f"labels must lie in [0, {n_classes}), got [{labels.min()}, {labels.max()}]")
        if not 0.0 < holdout < 1.0:
            raise MetricsError(f"holdout must be a fraction in (0, 1), got {holdout}")
        self.input_size = int(input_size)
        self.n_classes = n_classes
        self.channels = images.shape[-1]
        self.batch_size = int(batch_size)
        with _private_paddle_rng(int(seed)):
            self.net = DigitCNN(self.channels, n_classes, self.input_size)

        settings = dict(recipe=_RECIPE_VERSION, input_size=self.input_size, n_classes=n_classes,
                        epochs=int(epochs), seed=int(seed), holdout=float(holdout), batch_size=self.batch_size)
        key = _data_key(images, labels.astype(np.int64), settings)
        cache_dir = str(cache_dir or default_cache_dir())
        weights_path = os.path.join(cache_dir, f"classifier-{key[:16]}.pdparams")
        info_path = weights_path[: -len(".pdparams")] + ".json"
        if os.path.isfile(weights_path) and os.path.isfile(info_path):
            self.net.set_state_dict(paddle.load(weights_path))
            with open(info_path) as f:
                self.info = json.load(f)
            self.info["from_cache"] = True
        else:
            accuracy, n_train, n_holdout = self._train(images, labels.astype(np.int64), settings)
            self.info = dict(settings, holdout_accuracy=accuracy, n_train=n_train, n_holdout=n_holdout,
                             data_sha256=key, weights=weights_path)
            os.makedirs(cache_dir, exist_ok=True)
            # the weights first, the info last: an entry counts as cached only when both exist
            with atomic_path(weights_path) as tmp:
                paddle.save(self.net.state_dict(), str(tmp))
            write_text_atomic(info_path, json.dumps(self.info, indent=1))
            self.info["from_cache"] = False
        self.net.eval()
        if self.info["holdout_accuracy"] < _LOW_ACCURACY:
            warnings.warn(f"classifier held-out accuracy is only {self.info['holdout_accuracy']:.3f}; "
                          "its features may not separate real from generated images well", stacklevel=2)

    def _train(self, images, labels, settings):
        """Seeded training on all but the hold-out; returns (hold-out accuracy, n_train, n_holdout)."""
        rng = np.random.default_rng(settings["seed"])
        order = rng.permutation(images.shape[0])
        n_holdout = max(1, int(round(settings["holdout"] * images.shape[0])))
        held, train = order[:n_holdout], order[n_holdout:]
        x_all = _to_input(images, self.input_size)

        with _private_paddle_rng(settings["seed"]):
            opt = paddle.optimizer.Adam(learning_rate=2e-3, parameters=self.net.parameters())
            self.net.train()
            for _ in range(settings["epochs"]):
                shuffled = train[rng.permutation(len(train))]
                for start in range(0, len(shuffled), self.batch_size):
                    batch = shuffled[start:start + self.batch_size]
                    logits = self.net(paddle.to_tensor(x_all[batch]))
                    loss = nn.functional.cross_entropy(logits, paddle.to_tensor(labels[batch]))
                    loss.backward()
                    opt.step()
                    opt.clear_grad()
        self.net.eval()
        predicted = self._predict_inputs(x_all[held])
        return float((predicted == labels[held]).mean()), int(len(train)), int(n_holdout)

    def _predict_inputs(self, x):
        with paddle.no_grad():
            return np.concatenate([self.net(paddle.to_tensor(x[s:s + 512])).argmax(axis=1).numpy()
                                   for s in range(0, len(x), 512)])

    def _check_channels(self, images):
        images = check_images(images)
        if images.shape[-1] != self.channels:
            raise MetricsError(f"the classifier was trained on {self.channels}-channel images, "
                               f"got {images.shape[-1]} channels")
        return images

    def describe_resize(self, image_shape):
        """One line naming the resize applied to images of ``image_shape`` (N, H, W, C)."""
        return describe_resize(image_shape, self.input_size)

    def predict(self, images):
        """Predicted class of each uint8 (N, H, W, C) image: (N,) int64."""
        images = self._check_channels(images)
        return np.concatenate([self._predict_inputs(_to_input(images[s:s + 512], self.input_size))
                               for s in range(0, len(images), 512)])

    def __call__(self, images):
        images = self._check_channels(images)
        feats = np.empty((images.shape[0], self.dim), np.float64)
        with paddle.no_grad():
            for s in range(0, len(images), 512):
                x = paddle.to_tensor(_to_input(images[s:s + 512], self.input_size))
                feats[s:s + len(x)] = self.net.features(x).numpy()
        return feats


def _data_key(images, labels, settings):
    """sha256 over the pixels, labels and training settings: the classifier cache key."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    digest.update(str(images.shape).encode())
    digest.update(np.ascontiguousarray(images).tobytes())
    digest.update(np.ascontiguousarray(labels).tobytes())
    return digest.hexdigest()


def class_coverage(labels_pred, n_classes):
    """How evenly generated samples cover the classes, from their predicted labels (N,) ints.

    Returns ``n_classes``, ``classes_present`` (classes predicted at least once), ``evenness``
    (entropy of the predicted-class histogram / log(n_classes): 1 = uniform, 0 = one class),
    ``max_share``/``min_share`` (largest and smallest class fraction, 0 when a class is missing),
    ``counts`` (the histogram) and ``n``.
    """
    labels_pred = np.asarray(labels_pred)
    n_classes = int(n_classes)
    if labels_pred.ndim != 1 or labels_pred.size == 0 or not np.issubdtype(labels_pred.dtype, np.integer):
        raise MetricsError(f"labels_pred must be a non-empty 1-D integer array, got shape {labels_pred.shape} "
                           f"dtype {labels_pred.dtype}")
    if n_classes < 1 or labels_pred.min() < 0 or labels_pred.max() >= n_classes:
        raise MetricsError(f"predicted labels must lie in [0, {n_classes}), "
                           f"got [{labels_pred.min()}, {labels_pred.max()}]")
    counts = np.bincount(labels_pred, minlength=n_classes)
    share = counts / counts.sum()
    nonzero = share[share > 0]
    entropy = float(-(nonzero * np.log(nonzero)).sum())
    return {
        "n": int(counts.sum()),
        "n_classes": n_classes,
        "classes_present": int((counts > 0).sum()),
        # One class is trivially "even"; log(1) = 0 would divide by zero.
        "evenness": float(entropy / np.log(n_classes)) if n_classes > 1 else 1.0,
        "max_share": float(share.max()),
        "min_share": float(share.min()),
        "counts": counts.tolist(),
    }
