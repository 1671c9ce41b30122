"""The data preparation stage's user error (see ``safe_files.errors`` for the shared types)."""
from __future__ import annotations

from safe_files.errors import NoSpaceError, UserError

__all__ = ["DataPrepError", "NoSpaceError", "UserError"]


class DataPrepError(UserError):
    """A user error in data preparation (bad path, bad option, unusable data)."""
