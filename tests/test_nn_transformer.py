"""Transformer encoder/decoder layers and stacks against PyTorch with the same weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import nnforge as nf
from tests.test_nn_attention import compare_module, load_from_torch, rand

D, H, FF = 16, 4, 24


def masks(L, S, n, seed=0):
    """Bool (L, S) attention and (N, S) key padding masks (True = masked), no fully masked row."""
    rng = np.random.default_rng(seed)
    attn = rng.random((L, S)) < 0.25
    attn[:, 0] = False
    kpm = np.zeros((n, S), bool)
    kpm[0, -1] = True
    kpm[-1, -2:] = True
    return attn, kpm


def seq(n, L, batch_first, seed):
    return rand(*((n, L, D) if batch_first else (L, n, D)), seed=seed)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_encoder_layer_train(norm_first, activation, batch_first):
    torch.manual_seed(0)
    kw = dict(dim_feedforward=FF, dropout=0.0, activation=activation, batch_first=batch_first, norm_first=norm_first)
    t, m = torch.nn.TransformerEncoderLayer(D, H, **kw), nf.nn.TransformerEncoderLayer(D, H, **kw)
    attn, kpm = masks(5, 5, 3)
    compare_module(m, t, [seq(3, 5, batch_first, 1)], dict(src_mask=attn, src_key_padding_mask=kpm))


def test_encoder_layer_causal_and_callable_activation():
    torch.manual_seed(1)
    t = torch.nn.TransformerEncoderLayer(D, H, FF, dropout=0.0, activation=torch.nn.functional.silu,
                                         batch_first=True)
    m = nf.nn.TransformerEncoderLayer(D, H, FF, dropout=0.0, activation=nf.nn.functional.silu, batch_first=True)
    causal = np.triu(np.full((6, 6), -np.inf, np.float32), 1)
    compare_module(m, t, [seq(2, 6, True, 2)], dict(src_mask=causal, is_causal=True))


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_eval(norm_first):
    torch.manual_seed(2)
    kw = dict(dim_feedforward=FF, dropout=0.3, batch_first=True, norm_first=norm_first)
    t, m = torch.nn.TransformerEncoderLayer(D, H, **kw).eval(), nf.nn.TransformerEncoderLayer(D, H, **kw).eval()
    load_from_torch(m, t)
    x = seq(3, 7, True, 3)
    _, kpm = masks(7, 7, 3)
    with torch.no_grad():  # torch takes its fused inference fast path here
        ref = t(torch.tensor(x), src_key_padding_mask=torch.tensor(kpm)).numpy()
    with nf.no_grad():
        out = m(nf.tensor(x), src_key_padding_mask=nf.tensor(kpm)).numpy()
    keep = ~kpm  # torch's fast path may zero padded positions; compare the real tokens
    np.testing.assert_allclose(out[keep], ref[keep], atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_stack_with_final_norm(norm_first):
    torch.manual_seed(3)
    kw = dict(dim_feedforward=FF, dropout=0.0, activation="gelu", norm_first=norm_first)
    t = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(D, H, **kw), 2, norm=torch.nn.LayerNorm(D),
                                    enable_nested_tensor=False)
    m = nf.nn.TransformerEncoder(nf.nn.TransformerEncoderLayer(D, H, **kw), 2, norm=nf.nn.LayerNorm(D))
    assert list(m.state_dict()) == list(t.state_dict())
    assert "layers.1.self_attn.in_proj_weight" in m.state_dict()
    # deep copies: layers have separate parameters
    assert m.layers[0].linear1.weight is not m.layers[1].linear1.weight
    attn, kpm = masks(6, 6, 2, seed=4)
    compare_module(m, t, [seq(2, 6, False, 5)], dict(mask=attn, src_key_padding_mask=kpm))


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_decoder_layer_train(norm_first, activation, batch_first):
    torch.manual_seed(4)
    kw = dict(dim_feedforward=FF, dropout=0.0, activation=activation, batch_first=batch_first, norm_first=norm_first)
    t, m = torch.nn.TransformerDecoderLayer(D, H, **kw), nf.nn.TransformerDecoderLayer(D, H, **kw)
    tgt_mask = np.triu(np.ones((4, 4), bool), 1)
    mem_mask, mem_kpm = masks(4, 6, 3, seed=5)
    _, tgt_kpm = masks(4, 4, 3, seed=6)
    compare_module(m, t, [seq(3, 4, batch_first, 7), seq(3, 6, batch_first, 8)],
                   dict(tgt_mask=tgt_mask, memory_mask=mem_mask, tgt_key_padding_mask=tgt_kpm,
                        memory_key_padding_mask=mem_kpm))


def test_decoder_stack_causal_eval_and_load_state_dict():
    torch.manual_seed(5)
    kw = dict(dim_feedforward=FF, dropout=0.2, batch_first=True)
    t = torch.nn.TransformerDecoder(torch.nn.TransformerDecoderLayer(D, H, **kw), 3, norm=torch.nn.LayerNorm(D))
    m = nf.nn.TransformerDecoder(nf.nn.TransformerDecoderLayer(D, H, **kw), 3, norm=nf.nn.LayerNorm(D))
    assert list(m.state_dict()) == list(t.state_dict())
    assert {k: tuple(v.shape) for k, v in m.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in t.state_dict().items()}
    t.eval()
    m.eval()
    causal = np.triu(np.full((5, 5), -np.inf, np.float32), 1)
    compare_module(m, t, [seq(2, 5, True, 9), seq(2, 7, True, 10)], dict(tgt_mask=causal, tgt_is_causal=True))


def test_dropout_active_in_train_mode():
    m = nf.nn.TransformerEncoderLayer(D, H, FF, dropout=0.5, batch_first=True)
    m.requires_grad_(False)
    x = nf.randn(2, 5, D)
    a, b = m(x), m(x)
    assert not np.allclose(a.numpy(), b.numpy())
    m.eval()
    np.testing.assert_array_equal(m(x).numpy(), m(x).numpy())


def test_bad_activation_and_shapes():
    with pytest.raises(RuntimeError, match="activation"):
        nf.nn.TransformerEncoderLayer(D, H, activation="tanh")
    m = nf.nn.TransformerEncoderLayer(D, H, FF)
    with pytest.raises(RuntimeError, match="MultiheadAttention"):
        m(nf.randn(5, 2, D + 1))


def test_unbatched_encoder_and_decoder_layers():
    torch.manual_seed(6)
    t = torch.nn.TransformerEncoderLayer(D, H, FF, dropout=0.0)
    m = nf.nn.TransformerEncoderLayer(D, H, FF, dropout=0.0)
    compare_module(m, t, [rand(5, D, seed=1)])
    t = torch.nn.TransformerDecoderLayer(D, H, FF, dropout=0.0, norm_first=True)
    m = nf.nn.TransformerDecoderLayer(D, H, FF, dropout=0.0, norm_first=True)
    compare_module(m, t, [rand(4, D, seed=2), rand(6, D, seed=3)])
