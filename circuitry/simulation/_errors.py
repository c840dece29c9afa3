"""The command line's one error: bad input, reported as one line."""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""
