"""scaled_dot_product_attention and MultiheadAttention against PyTorch."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import nnforge as nf
import nnforge.nn.functional as F
from tests.helpers import assert_close, check_op, gradcheck

GA, GR = 5e-4, 5e-4  # float32 gradient tolerances


def sdpa_pair(**kw):
    return (lambda q, k, v, *m: F.scaled_dot_product_attention(q, k, v, *m, **kw),
            lambda q, k, v, *m: TF.scaled_dot_product_attention(q, k, v, *m, **kw))


# -- scaled_dot_product_attention --------------------------------------------------------------------
@pytest.mark.parametrize("shapes", [
    ((2, 3, 5, 8), (2, 3, 7, 8), (2, 3, 7, 6)),  # L != S, Ev != E
    ((5, 8), (7, 8), (7, 4)),                    # no batch dims
    ((2, 3, 5, 8), (3, 7, 8), (1, 3, 7, 4)),     # broadcast batch dims
])
def test_sdpa_matches_torch(shapes):
    check_op(*sdpa_pair(), list(shapes), grad_atol=GA, grad_rtol=GR)


def test_sdpa_scale():
    check_op(*sdpa_pair(scale=0.3), [(2, 4, 6, 8)] * 3, grad_atol=GA, grad_rtol=GR)


@pytest.mark.parametrize("mask_shape", [(5, 7), (2, 1, 5, 7), (3, 1, 7), (2, 3, 5, 7)])
def test_sdpa_bool_mask_broadcast(mask_shape):
    rng = np.random.default_rng(1)
    mask = rng.random(mask_shape) > 0.3
    mask[..., 0] = True
    check_op(*sdpa_pair(), [(2, 3, 5, 8), (2, 3, 7, 8), (2, 3, 7, 8), mask], grad_atol=GA, grad_rtol=GR)


@pytest.mark.parametrize("mask_shape", [(5, 7), (3, 5, 7), (2, 1, 1, 7)])
def test_sdpa_float_mask_with_grad(mask_shape):
    # a float mask is added to the scores and gets a gradient like any input
    check_op(*sdpa_pair(), [(2, 3, 5, 8), (2, 3, 7, 8), (2, 3, 7, 8), mask_shape], grad_atol=GA, grad_rtol=GR)


@pytest.mark.parametrize("L,S", [(6, 6), (4, 7), (7, 4)])
def test_sdpa_causal_top_left(L, S):
    check_op(*sdpa_pair(is_causal=True), [(2, 3, L, 8), (2, 3, S, 8), (2, 3, S, 8)], grad_atol=GA, grad_rtol=GR)


@pytest.mark.parametrize("kind", ["bool", "float"])
def test_sdpa_fully_masked_rows_are_zero_like_torch(kind):
    mask = np.ones((2, 1, 5, 7), dtype=bool)
    mask[0, :, 1] = False
    mask[1, :, 4] = False
    if kind == "float":
        mask = np.where(mask, 0.0, -np.inf).astype(np.float32)
    nf_out, _ = check_op(*sdpa_pair(), [(2, 3, 5, 8), (2, 3, 7, 8), (2, 3, 7, 8), mask],
                         requires_grad=[True, True, True, False], grad_atol=GA, grad_rtol=GR)
    out = nf_out.detach().numpy()
    assert np.isfinite(out).all() and not out[0, :, 1].any()


def test_sdpa_gqa():
    check_op(*sdpa_pair(enable_gqa=True), [(2, 6, 5, 8), (2, 2, 7, 8), (2, 2, 7, 4)], grad_atol=GA, grad_rtol=GR)
    mask = np.random.default_rng(0).random((2, 6, 5, 7)) > 0.2
    mask[..., 0] = True
    check_op(*sdpa_pair(enable_gqa=True), [(2, 6, 5, 8), (2, 2, 7, 8), (2, 2, 7, 4), mask],
             grad_atol=GA, grad_rtol=GR)


def test_sdpa_gradcheck_float64():
    gradcheck(lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, m),
              [(2, 3, 4), (2, 5, 4), (2, 5, 3), (3, 5)])
    gradcheck(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True), [(2, 4, 4), (2, 6, 4), (2, 6, 3)])
    mask = np.array([[True, False, True, True, False]] * 3 + [[False] * 5])  # last row fully masked
    gradcheck(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, nf.tensor(mask)),
              [(2, 4, 4), (2, 5, 4), (2, 5, 3)])


def test_sdpa_dropout_reproducible_and_differentiable():
    rng = np.random.default_rng(0)
    q, k, v = (nf.tensor(rng.standard_normal((2, 3, 6, 4))) for _ in range(3))

    def fn(q, k, v):
        nf.manual_seed(7)
        return F.scaled_dot_product_attention(q, k, v, dropout_p=0.4)

    a, b = fn(q, k, v), fn(q, k, v)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.allclose(a.numpy(), F.scaled_dot_product_attention(q, k, v).numpy())
    for t in (q, k, v):
        t.requires_grad_()
    assert nf.autograd.gradcheck(fn, [q, k, v])


def test_sdpa_dropout_keeps_expectation():
    nf.manual_seed(0)
    q = nf.zeros(1, 200, 4)  # uniform attention over 50 keys
    v = nf.ones(1, 50, 3)
    out = F.scaled_dot_product_attention(q, q[:, :50], v, dropout_p=0.5).numpy()
    assert abs(out.mean() - 1.0) < 0.05


def test_sdpa_errors():
    q = nf.randn(2, 5, 8)
    with pytest.raises(RuntimeError, match="scaled_dot_product_attention.*last"):
        F.scaled_dot_product_attention(q, nf.randn(2, 7, 6), nf.randn(2, 7, 6))
    with pytest.raises(RuntimeError, match="sequence length"):
        F.scaled_dot_product_attention(q, nf.randn(2, 7, 8), nf.randn(2, 6, 8))
    with pytest.raises(RuntimeError, match="is_causal"):
        F.scaled_dot_product_attention(q, q, q, attn_mask=nf.ones(5, 5, dtype=nf.bool), is_causal=True)
    with pytest.raises(RuntimeError, match="attn_mask of shape"):
        F.scaled_dot_product_attention(q, q, q, attn_mask=nf.ones(4, 5, dtype=nf.bool))
    with pytest.raises(RuntimeError, match="dtype"):
        F.scaled_dot_product_attention(q, q, q.double())


# -- MultiheadAttention ------------------------------------------------------------------------------
def load_from_torch(nf_mod, torch_mod):
    nf_mod.load_state_dict({k: v.detach().numpy() for k, v in torch_mod.state_dict().items()})


def compare_module(nf_mod, torch_mod, inputs, kwargs=None, n_out=1, seed=0):
    """Same weights and inputs: compare outputs, input grads and every parameter grad with torch."""
    load_from_torch(nf_mod, torch_mod)
    kwargs = kwargs or {}
    nf_in = [nf.tensor(x, requires_grad=True) for x in inputs]
    t_in = [torch.tensor(x, requires_grad=True) for x in inputs]
    nf_kw = {k: (nf.tensor(v) if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()}
    t_kw = {k: (torch.tensor(v) if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()}
    nf_out, t_out = nf_mod(*nf_in, **nf_kw), torch_mod(*t_in, **t_kw)
    if not isinstance(t_out, tuple):
        nf_out, t_out = (nf_out,), (t_out,)
    assert len(nf_out) == len(t_out)
    for i, (a, b) in enumerate(zip(nf_out, t_out)):
        assert (a is None) == (b is None), f"output {i}: None mismatch"
        if b is not None:
            assert_close(a, b, 2e-5, 2e-5, f"output {i}")
    g = np.random.default_rng(seed).standard_normal(t_out[0].shape).astype(np.float32)
    nf_out[0].backward(nf.tensor(g))
    t_out[0].backward(torch.tensor(g))
    for i, (a, b) in enumerate(zip(nf_in, t_in)):
        if b.grad is None:
            assert a.grad is None or not np.asarray(a.grad).any()
        else:
            assert_close(a.grad, b.grad, GA, GR, f"grad of input {i}")
    t_params = dict(torch_mod.named_parameters())
    nf_params = dict(nf_mod.named_parameters())
    assert list(nf_params) == list(t_params)
    for name, p in t_params.items():
        assert_close(nf_params[name].grad, p.grad, GA, GR, f"grad of {name}")
    return nf_out, t_out


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("need_weights,average", [(True, True), (True, False), (False, True)])
def test_mha_self_attention(batch_first, need_weights, average):
    torch.manual_seed(0)
    t = torch.nn.MultiheadAttention(16, 4, batch_first=batch_first)
    m = nf.nn.MultiheadAttention(16, 4, batch_first=batch_first)
    x = rand(3, 5, 16)

    class SelfAttn:  # call with query is key is value (the packed fast path)
        def __init__(self, mod):
            self.mod = mod

        def __call__(self, x, **kw):
            return self.mod(x, x, x, **kw)

        def __getattr__(self, name):
            return getattr(self.mod, name)

    out, _ = compare_module(SelfAttn(m), SelfAttn(t), [x],
                            dict(need_weights=need_weights, average_attn_weights=average))
    if need_weights:  # (N, L, S) averaged or (N, H, L, S) per head, whatever the input layout
        n, L = (3, 5) if batch_first else (5, 3)
        assert tuple(out[1].shape) == ((n, L, L) if average else (n, 4, L, L))


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("mask_kind", ["bool", "float"])
def test_mha_cross_attention_with_masks(batch_first, need_weights, mask_kind):
    torch.manual_seed(1)
    n, L, S, E, H = 3, 4, 6, 12, 3
    t = torch.nn.MultiheadAttention(E, H, batch_first=batch_first)
    m = nf.nn.MultiheadAttention(E, H, batch_first=batch_first)
    rng = np.random.default_rng(2)
    q = rand(*((n, L, E) if batch_first else (L, n, E)), seed=3)
    k = rand(*((n, S, E) if batch_first else (S, n, E)), seed=4)
    v = rand(*((n, S, E) if batch_first else (S, n, E)), seed=5)
    kpm = np.zeros((n, S), bool)
    kpm[0, -2:] = True
    kpm[2, 0] = True
    attn = rng.random((L, S)) < 0.3
    attn[:, 1] = False
    if mask_kind == "float":
        kpm = np.where(kpm, -np.inf, 0).astype(np.float32)
        attn = np.where(attn, -1e4, rng.standard_normal((L, S))).astype(np.float32)
    compare_module(m, t, [q, k, v], dict(key_padding_mask=kpm, attn_mask=attn, need_weights=need_weights,
                                         average_attn_weights=False))


@pytest.mark.parametrize("need_weights", [True, False])
def test_mha_3d_attn_mask_and_shared_kv(need_weights):
    torch.manual_seed(3)
    n, L, S, E, H = 2, 5, 4, 8, 2
    t, m = torch.nn.MultiheadAttention(E, H), nf.nn.MultiheadAttention(E, H)
    attn = np.random.default_rng(0).random((n * H, L, S)) < 0.3
    attn[..., 0] = False
    q, mem = rand(L, n, E, seed=1), rand(S, n, E, seed=2)

    class CrossAttn:  # key is value (decoder cross-attention: fused K/V projection)
        def __init__(self, mod):
            self.mod = mod

        def __call__(self, q, mem, **kw):
            return self.mod(q, mem, mem, **kw)

        def __getattr__(self, name):
            return getattr(self.mod, name)

    compare_module(CrossAttn(m), CrossAttn(t), [q, mem], dict(attn_mask=attn, need_weights=need_weights))


@pytest.mark.parametrize("need_weights", [True, False])
def test_mha_kdim_vdim_no_bias(need_weights):
    torch.manual_seed(4)
    t = torch.nn.MultiheadAttention(8, 2, kdim=6, vdim=5, bias=False, batch_first=True)
    m = nf.nn.MultiheadAttention(8, 2, kdim=6, vdim=5, bias=False, batch_first=True)
    assert [n for n, _ in m.named_parameters()] == ["q_proj_weight", "k_proj_weight", "v_proj_weight",
                                                    "out_proj.weight"]
    compare_module(m, t, [rand(2, 3, 8, seed=1), rand(2, 4, 6, seed=2), rand(2, 4, 5, seed=3)],
                   dict(need_weights=need_weights))


@pytest.mark.parametrize("need_weights", [True, False])
def test_mha_unbatched_and_causal(need_weights):
    torch.manual_seed(5)
    t, m = torch.nn.MultiheadAttention(8, 2), nf.nn.MultiheadAttention(8, 2)
    x = rand(6, 8)
    causal = np.triu(np.ones((6, 6), bool), 1)
    kpm = np.zeros(6, bool)
    kpm[-1] = True

    class SelfAttn:
        def __init__(self, mod):
            self.mod = mod

        def __call__(self, x, **kw):
            return self.mod(x, x, x, **kw)

        def __getattr__(self, name):
            return getattr(self.mod, name)

    compare_module(SelfAttn(m), SelfAttn(t), [x], dict(attn_mask=causal, is_causal=True, need_weights=need_weights))
    compare_module(SelfAttn(m), SelfAttn(t), [x], dict(attn_mask=causal, key_padding_mask=kpm,
                                                       need_weights=need_weights))


def test_mha_parameters_init_and_state_dict():
    m = nf.nn.MultiheadAttention(16, 4)
    t = torch.nn.MultiheadAttention(16, 4)
    assert {k: tuple(v.shape) for k, v in m.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in t.state_dict().items()}
    assert not m.in_proj_bias.detach().numpy().any() and not m.out_proj.bias.detach().numpy().any()
    bound = np.sqrt(6 / (16 + 48))  # xavier_uniform_ on (3E, E)
    w = m.in_proj_weight.detach().numpy()
    assert np.abs(w).max() <= bound and w.std() > bound / 3


def test_mha_eval_disables_dropout_and_train_applies_it():
    m = nf.nn.MultiheadAttention(8, 2, dropout=0.5, batch_first=True)
    x = nf.randn(2, 10, 8)
    m.eval()
    m.requires_grad_(False)
    a, b = m(x, x, x, need_weights=False)[0], m(x, x, x, need_weights=False)[0]
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    m.train()
    c = m(x, x, x, need_weights=False)[0]
    assert not np.allclose(a.numpy(), c.numpy())


def test_mha_errors():
    with pytest.raises(ValueError, match="divisible"):
        nf.nn.MultiheadAttention(10, 3)
    with pytest.raises(NotImplementedError):
        nf.nn.MultiheadAttention(8, 2, add_bias_kv=True)
    m = nf.nn.MultiheadAttention(8, 2)
    x = nf.randn(5, 2, 8)
    with pytest.raises(RuntimeError, match="MultiheadAttention.*feature sizes"):
        m(nf.randn(5, 2, 6), x, x)
    with pytest.raises(RuntimeError, match="key_padding_mask has shape"):
        m(x, x, x, key_padding_mask=nf.zeros(5, 2, dtype=nf.bool))
    with pytest.raises(RuntimeError, match="2D attn_mask"):
        m(x, x, x, attn_mask=nf.zeros(4, 5, dtype=nf.bool))
    with pytest.raises(RuntimeError, match="3D attn_mask"):
        m(x, x, x, attn_mask=nf.zeros(2, 5, 5, dtype=nf.bool))


@pytest.mark.parametrize("need_weights", [True, False])
def test_mha_fully_masked_sequence_like_torch(need_weights):
    # torch: NaN on the weights path, zeros (then out_proj) on the SDPA path; nnforge does the same
    torch.manual_seed(6)
    t = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    m = nf.nn.MultiheadAttention(8, 2, batch_first=True)
    load_from_torch(m, t)
    x = rand(2, 3, 8)
    kpm = np.zeros((2, 3), bool)
    kpm[0] = True
    ref = t(torch.tensor(x), torch.tensor(x), torch.tensor(x), key_padding_mask=torch.tensor(kpm),
            need_weights=need_weights)[0]
    with np.errstate(invalid="ignore"):
        out = m(nf.tensor(x), nf.tensor(x), nf.tensor(x), key_padding_mask=nf.tensor(kpm), need_weights=need_weights)[0]
    assert_close(out, ref, 2e-5, 2e-5, "output")
    assert np.isnan(out.detach().numpy()[0]).all() == need_weights
