"""Streaming-store arithmetic (``numba_stream``) for ops whose arrays exceed the last-level cache: bit for bit
NumPy's results for every operation, operand mode, length and alignment, and used only for fresh outputs of
large enough ops (``FastKernels``)."""
from __future__ import annotations

import numpy as np
import pytest

import nnforge as nf
from nnforge.backend import cpu_backend

pytest.importorskip("numba")
from nnforge.backend import fast_kernels as fk  # noqa: E402
from nnforge.backend import numba_stream as ns  # noqa: E402
from nnforge.backend import numba_tasks as nt  # noqa: E402

UFUNCS = {ns.ADD: np.add, ns.SUB: np.subtract, ns.MUL: np.multiply, ns.DIV: np.true_divide}


def _offset(a: np.ndarray, k: int) -> np.ndarray:
    """A copy of ``a`` starting k float32 elements past a 64-byte boundary (unaligned for vectors when k > 0)."""
    base = np.empty(a.size + 16 + k, np.float32)
    skip = (-base.ctypes.data % 64) // 4 + k
    out = base[skip:skip + a.size]
    out[...] = a
    return out


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 31, 1000, 4099])
def test_stream_equals_numpy_for_every_operation_mode_and_alignment(n):
    rng = np.random.default_rng(n)
    x = rng.standard_normal(n).astype(np.float32)
    y = rng.standard_normal(n).astype(np.float32)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, 3e38], np.float32)
    x[: min(n, 7)], y[::3] = special[: min(n, 7)], 0.0  # signed zeros, infinities, NaN, a subnormal, overflow
    value = np.array([1.75], np.float32)
    for k in (0, 1, 5):
        xs, ys = _offset(x, k), _offset(y, (k + 3) % 8)
        for operation, ufunc in UFUNCS.items():
            for x_at, x_step, y_at, y_step, left, right in (
                    (xs.ctypes.data, 1, ys.ctypes.data, 1, xs, ys),
                    (xs.ctypes.data, 1, value.ctypes.data, 0, xs, value[0]),
                    (value.ctypes.data, 0, ys.ctypes.data, 1, value[0], ys)):
                out = _offset(np.full(n, np.float32(7)), k)
                ns.stream(operation, x_at, y_at, x_step, y_step, out.ctypes.data, n)
                with np.errstate(all="ignore"):
                    expected = ufunc(left, right)
                np.testing.assert_array_equal(out, np.broadcast_to(expected, (n,)), err_msg=(operation, x_step, k))
        out = _offset(np.zeros(n, np.float32), k)
        ns.stream(ns.CUBE, xs.ctypes.data, xs.ctypes.data, 1, 1, out.ctypes.data, n)
        with np.errstate(all="ignore"):
            np.testing.assert_array_equal(out, xs * xs * xs)


def test_stream_writes_nothing_past_n():
    guard = np.full(64, np.float32(-1))
    x = np.arange(64, dtype=np.float32)
    ns.stream(ns.ADD, x.ctypes.data, x.ctypes.data, 1, 1, guard.ctypes.data + 4, 37)
    np.testing.assert_array_equal(guard[1:38], 2 * x[:37])
    assert guard[0] == -1 and (guard[38:] == -1).all()


def test_cache_sizes_read_from_sysfs(tmp_path):
    assert fk._size_bytes("32768K\n") == 32 << 20 and fk._size_bytes("1M") == 1 << 20
    assert fk._size_bytes("512") == 512
    with pytest.raises(ValueError):
        fk._size_bytes("")
    for name, text in (("index0", "48K"), ("index2", "1024K"), ("index3", "32768K"), ("index9", "n/a")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "size").write_text(text)
    assert fk._last_level_cache_bytes(str(tmp_path / "index*" / "size")) == 32 << 20
    assert fk._last_level_cache_bytes(str(tmp_path / "none*")) == 32 << 20  # the default


@pytest.fixture
def split_calls(monkeypatch):
    """The operation and its arithmetic of every ``backend.run_split`` call while a test runs."""
    calls = []
    real = cpu_backend.run_split

    def recording(op, x, y, out, flag=0, scalar=np.float32(0.0), loop=(0, 0)):
        calls.append((op, loop[0]))
        return real(op, x, y, out, flag, scalar, loop)

    monkeypatch.setattr(cpu_backend, "run_split", recording)
    return calls


@pytest.mark.skipif(not ns.AVAILABLE or cpu_backend.num_threads < 2, reason="streams on x86-64 with a pool worker")
def test_large_fresh_outputs_stream_and_in_place_ones_do_not(split_calls, monkeypatch):
    monkeypatch.setattr(fk, "_STREAMS", True)
    monkeypatch.setattr(fk, "_STREAM_MIN_BYTES", 1 << 20)  # small arrays count as large: a fast test
    rng = np.random.default_rng(3)
    a, b = (rng.standard_normal(3 * (1 << 19) + 7).astype(np.float32) for _ in range(2))
    x, y = nf.from_numpy(a), nf.from_numpy(b)
    cases = [(lambda: x + y, a + b, ns.ADD), (lambda: x - y, a - b, ns.SUB), (lambda: x * 0.1, a * np.float32(0.1),
             ns.MUL), (lambda: 2.5 / y, np.float32(2.5) / b, ns.DIV), (lambda: x ** 3, a * a * a, ns.CUBE)]
    for op, expected, operation in cases:
        split_calls.clear()
        for _ in range(4):  # back to back: the worker polls, and run_split takes the op
            np.testing.assert_array_equal(op().numpy(), expected)
        assert (nt.STREAM, operation) in split_calls, (operation, split_calls)
    split_calls.clear()
    acc = a.copy()
    for _ in range(4):
        cpu_backend.binary(np.add, acc, b, out=acc)  # in place: the output is read anyway, nothing to stream
    assert split_calls and all(op == nt.UFUNC for op, _ in split_calls)
    monkeypatch.setattr(fk, "_STREAMS", False)  # NNFORGE_STREAM_STORES=0
    split_calls.clear()
    for _ in range(4):
        np.testing.assert_array_equal((x + y).numpy(), a + b)
    assert split_calls and all(op == nt.UFUNC for op, _ in split_calls)
