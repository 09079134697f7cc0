"""Vectorised NumPy dequantisation of ggml tensor types (as stored in GGUF files).

Every kernel views the raw bytes as an array of ggml blocks (a structured dtype, so each field is a strided
view, no copy) and computes all blocks at once; the arithmetic follows ggml's ``dequantize_row_*`` in float32,
operation for operation, so results match llama.cpp and gguf-py bit for bit.

Block layouts (``QK`` elements per block, little-endian):
- ``Q8_0``: fp16 ``d``, 32 x int8 ``q``                       -> ``d * q``
- ``Q4_0``: fp16 ``d``, 16 bytes of nibbles                   -> ``(q - 8) * d``; low nibbles are elements 0..15,
  high nibbles elements 16..31
- ``Q4_1``: fp16 ``d``, fp16 ``m``, 16 bytes of nibbles       -> ``q * d + m``
- ``Q5_0`` / ``Q5_1``: as Q4 plus a 32-bit mask of fifth bits -> ``(q - 16) * d`` / ``q * d + m``
- ``Q4_K``: 256 elements = 8 sub-blocks of 32 with 6-bit scales and mins packed in 12 bytes
- ``Q6_K``: 256 elements = 16 groups of 16 with int8 scales; 4 low bits in ``ql``, 2 high bits in ``qh``
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

__all__ = ["GGMLType", "GGML_BLOCK_LAYOUT", "DEQUANTIZABLE", "bf16_to_float32", "ggml_nbytes", "dequantize"]


class GGMLType(IntEnum):
    """ggml tensor types, with the numbers GGUF files store (gaps are types ggml removed)."""

    F32 = 0
    F16 = 1
    Q4_0 = 2
    Q4_1 = 3
    Q5_0 = 6
    Q5_1 = 7
    Q8_0 = 8
    Q8_1 = 9
    Q2_K = 10
    Q3_K = 11
    Q4_K = 12
    Q5_K = 13
    Q6_K = 14
    Q8_K = 15
    IQ2_XXS = 16
    IQ2_XS = 17
    IQ3_XXS = 18
    IQ1_S = 19
    IQ4_NL = 20
    IQ3_S = 21
    IQ2_S = 22
    IQ4_XS = 23
    I8 = 24
    I16 = 25
    I32 = 26
    I64 = 27
    F64 = 28
    IQ1_M = 29
    BF16 = 30
    TQ1_0 = 34
    TQ2_0 = 35
    MXFP4 = 39


_QK_K = 256
# type -> (elements per block, bytes per block); from ggml's type traits.  Known sizes let the reader validate
# the layout of every tensor in a file, even those it cannot dequantise.
GGML_BLOCK_LAYOUT: dict[GGMLType, tuple[int, int]] = {
    GGMLType.F32: (1, 4),
    GGMLType.F16: (1, 2),
    GGMLType.Q4_0: (32, 2 + 16),
    GGMLType.Q4_1: (32, 2 + 2 + 16),
    GGMLType.Q5_0: (32, 2 + 4 + 16),
    GGMLType.Q5_1: (32, 2 + 2 + 4 + 16),
    GGMLType.Q8_0: (32, 2 + 32),
    GGMLType.Q8_1: (32, 4 + 4 + 32),
    GGMLType.Q2_K: (_QK_K, 2 + 2 + _QK_K // 16 + _QK_K // 4),
    GGMLType.Q3_K: (_QK_K, 2 + _QK_K // 4 + _QK_K // 8 + 12),
    GGMLType.Q4_K: (_QK_K, 2 + 2 + _QK_K // 2 + 12),
    GGMLType.Q5_K: (_QK_K, 2 + 2 + _QK_K // 2 + _QK_K // 8 + 12),
    GGMLType.Q6_K: (_QK_K, 2 + _QK_K // 2 + _QK_K // 4 + _QK_K // 16),
    GGMLType.Q8_K: (_QK_K, 4 + _QK_K + _QK_K // 8),
    GGMLType.IQ2_XXS: (_QK_K, 2 + _QK_K // 4),
    GGMLType.IQ2_XS: (_QK_K, 2 + _QK_K // 4 + _QK_K // 32),
    GGMLType.IQ3_XXS: (_QK_K, 2 + _QK_K // 4 + _QK_K // 8),
    GGMLType.IQ1_S: (_QK_K, 2 + _QK_K // 8 + _QK_K // 16),
    GGMLType.IQ4_NL: (32, 2 + 16),
    GGMLType.IQ3_S: (_QK_K, 2 + _QK_K // 4 + _QK_K // 8 + _QK_K // 32 + 4),
    GGMLType.IQ2_S: (_QK_K, 2 + _QK_K // 4 + _QK_K // 16),
    GGMLType.IQ4_XS: (_QK_K, 2 + 2 + _QK_K // 2 + _QK_K // 64),
    GGMLType.I8: (1, 1),
    GGMLType.I16: (1, 2),
    GGMLType.I32: (1, 4),
    GGMLType.I64: (1, 8),
    GGMLType.F64: (1, 8),
    GGMLType.IQ1_M: (_QK_K, _QK_K // 8 + _QK_K // 16 + _QK_K // 32),
    GGMLType.BF16: (1, 2),
    GGMLType.TQ1_0: (_QK_K, 2 + 4 * 13),
    GGMLType.TQ2_0: (_QK_K, 2 + 64),
    GGMLType.MXFP4: (32, 1 + 16),
}

# Plain (unquantised) types: the bytes are the values.
_PLAIN = {GGMLType.F32: "<f4", GGMLType.F16: "<f2", GGMLType.F64: "<f8", GGMLType.I8: "i1",
          GGMLType.I16: "<i2", GGMLType.I32: "<i4", GGMLType.I64: "<i8"}

_F32 = np.float32


def bf16_to_float32(bits: np.ndarray) -> np.ndarray:
    """Widen bfloat16 values, given as their uint16 bit patterns, to float32 (exact: bf16 is float32's top half)."""
    bits = np.asarray(bits)
    if bits.dtype.kind != "u" or bits.dtype.itemsize != 2:
        raise TypeError(f"bf16_to_float32 expects uint16 bit patterns, got dtype {bits.dtype}")
    return (bits.astype(np.uint32) << 16).view(_F32)


def ggml_nbytes(ggml_type: int, shape: tuple[int, ...]) -> int:
    """Bytes a tensor of ``shape`` (row-major; the last axis is ggml's innermost) takes in ``ggml_type``.

    Raises ValueError when the innermost dimension is not a whole number of blocks.
    """
    block, nbytes = GGML_BLOCK_LAYOUT[GGMLType(ggml_type)]
    n = 1
    for dim in shape:
        n *= int(dim)
    inner = int(shape[-1]) if shape else 1
    if inner % block:
        raise ValueError(f"{GGMLType(ggml_type).name} tensor of shape {tuple(shape)}: the innermost dimension "
                         f"({inner}) must be a multiple of the block size {block}")
    return n // block * nbytes


def _nibbles(qs: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Unpack (nb, 16) bytes into out (nb, 32): low nibbles to elements 0..15, high nibbles to 16..31."""
    np.bitwise_and(qs, 15, out=out[:, :16], casting="unsafe")
    np.right_shift(qs, 4, out=out[:, 16:], casting="unsafe")
    return out


def _q8_0(raw: np.ndarray) -> np.ndarray:
    b = raw.view(np.dtype([("d", "<f2"), ("q", "i1", 32)]))
    return b["d"].astype(_F32)[:, None] * b["q"]


def _q4_0(raw: np.ndarray) -> np.ndarray:
    b = raw.view(np.dtype([("d", "<f2"), ("q", "u1", 16)]))
    out = _nibbles(b["q"], np.empty((len(b), 32), _F32))
    out -= 8
    out *= b["d"].astype(_F32)[:, None]
    return out


def _q4_1(raw: np.ndarray) -> np.ndarray:
    b = raw.view(np.dtype([("d", "<f2"), ("m", "<f2"), ("q", "u1", 16)]))
    out = _nibbles(b["q"], np.empty((len(b), 32), _F32))
    out *= b["d"].astype(_F32)[:, None]
    out += b["m"].astype(_F32)[:, None]
    return out


def _fifth_bits(qh: np.ndarray) -> np.ndarray:
    """(nb, 4) bytes of a little-endian uint32 mask -> (nb, 32) values 0 or 16 (bit j belongs to element j)."""
    bits = np.unpackbits(qh, axis=1, bitorder="little")  # bit j of the uint32 is element j
    return bits.astype(np.uint8) << 4


def _q5_0(raw: np.ndarray) -> np.ndarray:
    b = raw.view(np.dtype([("d", "<f2"), ("qh", "u1", 4), ("q", "u1", 16)]))
    out = _nibbles(b["q"], np.empty((len(b), 32), _F32))
    out += _fifth_bits(b["qh"])
    out -= 16
    out *= b["d"].astype(_F32)[:, None]
    return out


def _q5_1(raw: np.ndarray) -> np.ndarray:
    b = raw.view(np.dtype([("d", "<f2"), ("m", "<f2"), ("qh", "u1", 4), ("q", "u1", 16)]))
    out = _nibbles(b["q"], np.empty((len(b), 32), _F32))
    out += _fifth_bits(b["qh"])
    out *= b["d"].astype(_F32)[:, None]
    out += b["m"].astype(_F32)[:, None]
    return out


def _q4_k(raw: np.ndarray) -> np.ndarray:
    b = raw.view(np.dtype([("d", "<f2"), ("dmin", "<f2"), ("scales", "u1", 12), ("q", "u1", 128)]))
    nb = len(b)
    s = b["scales"]
    # 6-bit scale and min of each of the 8 sub-blocks (ggml's get_scale_min_k4)
    sc = np.empty((nb, 8), np.uint8)
    mn = np.empty((nb, 8), np.uint8)
    sc[:, :4] = s[:, 0:4] & 63
    mn[:, :4] = s[:, 4:8] & 63
    sc[:, 4:] = (s[:, 8:12] & 15) | ((s[:, 0:4] >> 6) << 4)
    mn[:, 4:] = (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)
    d = b["d"].astype(_F32)[:, None] * sc  # (nb, 8) float32
    m = b["dmin"].astype(_F32)[:, None] * mn
    # 4 chunks of 32 bytes: low nibbles are sub-block 2j, high nibbles sub-block 2j + 1
    q = b["q"].reshape(nb, 4, 1, 32)
    out = np.empty((nb, 4, 2, 32), _F32)
    np.bitwise_and(q, 15, out=out[:, :, :1], casting="unsafe")
    np.right_shift(q, 4, out=out[:, :, 1:], casting="unsafe")
    out = out.reshape(nb, 8, 32)
    out *= d[:, :, None]
    out -= m[:, :, None]
    return out.reshape(nb, 256)


def _q6_k(raw: np.ndarray) -> np.ndarray:
    b = raw.view(np.dtype([("ql", "u1", 128), ("qh", "u1", 64), ("scales", "i1", 16), ("d", "<f2")]))
    nb = len(b)
    ql = b["ql"].reshape(nb, 2, 64)  # two halves of 128 elements
    qh = b["qh"].reshape(nb, 2, 1, 32)
    q = np.empty((nb, 2, 128), np.uint8)
    np.bitwise_and(ql, 15, out=q[:, :, :64])  # elements 0..63 of a half: low nibbles
    np.right_shift(ql, 4, out=q[:, :, 64:])  # elements 64..127: high nibbles
    # 2 high bits: element 32k + l of a half takes bits 2k, 2k+1 of qh[l]
    high = (qh >> np.array([0, 2, 4, 6], np.uint8).reshape(1, 1, 4, 1)) & 3
    q |= (high << 4).reshape(nb, 2, 128)
    vals = q.view(np.int8).astype(_F32).reshape(nb, 16, 16)
    vals -= 32
    vals *= (b["d"].astype(_F32)[:, None] * b["scales"])[:, :, None]  # one scale per 16 elements, in order
    return vals.reshape(nb, 256)


_KERNELS = {GGMLType.Q8_0: _q8_0, GGMLType.Q4_0: _q4_0, GGMLType.Q4_1: _q4_1, GGMLType.Q5_0: _q5_0,
            GGMLType.Q5_1: _q5_1, GGMLType.Q4_K: _q4_k, GGMLType.Q6_K: _q6_k}

DEQUANTIZABLE = frozenset(_PLAIN) | {GGMLType.BF16} | frozenset(_KERNELS)


def dequantize(raw, ggml_type: int, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    """Decode the bytes of one ggml tensor into a new array of ``shape`` (row-major) and ``dtype``.

    Args:
        raw: the tensor's bytes (bytes, memoryview, mmap slice or uint8 array), exactly ``ggml_nbytes`` long.
        ggml_type: a ``GGMLType``.
        shape: row-major shape (GGUF's dims reversed).
        dtype: result dtype; quantised types are decoded in float32 first, plain types are cast directly.

    Example:
        >>> dequantize(np.zeros(34, np.uint8), GGMLType.Q8_0, (32,)).shape
        (32,)
    """
    ggml_type = GGMLType(ggml_type)
    shape = tuple(int(d) for d in shape)
    expected = ggml_nbytes(ggml_type, shape)
    raw = np.frombuffer(raw, np.uint8) if not isinstance(raw, np.ndarray) else raw.reshape(-1)
    if raw.dtype != np.uint8 or raw.size != expected:
        raise ValueError(f"dequantize {ggml_type.name} {shape}: expected {expected} bytes of uint8, "
                         f"got {raw.size} of {raw.dtype}")
    if ggml_type in _PLAIN:
        return raw.view(_PLAIN[ggml_type]).astype(dtype).reshape(shape)
    if ggml_type == GGMLType.BF16:
        return bf16_to_float32(raw.view("<u2")).astype(dtype, copy=False).reshape(shape)
    kernel = _KERNELS.get(ggml_type)
    if kernel is None:
        names = ", ".join(sorted(t.name for t in DEQUANTIZABLE))
        raise NotImplementedError(f"dequantising ggml type {ggml_type.name} is not supported (supported: {names})")
    return kernel(raw).astype(dtype, copy=False).reshape(shape)
