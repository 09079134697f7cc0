"""Conv1d / Conv2d: outputs and input/weight/bias gradients vs PyTorch modules holding the same weights,
float64 gradcheck of the Conv Function, init, repr, and error messages."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import nnforge as nf
import nnforge.nn.functional as F
from helpers import gradcheck

OUT_TOL, GRAD_TOL = 2e-5, 5e-4
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")


def _copy_weights(nf_mod: nf.nn.Module, t_mod: torch.nn.Module) -> None:
    nf_mod.load_state_dict({k: v.detach().numpy() for k, v in t_mod.state_dict().items()})


def _close(a: nf.Tensor, b: torch.Tensor, tol: float, what: str) -> None:
    a = np.asarray(a.detach())
    b = b.detach().numpy()
    assert a.shape == b.shape, f"{what}: shape {a.shape} != torch {b.shape}"
    scale = max(1.0, float(np.abs(b).max()))
    np.testing.assert_allclose(a, b, atol=tol * scale, rtol=tol, err_msg=what)


def _compare_module(nd: int, in_shape: tuple, args: tuple, kwargs: dict, x_requires_grad: bool = True,
                    seed: int = 0, channels_last: bool = False) -> None:
    """Build the same conv in both libraries, run forward + backward with a random upstream gradient."""
    torch.manual_seed(seed)
    t_mod = (torch.nn.Conv2d if nd == 2 else torch.nn.Conv1d)(*args, **kwargs)
    n_mod = (nf.nn.Conv2d if nd == 2 else nf.nn.Conv1d)(*args, **kwargs)
    _copy_weights(n_mod, t_mod)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(in_shape).astype(np.float32)
    xt = torch.tensor(x, requires_grad=x_requires_grad)
    xn_data = x
    if channels_last:  # same values, channels-last memory (what a previous convolution produces)
        xn_data = np.ascontiguousarray(np.moveaxis(x, 1, -1))
        xn_data = np.moveaxis(xn_data, -1, 1)
        assert not xn_data.flags.c_contiguous
    xn = nf.from_numpy(xn_data).requires_grad_(x_requires_grad)
    yt, yn = t_mod(xt), n_mod(xn)
    _close(yn, yt, OUT_TOL, "forward")
    assert yn.dtype == nf.float32
    g = rng.standard_normal(tuple(yt.shape)).astype(np.float32)
    yt.backward(torch.from_numpy(g))
    yn.backward(nf.from_numpy(g))
    _close(n_mod.weight.grad, t_mod.weight.grad, GRAD_TOL, "weight grad")
    if t_mod.bias is not None:
        _close(n_mod.bias.grad, t_mod.bias.grad, GRAD_TOL, "bias grad")
    if x_requires_grad:
        _close(xn.grad, xt.grad, GRAD_TOL, "input grad")
    else:
        assert xn.grad is None


CONV2D_CASES = [
    # (input shape, (in, out, kernel), kwargs)
    ((2, 3, 8, 8), (3, 4, 3), {}),
    ((2, 3, 9, 7), (3, 5, (3, 2)), {"stride": 2, "padding": 1}),
    ((1, 4, 10, 12), (4, 6, 3), {"stride": (2, 3), "padding": (2, 1)}),
    ((2, 2, 11, 9), (2, 3, 3), {"dilation": 2, "padding": 2}),
    ((2, 2, 11, 9), (2, 3, (3, 2)), {"dilation": (1, 3), "stride": (1, 2)}),
    ((2, 3, 7, 8), (3, 4, 4), {"padding": "same"}),  # even kernel: torch pads the extra row/col at the end
    ((2, 3, 7, 8), (3, 4, (2, 5)), {"padding": "same", "dilation": (3, 1)}),
    ((2, 3, 7, 8), (3, 4, 3), {"padding": "valid", "bias": False}),
    ((2, 4, 8, 8), (4, 6, 3), {"groups": 2, "padding": 1}),
    ((2, 6, 8, 7), (6, 6, 3), {"groups": 6, "padding": 1, "stride": 2}),  # depthwise
    ((2, 4, 8, 7), (4, 8, 3), {"groups": 4}),  # depthwise with channel multiplier 2
    ((1, 1, 28, 28), (1, 8, 5), {"stride": 3}),
    ((3, 8, 5, 5), (8, 16, 1), {}),  # 1x1 (pointwise)
    ((2, 3, 6, 6), (3, 2, 6), {}),  # kernel as big as the input: 1x1 output
    ((2, 1, 40, 40), (1, 4, 3), {"padding": 1}),  # many rows, small K*O: chunked weight gradient
    ((2, 4, 34, 34), (4, 4, 3), {"padding": 1, "groups": 2}),  # the same, grouped
]


@pytest.mark.parametrize("in_shape,args,kwargs", CONV2D_CASES)
def test_conv2d_matches_torch(in_shape: tuple, args: tuple, kwargs: dict) -> None:
    _compare_module(2, in_shape, args, kwargs)


@pytest.mark.parametrize("in_shape,args,kwargs", CONV2D_CASES[:4] + CONV2D_CASES[8:10])
def test_conv2d_channels_last_input(in_shape: tuple, args: tuple, kwargs: dict) -> None:
    _compare_module(2, in_shape, args, kwargs, channels_last=True)


CONV1D_CASES = [
    ((2, 3, 10), (3, 4, 3), {}),
    ((1, 4, 17), (4, 6, 5), {"stride": 3, "padding": 2}),
    ((2, 2, 12), (2, 3, 4), {"padding": "same"}),
    ((2, 2, 12), (2, 3, 3), {"padding": "same", "dilation": 3}),
    ((2, 4, 9), (4, 4, 3), {"groups": 4, "bias": False}),
    ((2, 6, 9), (6, 4, 2), {"groups": 2, "stride": 2, "dilation": 2}),
]


@pytest.mark.parametrize("in_shape,args,kwargs", CONV1D_CASES)
def test_conv1d_matches_torch(in_shape: tuple, args: tuple, kwargs: dict) -> None:
    _compare_module(1, in_shape, args, kwargs)


def test_input_without_grad_skips_input_gradient() -> None:
    _compare_module(2, (2, 1, 12, 12), (1, 4, 3), {"padding": 1}, x_requires_grad=False)


def test_frozen_weight_still_gives_input_grad() -> None:
    conv = nf.nn.Conv2d(3, 4, 3, padding=1)
    conv.weight.requires_grad_(False)
    x = nf.randn(2, 3, 6, 6, requires_grad=True)
    conv(x).sum().backward()
    assert conv.weight.grad is None and conv.bias.grad is not None
    w = torch.tensor(conv.weight.numpy())
    xt = torch.tensor(x.detach().numpy(), requires_grad=True)
    torch.nn.functional.conv2d(xt, w, torch.tensor(conv.bias.detach().numpy()), padding=1).sum().backward()
    _close(x.grad, xt.grad, GRAD_TOL, "input grad")


def test_chain_of_convs_and_pooling_matches_torch() -> None:
    """conv -> relu -> maxpool -> conv -> relu -> avgpool -> flatten: layouts mix, gradients still agree."""
    torch.manual_seed(0)

    def build(lib):
        nn = lib.nn
        return nn.Sequential(nn.Conv2d(2, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(6, 8, 3, padding="same"), nn.ReLU(), nn.AvgPool2d(2),
                             nn.Conv2d(8, 4, 1), nn.Flatten())
    tm, nm = build(torch), build(nf)
    _copy_weights(nm, tm)
    x = np.random.default_rng(1).standard_normal((3, 2, 12, 12)).astype(np.float32)
    xt, xn = torch.tensor(x, requires_grad=True), nf.tensor(x, requires_grad=True)
    yt, yn = tm(xt), nm(xn)
    _close(yn, yt, OUT_TOL, "forward")
    (yt * yt).sum().backward()
    (yn * yn).sum().backward()
    _close(xn.grad, xt.grad, GRAD_TOL, "input grad")
    for (name, p), (_, q) in zip(nm.named_parameters(), tm.named_parameters()):
        _close(p.grad, q.grad, GRAD_TOL, f"grad of {name}")


def test_functional_conv2d_and_unbatched_input() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 7, 6)).astype(np.float32)
    w = rng.standard_normal((5, 3, 2, 2)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    yt = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), torch.tensor(b), stride=2, padding=1)
    yn = F.conv2d(nf.tensor(x), nf.tensor(w), nf.tensor(b), stride=2, padding=1)
    _close(yn, yt, OUT_TOL, "unbatched conv2d")
    x1 = np.ascontiguousarray(x[:, 0])  # (C, L)
    yt = torch.nn.functional.conv1d(torch.tensor(x1), torch.tensor(w[:, :, 0]), padding="same")
    yn = F.conv1d(nf.tensor(x1), nf.tensor(w[:, :, 0]), padding="same")
    _close(yn, yt, OUT_TOL, "unbatched conv1d")


def test_float64_and_no_grad() -> None:
    conv = nf.nn.Conv2d(2, 3, 3, dtype=nf.float64)
    assert conv.weight.dtype == nf.float64
    x = nf.randn(1, 2, 5, 5, dtype=nf.float64)
    y = conv(x)
    assert y.dtype == nf.float64
    with nf.no_grad():
        y2 = conv(x)
    assert y2.grad_fn is None and not y2.requires_grad
    np.testing.assert_array_equal(y.detach().numpy(), y2.numpy())
    y.sum().backward()
    assert conv.weight.grad.dtype == nf.float64


@pytest.mark.parametrize("kwargs", [
    {"stride": 2, "padding": 1},
    {"dilation": 2, "padding": (1, 2)},
    {"groups": 2, "padding": "same"},
])
def test_conv2d_gradcheck(kwargs: dict) -> None:
    x_shape, w_shape = (2, 4, 5, 6), (4, 4 // kwargs.get("groups", 1), 2, 3)
    gradcheck(lambda x, w, b: F.conv2d(x, w, b, **kwargs), [x_shape, w_shape, (4,)])


def test_conv1d_gradcheck() -> None:
    gradcheck(lambda x, w, b: F.conv1d(x, w, b, stride=2, padding=2, dilation=2, groups=3),
              [(2, 3, 9), (6, 1, 3), (6,)])


def test_init_state_dict_and_repr_match_torch() -> None:
    for args, kwargs in [((3, 8, 3), {}), ((4, 8, (3, 5)), {"stride": 2, "padding": 1, "groups": 2, "bias": False}),
                         ((2, 4, 3), {"padding": "same", "dilation": 2})]:
        t_mod, n_mod = torch.nn.Conv2d(*args, **kwargs), nf.nn.Conv2d(*args, **kwargs)
        assert repr(n_mod) == repr(t_mod)
        t_sd, n_sd = t_mod.state_dict(), n_mod.state_dict()
        assert list(n_sd) == list(t_sd)
        assert all(tuple(n_sd[k].shape) == tuple(t_sd[k].shape) for k in t_sd)
    assert repr(nf.nn.Conv1d(2, 4, 3, stride=2)) == repr(torch.nn.Conv1d(2, 4, 3, stride=2))
    nf.manual_seed(0)
    conv = nf.nn.Conv2d(16, 64, 3)
    bound = 1 / math.sqrt(16 * 9)
    w, b = conv.weight.detach().numpy(), conv.bias.detach().numpy()
    assert w.dtype == np.float32 and np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    assert np.abs(b).max() <= bound and abs(w.std() - bound / math.sqrt(3)) < 0.05 * bound


def test_seeded_init_is_reproducible() -> None:
    nf.manual_seed(3)
    a = nf.nn.Conv2d(2, 3, 3).weight.detach().numpy().copy()
    nf.manual_seed(3)
    np.testing.assert_array_equal(nf.nn.Conv2d(2, 3, 3).weight.detach().numpy(), a)


def test_errors_name_layer_and_shapes() -> None:
    conv = nf.nn.Conv2d(3, 8, 3)
    with pytest.raises(RuntimeError, match=r"Conv2d\(3, 8, kernel_size=\(3, 3\).*expected input with 3 channels.*"
                                           r"\(2, 4, 28, 28\)"):
        conv(nf.randn(2, 4, 28, 28))
    with pytest.raises(RuntimeError, match=r"Conv2d\(3, 8.*\(2, 3, 2, 28\).*smaller than the kernel"):
        conv(nf.randn(2, 3, 2, 28))
    with pytest.raises(RuntimeError, match=r"Conv2d\(3, 8.*4-d.*3-d.*\(3, 28\)"):
        conv(nf.randn(3, 28))
    with pytest.raises(RuntimeError, match=r"conv1d: expected input with 4 channels"):
        F.conv1d(nf.randn(1, 3, 10), nf.randn(2, 2, 3), groups=2)
    with pytest.raises(ValueError, match="same.*strided"):
        nf.nn.Conv2d(3, 8, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="divisible by groups"):
        nf.nn.Conv2d(3, 8, 3, groups=2)
    with pytest.raises(RuntimeError, match="conv2d: expected floating-point input.*int64"):
        F.conv2d(nf.zeros(1, 1, 4, 4, dtype=nf.int64), nf.randn(1, 1, 3, 3))
    with pytest.raises(RuntimeError, match="conv2d.*float64, float32"):
        F.conv2d(nf.randn(1, 1, 4, 4, dtype=nf.float64), nf.randn(1, 1, 3, 3))
