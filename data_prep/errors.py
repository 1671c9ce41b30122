"""The one exception type for mistakes a user of ``data_prep`` can make.

``python -m data_prep`` prints it as ``error: <message>`` on one line and exits with code 2;
anything else is a programming error and stays a traceback.
"""
from __future__ import annotations


class DataPrepError(Exception):
    """A user error (bad path, bad option, unusable data); the message names the fix."""
