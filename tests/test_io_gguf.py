"""Tests for nnforge.io.gguf / nnforge.io.quant: a test-only GGUF writer and reference (de)quantisers written from
ggml's C loops, broken and hostile files, and the real SmolLM2-135M file (skipped when not fetched)."""

from __future__ import annotations

import struct
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from nnforge.io.fetch_gguf import smollm2_gguf_path
from nnforge.io.gguf import GGUFReader, load_gguf
from nnforge.io.quant import GGML_BLOCK_LAYOUT, GGMLType, dequantize, ggml_nbytes

F16, F32 = np.float16, np.float32

# ---------------------------------------------------------------- test-only GGUF writer

U8, I8, U16, I16, U32, I32, FLOAT32, BOOL, STRING, ARRAY, U64, I64, FLOAT64 = range(13)
_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", FLOAT32: "<f", BOOL: "<?", U64: "<Q",
        I64: "<q", FLOAT64: "<d"}


def _gstr(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def _value(vtype: int, value) -> bytes:
    if vtype == STRING:
        return _gstr(value)
    if vtype == ARRAY:
        elem_type, items = value
        return struct.pack("<IQ", elem_type, len(items)) + b"".join(_value(elem_type, v) for v in items)
    return struct.pack(_FMT[vtype], value)


def write_gguf(path: Path, metadata: list[tuple[str, int, object]], tensors: list[tuple[str, tuple, int, bytes]],
               *, version: int = 3, alignment: int = 32, offsets: list[int] | None = None,
               counts: tuple[int, int] | None = None) -> Path:
    """metadata: (key, value type, value); tensors: (name, row-major shape, ggml type, raw bytes).

    ``offsets`` / ``counts`` override the computed data offsets / (tensor_count, kv_count) to build broken files.
    """
    out = bytearray(b"GGUF" + struct.pack("<I", version))
    out += struct.pack("<QQ", *(counts or (len(tensors), len(metadata))))
    for key, vtype, value in metadata:
        out += _gstr(key) + struct.pack("<I", vtype) + _value(vtype, value)
    data = bytearray()
    auto = []
    for _, _, _, raw in tensors:
        data += b"\0" * (-len(data) % alignment)
        auto.append(len(data))
        data += raw
    for (name, shape, gtype, _), off in zip(tensors, offsets or auto):
        dims = tuple(reversed(shape))
        out += _gstr(name) + struct.pack(f"<I{len(dims)}QIQ", len(dims), *dims, gtype, off)
    out += b"\0" * (-len(out) % alignment)
    path.write_bytes(bytes(out + data))
    return path


# ---------------------------------------------------------------- reference quantisers (ggml's quantize_row_*_ref)


def quantize_q8_0(x: np.ndarray) -> bytes:
    blocks = []
    for blk in x.reshape(-1, 32).astype(F32):
        d = np.abs(blk).max() / 127
        q = np.round(blk / d).astype(np.int8) if d else np.zeros(32, np.int8)
        blocks.append(F16(d).tobytes() + q.tobytes())
    return b"".join(blocks)


def quantize_q4_0(x: np.ndarray) -> bytes:
    blocks = []
    for blk in x.reshape(-1, 32).astype(F32):
        mx = blk[np.argmax(np.abs(blk))]  # signed value of largest magnitude
        d = mx / -8
        inv = 1 / d if d else 0.0
        q = np.minimum(15, (blk * inv + 8.5).astype(np.int8)).astype(np.uint8)
        blocks.append(F16(d).tobytes() + (q[:16] | (q[16:] << 4)).tobytes())
    return b"".join(blocks)


def quantize_q4_1(x: np.ndarray) -> bytes:
    blocks = []
    for blk in x.reshape(-1, 32).astype(F32):
        lo, hi = blk.min(), blk.max()
        d = (hi - lo) / 15
        inv = 1 / d if d else 0.0
        q = np.minimum(15, ((blk - lo) * inv + 0.5).astype(np.int8)).astype(np.uint8)
        blocks.append(F16(d).tobytes() + F16(lo).tobytes() + (q[:16] | (q[16:] << 4)).tobytes())
    return b"".join(blocks)


# ---------------------------------------------------------------- reference dequantisers: ggml's C, element by element


def _f16(b: bytes) -> F32:
    return F32(np.frombuffer(b, "<f2")[0])


def ref_dequant(raw: bytes, gtype: GGMLType) -> np.ndarray:
    """Straight translation of ggml's dequantize_row_* loops (scalar float32 arithmetic); slow, for small inputs."""
    qk, size = GGML_BLOCK_LAYOUT[gtype]
    out = []
    for i in range(0, len(raw), size):
        b = raw[i:i + size]
        y = [F32(0)] * qk
        if gtype == GGMLType.Q8_0:
            d = _f16(b[:2])
            y = [d * F32(np.int8(v)) for v in np.frombuffer(b[2:], np.int8)]
        elif gtype in (GGMLType.Q4_0, GGMLType.Q4_1):
            d = _f16(b[:2])
            m = _f16(b[2:4]) if gtype == GGMLType.Q4_1 else None
            qs = b[4:] if m is not None else b[2:]
            for j in range(16):
                x0, x1 = qs[j] & 0xF, qs[j] >> 4
                if m is None:
                    y[j], y[j + 16] = F32(x0 - 8) * d, F32(x1 - 8) * d
                else:
                    y[j], y[j + 16] = F32(x0) * d + m, F32(x1) * d + m
        elif gtype in (GGMLType.Q5_0, GGMLType.Q5_1):
            d = _f16(b[:2])
            m = _f16(b[2:4]) if gtype == GGMLType.Q5_1 else None
            rest = b[4:] if m is not None else b[2:]
            qh = int.from_bytes(rest[:4], "little")
            qs = rest[4:]
            for j in range(16):
                xh0 = ((qh >> j) << 4) & 0x10
                xh1 = (qh >> (j + 12)) & 0x10
                x0, x1 = (qs[j] & 0xF) | xh0, (qs[j] >> 4) | xh1
                if m is None:
                    y[j], y[j + 16] = F32(x0 - 16) * d, F32(x1 - 16) * d
                else:
                    y[j], y[j + 16] = F32(x0) * d + m, F32(x1) * d + m
        elif gtype == GGMLType.Q4_K:
            d, dmin, sc, q = _f16(b[0:2]), _f16(b[2:4]), b[4:16], b[16:]

            def scale_min(j):
                if j < 4:
                    return sc[j] & 63, sc[j + 4] & 63
                return (sc[j + 4] & 0xF) | ((sc[j - 4] >> 6) << 4), (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4)

            k = 0
            for j in range(4):
                s1, m1 = scale_min(2 * j)
                s2, m2 = scale_min(2 * j + 1)
                d1, mm1, d2, mm2 = d * F32(s1), dmin * F32(m1), d * F32(s2), dmin * F32(m2)
                for ll in range(32):
                    y[k + ll] = d1 * F32(q[32 * j + ll] & 0xF) - mm1
                    y[k + 32 + ll] = d2 * F32(q[32 * j + ll] >> 4) - mm2
                k += 64
        elif gtype == GGMLType.Q6_K:
            ql, qh, sc, d = b[:128], b[128:192], np.frombuffer(b[192:208], np.int8), _f16(b[208:210])
            for n in range(2):
                for ll in range(32):
                    is_ = ll // 16
                    a, h = ql[64 * n:], qh[32 * n:]
                    s = sc[8 * n:]
                    q1 = ((a[ll] & 0xF) | (((h[ll] >> 0) & 3) << 4)) - 32
                    q2 = ((a[ll + 32] & 0xF) | (((h[ll] >> 2) & 3) << 4)) - 32
                    q3 = ((a[ll] >> 4) | (((h[ll] >> 4) & 3) << 4)) - 32
                    q4 = ((a[ll + 32] >> 4) | (((h[ll] >> 6) & 3) << 4)) - 32
                    base = 128 * n
                    y[base + ll] = d * F32(s[is_]) * F32(q1)
                    y[base + ll + 32] = d * F32(s[is_ + 2]) * F32(q2)
                    y[base + ll + 64] = d * F32(s[is_ + 4]) * F32(q3)
                    y[base + ll + 96] = d * F32(s[is_ + 6]) * F32(q4)
        else:
            raise AssertionError(gtype)
        out.extend(y)
    return np.array(out, F32)


def _random_blocks(gtype: GGMLType, n_blocks: int, rng: np.random.Generator) -> bytes:
    """Random block bytes with finite fp16 scale fields (where each type keeps them)."""
    _, size = GGML_BLOCK_LAYOUT[gtype]
    raw = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    scale_bytes = {GGMLType.Q4_1: slice(0, 4), GGMLType.Q5_1: slice(0, 4), GGMLType.Q4_K: slice(0, 4),
                   GGMLType.Q6_K: slice(208, 210)}.get(gtype, slice(0, 2))
    n = scale_bytes.stop - scale_bytes.start
    raw[:, scale_bytes] = rng.standard_normal((n_blocks, n // 2)).astype(F16).view(np.uint8).reshape(n_blocks, n)
    return raw.tobytes()


QUANTISED = [GGMLType.Q8_0, GGMLType.Q4_0, GGMLType.Q4_1, GGMLType.Q5_0, GGMLType.Q5_1, GGMLType.Q4_K, GGMLType.Q6_K]


@pytest.mark.parametrize("gtype", QUANTISED, ids=lambda t: t.name)
def test_kernel_matches_ggml_reference_exactly(gtype: GGMLType) -> None:
    rng = np.random.default_rng(int(gtype))
    qk, _ = GGML_BLOCK_LAYOUT[gtype]
    raw = _random_blocks(gtype, 3 if qk == 256 else 8, rng)
    n = len(raw) // GGML_BLOCK_LAYOUT[gtype][1] * qk
    expected = ref_dequant(raw, gtype)
    got = dequantize(raw, gtype, (n // qk, qk))
    assert got.dtype == np.float32 and got.shape == (n // qk, qk)
    np.testing.assert_array_equal(got.reshape(-1), expected)


@pytest.mark.parametrize("gtype,quantize,tol", [(GGMLType.Q8_0, quantize_q8_0, 1 / 254),
                                                (GGMLType.Q4_0, quantize_q4_0, 1 / 8),  # clamped at 7/8 of the range
                                                (GGMLType.Q4_1, quantize_q4_1, 1 / 28)],
                         ids=lambda v: getattr(v, "name", ""))
def test_reference_quantiser_round_trip(gtype: GGMLType, quantize, tol: float) -> None:
    # checks the element order semantically: dequantised values are close to what was quantised
    x = np.random.default_rng(1).standard_normal((4, 64)).astype(F32)
    raw = quantize(x)
    got = dequantize(raw, gtype, x.shape)
    np.testing.assert_array_equal(got.reshape(-1), ref_dequant(raw, gtype))
    amax = np.abs(x.reshape(-1, 32)).max(axis=1, keepdims=True)
    spread = np.ptp(x.reshape(-1, 32), axis=1, keepdims=True)
    scale = spread if gtype == GGMLType.Q4_1 else amax
    assert np.all(np.abs(got.reshape(-1, 32) - x.reshape(-1, 32)) <= scale * tol * 1.01 + 1e-3)


def test_plain_types_and_dtype_argument() -> None:
    x = np.random.default_rng(2).standard_normal((3, 5)).astype(F32)
    np.testing.assert_array_equal(dequantize(x.tobytes(), GGMLType.F32, (3, 5)), x)
    h = x.astype(F16)
    assert dequantize(h.tobytes(), GGMLType.F16, (3, 5), dtype=np.float16).dtype == np.float16
    np.testing.assert_array_equal(dequantize(h.tobytes(), GGMLType.F16, (3, 5)), h.astype(F32))
    bf = (x.view(np.uint32) >> 16).astype(np.uint16)
    np.testing.assert_array_equal(dequantize(bf.tobytes(), GGMLType.BF16, (3, 5)),
                                  (bf.astype(np.uint32) << 16).view(F32))
    ints = np.arange(-6, 6, dtype=np.int32)
    np.testing.assert_array_equal(dequantize(ints.tobytes(), GGMLType.I32, (12,), dtype=np.int64), ints)


def test_dequantize_errors() -> None:
    with pytest.raises(ValueError, match=r"Q8_0 tensor of shape \(2, 33\).*multiple of the block size 32"):
        dequantize(b"", GGMLType.Q8_0, (2, 33))
    with pytest.raises(ValueError, match="expected 34 bytes"):
        dequantize(b"\0" * 30, GGMLType.Q8_0, (32,))
    with pytest.raises(NotImplementedError, match="IQ2_XXS is not supported"):
        dequantize(b"\0" * ggml_nbytes(GGMLType.IQ2_XXS, (256,)), GGMLType.IQ2_XXS, (256,))


# ---------------------------------------------------------------- files written by the test writer

METADATA = [
    ("general.architecture", STRING, "llama"),
    ("u8", U8, 200), ("i8", I8, -100), ("u16", U16, 60000), ("i16", I16, -30000), ("u32", U32, 4_000_000_000),
    ("i32", I32, -2_000_000_000), ("f32", FLOAT32, 0.5), ("b", BOOL, True), ("u64", U64, 2**63 + 5),
    ("i64", I64, -(2**62)), ("f64", FLOAT64, 0.1), ("unicode", STRING, "héllo ▁wörld"),
    ("ints", ARRAY, (I32, [1, -2, 3])), ("floats", ARRAY, (FLOAT32, [0.25, 1.5])),
    ("flags", ARRAY, (BOOL, [True, False])),
    ("words", ARRAY, (STRING, ["a", "", "Ġthe"])), ("nested", ARRAY, (ARRAY, [(U8, [1, 2]), (STRING, ["x"])])),
    ("empty", ARRAY, (U64, [])),
]


def _tensor_table(rng: np.random.Generator) -> tuple[list, dict[str, np.ndarray]]:
    """Tensors of several types (odd sizes so that padding matters) and their expected float32 values."""
    x = rng.standard_normal((3, 64)).astype(F32)
    v = rng.standard_normal(5).astype(F32)
    table = [("w_q8", (3, 64), GGMLType.Q8_0, quantize_q8_0(x)), ("w_q4_0", (3, 64), GGMLType.Q4_0, quantize_q4_0(x)),
             ("norm", (5,), GGMLType.F32, v.tobytes()), ("w_q4_1", (3, 64), GGMLType.Q4_1, quantize_q4_1(x)),
             ("half", (1, 5), GGMLType.F16, v.astype(F16).tobytes()),
             ("k4", (2, 256), GGMLType.Q4_K, _random_blocks(GGMLType.Q4_K, 2, rng)),
             ("k6", (1, 1, 256), GGMLType.Q6_K, _random_blocks(GGMLType.Q6_K, 1, rng))]
    expected = {name: ref_dequant(raw, t).reshape(shape) if t not in (GGMLType.F32, GGMLType.F16)
                else np.frombuffer(raw, "<f4" if t == GGMLType.F32 else "<f2").astype(F32).reshape(shape)
                for name, shape, t, raw in table}
    return table, expected


@pytest.mark.parametrize("version,alignment", [(3, 32), (2, 32), (3, 64)])
def test_written_file_round_trip(tmp_path: Path, version: int, alignment: int) -> None:
    table, expected = _tensor_table(np.random.default_rng(3))
    meta = METADATA + ([("general.alignment", U32, alignment)] if alignment != 32 else [])
    path = write_gguf(tmp_path / "t.gguf", meta, table, version=version, alignment=alignment)
    with GGUFReader(path) as r:
        assert r.version == version and r.alignment == alignment and r.data_offset % alignment == 0
        md = r.metadata
        for key, vtype, value in METADATA:
            if vtype == FLOAT32:
                assert md[key] == pytest.approx(value)
            elif vtype == ARRAY and value[0] in (I32, FLOAT32, BOOL, U64):
                assert isinstance(md[key], np.ndarray) and md[key].tolist() == value[1], key
            elif key == "nested":
                assert md[key][0].tolist() == [1, 2] and md[key][1] == ["x"]
            elif vtype == ARRAY:
                assert md[key] == value[1], key  # strings: a list
            else:
                assert md[key] == value and type(md[key]) is type(value), key
        assert md["flags"].dtype == bool and md["u64"] == 2**63 + 5
        assert list(r.tensors) == [t[0] for t in table]
        for name, shape, gtype, raw in table:
            info = r.tensors[name]
            assert info.shape == shape and info.ggml_type == gtype and info.nbytes == len(raw)
            np.testing.assert_array_equal(r.get_tensor(name), expected[name], err_msg=name)
        assert r.get_tensor("half", dtype=np.float16).dtype == np.float16
        with pytest.raises(KeyError, match="no tensor named 'nope'"):
            r.get_tensor("nope")
    meta2, tensors = load_gguf(path)
    assert meta2["general.architecture"] == "llama" and len(tensors) == len(table) and "norm" in tensors
    np.testing.assert_array_equal(tensors["w_q4_1"], expected["w_q4_1"])


def test_independent_reader_agrees_with_test_writer(tmp_path: Path) -> None:
    gguf = pytest.importorskip("gguf")
    table, expected = _tensor_table(np.random.default_rng(4))
    path = write_gguf(tmp_path / "t.gguf", METADATA[:13], table)
    ref = gguf.GGUFReader(path)
    for t in ref.tensors:
        got = gguf.quants.dequantize(t.data, t.tensor_type).astype(F32)
        np.testing.assert_array_equal(got.reshape(expected[t.name].shape), expected[t.name])


# ---------------------------------------------------------------- broken and hostile files


def _small_file(tmp_path: Path, **kw) -> Path:
    x = np.ones((2, 32), F32)
    table = [("a", (2, 32), GGMLType.Q8_0, quantize_q8_0(x)), ("b", (2, 32), GGMLType.F32, x.tobytes())]
    return write_gguf(tmp_path / "bad.gguf", [("general.name", STRING, "t"), ("v", ARRAY, (U8, [1, 2, 3]))],
                      table, **kw)


def _expect_error(path: Path, match: str, exc=ValueError) -> None:
    """The reader fails with ``match`` and the file name, fast and without allocating much."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(exc, match=match) as e:
            GGUFReader(path)
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert str(path) in str(e.value)
    assert time.perf_counter() - t0 < 1.0
    assert peak < 4 << 20, peak


def _patch(path: Path, offset: int, data: bytes) -> Path:
    blob = bytearray(path.read_bytes())
    blob[offset:offset + len(data)] = data
    path.write_bytes(bytes(blob))
    return path


def test_truncated_anywhere(tmp_path: Path) -> None:
    good = _small_file(tmp_path).read_bytes()
    GGUFReader(tmp_path / "bad.gguf").close()
    for cut in (3, 10, 30, 60, 100, 150, len(good) - 1):
        path = tmp_path / f"cut{cut}.gguf"
        path.write_bytes(good[:cut])
        _expect_error(path, "not a GGUF file|truncated|impossible|beyond the end of the file")


@pytest.mark.parametrize("field,offset", [("tensor_count", 8), ("kv_count", 16)])
def test_absurd_counts(tmp_path: Path, field: str, offset: int) -> None:
    path = _patch(_small_file(tmp_path), offset, struct.pack("<Q", 2**60))
    _expect_error(path, f"{field} = {2**60} is impossible")


def test_absurd_string_and_array_lengths(tmp_path: Path) -> None:
    path = _patch(_small_file(tmp_path), 24, struct.pack("<Q", 2**60))  # length of the first key
    _expect_error(path, r"key of metadata entry 0 \(string length\) = 1152921504606846976 is impossible")
    blob = _small_file(tmp_path).read_bytes()
    at = blob.index(b"\x01\x02\x03") - 8  # the u8 array's count
    path = _patch(tmp_path / "bad.gguf", at, struct.pack("<Q", 2**60))
    _expect_error(path, "array length of 'v' = 1152921504606846976 is impossible")
    blob = _small_file(tmp_path).read_bytes()
    path = _patch(tmp_path / "bad.gguf", blob.index(b"\x01\x00\x00\x00\x00\x00\x00\x00a"), struct.pack("<Q", 2**60))
    _expect_error(path, r"name of tensor 0 \(string length\)")


def test_offsets_types_and_layout_validated(tmp_path: Path) -> None:
    _expect_error(_small_file(tmp_path, offsets=[0, 1 << 40]), r"tensor 'b' .* beyond the end of the file")
    _expect_error(_small_file(tmp_path, offsets=[0, 64]), "tensors 'a' and 'b' overlap")
    _expect_error(_small_file(tmp_path, offsets=[0, 72]), "offset 72 is not a multiple of the alignment 32")
    x = np.ones(32, F32).tobytes()
    _expect_error(write_gguf(tmp_path / "bad.gguf", [], [("w", (32,), 99, x)]), "tensor 'w' has unknown ggml type 99")
    _expect_error(write_gguf(tmp_path / "bad.gguf", [], [("w", (33,), GGMLType.Q8_0, x)]),
                  r"tensor 'w': .*innermost dimension \(33\) must be a multiple of the block size 32")
    _expect_error(write_gguf(tmp_path / "bad.gguf", [], [("w", (1, 1, 1, 1, 32), GGMLType.F32, x)]),
                  "n_dims = 5")
    _expect_error(write_gguf(tmp_path / "bad.gguf", [], [("w", (1, 2**62, 2**62), GGMLType.F32, x)]), "absurd dims")
    _expect_error(write_gguf(tmp_path / "bad.gguf", [], [("w", (8,), GGMLType.F32, x), ("w", (8,), GGMLType.F32, x)]),
                  "duplicate tensor name 'w'")
    _expect_error(write_gguf(tmp_path / "bad.gguf", [("k", U8, 1), ("k", U8, 2)], []), "duplicate metadata key 'k'")
    _expect_error(write_gguf(tmp_path / "bad.gguf", [("general.alignment", U32, 48)], [], alignment=48),
                  "general.alignment = 48 must be a positive power of two")
    value_type_at = 24 + 8 + 1  # header, then key "k" (length + 1 byte)
    _expect_error(_patch(write_gguf(tmp_path / "bad.gguf", [("k", U8, 1)], []), value_type_at, struct.pack("<I", 13)),
                  "metadata 'k' has unknown value type 13")


def test_header_checks(tmp_path: Path) -> None:
    _expect_error(_patch(_small_file(tmp_path), 0, b"GGML"), "not a GGUF file")
    _expect_error(_patch(_small_file(tmp_path), 4, struct.pack("<I", 1)), "unsupported GGUF version 1")
    _expect_error(_patch(_small_file(tmp_path), 4, struct.pack(">I", 3)), "big-endian")
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    _expect_error(empty, "not a GGUF file")


def test_unsupported_type_reads_but_cannot_dequantise(tmp_path: Path) -> None:
    raw = bytes(ggml_nbytes(GGMLType.IQ2_XXS, (256,)))
    with GGUFReader(write_gguf(tmp_path / "iq.gguf", [], [("w", (256,), GGMLType.IQ2_XXS, raw)])) as r:
        assert r.tensors["w"].ggml_type == GGMLType.IQ2_XXS
        with pytest.raises(NotImplementedError, match=r"iq\.gguf: tensor 'w': .*IQ2_XXS"):
            r.get_tensor("w")


# ---------------------------------------------------------------- the real SmolLM2-135M-Instruct file

SMOL = smollm2_gguf_path()
needs_smol = pytest.mark.skipif(SMOL is None, reason="SmolLM2 GGUF absent; run "
                                "`python -c 'from nnforge.io.fetch_gguf import fetch_smollm2_gguf as f; f()'`")


@needs_smol
def test_smollm2_metadata_and_tensor_table() -> None:
    with GGUFReader(SMOL) as r:
        md = r.metadata
        assert r.version == 3 and md["general.architecture"] == "llama"
        assert md["llama.block_count"] == 30 and md["llama.embedding_length"] == 576
        assert md["llama.attention.head_count"] == 9 and md["llama.attention.head_count_kv"] == 3
        assert md["llama.feed_forward_length"] == 1536 and md["llama.rope.freq_base"] == 100000.0
        tokens = md["tokenizer.ggml.tokens"]
        assert len(tokens) == 49152 and tokens[1] == "<|im_start|>" and tokens[2] == "<|im_end|>"
        assert len(md["tokenizer.ggml.merges"]) == 48900 and md["tokenizer.ggml.merges"][0] == "Ġ t"
        assert md["tokenizer.ggml.token_type"].shape == (49152,)
        assert len(r.tensors) == 1 + 30 * 9 + 1  # embedding, 9 per block, final norm (output tied)
        types = Counter(t.ggml_type for t in r.tensors.values())
        assert types == {GGMLType.Q4_1: 210, GGMLType.Q8_0: 1, GGMLType.F32: 61}
        assert r.tensors["token_embd.weight"].ggml_type == GGMLType.Q8_0
        assert r.tensors["token_embd.weight"].shape == (49152, 576)
        assert r.tensors["blk.0.ffn_down.weight"].shape == (576, 1536)
        assert r.tensors["blk.0.attn_k.weight"].shape == (192, 576)
        assert all(t.ggml_type == GGMLType.F32 for n, t in r.tensors.items() if n.endswith("norm.weight"))


@needs_smol
def test_smollm2_values_are_sane() -> None:
    meta, tensors = load_gguf(SMOL)
    for name in ("token_embd.weight", "blk.0.attn_q.weight", "blk.29.ffn_down.weight", "output_norm.weight"):
        w = tensors[name]
        assert w.dtype == np.float32 and np.isfinite(w).all(), name
    emb = tensors["token_embd.weight"]
    assert 0.05 < emb.std() < 0.5 and abs(emb.mean()) < 0.01
    norm = tensors["output_norm.weight"]
    assert 0.5 < norm.mean() < 4  # RMSNorm gains: positive, order one
    assert (tensors["blk.29.ffn_norm.weight"] > 0).all()


@needs_smol
def test_smollm2_matches_gguf_py() -> None:
    gguf = pytest.importorskip("gguf")
    ref = gguf.GGUFReader(SMOL)
    ours = GGUFReader(SMOL)
    wanted = {"token_embd.weight", "blk.0.attn_q.weight", "blk.7.ffn_gate.weight", "blk.29.attn_v.weight",
              "output_norm.weight"}
    seen = 0
    for t in ref.tensors:
        if t.name in wanted:
            expected = gguf.quants.dequantize(t.data, t.tensor_type).astype(F32)
            np.testing.assert_array_equal(ours.get_tensor(t.name), expected, err_msg=t.name)
            seen += 1
    assert seen == len(wanted)
    assert ref.fields["llama.block_count"].contents() == ours.metadata["llama.block_count"]
    assert ref.fields["tokenizer.ggml.tokens"].contents()[:100] == ours.metadata["tokenizer.ggml.tokens"][:100]
