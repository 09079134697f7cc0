"""Module behaviour vs torch: registration, parameter order, state_dict keys/shapes, loading torch weights,
strict-loading errors, train/eval propagation, freeze/unfreeze, containers."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch

import nnforge as nf


def _make(nn):
    """The same architecture built from either library's ``nn`` namespace."""

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = nn.LayerNorm(8)
            self.proj = nn.Linear(8, 8)
            self.drop = nn.Dropout(0.1)

        def forward(self, x):
            return x + self.drop(self.proj(self.norm(x)))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(20, 8, padding_idx=0)
            self.blocks = nn.ModuleList([Block(), Block()])
            self.heads = nn.ModuleDict({"cls": nn.Linear(8, 3), "reg": nn.Sequential(nn.Linear(8, 4), nn.GELU(),
                                                                                     nn.Linear(4, 1, bias=False))})
            self.bn = nn.BatchNorm1d(8)
            self.rms = nn.RMSNorm(8)

        def forward(self, idx):
            h = self.embed(idx)
            for b in self.blocks:
                h = b(h)
            h = self.rms(self.bn(h.mean(1)))
            return self.heads["cls"](h), self.heads["reg"](h)

    return Net()


@pytest.fixture
def pair():
    torch.manual_seed(0)
    t = _make(torch.nn)
    n = _make(nf.nn)
    n.load_state_dict({k: v.numpy() for k, v in t.state_dict().items()})
    return n, t


def test_named_parameters_and_state_dict_match_torch(pair):
    n, t = pair
    assert [k for k, _ in n.named_parameters()] == [k for k, _ in t.named_parameters()]
    sd_n, sd_t = n.state_dict(), t.state_dict()
    assert list(sd_n) == list(sd_t)
    for k in sd_t:
        assert tuple(sd_n[k].shape) == tuple(sd_t[k].shape), k
        np.testing.assert_array_equal(sd_n[k].numpy(), sd_t[k].numpy())
    assert [k for k, _ in n.named_buffers()] == [k for k, _ in t.named_buffers()]
    assert [k for k, _ in n.named_modules()] == [k for k, _ in t.named_modules()]


def test_forward_backward_after_loading_torch_weights(pair):
    n, t = pair
    n.eval()
    t.eval()
    idx = np.array([[1, 5, 0, 7], [3, 3, 19, 0]])
    cn, rn = n(nf.tensor(idx))
    ct, rt = t(torch.tensor(idx))
    np.testing.assert_allclose(cn.detach().numpy(), ct.detach().numpy(), atol=2e-5, rtol=2e-5)
    np.testing.assert_allclose(rn.detach().numpy(), rt.detach().numpy(), atol=2e-5, rtol=2e-5)
    (cn.sum() + rn.sum()).backward()
    (ct.sum() + rt.sum()).backward()
    tp = dict(t.named_parameters())
    for k, p in n.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), tp[k].grad.numpy(), atol=5e-4, rtol=5e-4, err_msg=k)


def test_train_eval_propagates(pair):
    n, _ = pair
    assert all(m.training for m in n.modules())
    n.eval()
    assert not any(m.training for m in n.modules())
    n.blocks[1].train()
    assert n.blocks[1].drop.training and not n.blocks[0].drop.training


def test_strict_loading_errors_name_keys(pair):
    n, t = pair
    sd = {k: v.numpy() for k, v in t.state_dict().items()}
    sd_missing = dict(sd)
    del sd_missing["bn.running_var"]
    with pytest.raises(RuntimeError, match=r"missing keys: bn\.running_var"):
        n.load_state_dict(sd_missing)
    with pytest.raises(RuntimeError, match=r"unexpected keys: extra\.weight"):
        n.load_state_dict({**sd, "extra.weight": np.zeros(2)})
    bad = dict(sd)
    bad["heads.cls.weight"] = np.zeros((4, 8), dtype=np.float32)
    with pytest.raises(RuntimeError, match=r"heads\.cls\.weight: checkpoint \(4, 8\) vs model \(3, 8\)"):
        n.load_state_dict(bad, strict=False)
    missing, unexpected = n.load_state_dict({**sd_missing, "extra": np.zeros(1)}, strict=False)
    assert missing == ["bn.running_var"] and unexpected == ["extra"]


def test_load_state_dict_accepts_torch_tensors_and_keeps_parameters(pair):
    n, t = pair
    w = n.heads["cls"].weight
    with torch.no_grad():
        t.heads["cls"].weight.add_(1.0)
    n.load_state_dict(t.state_dict())
    assert n.heads["cls"].weight is w
    np.testing.assert_array_equal(w.detach().numpy(), t.heads["cls"].weight.detach().numpy())


def test_freeze_unfreeze_with_globs(pair):
    n, _ = pair
    n.freeze()
    assert not any(p.requires_grad for p in n.parameters())
    n.unfreeze(["heads.*", "blocks.1.*.weight"])
    trainable = [k for k, p in n.named_parameters() if p.requires_grad]
    assert trainable == ["blocks.1.norm.weight", "blocks.1.proj.weight", "heads.cls.weight", "heads.cls.bias",
                         "heads.reg.0.weight", "heads.reg.0.bias", "heads.reg.2.weight"]
    n.freeze("heads.reg.*")
    assert not n.heads["reg"][0].weight.requires_grad and n.heads["cls"].weight.requires_grad


def test_registration_and_reassignment():
    m = nf.nn.Module()
    m.a = nf.nn.Linear(2, 2)
    m.p = nf.nn.Parameter(nf.zeros(3))
    m.register_buffer("buf", nf.ones(2))
    m.register_buffer("tmp", nf.ones(1), persistent=False)
    assert list(m.state_dict()) == ["p", "buf", "a.weight", "a.bias"]
    assert [k for k, _ in m.named_parameters()] == ["p", "a.weight", "a.bias"]
    m.a = nf.nn.Identity()
    assert [k for k, _ in m.named_parameters()] == ["p"]
    with pytest.raises(TypeError, match="parameter 'p'"):
        m.p = nf.zeros(3)
    shared = nf.nn.Linear(2, 2)
    s = nf.nn.Sequential(shared, shared)
    assert len(list(s.parameters())) == 2  # shared parameters are listed once, as in torch


def test_containers_indexing():
    layers = [nf.nn.Linear(2, 3), nf.nn.ReLU(), nf.nn.Linear(3, 1)]
    s = nf.nn.Sequential(*layers)
    assert s[0] is layers[0] and s[-1] is layers[2] and len(s) == 3
    assert isinstance(s[1:], nf.nn.Sequential) and list(s[1:]) == layers[1:]
    assert s(nf.randn(4, 2)).shape == (4, 1)
    named = nf.nn.Sequential(OrderedDict([("fc", nf.nn.Linear(2, 2)), ("act", nf.nn.Tanh())]))
    assert [k for k, _ in named.named_parameters()] == ["fc.weight", "fc.bias"]
    ml = nf.nn.ModuleList(layers[:2])
    ml.append(layers[2])
    assert ml[2] is layers[2] and len(ml[:2]) == 2 and [k for k, _ in ml.named_parameters()][-1] == "2.bias"
    md = nf.nn.ModuleDict({"a": layers[0]})
    md["b"] = layers[2]
    assert "b" in md and list(md.keys()) == ["a", "b"] and md["a"] is layers[0]


def test_zero_grad_and_repr():
    lin = nf.nn.Linear(3, 2)
    lin(nf.randn(1, 3)).sum().backward()
    assert lin.weight.grad is not None
    lin.zero_grad()
    assert lin.weight.grad is None
    assert repr(lin) == "Linear(in_features=3, out_features=2, bias=True)"
    assert "(0): Linear(in_features=3" in repr(nf.nn.Sequential(lin))
