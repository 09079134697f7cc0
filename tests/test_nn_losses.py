"""Loss functions and modules vs PyTorch: every option (weight, ignore_index, label_smoothing, probability
targets, reductions, pos_weight), gradients, gradchecks and error messages; plus cosine_similarity,
normalize, one_hot and pad."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import nnforge as nf
import nnforge.nn.functional as F

OUT_TOL, GRAD_TOL = 2e-5, 5e-4
RNG = np.random.default_rng(0)


def _pair(a: np.ndarray, grad: bool = True):
    grad = grad and a.dtype.kind == "f"
    return nf.tensor(a, requires_grad=grad), torch.tensor(a, requires_grad=grad)


def _check(nf_fn, t_fn, arrays, grads=None, extra_nf=(), extra_t=()):
    """Run both, compare the result and the gradients of every float input."""
    grads = grads or [True] * len(arrays)
    pairs = [_pair(a, g) for a, g in zip(arrays, grads)]
    yn = nf_fn(*[p[0] for p in pairs])
    yt = t_fn(*[p[1] for p in pairs])
    np.testing.assert_allclose(yn.detach().numpy(), yt.detach().numpy(), atol=OUT_TOL, rtol=OUT_TOL)
    g = RNG.standard_normal(yt.shape).astype(np.float32)
    yn.backward(nf.tensor(g))
    yt.backward(torch.tensor(g))
    for (n, t) in pairs:
        if t.requires_grad:
            np.testing.assert_allclose(n.grad.numpy(), t.grad.numpy(), atol=GRAD_TOL, rtol=GRAD_TOL)


LOGITS = (RNG.standard_normal((6, 5)) * 3).astype(np.float32)
TARGET = np.array([0, 4, 2, 2, 1, 3])
WEIGHT = RNG.uniform(0.5, 2, 5).astype(np.float32)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("use_weight", [False, True])
@pytest.mark.parametrize("ignore", [-100, 2])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_class_targets(reduction, use_weight, ignore, smoothing):
    kw = dict(ignore_index=ignore, reduction=reduction, label_smoothing=smoothing)
    wn = nf.tensor(WEIGHT) if use_weight else None
    wt = torch.tensor(WEIGHT) if use_weight else None
    _check(lambda x: F.cross_entropy(x, nf.tensor(TARGET), weight=wn, **kw),
           lambda x: TF.cross_entropy(x, torch.tensor(TARGET), weight=wt, **kw), [LOGITS])


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("use_weight", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_cross_entropy_probability_targets(reduction, use_weight, smoothing):
    probs = RNG.dirichlet(np.ones(5), size=6).astype(np.float32)
    kw = dict(reduction=reduction, label_smoothing=smoothing)
    wn = nf.tensor(WEIGHT) if use_weight else None
    wt = torch.tensor(WEIGHT) if use_weight else None
    _check(lambda x, p: F.cross_entropy(x, p, weight=wn, **kw),
           lambda x, p: TF.cross_entropy(x, p, weight=wt, **kw), [LOGITS, probs])


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_cross_entropy_spatial_and_unbatched(reduction):
    x = RNG.standard_normal((2, 4, 3, 2)).astype(np.float32)
    t = RNG.integers(0, 4, (2, 3, 2))
    t[0, 1, 1] = -100
    _check(lambda a: F.cross_entropy(a, nf.tensor(t), reduction=reduction, label_smoothing=0.1),
           lambda a: TF.cross_entropy(a, torch.tensor(t), reduction=reduction, label_smoothing=0.1), [x])
    p = RNG.dirichlet(np.ones(4), size=(2, 3, 2)).transpose(0, 3, 1, 2).astype(np.float32).copy()
    _check(lambda a, b: F.cross_entropy(a, b, reduction=reduction),
           lambda a, b: TF.cross_entropy(a, b, reduction=reduction), [x, p])
    _check(lambda a: F.cross_entropy(a, nf.tensor(3), reduction=reduction),
           lambda a: TF.cross_entropy(a, torch.tensor(3), reduction=reduction), [x[0, :, 0, 0].copy()])


def test_cross_entropy_huge_logits_stay_finite():
    x = np.array([[1e4, -1e4, 0.0], [-3e4, 3e4, 1.0]], dtype=np.float32)
    _check(lambda a: F.cross_entropy(a, nf.tensor([1, 0])), lambda a: TF.cross_entropy(a, torch.tensor([1, 0])), [x])


def test_cross_entropy_module():
    m = nf.nn.CrossEntropyLoss(weight=nf.tensor(WEIGHT), ignore_index=1, label_smoothing=0.05)
    t = torch.nn.CrossEntropyLoss(weight=torch.tensor(WEIGHT), ignore_index=1, label_smoothing=0.05)
    _check(lambda x: m(x, nf.tensor(TARGET)), lambda x: t(x, torch.tensor(TARGET)), [LOGITS])


def test_cross_entropy_errors():
    with pytest.raises(IndexError, match="target 7 is out of bounds for 5 classes"):
        F.cross_entropy(nf.tensor(LOGITS), nf.tensor([0, 1, 7, 0, 0, 0]))
    with pytest.raises(IndexError, match="target -3 is out of bounds"):
        F.cross_entropy(nf.tensor(LOGITS), nf.tensor([0, 1, -3, 0, 0, 0]))
    with pytest.raises(RuntimeError, match=r"probability targets must have the input's shape \(6, 5\)"):
        F.cross_entropy(nf.tensor(LOGITS), nf.rand(6, 4))
    with pytest.raises(RuntimeError, match="does not match input"):
        F.cross_entropy(nf.tensor(LOGITS), nf.tensor([0, 1]))
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(nf.tensor(LOGITS), nf.tensor(TARGET), reduction="avg")


def test_cross_entropy_gradcheck():
    x = nf.tensor(LOGITS.astype(np.float64), requires_grad=True)
    w = nf.tensor(WEIGHT.astype(np.float64))
    t = nf.tensor([0, 4, 2, 2, 1, 3])
    assert nf.autograd.gradcheck(lambda a: F.cross_entropy(a, t, weight=w, ignore_index=2, label_smoothing=0.1), (x,))
    assert nf.autograd.gradcheck(lambda a: F.cross_entropy(a, t, reduction="none", label_smoothing=0.1), (x,))
    p = nf.tensor(RNG.dirichlet(np.ones(5), size=6), requires_grad=True)
    assert nf.autograd.gradcheck(lambda a, b: F.cross_entropy(a, b, weight=w, label_smoothing=0.2), (x, p))
    x4 = nf.randn(2, 3, 2, dtype=nf.float64, requires_grad=True)
    assert nf.autograd.gradcheck(lambda a: F.cross_entropy(a, nf.tensor([[0, 2], [1, 1]])), (x4,))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("use_weight", [False, True])
def test_nll_loss(reduction, use_weight):
    logp = np.log(RNG.dirichlet(np.ones(5), size=6)).astype(np.float32)
    wn = nf.tensor(WEIGHT) if use_weight else None
    wt = torch.tensor(WEIGHT) if use_weight else None
    _check(lambda x: F.nll_loss(x, nf.tensor(TARGET), weight=wn, ignore_index=4, reduction=reduction),
           lambda x: TF.nll_loss(x, torch.tensor(TARGET), weight=wt, ignore_index=4, reduction=reduction), [logp])
    m, t = nf.nn.NLLLoss(reduction=reduction), torch.nn.NLLLoss(reduction=reduction)
    _check(lambda x: m(x, nf.tensor(TARGET)), lambda x: t(x, torch.tensor(TARGET)), [logp])
    x = nf.tensor(logp.astype(np.float64), requires_grad=True)
    assert nf.autograd.gradcheck(lambda a: F.nll_loss(a, nf.tensor(TARGET), reduction=reduction), (x,))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("use_weight", [False, True])
def test_binary_cross_entropy(reduction, use_weight):
    p = RNG.uniform(0.01, 0.99, (4, 3)).astype(np.float32)
    y = RNG.uniform(0, 1, (4, 3)).astype(np.float32)
    w = RNG.uniform(0.5, 2, (3,)).astype(np.float32)
    wn, wt = (nf.tensor(w), torch.tensor(w)) if use_weight else (None, None)
    _check(lambda a, b: F.binary_cross_entropy(a, b, weight=wn, reduction=reduction),
           lambda a, b: TF.binary_cross_entropy(a, b, weight=wt, reduction=reduction), [p, y])
    m, t = nf.nn.BCELoss(weight=wn, reduction=reduction), torch.nn.BCELoss(weight=wt, reduction=reduction)
    _check(lambda a: m(a, nf.tensor(y)), lambda a: t(a, torch.tensor(y)), [p])


def test_binary_cross_entropy_edges_and_errors():
    p = np.array([0.0, 1.0, 0.5], dtype=np.float32)
    y = np.array([1.0, 0.0, 1.0], dtype=np.float32)
    _check(lambda a: F.binary_cross_entropy(a, nf.tensor(y)), lambda a: TF.binary_cross_entropy(a, torch.tensor(y)),
           [p])
    with pytest.raises(RuntimeError, match="between 0 and 1"):
        F.binary_cross_entropy(nf.tensor([1.5]), nf.tensor([1.0]))
    with pytest.raises(ValueError, match=r"target size \(2,\) must be the same as input size \(3,\)"):
        F.binary_cross_entropy(nf.tensor(p), nf.tensor([1.0, 0.0]))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("use_weight", [False, True])
@pytest.mark.parametrize("use_pos", [False, True])
def test_bce_with_logits(reduction, use_weight, use_pos):
    x = (RNG.standard_normal((4, 3)) * 4).astype(np.float32)
    x[0, 0] = 0.0
    x[1, 1] = 200.0
    x[2, 2] = -200.0
    y = RNG.uniform(0, 1, (4, 3)).astype(np.float32)
    w = RNG.uniform(0.5, 2, (4, 1)).astype(np.float32)
    pw = RNG.uniform(0.5, 3, (3,)).astype(np.float32)
    kn = dict(reduction=reduction, weight=nf.tensor(w) if use_weight else None,
              pos_weight=nf.tensor(pw) if use_pos else None)
    kt = dict(reduction=reduction, weight=torch.tensor(w) if use_weight else None,
              pos_weight=torch.tensor(pw) if use_pos else None)
    _check(lambda a, b: F.binary_cross_entropy_with_logits(a, b, **kn),
           lambda a, b: TF.binary_cross_entropy_with_logits(a, b, **kt), [x, y])
    m, t = nf.nn.BCEWithLogitsLoss(**kn), torch.nn.BCEWithLogitsLoss(**kt)
    _check(lambda a: m(a, nf.tensor(y)), lambda a: t(a, torch.tensor(y)), [x])


def test_binary_losses_gradcheck():
    x = nf.randn(3, 4, dtype=nf.float64, requires_grad=True)
    y = nf.rand(3, 4, dtype=nf.float64, requires_grad=True)
    pw = nf.rand(4, dtype=nf.float64) + 0.5
    w = nf.rand(3, 1, dtype=nf.float64) + 0.5
    assert nf.autograd.gradcheck(
        lambda a, b: F.binary_cross_entropy_with_logits(a, b, weight=w, pos_weight=pw), (x, y))
    p = nf.rand(3, 4, dtype=nf.float64) * 0.8 + 0.1
    p.requires_grad_()
    assert nf.autograd.gradcheck(lambda a, b: F.binary_cross_entropy(a, b, weight=w, reduction="sum"), (p, y))


@pytest.mark.parametrize("name,kwargs", [("mse_loss", {}), ("l1_loss", {}), ("smooth_l1_loss", {}),
                                         ("smooth_l1_loss", {"beta": 0.5}), ("smooth_l1_loss", {"beta": 0.0})])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_regression_losses(name, kwargs, reduction):
    a = RNG.standard_normal((5, 4)).astype(np.float32)
    b = RNG.standard_normal((5, 4)).astype(np.float32)
    _check(lambda x, y: getattr(F, name)(x, y, reduction=reduction, **kwargs),
           lambda x, y: getattr(TF, name)(x, y, reduction=reduction, **kwargs), [a, b])


@pytest.mark.parametrize("nf_cls,t_cls", [(nf.nn.MSELoss, torch.nn.MSELoss), (nf.nn.L1Loss, torch.nn.L1Loss),
                                          (nf.nn.SmoothL1Loss, torch.nn.SmoothL1Loss)])
def test_regression_loss_modules(nf_cls, t_cls):
    a, b = RNG.standard_normal((3, 4)).astype(np.float32), RNG.standard_normal((3, 4)).astype(np.float32)
    m, t = nf_cls(reduction="sum"), t_cls(reduction="sum")
    _check(lambda x, y: m(x, y), lambda x, y: t(x, y), [a, b])


def test_cosine_similarity_and_normalize():
    a = RNG.standard_normal((4, 6)).astype(np.float32)
    b = RNG.standard_normal((4, 6)).astype(np.float32)
    _check(lambda x, y: F.cosine_similarity(x, y), lambda x, y: TF.cosine_similarity(x, y), [a, b])
    _check(lambda x, y: F.cosine_similarity(x, y, dim=0), lambda x, y: TF.cosine_similarity(x, y, dim=0), [a, b])
    _check(lambda x: F.normalize(x, dim=-1), lambda x: TF.normalize(x, dim=-1), [a])
    _check(lambda x: F.normalize(x, p=1.0, dim=0), lambda x: TF.normalize(x, p=1.0, dim=0), [a])


def test_one_hot():
    t = np.array([[0, 3], [2, 1]])
    out = F.one_hot(nf.tensor(t), 5)
    assert out.dtype == nf.int64
    np.testing.assert_array_equal(out.numpy(), TF.one_hot(torch.tensor(t), 5).numpy())
    np.testing.assert_array_equal(F.one_hot(nf.tensor(t)).numpy(), TF.one_hot(torch.tensor(t)).numpy())
    with pytest.raises(RuntimeError, match="one_hot"):
        F.one_hot(nf.tensor([5]), 3)


@pytest.mark.parametrize("pad,mode", [((1, 2), "constant"), ((1, 0, 2, 1), "constant"), ((-1, 2, 0, -1), "constant"),
                                      ((2, 1, 1, 2), "reflect"), ((1, 2, 2, 0), "replicate"), ((1, 1, 2, 1), "circular")])
def test_pad(pad, mode):
    x = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)
    kw = {"value": 1.5} if mode == "constant" else {}
    _check(lambda a: F.pad(a, pad, mode=mode, **kw), lambda a: TF.pad(a, pad, mode=mode, **kw), [x])


def test_pad_gradcheck():
    x = nf.randn(2, 3, 4, dtype=nf.float64, requires_grad=True)
    assert nf.autograd.gradcheck(lambda a: F.pad(a, (1, -1, 2, 0)), (x,))
    assert nf.autograd.gradcheck(lambda a: F.pad(a, (2, 1), mode="reflect"), (x,))
