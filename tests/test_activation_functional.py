"""Fused activations vs PyTorch: softmax, log_softmax, gelu (exact and tanh), silu, plus the elementwise
ones re-exported by nn.functional; numerical stability for huge logits; float64 gradchecks."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import nnforge as nf
import nnforge.nn.functional as F
from helpers import check_op, gradcheck


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dim", [0, 1, -1, -3])
def test_softmax_dims(name, dim):
    check_op(lambda a: getattr(F, name)(a, dim), lambda a: getattr(TF, name)(a, dim), [(2, 3, 4)], low=-5, high=5)
    check_op(lambda a: getattr(F, name)(a, dim=dim), lambda a: getattr(TF, name)(a, dim=dim), [(2, 3, 4)],
             low=-5, high=5, layout="transposed")


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_0d_zero_size_and_nf_namespace(name):
    check_op(lambda a: getattr(F, name)(a, 0), lambda a: getattr(TF, name)(a, 0), [()])
    check_op(lambda a: getattr(F, name)(a, -1), lambda a: getattr(TF, name)(a, -1), [(0, 3)])
    check_op(lambda a: getattr(nf, name)(a, 1), lambda a: getattr(torch, name)(a, 1), [(2, 5)])


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_huge_logits_stable(name):
    x = np.array([[1e4, 0.0, -1e4], [1e4, 1e4, 1e4], [-1e4, -1e4, -1e4 + 1], [3e38, 0.0, 1.0]], dtype=np.float32)
    out, _ = check_op(lambda a: getattr(F, name)(a, -1), lambda a: getattr(TF, name)(a, -1), [x])
    assert np.isfinite(out.detach().numpy()).all()


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_masked_with_minus_inf(name):
    x = np.array([[0.5, -np.inf, 1.0], [-np.inf, 2.0, -np.inf]], dtype=np.float32)
    check_op(lambda a: getattr(F, name)(a, -1), lambda a: getattr(TF, name)(a, -1), [x])


def test_softmax_dtype_arg_and_ints():
    check_op(lambda a: F.softmax(a, -1, dtype=nf.float64), lambda a: TF.softmax(a, -1, dtype=torch.float64),
             [(2, 3)])
    out = F.softmax(nf.tensor([1, 2, 3]), 0)
    assert out.dtype == nf.float32
    np.testing.assert_allclose(out.numpy(), torch.softmax(torch.tensor([1.0, 2.0, 3.0]), 0).numpy(), rtol=1e-6)
    check_op(lambda a: F.log_softmax(a, 1), lambda a: TF.log_softmax(a, 1), [(3, 4)], dtype=np.float64,
             atol=1e-12, rtol=1e-12, grad_atol=1e-12, grad_rtol=1e-10)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("shape", [(3, 4), (), (0, 2)], ids=str)
def test_gelu(approximate, shape):
    check_op(lambda a: F.gelu(a, approximate=approximate), lambda a: TF.gelu(a, approximate=approximate), [shape],
             low=-5, high=5)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_extremes_and_float64(approximate):
    x = np.array([-1e4, -30.0, -8.0, -1e-3, 0.0, 1e-3, 8.0, 30.0, 1e4], dtype=np.float32)
    out, _ = check_op(lambda a: F.gelu(a, approximate=approximate), lambda a: TF.gelu(a, approximate=approximate),
                      [x])
    assert np.isfinite(out.detach().numpy()).all()
    check_op(lambda a: F.gelu(a, approximate=approximate), lambda a: TF.gelu(a, approximate=approximate), [(50,)],
             dtype=np.float64, low=-6, high=6, atol=1e-12, rtol=1e-12, grad_atol=1e-12, grad_rtol=1e-10)


def test_gelu_bad_approximate():
    with pytest.raises(ValueError, match="gelu.*approximate"):
        F.gelu(nf.ones(2), approximate="fast")


@pytest.mark.parametrize("shape", [(3, 4), (), (0, 2)], ids=str)
def test_silu(shape):
    check_op(F.silu, TF.silu, [shape], low=-6, high=6)


def test_silu_extremes_and_noncontiguous():
    x = np.array([-1e4, -100.0, -20.0, 0.0, 20.0, 100.0, 1e4], dtype=np.float32)
    out, _ = check_op(F.silu, TF.silu, [x])
    assert np.isfinite(out.detach().numpy()).all()
    check_op(F.silu, TF.silu, [(4, 6)], layout="transposed")
    check_op(F.silu, TF.silu, [(20,)], dtype=np.float64, atol=1e-12, rtol=1e-12, grad_atol=1e-12, grad_rtol=1e-10)


@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh"])
def test_functional_reexports(name):
    check_op(getattr(F, name), getattr(TF, name), [(3, 4)])


@pytest.mark.parametrize("fn", [
    lambda a: F.softmax(a, -1), lambda a: F.softmax(a, 0), lambda a: F.log_softmax(a, -1),
    lambda a: F.log_softmax(a, 0), lambda a: F.gelu(a), lambda a: F.gelu(a, approximate="tanh"), F.silu,
])
def test_gradcheck_activations(fn):
    gradcheck(fn, [(3, 5)], low=-4, high=4)
    gradcheck(fn, [()], low=-4, high=4)
