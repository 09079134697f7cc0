"""Float32 arithmetic (``+ - * /`` and ``x*x*x``) whose results go to memory with streaming (non-temporal)
stores, for ops whose arrays are too large to stay in the last-level cache anyway.

A plain store first reads the output's cache line from memory (to own it) and later writes it back: an add of
three 16 MB arrays moves 64 MB instead of 48. A streaming store writes whole lines without reading them. 4M-
element add on two threads, paired with torch's: 0.72-0.90x its time instead of 0.89-0.98x. The result is then
in memory, not in the cache: an op reading it right after can take a little longer (mul+sum forward and backward
0.85-0.93x instead of 0.80-0.89x), and at 1M elements, whose arrays stay in the cache, streaming was slower
(0.21 vs 0.15 ms); so ``FastKernels`` streams only ops whose arrays exceed the last-level cache.

Each result is the same IEEE operation on the same float32 values as NumPy's loop (one rounding per operation,
nothing contracted or reassociated), so results are bit-identical; only the stores differ. Streaming stores are
weakly ordered: ``stream`` ends with a store fence, before anyone signals that the work is done. x86-64 only
(``AVAILABLE``).
"""
from __future__ import annotations

import platform

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .numba_pointers import f32_pointer

AVAILABLE = platform.machine().lower() in ("x86_64", "amd64")
ADD, SUB, MUL, DIV, CUBE = range(5)  # the operation: x op y, or x*x*x (y unused)
_WIDTH = 8  # float32 lanes per streamed vector (32 bytes: AVX, which every x86-64 CPU with AVX-512 has too)
_F32 = ir.FloatType()
_VECTOR = ir.VectorType(_F32, _WIDTH)


def _operand(builder, address, step, i):
    """The vector of lanes i.. at ``address`` (step 1), or one float there in every lane (step 0)."""
    i64 = ir.IntType(64)
    with builder.if_else(builder.icmp_signed("==", step, ir.Constant(i64, 0))) as (single, lanes):
        with single:
            value = builder.load(builder.inttoptr(address, _F32.as_pointer()))
            splat = cgutils.get_null_value(_VECTOR)
            for lane in range(_WIDTH):
                splat = builder.insert_element(splat, value, ir.Constant(ir.IntType(32), lane))
            single_block = builder.block
        with lanes:
            at = builder.add(address, builder.mul(i, ir.Constant(i64, 4)))
            loaded = builder.load(builder.inttoptr(at, _VECTOR.as_pointer()), align=4)
            lanes_block = builder.block
    phi = builder.phi(_VECTOR)
    phi.add_incoming(splat, single_block)
    phi.add_incoming(loaded, lanes_block)
    return phi


@intrinsic
def _stream_vector(typingctx, operation, x_at, y_at, x_step, y_step, out_at, i):
    """Lanes i..i+7 of ``x op y`` stored with one streaming store at ``out_at + 4 i`` (32-byte aligned)."""
    def codegen(context, builder, signature, args):
        operation, x_at, y_at, x_step, y_step, out_at, i = args
        x = _operand(builder, x_at, x_step, i)
        y = _operand(builder, y_at, y_step, i)
        results = {ADD: lambda: builder.fadd(x, y), SUB: lambda: builder.fsub(x, y), MUL: lambda: builder.fmul(x, y),
                   DIV: lambda: builder.fdiv(x, y), CUBE: lambda: builder.fmul(builder.fmul(x, x), x)}
        end = builder.append_basic_block("stream.store")
        switch = builder.switch(operation, end)
        phi_inputs = []
        for code, compute in results.items():
            block = builder.append_basic_block(f"stream.op{code}")
            switch.add_case(ir.Constant(ir.IntType(64), code), block)
            builder.position_at_end(block)
            phi_inputs.append((compute(), builder.block))
            builder.branch(end)
        default_block = switch.parent
        builder.position_at_end(end)
        result = builder.phi(_VECTOR)
        result.add_incoming(cgutils.get_null_value(_VECTOR), default_block)
        for value, block in phi_inputs:
            result.add_incoming(value, block)
        at = builder.add(out_at, builder.mul(i, ir.Constant(ir.IntType(64), 4)))
        store = builder.store(result, builder.inttoptr(at, _VECTOR.as_pointer()), align=4 * _WIDTH)
        store.set_metadata("nontemporal", builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))
        return context.get_dummy_value()
    return types.void(*([types.int64] * 7)), codegen


@intrinsic
def _store_fence(typingctx):
    """x86's sfence: the streaming stores before it are visible before any store after it (elsewhere, where
    nothing streams, a full fence, so that the module still compiles)."""
    def codegen(context, builder, signature, args):
        if not AVAILABLE:
            builder.fence("seq_cst")
            return context.get_dummy_value()
        fence = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                               "llvm.x86.sse.sfence")
        builder.call(fence, [])
        return context.get_dummy_value()
    return types.void(), codegen


@numba.njit(nogil=True, cache=True, error_model="numpy", inline="always")
def _one(operation, x_at, y_at, x_step, y_step, out_at, i):
    """Element i with a plain store (before out is aligned, and the last few)."""
    x = f32_pointer(x_at)[i * x_step]
    out = f32_pointer(out_at)
    if operation == CUBE:
        out[i] = x * x * x
        return
    y = f32_pointer(y_at)[i * y_step]
    if operation == ADD:
        out[i] = x + y
    elif operation == SUB:
        out[i] = x - y
    elif operation == MUL:
        out[i] = x * y
    else:
        out[i] = x / y


@numba.njit(nogil=True, cache=True, error_model="numpy")
def stream(operation, x_at, y_at, x_step, y_step, out_at, n):
    """out[i] = x[i] op y[i] for i < n over float32 arrays at these addresses (step 0: the operand is the one
    value at its address), stored with streaming stores from where out is 32-byte aligned, then fenced."""
    head = min(n, (-(out_at // 4)) % _WIDTH)
    for i in range(head):
        _one(operation, x_at, y_at, x_step, y_step, out_at, i)
    i = head
    while i + _WIDTH <= n:
        _stream_vector(operation, x_at, y_at, x_step, y_step, out_at, i)
        i += _WIDTH
    for j in range(i, n):
        _one(operation, x_at, y_at, x_step, y_step, out_at, j)
    _store_fence()
