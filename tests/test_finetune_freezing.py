"""Fine-tuning mechanics: freezing (no update, no grad, no weight-gradient GEMM), parameter counts, task heads on
the real all-MiniLM-L6-v2, a user head on the encoder, and gradient accumulation through the Trainer."""
import sys
from pathlib import Path

import numpy as np
import pytest

import nnforge as nf
import nnforge.nn.functional as F
from nnforge.models import BertForSequenceClassification, BertForTokenClassification
from nnforge.models.bert import BertConfig
from nnforge.nn.utils import count_parameters
from nnforge.ops import linear as linear_op
from nnforge.train import Trainer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from _movie_data import MODEL, mean_pooled_classifier

H = 16


def _tiny(num_labels=2, dropout=0.1):
    nf.manual_seed(0)
    return BertForSequenceClassification(BertConfig(
        vocab_size=60, hidden_size=H, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=32, num_labels=num_labels, hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout))


def _ids(n=6, t=10, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.ones((n, t), dtype=np.int64)
    mask[::2, t - 3:] = 0
    return rng.integers(1, 60, size=(n, t)), mask, rng.integers(0, 2, size=n)


def _snapshot(model):
    return {n: p.detach().numpy().copy() for n, p in model.named_parameters()}


class _GemmCounter:
    """Records, for every backward of a linear layer (``Linear``, and ``LinearGelu``: a feed-forward layer's
    linear + GELU in one op), whether the weight gradient (the g^T x GEMM) was computed."""

    def __init__(self, monkeypatch):
        self.weight_grads = []
        for op in (linear_op.Linear, linear_op.LinearGelu):
            self._wrap(monkeypatch, op)

    def _wrap(self, monkeypatch, op):
        original, original_forward = op.backward, op.forward
        counter = self

        def backward(fn, g):
            grads = original(fn, g)
            counter.weight_grads.append((fn.saved_shape, grads[1] is not None))
            return grads

        def forward(fn, x, w, *rest):
            fn.saved_shape = tuple(w.shape)
            return original_forward(fn, x, w, *rest)

        monkeypatch.setattr(op, "backward", backward)
        monkeypatch.setattr(op, "forward", forward)


def test_frozen_backbone_is_untouched_and_costs_no_weight_gemm(monkeypatch):
    model = _tiny()
    total = sum(p.numel() for p in model.parameters())
    model.freeze("bert.*")
    assert count_parameters(model) == H * 2 + 2  # classifier only
    assert count_parameters(model, trainable_only=False) == total
    assert model.num_parameters(only_trainable=True) == H * 2 + 2
    before = _snapshot(model)
    opt = nf.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)  # all params: it must skip frozen ones
    gemms = _GemmCounter(monkeypatch)
    ids, mask, y = _ids()
    model.train()
    for _ in range(3):
        opt.zero_grad()
        out = model(ids, attention_mask=mask, labels=y)
        out.loss.backward()
        for n, p in model.named_parameters():
            assert (p.grad is None) == n.startswith("bert."), n
        opt.step()
    after = _snapshot(model)
    for n in before:
        if n.startswith("bert."):
            np.testing.assert_array_equal(after[n], before[n], err_msg=n)  # bit for bit
        else:
            assert not np.array_equal(after[n], before[n]), n
    assert set(opt.state) == {model.classifier.weight, model.classifier.bias}
    # one Linear backward per step, the classifier's: nothing in the backbone was even recorded
    assert gemms.weight_grads == [((2, H), True)] * 3


def test_partially_frozen_backbone_skips_weight_gemms_of_frozen_layers(monkeypatch):
    model = _tiny()
    model.freeze(["bert.embeddings.*", "bert.encoder.layer.0.*"])
    trainable = sum(p.numel() for n, p in model.named_parameters()
                    if not n.startswith(("bert.embeddings.", "bert.encoder.layer.0.")))
    assert count_parameters(model) == trainable
    before = _snapshot(model)
    gemms = _GemmCounter(monkeypatch)
    opt = nf.optim.Adam(model.parameters(), lr=1e-2)
    ids, mask, y = _ids()
    model.train()
    model(ids, attention_mask=mask, labels=y).loss.backward()
    opt.step()
    after = _snapshot(model)
    for n in before:
        frozen = n.startswith(("bert.embeddings.", "bert.encoder.layer.0."))
        assert np.array_equal(after[n], before[n]) == frozen, n
    # layer 0 (qkv, attn out, ffn in, ffn out = 4 Linear calls) runs its backward (the input gradient flows
    # on to nowhere) but never computes a weight gradient; layer 1, pooler and classifier do (4 + 1 + 1)
    computed = [w for _, w in gemms.weight_grads]
    assert computed.count(True) == 6
    assert computed.count(False) <= 4  # layer 0 is not differentiated at all: its input needs no grad
    model.unfreeze()
    assert count_parameters(model) == count_parameters(model, trainable_only=False)


def _real_batch(n=8, t=16):
    from nnforge.datasets import load_movie_reviews
    from nnforge.tokenizers import AutoTokenizer

    texts, labels = load_movie_reviews()
    rows = np.r_[0:n // 2, len(texts) - n // 2:len(texts)]
    enc = AutoTokenizer.from_pretrained(MODEL)([texts[i] for i in rows], padding="max_length", truncation=True,
                                               max_length=t, return_tensors="np")
    return enc["input_ids"], enc["attention_mask"], labels[rows]


def _fit_fixed_batch(model, batch, steps=4, lr=3e-4):
    """Loss on ``batch`` in eval mode before and after ``steps`` AdamW steps on it."""
    def loss():
        model.eval()
        with nf.no_grad():
            return model(**batch).loss.item()

    start = loss()
    opt = nf.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        model(**batch).loss.backward()
        opt.step()
    return start, loss()


@pytest.mark.slow
@pytest.mark.parametrize("problem", ["single_label_classification", "multi_label_classification", "regression"])
def test_sequence_classification_heads_train_on_minilm(problem):
    ids, mask, y = _real_batch()
    if problem == "single_label_classification":
        num_labels, labels = 2, y
    elif problem == "multi_label_classification":
        num_labels = 3
        labels = np.stack([y, 1 - y, (mask.sum(1) > 10)], axis=1).astype(np.float32)
    else:
        num_labels, labels = 1, (2.0 * y - 1.0).astype(np.float32)
    nf.manual_seed(0)
    with pytest.warns(UserWarning, match="newly initialized"):
        model = BertForSequenceClassification.from_pretrained(MODEL, num_labels=num_labels)
    start, end = _fit_fixed_batch(model, {"input_ids": ids, "attention_mask": mask, "labels": labels})
    assert model.config.problem_type == problem
    assert end < 0.8 * start, (start, end)


@pytest.mark.slow
def test_token_classification_head_trains_on_minilm():
    ids, mask, _ = _real_batch()
    labels = np.where(mask == 1, ids % 3, -100)  # a per-token tag; padding ignored
    nf.manual_seed(0)
    with pytest.warns(UserWarning, match="newly initialized"):
        model = BertForTokenClassification.from_pretrained(MODEL, num_labels=3)
    start, end = _fit_fixed_batch(model, {"input_ids": ids, "attention_mask": mask, "labels": labels}, lr=1e-3)
    assert end < 0.8 * start, (start, end)


@pytest.mark.slow
def test_user_module_on_mean_pooled_minilm_trains():
    """The seed programs' model: mean-pooled MiniLM + Linear(384, 1) + sigmoid, backbone frozen except its
    last layer; BCE on probabilities."""
    ids, mask, y = _real_batch()
    nf.manual_seed(0)
    model = mean_pooled_classifier(sigmoid=True)
    model.freeze()
    model.unfreeze(["backbone.encoder.layer.5.*", "head.*"])
    layer5 = sum(p.numel() for p in model.backbone.encoder.layer[5].parameters())
    assert count_parameters(model) == layer5 + 384 + 1
    frozen = {n: v for n, v in _snapshot(model).items() if not n.startswith(("backbone.encoder.layer.5.", "head."))}
    target = nf.tensor(y.astype(np.float32)[:, None])

    def loss():
        return F.binary_cross_entropy(model(ids, mask), target)

    model.eval()
    with nf.no_grad():
        start = loss().item()
    opt = nf.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    for _ in range(4):
        opt.zero_grad()
        loss().backward()
        opt.step()
    model.eval()
    with nf.no_grad():
        end = loss().item()
    assert end < 0.8 * start, (start, end)
    after = _snapshot(model)
    for n, v in frozen.items():
        np.testing.assert_array_equal(after[n], v, err_msg=n)


def test_gradient_accumulation_equals_big_batch_bert():
    ids, mask, y = _ids(n=8, seed=1)

    def one_step(batch_size, accumulation):
        model = _tiny(dropout=0.0)
        trainer = Trainer(model, nf.optim.SGD(model.parameters(), lr=1.0),
                          lambda out, t: F.cross_entropy(out.logits, t), (ids, mask, y), batch_size=batch_size,
                          gradient_accumulation_steps=accumulation, shuffle=False, seed=0)
        before = _snapshot(model)
        trainer.train(max_steps=1)
        return {n: before[n] - v for n, v in _snapshot(model).items()}  # = the gradient (SGD, lr 1)

    big = one_step(8, 1)
    for bs, acc in ((4, 2), (2, 4)):
        small = one_step(bs, acc)
        for n in big:
            np.testing.assert_allclose(small[n], big[n], rtol=0, atol=1e-6, err_msg=f"{n} ({bs} x {acc})")
    assert max(np.abs(g).max() for g in big.values()) > 1e-3  # the step did something
