"""The classes of a run: one owner for their names, the lookup by name or index, and the
one-line refusals (an unknown name with its close matches, an index out of range, a class asked
of an unconditional run).

A conditional run's class names are part of its resolved config (``TrainConfig.class_names``,
filled from the data when training starts, as ``channels`` and ``n_classes`` are), so whatever
holds a run's config holds its classes: ``Classes.of(cfg)``. Train, sample, interpolate,
evaluate and export read them here and nowhere else.
"""
from __future__ import annotations

import difflib

import numpy as np

from paddle_gan_kit.errors import GanKitError

UNCONDITIONAL = ("this run is unconditional, so it has no classes to choose from; train with --set conditional=true "
                 "on labelled data, or drop --class/--classes")


class Classes:
    """The classes of one run, by label: ``names[i]`` is class i (empty for an unconditional run)."""

    def __init__(self, names=()):
        self.names = tuple(str(name) for name in names)

    @classmethod
    def of(cls, cfg) -> "Classes":
        """A resolved config's classes: its ``class_names``, else "0", "1", ... (runs written before
        the names were kept in the config); none for an unconditional run."""
        if not cfg.conditional:
            return cls()
        return cls.named(cfg.class_names, int(cfg.n_classes))

    @classmethod
    def named(cls, names, n: int) -> "Classes":
        """``n`` classes, the first named by ``names`` and the rest by their index."""
        names = list(names or [])[:n]
        return cls(names + [str(i) for i in range(len(names), n)])

    @classmethod
    def for_training(cls, cfg, data) -> "Classes":
        """The classes a conditional run trains on: as many as the config's ``n_classes`` or the
        data's labels say, named as the data name them (class folders, the gems' cuts); one line when
        the data have no labels, or more classes than ``n_classes``. None for an unconditional run."""
        if not cfg.conditional:
            return cls()
        if data.labels is None:
            raise GanKitError("conditional=true needs labelled data, and these images have no classes: use class "
                              "folders (python -m data_prep makes them labels), builtin:mnist, builtin:fashion_mnist "
                              "or the built-in gems (labelled by their cut), or conditional=false")
        found = int(np.max(data.labels)) + 1
        names = list(cfg.class_names or data.class_names or [])
        wanted = cfg.n_classes or max(found, len(names))
        if found > wanted:
            raise GanKitError(f"the data have labels up to {found - 1}, more than n_classes={wanted}; raise n_classes "
                              "or leave it unset")
        return cls.named(names, wanted)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def conditional(self) -> bool:
        return bool(self.names)

    def require(self) -> None:
        """Refuse, in one line, to choose a class of an unconditional run."""
        if not self.names:
            raise GanKitError(UNCONDITIONAL)

    def index(self, which) -> int:
        """Class ``which`` (a name, any case, or an index) as its label; one line naming the close
        matches or the valid range otherwise."""
        self.require()
        text = str(which).strip()
        if text in self.names:
            return self.names.index(text)
        lowered = [n.lower() for n in self.names]
        if text.lower() in lowered:
            return lowered.index(text.lower())
        last = len(self.names) - 1
        if text.lstrip("-").isdigit():
            if 0 <= int(text) <= last:
                return int(text)
            raise GanKitError(f"class index {int(text)} is out of range: this run has classes 0 to {last}")
        close = difflib.get_close_matches(text, self.names, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        shown = ", ".join(self.names[:12]) + (", ..." if len(self.names) > 12 else "")
        raise GanKitError(f"unknown class {text!r}; {hint}this run's classes: {shown} (a name or an index 0 to {last})")

    def labels(self, which, n: int) -> np.ndarray | None:
        """int64 (n,) labels: ``which`` is None (label i mod the number of classes), one class for all
        (a name or an index) or one per image. None for an unconditional run, which refuses a class."""
        if not self.names:
            if which is not None:
                self.require()
            return None
        if which is None:
            return (np.arange(n) % len(self.names)).astype(np.int64)
        if isinstance(which, (str, int, np.integer)):
            return np.full(n, self.index(which), np.int64)
        return np.array([self.index(w) for w in which], np.int64)
