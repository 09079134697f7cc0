"""Compiled tasks (``numba_tasks``): a polling worker runs its share of a large op without the GIL, calling a
compiled kernel or NumPy's own inner loop (``ufunc_loops``). Results must be the same as on the calling thread
(bit for bit for elementwise ops), whether the worker took the task compiled, through its lock (asleep), or
the two kinds of task alternate; the caller never leaves while the worker still writes."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch

import nnforge as nf
from nnforge.backend import cpu_backend
from nnforge.backend.numpy_backend import _thread_pool
from nnforge.backend.worker_pool import CompiledTask, WorkerPool, current_cpu

pytest.importorskip("numba")
from nnforge.backend import numba_kernels as nk  # noqa: E402
from nnforge.backend import numba_stream as ns  # noqa: E402
from nnforge.backend import numba_tasks as nt  # noqa: E402
from nnforge.backend.ufunc_loops import binary_loop  # noqa: E402

N = 3 * (1 << 19) + 7  # above the split thresholds, not a multiple of the core count
pytestmark = pytest.mark.skipif(cpu_backend.num_threads < 2, reason="needs two cores for a pool worker")


@pytest.fixture
def posts(monkeypatch):
    """Counts the backend pool's compiled posts (``post``, and ``run_split``'s to all workers at once) that the
    workers took ([0]) and refused ([1])."""
    pool = _thread_pool(cpu_backend.num_threads - 1, os.getpid())
    spin = pool._workers[0]._spin
    if spin is None:
        pytest.skip("worker polling is off (NNFORGE_SPIN_US=0)")
    counts = [0, 0]
    for name in ("post", "run_split"):
        def counting(*args, real=getattr(spin, name)):
            taken = real(*args)
            counts[0 if taken else 1] += 1
            return taken

        monkeypatch.setattr(spin, name, counting)
    return counts, spin


def _poll_for(spin, monkeypatch, yield_ns):
    """Sets how long the worker polls after a task, and hands it a Python task so that its next wait has it."""
    monkeypatch.setattr(spin, "yield_ns", yield_ns)
    cpu_backend.run_parts([lambda: None] * cpu_backend.num_threads)


def _ops(rng):
    a = rng.standard_normal(N).astype(np.float32)
    b = rng.standard_normal(N).astype(np.float32)
    b[::997] = 0  # division by zero: inf and NaN as in NumPy
    x, y = nf.from_numpy(a), nf.from_numpy(b)
    with np.errstate(divide="ignore", invalid="ignore"):
        return [
            ("x**3", lambda: x ** 3, a * a * a),
            ("erf", lambda: x.erf(), _one_call(nt.ERF, a)),
            ("gelu", lambda: nf.nn.functional.gelu(x), _one_call(nt.GELU, a)),
            ("gelu tanh", lambda: nf.nn.functional.gelu(x, approximate="tanh"), _one_call(nt.GELU, a, flag=1)),
            ("gelu grad", lambda: nf.from_numpy(_kernels().gelu_grad(b, a, "none")), _one_call(nt.GELU_GRAD, b, a)),
            ("exp kernel", lambda: nf.from_numpy(_kernels().exp(a)), _one_call(nt.EXP, a)),
            ("add", lambda: x + y, a + b), ("sub", lambda: x - y, a - b), ("mul", lambda: x * y, a * b),
            ("div", lambda: x / y, a / b), ("mul value", lambda: x * 0.1, a * np.float32(0.1)),
            ("value sub", lambda: 3 - x, np.float32(3) - a), ("value div", lambda: 2.5 / y, np.float32(2.5) / b),
        ]


def _one_call(op, x, y=None, flag=0):
    """The operation in one call over the whole arrays on this thread (what a small array gets)."""
    out = np.empty_like(x)
    nt.run_elementwise(op, x, x if y is None else y, out, flag)
    return out


def _kernels():
    return cpu_backend.kernels_for(np.empty(1, np.float32))


def test_split_ops_on_a_polling_worker_equal_one_thread_bit_for_bit(posts, monkeypatch):
    counts, spin = posts
    _poll_for(spin, monkeypatch, 10**8)  # polls through the checks between the ops
    for name, op, expected in _ops(np.random.default_rng(0)):
        counts[:] = [0, 0]
        for _ in range(4):  # back to back: the worker is still polling from the last round
            with np.errstate(divide="ignore", invalid="ignore"):
                np.testing.assert_array_equal(op().numpy(), expected, err_msg=name)
        assert counts[0] > 0, (name, counts)


def test_split_ops_reach_a_sleeping_worker_through_its_lock(posts, monkeypatch):
    counts, spin = posts
    _poll_for(spin, monkeypatch, 0)
    ops = _ops(np.random.default_rng(1))
    for name, op, expected in ops:
        counts[:] = [0, 0]
        time.sleep(0.005)  # far past the worker's polling window: it sleeps on its lock
        with np.errstate(divide="ignore", invalid="ignore"):
            np.testing.assert_array_equal(op().numpy(), expected, err_msg=name)
        assert counts[0] == 0 and counts[1] >= 1, (name, counts)  # run_split's refusal, then post's


def test_in_place_binary_ops(posts, monkeypatch):
    counts, spin = posts
    _poll_for(spin, monkeypatch, 10**8)
    rng = np.random.default_rng(2)
    acc, g = (rng.standard_normal(N).astype(np.float32) for _ in range(2))
    expected = acc + g
    for _ in range(3):
        counts[:] = [0, 0]
        copy = acc.copy()
        assert cpu_backend.binary(np.add, copy, g, out=copy) is copy  # out is an input: fine for the loop
        np.testing.assert_array_equal(copy, expected)
        assert counts[0] > 0


def test_sums_and_mul_sum_backward_match_torch(posts, monkeypatch):
    counts, spin = posts
    _poll_for(spin, monkeypatch, 10**8)
    rng = np.random.default_rng(3)
    a, b = (rng.standard_normal(N).astype(np.float32) for _ in range(2))
    rows = rng.standard_normal((4096, 1024)).astype(np.float32)
    x, y = nf.from_numpy(a.copy()).requires_grad_(), nf.from_numpy(b.copy()).requires_grad_()
    tx, ty = torch.from_numpy(a).requires_grad_(), torch.from_numpy(b).requires_grad_()
    counts[:] = [0, 0]
    for _ in range(3):
        (x * y).sum().backward()
        (tx * ty).sum().backward()
        assert abs(nf.from_numpy(rows).sum().item() - torch.from_numpy(rows).sum().item()) < 1e-3
        np.testing.assert_allclose(nf.from_numpy(rows).sum(dim=-1).numpy(), torch.from_numpy(rows).sum(-1).numpy(),
                                   rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(y.grad.numpy(), ty.grad.numpy(), rtol=1e-6, atol=1e-6)
    assert counts[0] > 0


def _cube_task(x, out):
    return CompiledTask(lambda: nk.cube(x, out), nt.CUBE, x, x, out)


def test_compiled_and_python_tasks_alternate_each_run_exactly_once():
    """The worker's state machine: compiled tasks (run in its wait), Python tasks (through its lock) and
    pauses long enough for it to sleep, in any order, never lose, repeat or overlap a task."""
    pool = WorkerPool(1, "tasks-pool")
    if pool._workers[0]._spin is None:
        pytest.skip("worker polling is off (NNFORGE_SPIN_US=0)")
    rng = np.random.default_rng(4)
    x = rng.standard_normal(1 << 12).astype(np.float32)
    counts = np.zeros(2, np.int64)
    for i in range(3000):
        if i % 3:
            out = np.full_like(x, np.nan)
            pool.run([_cube_task(x, out)], lambda: counts.__setitem__(1, counts[1] + 1))
            np.testing.assert_array_equal(out, x * x * x)
        else:
            pool.run([lambda: counts.__setitem__(0, counts[0] + 1)], lambda: counts.__setitem__(1, counts[1] + 1))
        assert counts[0] == (i + 3) // 3 and counts[1] == i + 1
        if i % 400 == 0:
            time.sleep(0.01)  # the worker stops polling and sleeps


def test_an_interrupted_wait_still_waits_for_the_compiled_task(monkeypatch):
    pool = WorkerPool(1, "interrupt-pool")
    spin = pool._workers[0]._spin
    if spin is None:
        pytest.skip("worker polling is off (NNFORGE_SPIN_US=0)")
    x = np.random.default_rng(5).standard_normal(1 << 22).astype(np.float32)
    out = np.full_like(x, np.nan)
    pool.run([_cube_task(x[:8], out[:8])], lambda: None)  # the worker now polls
    real, calls = spin.wait_until, []

    def interrupted_once(*args):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(spin, "wait_until", interrupted_once)
    with pytest.raises(KeyboardInterrupt):
        pool.run([_cube_task(x, out)], lambda: None)
    np.testing.assert_array_equal(out, x * x * x)  # the worker had finished before the interrupt was raised


def test_binary_loop_reads_only_checked_binary_ufunc_loops():
    assert binary_loop(np.add, np.float32) is not None and binary_loop(np.multiply, np.float64) is not None
    assert binary_loop(np.add, np.float32) != binary_loop(np.multiply, np.float32)
    assert binary_loop(np.exp, np.float32) is None  # unary
    assert binary_loop(np.ldexp, np.float32) is None  # no ff->f loop
    assert binary_loop(max, np.float32) is None  # not a ufunc


def test_unaligned_arrays_are_not_handed_to_numpys_loops(posts):
    counts, spin = posts
    raw = np.random.default_rng(6).standard_normal(N + 1).astype(np.float32).tobytes()
    unaligned = np.frombuffer(b"\0" + raw, np.float32, count=N, offset=1)  # float32 values at odd addresses
    assert not unaligned.flags.aligned and unaligned.size == N
    b = np.ones(N, np.float32)
    np.testing.assert_array_equal(cpu_backend.binary(np.add, unaligned, b), unaligned + b)
    assert counts == [0, 0]


def _polling_pool(monkeypatch, workers: int, yield_ns: int, name: str = "split-pool") -> WorkerPool:
    pool = WorkerPool(workers, name)
    if pool._spin is None:
        pytest.skip("worker polling is off (NNFORGE_SPIN_US=0)")
    monkeypatch.setattr(pool._spin, "yield_ns", yield_ns)
    pool.run([lambda: None] * workers, lambda: None)  # the workers' next wait has the new window
    _until_polling(pool)
    return pool


def _until_polling(pool: WorkerPool) -> None:
    """Wait until every worker is back in its compiled wait: after a Python task a worker re-enters it a moment
    after its caller has collected the task (the caller may take the GIL first)."""
    deadline = time.monotonic() + 5
    while not (pool._flags[:, nt.STATE] == nt.POLLING).all():
        assert time.monotonic() < deadline, pool._flags[:, nt.STATE]
        time.sleep(0.0001)


def test_run_split_hands_every_worker_its_piece_in_one_call(monkeypatch):
    pool = _polling_pool(monkeypatch, 2, 10**8)  # two workers (three threads): pieces cut in three
    rng = np.random.default_rng(7)
    a, b = (rng.standard_normal(N).astype(np.float32) for _ in range(2))
    for op, y, flag in ((nt.CUBE, a, 0), (nt.ERF, a, 0), (nt.GELU, a, 1), (nt.GELU_GRAD, b, 0), (nt.EXP, a, 0)):
        out = np.full_like(a, np.nan)
        x = b if op == nt.GELU_GRAD else a  # GELU_GRAD: x the gradient, y the input
        assert pool.run_split(op, x, a if op == nt.GELU_GRAD else y, out, flag)
        np.testing.assert_array_equal(out, _one_call(op, x, a if op == nt.GELU_GRAD else None, flag), err_msg=op)
    # NumPy's loops: both operands arrays, then a single value on either side (order matters for sub and div)
    value = np.float32(2.5)
    for ufunc in (np.subtract, np.divide):
        loop = binary_loop(ufunc, np.float32)
        for mode, x, y, expected in ((nt.ARRAYS, a, b, ufunc(a, b)), (nt.SCALAR_Y, a, a, ufunc(a, value)),
                                     (nt.SCALAR_X, b, b, ufunc(value, b))):
            out = np.full_like(a, np.nan)
            assert pool.run_split(nt.UFUNC, x, y, out, mode, value, loop)
            np.testing.assert_array_equal(out, expected, err_msg=(ufunc, mode))
            # the same with streaming stores, into an output that is not 32-byte aligned
            out = np.full(a.size + 1, np.nan, np.float32)[1:]
            assert pool.run_split(nt.STREAM, x, y, out, mode, value, (ns.SUB if ufunc is np.subtract else ns.DIV, 0))
            np.testing.assert_array_equal(out, expected, err_msg=("stream", ufunc, mode))
    out = np.full_like(a, np.nan)
    assert pool.run_split(nt.STREAM, a, a, out, nt.ARRAYS, value, (ns.CUBE, 0))
    np.testing.assert_array_equal(out, a * a * a)
    assert not pool._busy.locked()


def test_run_split_gives_the_claims_back_when_a_worker_is_not_polling(monkeypatch):
    """run_split claims every worker before posting; when one cannot be claimed it gives back the others'
    claims, posts nothing, and every worker polls on and later stops polling as usual."""
    pool = _polling_pool(monkeypatch, 2, 100_000_000)  # 100 ms windows
    a = np.random.default_rng(8).standard_normal(N).astype(np.float32)
    out = np.full_like(a, np.nan)
    pool._flags[1, nt.STATE] = nt.CLAIMED  # as if another caller held worker 1
    assert not pool.run_split(nt.CUBE, a, a, out, 0)
    assert np.isnan(out).all() and pool._flags[0, nt.STATE] == nt.POLLING  # nothing ran, worker 0's claim given back
    time.sleep(0.15)  # worker 1's window ends while it is claimed: it waits for a post or the claim's return
    pool._flags[1, nt.STATE] = nt.POLLING  # given back
    time.sleep(0.3)  # both workers' windows end: they stop polling (worker 1 would otherwise wait for a post)
    np.testing.assert_array_equal(pool._flags[:, nt.STATE], [nt.AWAY, nt.AWAY])
    assert not pool.run_split(nt.CUBE, a, a, out, 0)  # nobody polls: the caller takes the locks
    done = []
    pool.run([lambda: done.append(1), lambda: done.append(2)], lambda: done.append(0))
    assert sorted(done) == [0, 1, 2]
    _until_polling(pool)
    assert pool.run_split(nt.CUBE, a, a, out, 0)  # polling again after those tasks
    np.testing.assert_array_equal(out, a * a * a)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs two CPUs this process may use (Linux)")
def test_a_worker_on_its_posters_cpu_moves_to_another_and_keeps_its_affinity(monkeypatch):
    """After an idle spell the scheduler at times woke the worker onto the caller's CPU and left both there:
    a worker that finds itself on its poster's CPU moves to another (and keeps the process's affinity)."""
    import threading

    pool = _polling_pool(monkeypatch, 1, 10**8, "move-pool")
    worker = next(t for t in threading.enumerate() if t.name == "move-pool-0")
    allowed = os.sched_getaffinity(0)
    cpu = min(allowed)
    x = np.random.default_rng(9).standard_normal(1 << 16).astype(np.float32)
    out = np.full_like(x, np.nan)
    try:
        os.sched_setaffinity(0, {cpu})  # this thread ...
        os.sched_setaffinity(worker.native_id, {cpu})  # ... and the polling worker on one CPU
        pool.run([_cube_task(x, out)], lambda: None)
    finally:
        os.sched_setaffinity(0, allowed)
    np.testing.assert_array_equal(out, x * x * x)
    assert os.sched_getaffinity(worker.native_id) == allowed  # moved off, then given all CPUs back
    with open(f"/proc/self/task/{worker.native_id}/stat") as f:
        last_cpu = int(f.read().rsplit(")", 1)[1].split()[36])
    assert last_cpu != cpu


def test_max_and_min_over_rows_on_a_polling_worker_match_torch(posts, monkeypatch):
    counts, spin = posts
    _poll_for(spin, monkeypatch, 10**8)
    rows = np.random.default_rng(10).standard_normal((4096, 1024)).astype(np.float32)
    rows[3000, 7] = np.nan  # in the worker's half: NaN as torch's amax/amin give it
    rows[5, 9] = -np.inf
    x, t = nf.from_numpy(rows), torch.from_numpy(rows)
    counts[:] = [0, 0]
    for _ in range(2):
        np.testing.assert_array_equal(x.amax(dim=-1).numpy(), t.amax(-1).numpy())
        np.testing.assert_array_equal(x.amin(dim=-1).numpy(), t.amin(-1).numpy())
        assert np.isnan(x.amax().item()) and np.isnan(x.amin().item())
        np.testing.assert_array_equal(x[:2000].amax().item(), t[:2000].amax().item())
    assert counts[0] > 0


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs two CPUs this process may use (Linux)")
def test_run_split_gives_each_half_to_the_same_cpu_whichever_thread_runs_there(monkeypatch):
    """On two threads the caller takes the half that its CPU number picks (even: the first), the worker the
    other: a half stays with one CPU's caches when the scheduler swaps the two threads."""
    pool = _polling_pool(monkeypatch, 1, 10**8, "piece-pool")
    allowed = os.sched_getaffinity(0)
    x = np.random.default_rng(10).standard_normal(N).astype(np.float32)
    half = nt._cut(N, 1, 2)
    try:
        for cpu in sorted(allowed)[:2]:
            os.sched_setaffinity(0, {cpu})
            out = np.full_like(x, np.nan)
            assert pool.run_split(nt.CUBE, x, x, out, 0)
            np.testing.assert_array_equal(out, x * x * x)
            worker_piece = (pool._descriptors[0, nt.OUT] - out.ctypes.data) // 4, pool._descriptors[0, nt.COLS]
            assert worker_piece == ((half, N - half) if cpu % 2 == 0 else (0, half)), (cpu, worker_piece)
            _until_polling(pool)
    finally:
        os.sched_setaffinity(0, allowed)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs two CPUs this process may use (Linux)")
def test_a_worker_woken_through_its_lock_on_its_callers_cpu_moves_off_before_its_task(monkeypatch):
    """A sleeping worker that its caller's post wakes on the caller's CPU leaves it before running the task (it
    used to run there, after the caller's own share, and poll there for the next post: the first op after an
    idle spell took ~2x as long)."""
    import threading

    pool = _polling_pool(monkeypatch, 1, 1000, "wake-pool")  # a 1 us window after the 30 us: it soon sleeps
    worker = next(t for t in threading.enumerate() if t.name == "wake-pool-0")
    deadline = time.monotonic() + 5
    while pool._flags[0, nt.STATE] != nt.AWAY:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    allowed = os.sched_getaffinity(0)
    cpu = min(allowed)
    ran_on = []
    try:
        os.sched_setaffinity(0, {cpu})  # this thread ...
        os.sched_setaffinity(worker.native_id, {cpu})  # ... and the sleeping worker on one CPU
        pool.run([lambda: ran_on.append(current_cpu())], lambda: None)
    finally:
        os.sched_setaffinity(0, allowed)
    assert len(ran_on) == 1 and ran_on[0] != cpu and ran_on[0] in allowed
    assert os.sched_getaffinity(worker.native_id) == allowed
