"""The one error type of data preparation: bad input that the user can fix (a one-line message)."""
from __future__ import annotations

__all__ = ["DataError"]


class DataError(ValueError):
    """Bad input data (missing/empty file, unknown column, undecodable bytes, a single class, ...).

    The message is one line that names the file (and line) and says what was expected; the CLI prints it and exits
    with status 2.
    """
