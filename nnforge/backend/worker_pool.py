"""Persistent worker threads for ``NumpyBackend.run_parts`` / ``parallel_for``, each handed its task through
two locks, or, while it polls, through shared memory without the GIL.

``concurrent.futures.ThreadPoolExecutor`` costs ~60-90 us per round trip here (a queue, a condition variable
and a Future per task); a lock released by the caller and acquired by a sleeping worker ~20-70 us (a futex wake
each way and, on a VM, an interrupt to wake the idle vCPU). With numba installed (on POSIX systems) threads
poll instead of sleeping for a while: a worker for its next task, first for ``NNFORGE_SPIN_US`` (default 30
us; 0 turns polling off) and then 100 us more yielding its core between polls (``sched_yield``: a BLAS thread
that wants the core gets it), the caller for its workers to finish (up to 200 us, then for a Python task it
sleeps on a lock), yielding its core between spells of ~1 us of polling: a worker that shares its CPU then
runs at once.

The windows count from when the caller collected the worker's last task (up to 2 ms after the worker finished
it, yielding meanwhile), so that a worker that finished its share early is still polling when a caller slowed
down by a busy host posts the next one. A task the worker sees while polling still needed the GIL to start
when it was a Python callable, and the
caller holds the GIL until its own share's kernel starts: the worker slept on the GIL and began its share
~40-50 us after the caller. Tasks that are ``CompiledTask``s (cube, erf, GELU and its gradient, sums, and
NumPy's add/sub/mul/div loops) it runs inside its compiled wait instead (``numba_tasks``), and goes on polling.
The windows were chosen by switching them within one process (paired medians against the previous pool: no
compiled tasks, and a "30 us" window counted in polls calibrated outside the worker's loop, which inside it
lasted 11 us; the windows are now read off the clock): 30 us + 100 us yielding gave 4M-element ``x**3`` 0.95x,
mul+sum forward and backward 0.99x, MiniLM inference 0.99x, fine-tune step 1.00x, LSTM step 0.99x (300 us
yielding: fine-tune 0.97x but the LSTM 1.00x paired with its median 13% up); counted from the collection,
``x**3`` 0.92x, LSTM 1.01x, CNN 1.01x.

Elementwise float32 maps and binary ops whose workers all poll skip even that: ``run_split`` posts every
worker's piece, runs the caller's and waits for the workers in one compiled call (``numba_tasks.run_split``),
since right after a kernel has streamed tens of MB through the caches the Python between a post, the caller's
share and a wait runs ~10x slower than warm (4M ``x**3`` paired 0.90-0.945x, add 0.93-0.94x the time of
``run`` with compiled tasks).

After an idle spell the scheduler at times woke a worker onto its caller's CPU while the other CPU idled, and
left both there for tens of ms: each op then ran its shares one after the other, and the caller, polling for
200 us before it yielded, kept the worker off the CPU as long (4096 x 1024 sums in bench_ops' blocks: 3.0-4.8x
torch's time). A worker that finds itself on its poster's CPU now moves to another (``numba_tasks.serve``);
with that and the yielding wait the sums measured 1.13-1.32x torch's time in the same protocol. It checks when
it wakes from its lock and when it starts polling as well: woken onto the caller's CPU by the first op after an
idle spell, it used to run that task there and poll there, and saw the next post only when the caller, busy with
its own share, left the CPU to it: in 36% of bench_ops-like blocks (20 ms idle, one op, then timed ops) the
first timed 4M ``x**3``'s worker started its share 474 us (median) after the post instead of 1 us.

Polling is only a hint for Python tasks: the locks alone decide who runs (a worker that saw its task still
takes its lock, already released; one that stopped polling sleeps). A compiled task is posted only to a worker
claimed while it polls (``numba_tasks``); otherwise it goes through the lock like a Python task.
"""
from __future__ import annotations

import ctypes
import os
import threading
import time
from typing import Any, Callable

import numpy as np

_SPIN_US = 30  # a worker polls this long for its next task (see above for the trade) ...
_YIELD_US = 100  # ... and this much longer, yielding its core between polls
_COLLECT_US = 2000  # at most this long the worker waits for the caller to collect its last task (numba_tasks)
_CALLER_SPIN_US = 200  # the caller has nothing else to do while the workers finish
_SETTLE_US = 2  # polls after seeing a task before asking for the GIL, which the poster holds a moment longer

# shared with numba_tasks: a worker's flags (int64): sequence numbers of the last task posted, finished and
# collected by the caller (it returned from waiting for it), the worker's polling state, and the CPU the caller
# posted its last compiled task from; a task descriptor's slot for its operation, and the operation that means
# "a Python callable, take the lock"
POSTED, FINISHED, STATE, COLLECTED, CALLER_CPU = range(5)
FLAGS_SIZE = 5
OP, PYTHON = 0, 0

# ``worker_thread.is_worker`` is True on a pool's worker threads: an op they run does not split again (a thread-
# local attribute costs far less than reading the thread's name when the caches are cold after a large op)
worker_thread = threading.local()


class _Spin:
    """The compiled polling functions and their windows; None without numba, off POSIX, or when
    ``NNFORGE_SPIN_US`` is 0."""

    def __new__(cls) -> Any:
        seconds = float(os.environ.get("NNFORGE_SPIN_US", str(_SPIN_US))) * 1e-6
        if seconds <= 0 or os.name != "posix":  # numba_tasks calls sched_yield and clock_gettime
            return None
        try:
            from .numba_spin import spins_for
            from .numba_tasks import DESCRIPTOR_SIZE, WAIT_POLLS, leave_callers_cpu, post, run_split, serve, wait_until
        except ImportError:
            return None
        try:  # compile (or load) the compiled side here, so that a platform where it cannot link (it calls libc's
            # clock_gettime, sched_yield, sched_getcpu, sched_setaffinity) falls back to locks instead of killing
            # the worker thread or failing an op; nothing is posted (no worker polls these flags)
            cpus = _affinity_mask()
            flags, descriptors = np.zeros((1, FLAGS_SIZE), np.int64), np.zeros((1, DESCRIPTOR_SIZE), np.int64)
            flags[:, CALLER_CPU] = -1  # no caller yet: nothing to move off (this thread stays put)
            scalars, x = np.zeros((1, 1), np.float32), np.zeros(1, np.float32)
            serve(flags[0], descriptors[0], scalars[0], 0, 0, 0, 0, time.CLOCK_MONOTONIC, 0, cpus, cpus.copy())
            post(flags[0], descriptors[0], scalars[0], 1, 0, x, x, x, np.float32(0.0), 0, 0, 0)
            run_split(flags, descriptors, scalars, 1, x, x, x, 0, np.float32(0.0), 0, 0, WAIT_POLLS)
            wait_until(flags[0], FINISHED, 0, 0, time.CLOCK_MONOTONIC)
            leave_callers_cpu(flags[0], cpus, cpus.copy())
        except Exception:
            return None
        spin = object.__new__(cls)
        spin.wait_until, spin.wait_polls = wait_until, WAIT_POLLS
        spin.serve, spin.post, spin.run_split, spin.descriptor_size = serve, post, run_split, DESCRIPTOR_SIZE
        spin.leave_callers_cpu = leave_callers_cpu
        spin.cpus = cpus  # the CPUs the workers may run on, as a cpu_set_t (numba_tasks.serve)
        per_us = spins_for(1e-4) / 100
        spin.spin_ns = int(seconds * 1e9)  # a worker, for its next task
        spin.yield_ns = _YIELD_US * 1000  # then yielding the core between polls
        spin.collect_ns = _COLLECT_US * 1000  # (both counted from when the caller collected the last task)
        spin.wait_ns = _CALLER_SPIN_US * 1000  # the caller, for the workers to finish (then it sleeps on a lock)
        spin.settle = max(1, int(per_us * _SETTLE_US))
        return spin


def _affinity_mask() -> np.ndarray:
    """The CPUs this process may run on, as a cpu_set_t: uint64 words, bit i of word w for CPU 64 w + i."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    mask = np.zeros(max(16, cpus[-1] // 64 + 1 if cpus else 0), np.uint64)  # 16 words: glibc's cpu_set_t
    for cpu in cpus:
        mask[cpu // 64] |= np.uint64(1) << np.uint64(cpu % 64)
    return mask


def _sched_getcpu() -> Callable[[], int] | None:
    try:
        function = ctypes.CDLL(None).sched_getcpu  # glibc and musl; absent on macOS and Windows
    except (OSError, AttributeError, TypeError):
        return None
    function.argtypes, function.restype = [], ctypes.c_int
    return function


_SCHED_GETCPU = _sched_getcpu()


def current_cpu() -> int:
    """The CPU this thread runs on now (a hint: the scheduler may move it at any moment), -1 where the C
    library cannot tell. ~0.1 us through ctypes."""
    return _SCHED_GETCPU() if _SCHED_GETCPU is not None else -1


class CompiledTask:
    """A share of an op that a polling worker runs inside its compiled wait, never taking the GIL
    (``numba_tasks``): ``op`` and its operands as ``numba_tasks.post`` takes them, and ``call``, which does the
    same work on any thread (the caller's own share, or a worker that is not polling)."""

    __slots__ = ("call", "op", "x", "y", "out", "scalar", "flag", "loop")

    def __init__(self, call: Callable[[], None], op: int, x: np.ndarray, y: np.ndarray, out: np.ndarray,
                 scalar: np.float32 = np.float32(0.0), flag: int = 0, loop: tuple[int, int] = (0, 0)) -> None:
        self.call, self.op, self.x, self.y, self.out = call, op, x, y, out
        self.scalar, self.flag, self.loop = scalar, flag, loop

    def __call__(self) -> None:
        self.call()


class _Worker:
    def __init__(self, name: str, spin: Any, flags: np.ndarray, descriptor: np.ndarray, scalars: np.ndarray) -> None:
        self._go = threading.Lock()
        self._done = threading.Lock()
        self._go.acquire()
        self._done.acquire()
        self._task: Callable[[], None] | None = None
        self._error: BaseException | None = None
        self._spin = spin
        self._flags, self._descriptor, self._scalars = flags, descriptor, scalars  # rows of the pool's arrays
        self._posted = 0
        self._compiled = False  # whether the task in flight was posted as a compiled task
        threading.Thread(target=self._loop, name=name, daemon=True).start()

    def _loop(self) -> None:
        worker_thread.is_worker = True
        done = 0
        cpus_scratch = self._spin.cpus.copy() if self._spin is not None else None
        while True:
            if self._spin is not None:
                # report the tasks done (after the lock release: a caller that sees it finds the lock free), then
                # run compiled tasks and poll for the next, all without the GIL, until a Python task or a timeout
                spin = self._spin
                done = spin.serve(self._flags, self._descriptor, self._scalars, done, spin.spin_ns, spin.yield_ns,
                                  spin.collect_ns, time.CLOCK_MONOTONIC, spin.settle, spin.cpus, cpus_scratch)
            self._go.acquire()
            if self._spin is not None:  # woken onto the caller's CPU (it posted, then runs its own share there)?
                self._spin.leave_callers_cpu(self._flags, self._spin.cpus, cpus_scratch)
            try:
                self._task()
            except BaseException as e:  # handed to the caller, raised there
                self._error = e
            self._task = None  # drop the closure (and the arrays it holds) before reporting done
            done += 1
            self._done.release()

    def start(self, task: Callable[[], None]) -> None:
        self._posted = int(self._flags[POSTED]) + 1  # the last task may have been posted by WorkerPool.run_split
        spin = self._spin
        self._compiled = (spin is not None and type(task) is CompiledTask
                          and spin.post(self._flags, self._descriptor, self._scalars, self._posted, task.op,
                                        task.x, task.y, task.out, task.scalar, task.flag, *task.loop))
        if self._compiled:
            return
        self._task = task
        self._descriptor[OP] = PYTHON  # a polling worker returns to Python and takes its lock
        self._flags[CALLER_CPU] = current_cpu()  # for the worker to leave this CPU (numba_tasks.leave_callers_cpu)
        self._go.release()
        self._flags[POSTED] = self._posted

    def wait(self) -> BaseException | None:
        spin = self._spin
        if self._compiled:  # the worker runs it without the GIL and will finish: poll for that
            interrupted = None
            while True:
                try:
                    if spin.wait_until(self._flags, FINISHED, self._posted, spin.wait_ns, time.CLOCK_MONOTONIC):
                        self._flags[COLLECTED] = self._posted
                        return interrupted
                except BaseException as e:  # e.g. Ctrl-C: still wait, as the worker writes into arrays we hold
                    interrupted = e
        if spin is not None:
            spin.wait_until(self._flags, FINISHED, self._posted, spin.wait_ns, time.CLOCK_MONOTONIC)
        self._done.acquire()
        self._flags[COLLECTED] = self._posted
        error, self._error = self._error, None
        return error


class WorkerPool:
    """``run(tasks, own)`` runs ``tasks[i]`` on worker ``i`` and ``own`` on the calling thread, concurrently,
    and returns when all are done, raising the first exception (the caller's own first). One caller at a
    time: a second thread that finds the pool busy runs its tasks itself, one after another."""

    def __init__(self, workers: int, name_prefix: str) -> None:
        self._busy = threading.Lock()
        self._spin = spin = _Spin() if workers else None
        # each worker's flags, task descriptor and scalar slot, one row per worker: run_split posts to all in one
        # compiled call. A row of flags is 128 bytes (FLAGS_SIZE used), so that no two workers poll one cache line.
        self._flags = np.zeros((workers, 16), np.int64)
        self._flags[:, CALLER_CPU] = -1  # no caller yet (a worker that starts polling stays where it is)
        self._descriptors = np.zeros((workers, spin.descriptor_size if spin is not None else 1), np.int64)
        self._scalars = np.zeros((workers, 1), np.float32)
        self._workers = [_Worker(f"{name_prefix}-{i}", spin, self._flags[i], self._descriptors[i], self._scalars[i])
                         for i in range(workers)]

    def run_split(self, op: int, x: np.ndarray, y: np.ndarray, out: np.ndarray, flag: int = 0,
                  scalar: np.float32 = np.float32(0.0), loop: tuple[int, int] = (0, 0)) -> bool:
        """A compiled operation (as ``CompiledTask`` describes it) over flat float32 arrays, one piece per thread
        in one call (``numba_tasks.run_split``), when every worker polls; False, with nothing done, when one
        does not (or the pool is busy): then the caller takes ``run``."""
        spin = self._spin
        if spin is None or not self._busy.acquire(blocking=False):
            return False
        try:
            return spin.run_split(self._flags, self._descriptors, self._scalars, op, x, y, out, flag, scalar, *loop,
                                  spin.wait_polls)
        finally:
            self._busy.release()

    def run(self, tasks: list[Callable[[], None]], own: Callable[[], None]) -> None:
        if len(tasks) > len(self._workers):
            raise ValueError(f"WorkerPool.run: {len(tasks)} tasks for {len(self._workers)} workers")
        if not self._busy.acquire(blocking=False):
            for task in (*tasks, own):
                task()
            return
        try:
            started = []
            try:
                for worker, task in zip(self._workers, tasks):
                    worker.start(task)
                    started.append(worker)
                own()
            finally:  # always collect the workers, so none is left running into the next call
                errors = [worker.wait() for worker in started]
            for error in errors:
                if error is not None:
                    raise error
        finally:
            self._busy.release()
