"""nnforge.metrics against scikit-learn: functions on whole arrays, and streaming over batches."""
import math

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

import nnforge as nf
from nnforge import metrics as M


def _batches(n, size):
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


@pytest.fixture
def multiclass():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 300)
    scores = rng.normal(size=(300, 5)) + 1.5 * np.eye(5)[y]
    return y, scores


def test_accuracy_labels_scores_and_one_hot(multiclass):
    y, s = multiclass
    pred = s.argmax(1)
    ref = skm.accuracy_score(y, pred)
    assert M.accuracy(y, pred) == pytest.approx(ref, abs=0)
    assert M.accuracy(y, s) == pytest.approx(ref, abs=0)  # scores -> argmax
    assert M.accuracy(np.eye(5)[y], s) == pytest.approx(ref, abs=0)  # one-hot targets
    assert M.accuracy(nf.tensor(y), nf.tensor(s.astype(np.float32))) == pytest.approx(ref, abs=0)
    probs = np.array([0.2, 0.7, 0.51, 0.49])
    assert M.accuracy([0, 1, 1, 1], probs) == 0.75
    assert M.accuracy([0, 1, 1, 1], probs[:, None]) == 0.75  # (N, 1) scores are thresholded, not argmaxed
    assert M.accuracy([0, 1, 1, 0], np.array([-1.0, 2.0, 0.1, -0.1]), threshold=0.0) == 1.0


@pytest.mark.parametrize("average", ["micro", "macro", "weighted", None])
@pytest.mark.parametrize("zero_division", [0.0, 1.0, np.nan])
def test_prf_multiclass_equals_sklearn(average, zero_division):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 6, 200)
    pred = rng.integers(0, 4, 200)  # classes 4, 5 never predicted -> precision 0/0
    pred[:3] = 7  # a class never true -> recall 0/0
    ours = M.precision_recall_f1(y, pred, average=average, zero_division=zero_division)
    ref = skm.precision_recall_fscore_support(y, pred, average=average, zero_division=zero_division)[:3]
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=1e-12, equal_nan=True)
    kw = {"average": average, "zero_division": zero_division}
    np.testing.assert_allclose(M.f1(y, pred, **kw), skm.f1_score(y, pred, **kw), equal_nan=True)
    np.testing.assert_allclose(M.precision(y, pred, **kw), skm.precision_score(y, pred, **kw), equal_nan=True)
    np.testing.assert_allclose(M.recall(y, pred, **kw), skm.recall_score(y, pred, **kw), equal_nan=True)


def test_prf_binary_and_edge_cases():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 100)
    p = rng.random(100)
    pred = (p > 0.5).astype(int)
    for fn, ref in ((M.precision, skm.precision_score), (M.recall, skm.recall_score), (M.f1, skm.f1_score)):
        assert fn(y, pred) == pytest.approx(ref(y, pred), abs=1e-15)
        assert fn(y, p) == pytest.approx(ref(y, pred), abs=1e-15)  # probabilities thresholded at 0.5
        assert fn(y, pred, pos_label=0) == pytest.approx(ref(y, pred, pos_label=0), abs=1e-15)
    zeros = np.zeros(10, int)  # positive class never predicted and never true
    for zd in (0.0, 1.0):
        assert M.f1(zeros, zeros, zero_division=zd) == skm.f1_score(zeros, zeros, zero_division=zd)
        assert M.precision([0, 1, 1], [0, 0, 0], zero_division=zd) == \
            skm.precision_score([0, 1, 1], [0, 0, 0], zero_division=zd)
    with pytest.raises(ValueError, match="multiclass"):
        M.f1([0, 1, 2], [0, 1, 1])
    with pytest.raises(ValueError, match="pos_label"):
        M.f1([2, 3], [2, 3])
    with pytest.raises(ValueError, match="average"):
        M.f1([0, 1], [0, 1], average="mean")
    assert M.f1(["a", "b", "a"], ["a", "b", "b"], average="macro") == \
        pytest.approx(skm.f1_score(["a", "b", "a"], ["a", "b", "b"], average="macro"))


def test_confusion_matrix_equals_sklearn(multiclass):
    y, s = multiclass
    pred = s.argmax(1)
    pred[pred == 3] = 2  # class 3 never predicted
    np.testing.assert_array_equal(M.confusion_matrix(y, pred), skm.confusion_matrix(y, pred))
    labels = [4, 0, 2, 9]
    np.testing.assert_array_equal(M.confusion_matrix(y, pred, labels=labels),
                                  skm.confusion_matrix(y, pred, labels=labels))
    for norm in ("true", "pred", "all"):
        np.testing.assert_allclose(M.confusion_matrix(y, pred, normalize=norm),
                                   skm.confusion_matrix(y, pred, normalize=norm), rtol=1e-12)


def test_roc_auc_equals_sklearn(multiclass):
    rng = np.random.default_rng(3)
    yb = rng.integers(0, 2, 400)
    s = rng.normal(size=400) + yb
    assert M.roc_auc(yb, s) == pytest.approx(skm.roc_auc_score(yb, s), abs=1e-12)
    coarse = np.round(s)  # many ties
    assert M.roc_auc(yb, coarse) == pytest.approx(skm.roc_auc_score(yb, coarse), abs=1e-12)
    two = np.stack([-s, s], 1)
    assert M.roc_auc(yb, two) == pytest.approx(skm.roc_auc_score(yb, s), abs=1e-12)
    y, sc = multiclass
    prob = np.exp(sc) / np.exp(sc).sum(1, keepdims=True)
    for avg in ("macro", "weighted"):
        assert M.roc_auc(y, prob, average=avg) == pytest.approx(
            skm.roc_auc_score(y, prob, multi_class="ovr", average=avg), abs=1e-12)
    with pytest.raises(ValueError, match="single class|one class"):
        M.roc_auc(np.ones(5), np.arange(5.0))


def test_regression_metrics_equal_sklearn():
    rng = np.random.default_rng(4)
    t, p = rng.normal(size=(50, 3)), rng.normal(size=(50, 3))
    assert M.mse(t, p) == pytest.approx(skm.mean_squared_error(t, p), rel=1e-12)
    assert M.mae(t, p) == pytest.approx(skm.mean_absolute_error(t, p), rel=1e-12)
    with pytest.raises(ValueError, match="mse"):
        M.mse(np.zeros(3), np.zeros(4))


def test_perplexity_matches_torch_cross_entropy():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(4, 7, 11)).astype(np.float32)
    t = rng.integers(0, 11, (4, 7))
    t[0, :3] = -100
    ce = torch.nn.functional.cross_entropy(torch.tensor(logits, dtype=torch.float64).reshape(-1, 11),
                                           torch.tensor(t).reshape(-1), ignore_index=-100)
    assert M.perplexity(t, logits) == pytest.approx(math.exp(ce.item()), rel=1e-10)
    stream = M.Perplexity()
    for i in range(4):
        stream.update(nf.tensor(logits[i]), nf.tensor(t[i]))
    assert stream.compute() == pytest.approx(math.exp(ce.item()), rel=1e-10)


@pytest.mark.parametrize("batch", [1, 7, 64, 1000])
def test_streaming_equals_all_at_once(multiclass, batch):
    y, s = multiclass
    pred = s.argmax(1)
    prob = np.exp(s) / np.exp(s).sum(1, keepdims=True)
    streams = {"acc": M.Accuracy(), "cm": M.ConfusionMatrix(), "f1": M.F1("macro"), "p": M.Precision("weighted"),
               "r": M.Recall("micro"), "auc": M.RocAuc(), "mse": M.MeanSquaredError(), "mae": M.MeanAbsoluteError()}
    for sl in _batches(len(y), batch):
        for k, m in streams.items():
            if k in ("mse", "mae"):
                m.update(nf.tensor(s[sl, 0]), nf.tensor(s[sl, 1]))
            elif k == "auc":
                m.update(nf.tensor(prob[sl]), nf.tensor(y[sl]))
            else:
                m.update(nf.tensor(s[sl].astype(np.float32)), nf.tensor(y[sl]))
    assert streams["acc"].compute() == skm.accuracy_score(y, pred)
    np.testing.assert_array_equal(streams["cm"].compute(), skm.confusion_matrix(y, pred))
    assert streams["f1"].compute() == pytest.approx(skm.f1_score(y, pred, average="macro"), abs=1e-15)
    assert streams["p"].compute() == pytest.approx(skm.precision_score(y, pred, average="weighted"), abs=1e-15)
    assert streams["r"].compute() == pytest.approx(skm.recall_score(y, pred, average="micro"), abs=1e-15)
    assert streams["auc"].compute() == pytest.approx(skm.roc_auc_score(y, prob, multi_class="ovr"), abs=1e-12)
    assert streams["mse"].compute() == pytest.approx(skm.mean_squared_error(s[:, 1], s[:, 0]), rel=1e-12)
    assert streams["mae"].compute() == pytest.approx(skm.mean_absolute_error(s[:, 1], s[:, 0]), rel=1e-12)


def test_streaming_class_seen_late_and_reset():
    """A class that first appears in a later batch (and one never predicted) still matches sklearn."""
    y = np.array([0, 0, 1, 1, 2, 3, 3])
    pred = np.array([0, 1, 1, 1, 2, 2, 2])
    f1 = M.F1("macro")
    f1.update(pred[:2], y[:2])
    f1.update(pred[2:], y[2:])
    assert f1.compute() == pytest.approx(skm.f1_score(y, pred, average="macro"), abs=1e-15)
    binary = M.F1()
    binary.update(np.array([0.9, 0.1]), np.array([1, 0]))
    binary.update(np.array([0.2]), np.array([1]))
    assert binary.compute() == pytest.approx(skm.f1_score([1, 0, 1], [1, 0, 0]))
    f1.reset()
    f1.update(np.array([1, 1]), np.array([1, 1]))
    assert f1.compute() == 1.0
    with pytest.raises(ValueError, match="non-negative"):
        M.ConfusionMatrix().update(np.array([-1]), np.array([0]))
