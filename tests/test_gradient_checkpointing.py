"""Gradient checkpointing: ``nnforge.utils.checkpoint`` and ``model.gradient_checkpointing_enable()``.

Checkpointed and plain runs must give the same gradients (dropout on: the recomputation replays the saved
random state) while keeping less memory alive during forward + backward."""
import tracemalloc

import numpy as np
import pytest

import nnforge as nf
from nnforge import nn
from nnforge.models.bert import BertConfig, BertForSequenceClassification
from nnforge.models.configuration import PretrainedConfig
from nnforge.models.gpt2 import GPT2Config, GPT2LMHeadModel
from nnforge.models.llama import LlamaConfig, LlamaForCausalLM
from nnforge.models.modeling_utils import PreTrainedModel
from nnforge.utils.checkpoint import checkpoint


def _bert(layers=3, hidden=32, inter=64, dropout=0.1):
    cfg = BertConfig(vocab_size=100, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                     intermediate_size=inter, max_position_embeddings=160, hidden_dropout_prob=dropout,
                     attention_probs_dropout_prob=dropout, num_labels=3)
    return BertForSequenceClassification(cfg)


def _gpt2():
    cfg = GPT2Config(vocab_size=100, n_positions=64, n_embd=32, n_layer=3, n_head=4)  # dropouts 0.1
    return GPT2LMHeadModel(cfg)


def _llama():
    cfg = LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      attention_dropout=0.1)
    return LlamaForCausalLM(cfg)


def _grads(model, batch, enable):
    if enable:
        model.gradient_checkpointing_enable()
    else:
        model.gradient_checkpointing_disable()
    model.train()
    model.zero_grad()
    nf.manual_seed(123)
    model(**batch).loss.backward()
    after = nf.random.get_rng_state()["bit_generator"]["state"]
    return {k: p.grad.numpy().copy() for k, p in model.named_parameters() if p.grad is not None}, after


def _batch(kind):
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 100, size=(2, 12))
    mask = np.ones((2, 12), dtype=np.int64)
    mask[1, 9:] = 0
    if kind == "bert":
        return {"input_ids": ids, "attention_mask": mask, "labels": np.array([0, 2])}
    return {"input_ids": ids, "attention_mask": mask, "labels": ids}


@pytest.mark.parametrize("kind,build", [("bert", _bert), ("gpt2", _gpt2), ("llama", _llama)])
def test_same_gradients_with_dropout(kind, build):
    nf.manual_seed(0)
    model = build()
    batch = _batch(kind)
    plain, rng_plain = _grads(model, batch, False)
    ckpt, rng_ckpt = _grads(model, batch, True)
    assert model.is_gradient_checkpointing
    assert plain.keys() == ckpt.keys() and len(plain) == len(list(model.parameters()))
    for k in plain:
        np.testing.assert_allclose(ckpt[k], plain[k], rtol=0, atol=1e-6, err_msg=k)
    assert rng_plain == rng_ckpt  # recomputation does not advance the global generator
    # dropout is really on: another seed gives other gradients
    model.zero_grad()
    nf.manual_seed(7)
    model(**batch).loss.backward()
    k = next(iter(plain))
    assert not np.allclose(model.get_parameter(k).grad.numpy(), plain[k])


def test_checkpointing_is_training_only():
    nf.manual_seed(0)
    model = _bert()
    model.gradient_checkpointing_enable()
    model.eval()
    out = model(**_batch("bert"))
    assert "Checkpoint" not in type(out.loss.grad_fn).__name__
    layer_out = model.bert.encoder(nf.randn(2, 5, 32, requires_grad=True))[0]
    assert type(layer_out.grad_fn).__name__ != "CheckpointFunction"
    model.train()
    layer_out = model.bert.encoder(nf.randn(2, 5, 32, requires_grad=True))[0]
    assert type(layer_out.grad_fn).__name__ == "CheckpointFunction"


def test_frozen_input_still_gives_parameter_grads_and_autograd_grad():
    """The block's input needs no grad (frozen embeddings); its parameters still get exact gradients, also
    through ``nf.autograd.grad``."""
    nf.manual_seed(0)
    lin = nn.Linear(4, 3)
    x = nf.randn(5, 4)

    def run(use):
        y = checkpoint(lin, x) if use else lin(x)
        return (y.tanh() ** 2).sum()

    ref = nf.autograd.grad(run(False), [lin.weight, lin.bias])
    got = nf.autograd.grad(run(True), [lin.weight, lin.bias])
    for a, b in zip(ref, got):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert lin.weight.grad is None  # autograd.grad accumulates nothing
    run(True).backward()
    np.testing.assert_array_equal(lin.weight.grad.numpy(), ref[0].numpy())


def test_plain_function_closing_over_parameters_and_kwargs():
    nf.manual_seed(0)
    lin = nn.Linear(4, 4)
    x = nf.randn(3, 4, requires_grad=True)
    s = nf.randn(3, 4, requires_grad=True)

    def fn(a, shift=None):
        return nn.functional.gelu(lin(a)) * shift

    (fn(x, shift=s) ** 2).sum().backward()
    ref = [t.grad.numpy().copy() for t in (x, s, lin.weight, lin.bias)]
    for t in (x, s, lin.weight, lin.bias):
        t.grad = None
    (checkpoint(fn, x, shift=s) ** 2).sum().backward()
    for r, t in zip(ref, (x, s, lin.weight, lin.bias)):
        np.testing.assert_allclose(t.grad.numpy(), r, rtol=0, atol=1e-7)


def test_gradcheck_through_checkpoint():
    nf.manual_seed(0)
    lin = nn.Linear(3, 2).double()
    x = nf.randn(4, 3, dtype=nf.float64, requires_grad=True)
    assert nf.autograd.gradcheck(lambda a: checkpoint(lin, a).sigmoid(), [x])


def test_errors_and_no_grad_passthrough():
    with pytest.raises(TypeError, match="checkpoint: .* must return one Tensor, got tuple"):
        checkpoint(lambda a: (a, a), nf.ones(2, requires_grad=True))
    with nf.no_grad():
        y = checkpoint(lambda a: a * 2, nf.ones(2, requires_grad=True))
    assert y.grad_fn is None
    with pytest.raises(ValueError, match="does not support gradient checkpointing"):
        PreTrainedModel(PretrainedConfig()).gradient_checkpointing_enable()


def _peak_bytes(model, batch, enable):
    if enable:
        model.gradient_checkpointing_enable()
    else:
        model.gradient_checkpointing_disable()
    model.train()
    model.zero_grad()
    nf.manual_seed(0)
    tracemalloc.start()
    try:
        model(**batch).loss.backward()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_lower_peak_memory_6_layers_seq_128(record_property, capsys):
    nf.manual_seed(0)
    model = _bert(layers=6, hidden=64, inter=256)
    rng = np.random.default_rng(0)
    batch = {"input_ids": rng.integers(1, 100, size=(8, 128)), "labels": rng.integers(0, 3, size=8)}
    _peak_bytes(model, batch, False)  # warm-up: lazily built buffers are not counted below
    without = _peak_bytes(model, batch, False)
    with_ckpt = _peak_bytes(model, batch, True)
    record_property("peak_without_bytes", without)
    record_property("peak_with_bytes", with_ckpt)
    with capsys.disabled():
        print(f"\npeak traced memory, forward+backward, 6-layer BERT (H=64), batch 8 x seq 128: "
              f"without checkpointing {without / 2**20:.1f} MiB, with {with_ckpt / 2**20:.1f} MiB")
    assert with_ckpt < without * 0.8
