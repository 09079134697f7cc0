"""``UsageError``: bad input the user can fix; the CLI prints its one-line message and exits with status 2."""
from __future__ import annotations

from ..data.errors import DataError

__all__ = ["DataError", "UsageError"]


class UsageError(ValueError):
    """A bad option, model name, configuration file or run folder (one-line message)."""
