"""The exception types for mistakes a user can make and fix.

Every command-line tool of this project prints a ``UserError`` as ``error: <message>`` on one
line and exits with code 2; anything else is a programming error and stays a traceback. This is
the lowest module of the project (no imports): ``data_prep`` raises its ``DataPrepError`` and
``paddle_gan_kit`` its ``GanKitError``, both kinds of ``UserError``, and a full disk raises
``NoSpaceError`` in either.
"""
from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix; the message names the problem and the fix in one line."""


class NoSpaceError(UserError):
    """A write ran out of disk space; the partial file was removed and nothing complete was lost."""
