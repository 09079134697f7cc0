"""Optimizers vs torch.optim: same initial weights, same gradients each step, parameters compared each step."""
import copy

import numpy as np
import pytest
import torch

import nnforge as nf
from nnforge import optim

STEPS = 16
SHAPES = [(8, 5), (8,), (3, 8), (3,)]


def _params(seed=0):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    nf_params = [nf.nn.Parameter(nf.tensor(a)) for a in arrays]
    torch_params = [torch.nn.Parameter(torch.tensor(a)) for a in arrays]
    return nf_params, torch_params


def _torch_grads(tp, step):
    """Gradients of a small MLP's loss at torch's current parameters (shared by both optimizers)."""
    g = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(6, 5, generator=g)
    y = torch.randn(6, 3, generator=g)
    for p in tp:
        p.grad = None
    h = torch.tanh(x @ tp[0].T + tp[1])
    loss = ((h @ tp[2].T + tp[3] - y) ** 2).mean()
    loss.backward()
    return [p.grad.detach().numpy().copy() for p in tp]


def _set_grads(nf_params, grads):
    for p, g in zip(nf_params, grads):
        p.grad = nf.tensor(g)


def _check(nf_params, torch_params, step, atol=1e-5, rtol=2e-5):
    for i, (a, b) in enumerate(zip(nf_params, torch_params)):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), atol=atol, rtol=rtol,
                                   err_msg=f"param {i} differs after step {step}")


CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.1, weight_decay=0.05)),
    ("SGD", dict(lr=0.1, momentum=0.8, weight_decay=0.05, nesterov=True, maximize=True)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, weight_decay=0.1, amsgrad=True, maximize=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.3)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    ("AdamW", dict(lr=0.01, maximize=True)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, centered=True)),
    ("RMSprop", dict(lr=0.01, momentum=0.9)),
    ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True, weight_decay=0.1, eps=1e-6)),
    ("RMSprop", dict(lr=0.01, maximize=True)),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05)),
    ("Adagrad", dict(lr=0.1, initial_accumulator_value=0.1, eps=1e-8)),
    ("Adagrad", dict(lr=0.1, weight_decay=0.1, maximize=True)),
]


@pytest.mark.parametrize("name,kw", CASES, ids=[f"{n}-{'-'.join(k for k in kw if k != 'lr') or 'plain'}"
                                                 for n, kw in CASES])
def test_matches_torch(name, kw):
    nf_params, torch_params = _params()
    opt = getattr(optim, name)(nf_params, **kw)
    topt = getattr(torch.optim, name)(torch_params, **kw)
    for step in range(STEPS):
        grads = _torch_grads(torch_params, step)
        _set_grads(nf_params, grads)
        opt.step()
        topt.step()
        _check(nf_params, torch_params, step)


@pytest.mark.parametrize("name,kw", [("Adam", dict(lr=0.01, amsgrad=True)), ("SGD", dict(lr=0.1, momentum=0.9)),
                                     ("RMSprop", dict(lr=0.01, centered=True, momentum=0.9)),
                                     ("Adagrad", dict(lr=0.1))])
def test_large_and_noncontiguous_params(name, kw):
    """Parameters larger than a chunk (odd size) and a non-contiguous one take the other code paths."""
    rng = np.random.default_rng(3)
    big = rng.standard_normal(3 * optim.Optimizer.chunk_size + 123).astype(np.float32)
    wide = rng.standard_normal((7, 9)).astype(np.float32)
    nf_params = [nf.nn.Parameter(nf.tensor(big)), nf.nn.Parameter(nf.from_numpy(wide.copy().T))]
    assert not nf_params[1].data.flags.c_contiguous
    torch_params = [torch.nn.Parameter(torch.tensor(big)), torch.nn.Parameter(torch.tensor(wide.T.copy()))]
    opt = getattr(optim, name)(nf_params, **kw)
    topt = getattr(torch.optim, name)(torch_params, **kw)
    for step in range(5):
        grads = [rng.standard_normal(p.shape).astype(np.float32) for p in torch_params]
        for p, tp, g in zip(nf_params, torch_params, grads):
            p.grad = nf.tensor(g)
            tp.grad = torch.tensor(g)
        opt.step()
        topt.step()
        _check(nf_params, torch_params, step)


def test_param_groups_with_different_lr():
    nf_params, torch_params = _params()
    groups = lambda ps: [{"params": ps[:2]}, {"params": ps[2:], "lr": 0.001, "momentum": 0.5}]  # noqa: E731
    opt = optim.SGD(groups(nf_params), lr=0.1, momentum=0.9)
    topt = torch.optim.SGD(groups(torch_params), lr=0.1, momentum=0.9)
    assert opt.param_groups[1]["lr"] == 0.001 and opt.param_groups[0]["lr"] == 0.1
    assert opt.param_groups[0]["momentum"] == 0.9 and opt.param_groups[1]["momentum"] == 0.5
    for step in range(STEPS):
        _set_grads(nf_params, _torch_grads(torch_params, step))
        opt.step()
        topt.step()
        _check(nf_params, torch_params, step)


def test_add_param_group_and_duplicates():
    a, b = nf.nn.Parameter(nf.zeros(2)), nf.nn.Parameter(nf.zeros(3))
    opt = optim.Adam([a], lr=0.1)
    opt.add_param_group({"params": b, "lr": 0.5})
    assert opt.param_groups[1]["lr"] == 0.5 and opt.param_groups[1]["betas"] == (0.9, 0.999)
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [a]})
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="single Tensor"):
        optim.SGD(a, lr=0.1)
    with pytest.raises(ValueError, match="invalid learning rate"):
        optim.Adam([a], lr=-1)


@pytest.mark.parametrize("name,kw", [("Adam", dict(lr=0.01, amsgrad=True)), ("AdamW", dict(lr=0.01)),
                                     ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
                                     ("RMSprop", dict(lr=0.01, momentum=0.9, centered=True)),
                                     ("Adagrad", dict(lr=0.1, lr_decay=0.01))])
def test_state_dict_round_trip_continues_identically(name, kw, tmp_path):
    nf_params, torch_params = _params()
    opt = getattr(optim, name)(nf_params, **kw)
    topt = getattr(torch.optim, name)(torch_params, **kw)
    for step in range(8):
        _set_grads(nf_params, _torch_grads(torch_params, step))
        opt.step()
        topt.step()
    sd = opt.state_dict()
    tsd = topt.state_dict()
    assert sd["param_groups"][0]["params"] == tsd["param_groups"][0]["params"]
    assert sorted(sd["state"]) == sorted(tsd["state"])
    for i in tsd["state"]:
        assert set(sd["state"][i]) == set(tsd["state"][i])
        for k, v in tsd["state"][i].items():
            np.testing.assert_allclose(np.asarray(sd["state"][i][k]), v.numpy(), atol=1e-5, rtol=2e-5)
    # through nf.save / nf.load (flat dict of tensors) and a fresh optimizer on fresh parameters
    flat = {f"{i}.{k}": v for i, s in sd["state"].items() for k, v in s.items()}
    nf.save(flat, tmp_path / "opt.safetensors")
    loaded = nf.load(tmp_path / "opt.safetensors")
    state = {}
    for key, v in loaded.items():
        i, k = key.split(".", 1)
        state.setdefault(i, {})[k] = v
    restored = {"state": state, "param_groups": copy.deepcopy(sd["param_groups"])}
    params2 = [nf.nn.Parameter(nf.tensor(p.detach().numpy())) for p in nf_params]
    opt2 = getattr(optim, name)(params2, lr=123.0)
    opt2.load_state_dict(restored)
    assert opt2.param_groups[0]["lr"] == kw["lr"]
    for step in range(8, STEPS):
        grads = _torch_grads(torch_params, step)
        _set_grads(nf_params, grads)
        _set_grads(params2, grads)
        opt.step()
        opt2.step()
        topt.step()
        _check(nf_params, torch_params, step)
        for a, b in zip(nf_params, params2):
            np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())


def test_load_torch_state_dict():
    """A torch optimizer's state dict (tensors converted to NumPy) loads and continues like torch."""
    nf_params, torch_params = _params()
    topt = torch.optim.Adam(torch_params, lr=0.01)
    for step in range(4):
        _torch_grads(torch_params, step)
        topt.step()
    for p, tp in zip(nf_params, torch_params):
        p.data[...] = tp.detach().numpy()
    tsd = topt.state_dict()
    sd = {"state": {i: {k: v.numpy() for k, v in s.items()} for i, s in tsd["state"].items()},
          "param_groups": tsd["param_groups"]}
    opt = optim.Adam(nf_params, lr=0.01)
    opt.load_state_dict(sd)
    for step in range(4, 10):
        _set_grads(nf_params, _torch_grads(torch_params, step))
        opt.step()
        topt.step()
        _check(nf_params, torch_params, step)


def test_load_state_dict_mismatch_errors():
    nf_params, _ = _params()
    opt = optim.SGD(nf_params, lr=0.1)
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="parameter groups"):
        optim.SGD([{"params": nf_params[:2]}, {"params": nf_params[2:]}], lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match="parameter group 0"):
        optim.SGD(nf_params[:3], lr=0.1).load_state_dict(sd)


def test_skips_params_without_grad_or_frozen():
    a = nf.nn.Parameter(nf.ones(3))
    b = nf.nn.Parameter(nf.ones(3))
    c = nf.nn.Parameter(nf.ones(3))
    opt = optim.Adam([a, b, c], lr=0.1)
    a.grad = nf.ones(3)
    c.grad = nf.ones(3)
    c.requires_grad_(False)
    opt.step()
    assert not np.allclose(a.detach().numpy(), 1)
    np.testing.assert_array_equal(b.detach().numpy(), 1)
    np.testing.assert_array_equal(c.numpy(), 1)
    assert set(opt.state_dict()["state"]) == {0}


def test_zero_grad():
    nf_params, torch_params = _params()
    opt = optim.SGD(nf_params, lr=0.1)
    _set_grads(nf_params, _torch_grads(torch_params, 0))
    opt.zero_grad(set_to_none=False)
    for p in nf_params:
        assert p.grad is not None and not p.grad.numpy().any()
    opt.zero_grad()
    assert all(p.grad is None for p in nf_params)


def test_step_updates_in_place_with_closure_and_end_to_end_autograd():
    """nnforge's own autograd + optimizer vs torch's on a linear least-squares problem."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 4)).astype(np.float32), rng.standard_normal((16, 1)).astype(np.float32)
    w0 = rng.standard_normal((4, 1)).astype(np.float32)
    w = nf.nn.Parameter(nf.tensor(w0))
    tw = torch.nn.Parameter(torch.tensor(w0))
    buffer = w.data
    opt = optim.AdamW([w], lr=0.05)
    topt = torch.optim.AdamW([tw], lr=0.05)

    def closure():
        opt.zero_grad()
        loss = ((nf.tensor(x) @ w - nf.tensor(y)) ** 2).mean()
        loss.backward()
        return loss

    for step in range(20):
        loss = opt.step(closure)
        topt.zero_grad()
        tloss = ((torch.tensor(x) @ tw - torch.tensor(y)) ** 2).mean()
        tloss.backward()
        topt.step()
        assert abs(loss.item() - tloss.item()) < 1e-4
    assert w.data is buffer  # updated in place
    np.testing.assert_allclose(w.detach().numpy(), tw.detach().numpy(), atol=1e-4)
