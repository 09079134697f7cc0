"""Typed pointers from raw addresses inside compiled code: a worker gets its operands as the int64 addresses a
caller wrote into its descriptor (``numba_tasks``, ``numba_stream``), and indexes them (``p[i]``) or wraps them
in arrays (``numba.carray(p, shape)``)."""
from __future__ import annotations

from numba import types
from numba.extending import intrinsic


def _pointer_intrinsic(element: types.Type):
    pointer_type = types.CPointer(element)

    def pointer(typingctx, address):
        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], context.get_value_type(pointer_type))
        return pointer_type(types.int64), codegen
    return intrinsic(pointer)


f32_pointer = _pointer_intrinsic(types.float32)
f64_pointer = _pointer_intrinsic(types.float64)
