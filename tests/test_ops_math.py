"""Elementwise math vs PyTorch (forward + grad, 0-d, zero-size, non-contiguous), where/clamp/maximum
edge cases, int inputs, and float64 gradchecks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import nnforge as nf
from helpers import check_op, gradcheck

# name -> (nf fn, torch fn, low, high)
UNARY = {
    "exp": (nf.exp, torch.exp, -3, 3),
    "log": (nf.log, torch.log, 0.1, 3),
    "log1p": (nf.log1p, torch.log1p, -0.5, 3),
    "sqrt": (nf.sqrt, torch.sqrt, 0.1, 3),
    "rsqrt": (nf.rsqrt, torch.rsqrt, 0.2, 3),
    "abs": (nf.abs, torch.abs, -2, 2),
    "sign": (nf.sign, torch.sign, -2, 2),
    "sin": (nf.sin, torch.sin, -3, 3),
    "cos": (nf.cos, torch.cos, -3, 3),
    "tanh": (nf.tanh, torch.tanh, -3, 3),
    "sigmoid": (nf.sigmoid, torch.sigmoid, -5, 5),
    "relu": (nf.relu, torch.relu, -2, 2),
    "erf": (nf.erf, torch.erf, -3, 3),
    "floor": (nf.floor, torch.floor, -3, 3),
    "ceil": (nf.ceil, torch.ceil, -3, 3),
    "round": (nf.round, torch.round, -3, 3),
    "trunc": (nf.trunc, torch.trunc, -3, 3),
    "abs_op": (lambda a: abs(a), lambda a: abs(a), -2, 2),
}
METHODS = ["exp", "log", "log1p", "sqrt", "rsqrt", "abs", "sign", "sin", "cos", "tanh", "sigmoid", "relu", "erf",
           "floor", "ceil", "round", "trunc"]


@pytest.mark.parametrize("name", list(UNARY))
@pytest.mark.parametrize("shape", [(3, 4), (), (0, 3), (2, 3, 4)], ids=str)
def test_unary(name, shape):
    nf_fn, torch_fn, low, high = UNARY[name]
    check_op(nf_fn, torch_fn, [shape], low=low, high=high, grad_rtol=5e-4)


@pytest.mark.parametrize("name", ["exp", "log", "sqrt", "tanh", "sigmoid", "relu", "erf", "abs"])
@pytest.mark.parametrize("layout", ["transposed", "sliced"])
def test_unary_noncontiguous(name, layout):
    nf_fn, torch_fn, low, high = UNARY[name]
    check_op(nf_fn, torch_fn, [(4, 5)], low=low, high=high, layout=layout)


@pytest.mark.parametrize("name", METHODS)
def test_unary_methods(name):
    _, _, low, high = UNARY[name]
    check_op(lambda a: getattr(a, name)(), lambda a: getattr(a, name)(), [(2, 3)], low=low, high=high)


@pytest.mark.parametrize("name", ["exp", "log", "sqrt", "sin", "tanh", "sigmoid", "erf", "rsqrt"])
def test_unary_on_ints_gives_float32(name):
    nf_fn, torch_fn, _, _ = UNARY[name]
    a = np.array([1, 2, 3])
    out, ref = nf_fn(nf.tensor(a)), torch_fn(torch.tensor(a))
    assert out.dtype == nf.float32 and ref.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=1e-6)


@pytest.mark.parametrize("name", ["abs", "relu", "sign", "floor", "round"])
def test_unary_on_ints_keeps_int(name):
    nf_fn, torch_fn, _, _ = UNARY[name]
    a = np.array([-2, 0, 3])
    out, ref = nf_fn(nf.tensor(a)), torch_fn(torch.tensor(a))
    assert out.dtype == nf.int64 and out.tolist() == ref.tolist()


@pytest.mark.parametrize("name", ["exp", "log", "sqrt", "tanh", "sigmoid", "erf"])
def test_unary_float64_preserved(name):
    nf_fn, torch_fn, low, high = UNARY[name]
    check_op(nf_fn, torch_fn, [(3, 4)], dtype=np.float64, low=low, high=high, atol=1e-12, rtol=1e-12,
             grad_atol=1e-12, grad_rtol=1e-10)


def test_kinks_match_torch():
    """abs, relu, clamp, sign, sqrt at their kinks/edges: torch's conventions (grad 0 at 0 for abs/relu)."""
    x = np.array([-1.0, 0.0, 1.0], dtype=np.float32)
    check_op(nf.abs, torch.abs, [x])
    check_op(nf.relu, torch.relu, [x])
    check_op(lambda a: nf.clamp(a, -1.0, 1.0), lambda a: torch.clamp(a, -1.0, 1.0), [x])
    check_op(nf.sign, torch.sign, [x])


def test_round_half_to_even_and_decimals():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 0.49, 3.14159], dtype=np.float32)
    check_op(nf.round, torch.round, [x])
    check_op(lambda a: nf.round(a, decimals=2), lambda a: torch.round(a, decimals=2), [x])


def test_sigmoid_tanh_exp_extremes():
    x = np.array([-1e4, -100.0, -20.0, 0.0, 20.0, 100.0, 1e4], dtype=np.float32)
    out, _ = check_op(nf.sigmoid, torch.sigmoid, [x])
    assert np.isfinite(out.detach().numpy()).all()
    check_op(nf.tanh, torch.tanh, [x])
    x64 = x.astype(np.float64)
    check_op(nf.sigmoid, torch.sigmoid, [x64])


@pytest.mark.parametrize("lo,hi", [(-0.5, 0.5), (-0.5, None), (None, 0.5), (0.3, 0.2)])
def test_clamp_scalar_bounds(lo, hi):
    check_op(lambda a: nf.clamp(a, lo, hi), lambda a: torch.clamp(a, lo, hi), [(3, 4)])
    check_op(lambda a: a.clamp(min=lo, max=hi), lambda a: a.clamp(min=lo, max=hi), [()])
    check_op(lambda a: a.clip(lo, hi), lambda a: a.clip(lo, hi), [(0, 2)])


def test_clamp_tensor_bounds():
    check_op(lambda a, lo, hi: nf.clamp(a, lo, hi), lambda a, lo, hi: torch.clamp(a, lo, hi),
             [(3, 4), (4,), (3, 1)], low=-1, high=1)
    check_op(lambda a, lo: nf.clamp(a, min=lo), lambda a, lo: torch.clamp(a, min=lo), [(3, 4), ()])


def test_clamp_errors_and_ints():
    with pytest.raises(ValueError, match="clamp"):
        nf.clamp(nf.ones(3))
    ai = nf.tensor([-3, 0, 5])
    assert nf.clamp(ai, -1, 2).tolist() == [-1, 0, 2] and nf.clamp(ai, -1, 2).dtype == nf.int64
    assert torch.clamp(torch.tensor([-3, 0, 5]), -1.5, 2.5).dtype == torch.float32
    assert nf.clamp(ai, -1.5, 2.5).dtype == nf.float32


def test_maximum_minimum_ties_share_gradient():
    a = np.array([1.0, 2.0, 3.0, 2.0], dtype=np.float32)
    b = np.array([1.0, 1.0, 4.0, 2.0], dtype=np.float32)
    check_op(nf.maximum, torch.maximum, [a, b])
    check_op(nf.minimum, torch.minimum, [a, b])
    check_op(lambda x, y: nf.max(x, y), lambda x, y: torch.max(x, y), [a, b])
    check_op(lambda x, y: x.min(y), lambda x, y: x.min(y), [a, b])


def test_maximum_scalar():
    check_op(lambda a: nf.maximum(a, nf.tensor(0.5)), lambda a: torch.maximum(a, torch.tensor(0.5)), [(3, 4)])


@pytest.mark.parametrize("shapes", [((3, 4), (3, 4), (3, 4)), ((3, 4), (4,), (3, 1)), ((1, 4), (3, 1), ()),
                                    ((), (), ()), ((0, 4), (4,), (1,))], ids=str)
def test_where(shapes):
    rng = np.random.default_rng(3)
    cond = rng.random(shapes[0]) > 0.5
    check_op(lambda x, y: nf.where(nf.tensor(cond), x, y), lambda x, y: torch.where(torch.tensor(cond), x, y),
             list(shapes[1:]))


def test_where_scalars_and_method():
    cond = np.array([[True, False, True]])
    check_op(lambda x: nf.where(nf.tensor(cond), x, 0.0), lambda x: torch.where(torch.tensor(cond), x, 0.0),
             [(2, 3)])
    check_op(lambda y: nf.where(nf.tensor(cond), 1.5, y), lambda y: torch.where(torch.tensor(cond), 1.5, y),
             [(2, 3)])
    check_op(lambda x, y: x.where(nf.tensor(cond), y), lambda x, y: x.where(torch.tensor(cond), y),
             [(2, 3), (3,)])
    check_op(lambda x: nf.where(x > 0, x, x * 0.1), lambda x: torch.where(x > 0, x, x * 0.1), [(4, 5)])


def test_where_dtypes_and_errors():
    c = nf.tensor([True, False])
    assert nf.where(c, nf.tensor([1, 2]), nf.tensor([1.5, 2.5])).dtype == nf.float32
    assert nf.where(c, nf.tensor([1, 2]), 0).dtype == nf.int64
    assert nf.where(c, nf.ones(2, dtype=nf.float64), 0.5).dtype == nf.float64
    with pytest.raises(RuntimeError, match=r"where.*\(2,\).*\(3,\)"):
        nf.where(c, nf.ones(3), nf.ones(3))
    with pytest.raises(RuntimeError, match="bool"):
        nf.where(nf.tensor([1, 0]), nf.ones(2), nf.ones(2))


@pytest.mark.parametrize("name,low,high", [
    ("exp", -2, 2), ("log", 0.2, 3), ("log1p", -0.5, 2), ("sqrt", 0.2, 3), ("rsqrt", 0.2, 3), ("abs", 0.1, 2),
    ("sin", -3, 3), ("cos", -3, 3), ("tanh", -2, 2), ("sigmoid", -4, 4), ("relu", 0.1, 2), ("erf", -3, 3),
])
def test_gradcheck_unary(name, low, high):
    gradcheck(getattr(nf, name), [(3, 4)], low=low, high=high)
    gradcheck(getattr(nf, name), [()], low=low, high=high)


def test_gradcheck_relu_abs_both_signs():
    x = np.array([-1.5, -0.3, 0.4, 2.0])
    gradcheck(nf.relu, [x])
    gradcheck(nf.abs, [x])


def test_gradcheck_piecewise_constant_and_clamp():
    x = np.array([-1.3, -0.3, 0.4, 2.2])
    for fn in (nf.floor, nf.ceil, nf.round, nf.sign, nf.trunc):
        gradcheck(fn, [x])
    gradcheck(lambda a: nf.clamp(a, -1.0, 1.0), [x])
    gradcheck(lambda a, lo: nf.clamp(a, min=lo), [x, np.array([0.0, 0.0, 1.0, 1.0])])


def test_gradcheck_where():
    cond = nf.tensor([[True, False, True]])
    gradcheck(lambda x, y: nf.where(cond, x, y), [(2, 3), (2, 1)])


@pytest.mark.parametrize("name", ["exp", "log", "sqrt", "tanh", "sigmoid", "relu", "abs", "sin"])
def test_unary_float16_preserved(name):
    nf_fn, torch_fn, low, high = UNARY[name]
    check_op(nf_fn, torch_fn, [(3, 4)], dtype=np.float16, low=low, high=high, atol=2e-3, rtol=2e-3,
             grad_atol=2e-3, grad_rtol=2e-3)
