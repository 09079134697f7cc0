"""Fashion-MNIST (Zalando, MIT licence) read from the Debian package ``dataset-fashion-mnist``.

Files are in IDX format: a big-endian header (magic ``0x0000 08 ndim``: 0x08 = unsigned
byte, then one uint32 per dimension) followed by the raw uint8 payload.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from .cache import atomic_write_bytes, cache_dir, fetch_deb_files

__all__ = [
    "CLASSES",
    "SYSTEM_DIR",
    "fashion_mnist_dir",
    "fetch_fashion_mnist",
    "load_fashion_mnist",
    "read_idx_images",
    "read_idx_labels",
]

SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
INSTALL_HINT = "apt-get install -y dataset-fashion-mnist"
CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
_SPLITS = {"train": ("train", 60000), "test": ("t10k", 10000)}
_FILES = [f"{p}-{k}-ubyte.gz" for p, _ in _SPLITS.values() for k in ("images-idx3", "labels-idx1")]
_IMAGES_MAGIC, _LABELS_MAGIC = 0x00000803, 0x00000801


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw  # already decompressed
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:  # truncated or corrupt gzip stream
        raise ValueError(f"{path}: corrupt or truncated gzip data ({e})") from e


def _read_idx(path: str | os.PathLike[str], magic: int, dims: int) -> tuple[tuple[int, ...], np.ndarray]:
    path = Path(path)
    data = _read_bytes(path)
    header = 4 + 4 * dims
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(data)} bytes, need {header})")
    head = np.frombuffer(data, dtype=">u4", count=1 + dims)
    if int(head[0]) != magic:
        raise ValueError(f"{path}: bad IDX magic 0x{int(head[0]):08x}, expected 0x{magic:08x}")
    shape = tuple(int(d) for d in head[1:])
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "trailing bytes in"
        raise ValueError(f"{path}: {what} IDX payload: {len(data)} bytes, header {shape} implies {expected}")
    return shape, np.frombuffer(data, dtype=np.uint8, offset=header)


def read_idx_images(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX3 image file (optionally gzipped) into a uint8 array of shape (N, rows, cols)."""
    shape, payload = _read_idx(path, _IMAGES_MAGIC, 3)
    return payload.reshape(shape).copy()  # copy: writable and detached from the decompressed buffer


def read_idx_labels(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX1 label file (optionally gzipped) into an int64 array of shape (N,)."""
    _, payload = _read_idx(path, _LABELS_MAGIC, 1)
    return payload.astype(np.int64)


def fashion_mnist_dir() -> Path | None:
    """The first directory holding all four files: the system package's, then the cache's."""
    for d in (SYSTEM_DIR, cache_dir("fashion-mnist")):
        if all((d / name).is_file() for name in _FILES):
            return d
    return None


def fetch_fashion_mnist() -> Path:
    """Make the files available; without root, unpack the Debian package into the cache."""
    found = fashion_mnist_dir()
    if found is not None:
        return found
    members = [f"usr/share/datasets/fashion-mnist/{name}" for name in _FILES]
    files = fetch_deb_files("dataset-fashion-mnist", members)
    dest = cache_dir("fashion-mnist")
    for member, data in files.items():
        atomic_write_bytes(dest / Path(member).name, data)
    return dest


def load_fashion_mnist(
    split: str = "train", root: str | os.PathLike[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images uint8 (N, 28, 28), labels int64 (N,))`` for ``split`` "train" or "test"."""
    if split not in _SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    prefix, n = _SPLITS[split]
    d = Path(root) if root is not None else fashion_mnist_dir()
    if d is None:
        raise FileNotFoundError(
            f"Fashion-MNIST not found in {SYSTEM_DIR} or {cache_dir('fashion-mnist')}; "
            f"install it with `{INSTALL_HINT}` (or run `python -m nnforge.datasets`)"
        )
    img_path = d / f"{prefix}-images-idx3-ubyte.gz"
    lbl_path = d / f"{prefix}-labels-idx1-ubyte.gz"
    images, labels = read_idx_images(img_path), read_idx_labels(lbl_path)
    if images.shape != (n, 28, 28):
        raise ValueError(f"{img_path}: expected shape {(n, 28, 28)}, got {images.shape}")
    if labels.shape != (n,):
        raise ValueError(f"{lbl_path}: expected {n} labels, got {labels.shape[0]}")
    if labels.max(initial=0) >= len(CLASSES):
        raise ValueError(f"{lbl_path}: label {int(labels.max())} out of range 0..{len(CLASSES) - 1}")
    return images, labels
