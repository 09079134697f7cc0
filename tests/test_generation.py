"""generate() against transformers: greedy decoding token for token (GPT-2 and Llama, left-padded batches, EOS
stopping with padding, repetition penalty), HF's logits processors value for value, seeded sampling, KV cache."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import nnforge as nf
from nnforge.models.generation import KVCache, process_logits, sample
from nnforge.models.gpt2 import GPT2LMHeadModel
from nnforge.models.llama import LlamaForCausalLM

transformers = pytest.importorskip("transformers")

VOCAB = 53


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def pair(request, tmp_path_factory):
    """(transformers model, our model loaded from its checkpoint)."""
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp(request.param)
    if request.param == "gpt2":
        hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(
            vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=0))
        cls = GPT2LMHeadModel
    else:
        hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(
            vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64, bos_token_id=0, eos_token_id=0))
        cls = LlamaForCausalLM
    hf.eval().save_pretrained(path)
    return hf, cls.from_pretrained(path)


def prompts(batch=3, length=6, seed=0):
    return np.random.default_rng(seed).integers(1, VOCAB, (batch, length))


def hf_generate(hf, ids, mask=None, **kw):
    kw.setdefault("do_sample", False)
    with torch.no_grad():
        return hf.generate(torch.tensor(ids), attention_mask=None if mask is None else torch.tensor(mask),
                           **kw).numpy()


def test_greedy_matches_transformers(pair):
    hf, ours = pair
    ids = prompts()
    got = ours.generate(nf.tensor(ids), max_new_tokens=12, eos_token_id=-1)
    ref = hf_generate(hf, ids, max_new_tokens=12, eos_token_id=None, pad_token_id=0)
    np.testing.assert_array_equal(got.numpy(), ref)
    assert got.dtype == np.int64 and got.shape == (3, 18)


def test_greedy_left_padded_batch_matches_transformers(pair):
    hf, ours = pair
    ids = prompts(3, 7, seed=3)
    mask = np.ones_like(ids)
    mask[0, :4] = 0
    mask[2, :1] = 0
    ids[mask == 0] = 5  # pad id
    got = ours.generate(nf.tensor(ids), attention_mask=nf.tensor(mask), max_new_tokens=10, eos_token_id=-1,
                        pad_token_id=5)
    ref = hf_generate(hf, ids, mask, max_new_tokens=10, eos_token_id=None, pad_token_id=5)
    np.testing.assert_array_equal(got.numpy(), ref)


def test_eos_stops_each_sequence_and_pads(pair):
    hf, ours = pair
    ids = prompts(3, 5, seed=7)
    free = ours.generate(nf.tensor(ids), max_new_tokens=8, eos_token_id=-1).numpy()
    eos = int(free[0, 7])  # a token the first sequence emits at step 3: it stops there
    got = ours.generate(nf.tensor(ids), max_new_tokens=8, eos_token_id=eos, pad_token_id=50).numpy()
    ref = hf_generate(hf, ids, max_new_tokens=8, eos_token_id=eos, pad_token_id=50)
    np.testing.assert_array_equal(got, ref)
    first = list(got[0, 5:]).index(eos)
    assert (got[0, 5 + first + 1:] == 50).all()
    # default EOS is the config's
    np.testing.assert_array_equal(ours.generate(nf.tensor(ids), max_new_tokens=8).numpy(),
                                  hf_generate(hf, ids, max_new_tokens=8))


def test_repetition_penalty_greedy_matches_transformers(pair):
    hf, ours = pair
    ids = prompts(2, 6, seed=11)
    got = ours.generate(nf.tensor(ids), max_new_tokens=10, repetition_penalty=1.7, eos_token_id=-1)
    ref = hf_generate(hf, ids, max_new_tokens=10, repetition_penalty=1.7, eos_token_id=None, pad_token_id=0)
    np.testing.assert_array_equal(got.numpy(), ref)


def test_sampling_seeded_valid_and_top_k_1_is_greedy(pair):
    _, ours = pair
    ids = prompts()
    kw = {"max_new_tokens": 10, "do_sample": True, "temperature": 1.3, "top_p": 0.9, "eos_token_id": -1}
    a = ours.generate(nf.tensor(ids), generator=nf.Generator().manual_seed(3), **kw).numpy()
    b = ours.generate(nf.tensor(ids), generator=nf.Generator().manual_seed(3), **kw).numpy()
    c = ours.generate(nf.tensor(ids), generator=nf.Generator().manual_seed(4), **kw).numpy()
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    assert a.shape == (3, 16) and a.min() >= 0 and a.max() < VOCAB
    np.testing.assert_array_equal(a[:, :6], ids)
    greedy = ours.generate(nf.tensor(ids), max_new_tokens=10, eos_token_id=-1).numpy()
    nf.manual_seed(0)
    np.testing.assert_array_equal(ours.generate(nf.tensor(ids), max_new_tokens=10, do_sample=True, top_k=1,
                                                temperature=0.7, eos_token_id=-1).numpy(), greedy)
    np.testing.assert_array_equal(ours.generate(nf.tensor(ids), max_new_tokens=10, do_sample=True, top_p=1e-6,
                                                eos_token_id=-1).numpy(), greedy)


@pytest.mark.parametrize("temperature,top_k,top_p,penalty", [(1.0, 50, 1.0, 1.0), (0.7, 5, 1.0, 1.3),
                                                            (1.5, 0, 0.8, 1.0), (0.9, 10, 0.5, 0.8)])
def test_logits_processors_match_transformers(temperature, top_k, top_p, penalty):
    g = transformers.generation.logits_process
    rng = np.random.default_rng(0)
    scores = (rng.standard_normal((4, 60)) * 3).astype(np.float32)
    scores[0, :6] = scores[0, 6]  # ties at the top-k boundary
    ids = rng.integers(0, 60, (4, 9))
    procs = [g.RepetitionPenaltyLogitsProcessor(penalty)] if penalty != 1.0 else []
    procs += [g.TemperatureLogitsWarper(temperature)] if temperature != 1.0 else []
    procs += [g.TopKLogitsWarper(top_k)] if top_k else []
    procs += [g.TopPLogitsWarper(top_p)] if top_p < 1.0 else []
    ref = torch.tensor(scores)
    for p in procs:
        ref = p(torch.tensor(ids), ref)
    got = process_logits(scores.copy(), ids, penalty, True, temperature, top_k, top_p, np)
    np.testing.assert_allclose(got, ref.numpy(), rtol=1e-6, atol=0)
    assert (np.isneginf(got) == np.isneginf(ref.numpy())).all()


def test_sample_draws_only_allowed_tokens_with_the_right_frequencies():
    scores = np.array([[-np.inf, np.log(0.5), -np.inf, np.log(0.25), np.log(0.25)]], np.float32).repeat(20000, 0)
    rng = nf.Generator().manual_seed(0).rng
    draws = sample(scores, rng, np)
    freq = np.bincount(draws, minlength=5) / draws.size
    assert freq[0] == 0 and freq[2] == 0
    np.testing.assert_allclose(freq, [0, 0.5, 0, 0.25, 0.25], atol=0.015)


def test_kv_cache_grows_and_keeps_gradients():
    cache = KVCache(max_length=3)
    k = nf.tensor(np.arange(2 * 4 * 2, dtype=np.float32).reshape(1, 2, 4, 2))
    _a, _ = cache.update(k[:, :, :2], k[:, :, :2], 0)
    b, _ = cache.update(k[:, :, 2:], k[:, :, 2:], 0)  # beyond the capacity of 3: the buffer grows
    np.testing.assert_array_equal(b.numpy(), k.numpy())
    assert cache.get_seq_length() == 4 and cache.get_seq_length(5) == 0
    grad_cache = KVCache()
    x = nf.tensor(np.ones((1, 1, 2, 2), dtype=np.float32), requires_grad=True)
    grad_cache.update(x, x, 0)
    k2, _ = grad_cache.update(x * 2, x, 0)
    k2.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.full((1, 1, 2, 2), 2.0))


def test_generate_errors(pair):
    _, ours = pair
    ids = nf.tensor(prompts())
    with pytest.raises(ValueError, match="2-D integer"):
        ours.generate(nf.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="attention_mask of shape"):
        ours.generate(ids, attention_mask=nf.tensor(np.ones((3, 2), dtype=np.int64)))
    with pytest.raises(ValueError, match="temperature"):
        ours.generate(ids, do_sample=True, temperature=0)
    with pytest.raises(ValueError, match="top_p"):
        ours.generate(ids, do_sample=True, top_p=1.5)
    with pytest.raises(ValueError, match="max_new_tokens"):
        ours.generate(ids, max_new_tokens=-1)
    assert ours.generate(ids, max_new_tokens=0).shape == (3, 6)
