"""What changed in which version, for the configs and snapshots earlier versions wrote: one table.

Every change a saved run may need carried over is one ``Change`` in :data:`CHANGES`: a config key
renamed or dropped, an option or a value removed (one that measured no gain: docs/quality.md), a
value that meant nothing and is reset, a buffer added to a net (what runs before it trained with),
something moved into the config. ``config.saved_config``, ``models.load_weights`` and
``run.generator_from_payload`` read this table and nothing else; a new change is a new row.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

ANY = object()  # a removed option whose every value was "off" (its weight was the switch)


@dataclass(frozen=True)
class Change:
    version: str  # the first version with the change
    kind: str  # renamed | dropped | removed_option | removed_values | reset | added_buffer | into_config
    key: str  # the config key, buffer name or payload key concerned
    value: object = None  # renamed: the new key; removed_option: its "off" value; removed_values: the
    # values; reset: the value it becomes; added_buffer: what runs without it trained with
    note: str = ""
    when: Optional[Callable] = None  # renamed, reset: only for saved configs (dicts) where this is true


# the options of 0.1.0 that measured no gain anywhere they were tried, with the value that meant "off"
_NO_GAIN = {
    "g_coords": False, "d_coords": False, "d_scales": 1, "g_attention": 0, "d_attention": 0, "d_recon_weight": 0.0,
    "g_self_modulation": False, "g_skip": False, "d_mbstd": 0, "lecam_weight": 0.0, "lecam_decay": ANY,
    "cr_weight": 0.0, "cr_augment": ANY, "color_strength": 1.0, "augment_p": 1.0,
}

CHANGES = (
    Change("0.1.0", "renamed", "critic_norm", "d_norm", "the critic's norm; only wgan_gp read it",
           when=lambda saved: saved.get("model") == "wgan_gp"),
    Change("0.1.0", "dropped", "compile", note="paddle.jit.to_static training lost the penalty's gradients "
                                              "(docs/speed.md)"),
    Change("0.1.0", "reset", "gp_weight", None, "a DCGAN config without a loss key stored an unused 10.0",
           when=lambda saved: saved.get("model") == "dcgan" and "loss" not in saved),
    *(Change("0.2.0", "removed_option", key, off, "measured no gain (docs/quality.md)") for key, off in _NO_GAIN.items()),
    Change("0.2.0", "removed_values", "augment", ("flip", "scale", "hue"), "measured no gain (docs/quality.md)"),
    Change("0.2.0", "removed_values", "g_upsample", ("bilinear",), "measured no gain (docs/quality.md)"),
    Change("0.2.0", "added_buffer", "condition_weight", 1.0, "the class fade; conditional runs before it trained "
                                                             "at full class weight"),
    Change("0.3.0", "into_config", "class_names", note="0.2.0 snapshots kept a conditional run's class names beside "
                                                       "the config"),
)


def of_kind(kind: str) -> tuple[Change, ...]:
    """The rows of one kind, in version order."""
    return tuple(change for change in CHANGES if change.kind == kind)


def removed() -> dict:
    """``{key: its row}`` of the removed options."""
    return {c.key: c for c in of_kind("removed_option")}


def removed_values() -> dict:
    """``{key: its row}`` of the values removed from options that stay (the values in ``value``)."""
    return {c.key: c for c in of_kind("removed_values")}


def added_buffers() -> dict:
    """``{buffer name: the value runs without it trained with}``."""
    return {c.key: c.value for c in of_kind("added_buffer")}


def previous(version: str) -> str:
    """The version before ``version`` in this table (the last one that had what it removed)."""
    versions = sorted({c.version for c in CHANGES}, key=lambda v: tuple(map(int, v.split("."))))
    return versions[versions.index(version) - 1]
