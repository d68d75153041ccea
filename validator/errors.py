"""User-facing errors: one line naming the file and the problem, exit code 2, never a traceback."""

from __future__ import annotations


class InputError(Exception):
    """Bad input from the user (file missing, unreadable, schema-invalid, mismatched): exit code 2."""
