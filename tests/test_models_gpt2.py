"""GPT-2 against transformers: checkpoints written by transformers (random weights, tiny configs) load with
identical logits, loss, hidden states and gradients; our save_pretrained loads back into transformers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import nnforge as nf
from nnforge.models import AutoModel, AutoModelForCausalLM
from nnforge.models.generation import KVCache
from nnforge.models.gpt2 import GPT2Config, GPT2LMHeadModel, GPT2Model

transformers = pytest.importorskip("transformers")

CONFIGS = {
    "base": {},
    "inner_gelu_layerscale": {"n_inner": 40, "activation_function": "gelu", "scale_attn_by_inverse_layer_idx": True},
    "unscaled_relu": {"scale_attn_weights": False, "activation_function": "relu", "n_layer": 1},
}


def hf_gpt2(tmp_path, name="base", safe=True, **extra):
    torch.manual_seed(0)
    kw = {"vocab_size": 61, "n_positions": 32, "n_embd": 32, "n_layer": 2, "n_head": 4, "bos_token_id": 0, "eos_token_id": 0}
    kw.update(CONFIGS[name], **extra)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**kw)).eval()
    path = tmp_path / f"gpt2-{name}-{safe}"
    model.save_pretrained(path, safe_serialization=safe)
    return model, path


def ids_for(batch=2, length=7, vocab=61, seed=0):
    return np.random.default_rng(seed).integers(0, vocab, (batch, length))


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("safe", [True, False])
def test_logits_loss_hidden_states_match_transformers(tmp_path, name, safe):
    hf, path = hf_gpt2(tmp_path, name, safe)
    ours = GPT2LMHeadModel.from_pretrained(path)
    ids = ids_for()
    with torch.no_grad():
        ref = hf(torch.tensor(ids), labels=torch.tensor(ids), output_hidden_states=True)
    with nf.no_grad():
        out = ours(nf.tensor(ids), labels=nf.tensor(ids), output_hidden_states=True)
    np.testing.assert_allclose(out.logits.numpy(), ref.logits.numpy(), atol=1e-4, rtol=0)
    assert out.loss.item() == pytest.approx(ref.loss.item(), rel=1e-5)
    assert len(out.hidden_states) == len(ref.hidden_states)
    for a, b in zip(out.hidden_states, ref.hidden_states):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4, rtol=0)
    assert ours.lm_head.weight is ours.transformer.wte.weight


def test_labels_with_ignore_index_and_gradients_match(tmp_path):
    hf, path = hf_gpt2(tmp_path)
    hf.train()
    for m in hf.modules():  # compare gradients without dropout noise
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    ours = GPT2LMHeadModel.from_pretrained(path, embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0)
    ours.train()
    ids = ids_for()
    labels = ids.copy()
    labels[:, :3] = -100
    ref = hf(torch.tensor(ids), labels=torch.tensor(labels))
    ref.loss.backward()
    out = ours(nf.tensor(ids), labels=nf.tensor(labels))
    out.loss.backward()
    assert out.loss.item() == pytest.approx(ref.loss.item(), rel=1e-5)
    np.testing.assert_allclose(ours.transformer.wte.weight.grad.numpy(), hf.transformer.wte.weight.grad.numpy(),
                               atol=5e-4, rtol=0)
    # Conv1D (in, out) gradient vs our Linear (out, in)
    np.testing.assert_allclose(ours.transformer.h[0].attn.c_attn.weight.grad.numpy(),
                               hf.transformer.h[0].attn.c_attn.weight.grad.numpy().T, atol=5e-4, rtol=0)


def test_base_model_and_auto_classes(tmp_path):
    hf, path = hf_gpt2(tmp_path)
    base = AutoModel.from_pretrained(path)
    assert isinstance(base, GPT2Model)
    assert isinstance(AutoModelForCausalLM.from_pretrained(path), GPT2LMHeadModel)
    ids = ids_for()
    with torch.no_grad():
        ref = hf.transformer(torch.tensor(ids)).last_hidden_state.numpy()
    with nf.no_grad():
        got = base(nf.tensor(ids)).last_hidden_state.numpy()
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)


def test_left_padded_batch_with_attention_mask(tmp_path):
    hf, path = hf_gpt2(tmp_path)
    ours = GPT2LMHeadModel.from_pretrained(path)
    ids = ids_for(3, 8)
    mask = np.ones_like(ids)
    mask[1, :3] = 0
    mask[2, :1] = 0
    with torch.no_grad():
        ref = hf(torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.numpy()
    with nf.no_grad():
        got = ours(nf.tensor(ids), attention_mask=nf.tensor(mask)).logits.numpy()
    keep = mask.astype(bool)
    np.testing.assert_allclose(got[keep], ref[keep], atol=1e-4, rtol=0)


def test_kv_cache_decoding_equals_full_forward(tmp_path):
    _, path = hf_gpt2(tmp_path)
    ours = GPT2LMHeadModel.from_pretrained(path)
    ids = ids_for(2, 9)
    with nf.no_grad():
        full = ours(nf.tensor(ids)).logits.numpy()
        out = ours(nf.tensor(ids[:, :5]), use_cache=True)
        assert isinstance(out.past_key_values, KVCache) and out.past_key_values.get_seq_length() == 5
        steps = [out.logits.numpy()]
        for t in range(5, 9):
            out = ours(nf.tensor(ids[:, t:t + 1]), past_key_values=out.past_key_values, use_cache=True)
            steps.append(out.logits.numpy())
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5, rtol=0)


def test_save_pretrained_round_trip_loads_in_transformers(tmp_path):
    hf, path = hf_gpt2(tmp_path, "inner_gelu_layerscale")
    ours = GPT2LMHeadModel.from_pretrained(path)
    ours.save_pretrained(tmp_path / "ours")
    back = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "ours").eval()
    ids = ids_for()
    with torch.no_grad():
        a, b = hf(torch.tensor(ids)).logits.numpy(), back(torch.tensor(ids)).logits.numpy()
    np.testing.assert_array_equal(a, b)
    again = GPT2LMHeadModel.from_pretrained(tmp_path / "ours")
    for (k, v), (k2, v2) in zip(ours.state_dict().items(), again.state_dict().items()):
        assert k == k2
        np.testing.assert_array_equal(v.numpy(), v2.numpy())


def test_config_defaults_and_aliases():
    cfg = GPT2Config()
    ref = transformers.GPT2Config()
    for key in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "activation_function",
                "layer_norm_epsilon", "initializer_range", "bos_token_id", "eos_token_id", "tie_word_embeddings"):
        assert getattr(cfg, key) == getattr(ref, key), key
    assert (cfg.hidden_size, cfg.num_attention_heads, cfg.num_hidden_layers) == (768, 12, 12)


def test_fresh_model_init_statistics():
    nf.manual_seed(0)
    m = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=16, n_embd=64, n_layer=2, n_head=4))
    assert abs(float(m.transformer.wte.weight.detach().numpy().std()) - 0.02) < 0.003
    c_proj = m.transformer.h[0].mlp.c_proj.weight.detach().numpy()
    assert abs(float(c_proj.std()) - 0.02 / np.sqrt(4)) < 0.002
    assert np.all(m.transformer.h[0].ln_1.weight.detach().numpy() == 1)


def test_errors(tmp_path):
    _, path = hf_gpt2(tmp_path)
    ours = GPT2LMHeadModel.from_pretrained(path)
    with pytest.raises(ValueError, match=r"input_ids must be \(batch, seq\)"):
        ours(nf.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="exceed n_positions=32"):
        ours(nf.tensor(ids_for(1, 33)))
    with pytest.raises(ValueError, match="attention_mask of shape"):
        ours(nf.tensor(ids_for(2, 5)), attention_mask=nf.tensor(np.ones((2, 4), dtype=np.int64)))
    with pytest.raises(ValueError, match="activation"):
        GPT2LMHeadModel(GPT2Config(n_embd=8, n_head=2, n_layer=1, vocab_size=5, activation_function="nope"))
