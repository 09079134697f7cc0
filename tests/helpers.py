"""Test helpers: run an op in nnforge and in PyTorch on the same random inputs and compare (tinygrad's
``helper_test_op`` pattern), plus a float64 ``gradcheck`` wrapper."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

import nnforge as nf


def torch_dtype(dt: Any) -> torch.dtype:
    """The torch dtype with the same name as a NumPy/nnforge dtype."""
    return getattr(torch, np.dtype(dt).name)


def _layout(arr: np.ndarray, layout: str) -> np.ndarray:
    """The same values in a non-contiguous array: 'transposed' (column-major) or 'sliced' (every other element)."""
    if layout == "contiguous" or arr.ndim == 0:
        return arr
    if layout == "transposed":
        if arr.ndim < 2:
            return _layout(arr, "sliced")
        out = np.ascontiguousarray(arr.swapaxes(-1, -2)).swapaxes(-1, -2)
    elif layout == "sliced":
        big = np.zeros(arr.shape[:-1] + (2 * arr.shape[-1],), dtype=arr.dtype)
        big[..., ::2] = arr
        out = big[..., ::2]
    else:
        raise ValueError(layout)
    assert np.array_equal(out, arr)
    return out


def _inputs(specs: Sequence[Any], rng: np.random.Generator, dtype: Any, low: float, high: float,
            layout: str, requires_grad: Any) -> tuple:
    nf_in, torch_in = [], []
    for k, spec in enumerate(specs):
        if isinstance(spec, tuple):
            spec = rng.uniform(low, high, size=spec).astype(dtype)
        if isinstance(spec, np.ndarray):
            arr = _layout(spec, layout)
            grad = spec.dtype.kind == "f" and (requires_grad is None or requires_grad[k])
            t = nf.from_numpy(arr.copy() if layout == "contiguous" else arr)
            if grad:
                t.requires_grad_()
            nf_in.append(t)
            torch_in.append(torch.tensor(spec, requires_grad=grad))
        else:  # Python scalars, dims, ... passed through unchanged
            nf_in.append(spec)
            torch_in.append(spec)
    return nf_in, torch_in


def _tensors(out: Any) -> list:
    if isinstance(out, (tuple, list)):
        return list(out)
    return [out]


def assert_close(nf_t: Any, torch_t: torch.Tensor, atol: float, rtol: float, what: str) -> None:
    a = np.asarray(nf_t.detach() if isinstance(nf_t, nf.Tensor) else nf_t)
    b = torch_t.detach().numpy()
    assert a.shape == b.shape, f"{what}: shape {a.shape} != torch {b.shape}"
    if a.dtype.kind in "fc":
        np.testing.assert_allclose(a.astype(np.float64), b.astype(np.float64), atol=atol, rtol=rtol,
                                   err_msg=what, equal_nan=True)
    else:
        np.testing.assert_array_equal(a, b, err_msg=what)


def check_op(nf_fn: Callable, torch_fn: Callable | None, shapes_or_arrays: Sequence[Any], *,
             dtype: Any = np.float32, low: float = -2.0, high: float = 2.0, atol: float = 1e-5,
             rtol: float = 1e-5, grad_atol: float = 1e-4, grad_rtol: float = 1e-4, grad: bool = True,
             layout: str = "contiguous", requires_grad: Sequence[bool] | None = None,
             check_dtype: bool = True, seed: int = 0) -> tuple:
    """Compare ``nf_fn(*inputs)`` with ``torch_fn(*inputs)`` on the same random inputs.

    ``shapes_or_arrays``: tuples (random uniform in [low, high) of ``dtype``), NumPy arrays (used as given;
    float arrays require grad) or anything else (passed through, e.g. Python scalars). ``layout`` makes the
    nnforge inputs non-contiguous ('transposed' or 'sliced'). Outputs (a tensor or a tuple of tensors)
    must agree in shape, dtype and values; then the first differentiable output is backpropagated with a
    random upstream gradient and every input's ``.grad`` is compared. Returns the nnforge and torch outputs.
    """
    rng = np.random.default_rng(seed)
    torch_fn = torch_fn or nf_fn
    nf_in, torch_in = _inputs(shapes_or_arrays, rng, dtype, low, high, layout, requires_grad)
    nf_out, torch_out = nf_fn(*nf_in), torch_fn(*torch_in)
    nf_outs, torch_outs = _tensors(nf_out), _tensors(torch_out)
    assert len(nf_outs) == len(torch_outs), f"{len(nf_outs)} outputs, torch gives {len(torch_outs)}"
    for i, (a, b) in enumerate(zip(nf_outs, torch_outs)):
        assert isinstance(a, nf.Tensor), f"output {i} is a {type(a).__name__}, not a Tensor"
        if check_dtype:
            assert torch_dtype(a.dtype) == b.dtype, f"output {i}: dtype {a.dtype} != torch {b.dtype}"
        assert_close(a, b, atol, rtol, f"forward output {i}")
    if not grad:
        return nf_out, torch_out
    for a, b in zip(nf_outs, torch_outs):
        if b.requires_grad and b.dtype.is_floating_point:
            assert a.requires_grad, "torch output requires grad, nnforge's does not"
            g = rng.standard_normal(b.shape).astype(np.dtype(a.dtype))
            upstream = nf.tensor(g, dtype=a.dtype)
            a.backward(upstream)
            b.backward(torch.tensor(g))
            # backward reads the caller's gradient without copying it: no op may write into it or leave it as a
            # leaf's .grad
            assert np.array_equal(upstream.numpy(), g, equal_nan=True), "backward wrote into the upstream gradient"
            assert not any(isinstance(x, nf.Tensor) and x.grad is not None
                           and np.shares_memory(x.grad.numpy(), upstream.numpy())
                           for x in nf_in), "an input's .grad shares memory with the upstream gradient"
            break
    for k, (x, y) in enumerate(zip(nf_in, torch_in)):
        if not isinstance(y, torch.Tensor) or not y.requires_grad:
            continue
        if y.grad is None:
            assert x.grad is None or not np.asarray(x.grad).any(), f"input {k}: torch has no grad, nnforge does"
            continue
        assert x.grad is not None, f"input {k}: no gradient reached it"
        assert x.grad.shape == x.shape, f"input {k}: grad shape {x.grad.shape} != input shape {x.shape}"
        assert x.grad.dtype == x.dtype, f"input {k}: grad dtype {x.grad.dtype} != input dtype {x.dtype}"
        assert_close(x.grad, y.grad, grad_atol, grad_rtol, f"grad of input {k}")
    return nf_out, torch_out


def gradcheck(nf_fn: Callable, shapes_or_arrays: Sequence[Any], *, low: float = -2.0, high: float = 2.0,
              seed: int = 0, **kw: Any) -> None:
    """``nf.autograd.gradcheck`` in float64 on random inputs (tuples are shapes; other values pass through)."""
    rng = np.random.default_rng(seed)
    inputs = []
    for spec in shapes_or_arrays:
        if isinstance(spec, tuple):
            spec = rng.uniform(low, high, size=spec)
        if isinstance(spec, np.ndarray):
            t = nf.tensor(spec, dtype=nf.float64 if spec.dtype.kind == "f" else spec.dtype)
            if spec.dtype.kind == "f":
                t.requires_grad_()
            spec = t
        inputs.append(spec)
    assert nf.autograd.gradcheck(nf_fn, inputs, **kw)
