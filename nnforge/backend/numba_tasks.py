"""Compiled tasks that a polling pool worker runs straight from its compiled wait, without ever taking the GIL.

A worker that polls for its next task (``numba_spin``) sees a post within a microsecond, but a task that is a
Python callable still needs the GIL, which the caller holds until its own share's kernel starts: the worker
then sleeps on the GIL and starts its share ~40-50 us after the caller (timestamps inside the pool, 4M-element
``x**3``), a tenth of the op. For the kernels listed here the caller instead writes the operation and its
arrays' addresses into the worker's descriptor, and ``serve`` (the worker's polling loop) runs the kernel on
views of those addresses and goes on polling: no GIL, no lock, no wake-up on either side.

Handing over is a small state machine in ``flags[STATE]`` changed only by atomic operations, so that a task
is never posted to a worker that has stopped polling: the caller claims a polling worker (POLLING ->
CLAIMED, compare-and-exchange) before posting; a worker whose polling times out leaves only if nobody
claimed it (POLLING -> AWAY). An unclaimed worker is reached through its lock as before (``worker_pool``).
``run_split`` is the caller's side of a whole split op in one call: it claims every worker (and gives the
claims back if one is not polling), posts their pieces, runs its own and waits for them. A worker that finds
itself on the CPU its poster wrote with the post moves to another (``serve``, Linux only).

numba's on-disk cache of ``serve`` holds the kernels of ``numba_kernels`` and ``numba_stream`` it calls but is
invalidated only by edits to this file: after changing a kernel there, delete ``nnforge/backend/__pycache__`` (a
fresh install or clone compiles everything anew).
"""
from __future__ import annotations

import sys

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from . import numba_kernels as nk
from . import numba_stream as ns
from .numba_pointers import f32_pointer as _f32_pointer
from .numba_pointers import f64_pointer as _f64_pointer
from .numba_spin import _load_acquire, _store_release, spin_until
from .worker_pool import CALLER_CPU, COLLECTED, FINISHED, OP, POSTED, PYTHON, STATE  # flags, descriptor layout

AWAY, POLLING, CLAIMED = 0, 1, 2  # flags[STATE]
# a task's descriptor (int64): operation, x's rows and columns, the addresses of x, y and out, an int flag, and
# for UFUNC the addresses of a NumPy inner loop and its data (``ufunc_loops``), for STREAM the arithmetic
# (``numba_stream``: ADD, SUB, MUL, DIV, CUBE) in LOOP
ROWS, COLS, X, Y, OUT, FLAG, LOOP, LOOP_DATA = range(OP + 1, OP + 9)
DESCRIPTOR_SIZE = 9
# operations (PYTHON, 0: the callable in the worker's Python slot; the worker returns to Python for it)
CUBE, EXP, ERF, GELU, GELU_GRAD, UFUNC, SUM_ROWS, EXTREME_ROWS, STREAM = range(PYTHON + 1, PYTHON + 10)
# UFUNC's and STREAM's flag: both operands arrays, or x an array and y the scalar, or x the scalar and y an array
ARRAYS, SCALAR_Y, SCALAR_X = range(3)


@intrinsic
def _compare_exchange(typingctx, flags, index, expected, desired):
    """flags[index] = desired if it equals expected (atomically, acquire-release); True if it did."""
    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        array = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, array_type, array, [args[1]])
        pair = builder.cmpxchg(pointer, args[2], args[3], "acq_rel", "acquire")
        return builder.extract_value(pair, 1)
    return types.boolean(flags, index, types.int64, types.int64), codegen


@intrinsic
def _call_binary_loop(typingctx, loop, data, x, y, out, n, step_x, step_y, step_out):
    """NumPy's inner loop ``loop(char **args, npy_intp *dimensions, npy_intp *steps, void *data)`` over n
    elements at the addresses x, y (inputs) and out, with the given byte steps (0: one value for all)."""
    def codegen(context, builder, signature, args):
        loop, data, x, y, out, n, step_x, step_y, step_out = args
        byte_pointer, i64 = ir.IntType(8).as_pointer(), ir.IntType(64)
        pointers = cgutils.alloca_once(builder, byte_pointer, size=3)
        steps = cgutils.alloca_once(builder, i64, size=3)
        for k, (address, step) in enumerate(((x, step_x), (y, step_y), (out, step_out))):
            builder.store(builder.inttoptr(address, byte_pointer), builder.gep(pointers, [ir.Constant(i64, k)]))
            builder.store(step, builder.gep(steps, [ir.Constant(i64, k)]))
        dimensions = cgutils.alloca_once_value(builder, n)
        function_type = ir.FunctionType(ir.VoidType(), [byte_pointer.as_pointer(), i64.as_pointer(), i64.as_pointer(),
                                                        byte_pointer])
        function = builder.inttoptr(loop, function_type.as_pointer())
        builder.call(function, [pointers, dimensions, steps, builder.inttoptr(data, byte_pointer)])
        return context.get_dummy_value()
    return types.void(*([types.int64] * 9)), codegen


@intrinsic
def _sched_yield(typingctx):
    """libc's sched_yield(): lets another thread that is ready to run on this core (a BLAS thread) go first.
    Declared by name in the IR (not through ctypes), so that the functions calling it can be cached."""
    def codegen(context, builder, signature, args):
        function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []), "sched_yield")
        builder.call(function, [])
        return context.get_dummy_value()
    return types.void(), codegen


@intrinsic
def _clock_ns(typingctx, clock_id):
    """clock_gettime(clock_id) in nanoseconds (a vDSO call, ~20-50 ns); ``time.CLOCK_MONOTONIC`` is the id."""
    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        timespec = cgutils.alloca_once(builder, ir.LiteralStructType([i64, i64]))  # time_t, long: 64-bit ABIs
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.IntType(32), [ir.IntType(32), timespec.type]), "clock_gettime")
        builder.call(function, [builder.trunc(args[0], ir.IntType(32)), timespec])
        seconds = builder.load(cgutils.gep_inbounds(builder, timespec, 0, 0))
        nanoseconds = builder.load(cgutils.gep_inbounds(builder, timespec, 0, 1))
        return builder.add(builder.mul(seconds, ir.Constant(i64, 1_000_000_000)), nanoseconds)
    return types.int64(types.int64), codegen


_LINUX = sys.platform.startswith("linux")  # sched_getcpu and sched_setaffinity are Linux's (and glibc's, musl's)


@intrinsic
def _sched_getcpu(typingctx):
    """libc's sched_getcpu(): the CPU this thread runs on now (-1 if unknown, and off Linux; RDPID or the vDSO,
    ~20 ns)."""
    def codegen(context, builder, signature, args):
        if not _LINUX:
            return ir.Constant(ir.IntType(64), -1)
        function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []), "sched_getcpu")
        return builder.sext(builder.call(function, []), ir.IntType(64))
    return types.int64(), codegen


@intrinsic
def _set_affinity(typingctx, mask):
    """libc's sched_setaffinity(0, ...): this thread may run only on the CPUs whose bits ``mask`` (a uint64
    array, a cpu_set_t) has; it moves at once when its CPU is not among them. Nothing off Linux."""
    def codegen(context, builder, signature, args):
        if not _LINUX:
            return context.get_dummy_value()
        array = context.make_array(signature.args[0])(context, builder, args[0])
        byte_pointer = ir.IntType(8).as_pointer()
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.IntType(32), [ir.IntType(32), ir.IntType(64), byte_pointer]),
            "sched_setaffinity")
        size = builder.mul(array.nitems, ir.Constant(ir.IntType(64), 8))
        builder.call(function, [ir.Constant(ir.IntType(32), 0), size, builder.bitcast(array.data, byte_pointer)])
        return context.get_dummy_value()
    return types.void(mask), codegen


@numba.njit(nogil=True, cache=True)
def _move_off(cpu, cpus, scratch):
    """Moves this thread off ``cpu`` onto another of the CPUs in ``cpus`` (its affinity, a cpu_set_t as
    uint64 words) and gives it back that whole affinity: the scheduler keeps it where it now is. No-op when
    ``cpus`` has no other CPU."""
    word = cpu // 64
    if cpu < 0 or word >= cpus.size:
        return
    others = False
    for i in range(cpus.size):
        scratch[i] = cpus[i]
        if i == word:
            scratch[i] &= ~(np.uint64(1) << np.uint64(cpu % 64))
        others = others or scratch[i] != 0
    if others:
        _set_affinity(scratch)
        _set_affinity(cpus)


@numba.njit(nogil=True, cache=True)
def leave_callers_cpu(flags, cpus, scratch):
    """Move off the CPU that the caller wrote into ``flags[CALLER_CPU]`` with its last post, if this thread runs
    there (see ``serve``); True if it moved."""
    caller_cpu = _load_acquire(flags, CALLER_CPU)
    if caller_cpu < 0 or _sched_getcpu() != caller_cpu:
        return False
    _move_off(caller_cpu, cpus, scratch)
    return True


_POLLS_PER_CLOCK_READ = 256  # ~60 ns of polling between two reads of the clock
WAIT_POLLS = 1024  # a caller's polls for its workers between two yields of its core (~1 us)


@numba.njit(nogil=True, cache=True)
def _poll_for_post(flags, seq, spin_ns, yield_ns, collect_ns, clock_id):
    """Poll until task ``seq`` is posted: while the caller has not yet collected task ``seq - 1`` (up to
    ``collect_ns``), then for ``spin_ns``, then ``yield_ns`` more; True if it was posted. All but the middle
    phase yield the core between polls (a thread that waits for it, e.g. a BLAS thread, gets it). Counting
    the windows from the collection, not from this worker's finish, keeps a worker that finished its share
    early polling through a slow spell of the caller's, which would otherwise find it asleep."""
    now = _clock_ns(clock_id)
    collect_end = now + collect_ns
    while _load_acquire(flags, COLLECTED) < seq - 1 and now < collect_end:
        if spin_until(flags, POSTED, seq, _POLLS_PER_CLOCK_READ):
            return True
        _sched_yield()
        now = _clock_ns(clock_id)
    spin_end = now + spin_ns
    end = spin_end + yield_ns
    while True:
        if spin_until(flags, POSTED, seq, _POLLS_PER_CLOCK_READ):
            return True
        now = _clock_ns(clock_id)
        if now >= end:
            return _load_acquire(flags, POSTED) == seq
        if now >= spin_end:
            _sched_yield()


@numba.njit(nogil=True, cache=True)
def run_elementwise(op, x, y, out, flag):
    """One elementwise operation over flat float32 arrays: the caller's share, and the worker's (on views of
    the posted addresses). ``y`` is unused by the unary operations; GELU and GELU_GRAD take the tanh
    approximation as ``flag``, GELU_GRAD ``x`` as the gradient and ``y`` as the input."""
    if op == CUBE:
        nk.cube(x, out)
    elif op == EXP:
        nk.exp(x, out)
    elif op == ERF:
        nk.erf(x, out)
    elif op == GELU:
        nk.gelu(x, out, flag != 0)
    elif op == GELU_GRAD:
        nk.gelu_grad(x, y, out, flag != 0)


@numba.njit(nogil=True, cache=True)
def _run_posted(descriptor, scalars):
    op, rows, cols, flag = descriptor[OP], descriptor[ROWS], descriptor[COLS], descriptor[FLAG]
    x_at, y_at, out_at = descriptor[X], descriptor[Y], descriptor[OUT]
    n = rows * cols
    if op == UFUNC:  # float32 operands; a scalar operand is read from scalars[0] for every element
        scalar_at = np.int64(scalars.ctypes.data)
        _call_binary_loop(descriptor[LOOP], descriptor[LOOP_DATA], scalar_at if flag == SCALAR_X else x_at,
                          scalar_at if flag == SCALAR_Y else y_at, out_at, n,
                          0 if flag == SCALAR_X else 4, 0 if flag == SCALAR_Y else 4, 4)
    elif op == STREAM:  # as UFUNC, with the arithmetic in LOOP
        scalar_at = np.int64(scalars.ctypes.data)
        ns.stream(descriptor[LOOP], scalar_at if flag == SCALAR_X else x_at, scalar_at if flag == SCALAR_Y else y_at,
                  0 if flag == SCALAR_X else 1, 0 if flag == SCALAR_Y else 1, out_at, n)
    elif op == EXTREME_ROWS:  # flag: max (else min)
        nk.extreme_rows(numba.carray(_f32_pointer(x_at), (rows, cols)), numba.carray(_f32_pointer(out_at), rows),
                        flag != 0)
    elif op == SUM_ROWS:  # flag: out is float64 (else float32)
        x = numba.carray(_f32_pointer(x_at), (rows, cols))
        if flag:
            nk.sum_rows(x, numba.carray(_f64_pointer(out_at), rows))
        else:
            nk.sum_rows(x, numba.carray(_f32_pointer(out_at), rows))
    else:
        run_elementwise(op, numba.carray(_f32_pointer(x_at), n), numba.carray(_f32_pointer(y_at), n),
                        numba.carray(_f32_pointer(out_at), n), flag)


@numba.njit(nogil=True, cache=True)
def serve(flags, descriptor, scalars, done, spin_ns, yield_ns, collect_ns, clock_id, settle_spins, cpus, scratch):
    """The worker's wait, after ``done`` tasks: report them finished, then run compiled tasks as they are posted
    until a Python task arrives or none comes while ``_poll_for_post`` polls; returns the number of tasks done.
    The worker then takes its lock (released for a Python task, or by the next post once it sleeps).

    A worker that finds itself on the CPU its poster runs on moves to another of ``cpus`` (its affinity,
    ``scratch`` the same size) before it runs the task: after an idle spell the scheduler at times woke the
    worker onto the caller's CPU while the other one idled, and left them there for tens of ms, each op then
    taking its two shares one after the other (4096 x 1024 sums: 0.6-1.6 ms instead of 0.12-0.2). It checks
    when it comes in too (after a task through its lock, see ``worker_pool``), not only when a post arrives: a
    worker polling on its caller's CPU sees the next post only when the caller, then busy with its own share,
    leaves the CPU to it."""
    leave_callers_cpu(flags, cpus, scratch)
    _store_release(flags, STATE, POLLING)
    while True:
        _store_release(flags, FINISHED, done)
        if not _poll_for_post(flags, done + 1, spin_ns, yield_ns, collect_ns, clock_id):
            if _compare_exchange(flags, STATE, POLLING, AWAY):
                return done
            # claimed just now: the post is on its way, unless ``run_split`` gives the claim back (it did not
            # get every worker); then poll again
            while _load_acquire(flags, POSTED) != done + 1 and _load_acquire(flags, STATE) == CLAIMED:
                pass
            if _load_acquire(flags, POSTED) != done + 1:
                continue
        if descriptor[OP] == PYTHON:
            _store_release(flags, STATE, AWAY)
            for _ in range(settle_spins):  # let the poster release the GIL before this thread asks for it
                if _load_acquire(flags, POSTED) != done + 1:  # never true: keeps the loop from being removed
                    break
            return done
        leave_callers_cpu(flags, cpus, scratch)
        _run_posted(descriptor, scalars)
        done += 1
        _store_release(flags, STATE, POLLING)  # before FINISHED: the caller posts again only after seeing that


@numba.njit(nogil=True, cache=True, inline="always")
def _describe(descriptor, scalars, op, rows, cols, x_at, y_at, out_at, scalar, flag, loop, loop_data):
    descriptor[OP] = op
    descriptor[ROWS] = rows
    descriptor[COLS] = cols
    descriptor[X] = x_at
    descriptor[Y] = y_at
    descriptor[OUT] = out_at
    descriptor[FLAG] = flag
    descriptor[LOOP] = loop
    descriptor[LOOP_DATA] = loop_data
    scalars[0] = scalar


@numba.njit(cache=True)
def post(flags, descriptor, scalars, seq, op, x, y, out, scalar, flag, loop, loop_data):
    """Post task ``seq`` to a worker if it is polling (claims it first); False, with nothing changed, if it
    is not. ``x`` is flat, or 2-d for SUM_ROWS and EXTREME_ROWS (for UFUNC with a scalar x, pass y as x: it
    sets the size); the arrays must stay alive until the worker reports ``seq`` finished."""
    if not _compare_exchange(flags, STATE, POLLING, CLAIMED):
        return False
    rows = x.shape[0] if x.ndim == 2 else 1
    _describe(descriptor, scalars, op, rows, x.size // rows if x.size else 0, np.int64(x.ctypes.data),
              np.int64(y.ctypes.data), np.int64(out.ctypes.data), scalar, flag, loop, loop_data)
    flags[CALLER_CPU] = _sched_getcpu()
    _store_release(flags, POSTED, seq)
    return True


# float32 elements: a multiple of what one iteration of a vectorised kernel loop takes. Split ops cut their
# pieces at multiples of it (here and in ``fast_kernels._map``'s fallback), so that every element goes through
# the same code as in one call over the whole array, whichever path the op takes.
VECTOR_BLOCK = 256


@numba.njit(nogil=True, cache=True, inline="always")
def _cut(n, k, parts):
    """Where piece k of ``parts`` over n elements starts: at a multiple of VECTOR_BLOCK elements (k < parts)."""
    if k >= parts:
        return n
    start = n * k // parts
    return start - start % VECTOR_BLOCK


@numba.njit(nogil=True, cache=True, inline="always")
def _piece(n, k, parts):
    """(start, stop) of piece k of ``parts`` over n elements."""
    return _cut(n, k, parts), _cut(n, k + 1, parts)


@numba.njit(nogil=True, cache=True)
def run_split(flags, descriptors, scalars, op, x, y, out, flag, scalar, loop, loop_data, wait_polls):
    """One operation over flat float32 arrays split into one piece per thread, all in one call: posts a piece
    to each worker (row w of ``flags``, ``descriptors``, ``scalars``), runs the first here and waits for the
    workers. False, with nothing run or posted, unless every worker was polling. The operation is
    ``run_elementwise(op, x, y, out, flag)``, or for UFUNC NumPy's inner loop ``loop`` with operands as
    ``post`` takes them (``flag`` ARRAYS, SCALAR_Y or SCALAR_X, the single value ``scalar``), or for STREAM the
    arithmetic ``loop`` (``numba_stream``) with operands as for UFUNC.

    One call instead of a post, a call of the caller's share and a wait from Python (three dispatches and the
    Python between them): right after a kernel has streamed tens of MB through the caches, each line of
    Python there runs ~10x slower than warm (a 1000-element ``x**3``: 3.5 us warm, 32 us after a 64 MB copy).

    The caller takes piece ``cpu % parts`` of the CPU it runs on, so that on two CPUs each half of an array is
    worked on by the same CPU call after call, whichever thread the scheduler put there. On this VM the two
    virtual CPUs at times sit on different L3 caches: then a 4M-element ``x**3`` whose halves changed CPUs
    every call took 504 us (median; 670 in a second such spell) against 230 (472) when they stayed; at other
    times it made no difference. ``backend.run_parts`` gives the calling thread its part the same way."""
    workers = flags.shape[0]
    for w in range(workers):
        if not _compare_exchange(flags[w], STATE, POLLING, CLAIMED):
            for v in range(w):  # give back the claims (the worker polls on); the caller uses the locks
                _store_release(flags[v], STATE, POLLING)
            return False
    n = out.size
    parts = workers + 1
    x_at, y_at, out_at = np.int64(x.ctypes.data), np.int64(y.ctypes.data), np.int64(out.ctypes.data)
    cpu = _sched_getcpu()
    own = cpu % parts if cpu >= 0 else 0  # the caller's piece follows its CPU, not its thread (see above)
    for w in range(workers):
        start, stop = _piece(n, w if w < own else w + 1, parts)
        _describe(descriptors[w], scalars[w], op, 1, stop - start, x_at + 4 * start, y_at + 4 * start,
                  out_at + 4 * start, scalar, flag, loop, loop_data)
        flags[w][CALLER_CPU] = cpu
        _store_release(flags[w], POSTED, _load_acquire(flags[w], POSTED) + 1)
    start, stop = _piece(n, own, parts)
    mine, my_scalar = np.empty(DESCRIPTOR_SIZE, np.int64), np.empty(1, np.float32)  # run as a worker runs a post
    _describe(mine, my_scalar, op, 1, stop - start, x_at + 4 * start, y_at + 4 * start, out_at + 4 * start, scalar,
              flag, loop, loop_data)
    _run_posted(mine, my_scalar)
    for w in range(workers):  # yielding between short spells of polling: a worker on this CPU gets it at once
        seq = _load_acquire(flags[w], POSTED)
        while not spin_until(flags[w], FINISHED, seq, wait_polls):
            _sched_yield()
        _store_release(flags[w], COLLECTED, seq)
    return True


@numba.njit(nogil=True, cache=True)
def wait_until(flags, index, value, limit_ns, clock_id):
    """Poll until flags[index] equals ``value``, yielding the core between short spells of polling (a worker
    that shares this CPU, see ``serve``, runs at once), for at most ``limit_ns``; True if it did."""
    end = _clock_ns(clock_id) + limit_ns
    while not spin_until(flags, index, value, WAIT_POLLS):
        _sched_yield()
        if _clock_ns(clock_id) >= end:
            return _load_acquire(flags, index) == value
    return True
