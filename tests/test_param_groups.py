"""Layer-wise learning-rate decay groups for BERT, GPT-2 and Llama."""
import numpy as np
import pytest

import nnforge as nf
from nnforge.models.bert import BertConfig, BertForSequenceClassification
from nnforge.models.gpt2 import GPT2Config, GPT2LMHeadModel
from nnforge.models.llama import LlamaConfig, LlamaForCausalLM
from nnforge.train.param_groups import layerwise_lr_decay_groups, parameter_depth


def _bert():
    return BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=3,
                                                    num_attention_heads=2, intermediate_size=32, num_labels=2))


def _lr_of(groups):
    return {n: (g["lr"], g["weight_decay"]) for g in groups for n in g["names"]}


def test_bert_lrs():
    model = _bert()
    lr, d = 1e-3, 0.5
    lrs = _lr_of(layerwise_lr_decay_groups(model, lr, decay=d, weight_decay=0.01))
    L = 3
    assert lrs["bert.embeddings.word_embeddings.weight"] == (lr * d ** (L + 1), 0.01)
    assert lrs["bert.embeddings.LayerNorm.weight"] == (lr * d ** (L + 1), 0.0)
    for i in range(L):
        assert lrs[f"bert.encoder.layer.{i}.attention.self.query.weight"] == (lr * d ** (L - i), 0.01)
        assert lrs[f"bert.encoder.layer.{i}.attention.self.query.bias"] == (lr * d ** (L - i), 0.0)
        assert lrs[f"bert.encoder.layer.{i}.output.LayerNorm.weight"] == (lr * d ** (L - i), 0.0)
    assert lrs["bert.pooler.dense.weight"] == (lr, 0.01)
    assert lrs["classifier.weight"] == (lr, 0.01)
    assert lrs["classifier.bias"] == (lr, 0.0)
    assert len(lrs) == len(list(model.parameters()))


def test_gpt2_and_llama_lrs():
    gpt = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=16, n_embd=16, n_layer=2, n_head=2))
    lrs = _lr_of(layerwise_lr_decay_groups(gpt, 1.0, decay=0.5))
    assert lrs["transformer.wte.weight"][0] == lrs["transformer.wpe.weight"][0] == 0.5 ** 3
    assert lrs["transformer.h.0.attn.c_attn.weight"][0] == 0.25
    assert lrs["transformer.h.1.mlp.c_fc.weight"][0] == 0.5
    assert lrs["transformer.ln_f.weight"][0] == 1.0
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, max_position_embeddings=16))
    groups = layerwise_lr_decay_groups(llama, 1.0, decay=0.5, weight_decay=0.1)
    lrs = _lr_of(groups)
    assert lrs["model.embed_tokens.weight"] == (0.125, 0.1)
    assert lrs["model.layers.0.self_attn.q_proj.weight"] == (0.25, 0.1)
    assert lrs["model.layers.1.input_layernorm.weight"] == (0.5, 0.0)
    assert lrs["model.norm.weight"] == (1.0, 0.0)
    assert lrs["lm_head.weight"] == (1.0, 0.1)
    assert [g["depth"] for g in groups] == sorted(g["depth"] for g in groups)


def test_frozen_skipped_and_optimizer_uses_group_lrs():
    model = _bert()
    model.freeze("bert.embeddings.*")
    model.freeze("bert.encoder.layer.0.*")
    groups = layerwise_lr_decay_groups(model, 0.1, decay=0.5)
    names = [n for g in groups for n in g["names"]]
    assert not any(n.startswith(("bert.embeddings.", "bert.encoder.layer.0.")) for n in names)
    assert len(names) == sum(1 for p in model.parameters() if p.requires_grad)
    opt = nf.optim.SGD(groups, lr=123.0)
    assert sorted({g["lr"] for g in opt.param_groups}) == [0.025, 0.05, 0.1]
    # one SGD step moves each parameter by its group's lr * grad
    w = model.bert.encoder.layer[1].attention.self.query.weight
    before = w.detach().numpy().copy()
    model.train()
    nf.manual_seed(0)
    out = model(np.array([[1, 2, 3, 4]]), labels=np.array([1]))
    out.loss.backward()
    g = w.grad.numpy().copy()
    opt.step()
    np.testing.assert_allclose(w.detach().numpy(), before - 0.025 * g, rtol=1e-6, atol=1e-8)


def test_user_module_and_errors():
    class Wrapper(nf.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = _bert().bert
            self.head = nf.nn.Linear(16, 1)

    lrs = _lr_of(layerwise_lr_decay_groups(Wrapper(), 1.0, decay=0.5))  # no config: 3 blocks from the names
    assert lrs["backbone.embeddings.word_embeddings.weight"][0] == 0.5 ** 4
    assert lrs["backbone.encoder.layer.2.output.dense.weight"][0] == 0.5
    assert lrs["head.weight"][0] == 1.0
    assert parameter_depth("encoder.layer.11.x.weight", 12) == 12
    with pytest.raises(ValueError, match="decay must be in"):
        layerwise_lr_decay_groups(Wrapper(), 1.0, decay=0.0)
