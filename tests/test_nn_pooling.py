"""Max / average / adaptive-average pooling (1-d and 2-d): outputs, indices and gradients vs PyTorch,
float64 gradcheck, ties, NaN, ceil_mode, overlapping windows, channels-last inputs, modules and errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import nnforge as nf
import nnforge.nn.functional as F
from helpers import gradcheck

TF = torch.nn.functional
OUT_TOL, GRAD_TOL = 2e-5, 5e-4


def _compare(nf_fn, torch_fn, x: np.ndarray, channels_last: bool = False) -> None:
    """Forward (and indices, when returned) equal torch's; then input gradients for a random upstream grad."""
    xt = torch.tensor(x, requires_grad=True)
    xn_data = np.moveaxis(np.ascontiguousarray(np.moveaxis(x, 1, -1)), -1, 1) if channels_last else x.copy()
    xn = nf.from_numpy(xn_data).requires_grad_()
    yt, yn = torch_fn(xt), nf_fn(xn)
    if isinstance(yt, tuple):
        (yt, it), (yn, i_n) = yt, yn
        assert i_n.dtype == nf.int64
        np.testing.assert_array_equal(i_n.numpy(), it.numpy(), err_msg="indices")
    assert yn.shape == tuple(yt.shape), (yn.shape, tuple(yt.shape))
    np.testing.assert_allclose(yn.detach().numpy(), yt.detach().numpy(), atol=OUT_TOL, rtol=OUT_TOL,
                               err_msg="forward")
    assert yn.dtype == nf.float32
    g = np.random.default_rng(5).standard_normal(tuple(yt.shape)).astype(np.float32)
    yt.backward(torch.from_numpy(g))
    yn.backward(nf.from_numpy(g))
    np.testing.assert_allclose(xn.grad.numpy(), xt.grad.numpy(), atol=GRAD_TOL, rtol=GRAD_TOL, err_msg="grad")


def _x(shape: tuple, seed: int = 0, ties: bool = False) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return np.round(x).astype(np.float32) if ties else x  # few distinct values: many ties per window


MAX2D = [
    ((2, 3, 8, 8), dict(kernel_size=2)),
    ((2, 3, 9, 7), dict(kernel_size=2)),  # odd sizes: last row/col dropped
    ((2, 3, 9, 7), dict(kernel_size=2, ceil_mode=True)),
    ((2, 3, 8, 9), dict(kernel_size=3, stride=1, padding=1)),  # overlapping
    ((2, 3, 8, 9), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ((1, 2, 10, 9), dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0), dilation=(2, 1))),
    ((2, 2, 11, 10), dict(kernel_size=(2, 4), stride=(3, 2), padding=(1, 2), dilation=(3, 2), ceil_mode=True)),
    ((3, 1, 5, 5), dict(kernel_size=5)),
]


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("shape,kw", MAX2D)
def test_max_pool2d(shape: tuple, kw: dict, ties: bool) -> None:
    x = _x(shape, ties=ties)
    _compare(lambda a: F.max_pool2d(a, **kw, return_indices=True),
             lambda a: TF.max_pool2d(a, **kw, return_indices=True), x)


@pytest.mark.parametrize("shape,kw", MAX2D[:5])
def test_max_pool2d_channels_last_input(shape: tuple, kw: dict) -> None:
    _compare(lambda a: F.max_pool2d(a, **kw), lambda a: TF.max_pool2d(a, **kw), _x(shape, ties=True),
             channels_last=True)


def test_max_pool_ties_after_relu_give_first_index() -> None:
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 1, 1] = 0.0
    _, idx = F.max_pool2d(nf.tensor(x), 2, return_indices=True)
    np.testing.assert_array_equal(idx.numpy(), [[[[0, 2], [8, 10]]]])
    xt = torch.tensor(x, requires_grad=True)
    xn = nf.tensor(x, requires_grad=True)
    TF.max_pool2d(xt, 2).sum().backward()
    F.max_pool2d(xn, 2).sum().backward()
    np.testing.assert_array_equal(xn.grad.numpy(), xt.grad.numpy())


def test_max_pool_nan_propagates_like_torch() -> None:
    x = _x((1, 2, 6, 6), seed=3)
    x[0, 0, 1, 1] = np.nan
    x[0, 1, 2, 2] = x[0, 1, 3, 3] = np.nan
    yt, it = TF.max_pool2d(torch.tensor(x), 2, return_indices=True)
    yn, i_n = F.max_pool2d(nf.tensor(x), 2, return_indices=True)
    np.testing.assert_array_equal(yn.numpy(), yt.numpy())  # NaNs in the same places
    np.testing.assert_array_equal(i_n.numpy(), it.numpy())
    yt, it = TF.max_pool2d(torch.tensor(x), 3, 1, 1, return_indices=True)
    yn, i_n = F.max_pool2d(nf.tensor(x), 3, 1, 1, return_indices=True)
    np.testing.assert_array_equal(i_n.numpy(), it.numpy())


@pytest.mark.parametrize("shape,kw", [
    ((2, 3, 10), dict(kernel_size=2)),
    ((2, 3, 11), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ((1, 2, 12), dict(kernel_size=2, stride=1, dilation=3)),
    ((3, 11), dict(kernel_size=4, stride=3, padding=2)),  # unbatched
])
def test_max_pool1d(shape: tuple, kw: dict) -> None:
    _compare(lambda a: F.max_pool1d(a, **kw, return_indices=True),
             lambda a: TF.max_pool1d(a, **kw, return_indices=True),
             _x(shape, ties=True))


AVG2D = [
    ((2, 3, 8, 8), dict(kernel_size=2)),
    ((2, 3, 9, 7), dict(kernel_size=3, stride=2, padding=1)),
    ((2, 3, 9, 7), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ((2, 3, 9, 7), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    ((2, 2, 8, 9), dict(kernel_size=(3, 2), stride=1, padding=(1, 1))),  # overlapping
    ((2, 2, 8, 9), dict(kernel_size=(3, 2), stride=1, padding=(1, 1), count_include_pad=False)),
    ((1, 2, 7, 10), dict(kernel_size=(4, 3), stride=(3, 2), padding=(2, 1), ceil_mode=True, divisor_override=5)),
    ((3, 7, 6), dict(kernel_size=2, ceil_mode=True)),  # unbatched
]


@pytest.mark.parametrize("shape,kw", AVG2D)
def test_avg_pool2d(shape: tuple, kw: dict) -> None:
    _compare(lambda a: F.avg_pool2d(a, **kw), lambda a: TF.avg_pool2d(a, **kw), _x(shape))


def test_avg_pool2d_channels_last_input() -> None:
    kw = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
    _compare(lambda a: F.avg_pool2d(a, **kw), lambda a: TF.avg_pool2d(a, **kw), _x((2, 4, 9, 8)), channels_last=True)


@pytest.mark.parametrize("kw", [dict(kernel_size=3), dict(kernel_size=4, stride=3, padding=2, ceil_mode=True),
                                dict(kernel_size=4, stride=3, padding=2, ceil_mode=True, count_include_pad=False)])
def test_avg_pool1d(kw: dict) -> None:
    _compare(lambda a: F.avg_pool1d(a, **kw), lambda a: TF.avg_pool1d(a, **kw), _x((2, 3, 11)))


@pytest.mark.parametrize("shape,size", [
    ((2, 3, 8, 8), 1), ((2, 3, 8, 8), (2, 4)), ((2, 3, 10, 9), (3, 4)),  # 3 and 4 divide neither
    ((2, 3, 5, 7), (5, 7)), ((2, 3, 5, 7), (7, 9)),  # identity; bigger than the input (overlapping bins)
    ((2, 3, 10, 9), (None, 4)), ((3, 10, 9), (4, 2)),
])
def test_adaptive_avg_pool2d(shape: tuple, size) -> None:
    _compare(lambda a: F.adaptive_avg_pool2d(a, size), lambda a: TF.adaptive_avg_pool2d(a, size), _x(shape))


def test_adaptive_avg_pool2d_channels_last_and_1d() -> None:
    _compare(lambda a: F.adaptive_avg_pool2d(a, (3, 2)), lambda a: TF.adaptive_avg_pool2d(a, (3, 2)), _x((2, 5, 7, 8)),
             channels_last=True)
    for size in (1, 3, 4):
        _compare(nf.nn.AdaptiveAvgPool1d(size), torch.nn.AdaptiveAvgPool1d(size), _x((2, 3, 10)))


def test_pooling_outputs_are_contiguous_nchw() -> None:
    y = nf.nn.Conv2d(2, 4, 3, padding=1)(nf.randn(2, 2, 8, 8))
    for pooled in (F.max_pool2d(y, 2), F.avg_pool2d(y, 2), F.adaptive_avg_pool2d(y, 3)):
        assert pooled.data.flags.c_contiguous
        assert pooled.view(2, -1).shape == (2, pooled.shape[1] * pooled.shape[2] * pooled.shape[3])


def test_pooling_gradcheck() -> None:
    rng = np.random.default_rng(0)
    distinct = rng.permutation(2 * 2 * 7 * 6).reshape(2, 2, 7, 6) / 10.0  # no ties: max is differentiable
    gradcheck(lambda a: F.max_pool2d(a, 3, stride=2, padding=1, ceil_mode=True), [distinct])
    gradcheck(lambda a: F.max_pool1d(a, 2, stride=1, dilation=2), [distinct[0]])
    gradcheck(lambda a: F.avg_pool2d(a, (3, 2), stride=(2, 1), padding=1, ceil_mode=True, count_include_pad=False),
              [(2, 2, 7, 6)])
    gradcheck(lambda a: F.avg_pool1d(a, 3, stride=2, padding=1), [(2, 2, 7)])
    gradcheck(lambda a: F.adaptive_avg_pool2d(a, (3, 4)), [(2, 2, 7, 6)])


def test_modules_match_functional_and_torch() -> None:
    x = _x((2, 3, 9, 8), ties=True)
    pairs = [
        (nf.nn.MaxPool2d(3, 2, 1, ceil_mode=True), torch.nn.MaxPool2d(3, 2, 1, ceil_mode=True)),
        (nf.nn.AvgPool2d(2, count_include_pad=False), torch.nn.AvgPool2d(2, count_include_pad=False)),
        (nf.nn.AdaptiveAvgPool2d((2, 3)), torch.nn.AdaptiveAvgPool2d((2, 3))),
    ]
    for n_mod, t_mod in pairs:
        _compare(n_mod, t_mod, x)
        assert n_mod.state_dict() == {} and list(n_mod.parameters()) == []
    x1 = _x((2, 3, 11), ties=True)
    for n_mod, t_mod in [(nf.nn.MaxPool1d(3, 2, 1), torch.nn.MaxPool1d(3, 2, 1)),
                         (nf.nn.AvgPool1d(3, 2, 1), torch.nn.AvgPool1d(3, 2, 1)),
                         (nf.nn.AdaptiveAvgPool1d(4), torch.nn.AdaptiveAvgPool1d(4))]:
        _compare(n_mod, t_mod, x1)
    _, idx = nf.nn.MaxPool2d(2, return_indices=True)(nf.tensor(x))
    _, t_idx = torch.nn.MaxPool2d(2, return_indices=True)(torch.tensor(x))
    np.testing.assert_array_equal(idx.numpy(), t_idx.numpy())
    assert repr(nf.nn.MaxPool2d(2)) == repr(torch.nn.MaxPool2d(2))
    assert repr(nf.nn.AdaptiveAvgPool2d(1)) == repr(torch.nn.AdaptiveAvgPool2d(1))


def test_pooling_errors() -> None:
    with pytest.raises(ValueError, match=r"max_pool2d: padding \(2, 2\) should be at most half of the kernel"):
        F.max_pool2d(nf.randn(1, 1, 8, 8), 3, padding=2)
    with pytest.raises(RuntimeError, match=r"max_pool2d: input of shape \(1, 1, 2, 8\) is too small"):
        F.max_pool2d(nf.randn(1, 1, 2, 8), 3)
    with pytest.raises(RuntimeError, match=r"avg_pool2d: expected a 4-d \(batched\) or 3-d.*\(8, 8\)"):
        F.avg_pool2d(nf.randn(8, 8), 2)
    with pytest.raises(RuntimeError, match="max_pool1d: expected a floating-point input"):
        F.max_pool1d(nf.zeros(1, 2, 8, dtype=nf.int64), 2)
    with pytest.raises(ValueError, match="adaptive_avg_pool2d: output_size"):
        F.adaptive_avg_pool2d(nf.randn(1, 1, 4, 4), (0, 2))
