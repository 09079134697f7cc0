"""Every string shortcut of ``Module.compile`` is resolved here.

Optimizers (Keras' default learning rates; other hyperparameters are PyTorch's defaults):
    ``"adam"`` Adam(lr=1e-3), ``"adamw"`` AdamW(lr=1e-3), ``"sgd"`` SGD(lr=1e-2), ``"rmsprop"`` RMSprop(lr=1e-3),
    ``"adagrad"`` Adagrad(lr=1e-3). Also accepted: an ``Optimizer`` instance, or a callable ``params -> Optimizer``
    such as ``functools.partial(nf.optim.SGD, lr=0.1, momentum=0.9)``.

Losses (a callable ``loss(y_pred, y_true) -> scalar Tensor`` is also accepted, e.g. ``nn.CrossEntropyLoss()``):
    ``"binary_crossentropy"`` / ``"bce"``: probabilities, as in Keras (model ends in a sigmoid);
    ``"bce_with_logits"`` / ``"binary_crossentropy_from_logits"``: raw scores;
    ``"sparse_categorical_crossentropy"``: **logits** (deviation from Keras, whose default is probabilities: models
    here end in ``nn.Linear`` as in PyTorch, so this equals ``nn.CrossEntropyLoss``); for probabilities pass
    ``losses.SparseCategoricalCrossentropy(from_logits=False)`` or ``"sparse_categorical_crossentropy_from_probs"``;
    ``"categorical_crossentropy"``: one-hot targets, **logits** likewise
    (``"categorical_crossentropy_from_probs"`` for probabilities);
    ``"mse"``, ``"mae"``, ``"huber"`` (and their long Keras names).

Metrics (or any ``nnforge.metrics.Metric``):
    ``"accuracy"``/``"acc"`` (thresholds binary outputs at 0.5, or at 0 when the loss takes logits),
    ``"precision"``, ``"recall"``, ``"f1"`` (``average="binary"`` with a binary loss, else ``"macro"``),
    ``"auc"``/``"roc_auc"``, ``"perplexity"``, ``"mse"``, ``"mae"``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import metrics as M
from .. import optim
from . import losses as L

__all__ = ["LOSSES", "METRICS", "OPTIMIZERS", "get_loss", "get_metric", "get_optimizer"]

OPTIMIZERS: dict[str, tuple] = {
    "adam": (optim.Adam, 1e-3),
    "adamw": (optim.AdamW, 1e-3),
    "sgd": (optim.SGD, 1e-2),
    "rmsprop": (optim.RMSprop, 1e-3),
    "adagrad": (optim.Adagrad, 1e-3),
}

LOSSES: dict[str, Callable[[], L.Loss]] = {
    "binary_crossentropy": L.BinaryCrossentropy,
    "bce": L.BinaryCrossentropy,
    "bce_with_logits": lambda: L.BinaryCrossentropy(from_logits=True),
    "binary_crossentropy_from_logits": lambda: L.BinaryCrossentropy(from_logits=True),
    "sparse_categorical_crossentropy": lambda: L.SparseCategoricalCrossentropy(from_logits=True),
    "sparse_categorical_crossentropy_from_probs": L.SparseCategoricalCrossentropy,
    "categorical_crossentropy": lambda: L.CategoricalCrossentropy(from_logits=True),
    "categorical_crossentropy_from_probs": L.CategoricalCrossentropy,
    "mse": L.MeanSquaredError,
    "mean_squared_error": L.MeanSquaredError,
    "mae": L.MeanAbsoluteError,
    "mean_absolute_error": L.MeanAbsoluteError,
    "huber": L.Huber,
}


def _binary(loss: Any) -> bool:
    return isinstance(loss, L.BinaryCrossentropy)


def _threshold(loss: Any) -> float:
    return 0.0 if getattr(loss, "from_logits", False) and _binary(loss) else 0.5


METRICS: dict[str, Callable[[Any], M.Metric]] = {
    "accuracy": lambda loss: M.Accuracy(threshold=_threshold(loss)),
    "acc": lambda loss: M.Accuracy(threshold=_threshold(loss), name="acc"),
    "precision": lambda loss: M.Precision("binary" if _binary(loss) else "macro", threshold=_threshold(loss)),
    "recall": lambda loss: M.Recall("binary" if _binary(loss) else "macro", threshold=_threshold(loss)),
    "f1": lambda loss: M.F1("binary" if _binary(loss) else "macro", threshold=_threshold(loss)),
    "auc": lambda loss: M.RocAuc(),
    "roc_auc": lambda loss: M.RocAuc(name="roc_auc"),
    "perplexity": lambda loss: M.Perplexity(),
    "mse": lambda loss: M.MeanSquaredError(),
    "mae": lambda loss: M.MeanAbsoluteError(),
}


def _unknown(kind: str, name: str, table: dict) -> ValueError:
    return ValueError(f"compile: unknown {kind} {name!r}; expected one of {sorted(table)} or an object")


def get_optimizer(identifier: Any, params: Any) -> optim.Optimizer:
    """An ``Optimizer`` over ``params`` from a name, an instance (returned as is) or a factory."""
    if isinstance(identifier, optim.Optimizer):
        return identifier
    if isinstance(identifier, str):
        key = identifier.lower()
        if key not in OPTIMIZERS:
            raise _unknown("optimizer", identifier, OPTIMIZERS)
        cls, lr = OPTIMIZERS[key]
        return cls(params, lr=lr)
    if callable(identifier):
        opt = identifier(params)
        if not isinstance(opt, optim.Optimizer):
            raise TypeError(f"compile: optimizer factory returned {type(opt).__name__}, expected an Optimizer")
        return opt
    raise TypeError(f"compile: optimizer must be a name, an Optimizer or a factory, got {type(identifier).__name__}")


def get_loss(identifier: Any) -> Any:
    """A callable ``loss(y_pred, y_true)`` from a name or a callable (returned as is); ``None`` stays ``None``
    (the model's own ``output.loss`` is then used)."""
    if identifier is None or (callable(identifier) and not isinstance(identifier, str)):
        return identifier
    if isinstance(identifier, str):
        key = identifier.lower()
        if key not in LOSSES:
            raise _unknown("loss", identifier, LOSSES)
        return LOSSES[key]()
    raise TypeError(f"compile: loss must be a name or a callable, got {type(identifier).__name__}")


def get_metric(identifier: Any, loss: Any = None) -> M.Metric:
    """A streaming ``Metric`` from a name (configured to fit ``loss``) or an instance (returned as is)."""
    if isinstance(identifier, M.Metric):
        return identifier
    if isinstance(identifier, str):
        key = identifier.lower()
        if key not in METRICS:
            raise _unknown("metric", identifier, METRICS)
        return METRICS[key](loss)
    raise TypeError(f"compile: metrics must be names or nnforge.metrics.Metric objects, got "
                    f"{type(identifier).__name__}")
