"""GGUF (llama.cpp's checkpoint format, versions 2 and 3, little-endian) reader.

Layout: ``"GGUF"``, uint32 version, uint64 tensor_count, uint64 kv_count, then kv_count metadata entries
(string key, uint32 value type, value), then tensor_count tensor infos (string name, uint32 n_dims, uint64 dims
innermost first, uint32 ggml type, uint64 offset relative to the data section), then padding to
``general.alignment`` (default 32) and the data section.  Strings are a uint64 byte length + UTF-8 bytes.

The file is memory-mapped: tensors are decoded straight from the mapping, so a large file is never read twice.
Every count, length, type and offset is checked against the file size before anything is allocated from it,
so a truncated or hostile file raises ``ValueError`` naming the file and the field, quickly.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np

from .quant import GGMLType, dequantize, ggml_nbytes

__all__ = ["GGUFReader", "GGUFTensorInfo", "load_gguf"]

_MAGIC = b"GGUF"
_MAX_DIMS = 4  # GGML_MAX_DIMS
_MAX_NESTING = 4  # arrays of arrays of ...: enough for any real file, and no recursion bombs
_DEFAULT_ALIGNMENT = 32

# metadata value types: number -> (name, struct format or None)
_U8, _I8, _U16, _I16, _U32, _I32, _F32, _BOOL, _STRING, _ARRAY, _U64, _I64, _F64 = range(13)
_SCALAR_FORMATS = {_U8: "<B", _I8: "<b", _U16: "<H", _I16: "<h", _U32: "<I", _I32: "<i", _F32: "<f",
                   _BOOL: "<B", _U64: "<Q", _I64: "<q", _F64: "<d"}
_ARRAY_DTYPES = {_U8: "u1", _I8: "i1", _U16: "<u2", _I16: "<i2", _U32: "<u4", _I32: "<i4", _F32: "<f4",
                 _BOOL: "u1", _U64: "<u8", _I64: "<i8", _F64: "<f8"}
# smallest encoding of one value of each type: bounds array counts before reading them
_MIN_SIZE = {t: struct.calcsize(f) for t, f in _SCALAR_FORMATS.items()} | {_STRING: 8, _ARRAY: 12}


class GGUFTensorInfo(NamedTuple):
    """Where one tensor lives: ``shape`` is row-major (GGUF's dims reversed); ``offset`` is absolute in the file."""

    name: str
    shape: tuple[int, ...]
    ggml_type: GGMLType
    offset: int
    nbytes: int


class _Cursor:
    """Bounds-checked little-endian reads from the mapped file; errors name the file and the field."""

    def __init__(self, buf, size: int, path: str):
        self.buf, self.size, self.path, self.pos = buf, size, path, 0

    def fail(self, msg: str) -> ValueError:
        return ValueError(f"{self.path}: {msg}")

    def need(self, n: int, field: str) -> None:
        if n > self.size - self.pos:
            raise self.fail(f"truncated or corrupt: {field} needs {n} bytes at offset {self.pos} but the file has "
                            f"only {self.size - self.pos} left (file size {self.size})")

    def scalar(self, fmt: str, field: str):
        n = struct.calcsize(fmt)
        self.need(n, field)
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return value

    def count(self, field: str, min_item: int) -> int:
        """A uint64 count of items, each at least ``min_item`` bytes: checked against the bytes left."""
        n = self.scalar("<Q", field)
        if n * min_item > self.size - self.pos:
            raise self.fail(f"{field} = {n} is impossible: {self.size - self.pos} bytes are left in the file and "
                            f"each item takes at least {min_item}")
        return n

    def string(self, field: str) -> str:
        n = self.count(f"{field} (string length)", 1)
        raw = self.buf[self.pos:self.pos + n]
        self.pos += n
        return raw.decode("utf-8", errors="surrogateescape")

    def strings(self, n: int, field: str) -> list[str]:
        """``n`` strings in a row (tokenizer vocabularies: ~100k of them, so one tight loop)."""
        buf, size, pos, out = self.buf, self.size, self.pos, []
        unpack = struct.Struct("<Q").unpack_from
        for i in range(n):
            if pos + 8 > size:
                self.pos = pos
                self.need(8, f"{field}[{i}] (string length)")
            (length,) = unpack(buf, pos)
            pos += 8
            if length > size - pos:
                self.pos = pos
                raise self.fail(f"{field}[{i}]: string length {length} exceeds the {size - pos} bytes left")
            out.append(buf[pos:pos + length].decode("utf-8", errors="surrogateescape"))
            pos += length
        self.pos = pos
        return out

    def array(self, elem_type: int, n: int, field: str):
        dtype = np.dtype(_ARRAY_DTYPES[elem_type])
        values = np.frombuffer(self.buf, dtype, count=n, offset=self.pos).copy()
        self.pos += n * dtype.itemsize
        return values.astype(bool) if elem_type == _BOOL else values


def _read_value(cur: _Cursor, vtype: int, key: str, depth: int = 0):
    if vtype in _SCALAR_FORMATS:
        value = cur.scalar(_SCALAR_FORMATS[vtype], f"value of {key!r}")
        return bool(value) if vtype == _BOOL else value
    if vtype == _STRING:
        return cur.string(f"value of {key!r}")
    if vtype != _ARRAY:
        raise cur.fail(f"metadata {key!r} has unknown value type {vtype}")
    if depth >= _MAX_NESTING:
        raise cur.fail(f"metadata {key!r}: arrays nested more than {_MAX_NESTING} deep")
    elem_type = cur.scalar("<I", f"array type of {key!r}")
    if elem_type not in _MIN_SIZE:
        raise cur.fail(f"metadata {key!r} is an array of unknown value type {elem_type}")
    n = cur.count(f"array length of {key!r}", _MIN_SIZE[elem_type])
    if elem_type in _ARRAY_DTYPES:
        return cur.array(elem_type, n, key)  # numbers: one NumPy array, no per-element loop
    if elem_type == _STRING:
        return cur.strings(n, f"metadata {key!r}")
    return [_read_value(cur, elem_type, key, depth + 1) for _ in range(n)]


class GGUFReader:
    """Parse a GGUF file's metadata and tensor table; decode tensors on demand.

    Attributes:
        metadata: key -> value (int, float, bool, str; numeric arrays as NumPy arrays, string arrays as lists).
        tensors: name -> ``GGUFTensorInfo`` in file order.
        version, alignment, data_offset: from the header.

    Example:
        >>> r = GGUFReader("model.gguf")                                  # doctest: +SKIP
        >>> r.metadata["llama.block_count"], r.tensors["output_norm.weight"].shape   # doctest: +SKIP
        (30, (576,))
        >>> w = r.get_tensor("blk.0.attn_q.weight")                       # float32, shape (576, 576)  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = os.fspath(path)
        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 24:
                raise ValueError(f"{self.path}: not a GGUF file (only {size} bytes; the header alone takes 24)")
            self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            self._parse(size)
        except BaseException:
            self._mm.close()
            raise

    def _parse(self, size: int) -> None:
        cur = _Cursor(self._mm, size, self.path)
        magic = bytes(self._mm[:4])
        if magic != _MAGIC:
            raise cur.fail(f"not a GGUF file (magic {magic!r}, expected {_MAGIC!r})")
        cur.pos = 4
        version = cur.scalar("<I", "version")
        if version not in (2, 3):
            if version & 0xFFFF == 0 and version >> 24 in (2, 3):
                raise cur.fail("big-endian GGUF files are not supported")
            raise cur.fail(f"unsupported GGUF version {version} (this reader handles versions 2 and 3)")
        self.version = version
        tensor_count = cur.scalar("<Q", "tensor_count")
        kv_count = cur.scalar("<Q", "kv_count")
        left = size - cur.pos
        # a kv takes >= 13 bytes (key length, value type, 1-byte value), a tensor info >= 24
        if kv_count * 13 > left:
            raise cur.fail(f"kv_count = {kv_count} is impossible for a file with {left} bytes after the header")
        if tensor_count * 24 + kv_count * 13 > left:
            raise cur.fail(f"tensor_count = {tensor_count} is impossible for a file with {left} bytes after the "
                           f"header")

        self.metadata: dict[str, Any] = {}
        for i in range(kv_count):
            key = cur.string(f"key of metadata entry {i}")
            if key in self.metadata:
                raise cur.fail(f"duplicate metadata key {key!r}")
            vtype = cur.scalar("<I", f"value type of {key!r}")
            self.metadata[key] = _read_value(cur, vtype, key)

        infos = []
        for i in range(tensor_count):
            name = cur.string(f"name of tensor {i}")
            n_dims = cur.scalar("<I", f"n_dims of tensor {name!r}")
            if n_dims > _MAX_DIMS:
                raise cur.fail(f"tensor {name!r} has n_dims = {n_dims}; ggml allows at most {_MAX_DIMS}")
            cur.need(8 * n_dims, f"dims of tensor {name!r}")
            dims = struct.unpack_from(f"<{n_dims}Q", self._mm, cur.pos)
            cur.pos += 8 * n_dims
            extent = 1  # the elements if no dim were 0: NumPy refuses even an empty array this large
            for d in dims:
                extent *= max(d, 1)
            if extent >= 2**60:  # decoded to at most 8-byte elements, a size must stay below 2**63 bytes
                raise cur.fail(f"tensor {name!r} has absurd dims {list(dims)}")
            type_id = cur.scalar("<I", f"type of tensor {name!r}")
            try:
                ggml_type = GGMLType(type_id)
            except ValueError:
                raise cur.fail(f"tensor {name!r} has unknown ggml type {type_id}") from None
            offset = cur.scalar("<Q", f"offset of tensor {name!r}")
            shape = tuple(reversed(dims))
            try:
                nbytes = ggml_nbytes(ggml_type, shape)
            except ValueError as e:
                raise cur.fail(f"tensor {name!r}: {e}") from None
            infos.append((name, shape, ggml_type, offset, nbytes))

        alignment = self.metadata.get("general.alignment", _DEFAULT_ALIGNMENT)
        if not isinstance(alignment, int) or isinstance(alignment, bool) or alignment <= 0 \
                or alignment & (alignment - 1):
            raise cur.fail(f"general.alignment = {alignment!r} must be a positive power of two")
        self.alignment = alignment
        self.data_offset = -(-cur.pos // alignment) * alignment

        self.tensors: dict[str, GGUFTensorInfo] = {}
        for name, shape, ggml_type, offset, nbytes in infos:
            if name in self.tensors:
                raise cur.fail(f"duplicate tensor name {name!r}")
            if offset % alignment:
                raise cur.fail(f"tensor {name!r}: offset {offset} is not a multiple of the alignment {alignment}")
            start = self.data_offset + offset
            if start + nbytes > size:
                raise cur.fail(f"tensor {name!r} ({ggml_type.name}, shape {shape}, {nbytes} bytes at data offset "
                               f"{offset}) ends at byte {start + nbytes}, beyond the end of the file ({size} bytes)")
            self.tensors[name] = GGUFTensorInfo(name, shape, ggml_type, start, nbytes)
        spans = sorted(self.tensors.values(), key=lambda t: t.offset)
        for a, b in zip(spans, spans[1:]):
            if b.offset < a.offset + a.nbytes:
                raise cur.fail(f"tensors {a.name!r} and {b.name!r} overlap (bytes {a.offset}..{a.offset + a.nbytes} "
                               f"and {b.offset}..{b.offset + b.nbytes})")

    def get_tensor(self, name: str, dtype=np.float32) -> np.ndarray:
        """Decode tensor ``name`` into a new row-major array of ``dtype`` (quantised types are dequantised)."""
        info = self.tensors.get(name)
        if info is None:
            raise KeyError(f"{self.path}: no tensor named {name!r} ({len(self.tensors)} tensors in the file)")
        raw = np.frombuffer(self._mm, np.uint8, count=info.nbytes, offset=info.offset)
        try:
            return dequantize(raw, info.ggml_type, info.shape, dtype)
        except NotImplementedError as e:
            raise NotImplementedError(f"{self.path}: tensor {name!r}: {e}") from None

    def close(self) -> None:
        """Unmap the file (arrays from ``get_tensor`` are copies and stay valid)."""
        try:
            self._mm.close()
        except BufferError:  # a view is still alive (e.g. in the traceback of a failed decode): closed when freed
            pass

    def __enter__(self) -> GGUFReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"GGUFReader({self.path!r}, version={self.version}, {len(self.metadata)} metadata keys, "
                f"{len(self.tensors)} tensors)")


class _LazyTensors(Mapping):
    """name -> array, dequantised on each access (keeps only the mapping open)."""

    def __init__(self, reader: GGUFReader, dtype):
        self._reader, self._dtype = reader, dtype

    def __getitem__(self, name: str) -> np.ndarray:
        return self._reader.get_tensor(name, self._dtype)

    def __iter__(self) -> Iterator[str]:
        return iter(self._reader.tensors)

    def __len__(self) -> int:
        return len(self._reader.tensors)


def load_gguf(path: str | os.PathLike[str], dtype=np.float32) -> tuple[dict[str, Any], Mapping[str, np.ndarray]]:
    """Return ``(metadata, tensors)``; ``tensors`` is a lazy mapping that decodes each tensor when indexed.

    ``dict(tensors)`` materialises everything.  Example:
        >>> meta, tensors = load_gguf("model.gguf")                      # doctest: +SKIP
        >>> tensors["token_embd.weight"].shape                           # doctest: +SKIP
        (49152, 576)
    """
    reader = GGUFReader(path)
    return reader.metadata, _LazyTensors(reader, dtype)
