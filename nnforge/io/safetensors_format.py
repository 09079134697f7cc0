"""A minimal safetensors reader and writer (no dependency on the ``safetensors`` package, no pickle).

Layout: an 8-byte little-endian header length ``n``, ``n`` bytes of JSON
``{name: {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, "__metadata__": {str: str}}``
(padded with spaces so the data starts 8-byte aligned, as Hugging Face writes it), then the raw
little-endian bytes, offsets counted from the start of the data. Reads validate the header against the
file (sizes, bounds, overlaps, dtypes) before allocating anything, and raise ``ValueError`` naming the file.
Writes are atomic: a temporary file in the same directory, flushed and fsynced, then ``os.replace``.
``SafetensorsFile`` (alias ``safe_open``) reads tensors lazily from a memory map.
"""
from __future__ import annotations

import json
import os

import numpy as np

from .atomic import atomic_open

# safetensors dtype name -> NumPy dtype (little-endian). BF16 has no NumPy dtype: it is read as float32.
DTYPES = {"F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"),
          "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
          "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
          "BOOL": np.dtype("?")}
_NAMES = {np.dtype(v).newbyteorder("="): k for k, v in DTYPES.items() if k != "BF16"}
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors library's limit
MAX_DIMS = 64  # NumPy's limit


def write(path: str | os.PathLike, tensors: dict, metadata: dict | None = None) -> None:
    """Write ``{name: array}`` (NumPy arrays or anything ``np.asarray`` takes) and ``{str: str}`` metadata
    to ``path`` atomically."""
    path = os.fspath(path)
    arrays = {}
    for name, value in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise ValueError(f"safetensors: tensor names must be strings other than '__metadata__', got {name!r}")
        a = np.asarray(value)
        key = a.dtype.newbyteorder("=")
        if key not in _NAMES:
            raise ValueError(f"safetensors: tensor {name!r} has dtype {a.dtype}, which safetensors cannot store "
                             f"(supported: {', '.join(str(d) for d in _NAMES)})")
        arrays[name] = np.asarray(a, dtype=a.dtype.newbyteorder("<"), order="C")  # keeps 0-d arrays 0-d
    header: dict = {}
    if metadata:
        bad = {k: v for k, v in metadata.items() if not isinstance(k, str) or not isinstance(v, str)}
        if bad:
            raise ValueError(f"safetensors: metadata must map str to str, got {bad!r}")
        header["__metadata__"] = dict(metadata)
    # widest items first, then by name: every tensor starts aligned to its item size
    order = sorted(arrays, key=lambda k: (-arrays[k].dtype.itemsize, k))
    offset = 0
    for name in order:
        a = arrays[name]
        header[name] = {"dtype": _NAMES[a.dtype.newbyteorder("=")], "shape": list(a.shape),
                        "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)

    with atomic_open(path) as f:
        f.write(len(blob).to_bytes(8, "little"))
        f.write(blob)
        for name in order:
            if arrays[name].nbytes:
                f.write(memoryview(arrays[name].reshape(-1)).cast("B"))


def read_header(path: str | os.PathLike) -> tuple[dict, dict, int]:
    """Validate the header of ``path``; returns ``(entries, metadata, data_start)`` where entries maps
    each name to ``(dtype_name, shape, begin, end)``."""
    path = os.fspath(path)
    size = os.path.getsize(path)

    def bad(problem: str) -> ValueError:
        return ValueError(f"safetensors file {path!r}: {problem}")

    if size < 8:
        raise bad(f"file is {size} bytes, too short for the 8-byte header length")
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if n > size - 8 or n > MAX_HEADER_BYTES:
            raise bad(f"header length {n} exceeds the file size ({size} bytes) or the "
                      f"{MAX_HEADER_BYTES}-byte limit (truncated or not a safetensors file?)")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as e:  # bad UTF-8/JSON, a 5000-digit number, nesting too deep
        raise bad(f"header is not valid JSON ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(header, dict):
        raise bad(f"header must be a JSON object, got {type(header).__name__}")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in metadata.items()):
        raise bad("__metadata__ must map strings to strings")
    data_len = size - 8 - n
    entries = {}
    for name, info in header.items():
        if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
            raise bad(f"tensor {name!r}: entry must have dtype, shape and data_offsets, got {info!r:.200}")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise bad(f"tensor {name!r}: unknown or unsupported dtype {dtype!r:.100} (supported: {', '.join(DTYPES)})")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise bad(f"tensor {name!r}: shape must be a list of non-negative integers, got {shape!r:.200}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
            raise bad(f"tensor {name!r}: data_offsets must be two integers, got {offsets!r:.200}")
        begin, end = offsets
        if not 0 <= begin <= end <= data_len:
            raise bad(f"tensor {name!r}: data_offsets {offsets} out of bounds of the {data_len}-byte data section")
        numel = extent = 1
        for d in shape:
            numel *= d
            extent *= max(d, 1)
        if len(shape) > MAX_DIMS or extent * DTYPES[dtype].itemsize >= 2**63:
            raise bad(f"tensor {name!r}: shape {shape!r:.200} is absurd (at most {MAX_DIMS} dims, and the "
                      f"non-zero dims must describe fewer than 2**63 bytes)")
        if numel * DTYPES[dtype].itemsize != end - begin:
            raise bad(f"tensor {name!r}: shape {shape} of {dtype} needs {numel * DTYPES[dtype].itemsize} bytes, "
                      f"data_offsets give {end - begin}")
        entries[name] = (dtype, tuple(shape), begin, end)
    spans = sorted((b, e, k) for k, (_, _, b, e) in entries.items() if e > b)
    for (b0, e0, k0), (b1, e1, k1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise bad(f"tensors {k0!r} [{b0}, {e0}) and {k1!r} [{b1}, {e1}) overlap")
    return entries, metadata, 8 + n


class SafetensorsFile:
    """Lazy, memory-mapped reader of one safetensors file, like ``safetensors.safe_open``.

    The header is validated up front (as ``read_header`` does); tensor bytes are read from a memory map only
    when asked for, so loading never holds the file twice. ``get_tensor`` returns a fresh array in native
    byte order (``copy=False``: a read-only view into the map where no conversion is needed).

    Args:
        path: the ``.safetensors`` file.
        bf16_as_float32: widen BF16 tensors to float32 (exact); False returns their raw uint16 bit patterns.

    Example:
        >>> with SafetensorsFile("model.safetensors") as f:                 # doctest: +SKIP
        ...     w = f.get_tensor("embeddings.word_embeddings.weight")      # only this tensor is read
    """

    def __init__(self, path: str | os.PathLike, *, bf16_as_float32: bool = True):
        self.path = os.fspath(path)
        self.bf16_as_float32 = bf16_as_float32
        self._entries, self._metadata, self._start = read_header(self.path)
        has_data = any(end > begin for _, _, begin, end in self._entries.values())
        self._map = np.memmap(self.path, dtype=np.uint8, mode="r") if has_data else None

    def keys(self) -> list[str]:
        """Tensor names in the order their data appear in the file."""
        return sorted(self._entries, key=lambda k: self._entries[k][2])

    def metadata(self) -> dict:
        """The ``__metadata__`` mapping (str -> str)."""
        return dict(self._metadata)

    def dtype_of(self, name: str) -> str:
        """The stored safetensors dtype name (``"F32"``, ``"BF16"``...) of tensor ``name``."""
        return self._entry(name)[0]

    def shape_of(self, name: str) -> tuple[int, ...]:
        return self._entry(name)[1]

    def _entry(self, name: str) -> tuple:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"safetensors file {self.path!r}: no tensor named {name!r} "
                           f"({len(self._entries)} tensors in the file)") from None

    def get_tensor(self, name: str, dtype=None, copy: bool = True) -> np.ndarray:
        """Tensor ``name`` as a NumPy array (BF16 as float32 unless ``bf16_as_float32=False``).

        ``dtype`` converts floating-point tensors (e.g. F16/BF16 -> float32) in the same pass; integer and
        bool tensors keep their type.
        """
        kind, shape, begin, end = self._entry(name)
        stored = DTYPES[kind]
        if end == begin:
            raw = np.empty(shape, stored)
        else:
            if self._map is None or self._start + end > self._map.size:  # the file changed under us
                raise ValueError(f"safetensors file {self.path!r}: tensor {name!r} is truncated")
            raw = self._map[self._start + begin:self._start + end].view(stored).reshape(shape)
        if kind == "BF16" and self.bf16_as_float32:
            out = raw.astype(np.uint32)  # a new array: shift it in place, reinterpret as float32
            out <<= 16
            out = out.view(np.float32)
            return out if dtype is None or np.dtype(dtype) == out.dtype else out.astype(dtype)
        target = stored.newbyteorder("=")
        if dtype is not None and stored.kind == "f":
            target = np.dtype(dtype)
        if not copy and target == stored and raw.size:
            view = raw.view(np.ndarray)
            view.flags.writeable = False
            return view
        return np.array(raw, dtype=target, copy=True)

    def close(self) -> None:
        """Drop the map (arrays returned with ``copy=False`` keep it alive until they are freed)."""
        self._map = None

    def __enter__(self) -> SafetensorsFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self):
        return iter(self.keys())

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __repr__(self) -> str:
        return f"SafetensorsFile({self.path!r}, {len(self._entries)} tensors)"


def safe_open(path: str | os.PathLike, framework: str = "np", device: str = "cpu") -> SafetensorsFile:
    """The ``safetensors`` library's entry point: ``with safe_open(p, "np") as f: f.get_tensor(k)``."""
    if framework not in ("np", "numpy") or device != "cpu":
        raise ValueError(f"safe_open: nnforge reads NumPy arrays on the CPU (framework='np', device='cpu'), "
                         f"got framework={framework!r}, device={device!r}")
    return SafetensorsFile(path)


def read(path: str | os.PathLike) -> tuple[dict, dict]:
    """Read ``path`` into ``({name: NumPy array}, metadata)``. Arrays are fresh copies in native byte
    order (nothing stays mapped to the file); BF16 becomes float32."""
    with SafetensorsFile(path) as f:
        return {name: f.get_tensor(name) for name in f}, f.metadata()
