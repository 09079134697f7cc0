"""Persistent worker threads for ``NumpyBackend.parallel_for``, each handed its task through two locks.

``concurrent.futures.ThreadPoolExecutor`` costs ~60-90 us per round trip here (a queue, a condition variable
and a Future per task); a lock released by the caller and acquired by a sleeping worker ~20-70 us (a futex wake
each way and, on a VM, an interrupt to wake the idle vCPU). With numba installed threads poll instead of
sleeping for a short while (``numba_spin``): a worker for its next task (``NNFORGE_SPIN_US``, default 30 us, 0
turns polling off), the caller for its workers to finish (up to 200 us: it has nothing else to do). The
worker's window is a trade: with 10 us the worker had usually fallen asleep before the next task of a
back-to-back loop arrived (median start of its share 28 us after the caller's, 5 us with 30; 4M-element
``x**3`` in blocks of 20 calls, window switched within one process, two runs: 0.77 / 1.05 ms at 10 us, 0.59 /
0.88 ms at 30 us), while polling longer takes the core from a GEMM thread that follows (paired medians at 30 us
vs 10 us: MiniLM fine-tune step 1.014x, LSTM step 1.00x, MiniLM inference 0.98x; at 50 us the fine-tune step
1.02x). A round trip then costs ~3-8 us. Polling is only a hint: the locks alone decide who runs (a worker that
saw its task still takes its lock, already released; one that stopped polling sleeps).
"""
from __future__ import annotations

import os
import threading
from typing import Any, Callable

import numpy as np

_SPIN_US = 30  # a worker polls this long for its next task (see above for the trade)
_CALLER_SPIN_US = 200  # the caller has nothing else to do while the workers finish
_SETTLE_US = 2  # polls after seeing a task before asking for the GIL, which the poster holds a moment longer


class _Spin:
    """``spin_until`` and the number of polls that take ``NNFORGE_SPIN_US``; None without numba or when 0."""

    def __new__(cls) -> Any:
        seconds = float(os.environ.get("NNFORGE_SPIN_US", str(_SPIN_US))) * 1e-6
        if seconds <= 0:
            return None
        try:
            from .numba_spin import post_then_spin_until, spin_until, spins_for
        except ImportError:
            return None
        spin = object.__new__(cls)
        spin.until, spin.post_then_until = spin_until, post_then_spin_until
        per_us = spins_for(1e-4) / 100
        spin.polls = max(1, int(per_us * seconds * 1e6))  # a worker, for its next task
        spin.wait_polls = max(1, int(per_us * _CALLER_SPIN_US))  # the caller, for the workers to finish
        spin.settle = max(1, int(per_us * _SETTLE_US))
        return spin


class _Worker:
    def __init__(self, name: str, spin: Any) -> None:
        self._go = threading.Lock()
        self._done = threading.Lock()
        self._go.acquire()
        self._done.acquire()
        self._task: Callable[[], None] | None = None
        self._error: BaseException | None = None
        self._spin = spin
        self._flags = np.zeros(2, np.int64)  # sequence numbers: [0] the last task posted, [1] the last finished
        self._posted = 0
        threading.Thread(target=self._loop, name=name, daemon=True).start()

    def _loop(self) -> None:
        seq = 0
        while True:
            seq += 1
            if self._spin is not None:
                # report the previous task done (after its lock release: a caller that sees it finds the lock
                # free) and poll for this one, both without the GIL
                spin = self._spin
                spin.post_then_until(self._flags, 1, seq - 1, 0, seq, spin.polls, spin.settle)
            self._go.acquire()
            try:
                self._task()
            except BaseException as e:  # handed to the caller, raised there
                self._error = e
            self._task = None  # drop the closure (and the arrays it holds) before reporting done
            self._done.release()

    def start(self, task: Callable[[], None]) -> None:
        self._task = task
        self._posted += 1
        self._go.release()
        self._flags[0] = self._posted

    def wait(self) -> BaseException | None:
        if self._spin is not None:
            self._spin.until(self._flags, 1, self._posted, self._spin.wait_polls)
        self._done.acquire()
        error, self._error = self._error, None
        return error


class WorkerPool:
    """``run(tasks, own)`` runs ``tasks[i]`` on worker ``i`` and ``own`` on the calling thread, concurrently,
    and returns when all are done, raising the first exception (the caller's own first). One caller at a
    time: a second thread that finds the pool busy runs its tasks itself, one after another."""

    def __init__(self, workers: int, name_prefix: str) -> None:
        self._busy = threading.Lock()
        spin = _Spin() if workers else None
        self._workers = [_Worker(f"{name_prefix}-{i}", spin) for i in range(workers)]

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
