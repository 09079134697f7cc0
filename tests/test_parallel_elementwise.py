"""Large elementwise work split over the cores (the backend's ``unary``/``binary`` and the worker pool under
``parallel_for``): results equal NumPy's unsplit ones bit for bit, gradients match torch, errors propagate."""
from __future__ import annotations

import functools
import os
import threading

import numpy as np
import pytest
import torch

import nnforge as nf
from nnforge.backend import cpu_backend
from nnforge.backend.worker_pool import CompiledTask, WorkerPool, current_cpu

N = 3 * (1 << 19) + 7  # above the split threshold, not a multiple of the core count


@pytest.fixture
def split_slices():
    """Records the per-core calls ``run_parts`` runs while a test runs (``functools.partial`` objects)."""
    parts = []
    original = cpu_backend.run_parts

    def recording(calls):
        parts.extend(calls)
        return original(calls)

    cpu_backend.run_parts = recording
    yield parts
    del cpu_backend.run_parts


def _assert_split(parts):
    """One call per core, and together they cover the output exactly once (its pieces' sizes add up to N)."""
    if cpu_backend.num_threads > 1:
        assert len(parts) == cpu_backend.num_threads, parts
        outs = [call.out if isinstance(call, CompiledTask) else call.keywords["out"] if "out" in (call.keywords or {})
                else call.args[-1] for call in parts]
        assert sum(o.size for o in outs) == N and outs[0].base is not None


@pytest.mark.parametrize("name", ["exp", "log", "sqrt", "abs", "sin", "cos", "tanh"])
def test_large_unary_ops_split_and_equal_numpy(split_slices, name):
    a = np.random.default_rng(0).standard_normal(N).astype(np.float32)
    if name in ("log", "sqrt"):
        a = np.abs(a) + np.float32(0.1)
    out = getattr(nf.from_numpy(a), name)().numpy()
    _assert_split(split_slices)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, getattr(np, name)(a))


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_binary_ops_with_a_single_value_split_in_either_order(split_slices, op):
    """A one-element array of the same dtype and a zero-stride broadcast count as single values; the result
    and its dtype are NumPy's for the unsplit op, with the value on either side."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal(N).astype(np.float32)
    ufunc = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.true_divide}[op]
    one = np.array([1.75], np.float32)
    broadcast = np.broadcast_to(np.float32(-0.5), a.shape)
    for x, y in ((a, one), (one, a), (a, broadcast), (broadcast, a), (a, 3), (2.5, a)):
        split_slices.clear()
        out = cpu_backend.binary(ufunc, x, y)
        _assert_split(split_slices)
        expected = ufunc(x, y)
        assert out.dtype == expected.dtype and out.shape == expected.shape
        np.testing.assert_array_equal(out, expected)


def test_binary_ops_that_cannot_split_still_give_numpys_result(split_slices):
    rng = np.random.default_rng(2)
    a = rng.standard_normal(N).astype(np.float32)
    cases = [(a, a.astype(np.float64)),  # mixed dtypes: float64 result
             (a, np.float64(2.0)),  # a float64 NumPy scalar promotes too
             (a[:-1:2], a[1::2]),  # not contiguous
             (a.reshape(-1, 1)[:1000], a[:1000]),  # broadcasting to a new shape
             (np.ones((2, 1), np.float32), a)]  # a one-element array that adds a dimension
    for x, y in cases:
        expected = np.add(x, y)
        out = cpu_backend.binary(np.add, x, y)
        assert out.dtype == expected.dtype and out.shape == expected.shape
        np.testing.assert_array_equal(out, expected)
    assert split_slices == []
    with pytest.raises(ValueError):
        cpu_backend.binary(np.add, a, a[:-1])


def test_binary_into_out_in_place(split_slices):
    rng = np.random.default_rng(3)
    acc, g = (rng.standard_normal(N).astype(np.float32) for _ in range(2))
    expected = acc + g
    assert cpu_backend.binary(np.add, acc, g, out=acc) is acc
    _assert_split(split_slices)
    np.testing.assert_array_equal(acc, expected)
    wrong = np.empty(N, np.float64)  # an out of another dtype takes NumPy's own path
    expected = np.add(acc, g, out=np.empty_like(wrong))
    np.testing.assert_array_equal(cpu_backend.binary(np.add, acc, g, out=wrong), expected)
    split_slices.clear()
    buf = np.arange(N + 1, dtype=np.float32)
    shifted = np.add(buf[1:], g)  # an input overlapping out shifted by one: NumPy copies it first
    np.testing.assert_array_equal(cpu_backend.binary(np.add, buf[1:], g, out=buf[:-1]), shifted)
    assert split_slices == []  # not split: the two parts would race at the seam


def test_large_mul_sum_backward_and_accumulation_match_torch():
    """mul -> sum -> backward twice: the sum's zero-stride gradient meets the split multiply, and the second
    backward accumulates into .grad in place."""
    rng = np.random.default_rng(4)
    a, b = (rng.standard_normal(N).astype(np.float32) for _ in range(2))
    x, y = nf.from_numpy(a.copy()).requires_grad_(), nf.from_numpy(b.copy()).requires_grad_()
    tx, ty = torch.from_numpy(a).requires_grad_(), torch.from_numpy(b).requires_grad_()
    for _ in range(2):
        (x * y).sum().backward()
        (tx * ty).sum().backward()
        (x.exp() * 0.5).sum().backward()
        (tx.exp() * 0.5).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(y.grad.numpy(), ty.grad.numpy(), rtol=1e-6, atol=1e-6)


@pytest.fixture(params=["polling", "sleeping"])
def pool_kind(request, monkeypatch):
    """Worker pools built with compiled polling (numba) and without (NNFORGE_SPIN_US=0: locks only)."""
    if request.param == "polling":
        pytest.importorskip("numba")
    else:
        monkeypatch.setenv("NNFORGE_SPIN_US", "0")
    return request.param


def test_worker_pool_runs_every_task_and_raises_the_first_error(pool_kind):
    pool = WorkerPool(2, "test-pool")
    assert (pool._workers[0]._spin is not None) == (pool_kind == "polling")
    seen = []
    pool.run([lambda: seen.append(threading.current_thread().name)] * 2, lambda: seen.append("caller"))
    assert sorted(seen) == ["caller", "test-pool-0", "test-pool-1"]

    def boom():
        raise KeyError("worker failed")

    with pytest.raises(KeyError, match="worker failed"):
        pool.run([boom, lambda: None], lambda: None)
    with pytest.raises(ZeroDivisionError):  # the caller's own error first, workers still collected
        pool.run([boom], lambda: 1 / 0)
    seen.clear()
    pool.run([lambda: seen.append(1)], lambda: seen.append(2))  # still usable after errors
    assert sorted(seen) == [1, 2]
    with pytest.raises(ValueError, match="3 tasks for 2 workers"):
        pool.run([lambda: None] * 3, lambda: None)


def test_worker_pool_many_quick_rounds_each_run_exactly_once(pool_kind):
    """Back-to-back rounds (a worker still polling from the last one, or asleep after a pause) never lose,
    repeat or overlap a task."""
    import time
    pool = WorkerPool(1, "rounds-pool")
    counts = np.zeros(2, np.int64)
    for i in range(3000):
        pool.run([lambda: counts.__setitem__(0, counts[0] + 1)], lambda: counts.__setitem__(1, counts[1] + 1))
        assert counts[0] == counts[1] == i + 1
        if i % 500 == 0:
            time.sleep(0.002)  # long enough for the worker to stop polling and sleep


def test_spin_until_sees_a_posted_value_and_gives_up_otherwise():
    pytest.importorskip("numba")
    from nnforge.backend.numba_spin import spin_until, spins_for
    flags = np.zeros(3, np.int64)
    assert not spin_until(flags, 0, 1, 1000)
    flags[2] = 7
    assert spin_until(flags, 2, 7, 10)
    assert spins_for(1e-4) > 0


def test_worker_pool_busy_runs_a_second_callers_tasks_itself():
    pool = WorkerPool(1, "busy-pool")
    inside, release = threading.Event(), threading.Event()
    names = []

    def blocking():
        inside.set()
        release.wait(5)

    first = threading.Thread(target=pool.run, args=([blocking], lambda: None))
    first.start()
    assert inside.wait(5)
    pool.run([lambda: names.append(threading.current_thread().name)], lambda: None)  # pool busy: runs here
    release.set()
    first.join(5)
    assert names == [threading.current_thread().name]


def test_parallel_for_covers_every_item_once_and_nests_serially():
    hits = np.zeros(1001, np.int64)
    outer, inner = [], []

    def body(sl):
        assert sl.stop - sl.start <= 37
        hits[sl] += 1
        outer.append(sl)
        cpu_backend.parallel_for(4, lambda s: inner.append(s), pin_blas=False)

    cpu_backend.parallel_for(hits.size, body, grain=37, pin_blas=False)
    assert (hits == 1).all()
    assert len(inner) == 4 * len(outer)  # each nested call ran all its items (on the thread it was called from)


def test_worker_pool_falls_back_to_locks_when_the_compiled_loop_cannot_run(monkeypatch):
    pytest.importorskip("numba")
    from nnforge.backend import numba_tasks

    def cannot_link(*args):
        raise RuntimeError("symbol not found: sched_yield")

    monkeypatch.setattr(numba_tasks, "serve", cannot_link)
    pool = WorkerPool(1, "fallback-pool")
    assert pool._workers[0]._spin is None
    seen = []
    pool.run([lambda: seen.append(threading.current_thread().name)], lambda: seen.append("caller"))
    assert sorted(seen) == ["caller", "fallback-pool-0"]


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2
                    or current_cpu() < 0 or cpu_backend.num_threads < 2,
                    reason="needs two CPUs this process may use and sched_getcpu (Linux)")
def test_run_parts_runs_the_part_its_cpu_picks_on_the_calling_thread():
    """Two parts: this thread runs the one its CPU number picks (even: the first), a worker the other, as
    run_split divides its pieces, so a half of an array stays with one CPU from op to op."""
    allowed = os.sched_getaffinity(0)
    try:
        for cpu in sorted(allowed)[:2]:
            os.sched_setaffinity(0, {cpu})
            ran_on = [None, None]

            def record(i):
                ran_on[i] = threading.get_ident()

            cpu_backend.run_parts([functools.partial(record, 0), functools.partial(record, 1)])
            assert ran_on[cpu % 2] == threading.get_ident() and ran_on[1 - cpu % 2] not in (None, ran_on[cpu % 2])
    finally:
        os.sched_setaffinity(0, allowed)
