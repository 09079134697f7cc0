"""Read ``torch.save`` checkpoints (``pytorch_model.bin``, zip format) without torch and without running pickle code.

A ``torch.save`` file is a zip archive ``<name>/data.pkl`` + ``<name>/data/<key>`` (one raw little-endian entry per
storage).  ``data.pkl`` rebuilds tensors with ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``
where each storage is a persistent id ``("storage", torch.FloatStorage, key, location, numel)``.

Unpickling is done by a restricted unpickler: ``find_class`` resolves only the handful of names tensors and state
dicts need (to our own NumPy-based stand-ins, never to torch or anything importable), and the opcodes that call or
mutate objects (REDUCE, NEWOBJ, BUILD, SETITEM(S), APPEND(S), ADDITEMS) accept only those stand-ins and plain
containers.  Anything else raises ``pickle.UnpicklingError`` naming the file and the refused global, before any of it
runs.  Storages are read from a memory map of the file (stored entries) and each tensor is copied out of its
storage into a new contiguous array, so tensors that shared a storage in torch are independent arrays here.
"""

from __future__ import annotations

import collections
import io
import mmap
import os
import pickle
import struct
import zipfile
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from .quant import bf16_to_float32

__all__ = ["load_torch_file", "load_state_dict_file", "bf16_to_float32"]

_MAX_PICKLE_BYTES = 256 << 20  # data.pkl of the largest real checkpoints is a few MB
# A tensor may be larger than its storage only through stride-0 (expanded) dims; cap what such a view may expand to.
_MAX_EXPANSION_BYTES = 256 << 20
_MAX_DIMS = 64
# what zipfile raises for a corrupt archive: bad headers, CRC, bad deflate data, encryption, unknown compression
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError, RuntimeError,
               NotImplementedError, struct.error, ValueError)  # ValueError: undecodable names, bad sizes


class _StorageType:
    """Stand-in for ``torch.FloatStorage`` & co.: only carries the element dtype."""

    __slots__ = ("name", "dtype", "kind")

    def __init__(self, name: str, code: str, kind: str = "plain"):
        self.name, self.dtype, self.kind = name, np.dtype(code), kind  # kind: plain | bf16 | bool

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class _TorchDtype:
    """Stand-in for ``torch.float32``-style dtype objects (appear in some tensor metadata)."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class _Storage:
    __slots__ = ("type", "key", "data")

    def __init__(self, storage_type: _StorageType, key: str, data: np.ndarray):
        self.type, self.key, self.data = storage_type, key, data  # data: 1-D view, storage dtype


_STORAGE_TYPES = {t.name: t for t in (
    _StorageType("FloatStorage", "<f4"), _StorageType("HalfStorage", "<f2"), _StorageType("DoubleStorage", "<f8"),
    _StorageType("BFloat16Storage", "<u2", "bf16"), _StorageType("LongStorage", "<i8"),
    _StorageType("IntStorage", "<i4"), _StorageType("ShortStorage", "<i2"), _StorageType("CharStorage", "i1"),
    _StorageType("ByteStorage", "u1"), _StorageType("BoolStorage", "u1", "bool"))}
_DTYPE_NAMES = ("float32", "float", "float16", "half", "bfloat16", "float64", "double", "int64", "long", "int32",
                "int", "int16", "short", "int8", "uint8", "bool")


class _Loader:
    """State of one load: the file, its zip, the memory map and the storages read so far."""

    def __init__(self, path: str, zf: zipfile.ZipFile, mm: mmap.mmap | None, prefix: str, bf16_as_float32: bool,
                 big_endian: bool):
        self.path, self.zf, self.mm, self.prefix = path, zf, mm, prefix
        self.bf16_as_float32, self.big_endian = bf16_as_float32, big_endian
        self.storages: dict[tuple[str, str], _Storage] = {}
        self.rebuild = self.rebuild_tensor  # one bound-method object: REDUCE checks callables by identity

    def fail(self, msg: str) -> pickle.UnpicklingError:
        return pickle.UnpicklingError(f"{self.path}: {msg}")

    def entry_bytes(self, info: zipfile.ZipInfo, nbytes: int):
        """The first ``nbytes`` of a zip entry: a memory-map view when stored uncompressed, else decompressed."""
        if info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 1 and self.mm is not None:
            size = len(self.mm)
            head = info.header_offset
            if head + 30 > size or self.mm[head:head + 4] != b"PK\x03\x04":
                raise self.fail(f"corrupt zip: bad local header for {info.filename}")
            name_len, extra_len = struct.unpack_from("<HH", self.mm, head + 26)
            start = head + 30 + name_len + extra_len
            if start + info.file_size > size:
                raise self.fail(f"truncated zip: {info.filename} extends past the end of the file")
            return np.frombuffer(self.mm, np.uint8, count=nbytes, offset=start)
        if info.compress_size and info.file_size > 1100 * info.compress_size:
            raise self.fail(f"{info.filename} claims an impossible compression ratio")
        try:
            with self.zf.open(info) as f:
                return np.frombuffer(f.read(nbytes), np.uint8)
        except _ZIP_ERRORS as e:
            raise self.fail(f"corrupt zip entry {info.filename} ({type(e).__name__}: {e})") from e

    def storage(self, pid) -> _Storage:
        """persistent_load: ``("storage", StorageType, key, location, numel)`` -> the storage's data."""
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise self.fail(f"unsupported persistent id {pid!r:.200}")
        _, storage_type, key, location, numel = pid
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str) or not isinstance(location, str) \
                or type(numel) is not int or numel < 0:
            raise self.fail(f"malformed storage persistent id {pid!r:.200}")
        cached = self.storages.get((key, storage_type.name))
        if cached is not None:
            return cached
        name = f"{self.prefix}data/{key}"
        try:
            info = self.zf.getinfo(name)
        except KeyError:
            raise self.fail(f"storage {key!r} has no entry {name!r} in the archive") from None
        nbytes = numel * storage_type.dtype.itemsize
        if nbytes > info.file_size:
            raise self.fail(f"storage {key!r} claims {numel} elements of {storage_type} ({nbytes} bytes) but "
                            f"{name} holds {info.file_size} bytes")
        dtype = storage_type.dtype.newbyteorder(">") if self.big_endian else storage_type.dtype
        data = self.entry_bytes(info, nbytes).view(dtype)
        storage = self.storages[(key, storage_type.name)] = _Storage(storage_type, key, data)
        return storage

    def rebuild_tensor(self, storage, storage_offset, size, stride, *_ignored) -> np.ndarray:
        """``torch._utils._rebuild_tensor_v2``: a copy of the strided view of ``storage``."""
        if not isinstance(storage, _Storage):
            raise self.fail(f"_rebuild_tensor_v2 expects a storage, got {type(storage).__name__}")
        if not (isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride) <= _MAX_DIMS
                and all(type(v) is int and v >= 0 for v in (storage_offset, *size, *stride))):
            raise self.fail(f"_rebuild_tensor_v2: bad offset/size/stride {storage_offset!r}, {size!r:.200}, "
                            f"{stride!r:.200} (storage {storage.key!r})")
        data, itemsize = storage.data, storage.data.dtype.itemsize
        numel = 1
        for s in size:
            numel *= s
        if numel == 0:
            view = np.empty(size, data.dtype)
        else:
            last = storage_offset + sum((s - 1) * st for s, st in zip(size, stride))
            if last >= data.size:
                raise self.fail(f"tensor of size {size} stride {stride} at offset {storage_offset} reads element "
                                f"{last} of storage {storage.key!r}, which has {data.size} elements")
            if numel * itemsize > max(data.nbytes, _MAX_EXPANSION_BYTES):
                raise self.fail(f"tensor of size {size} stride {stride} expands storage {storage.key!r} "
                                f"({data.size} elements) to {numel * itemsize} bytes; refusing")
            view = np.lib.stride_tricks.as_strided(data[storage_offset:], shape=size,
                                                   strides=tuple(st * itemsize for st in stride), writeable=False)
        out = np.array(view, dtype=data.dtype.newbyteorder("="), order="C")  # owned, contiguous, native order
        if storage.type.kind == "bool":
            return out != 0
        if storage.type.kind == "bf16" and self.bf16_as_float32:
            return bf16_to_float32(out)
        return out


def _rebuild_parameter(data, requires_grad, backward_hooks, *_ignored):
    if not isinstance(data, np.ndarray):
        raise pickle.UnpicklingError(f"_rebuild_parameter expects a tensor, got {type(data).__name__}")
    return data


def _allowed_globals(loader: _Loader) -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): loader.rebuild,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    }
    allowed.update({("torch", name): t for name, t in _STORAGE_TYPES.items()})
    allowed.update({("torch", name): _TorchDtype(name) for name in _DTYPE_NAMES})
    return allowed


class _RestrictedUnpickler(pickle._Unpickler):
    """Pure-Python unpickler whose globals, calls and mutations are limited to rebuilding tensors and dicts."""

    class _Dispatch(dict):
        def __missing__(self, opcode: int):
            def refuse(unpickler):
                raise unpickler.loader.fail(f"pickle opcode {bytes([opcode])!r} is not allowed in a checkpoint")
            return refuse

    dispatch = _Dispatch(pickle._Unpickler.dispatch)

    def __init__(self, file, loader: _Loader):
        super().__init__(file)
        self.loader = loader
        self.allowed = _allowed_globals(loader)
        self.callables = (collections.OrderedDict, loader.rebuild, _rebuild_parameter)

    def find_class(self, module: str, name: str):
        obj = self.allowed.get((module, name))
        if obj is None:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from {self.loader.path}: only tensor "
                                         f"data is allowed")
        return obj

    def persistent_load(self, pid):
        return self.loader.storage(pid)

    def load_reduce(self):
        args = self.stack.pop()
        func = self.stack[-1]
        if not any(func is c for c in self.callables) or type(args) is not tuple:
            raise self.loader.fail(f"refusing to call {func!r:.100} while loading: only tensor data is allowed")
        self.stack[-1] = func(*args)

    def load_newobj(self):
        args = self.stack.pop()
        cls = self.stack.pop()
        if cls is not collections.OrderedDict or type(args) is not tuple:
            raise self.loader.fail(f"refusing to instantiate {cls!r:.100} while loading: only tensor data is allowed")
        self.append(collections.OrderedDict.__new__(collections.OrderedDict, *args))

    def load_build(self):
        state = self.stack.pop()
        inst = self.stack[-1]
        # only what OrderedDict.__reduce__ produces: attributes such as a state dict's ``_metadata``
        if type(state) is tuple and len(state) == 2 and state[1] is None:
            state = state[0]
        if type(inst) is not collections.OrderedDict or not isinstance(state, dict) \
                or not all(type(k) is str and not k.startswith("__") for k in state):
            raise self.loader.fail(f"refusing to set state {state!r:.100} on {type(inst).__name__}")
        inst.__dict__.update(state)

    def _target(self, index: int, kinds: tuple[type, ...], opcode: str):
        target = self.stack[index]
        if type(target) not in kinds:
            raise self.loader.fail(f"{opcode} on a {type(target).__name__} is not allowed")
        return target

    def load_setitem(self):
        value = self.stack.pop()
        key = self.stack.pop()
        self._target(-1, (dict, collections.OrderedDict), "SETITEM")[key] = value

    def load_setitems(self):
        items = self.pop_mark()
        target = self._target(-1, (dict, collections.OrderedDict), "SETITEMS")
        for i in range(0, len(items) - 1, 2):
            target[items[i]] = items[i + 1]

    def load_append(self):
        value = self.stack.pop()
        self._target(-1, (list,), "APPEND").append(value)

    def load_appends(self):
        items = self.pop_mark()
        self._target(-1, (list,), "APPENDS").extend(items)

    def load_additems(self):
        items = self.pop_mark()
        self._target(-1, (set,), "ADDITEMS").update(items)

    for _op, _fn in ((pickle.REDUCE, load_reduce), (pickle.NEWOBJ, load_newobj), (pickle.BUILD, load_build),
                     (pickle.SETITEM, load_setitem), (pickle.SETITEMS, load_setitems), (pickle.APPEND, load_append),
                     (pickle.APPENDS, load_appends), (pickle.ADDITEMS, load_additems)):
        dispatch[_op[0]] = _fn
    # arbitrary instantiation, the copyreg registry, and BYTEARRAY8 (allocates its claimed length, up to 2**63,
    # before reading; torch.save never writes it): refused via __missing__
    for _op in (pickle.INST, pickle.OBJ, pickle.NEWOBJ_EX, pickle.EXT1, pickle.EXT2, pickle.EXT4, pickle.BYTEARRAY8):
        del dispatch[_op[0]]
    del _op, _fn


def _open_zip(path: str) -> zipfile.ZipFile:
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:2] != b"PK":
        if head[:1] == b"\x80":
            raise ValueError(f"{path}: legacy (pre-1.6, non-zip) torch.save format is not supported; re-save it "
                             f"with a current torch: torch.save(torch.load(f), f)")
        raise ValueError(f"{path}: not a PyTorch zip checkpoint (starts with {head!r})")
    try:
        return zipfile.ZipFile(path)
    except _ZIP_ERRORS as e:
        raise ValueError(f"{path}: truncated or corrupt zip archive ({e})") from e


def load_torch_file(path: str | os.PathLike[str], *, bf16_as_float32: bool = True) -> Any:
    """Load a ``torch.save`` file: the saved object with every tensor replaced by a NumPy array.

    Args:
        path: a zip-format checkpoint (``pytorch_model.bin``, ``*.pt``, ``*.pth``).
        bf16_as_float32: widen bfloat16 tensors to float32 (exact); False keeps their raw uint16 bit patterns.

    Returns:
        The object structure (dicts, OrderedDicts, lists, tuples, numbers, strings) with tensors as new contiguous
        arrays.  Parameters become plain arrays; tensors that shared storage are copied separately.

    Raises:
        pickle.UnpicklingError: the pickle references anything but tensors and containers (nothing is executed).
        ValueError: the file is not a zip checkpoint, is truncated, or is a TorchScript archive.

    Example:
        >>> sd = load_torch_file("pytorch_model.bin")          # doctest: +SKIP
        >>> sd["embeddings.word_embeddings.weight"].shape      # doctest: +SKIP
        (30522, 384)
    """
    path = os.fspath(path)
    with _open_zip(path) as zf:
        names = zf.namelist()
        if any(n.endswith("/constants.pkl") for n in names):
            raise ValueError(f"{path}: a TorchScript archive (torch.jit.save); only torch.save files are supported")
        pkls = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pkls) != 1:
            raise ValueError(f"{path}: expected one <archive>/data.pkl in the zip, found {pkls or 'none'}")
        prefix = pkls[0][:-len("data.pkl")]
        info = zf.getinfo(pkls[0])
        if info.file_size > _MAX_PICKLE_BYTES:
            raise ValueError(f"{path}: data.pkl is {info.file_size} bytes; a checkpoint's pickle is a few MB")
        try:
            byteorder = zf.read(prefix + "byteorder").strip() if prefix + "byteorder" in names else b"little"
            pickled = zf.read(pkls[0])
        except _ZIP_ERRORS as e:
            raise ValueError(f"{path}: truncated or corrupt zip archive ({e})") from e
        with open(path, "rb") as f:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        loader = _Loader(path, zf, mm, prefix, bf16_as_float32, big_endian=byteorder == b"big")
        try:
            return _RestrictedUnpickler(io.BytesIO(pickled), loader).load()
        except pickle.UnpicklingError as e:
            if path in str(e):
                raise
            raise pickle.UnpicklingError(f"{path}: malformed {pkls[0]}: {e}") from e  # the stdlib's own errors
        except (EOFError, IndexError, KeyError, TypeError, ValueError, AttributeError, struct.error,
                RecursionError, OverflowError) as e:
            raise pickle.UnpicklingError(f"{path}: malformed {pkls[0]}: {type(e).__name__}: {e}") from e
        finally:
            loader.storages.clear()
            try:
                mm.close()
            except BufferError:  # a view escaped (it cannot: tensors are copies); the map closes when collected
                pass


def load_state_dict_file(path: str | os.PathLike[str], *, bf16_as_float32: bool = True) -> dict[str, np.ndarray]:
    """Load a ``torch.save``'d state dict as a flat ``{name: array}`` dict (see ``load_torch_file``).

    Raises ValueError when the file holds anything but a mapping of names to tensors (e.g. a training checkpoint
    ``{"model": state_dict, "optimizer": ...}``: load that with ``load_torch_file`` and pick the entry).
    """
    obj = load_torch_file(path, bf16_as_float32=bf16_as_float32)
    if not isinstance(obj, Mapping):
        raise ValueError(f"{os.fspath(path)}: expected a state dict (a mapping of names to tensors), "
                         f"got {type(obj).__name__}")
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, np.ndarray):
            raise ValueError(f"{os.fspath(path)}: not a flat state dict: entry {key!r} is a {type(value).__name__}, "
                             f"expected a tensor")
    return dict(obj)
