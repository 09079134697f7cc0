"""Bad input everywhere raises a clear error: the layer's path in the model, the shapes, ids and sizes involved."""
from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import nnforge as nf
import nnforge.nn.functional as F
from nnforge import nn
from nnforge.models import (
    BertConfig,
    BertForSequenceClassification,
    BertForTokenClassification,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
)


def _ids(shape, value=1):
    return nf.tensor(np.full(shape, value, np.int64))


@pytest.fixture(scope="module")
def bert():
    nf.manual_seed(0)
    cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=12, num_labels=3)
    return BertForSequenceClassification(cfg)


@pytest.fixture(scope="module")
def gpt2():
    nf.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=12))


@pytest.fixture(scope="module")
def llama():
    nf.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                        num_key_value_heads=1, intermediate_size=32, max_position_embeddings=12))


# ---------------------------------------------------------------- shape errors name the layer

class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 6))
        self.classifier = nn.Linear(5, 2)  # wrong: the encoder gives 6

    def forward(self, x):
        return self.classifier(self.encoder(x))


def test_linear_wrong_width_names_layer_and_widths():
    with pytest.raises(RuntimeError) as e:
        _Net()(nf.randn(3, 4))
    msg = str(e.value)
    assert msg.startswith("in 'classifier': Linear(in_features=5, out_features=2)"), msg
    assert "last dimension 5" in msg and "(3, 6)" in msg


def test_nested_layer_path_and_top_level_message():
    with pytest.raises(RuntimeError, match=r"^in 'encoder\.0': Linear\(in_features=4.*got shape \(3, 7\)"):
        _Net()(nf.randn(3, 7))
    with pytest.raises(RuntimeError, match=r"^Linear\(in_features=4.*got shape \(2, 3\)$"):  # no path at the top
        nn.Linear(4, 2)(nf.randn(2, 3))


def test_error_inside_a_pretrained_model_names_the_path(bert):
    with pytest.raises(IndexError, match=r"^in 'bert\.embeddings\.word_embeddings': .*index 50"):
        bert(input_ids=_ids((2, 5), 50))


def test_named_errors_keep_their_type_and_are_raised_again_unchanged():
    net = _Net()
    for _ in range(2):  # a fresh exception each call: the prefix is not applied twice
        with pytest.raises(RuntimeError) as e:
            net(nf.randn(3, 4))
        assert str(e.value).count("in 'classifier'") == 1


# ---------------------------------------------------------------- sequence length, token ids

def test_bert_sequence_longer_than_positions(bert):
    with pytest.raises(ValueError, match=r"sequence length 13 exceeds max_position_embeddings 12"):
        bert(input_ids=_ids((2, 13)))
    bert(input_ids=_ids((2, 12)))  # the limit itself is fine


def test_gpt2_sequence_longer_than_positions(gpt2):
    with pytest.raises(ValueError, match=r"13 positions exceed n_positions=12"):
        gpt2(input_ids=_ids((1, 13)))


@pytest.mark.parametrize("bad", [50, 51, 10**6, -1])
@pytest.mark.parametrize("model_name", ["bert", "gpt2", "llama"])
def test_token_ids_out_of_vocabulary(request, model_name, bad):
    model = request.getfixturevalue(model_name)
    ids = np.ones((2, 5), np.int64)
    ids[1, 3] = bad
    with pytest.raises(IndexError) as e:
        model(input_ids=nf.tensor(ids))
    msg = str(e.value)
    assert f"index {bad} is out of range" in msg and "num_embeddings=50" in msg, msg
    assert re.match(r"in '[\w.]*(word_embeddings|wte|embed_tokens)'", msg), msg


def test_embedding_layer_ids_and_dtype():
    emb = nn.Embedding(10, 3)
    with pytest.raises(IndexError, match=r"index 10 is out of range .*num_embeddings=10, valid indices 0\.\.9"):
        emb(nf.tensor([[1, 10]]))
    with pytest.raises(IndexError, match=r"index -3 is out of range"):
        F.embedding(nf.tensor([-3]), emb.weight)
    with pytest.raises(RuntimeError, match=r"expected integer indices, got float32"):
        emb(nf.tensor([1.0, 2.0]))


def test_bert_float_input_ids(bert):
    with pytest.raises(ValueError, match=r"input_ids must be integer token ids.*float32 of shape \(2, 5\)"):
        bert(input_ids=nf.tensor(np.ones((2, 5), np.float32)))


# ---------------------------------------------------------------- labels

@pytest.mark.parametrize("bad", [3, 7, -2])
def test_sequence_classification_label_out_of_range(bert, bad):
    with pytest.raises(IndexError, match=rf"target {bad} is out of bounds for 3 classes"):
        bert(input_ids=_ids((2, 5)), labels=nf.tensor([0, bad]))


def test_token_classification_label_out_of_range():
    nf.manual_seed(0)
    model = BertForTokenClassification(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                                  num_attention_heads=2, intermediate_size=32, num_labels=4))
    labels = np.full((2, 5), -100)
    labels[0, 1] = 4
    with pytest.raises(IndexError, match=r"target 4 is out of bounds for 4 classes"):
        model(input_ids=_ids((2, 5)), labels=nf.tensor(labels))


def test_float_labels_for_single_label_classification(bert):
    with pytest.raises(RuntimeError, match=r"got \(2,\) \(float32 targets are read as class probabilities; "
                                           r"these look like class labels: give them as integers"):
        bert(input_ids=_ids((2, 5)), labels=nf.tensor([0.0, 1.0]))


def test_labels_wrong_count_or_dtype(bert):
    with pytest.raises(RuntimeError, match=r"target of shape \(3,\) does not match input of shape \(2, 3\)"):
        bert(input_ids=_ids((2, 5)), labels=nf.tensor([0, 1, 2]))
    with pytest.raises(RuntimeError, match=r"class indices \(int64\) or probabilities \(float\), got bool"):
        F.cross_entropy(nf.randn(2, 3), nf.tensor([True, False]))


def test_gpt2_labels_out_of_vocabulary(gpt2):
    with pytest.raises(IndexError, match=r"target 50 is out of bounds for 50 classes"):
        gpt2(input_ids=_ids((1, 5)), labels=_ids((1, 5), 50))


# ---------------------------------------------------------------- num_labels mismatch when loading

def test_num_labels_mismatch_when_loading(tmp_path, bert):
    bert.save_pretrained(tmp_path / "three")
    with pytest.raises((RuntimeError, ValueError), match=r"classifier\.weight.*\(3, 16\).*\(5, 16\)|"
                                                         r"classifier\.weight.*\(5, 16\).*\(3, 16\)"):
        BertForSequenceClassification.from_pretrained(tmp_path / "three", num_labels=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        five = BertForSequenceClassification.from_pretrained(tmp_path / "three", num_labels=5,
                                                             ignore_mismatched_sizes=True)
    assert tuple(five.classifier.weight.shape) == (5, 16)
    np.testing.assert_array_equal(five.bert.embeddings.word_embeddings.weight.detach().numpy(),
                                  bert.bert.embeddings.word_embeddings.weight.detach().numpy())
    # load_state_dict names the key and both shapes too
    with pytest.raises(RuntimeError, match=r"classifier\.weight: checkpoint \(3, 16\) vs model \(5, 16\)"):
        five.load_state_dict(bert.state_dict())
