"""Reductions vs PyTorch: dims (None, int, negative, tuple), keepdim, 0-d and zero-size inputs, ties,
max/min with indices, and float64 gradchecks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import nnforge as nf
from helpers import check_op, gradcheck

DIMS_3D = [None, 0, -1, 1, (0, 2), (-1, 0), (0, 1, 2)]


def _kw(dim, keepdim):
    return {} if dim is None and not keepdim else {"dim": dim, "keepdim": keepdim}


@pytest.mark.parametrize("name", ["sum", "mean", "logsumexp", "amax", "amin", "var", "std", "norm"])
@pytest.mark.parametrize("dim", DIMS_3D, ids=str)
@pytest.mark.parametrize("keepdim", [False, True])
def test_reduce_3d(name, dim, keepdim):
    if name == "logsumexp" and dim is None:
        dim = (0, 1, 2)  # torch.logsumexp requires dim
    if name in ("amax", "amin") and dim is None:
        kw = {"keepdim": keepdim} if keepdim else {}
    else:
        kw = _kw(dim, keepdim)
    # torch.norm's default 'fro' only accepts 2 dims; vector_norm is the same function for any dims
    torch_fn = torch.linalg.vector_norm if name == "norm" else getattr(torch, name)
    check_op(lambda a: getattr(nf, name)(a, **kw), lambda a: torch_fn(a, **kw), [(3, 4, 5)], grad_rtol=5e-4)
    check_op(lambda a: getattr(a, name)(**kw), lambda a: torch_fn(a, **kw), [(3, 4, 5)], grad_rtol=5e-4,
             layout="transposed")


@pytest.mark.parametrize("name", ["sum", "mean", "amax", "amin", "logsumexp", "prod", "norm"])
@pytest.mark.parametrize("dim", [None, 0, -1], ids=str)
def test_reduce_0d(name, dim):
    kw = {} if dim is None else {"dim": dim}
    if name == "logsumexp" and dim is None:
        kw = {"dim": ()}
    check_op(lambda a: getattr(nf, name)(a, **kw), lambda a: getattr(torch, name)(a, **kw), [()])


@pytest.mark.parametrize("shape,dim", [((0, 3), 0), ((0, 3), 1), ((2, 0, 3), -1), ((2, 0, 3), None),
                                       ((2, 0, 3), (0, 1)), ((0,), None)], ids=str)
def test_sum_prod_zero_size(shape, dim):
    kw = {} if dim is None else {"dim": dim}
    check_op(lambda a: nf.sum(a, **kw), lambda a: torch.sum(a, **kw), [shape])
    if dim is None or isinstance(dim, int):
        check_op(lambda a: nf.prod(a, **kw), lambda a: torch.prod(a, **kw), [shape])


@pytest.mark.filterwarnings("ignore")  # NumPy and torch both warn about the empty/0-dof case
def test_mean_zero_size_is_nan():
    check_op(lambda a: nf.mean(a, 0), lambda a: torch.mean(a, 0), [(0, 3)], grad=False)
    check_op(lambda a: nf.mean(a, 1), lambda a: torch.mean(a, 1), [(0, 3)])


def test_amax_zero_size_raises():
    with pytest.raises(RuntimeError, match=r"amax.*\(0, 3\)"):
        nf.amax(nf.ones(0, 3), 0)
    check_op(lambda a: nf.amax(a, 1), lambda a: torch.amax(a, 1), [(0, 3)])
    with pytest.raises(IndexError, match="max"):
        nf.ones(2, 0).max(1)


@pytest.mark.parametrize("kw", [{}, {"unbiased": False}, {"correction": 0}, {"correction": 2},
                                {"dim": 1, "unbiased": True}, {"dim": (0, 1), "correction": 0, "keepdim": True}],
                         ids=str)
def test_var_std_correction(kw):
    check_op(lambda a: nf.var(a, **kw), lambda a: torch.var(a, **kw), [(4, 6)])
    check_op(lambda a: nf.std(a, **kw), lambda a: torch.std(a, **kw), [(4, 6)], grad_rtol=5e-4)


@pytest.mark.filterwarnings("ignore")  # NumPy and torch both warn about the empty/0-dof case
def test_var_single_element_is_nan_like_torch():
    out = nf.var(nf.ones(1))
    assert np.isnan(out.item()) and np.isnan(torch.var(torch.ones(1)).item())


def test_sum_dtype_and_int_sums():
    check_op(lambda a: nf.sum(a, 0, dtype=nf.float64), lambda a: torch.sum(a, 0, dtype=torch.float64), [(3, 4)])
    ai = nf.tensor([[1, 2], [3, 4]], dtype=nf.int32)
    tai = torch.tensor([[1, 2], [3, 4]], dtype=torch.int32)
    assert nf.sum(ai).dtype.name == str(torch.sum(tai).dtype).removeprefix("torch.")
    assert nf.sum(nf.tensor([True, True, False])).item() == 2
    assert nf.sum(nf.tensor([True, True, False])).dtype == nf.int64
    with pytest.raises(RuntimeError, match="mean.*floating"):
        nf.mean(nf.tensor([1, 2]))
    assert nf.mean(nf.tensor([1, 2]), dtype=nf.float32).item() == 1.5


@pytest.mark.parametrize("name", ["max", "min"])
@pytest.mark.parametrize("dim", [0, 1, -1, -3])
@pytest.mark.parametrize("keepdim", [False, True])
def test_max_min_dim_returns_values_indices(name, dim, keepdim):
    out, ref = check_op(lambda a: getattr(a, name)(dim, keepdim=keepdim),
                        lambda a: getattr(a, name)(dim, keepdim=keepdim), [(3, 4, 5)])
    assert out.indices.dtype == nf.int64
    values, indices = out
    assert values is out.values


def test_max_min_full_and_0d():
    check_op(lambda a: a.max(), lambda a: a.max(), [(3, 4)])
    check_op(lambda a: nf.min(a), lambda a: torch.min(a), [(3, 4)])
    check_op(lambda a: a.max(0), lambda a: a.max(0), [()])
    check_op(lambda a: a.min(dim=-1, keepdim=True), lambda a: a.min(dim=-1, keepdim=True), [()])
    check_op(lambda a: nf.max(a, dim=1), lambda a: torch.max(a, dim=1), [(2, 3)], layout="transposed")


def test_amax_ties_share_gradient():
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]], dtype=np.float32)
    check_op(lambda a: a.amax(1), lambda a: a.amax(1), [x])
    check_op(lambda a: a.amin(0, keepdim=True), lambda a: a.amin(0, keepdim=True), [x])
    check_op(lambda a: a.amax(), lambda a: a.amax(), [x])
    check_op(lambda a: a.max(), lambda a: a.max(), [x])  # full max() shares ties like amax in torch
    check_op(lambda a: nf.amax(a, (0, 1)), lambda a: torch.amax(a, (0, 1)), [x])


def test_max_dim_with_ties_sends_grad_to_returned_index():
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]], dtype=np.float32)
    t = nf.tensor(x, requires_grad=True)
    values, idx = t.max(1)
    values.sum().backward()
    assert values.tolist() == [3.0, 2.0]
    assert idx.tolist() == torch.tensor(x).max(1).indices.tolist()  # first occurrence, like torch on CPU
    expected = np.zeros_like(x)
    expected[np.arange(2), idx.numpy()] = 1
    np.testing.assert_array_equal(t.grad.numpy(), expected)


@pytest.mark.parametrize("name", ["argmax", "argmin"])
@pytest.mark.parametrize("kw", [{}, {"dim": 0}, {"dim": -1}, {"dim": 1, "keepdim": True}, {"keepdim": True}],
                         ids=str)
def test_argmax_argmin(name, kw):
    check_op(lambda a: getattr(nf, name)(a, **kw), lambda a: getattr(torch, name)(a, **kw), [(3, 4, 5)])
    check_op(lambda a: getattr(a, name)(**kw), lambda a: getattr(a, name)(**kw), [(3, 4, 5)], layout="sliced")


def test_argmax_0d_and_empty():
    check_op(lambda a: a.argmax(), lambda a: a.argmax(), [()])
    check_op(lambda a: a.argmin(0), lambda a: a.argmin(0), [()])
    with pytest.raises(RuntimeError, match="argmax"):
        nf.ones(0).argmax()


@pytest.mark.parametrize("dim", [None, 0, 1, -1])
@pytest.mark.parametrize("keepdim", [False, True])
def test_prod(dim, keepdim):
    kw = {} if dim is None else {"dim": dim, "keepdim": keepdim}
    check_op(lambda a: nf.prod(a, **kw), lambda a: torch.prod(a, **kw), [(3, 4)], low=0.5, high=1.5)


def test_prod_with_zeros():
    x = np.array([[0.0, 2.0, 3.0], [0.0, 0.0, 4.0], [1.0, 2.0, 3.0]], dtype=np.float32)
    check_op(lambda a: a.prod(1), lambda a: a.prod(1), [x])
    check_op(lambda a: a.prod(), lambda a: a.prod(), [np.array([0.0, 2.0, 3.0], dtype=np.float32)])
    check_op(lambda a: a.prod(0, keepdim=True), lambda a: a.prod(0, keepdim=True), [x])


def test_logsumexp_extremes():
    x = np.array([[1e4, 1e4, 0.0], [-np.inf, -np.inf, -np.inf], [-np.inf, 0.0, 1.0]], dtype=np.float32)
    out, ref = check_op(lambda a: nf.logsumexp(a, 1), lambda a: torch.logsumexp(a, 1), [x], grad=False)
    t = nf.tensor(x[[0, 2]], requires_grad=True)
    tt = torch.tensor(x[[0, 2]], requires_grad=True)
    nf.logsumexp(t, -1).sum().backward()
    torch.logsumexp(tt, -1).sum().backward()
    np.testing.assert_allclose(t.grad.numpy(), tt.grad.numpy(), atol=1e-6)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_cumsum(dim):
    check_op(lambda a: nf.cumsum(a, dim), lambda a: torch.cumsum(a, dim), [(3, 4)])
    check_op(lambda a: a.cumsum(dim), lambda a: a.cumsum(dim), [(3, 4)], layout="transposed")


def test_cumsum_0d_zero_size_and_ints():
    check_op(lambda a: a.cumsum(0), lambda a: a.cumsum(0), [()])
    check_op(lambda a: a.cumsum(0), lambda a: a.cumsum(0), [(0, 3)])
    ai = nf.tensor([1, 2, 3], dtype=nf.int32)
    assert nf.cumsum(ai, 0).tolist() == [1, 3, 6]
    assert nf.cumsum(ai, 0, dtype=nf.float32).dtype == nf.float32


@pytest.mark.parametrize("p", ["fro", 2, 1, float("inf"), float("-inf"), 3, 0.5])
@pytest.mark.parametrize("dim", [None, 1, (0, 1)], ids=str)
def test_norm(p, dim):
    if p == "fro" and dim == 1:
        dim = (1,)
    kw = {} if dim is None else {"dim": dim}
    check_op(lambda a: nf.norm(a, p, **kw), lambda a: torch.norm(a, p, **kw), [(3, 4)], low=0.2, grad_rtol=5e-4)
    check_op(lambda a: a.norm(p, keepdim=True, **kw) if kw else a.norm(p),
             lambda a: a.norm(p, keepdim=True, **kw) if kw else a.norm(p), [(3, 4)], low=0.2, grad_rtol=5e-4)


def test_norm_gradient_at_zero_is_zero():
    check_op(lambda a: nf.norm(a, dim=1), lambda a: torch.norm(a, dim=1),
             [np.array([[0.0, 0.0], [3.0, 4.0]], dtype=np.float32)])


def test_reduction_dim_errors():
    with pytest.raises(IndexError, match=r"sum.*dimension 2.*\[-2, 1\]"):
        nf.ones(2, 3).sum(2)
    with pytest.raises(IndexError, match="mean"):
        nf.ones(2, 3).mean(-3)
    with pytest.raises(RuntimeError, match="twice"):
        nf.ones(2, 3).sum((0, -2))
    with pytest.raises(IndexError, match="max"):
        nf.ones(2, 3).max(5)


@pytest.mark.parametrize("fn", [
    lambda a: nf.sum(a, 1), lambda a: nf.mean(a, (0, 2), keepdim=True), lambda a: nf.var(a, 1),
    lambda a: nf.std(a, -1, correction=0), lambda a: nf.amax(a, 1), lambda a: nf.amin(a, (0, 1)),
    lambda a: a.max(1).values, lambda a: a.min(-1, keepdim=True)[0], lambda a: nf.prod(a, 1),
    lambda a: nf.logsumexp(a, 1), lambda a: nf.cumsum(a, 2), lambda a: nf.norm(a, dim=1),
    lambda a: nf.norm(a, 1, dim=0), lambda a: nf.norm(a, 3), lambda a: nf.sum(a), lambda a: a.max(),
])
def test_gradcheck_reductions(fn):
    gradcheck(fn, [(2, 3, 4)], low=0.1, high=2.0)


def test_gradcheck_prod_with_zero():
    gradcheck(lambda a: a.prod(1), [np.array([[0.0, 2.0, 3.0], [0.0, 0.0, 4.0]])])
