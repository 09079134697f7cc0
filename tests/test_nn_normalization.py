"""LayerNorm, RMSNorm, BatchNorm1d/2d vs PyTorch: outputs, gradients, running statistics; gradchecks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import nnforge as nf
import nnforge.nn.functional as F

OUT_TOL, GRAD_TOL = 2e-5, 5e-4


def _sync(nf_mod, t_mod):
    nf_mod.load_state_dict({k: v.detach().numpy() for k, v in t_mod.state_dict().items()})


def _randomize(t_mod):
    with torch.no_grad():
        for p in t_mod.parameters():
            p.copy_(torch.randn_like(p))


def _run(nf_mod, t_mod, x, seed=1):
    xn, xt = nf.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    yn, yt = nf_mod(xn), t_mod(xt)
    np.testing.assert_allclose(yn.detach().numpy(), yt.detach().numpy(), atol=OUT_TOL, rtol=OUT_TOL)
    g = np.random.default_rng(seed).standard_normal(yt.shape).astype(np.float32)
    yn.backward(nf.tensor(g))
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(xn.grad.numpy(), xt.grad.numpy(), atol=GRAD_TOL, rtol=GRAD_TOL)
    tp = dict(t_mod.named_parameters())
    for name, p in nf_mod.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), tp[name].grad.numpy(), atol=GRAD_TOL, rtol=GRAD_TOL,
                                   err_msg=name)


@pytest.mark.parametrize("shape,normalized", [((4, 6), 6), ((2, 3, 8), (8,)), ((2, 3, 4), (3, 4))])
@pytest.mark.parametrize("affine,bias", [(True, True), (True, False), (False, False)])
def test_layer_norm_matches_torch(shape, normalized, affine, bias):
    t = torch.nn.LayerNorm(normalized, elementwise_affine=affine, bias=bias)
    _randomize(t)
    n = nf.nn.LayerNorm(normalized, elementwise_affine=affine, bias=bias)
    _sync(n, t)
    x = (np.random.default_rng(0).standard_normal(shape) * 3 + 1).astype(np.float32)
    _run(n, t, x)


@pytest.mark.parametrize("eps", [None, 1e-6])
@pytest.mark.parametrize("affine", [True, False])
def test_rms_norm_matches_torch(eps, affine):
    t = torch.nn.RMSNorm(8, eps=eps, elementwise_affine=affine)
    _randomize(t)
    n = nf.nn.RMSNorm(8, eps=eps, elementwise_affine=affine)
    _sync(n, t)
    _run(n, t, np.random.default_rng(0).standard_normal((2, 5, 8)).astype(np.float32))


def test_layer_norm_shape_error():
    with pytest.raises(RuntimeError, match=r"LayerNorm.*trailing shape \(6,\).*\(2, 5\)"):
        nf.nn.LayerNorm(6)(nf.randn(2, 5))


def test_norm_gradchecks():
    x = nf.randn(3, 2, 4, dtype=nf.float64, requires_grad=True)
    w = nf.randn(2, 4, dtype=nf.float64, requires_grad=True)
    b = nf.randn(2, 4, dtype=nf.float64, requires_grad=True)
    assert nf.autograd.gradcheck(lambda a, c, d: F.layer_norm(a, (2, 4), c, d), (x, w, b))
    assert nf.autograd.gradcheck(lambda a: F.layer_norm(a, (4,)), (x,))
    w4 = nf.randn(4, dtype=nf.float64, requires_grad=True)
    assert nf.autograd.gradcheck(lambda a, c: F.rms_norm(a, (4,), c, 1e-6), (x, w4))
    xb = nf.randn(4, 3, 2, dtype=nf.float64, requires_grad=True)
    wb = nf.randn(3, dtype=nf.float64, requires_grad=True)
    bb = nf.randn(3, dtype=nf.float64, requires_grad=True)
    assert nf.autograd.gradcheck(lambda a, c, d: F.batch_norm(a, None, None, c, d, training=True), (xb, wb, bb))
    rm, rv = nf.randn(3, dtype=nf.float64), nf.rand(3, dtype=nf.float64) + 0.5
    assert nf.autograd.gradcheck(lambda a, c, d: F.batch_norm(a, rm, rv, c, d, training=False), (xb, wb, bb))


@pytest.mark.parametrize("cls,shape", [("BatchNorm1d", (8, 3)), ("BatchNorm1d", (4, 3, 5)),
                                       ("BatchNorm2d", (4, 3, 5, 2))])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_batch_norm_training_steps_and_eval(cls, shape, momentum):
    t = getattr(torch.nn, cls)(3, momentum=momentum)
    _randomize(t)
    n = getattr(nf.nn, cls)(3, momentum=momentum)
    _sync(n, t)
    rng = np.random.default_rng(0)
    for step in range(4):
        x = (rng.standard_normal(shape) * 2 + step).astype(np.float32)
        t.zero_grad()
        n.zero_grad()
        _run(n, t, x, seed=step)
    sd_t = t.state_dict()
    for k, v in n.state_dict().items():
        np.testing.assert_allclose(v.numpy(), sd_t[k].numpy(), atol=1e-5, rtol=1e-5, err_msg=k)
    assert int(n.num_batches_tracked.item()) == 4
    n.eval()
    t.eval()
    t.zero_grad()
    n.zero_grad()
    _run(n, t, rng.standard_normal(shape).astype(np.float32))
    np.testing.assert_allclose(n.running_mean.numpy(), t.running_mean.numpy(), atol=1e-6)  # eval: no update


@pytest.mark.parametrize("affine,track", [(False, True), (True, False), (False, False)])
def test_batch_norm_flags(affine, track):
    t = torch.nn.BatchNorm1d(3, affine=affine, track_running_stats=track)
    n = nf.nn.BatchNorm1d(3, affine=affine, track_running_stats=track)
    assert list(n.state_dict()) == list(t.state_dict())
    x = np.random.default_rng(0).standard_normal((6, 3)).astype(np.float32)
    _run(n, t, x)
    n.eval()
    t.eval()
    _run(n, t, x + 1)


def test_batch_norm_errors():
    with pytest.raises(ValueError, match=r"BatchNorm2d\(3\).*4D.*\(2, 3, 4\)"):
        nf.nn.BatchNorm2d(3)(nf.randn(2, 3, 4))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nf.nn.BatchNorm1d(3)(nf.randn(1, 3))
