"""Convolution, max pooling and ReLU on both paths: the compiled kernels (``numba_conv_kernels``) and the pure
NumPy one must each give torch's outputs and input/weight/bias gradients, for channels-last and NCHW inputs,
strides, padding, dilation, groups, odd sizes, ceil_mode, ties (the first maximum wins), NaN and
non-contiguous inputs, and batches large enough to be split across cores."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from test_nn_conv import CONV1D_CASES, CONV2D_CASES, _close, _compare_module, _copy_weights
from test_nn_pooling import MAX2D, _compare, _x

import nnforge as nf
import nnforge.nn.functional as F
from nnforge.backend import cpu_backend

pytest.importorskip("numba", reason="the compiled kernels need numba (pip install -e '.[fast]')")

TF = torch.nn.functional
OUT_TOL, GRAD_TOL = 2e-5, 5e-4
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")


@pytest.fixture(params=["fast", "numpy"])
def path(request, monkeypatch):
    """Run the test once with the compiled kernels and once with the pure NumPy path."""
    monkeypatch.setattr(cpu_backend, "use_fast_kernels", request.param == "fast")
    return request.param


def _channels_last(x: np.ndarray) -> np.ndarray:
    """The same values in channels-last memory (what a convolution produces)."""
    return np.moveaxis(np.ascontiguousarray(np.moveaxis(x, 1, -1)), -1, 1)


# -- convolution -------------------------------------------------------------------------------------------

EXTRA_CONV2D = [
    ((5, 1, 13, 11), (1, 7, 3), {"padding": 1}),  # one input channel: direct loops
    ((3, 2, 9, 10), (2, 5, (3, 2)), {"stride": (2, 3), "padding": (1, 0), "dilation": (1, 2)}),  # direct, strided
    ((3, 3, 8, 9), (3, 4, 3), {"padding": "same", "dilation": 2, "bias": False}),  # direct, no bias
    ((4, 6, 9, 7), (6, 5, 3), {"stride": 2, "padding": 2, "dilation": 2}),  # im2col + GEMM, strided, dilated
    ((3, 8, 7, 8), (8, 4, (2, 4)), {"padding": "same"}),  # even kernel: extra padding at the bottom/right
    ((2, 5, 6, 6), (5, 3, 5), {"padding": 0, "stride": 3}),
]


@pytest.mark.parametrize("in_shape,args,kwargs,channels_last",
                         [c + (cl,) for c in CONV2D_CASES + EXTRA_CONV2D for cl in (False, True)
                          if not (cl and c[0][1] == 1)])  # one channel: channels-last is plain NCHW
def test_conv2d_both_paths(path, in_shape, args, kwargs, channels_last):
    _compare_module(2, in_shape, args, kwargs, channels_last=channels_last)


@pytest.mark.parametrize("in_shape,args,kwargs", CONV1D_CASES)
def test_conv1d_both_paths(path, in_shape, args, kwargs):
    _compare_module(1, in_shape, args, kwargs)


@pytest.mark.parametrize("x_requires_grad", [False, True])
@pytest.mark.parametrize("c_in", [1, 16])
def test_conv2d_large_batch_split_across_cores(path, c_in, x_requires_grad):
    """Batches of several chunks per core (the fast path's im2col scratch is reused across chunks)."""
    _compare_module(2, (37, c_in, 14, 13), (c_in, 24, 3), {"padding": 1}, x_requires_grad=x_requires_grad)


def test_conv2d_non_contiguous_input_and_frozen_weight(path):
    torch.manual_seed(0)
    tconv, nconv = torch.nn.Conv2d(6, 4, 3, stride=2, padding=1), nf.nn.Conv2d(6, 4, 3, stride=2, padding=1)
    _copy_weights(nconv, tconv)
    nconv.weight.requires_grad_(False)
    tconv.weight.requires_grad_(False)
    big = np.random.default_rng(3).standard_normal((4, 9, 12, 15)).astype(np.float32)
    x = big[::2, 1:7, :, ::2]  # strided view in every axis
    xt = torch.tensor(np.ascontiguousarray(x), requires_grad=True)
    xn = nf.from_numpy(x).requires_grad_()
    yt, yn = tconv(xt), nconv(xn)
    _close(yn, yt, OUT_TOL, "forward")
    g = np.random.default_rng(4).standard_normal(tuple(yt.shape)).astype(np.float32)
    yt.backward(torch.from_numpy(g))
    yn.backward(nf.from_numpy(g))
    assert nconv.weight.grad is None
    _close(nconv.bias.grad, tconv.bias.grad, GRAD_TOL, "bias grad")
    _close(xn.grad, xt.grad, GRAD_TOL, "input grad")


def test_cnn_training_step_both_paths(path):
    """The benchmark's network (smaller): conv -> relu -> maxpool twice, flatten, linear; loss and all grads."""
    torch.manual_seed(0)

    def build(lib):
        nn = lib.nn
        return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(16 * 3 * 3, 10))
    tm, nm = build(torch), build(nf)
    _copy_weights(nm, tm)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((9, 1, 14, 14)).astype(np.float32)
    y = rng.integers(0, 10, 9)
    lt = TF.cross_entropy(tm(torch.from_numpy(x)), torch.from_numpy(y))
    ln = F.cross_entropy(nm(nf.from_numpy(x)), nf.from_numpy(y))
    _close(ln, lt, OUT_TOL, "loss")
    lt.backward()
    ln.backward()
    for (name, p), (_, q) in zip(nm.named_parameters(), tm.named_parameters()):
        _close(p.grad, q.grad, GRAD_TOL, f"grad of {name}")


# -- max pooling -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("shape,kw", MAX2D)
def test_max_pool2d_both_paths(path, shape, kw, ties, channels_last):
    x = _x(shape, ties=ties)
    _compare(lambda a: F.max_pool2d(a, **kw, return_indices=True),
             lambda a: TF.max_pool2d(a, **kw, return_indices=True), x, channels_last=channels_last)


@pytest.mark.parametrize("kw", [{"kernel_size": 2}, {"kernel_size": 3, "stride": 2, "padding": 1},
                                {"kernel_size": 2, "stride": 1}])
@pytest.mark.parametrize("channels_last", [False, True])
def test_max_pool2d_large_batch_tiled_and_overlapping(path, kw, channels_last):
    _compare(lambda a: F.max_pool2d(a, **kw), lambda a: TF.max_pool2d(a, **kw), _x((33, 16, 14, 14), ties=True),
             channels_last=channels_last)


def test_max_pool2d_nan_and_inf_channels_last(path):
    x = _x((2, 5, 6, 6))
    x[0, 1, 0, 0] = np.nan  # a window with one NaN
    x[1, 2, 2:4, 2:4] = [[np.nan, 1.0], [np.nan, 2.0]]  # two NaNs: torch keeps the last
    x[0, 3, 4:6, 4:6] = -np.inf  # a window of -inf
    x[1, 4, 0, 0:2] = np.inf
    xt = torch.tensor(x)
    yt, it = TF.max_pool2d(xt, 2, return_indices=True)
    yn, i_n = F.max_pool2d(nf.from_numpy(_channels_last(x)), 2, return_indices=True)
    np.testing.assert_array_equal(yn.numpy(), yt.numpy())
    np.testing.assert_array_equal(i_n.numpy(), it.numpy())


def test_max_pool2d_tie_gradient_goes_to_first_max(path):
    x = np.zeros((2, 3, 4, 4), np.float32)  # every window all ties: the gradient goes to its top-left
    xt = torch.tensor(x, requires_grad=True)
    xn = nf.from_numpy(_channels_last(x)).requires_grad_()
    TF.max_pool2d(xt, 2).sum().backward()
    F.max_pool2d(xn, 2).sum().backward()
    np.testing.assert_array_equal(xn.grad.numpy(), xt.grad.numpy())


def test_max_pool1d_both_paths(path):
    kw = {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}
    _compare(lambda a: F.max_pool1d(a, **kw), lambda a: TF.max_pool1d(a, **kw), _x((3, 4, 11), ties=True))
    x = _x((3, 4, 11))
    xn = nf.from_numpy(np.ascontiguousarray(x.transpose(0, 2, 1)).transpose(0, 2, 1)).requires_grad_()
    xt = torch.tensor(x, requires_grad=True)
    yt, yn = TF.max_pool1d(xt, 2), F.max_pool1d(xn, 2)
    np.testing.assert_array_equal(yn.detach().numpy(), yt.detach().numpy())
    yt.sum().backward()
    yn.sum().backward()
    np.testing.assert_array_equal(xn.grad.numpy(), xt.grad.numpy())


# -- ReLU --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
def test_relu_forward_backward_match_torch(path, layout):
    x = np.random.default_rng(2).standard_normal((3, 4, 5, 6)).astype(np.float32)
    x[0, 0, 0, :4] = [np.nan, 0.0, -0.0, np.inf]
    if layout == "channels_last":
        xn_data = _channels_last(x)
    elif layout == "strided":
        big = np.zeros((3, 4, 5, 12), np.float32)
        big[..., ::2] = x
        xn_data = big[..., ::2]
    else:
        xn_data = x.copy()
    xt = torch.tensor(x, requires_grad=True)
    xn = nf.from_numpy(xn_data).requires_grad_()
    yt, yn = torch.relu(xt), nf.relu(xn)
    np.testing.assert_array_equal(yn.detach().numpy(), yt.detach().numpy())
    g = np.random.default_rng(3).standard_normal(x.shape).astype(np.float32)
    yt.backward(torch.from_numpy(g))
    yn.backward(nf.from_numpy(g))
    np.testing.assert_array_equal(xn.grad.numpy(), xt.grad.numpy())  # incl. NaN: torch passes its gradient
    yn2 = nf.nn.ReLU()(nf.from_numpy(xn_data))
    np.testing.assert_array_equal(yn2.numpy(), yt.detach().numpy())


def test_relu_float64_takes_numpy_path(path):
    x = nf.tensor(np.array([-1.0, 0.0, 2.0]), requires_grad=True)
    y = nf.relu(x)
    assert y.dtype == nf.float64
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0, 1.0])
