"""nn.init initialisers (statistics, fans, gains, reproducibility) and nn.utils gradient clipping vs torch."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import nnforge as nf
from nnforge.nn import init


@pytest.mark.parametrize("name,param", [("linear", None), ("conv2d", None), ("sigmoid", None), ("tanh", None),
                                        ("relu", None), ("leaky_relu", None), ("leaky_relu", 0.2),
                                        ("leaky_relu", math.sqrt(5)), ("selu", None)])
def test_calculate_gain_matches_torch(name, param):
    assert init.calculate_gain(name, param) == pytest.approx(torch.nn.init.calculate_gain(name, param))


@pytest.mark.parametrize("shape", [(5, 3), (8, 4, 3, 3), (6, 2, 5)])
def test_fans_match_torch(shape):
    assert init._calculate_fan_in_and_fan_out(nf.empty(*shape)) == \
        torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init._calculate_fan_in_and_fan_out(nf.empty(3))


def _stats(t):
    a = t.detach().numpy().astype(np.float64)
    return a.mean(), a.std(), np.abs(a).max()


@pytest.mark.parametrize("fn,kwargs,std", [
    ("xavier_uniform_", {}, math.sqrt(2 / (300 + 200))),
    ("xavier_normal_", {"gain": 2.0}, 2 * math.sqrt(2 / (300 + 200))),
    ("kaiming_uniform_", {"a": math.sqrt(5)}, math.sqrt(2 / 6) / math.sqrt(200)),
    ("kaiming_normal_", {"mode": "fan_out", "nonlinearity": "relu"}, math.sqrt(2) / math.sqrt(300)),
    ("normal_", {"mean": 0.0, "std": 0.02}, 0.02),
    ("uniform_", {"a": -1.0, "b": 1.0}, 1 / math.sqrt(3)),
])
def test_initialiser_statistics(fn, kwargs, std):
    t = nf.empty(300, 200)
    nf.manual_seed(0)
    out = getattr(init, fn)(t, **kwargs)
    assert out is t and t.dtype == nf.float32
    mean, s, _ = _stats(t)
    assert abs(mean) < 0.05 * std + 1e-4 and s == pytest.approx(std, rel=0.02)
    if "uniform" in fn:  # bound = sqrt(3) * std
        assert _stats(t)[2] <= math.sqrt(3) * std * 1.0001


def test_trunc_normal_constant_zeros_ones():
    t = nf.empty(200, 100)
    init.trunc_normal_(t, mean=0.0, std=1.0, a=-0.5, b=1.0)
    a = t.numpy()
    assert a.min() >= -0.5 and a.max() <= 1.0 and a.min() < -0.49 and a.max() > 0.99
    assert abs(a.mean() - 0.2) < 0.03  # mean of N(0,1) truncated to [-0.5, 1]: ~0.2
    assert not init.zeros_(t).numpy().any()
    assert (init.ones_(t).numpy() == 1).all()
    assert (init.constant_(t, 0.3).numpy() == np.float32(0.3)).all()


def test_init_in_place_on_parameters_and_reproducible():
    lin = nf.nn.Linear(5, 4)
    w = lin.weight
    nf.manual_seed(1)
    init.xavier_uniform_(lin.weight)
    first = lin.weight.detach().numpy().copy()
    assert lin.weight is w and w.requires_grad and w.grad_fn is None
    nf.manual_seed(1)
    init.xavier_uniform_(lin.weight)
    assert np.array_equal(first, lin.weight.detach().numpy())
    init.kaiming_normal_(nf.empty(0, 3))  # empty tensors are left alone


def _param_pairs(rng):
    shapes = [(4, 3), (3,), (2, 2, 2)]
    nps, tps = [], []
    for s in shapes:
        g = rng.standard_normal(s).astype(np.float32)
        p = nf.nn.Parameter(nf.zeros(*s))
        p.grad = nf.tensor(g)
        q = torch.nn.Parameter(torch.zeros(s))
        q.grad = torch.tensor(g)
        nps.append(p)
        tps.append(q)
    return nps, tps


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, float("inf")])
@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    nps, tps = _param_pairs(np.random.default_rng(0))
    total_n = nf.nn.utils.clip_grad_norm_(nps, max_norm, norm_type=norm_type)
    total_t = torch.nn.utils.clip_grad_norm_(tps, max_norm, norm_type=norm_type)
    assert isinstance(total_n, nf.Tensor) and total_n.ndim == 0
    assert total_n.item() == pytest.approx(total_t.item(), rel=1e-5)
    for p, q in zip(nps, tps):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_clip_grad_norm_nonfinite_and_empty():
    p = nf.nn.Parameter(nf.zeros(2))
    p.grad = nf.tensor([float("inf"), 1.0])
    with pytest.raises(RuntimeError, match="non-finite"):
        nf.nn.utils.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
    assert nf.nn.utils.clip_grad_norm_([nf.nn.Parameter(nf.zeros(2))], 1.0).item() == 0.0


def test_clip_grad_value_matches_torch():
    nps, tps = _param_pairs(np.random.default_rng(1))
    nf.nn.utils.clip_grad_value_(nps, 0.7)
    torch.nn.utils.clip_grad_value_(tps, 0.7)
    for p, q in zip(nps, tps):
        np.testing.assert_array_equal(p.grad.numpy(), q.grad.numpy())


def test_count_parameters():
    m = nf.nn.Sequential(nf.nn.Linear(3, 4), nf.nn.Linear(4, 2, bias=False))
    assert nf.nn.utils.count_parameters(m) == 3 * 4 + 4 + 8
    m.freeze("0.*")
    assert nf.nn.utils.count_parameters(m) == 8
    assert nf.nn.utils.count_parameters(m, trainable_only=False) == 24
