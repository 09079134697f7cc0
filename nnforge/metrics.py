"""Evaluation metrics: functions on whole arrays and streaming ``Metric`` objects that accumulate over batches.

Functions follow scikit-learn's names, argument order ``(y_true, y_pred)`` and results (``zero_division``
included); they accept NumPy arrays, nnforge tensors or lists. Streaming metrics follow torchmetrics'
order: ``update(preds, targets)`` once per batch, ``compute()`` for the value over everything seen (equal to
the function on the concatenated data), ``reset()`` to start over. ``name`` is the key used in training logs.

Predictions may be labels or scores; scores are turned into labels as Keras does: ``(N, C)`` scores against
``(N,)`` targets take the argmax, ``(N, C)`` against one-hot ``(N, C)`` targets compare argmaxes, and float
``(N,)`` / ``(N, 1)`` scores are thresholded (``> threshold``; use ``threshold=0`` for logits).

Example:
    >>> from nnforge import metrics
    >>> metrics.f1([0, 1, 1, 2], [0, 2, 1, 2], average="macro")
    >>> acc = metrics.Accuracy()
    >>> for xb, yb in loader: acc.update(model(xb), yb)
    >>> acc.compute()
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .tensor import Tensor

__all__ = [
    "F1",
    "Accuracy",
    "ConfusionMatrix",
    "Mean",
    "MeanAbsoluteError",
    "MeanSquaredError",
    "Metric",
    "Perplexity",
    "Precision",
    "Recall",
    "RocAuc",
    "accuracy",
    "confusion_matrix",
    "f1",
    "mae",
    "mse",
    "perplexity",
    "precision",
    "precision_recall_f1",
    "recall",
    "roc_auc",
]

_AVERAGES = ("binary", "micro", "macro", "weighted", None)


def _np(x: Any) -> np.ndarray:
    if isinstance(x, Tensor):
        return x._backend.to_numpy(x.data)
    if hasattr(x, "logits") and not isinstance(x, np.ndarray):
        return _np(x.logits)
    return np.asarray(x)


def _to_labels(y_true: Any, y_pred: Any, threshold: float = 0.5, what: str = "metric") -> tuple:
    """(true labels, predicted labels), both 1-D, from labels, one-hot targets, class scores or binary scores."""
    t, p = _np(y_true), _np(y_pred)
    if p.ndim == t.ndim + 1 and p.shape[:-1] == t.shape and p.shape[-1] > 1:  # (N, C) scores vs (N,) labels
        p = p.argmax(-1)
    elif p.ndim >= 2 and p.shape == t.shape and p.shape[-1] > 1:  # one-hot / probability targets
        p, t = p.argmax(-1), t.argmax(-1)
    elif p.dtype.kind == "f":  # binary scores
        p = (p > threshold).astype(np.int64)
    t, p = t.reshape(-1), p.reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"{what}: y_true has {t.size} labels but y_pred gives {p.size} "
                         f"(shapes {_np(y_true).shape} and {_np(y_pred).shape})")
    if t.dtype.kind == "f" and np.all(t == np.round(t)):
        t = t.astype(np.int64)
    return t, p


# -- functions ------------------------------------------------------------------------------------------
def accuracy(y_true: Any, y_pred: Any, threshold: float = 0.5) -> float:
    """Fraction of correct predictions (sklearn.metrics.accuracy_score)."""
    t, p = _to_labels(y_true, y_pred, threshold, "accuracy")
    return float(np.mean(t == p)) if t.size else 0.0


def confusion_matrix(y_true: Any, y_pred: Any, labels: Any = None, normalize: str | None = None,
                     threshold: float = 0.5) -> np.ndarray:
    """``C[i, j]`` = samples of true class ``labels[i]`` predicted as ``labels[j]`` (sklearn semantics).

    Args:
        labels: the classes, in order (default: sorted union of both inputs).
        normalize: ``None``, ``"true"`` (rows sum to 1), ``"pred"`` (columns) or ``"all"``.
    """
    t, p = _to_labels(y_true, y_pred, threshold, "confusion_matrix")
    labels = np.unique(np.concatenate([t, p])) if labels is None else np.asarray(labels)
    cm = _counts(t, p, labels)
    return _normalize(cm, normalize)


def _counts(t: np.ndarray, p: np.ndarray, labels: np.ndarray) -> np.ndarray:
    k = len(labels)
    order = np.argsort(labels, kind="stable")
    sl = labels[order]
    ti, pi = np.searchsorted(sl, t).clip(0, max(k - 1, 0)), np.searchsorted(sl, p).clip(0, max(k - 1, 0))
    keep = (sl[ti] == t) & (sl[pi] == p) if k else np.zeros(t.shape, bool)
    flat = order[ti[keep]] * k + order[pi[keep]]  # sorted position -> position in ``labels``
    return np.bincount(flat, minlength=k * k).reshape(k, k).astype(np.int64)


def _normalize(cm: np.ndarray, normalize: str | None) -> np.ndarray:
    if normalize is None:
        return cm
    if normalize not in ("true", "pred", "all"):
        raise ValueError(f"confusion_matrix: normalize must be None, 'true', 'pred' or 'all', got {normalize!r}")
    with np.errstate(all="ignore"):
        if normalize == "true":
            out = cm / cm.sum(axis=1, keepdims=True)
        elif normalize == "pred":
            out = cm / cm.sum(axis=0, keepdims=True)
        else:
            out = cm / cm.sum()
    return np.nan_to_num(out)


def precision_recall_f1(y_true: Any, y_pred: Any, average: str | None = "binary", labels: Any = None,
                        pos_label: Any = 1, zero_division: float = 0.0, threshold: float = 0.5) -> tuple:
    """``(precision, recall, f1)`` like sklearn's ``precision_recall_fscore_support`` (without support).

    Args:
        average: ``"binary"`` (scores of ``pos_label``; the targets must have at most two classes),
            ``"micro"`` (global counts), ``"macro"`` (unweighted class mean), ``"weighted"`` (mean weighted
            by true support) or ``None`` (per-class arrays, in ``labels`` order).
        labels: classes to include (default: sorted union of both inputs).
        zero_division: value where a ratio is 0/0 (sklearn's default ``"warn"`` gives 0, without the
            warning here); ``nan`` makes the averages skip those classes, as in sklearn.
    """
    t, p = _to_labels(y_true, y_pred, threshold, "precision_recall_f1")
    present = np.unique(np.concatenate([t, p]))
    labels_all = present if labels is None else np.asarray(labels)
    cm = _counts(t, p, labels_all)
    return _prf(cm, labels_all, present, average, pos_label, zero_division)


def _prf(cm: np.ndarray, labels: np.ndarray, present: np.ndarray, average: Any, pos_label: Any,
         zero_division: float) -> tuple:
    if average not in _AVERAGES:
        raise ValueError(f"average must be one of {_AVERAGES}, got {average!r}")
    tp = np.diag(cm).astype(np.float64)
    pred_sum = cm.sum(axis=0).astype(np.float64)
    true_sum = cm.sum(axis=1).astype(np.float64)
    if average == "binary":
        if len(present) > 2:
            raise ValueError(f"Target is multiclass (classes {present.tolist()}) but average='binary'; "
                             f"choose average='micro', 'macro', 'weighted' or None")
        if pos_label not in present.tolist() and len(present) >= 2:
            raise ValueError(f"pos_label={pos_label!r} is not a valid label; it should be one of {present.tolist()}")
        hit = np.flatnonzero(labels == pos_label)
        if hit.size:
            i = hit[0]
            tp, pred_sum, true_sum = tp[i:i + 1], pred_sum[i:i + 1], true_sum[i:i + 1]
        else:
            tp = pred_sum = true_sum = np.zeros(1)
    elif average == "micro":
        tp, pred_sum, true_sum = tp.sum(keepdims=True), pred_sum.sum(keepdims=True), true_sum.sum(keepdims=True)
    prec = _divide(tp, pred_sum, zero_division)
    rec = _divide(tp, true_sum, zero_division)
    f = _divide(2 * tp, true_sum + pred_sum, zero_division)
    if average is None:
        return prec, rec, f
    weights = true_sum if average == "weighted" else None
    return tuple(_nanaverage(a, weights) for a in (prec, rec, f))


def _divide(num: np.ndarray, den: np.ndarray, zero_division: float) -> np.ndarray:
    out = num / np.where(den == 0, 1.0, den)
    out[den == 0] = zero_division
    return out


def _nanaverage(a: np.ndarray, weights: np.ndarray | None) -> float:
    mask = np.isnan(a)
    if a.size == 0 or mask.all():
        return float("nan")
    a = a[~mask]
    if weights is not None and weights[~mask].sum() > 0:
        return float(np.average(a, weights=weights[~mask]))
    return float(a.mean())


def precision(y_true: Any, y_pred: Any, average: str | None = "binary", labels: Any = None, pos_label: Any = 1,
              zero_division: float = 0.0, threshold: float = 0.5) -> Any:
    """tp / (tp + fp) (sklearn.metrics.precision_score); see :func:`precision_recall_f1` for the arguments."""
    return precision_recall_f1(y_true, y_pred, average, labels, pos_label, zero_division, threshold)[0]


def recall(y_true: Any, y_pred: Any, average: str | None = "binary", labels: Any = None, pos_label: Any = 1,
           zero_division: float = 0.0, threshold: float = 0.5) -> Any:
    """tp / (tp + fn) (sklearn.metrics.recall_score); see :func:`precision_recall_f1` for the arguments."""
    return precision_recall_f1(y_true, y_pred, average, labels, pos_label, zero_division, threshold)[1]


def f1(y_true: Any, y_pred: Any, average: str | None = "binary", labels: Any = None, pos_label: Any = 1,
       zero_division: float = 0.0, threshold: float = 0.5) -> Any:
    """2 tp / (2 tp + fp + fn) (sklearn.metrics.f1_score); see :func:`precision_recall_f1` for the arguments."""
    return precision_recall_f1(y_true, y_pred, average, labels, pos_label, zero_division, threshold)[2]


def roc_auc(y_true: Any, y_score: Any, average: str = "macro") -> float:
    """Area under the ROC curve (sklearn.metrics.roc_auc_score).

    Binary: ``y_score`` (N,) scores of the positive class (or (N, 2), whose column 1 is used). Multi-class:
    ``y_score`` (N, C) and one-vs-rest AUCs averaged ``"macro"`` or ``"weighted"`` by prevalence
    (sklearn's ``multi_class="ovr"``). Ties get half credit, as in the trapezoidal ROC.
    """
    t, s = _np(y_true).reshape(-1), _np(y_score)
    if s.ndim == 2 and s.shape[1] == 2 and len(np.unique(t)) <= 2:
        s = s[:, 1]
    if s.ndim == 1 or (s.ndim == 2 and s.shape[1] == 1):
        classes = np.unique(t)
        if len(classes) != 2:
            raise ValueError(f"roc_auc: only one class ({classes.tolist()}) in y_true; ROC AUC is undefined")
        return _binary_auc(t == classes[1], s.reshape(-1))
    if average not in ("macro", "weighted"):
        raise ValueError(f"roc_auc: average must be 'macro' or 'weighted' for multi-class, got {average!r}")
    n_classes = s.shape[1]
    aucs = np.array([_binary_auc(t == c, s[:, c]) for c in range(n_classes)])
    if average == "weighted":
        return float(np.average(aucs, weights=np.bincount(t.astype(np.int64), minlength=n_classes)))
    return float(aucs.mean())


def _binary_auc(pos: np.ndarray, score: np.ndarray) -> float:
    """Mann-Whitney U / (n_pos n_neg), with average ranks for ties."""
    n_pos = int(pos.sum())
    n_neg = pos.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("roc_auc: y_true holds a single class; ROC AUC is undefined")
    order = np.argsort(score, kind="mergesort")
    s = score[order]
    ranks = np.empty(s.size, np.float64)
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    ends = np.r_[starts[1:], s.size]
    avg = (starts + ends + 1) / 2.0  # 1-based average rank of each tie group
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def perplexity(y_true: Any, logits: Any, ignore_index: int = -100) -> float:
    """exp(mean token cross entropy) of ``logits`` (..., V) at integer targets (...); ``ignore_index`` skipped."""
    nll, n = _nll_sum(y_true, logits, ignore_index)
    return math.exp(nll / n) if n else float("nan")


def _nll_sum(y_true: Any, logits: Any, ignore_index: int) -> tuple:
    t, z = _np(y_true).reshape(-1), _np(logits)
    z = z.reshape(-1, z.shape[-1]).astype(np.float64)
    if z.shape[0] != t.size:
        raise ValueError(f"perplexity: logits {_np(logits).shape} do not match targets {_np(y_true).shape}")
    keep = t != ignore_index
    z, t = z[keep], t[keep].astype(np.int64)
    m = z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z - m).sum(axis=1)) + m[:, 0]
    return float((lse - z[np.arange(t.size), t]).sum()), int(t.size)


def mse(y_true: Any, y_pred: Any) -> float:
    """Mean squared error over all elements (sklearn.metrics.mean_squared_error)."""
    d = _diff(y_true, y_pred, "mse")
    return float(np.mean(d * d))


def mae(y_true: Any, y_pred: Any) -> float:
    """Mean absolute error over all elements (sklearn.metrics.mean_absolute_error)."""
    return float(np.mean(np.abs(_diff(y_true, y_pred, "mae"))))


def _diff(y_true: Any, y_pred: Any, what: str) -> np.ndarray:
    t, p = _np(y_true), _np(y_pred)
    if t.size != p.size:
        raise ValueError(f"{what}: y_true {t.shape} and y_pred {p.shape} differ in size")
    return p.reshape(-1).astype(np.float64) - t.reshape(-1).astype(np.float64)


# -- streaming metrics ------------------------------------------------------------------------------------
class Metric:
    """Accumulates a metric over batches: ``update(preds, targets)``, ``compute() -> float``, ``reset()``.

    ``name`` is the key under which training loops log the value (``val_`` + name for validation).
    """

    name = "metric"
    higher_is_better = True

    def __init__(self, name: str | None = None) -> None:
        if name is not None:
            self.name = name
        self.reset()

    def reset(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def update(self, preds: Any, targets: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def compute(self) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class Mean(Metric):
    """Weighted running mean of scalars (``update(value, weight=1)``); used for losses."""

    name = "mean"
    higher_is_better = False

    def reset(self) -> None:
        self.total, self.count = 0.0, 0.0

    def update(self, value: Any, weight: float = 1.0) -> None:
        self.total += float(value) * weight
        self.count += weight

    def compute(self) -> float:
        return self.total / self.count if self.count else float("nan")


class Accuracy(Metric):
    """Streaming :func:`accuracy`."""

    name = "accuracy"

    def __init__(self, threshold: float = 0.5, name: str | None = None) -> None:
        self.threshold = threshold
        super().__init__(name)

    def reset(self) -> None:
        self.correct, self.total = 0, 0

    def update(self, preds: Any, targets: Any) -> None:
        t, p = _to_labels(targets, preds, self.threshold, self.name)
        self.correct += int(np.count_nonzero(t == p))
        self.total += t.size

    def compute(self) -> float:
        return self.correct / self.total if self.total else 0.0


class ConfusionMatrix(Metric):
    """Streaming confusion matrix over non-negative integer labels; ``compute()`` returns the matrix over the
    classes seen (or ``0..num_classes-1``), equal to :func:`confusion_matrix` on all the data."""

    name = "confusion_matrix"

    def __init__(self, num_classes: int | None = None, threshold: float = 0.5, normalize: str | None = None,
                 name: str | None = None) -> None:
        self.num_classes, self.threshold, self.normalize = num_classes, threshold, normalize
        super().__init__(name)

    def reset(self) -> None:
        self._cm = np.zeros((self.num_classes or 0,) * 2, np.int64)

    def update(self, preds: Any, targets: Any) -> None:
        t, p = _to_labels(targets, preds, self.threshold, self.name)
        t, p = t.astype(np.int64), p.astype(np.int64)
        if t.size and min(t.min(), p.min()) < 0:
            raise ValueError(f"{type(self).__name__}: streaming metrics need non-negative integer labels")
        k = max(self._cm.shape[0], int(max(t.max(initial=-1), p.max(initial=-1))) + 1)
        if k > self._cm.shape[0]:
            grown = np.zeros((k, k), np.int64)
            grown[:self._cm.shape[0], :self._cm.shape[0]] = self._cm
            self._cm = grown
        self._cm += np.bincount(t * k + p, minlength=k * k).reshape(k, k)

    def _present(self) -> np.ndarray:
        """Label values present in targets or predictions (sklearn's ``unique_labels``)."""
        return np.flatnonzero((self._cm.sum(0) + self._cm.sum(1)) > 0)

    def compute(self) -> np.ndarray:
        if self.num_classes is not None:
            return _normalize(self._cm.copy(), self.normalize)
        idx = self._present()
        return _normalize(self._cm[np.ix_(idx, idx)], self.normalize)

    def plot(self, path: Any, class_names: Any = None, **kwargs: Any) -> Any:
        """Write the matrix as a PNG (see ``nnforge.train.plots.plot_confusion_matrix``)."""
        from .train.plots import plot_confusion_matrix
        return plot_confusion_matrix(self.compute(), path, class_names=class_names, **kwargs)


class _PRF(ConfusionMatrix):
    _which = 0

    def __init__(self, average: str | None = "binary", pos_label: int = 1, zero_division: float = 0.0,
                 threshold: float = 0.5, name: str | None = None) -> None:
        if average not in _AVERAGES:
            raise ValueError(f"{type(self).__name__}: average must be one of {_AVERAGES}, got {average!r}")
        self.average, self.pos_label, self.zero_division = average, pos_label, zero_division
        super().__init__(None, threshold, None, name)

    def compute(self) -> Any:
        present = self._present()
        cm = self._cm[np.ix_(present, present)]
        return _prf(cm, present, present, self.average, self.pos_label, self.zero_division)[self._which]


class Precision(_PRF):
    """Streaming :func:`precision`."""
    name, _which = "precision", 0


class Recall(_PRF):
    """Streaming :func:`recall`."""
    name, _which = "recall", 1


class F1(_PRF):
    """Streaming :func:`f1`."""
    name, _which = "f1", 2


class RocAuc(Metric):
    """Streaming :func:`roc_auc` (keeps every score: exact, memory grows with the data)."""

    name = "auc"

    def __init__(self, average: str = "macro", name: str | None = None) -> None:
        self.average = average
        super().__init__(name)

    def reset(self) -> None:
        self._t, self._s = [], []

    def update(self, preds: Any, targets: Any) -> None:
        s = _np(preds)
        self._s.append(s.reshape(len(s), -1) if s.ndim > 1 else s.reshape(-1, 1))
        self._t.append(_np(targets).reshape(-1))

    def compute(self) -> float:
        s = np.concatenate(self._s)
        return roc_auc(np.concatenate(self._t), s[:, 0] if s.shape[1] == 1 else s, self.average)


class Perplexity(Metric):
    """Streaming :func:`perplexity` (token-weighted over batches)."""

    name = "perplexity"
    higher_is_better = False

    def __init__(self, ignore_index: int = -100, name: str | None = None) -> None:
        self.ignore_index = ignore_index
        super().__init__(name)

    def reset(self) -> None:
        self.nll, self.count = 0.0, 0

    def update(self, preds: Any, targets: Any) -> None:
        nll, n = _nll_sum(targets, preds, self.ignore_index)
        self.nll += nll
        self.count += n

    def compute(self) -> float:
        return math.exp(self.nll / self.count) if self.count else float("nan")


class MeanSquaredError(Metric):
    """Streaming :func:`mse`."""

    name = "mse"
    higher_is_better = False

    def reset(self) -> None:
        self.total, self.count = 0.0, 0

    def _err(self, d: np.ndarray) -> np.ndarray:
        return d * d

    def update(self, preds: Any, targets: Any) -> None:
        d = _diff(targets, preds, self.name)
        self.total += float(self._err(d).sum())
        self.count += d.size

    def compute(self) -> float:
        return self.total / self.count if self.count else float("nan")


class MeanAbsoluteError(MeanSquaredError):
    """Streaming :func:`mae`."""

    name = "mae"

    def _err(self, d: np.ndarray) -> np.ndarray:
        return np.abs(d)
