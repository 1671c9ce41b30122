"""Every training setting in one dataclass: defaults, YAML files, ``--set key=value`` overrides.

``model`` names a preset (:data:`MODELS`): ``None`` in a preset field (loss, discriminator
norm, penalty weight, learning rates, betas, n_critic) means "the model's value"; ``resolve()``
fills them in, and the resolved config is what a run writes to ``config.yaml`` and into every
snapshot. The nets and the training step are built from the resolved fields alone
(``models.build_generator``, ``steps.build_step``), so a preset is only a table of values.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import typing
from dataclasses import dataclass, fields

import yaml

from safe_files import write_text_atomic
from paddle_gan_kit import augment, changes
from paddle_gan_kit.errors import GanKitError

CONV_BACKEND_ENV = "PADDLE_GAN_KIT_CONV_BACKEND"

# Image sides the nets support: s0 * 2^k with 4 <= s0 <= 7 and k >= 2 (the generator starts
# from an s0 x s0 map and doubles k times). These are the ones people use.
COMMON_SIZES = (28, 32, 64, 96, 128, 256)
SIZES_HINT = f"{', '.join(map(str, COMMON_SIZES))} (any s0*2^k with s0 in 4..7, k >= 2)"

# The presets ``--model`` chooses: the values of the fields left ``None``.
MODELS: dict[str, dict] = {
    # Radford et al. 2015, section 4: Adam(2e-4, beta1 0.5); BatchNorm in D; non-saturating loss
    "dcgan": {"loss": "nonsaturating", "d_norm": "batch", "gp_weight": 0.0,
              "lr_g": 2e-4, "lr_d": 2e-4, "beta1": 0.5, "beta2": 0.999, "n_critic": 1},
    # Gulrajani et al. 2017, Algorithm 1: lambda 10, n_critic 5, Adam(1e-4, 0, 0.9); a critic
    # without batch norm (layer norm, section 4)
    "wgan_gp": {"loss": "wasserstein", "d_norm": "layer", "gp_weight": 10.0,
                "lr_g": 1e-4, "lr_d": 1e-4, "beta1": 0.0, "beta2": 0.9, "n_critic": 5},
}


@dataclass
class TrainConfig:
    """A training run's settings. Each field has a one-line comment: meaning, unit, source."""

    # --- what to train -------------------------------------------------------------------
    model: str = "dcgan"  # preset of the fields below left None: "dcgan" or "wgan_gp" (MODELS)
    size: int = 64  # image side in pixels: s0*2^k, s0 in 4..7 (28, 32, 64, 96, 128, 256)
    channels: typing.Optional[int] = None  # 1 or 3; None infers it from the data
    # None: the embedded procedural gems; "builtin:mnist", "builtin:fashion_mnist";
    # a prepared data_prep directory, an .npy array (N,H,W,C) uint8, an image folder, a zip/tar
    data: typing.Optional[str] = None
    gems_count: int = 8192  # images in the embedded gem dataset (generated once, cached)
    fit: str = "crop"  # how --data images are fitted to the square: crop, pad or stretch
    out: typing.Optional[str] = None  # run directory; None: runs/<model>_<size>

    # --- architecture --------------------------------------------------------------------
    z_dim: int = 100  # latent size; 100 as in DCGAN (Radford et al. 2015)
    z_dist: str = "normal"  # latent prior: "normal" N(0, 1) or "uniform" U(-1, 1)
    # class-conditional G and D on the data's labels: conditional BatchNorm in G (de Vries et al.
    # 2017, from one class embedding as BigGAN's), a projection head in D (Miyato & Koyama 2018)
    conditional: bool = False
    n_classes: typing.Optional[int] = None  # classes of a conditional run; None: from the data's labels
    # their names by label; None: the data's (class folders, the gems' cuts, digits), else "0", "1", ...
    class_names: typing.Optional[list] = None
    # transitional training (Shahbazi et al. 2022, "Collapse by conditioning"): the class enters
    # G's embedding and D's projection with a weight rising from 0 at step condition_fade_start
    # to 1 at condition_fade_end, so G first learns the unconditional set; 0 and 0: from step 1
    condition_fade_start: int = 0
    condition_fade_end: int = 0
    g_channels: int = 64  # generator width at the last upsampling stage (DCGAN's ngf)
    d_channels: int = 64  # discriminator/critic width at its first conv (DCGAN's ndf)
    max_channels: int = 512  # cap on the widest stage (the DCGAN paper's 1024 is 16x the cost)
    # norm after each inner D conv: "batch" (DCGAN), "layer" (WGAN-GP paper), "instance", "none",
    # or "spectral": every D weight divided by its spectral norm (SNGAN, Miyato et al. 2018)
    d_norm: typing.Optional[str] = None
    # how G doubles the side: "transposed" (DCGAN's 4x4 stride-2) or "nearest" (upsample + 3x3
    # conv, which avoids the checkerboard, Odena et al. 2016)
    g_upsample: str = "transposed"
    # "dcgan" (Radford et al. 2015) or "resnet": residual blocks at every stage (the CIFAR ResNets
    # of SNGAN and WGAN-GP: Miyato et al. 2018, Gulrajani et al. 2017); same widths, a step about
    # 6x the DCGAN's on the CPU at 32 px. d_arch also "projected": small discriminators on the
    # features of a frozen ImageNet EfficientNet-Lite0 (Projected GAN, Sauer et al. 2021)
    g_arch: str = "dcgan"
    d_arch: str = "dcgan"
    # the projected D: side images are resized to before the backbone, a multiple of 32 (0: the
    # image side rounded up to one); how many of its feature levels (1/4, 1/8, 1/16, 1/32 of that
    # side) get a discriminator; its weights file (None: found, see models/efficientnet_lite.py)
    backbone_size: int = 0
    backbone_levels: int = 4
    backbone_weights: typing.Optional[str] = None

    # --- objective -----------------------------------------------------------------------
    loss: typing.Optional[str] = None  # "nonsaturating" (DCGAN), "wasserstein" (WGAN-GP) or "hinge" (SNGAN)
    gp_weight: typing.Optional[float] = None  # gradient penalty weight lambda on interpolates; 0 = off
    r1_gamma: float = 0.0  # R1 penalty gamma/2 E|grad D(real)|^2 (Mescheder et al. 2018); 0 = off
    label_smoothing: float = 0.0  # one-sided: real target 1 - this (Salimans et al. 2016: 0.1)
    # DiffAugment (Zhao et al. 2020) of everything D sees: any of "color,translation,cutout"; "" = off
    augment: str = ""

    # --- optimisation --------------------------------------------------------------------
    steps: int = 10000  # total generator updates of the run; --resume continues up to this
    # stop (with a snapshot) once the run has trained this many minutes in all its sessions
    # together (0 = no limit); a resume continues up to it, as with steps. Evaluation time is not counted
    minutes: float = 0.0
    batch_size: int = 64  # images per discriminator/critic update
    lr_g: typing.Optional[float] = None  # Adam lr of G; None: 2e-4 DCGAN, 1e-4 WGAN-GP
    lr_d: typing.Optional[float] = None  # Adam lr of D/critic; same defaults as lr_g
    beta1: typing.Optional[float] = None  # Adam beta1; None: 0.5 DCGAN, 0.0 WGAN-GP paper
    beta2: typing.Optional[float] = None  # Adam beta2; None: 0.999 DCGAN, 0.9 WGAN-GP paper
    n_critic: typing.Optional[int] = None  # D/critic updates per G update; None: 1 / 5
    # generator updates per round of D updates: D trains at every g_steps-th step only (the
    # anime-faces notebook's 5); a step is still one generator update
    g_steps: int = 1
    ema_decay: float = 0.0  # EMA of G's weights per step (0 = off; 0.999 is common); samples use it
    # EMA ramp-up: the EMA's half-life is at most this fraction of the steps so far, so early
    # weights fade (StyleGAN2-ADA: 0.05); 0 = the fixed decay from step 1
    ema_rampup: float = 0.0
    seed: int = 0  # seeds weights, noise and data order; a run is reproducible from it
    sync_bn: bool = False  # several ranks: BatchNorm statistics over the global batch (SyncBatchNorm)
    device: str = "auto"  # "auto" (GPU when Paddle has CUDA and a GPU), "gpu" or "cpu"
    amp: str = "off"  # GPU mixed precision: "off", "float16" (with loss scaling) or "bfloat16"
    # CPU convolutions: "auto" (oneDNN's kernels when they build and check out, else Paddle's),
    # "onednn" or "paddle"; None: $PADDLE_GAN_KIT_CONV_BACKEND, else auto (see fastconv)
    conv_backend: typing.Optional[str] = None

    # --- outputs (steps are generator updates) ------------------------------------------
    snapshot_every: int = 500  # write a complete snapshot every this many steps
    keep_snapshots: int = 3  # how many recent snapshots to keep
    sample_every: int = 250  # sample grid + losses.png every this many steps
    n_samples: int = 64  # images in the fixed-noise sample grid
    log_every: int = 25  # read losses back and log them every this many steps
    eval_every: int = 0  # FID/KID every this many steps, keeping snapshots/best.* (0 = off)
    eval_n: int = 1000  # generated and real images per evaluation (FID is biased up for small n)
    # "auto" (classifier for labelled grayscale data, else inception), "mobilenet_v2" (offline colour)
    eval_extractor: str = "auto"
    eval_weights: typing.Optional[str] = None  # the extractor's weights file (or its environment variable)

    def resolve(self) -> "TrainConfig":
        """A copy with the model's preset filled in and ``out`` set; validates every field."""
        validate(self)
        values = dataclasses.asdict(self)
        for key, default in MODELS[self.model].items():
            if values[key] is None:
                values[key] = default
        if values["out"] is None:
            values["out"] = f"runs/{self.model}_{self.size}"
        if values["conv_backend"] is None:
            values["conv_backend"] = os.environ.get(CONV_BACKEND_ENV) or "auto"
        if values["d_arch"] == "projected" and values["backbone_size"] == 0:
            values["backbone_size"] = -(-self.size // 32) * 32
        resolved = TrainConfig(**values)
        validate(resolved)
        return resolved

    def to_dict(self) -> dict:
        """Plain dict of every field (YAML- and JSON-friendly)."""
        return dataclasses.asdict(self)


# Keys that None leaves to the data: training fills them in when it starts (and a resume keeps the run's).
FROM_DATA = ("channels", "n_classes", "class_names")

# Keys a resumed run may change; every other key must equal the run's own. Besides where
# outputs go and how often: the learning rates and the penalty weight, the knobs one turns to
# calm a run that diverged (the change is logged, kept in the run's snapshots and shown in
# VisualDL), and the data path (AI Studio mounts the same dataset under new paths).
RESUMABLE_KEYS = frozenset(
    {"steps", "minutes", "snapshot_every", "keep_snapshots", "sample_every", "log_every", "device", "out",
     "eval_every", "eval_weights", "amp", "lr_g", "lr_d", "gp_weight", "r1_gamma", "data", "conv_backend",
     "backbone_weights"}
)

_CHOICES = {
    "z_dist": ("normal", "uniform"),
    "d_norm": ("batch", "layer", "instance", "none", "spectral"),
    "g_upsample": ("transposed", "nearest"),
    "g_arch": ("dcgan", "resnet"),
    "d_arch": ("dcgan", "resnet", "projected"),
    "loss": ("nonsaturating", "wasserstein", "hinge"),
    "device": ("auto", "gpu", "cpu"),
    "amp": ("off", "float16", "bfloat16"),
    "conv_backend": ("auto", "onednn", "paddle"),
    "fit": ("crop", "pad", "stretch"),
    "eval_extractor": ("auto", "inception", "classifier", "mobilenet_v2"),
}

# What earlier versions wrote that this one reads differently is one table: changes.CHANGES.
_REMOVED_OPTIONS = changes.removed()
_REMOVED_VALUES = changes.removed_values()
_RENAMED = {c.key: c for c in changes.of_kind("renamed")}


def removed_message(what: str, change) -> str:
    """One line for a removed option or value (its row of ``changes.CHANGES``): since when, which
    version has it, where its finding is."""
    return (f"{what} was removed in paddle_gan_kit {change.version}: it {change.note}; drop it, or use "
            f"paddle_gan_kit {changes.previous(change.version)} for a run that needs it")


def field_names() -> list[str]:
    """Names of every config key."""
    return [f.name for f in fields(TrainConfig)]


def _field_type(name: str):
    hints = typing.get_type_hints(TrainConfig)
    tp = hints[name]
    optional = False
    if typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = True
        tp = args[0]
    return tp, optional


def coerce(name: str, value):
    """Check ``value`` against the type of key ``name`` (int -> float allowed)."""
    if name in _REMOVED_OPTIONS:
        raise GanKitError(removed_message(f"config key '{name}'", _REMOVED_OPTIONS[name]))
    if name not in field_names():
        raise GanKitError(unknown_key_message(name))
    tp, optional = _field_type(name)
    if value is None:
        if optional:
            return None
        raise GanKitError(f"config key '{name}' cannot be null; give a {tp.__name__}")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float) and isinstance(value, str):
        # YAML 1.1 reads "1e-4" (no dot) as a string; accept numbers written that way
        try:
            number = float(value)
        except ValueError:
            pass
        else:
            if tp is float:
                return number
            if number.is_integer() and "." not in value:
                return int(number)
    if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise GanKitError(
            f"config key '{name}' must be {tp.__name__}, got {value!r} "
            f"({type(value).__name__}); e.g. --set {name}={_example(tp)}"
        )
    return value


def _example(tp) -> str:
    return {int: "64", float: "0.0002", str: "text", bool: "true"}.get(tp, "...")


def unknown_key_message(name: str) -> str:
    """One line naming the unknown key, a close match if any, and the valid keys."""
    names = field_names()
    if name in _RENAMED:
        new = _RENAMED[name].value
        return f"config key '{name}' is now called '{new}'; e.g. --set {new}=layer"
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown config key '{name}'{hint}; valid keys: {', '.join(names)}"


def parse_size(size: int) -> tuple[int, int]:
    """Split an image side into ``(s0, k)`` with size = s0 * 2**k, 4 <= s0 <= 7, k >= 2."""
    if isinstance(size, int) and size >= 16:
        s0, k = size, 0
        while s0 % 2 == 0 and s0 > 7:
            s0 //= 2
            k += 1
        if 4 <= s0 <= 7 and k >= 2:
            return s0, k
    raise GanKitError(f"unsupported size {size!r}; use one of {SIZES_HINT}")


def validate(cfg: TrainConfig) -> None:
    """Raise ``GanKitError`` naming the first invalid key and its allowed values."""
    for f in fields(TrainConfig):
        coerce(f.name, getattr(cfg, f.name))
    if cfg.model not in MODELS:
        raise GanKitError(f"unknown model '{cfg.model}'; choose one of: {', '.join(MODELS)}")
    parse_size(cfg.size)
    for key, allowed in _CHOICES.items():
        value = getattr(cfg, key)
        if key in _REMOVED_VALUES and value in _REMOVED_VALUES[key].value:
            raise GanKitError(removed_message(f"{key}={value}", _REMOVED_VALUES[key]))
        if value is not None and value not in allowed:
            raise GanKitError(f"config key '{key}' is {value!r}; allowed: {', '.join(allowed)}")
    if cfg.channels not in (None, 1, 3):
        raise GanKitError(f"channels is {cfg.channels}; use 1 (grayscale), 3 (RGB) or leave it unset")
    positive = ["z_dim", "g_channels", "d_channels", "max_channels", "batch_size", "steps",
                "snapshot_every", "keep_snapshots", "sample_every", "n_samples", "log_every",
                "gems_count", "g_steps"]
    for key in positive:
        if getattr(cfg, key) < 1:
            raise GanKitError(f"config key '{key}' must be >= 1, got {getattr(cfg, key)}")
    if not cfg.minutes >= 0 or cfg.minutes == float("inf"):
        raise GanKitError(f"minutes must be a number of minutes >= 0 (0 = no time limit), got {cfg.minutes}")
    if cfg.eval_every < 0 or cfg.eval_n < 2:
        raise GanKitError(f"eval_every must be >= 0 and eval_n >= 2, got {cfg.eval_every} and {cfg.eval_n}")
    if cfg.n_critic is not None and cfg.n_critic < 1:
        raise GanKitError(f"n_critic must be >= 1, got {cfg.n_critic}")
    in_range = {"label_smoothing": (0.0, 0.5), "ema_decay": (0.0, 1.0), "beta1": (0.0, 1.0), "beta2": (0.0, 1.0)}
    for key, (low, high) in in_range.items():
        value = getattr(cfg, key)
        if value is not None and not low <= value < high:
            raise GanKitError(f"{key} must be in [{low:g}, {high:g}), got {value}")
    for key in ("lr_g", "lr_d"):
        value = getattr(cfg, key)
        if value is not None and not value > 0:
            raise GanKitError(f"{key} must be > 0, got {value}")
    for key in ("gp_weight", "r1_gamma", "ema_rampup"):
        value = getattr(cfg, key)
        if value is not None and value < 0:
            raise GanKitError(f"{key} must be >= 0, got {value}")
    if cfg.backbone_size < 0 or cfg.backbone_size % 32 or not 1 <= cfg.backbone_levels <= 4:
        raise GanKitError(f"backbone_size must be 0 or a multiple of 32 and backbone_levels 1 to 4, got "
                          f"{cfg.backbone_size} and {cfg.backbone_levels}; e.g. --set backbone_size=64")
    if cfg.conditional and "resnet" in (cfg.g_arch, cfg.d_arch):
        raise GanKitError("conditional=true has conditional layers for the DCGAN and projected nets only; use "
                          "g_arch=dcgan and d_arch=dcgan or projected, or conditional=false")
    fading = cfg.condition_fade_start or cfg.condition_fade_end
    if fading and not (cfg.conditional and 0 <= cfg.condition_fade_start < cfg.condition_fade_end):
        raise GanKitError(f"condition_fade_start={cfg.condition_fade_start} and condition_fade_end="
                          f"{cfg.condition_fade_end} need conditional=true and 0 <= start < end, e.g. --set "
                          "conditional=true --set condition_fade_start=1000 --set condition_fade_end=2000")
    ignored = _ignored_without(cfg)
    if ignored:
        key, value, needs, fix = ignored[0]
        raise GanKitError(f"{key}={value} does nothing without {needs}: set {fix}, or drop {key}")
    if fading and cfg.d_arch == "projected":
        raise GanKitError("condition_fade is for d_arch=dcgan (the projected heads have no unconditional logit to "
                          "fade from); unset condition_fade_start and condition_fade_end")
    names = cfg.class_names
    if names is not None and (len(set(map(str, names))) != len(names) or (cfg.n_classes and len(names) != cfg.n_classes)):
        raise GanKitError(f"class_names must name each class once ({len(names)} names, {len(set(map(str, names)))} "
                          f"different, for n_classes={cfg.n_classes}); e.g. --set class_names=[cat,dog]")
    if cfg.n_classes is not None and cfg.n_classes < 2:
        raise GanKitError(f"n_classes must be at least 2 (or unset: from the data's labels), got {cfg.n_classes}")
    if cfg.d_arch == "projected" and ((cfg.gp_weight or 0) > 0 or cfg.r1_gamma > 0):
        raise GanKitError("d_arch=projected takes no gradient penalty or R1 (its frozen backbone would need a "
                          "double backward; Projected GAN trains without one): use --model dcgan, or "
                          "--set gp_weight=0 --set r1_gamma=0")
    for name in augment.unknown(cfg.augment):
        if name in _REMOVED_VALUES["augment"].value:
            raise GanKitError(removed_message(f"the augmentation '{name}'", _REMOVED_VALUES["augment"])
                              + f" (keep {','.join(augment.AUGMENTS)})")
        raise GanKitError(f"unknown augmentation {name!r} in augment; use any of {','.join(augment.AUGMENTS)} "
                          "(comma-separated), e.g. --set augment=translation,cutout,color")


def _ignored_without(cfg: TrainConfig):
    """(key, value, what it needs, the fix) for each setting that would be silently ignored: it
    acts only beside another setting, and that one is off."""
    default = TrainConfig()
    pairs = [
        ("ema_rampup", cfg.ema_rampup > 0 and cfg.ema_decay == 0, "an EMA generator", "ema_decay=0.999"),
        ("n_classes", cfg.n_classes is not None and not cfg.conditional, "conditional=true", "conditional=true"),
        ("class_names", cfg.class_names is not None and not cfg.conditional, "conditional=true", "conditional=true"),
        ("label_smoothing", cfg.label_smoothing > 0 and cfg.loss not in (None, "nonsaturating"),
         "the non-saturating loss (hinge and Wasserstein have no targets to smooth)", "loss=nonsaturating"),
    ]
    pairs += [(key, getattr(cfg, key) != getattr(default, key) and cfg.d_arch != "projected", "d_arch=projected",
               "d_arch=projected") for key in ("backbone_size", "backbone_levels", "backbone_weights")]
    return [(key, getattr(cfg, key), needs, fix) for key, ignored, needs, fix in pairs if ignored]


def load_yaml(path: str) -> dict:
    """Read a YAML mapping of config keys; unknown keys and wrong types are errors."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise GanKitError(f"config file {path} does not exist; check the path (see configs/)") from None
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" at line {line + 1}" if line is not None else ""
        raise GanKitError(f"config file {path} is not valid YAML{where}; fix its syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise GanKitError(f"config file {path} must hold a mapping of key: value lines")
    return {key: coerce(key, value) for key, value in data.items()}


def parse_set(items: typing.Iterable[str]) -> dict:
    """Parse ``key=value`` strings (values read as YAML scalars: 1e-4, true, null, text)."""
    out = {}
    for item in items:
        if "=" not in item:
            raise GanKitError(f"--set expects key=value, got '{item}'; e.g. --set lr_g=0.0001")
        key, raw = item.split("=", 1)
        key = key.strip().replace("-", "_")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        out[key] = coerce(key, value)
    return out


def build_config(base: typing.Optional[dict] = None, **overrides) -> TrainConfig:
    """A ``TrainConfig`` from a dict plus keyword overrides, with type checks."""
    values = {}
    for source in (base or {}), overrides:
        for key, value in source.items():
            values[key] = coerce(key, value)
    return TrainConfig(**values)


def saved_config(values: dict) -> TrainConfig:
    """The resolved config a run saved (in config.yaml or a snapshot), from this or an earlier
    version, carried over by ``changes.CHANGES``: renamed keys renamed, dropped ones dropped,
    meaningless values reset, a removed option or value that the run used refused in one line
    (one it held off is dropped); then presets filled in."""
    saved, values = dict(values), dict(values)
    for change in changes.CHANGES:
        key = change.key
        if change.kind == "removed_option" and key in values:
            value = values.pop(key)
            if change.value is not changes.ANY and value != change.value:
                raise GanKitError(removed_message(f"this run uses {key}={value}, an option that", change))
        elif change.kind == "removed_values":
            used = [name for name in str(values.get(key) or "").split(",") if name.strip() in change.value]
            if used:
                raise GanKitError(removed_message(f"this run uses {key}={values[key]}, whose '{used[0].strip()}'",
                                                  change))
        elif change.kind == "renamed" and key in values:
            value = values.pop(key)
            if change.when(saved):
                values.setdefault(change.value, value)
        elif change.kind == "dropped":
            values.pop(key, None)
        elif change.kind == "reset" and change.when(saved):
            values[key] = change.value
    return build_config(values).resolve()


def save_yaml(cfg: TrainConfig, path: str) -> None:
    """Write the config as YAML (keys in declaration order), atomically."""
    write_text_atomic(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
