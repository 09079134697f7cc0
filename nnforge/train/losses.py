"""Keras-named losses for ``Module.compile``.

Each is called like a torch loss, ``loss(y_pred, y_true)`` (Keras calls ``loss(y_true, y_pred)``), and returns
the mean over the batch as a scalar Tensor. ``from_logits`` defaults to ``False`` as in Keras: the model ends in
a sigmoid/softmax. The string shortcuts resolved by ``compile`` are listed in ``nnforge.train.shortcuts``.

Example:
    >>> model.compile("adam", loss=SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
"""
from __future__ import annotations

from typing import Any

from ..nn import functional as F
from ..tensor import Tensor

__all__ = [
    "BinaryCrossentropy",
    "CategoricalCrossentropy",
    "Huber",
    "Loss",
    "MeanAbsoluteError",
    "MeanSquaredError",
    "SparseCategoricalCrossentropy",
]


def _like(y_true: Any, y_pred: Tensor, dtype: Any = None) -> Tensor:
    """``y_true`` as a tensor of ``y_pred``'s shape (``(N,)`` targets against ``(N, 1)`` outputs)."""
    t = y_true if isinstance(y_true, Tensor) else Tensor(y_true)
    if dtype is not None and t.dtype != dtype:
        t = t.to(dtype)
    if tuple(t.shape) != tuple(y_pred.shape) and t.numel() == y_pred.numel():
        t = t.reshape(y_pred.shape)
    return t


class Loss:
    """Base class; subclasses implement ``call(y_pred, y_true) -> scalar Tensor``."""

    name = "loss"
    from_logits = False

    def __call__(self, y_pred: Tensor, y_true: Any) -> Tensor:
        return self.call(y_pred, y_true)

    def call(self, y_pred: Tensor, y_true: Any) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(from_logits={self.from_logits})"


class BinaryCrossentropy(Loss):
    """BCE for 0/1 targets. ``from_logits=False``: ``y_pred`` are probabilities in [0, 1] (after a sigmoid);
    ``from_logits=True``: raw scores (stable ``binary_cross_entropy_with_logits``)."""

    name = "binary_crossentropy"

    def __init__(self, from_logits: bool = False) -> None:
        self.from_logits = from_logits

    def call(self, y_pred: Tensor, y_true: Any) -> Tensor:
        t = _like(y_true, y_pred, y_pred.dtype)
        if self.from_logits:
            return F.binary_cross_entropy_with_logits(y_pred, t)
        lo, hi = float(y_pred.data.min()), float(y_pred.data.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"binary_crossentropy: predictions span [{lo:.4g}, {hi:.4g}] but must be probabilities "
                             f"in [0, 1]; end the model with a sigmoid or use loss='bce_with_logits'")
        return F.binary_cross_entropy(y_pred, t)


class SparseCategoricalCrossentropy(Loss):
    """Cross entropy at integer class targets ``(N,)`` for ``y_pred`` ``(N, C)``: probabilities
    (``from_logits=False``, after a softmax) or logits (``from_logits=True``, like ``nn.CrossEntropyLoss``)."""

    name = "sparse_categorical_crossentropy"

    def __init__(self, from_logits: bool = False, ignore_index: int = -100) -> None:
        self.from_logits, self.ignore_index = from_logits, ignore_index

    def call(self, y_pred: Tensor, y_true: Any) -> Tensor:
        t = y_true if isinstance(y_true, Tensor) else Tensor(y_true)
        if t.dtype.kind != "i":
            t = t.long()
        if t.ndim == y_pred.ndim:  # (N, 1) labels
            t = t.reshape(t.shape[:-1])
        if self.from_logits:
            return F.cross_entropy(y_pred, t, ignore_index=self.ignore_index)
        return F.nll_loss(y_pred.clamp(1e-7, 1.0).log(), t, ignore_index=self.ignore_index)


class CategoricalCrossentropy(Loss):
    """Cross entropy at one-hot (or probability) targets of ``y_pred``'s shape ``(N, C)``."""

    name = "categorical_crossentropy"

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0) -> None:
        self.from_logits, self.label_smoothing = from_logits, label_smoothing

    def call(self, y_pred: Tensor, y_true: Any) -> Tensor:
        t = _like(y_true, y_pred, y_pred.dtype)
        if self.from_logits:
            return F.cross_entropy(y_pred, t, label_smoothing=self.label_smoothing)
        if self.label_smoothing:
            t = t * (1.0 - self.label_smoothing) + self.label_smoothing / y_pred.shape[-1]
        return -(t * y_pred.clamp(1e-7, 1.0).log()).sum(dim=-1).mean()


class MeanSquaredError(Loss):
    name = "mse"

    def call(self, y_pred: Tensor, y_true: Any) -> Tensor:
        return F.mse_loss(y_pred, _like(y_true, y_pred, y_pred.dtype))


class MeanAbsoluteError(Loss):
    name = "mae"

    def call(self, y_pred: Tensor, y_true: Any) -> Tensor:
        return F.l1_loss(y_pred, _like(y_true, y_pred, y_pred.dtype))


class Huber(Loss):
    """0.5 d^2 where |d| <= delta, else delta (|d| - 0.5 delta) (Keras Huber; = ``smooth_l1_loss * delta``)."""

    name = "huber"

    def __init__(self, delta: float = 1.0) -> None:
        self.delta = delta

    def call(self, y_pred: Tensor, y_true: Any) -> Tensor:
        return F.smooth_l1_loss(y_pred, _like(y_true, y_pred, y_pred.dtype), beta=self.delta) * self.delta
