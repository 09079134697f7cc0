"""Fuzz the file readers: every input either loads or raises an ordinary, clear exception.

Readers: safetensors (``read``, ``SafetensorsFile`` + ``get_tensor``), GGUF (``GGUFReader`` + ``get_tensor``),
``torch.save`` zips (``load_torch_file``) and the CSV/TSV/JSONL table reader (``nnforge.data.readers``).
Inputs are small valid files mutated by hypothesis (byte flips, truncations, insertions, integers planted at
random places: huge sizes, offsets and counts) plus structure-aware edits (random JSON headers, GGUF tables
with absurd dims/offsets/counts, mutated pickles re-zipped so that the pickle itself is what gets fuzzed).

Each example must:
- load, or raise one of ``ALLOWED`` whose message names the file (no TypeError/IndexError/RecursionError/
  struct.error/zlib.error/MemoryError/segfault);
- allocate less than ``MEMORY_CAP`` bytes at peak (tracemalloc: Python objects and NumPy buffers);
- finish in ``TIME_CAP`` seconds (a SIGALRM aborts a hang).

Budget: ``NNFORGE_FUZZ_EXAMPLES`` examples per test (default 300, derandomized so CI is reproducible; set it,
e.g. to 10000, for a full randomized run). Counts are printed with ``-s``.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import signal
import tempfile
import time
import tracemalloc
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnforge.io import safetensors_format as stf
from nnforge.io.gguf import GGUFReader
from nnforge.io.quant import GGMLType
from nnforge.io.torch_zip import load_torch_file
from tests.test_io_gguf import (
    ARRAY,
    BOOL,
    FLOAT32,
    I32,
    STRING,
    U8,
    U32,
    U64,
    quantize_q4_0,
    quantize_q4_1,
    quantize_q8_0,
    write_gguf,
)

EXAMPLES = int(os.environ.get("NNFORGE_FUZZ_EXAMPLES", "300"))
MEMORY_CAP = 64 << 20
TIME_CAP = 5.0
ALLOWED = (ValueError, pickle.UnpicklingError, NotImplementedError)  # UnicodeDecodeError, JSONDecodeError: ValueError

FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize="NNFORGE_FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=list(HealthCheck), print_blob=True)
STATS: dict[str, Counter] = {}
WORK = Path(tempfile.mkdtemp(prefix="nnforge-fuzz-"))

INTERESTING = [0, 1, 2, 3, 7, 8, 31, 32, 255, 256, 4095, 65535, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**40, 2**62,
               2**63 - 1, 2**63, 2**64 - 1]


class _Hang(BaseException):
    pass


def _alarm(signum, frame):
    raise _Hang(f"reader ran longer than {4 * TIME_CAP} s")


def _write(data: bytes, suffix: str) -> Path:
    """A fresh file per example (a previous example's memory map may still reference the old inode)."""
    path = WORK / f"fuzz{suffix}"
    if path.exists():
        path.unlink()
    path.write_bytes(data)
    return path


def check(reader: str, data: bytes, suffix: str, load) -> None:
    """Run ``load(path)`` on ``data`` under the memory and time caps; it loads or raises an ALLOWED error."""
    path = _write(data, suffix)
    stats = STATS.setdefault(reader, Counter())
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, 4 * TIME_CAP)
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        load(path)
        stats["loaded"] += 1
    except ALLOWED as e:
        assert path.name in str(e), f"{type(e).__name__} does not name the file: {e}"
        stats["rejected"] += 1
    finally:
        elapsed = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert peak < MEMORY_CAP, f"{reader}: peak allocation {peak} bytes"
    assert elapsed < TIME_CAP, f"{reader}: took {elapsed:.2f} s"


def _report(reader: str) -> None:
    stats = STATS.get(reader, Counter())
    print(f"\nfuzz {reader}: {sum(stats.values())} inputs, {stats['loaded']} loaded, {stats['rejected']} rejected")
    assert sum(stats.values()) > 0


# ---------------------------------------------------------------- generic byte mutations

@st.composite
def mutated(draw, seeds: list[bytes], head: int = 512) -> bytes:
    """A seed with 1-6 mutations, positions biased towards the first ``head`` bytes (where the headers are)."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        n = len(data)
        pos = draw(st.one_of(st.integers(0, max(0, min(n, head) - 1)), st.integers(0, max(0, n - 1))))
        kind = draw(st.sampled_from(["flip", "int", "int", "truncate", "insert", "delete", "dup"]))
        if kind == "flip" and n:
            data[pos] ^= draw(st.integers(1, 255))
        elif kind == "int":
            width = draw(st.sampled_from([1, 2, 4, 8]))
            value = draw(st.one_of(st.sampled_from(INTERESTING), st.integers(0, 2**64 - 1)))
            data[pos:pos + width] = (value % (1 << 8 * width)).to_bytes(width, "little")
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[pos:pos + draw(st.integers(1, 16))]
        elif kind == "dup":
            data[pos:pos] = data[pos:pos + draw(st.integers(1, 64))]
    return bytes(data)


# ---------------------------------------------------------------- safetensors

def _safetensors_seeds() -> list[bytes]:
    rng = np.random.default_rng(0)
    seeds = []
    for tensors in ({"w": rng.standard_normal((3, 4)).astype(np.float32), "b": np.arange(4, dtype=np.int64),
                     "h": np.ones((2, 2), np.float16), "m": np.array([True, False]), "s": np.float64(2.5),
                     "e": np.zeros((0, 3), np.int8)},
                    {"x": np.arange(6, dtype=np.uint8).reshape(2, 3)}):
        path = WORK / "seed.safetensors"
        stf.write(path, tensors, {"format": "np"})
        seeds.append(path.read_bytes())
    return seeds


ST_SEEDS = _safetensors_seeds()


def _load_safetensors(path: Path) -> None:
    arrays, _ = stf.read(path)
    with stf.SafetensorsFile(path, bf16_as_float32=False) as f:
        for name in f:
            a = f.get_tensor(name, copy=False)
            assert a.shape == f.shape_of(name) and a.shape == arrays[name].shape


def _json_values():
    scalars = st.one_of(st.none(), st.booleans(), st.sampled_from(INTERESTING + [-1, -2**63, 2**65, 10**30]),
                        st.integers(), st.floats(), st.text(max_size=8),
                        st.sampled_from(list(stf.DTYPES) + ["f32", "F8", "Q4", ""]))
    return st.recursive(scalars, lambda c: st.one_of(st.lists(c, max_size=5),
                                                     st.dictionaries(st.text(max_size=6), c, max_size=4)),
                        max_leaves=12)


@st.composite
def safetensors_header_edit(draw) -> bytes:
    """A seed whose JSON header has an entry's dtype/shape/data_offsets (or the whole header, or the
    metadata) replaced by arbitrary JSON; the 8-byte length is rewritten to match (or not)."""
    seed = draw(st.sampled_from(ST_SEEDS))
    n = int.from_bytes(seed[:8], "little")
    header, data = json.loads(seed[8:8 + n]), seed[8 + n:]
    target = draw(st.sampled_from(["field", "field", "offsets", "shape", "entry", "whole", "metadata", "add"]))
    names = [k for k in header if k != "__metadata__"]
    name = draw(st.sampled_from(names))
    if target == "field":
        header[name][draw(st.sampled_from(["dtype", "shape", "data_offsets"]))] = draw(_json_values())
    elif target == "offsets":
        big = st.one_of(st.sampled_from(INTERESTING + [-1, 2**65]), st.integers(-10, len(data) + 10))
        header[name]["data_offsets"] = [draw(big), draw(big)]
    elif target == "shape":
        header[name]["shape"] = draw(st.lists(st.one_of(st.sampled_from(INTERESTING + [-1]),
                                                        st.integers(0, 10)), max_size=6))
    elif target == "entry":
        header[name] = draw(_json_values())
    elif target == "whole":
        header = draw(_json_values())
    elif target == "metadata":
        header["__metadata__"] = draw(_json_values())
    else:
        other = draw(st.sampled_from(names))
        header[draw(st.text(max_size=4))] = dict(header[other])  # duplicates an entry: overlap
    blob = json.dumps(header).encode()
    length = len(blob) if draw(st.integers(0, 9)) else draw(st.sampled_from(INTERESTING))
    tail = data if draw(st.booleans()) else data[:draw(st.integers(0, len(data)))]
    return length.to_bytes(8, "little") + blob + tail


@FUZZ
@given(mutated(ST_SEEDS, head=256))
def test_fuzz_safetensors_bytes(data: bytes) -> None:
    check("safetensors", data, ".safetensors", _load_safetensors)


@FUZZ
@given(safetensors_header_edit())
def test_fuzz_safetensors_headers(data: bytes) -> None:
    check("safetensors", data, ".safetensors", _load_safetensors)


def test_safetensors_pathological_headers() -> None:
    deep = b"[" * 200_000 + b"]" * 200_000
    digits = b'{"w": {"dtype": "F32", "shape": [' + b"9" * 5000 + b'], "data_offsets": [0, 4]}}'
    for blob in (deep, digits, b'{"__metadata__": {"a": 1}}', b'"x"', b"\xff\xfe"):
        check("safetensors", len(blob).to_bytes(8, "little") + blob + b"\0" * 8, ".safetensors", _load_safetensors)
    _report("safetensors")


# ---------------------------------------------------------------- GGUF

def _gguf_seed() -> bytes:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 64)).astype(np.float32)
    v = rng.standard_normal(5).astype(np.float32)
    meta = [("general.architecture", STRING, "llama"), ("n", U32, 7), ("f", FLOAT32, 0.5), ("ok", BOOL, True),
            ("ids", ARRAY, (I32, [1, 2, 3])), ("names", ARRAY, (STRING, ["a", "bc"])),
            ("nested", ARRAY, (ARRAY, [(U8, [1, 2])])), ("big", U64, 2**40)]
    table = [("q8", (2, 64), GGMLType.Q8_0, quantize_q8_0(x)), ("q40", (2, 64), GGMLType.Q4_0, quantize_q4_0(x)),
             ("q41", (2, 64), GGMLType.Q4_1, quantize_q4_1(x)), ("f32", (5,), GGMLType.F32, v.tobytes()),
             ("f16", (1, 5), GGMLType.F16, v.astype(np.float16).tobytes())]
    return write_gguf(WORK / "seed.gguf", meta, table).read_bytes()


GGUF_SEEDS = [_gguf_seed()]
_GGML_TYPES = [int(t) for t in GGMLType] + [99, 2**31]


@st.composite
def gguf_structured(draw) -> bytes:
    """A GGUF built from a random table: absurd dims, types, offsets, counts, alignment and metadata."""
    size = st.one_of(st.integers(0, 70), st.sampled_from(INTERESTING))
    meta = [("general.alignment", U32, draw(st.sampled_from([0, 1, 3, 8, 32, 64, 2**31])))] if draw(
        st.booleans()) else []
    meta += draw(st.lists(st.sampled_from([("s", STRING, "x" * 3), ("a", ARRAY, (U64, [1, 2**63])),
                                           ("z", ARRAY, (STRING, [])), ("n", ARRAY, (ARRAY, [(I32, [5])]))]),
                          max_size=3, unique_by=lambda m: m[0]))
    tensors = []
    for i in range(draw(st.integers(0, 4))):
        shape = tuple(d % 2**64 for d in draw(st.lists(size, min_size=0, max_size=5)))
        raw = draw(st.binary(max_size=160))
        tensors.append((f"t{i}", shape, draw(st.sampled_from(_GGML_TYPES)), raw))
    offsets = None
    if tensors and draw(st.booleans()):
        offsets = [draw(st.one_of(st.sampled_from(INTERESTING), st.integers(0, 512))) for _ in tensors]
    counts = None
    if draw(st.integers(0, 4)) == 0:
        counts = (draw(st.sampled_from(INTERESTING)), draw(st.sampled_from(INTERESTING)))
    path = write_gguf(WORK / "gen.gguf", meta, tensors, offsets=offsets, counts=counts,
                      version=draw(st.sampled_from([3, 3, 2, 1, 4])))
    return path.read_bytes()


def _load_gguf(path: Path) -> None:
    with GGUFReader(path) as r:
        for name, info in r.tensors.items():
            assert r.get_tensor(name).shape == info.shape


@FUZZ
@given(mutated(GGUF_SEEDS, head=700))
def test_fuzz_gguf_bytes(data: bytes) -> None:
    check("gguf", data, ".gguf", _load_gguf)


@FUZZ
@given(gguf_structured())
def test_fuzz_gguf_structured(data: bytes) -> None:
    check("gguf", data, ".gguf", _load_gguf)


# ---------------------------------------------------------------- torch.save zips

def _torch_seeds() -> tuple[list[bytes], list[bytes]]:
    """torch.save files (views, shared and expanded storages, bf16, bool, parameters, nested containers) and
    their data.pkl pickles."""
    import torch

    g = torch.Generator().manual_seed(0)
    base = torch.randn(4, 6, generator=g)
    objs = [{"w": base, "t": base.t(), "row": base[1], "h": torch.ones(3, dtype=torch.float16),
             "bf": torch.randn(2, 2, generator=g).to(torch.bfloat16), "i": torch.arange(5), "m": torch.tensor([True])},
            {"model": {"a": torch.nn.Parameter(torch.zeros(2, 3))}, "step": 3, "names": ["x", ("y", 1.5)],
             "e": torch.empty(0, 4), "x": base.expand(3, 4, 6)[0]}]
    files, pickles = [], []
    for obj in objs:
        buf = io.BytesIO()
        torch.save(obj, buf)
        files.append(buf.getvalue())
        with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as zf:
            pickles.append(zf.read(next(n for n in zf.namelist() if n.endswith("data.pkl"))))
    return files, pickles


def _rezip(original: bytes, pkl: bytes, compress: bool) -> bytes:
    """``original`` with its data.pkl replaced (storages kept), stored or deflated."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(original)) as src, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as dst:
        for name in src.namelist():
            dst.writestr(name, pkl if name.endswith("data.pkl") else src.read(name))
    return out.getvalue()


try:
    _TORCH_FILES, _TORCH_PICKLES = _torch_seeds()
except ImportError:  # torch (a test extra) writes the seeds
    _TORCH_FILES = _TORCH_PICKLES = None
needs_torch = pytest.mark.skipif(_TORCH_FILES is None, reason="torch is needed to write the seed files")


def _load_torch(path: Path) -> None:
    load_torch_file(path)


@needs_torch
@FUZZ
@given(mutated(_TORCH_FILES or [b""], head=1 << 16))
def test_fuzz_torch_zip_bytes(data: bytes) -> None:
    check("torch_zip", data, ".bin", _load_torch)


@needs_torch
@FUZZ
@given(st.integers(0, 1), st.data(), st.booleans())
def test_fuzz_torch_pickle(which: int, data, compress: bool) -> None:
    """Mutate data.pkl itself (opcodes, lengths, memo indices) and re-zip it validly."""
    pkl = data.draw(mutated([_TORCH_PICKLES[which]], head=1 << 16))
    check("torch_zip", _rezip(_TORCH_FILES[which], pkl, compress), ".bin", _load_torch)


# ---------------------------------------------------------------- CSV / TSV / JSONL tables

try:
    from nnforge.data import readers as _table_readers
except ImportError:  # pragma: no cover - the data package is optional in older trees
    _table_readers = None

TABLE_SEEDS = [
    b'text,label\n"a ""quoted"" one",1\nplain,0\n"multi\nline",1\n',
    b"\xef\xbb\xbfsentence\tsentiment\nfine\tpos\nbad\tneg\n",
    b'{"text": "hi", "label": 1}\n{"text": "yo \\u00e9", "label": 0, "extra": [1, {"a": null}]}\n\n',
]


def _load_table(fmt: str | None):
    def load(path: Path) -> None:
        table = _table_readers.read_table(path, fmt)
        try:
            _table_readers.detect_columns(table)
        except ValueError as e:  # no usable columns: a DataError naming the file
            assert path.name in str(e), e
    return load


@pytest.mark.skipif(_table_readers is None, reason="nnforge.data.readers is not available")
@FUZZ
@given(mutated(TABLE_SEEDS, head=64), st.sampled_from([None, "csv", "tsv", "jsonl"]),
       st.sampled_from([".csv", ".tsv", ".jsonl", ".txt"]))
def test_fuzz_table_readers(data: bytes, fmt: str | None, suffix: str) -> None:
    check("tables", data, suffix, _load_table(fmt))


@pytest.mark.skipif(_table_readers is None, reason="nnforge.data.readers is not available")
def test_table_readers_pathological_json() -> None:
    for line in (b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
                 b'{"text": "a", "label": ' + b"9" * 5000 + b"}\n"):
        check("tables", line, ".jsonl", _load_table(None))


# ---------------------------------------------------------------- summary

@pytest.mark.parametrize("reader", ["safetensors", "gguf", "torch_zip", "tables"])
def test_fuzz_counts(reader: str) -> None:
    """Prints how many inputs each reader saw in this session (run with ``-s``)."""
    if reader == "tables" and _table_readers is None:
        pytest.skip("nnforge.data.readers is not available")
    if reader not in STATS:
        pytest.skip(f"the {reader} fuzz tests did not run in this session")
    _report(reader)


# ---------------------------------------------------------------- hostile pickles: a matrix of payloads

class _Reduce:
    """Pickles as ``func(*args)``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


class _PidPickler(pickle.Pickler):
    """Puts ``payload`` inside a storage persistent id, where the loader's persistent_load sees it."""

    def __init__(self, file, protocol, payload):
        super().__init__(file, protocol)
        self.payload = payload

    def persistent_id(self, obj):
        return ("storage", self.payload, "0", "cpu", 1) if obj is _PID_MARK else None


_PID_MARK = object()


def _hostile_matrix(sentinel: Path) -> dict[str, bytes]:
    """Payloads that create ``sentinel`` when an ordinary unpickler loads them: 13 dangerous callables, each
    at the top level, nested in containers, inside a tensor's rebuild arguments and inside a persistent id,
    with pickle protocols 0, 2, 4 and 5; plus hand-written nested-reduce and opcode tricks."""
    import builtins
    import collections
    import os as os_module
    import posix
    import subprocess

    torch_utils = pytest.importorskip("torch._utils")
    s = str(sentinel)
    code = f"open({s!r}, 'w').close()"
    calls = {
        "os.system": (os_module.system, f"touch {s}"), "posix.system": (posix.system, f"touch {s}"),
        "os.popen": (os_module.popen, f"touch {s}"), "os.mkdir": (os_module.mkdir, s),
        "os.makedirs": (os_module.makedirs, s), "builtins.eval": (builtins.eval, code),
        "builtins.exec": (builtins.exec, code), "builtins.open": (builtins.open, s, "w"),
        "io.open": (io.open, s, "w"), "subprocess.Popen": (subprocess.Popen, ["touch", s]),
        "subprocess.call": (subprocess.call, ["touch", s]), "subprocess.run": (subprocess.run, ["touch", s]),
        "subprocess.check_output": (subprocess.check_output, ["touch", s]),
    }
    wrappers = {
        "top": lambda r: r,
        "dict": lambda r: {"weight": r},
        "nested": lambda r: collections.OrderedDict(model={"layers": [(1, r)]}),
        "rebuild-args": lambda r: _Reduce(torch_utils._rebuild_tensor_v2, r, 0, (1,), (1,), False,
                                          collections.OrderedDict()),
    }
    out = {}
    for name, (func, *args) in calls.items():
        for wname, wrap in wrappers.items():
            for protocol in (0, 2, 4, 5):
                blob = pickle.dumps(wrap(_Reduce(func, *args)), protocol=protocol)
                out[f"{name}/{wname}/p{protocol}"] = blob.replace(b"posix\n", b"os\n") if "os." in name else blob
            buf = io.BytesIO()
            _PidPickler(buf, 2, _Reduce(func, *args)).dump({"w": _PID_MARK})
            out[f"{name}/persistent-id/{wname}"] = buf.getvalue()
    t = f"touch {s}".encode()
    out["getattr(__import__('os'), 'system')"] = (b"cbuiltins\ngetattr\n(cbuiltins\n__import__\n(Vos\ntRVsystem\n"
                                                  b"tR(V" + t + b"\ntR.")
    out["INST os.system"] = b"(V" + t + b"\nios\nsystem\n."
    out["OBJ os.system"] = b"(cos\nsystem\nV" + t + b"\no."
    out["NEWOBJ_EX"] = b"\x80\x04cos\nsystem\n)}\x92."
    out["copyreg EXT2"] = b"\x80\x02\x83\x01\x00."
    return out


def test_hostile_pickle_matrix_refused_and_never_run(tmp_path):
    sentinel = tmp_path / "pwned"
    payloads = _hostile_matrix(sentinel)
    refused = 0
    for kind, payload in payloads.items():
        path = tmp_path / "pytorch_model.bin"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("archive/data.pkl", payload)
            zf.writestr("archive/data/0", b"\0" * 4)
        with pytest.raises(pickle.UnpicklingError, match="pytorch_model.bin"):
            load_torch_file(path)
        assert not sentinel.exists(), f"{kind} was executed"
        refused += 1
    print(f"\nhostile pickles refused: {refused} of {len(payloads)}, none executed")
    assert refused >= 200
    # the payloads are real: the stdlib unpickler runs them
    for kind in ("builtins.exec/nested/p2", "builtins.eval/dict/p5", "getattr(__import__('os'), 'system')"):
        pickle.loads(payloads[kind])
        assert sentinel.exists(), kind
        sentinel.unlink()


def test_regressions_found_by_fuzzing(tmp_path):
    """Inputs the full fuzz run found: a BYTEARRAY8 claiming 2**62 bytes (allocated before reading) and a GGUF
    whose unsupported tensor type left a view of the map alive when the reader closed."""
    pkl = b"\x80\x05\x96" + (2**62).to_bytes(8, "little") + b"."
    path = tmp_path / "pytorch_model.bin"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pkl)
    with pytest.raises(pickle.UnpicklingError, match=r"pytorch_model\.bin: .*opcode b'\\x96' is not allowed"):
        load_torch_file(path)
    gguf = write_gguf(tmp_path / "q81.gguf", [], [("t0", (1, 32), GGMLType.Q8_1, b"\0" * 40)])
    with pytest.raises(NotImplementedError, match=r"q81\.gguf: tensor 't0'.*Q8_1"), GGUFReader(gguf) as r:
        r.get_tensor("t0")
