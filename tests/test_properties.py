"""Property tests (hypothesis): broadcasting of binary/ternary ops and reductions over random shapes, dims
and keepdim, forward and gradients vs PyTorch."""
from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import HealthCheck, assume, given, settings, strategies as st
from hypothesis.extra.numpy import array_shapes, mutually_broadcastable_shapes

import nnforge as nf
from helpers import check_op

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

BINARY = {"add": (nf.add, torch.add), "mul": (nf.mul, torch.mul), "sub": (nf.sub, torch.sub),
          "div": (nf.div, torch.div), "maximum": (nf.maximum, torch.maximum)}


@SETTINGS
@given(shapes=mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, min_side=0, max_side=3),
       op=st.sampled_from(sorted(BINARY)), layout=st.sampled_from(["contiguous", "sliced"]),
       seed=st.integers(0, 2**16))
def test_broadcasting_binary(shapes, op, layout, seed):
    nf_fn, torch_fn = BINARY[op]
    check_op(nf_fn, torch_fn, list(shapes.input_shapes), low=0.5, high=2.0, layout=layout, seed=seed,
             grad_rtol=5e-4)


@SETTINGS
@given(shapes=mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=4, min_side=0, max_side=3),
       seed=st.integers(0, 2**16))
def test_broadcasting_where(shapes, seed):
    cond_shape, x_shape, y_shape = shapes.input_shapes
    cond = np.random.default_rng(seed).random(cond_shape) > 0.5
    check_op(lambda x, y: nf.where(nf.tensor(cond), x, y), lambda x, y: torch.where(torch.tensor(cond), x, y),
             [x_shape, y_shape], seed=seed)


@st.composite
def reduction_case(draw):
    shape = draw(array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4))
    ndim = len(shape)
    n = max(ndim, 1)
    kind = draw(st.sampled_from(["none", "int", "tuple"]))
    if kind == "none":
        dim = None
    elif kind == "int":
        dim = draw(st.integers(-n, n - 1))
    else:
        axes = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True)) if ndim else [0]
        dim = tuple(a - n if draw(st.booleans()) else a for a in axes)  # mix negative dims in
    return shape, dim, draw(st.booleans())


def _reduced_size(shape, dim):
    if dim is None:
        return math.prod(shape)
    dims = (dim,) if isinstance(dim, int) else dim
    return math.prod(shape[d % len(shape)] for d in dims) if shape else 1


@SETTINGS
@given(case=reduction_case(), op=st.sampled_from(["sum", "mean", "amax", "var"]), seed=st.integers(0, 2**16))
def test_reductions(case, op, seed):
    shape, dim, keepdim = case
    if op != "sum":
        assume(_reduced_size(shape, dim) > (1 if op == "var" else 0))  # no identity / no degrees of freedom
    if dim is None:
        kw = {"keepdim": keepdim} if op == "amax" and keepdim else {}
        if keepdim and op != "amax":
            kw = {"dim": tuple(range(len(shape))) or None, "keepdim": True}
    else:
        kw = {"dim": dim, "keepdim": keepdim}
    check_op(lambda a: getattr(nf, op)(a, **kw), lambda a: getattr(torch, op)(a, **kw), [shape], seed=seed,
             grad_rtol=5e-4, atol=2e-5)
