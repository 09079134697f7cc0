"""Keras-style ``compile / fit / evaluate / predict`` as methods of every ``nn.Module``.

``fit`` only orchestrates: it batches the data, calls ``train_step`` per batch, runs the callbacks and collects
logs. Override ``train_step(data)`` (or ``test_step`` / ``predict_step``) in a Module subclass to customise one
step; ``compute_loss`` and ``compute_metrics`` are the building blocks. String shortcuts ("adam",
"sparse_categorical_crossentropy", "accuracy", ...) are resolved in ``nnforge.train.shortcuts``.

Data (``x``) may be a NumPy array or Tensor, a tuple of them (a model with several positional inputs), a dict
of them (keyword inputs such as ``input_ids``/``attention_mask``), a ``Dataset`` or a ``DataLoader``. Datasets
and loaders yield ``(x, y)`` pairs, or dicts whose ``"labels"`` entry is the target. Float64 arrays are cast to
float32 once (Keras casts to floatx likewise).

Example:
    >>> model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    >>> model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    >>> history = model.fit(x_train, y_train, epochs=10, validation_split=0.1)
    >>> loss, acc = model.evaluate(x_test, y_test)
    >>> probs = model.predict(x_test)            # NumPy, (N, 10)
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..autograd import no_grad
from ..creation import from_numpy
from ..distributed.collectives import _reduce_floats
from ..metrics import Mean
from ..nn.modules.module import Module
from ..random import _rng
from ..tensor import Tensor
from ..utils.data import DataLoader, Dataset, IterableDataset, Subset
from .callbacks import CallbackList, ProgressBar
from .history import History
from .shortcuts import get_loss, get_metric, get_optimizer
from .trainer import _maybe_ddp

__all__ = [
    "compile",
    "compute_loss",
    "compute_metrics",
    "evaluate",
    "fit",
    "predict",
    "predict_step",
    "test_step",
    "train_step",
]


# -- data ------------------------------------------------------------------------------------------------------
def _host(a: Any, what: str) -> Any:
    """Arrays (or containers of them) on the host, float64 -> float32, ready to be sliced per batch."""
    if isinstance(a, dict):
        return {k: _host(v, f"{what}[{k!r}]") for k, v in a.items()}
    if isinstance(a, tuple) or (isinstance(a, list) and a and isinstance(a[0], (Tensor, np.ndarray))):
        return tuple(_host(v, f"{what}[{i}]") for i, v in enumerate(a))
    arr = a._backend.to_numpy(a.data) if isinstance(a, Tensor) else np.asarray(a)
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    if arr.ndim == 0:
        raise ValueError(f"{what}: expected an array with a batch dimension, got a scalar")
    return arr


def _leaves(a: Any) -> list:
    if isinstance(a, dict):
        return [x for v in a.values() for x in _leaves(v)]
    if isinstance(a, (tuple, list)):
        return [x for v in a for x in _leaves(v)]
    return [a]


def _take(a: Any, idx: Any) -> Any:
    """The batch ``idx`` (a slice or an index array) of every array in ``a``, as Tensors."""
    if isinstance(a, dict):
        return {k: _take(v, idx) for k, v in a.items()}
    if isinstance(a, tuple):
        return tuple(_take(v, idx) for v in a)
    return from_numpy(a[idx])


class _ArrayData:
    """In-memory arrays batched by slicing (shuffled by one permutation per epoch from the global generator)."""

    def __init__(self, x: Any, y: Any, batch_size: int, shuffle: bool, what: str) -> None:
        self.x, self.y = _host(x, f"{what}: x"), (None if y is None else _host(y, f"{what}: y"))
        sizes = {(k, int(v.shape[0])) for k, v in _named_leaves(self.x, "x") + _named_leaves(self.y, "y")}
        if len({n for _, n in sizes}) != 1:
            raise ValueError(f"{what}: inputs and targets must have the same number of samples, got "
                             f"{dict(sorted(sizes))}")
        self.samples = next(iter(sizes))[1]
        self.batch_size, self.shuffle = batch_size, shuffle
        self.steps = -(-self.samples // batch_size)
        self.shard = None  # (world size, rank) once distributed

    def distribute(self) -> None:
        """Iterate only this rank's shard of each epoch's order (rank 0's permutation, DistributedSampler rule)."""
        from ..distributed import get_rank, get_world_size

        self.shard = (get_world_size(), get_rank())
        per_rank = -(-self.samples // self.shard[0])
        self.steps = -(-per_rank // self.batch_size)

    def split(self, fraction: float) -> tuple:
        """(first 1-fraction, last fraction) of the samples, before any shuffling (as Keras does)."""
        n_val = math.floor(self.samples * fraction)
        if not 0 < n_val < self.samples:
            raise ValueError(f"fit: validation_split={fraction} leaves {n_val} of {self.samples} samples for "
                             f"validation; expected a fraction in (0, 1) giving at least one sample to each side")
        cut = self.samples - n_val
        first, last = slice(0, cut), slice(cut, None)
        train = _ArrayData(_slice(self.x, first), None if self.y is None else _slice(self.y, first),
                           self.batch_size, self.shuffle, "fit")
        val = _ArrayData(_slice(self.x, last), None if self.y is None else _slice(self.y, last),
                         self.batch_size, False, "fit")
        return train, val

    def __iter__(self):
        n, bs = self.samples, self.batch_size
        order = _rng(None).permutation(n) if self.shuffle else None
        if self.shard is not None:
            from ..distributed.collectives import _broadcast_array
            from ..utils.data.distributed_sampler import shard_indices

            order = np.arange(n) if order is None else _broadcast_array(order.astype(np.int64))
            order = np.asarray(shard_indices(order.tolist(), *self.shard), dtype=np.int64)
            n = len(order)
        for start in range(0, n, bs):
            idx = slice(start, min(start + bs, n)) if order is None else order[start:start + bs]
            xb = _take(self.x, idx)
            yield (xb,) if self.y is None else (xb, _take(self.y, idx))


def _named_leaves(a: Any, name: str) -> list:
    if a is None:
        return []
    if isinstance(a, dict):
        return [x for k, v in a.items() for x in _named_leaves(v, f"{name}[{k!r}]")]
    if isinstance(a, tuple):
        return [x for i, v in enumerate(a) for x in _named_leaves(v, f"{name}[{i}]")]
    return [(name, a)]


def _slice(a: Any, s: slice) -> Any:
    if isinstance(a, dict):
        return {k: _slice(v, s) for k, v in a.items()}
    if isinstance(a, tuple):
        return tuple(_slice(v, s) for v in a)
    return a[s]


class _LoaderData:
    """A DataLoader (or any re-iterable of batches), iterated once per epoch."""

    def __init__(self, loader: Any, owned: bool = False) -> None:
        self.loader, self.owned = loader, owned  # owned: made by fit from a Dataset
        self.steps = _len(loader)
        ds = getattr(loader, "dataset", None)
        self.samples = _len(ds) if ds is not None and not getattr(loader, "drop_last", False) else None
        self.epoch = 0

    def distribute(self) -> None:
        """Give this rank its DistributedSampler shard (for a loader fit made from a Dataset; a DataLoader
        given by the user is iterated as it is: give it a DistributedSampler)."""
        from ..distributed.collectives import _broadcast_int
        from ..utils.data import DistributedSampler, RandomSampler

        if not self.owned or isinstance(self.loader.dataset, IterableDataset):
            return
        ds, shuffle = self.loader.dataset, isinstance(self.loader.sampler, RandomSampler)
        seed = _broadcast_int(int(_rng(None).integers(2 ** 31)) if shuffle else 0)
        self.loader = DataLoader(ds, batch_size=self.loader.batch_size,
                                 sampler=DistributedSampler(ds, shuffle=shuffle, seed=seed))
        self.steps, self.samples = len(self.loader), len(self.loader.sampler)

    def __iter__(self):
        sampler = getattr(self.loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):  # a DistributedSampler: a new order each epoch
            sampler.set_epoch(self.epoch)
        self.epoch += 1
        return iter(self.loader)


def _len(obj: Any) -> int | None:
    try:
        return len(obj)
    except TypeError:
        return None


def _adapt(x: Any, y: Any, batch_size: int | None, shuffle: bool, what: str) -> Any:
    if isinstance(x, DataLoader) or (not isinstance(x, (Dataset, Tensor, np.ndarray, dict, tuple, list))
                                     and hasattr(x, "__iter__")):
        if y is not None or batch_size is not None:
            raise ValueError(f"{what}: with a DataLoader (or an iterable of batches) as x, give neither y nor "
                             f"batch_size (the loader yields (x, y) batches of its own size)")
        return _LoaderData(x)
    if isinstance(x, Dataset):
        if y is not None:
            raise ValueError(f"{what}: with a Dataset as x, y must be None (samples are (x, y) pairs or dicts)")
        shuffle = shuffle and not isinstance(x, IterableDataset)
        return _LoaderData(DataLoader(x, batch_size=batch_size or 32, shuffle=shuffle), owned=True)
    if x is None:
        raise ValueError(f"{what}: x is required")
    return _ArrayData(x, y, batch_size or 32, shuffle, what)


def _validation(validation_data: Any, batch_size: int | None) -> Any:
    if isinstance(validation_data, (DataLoader, Dataset)):
        return _adapt(validation_data, None, None if isinstance(validation_data, DataLoader) else batch_size,
                      False, "fit(validation_data)")
    if isinstance(validation_data, (tuple, list)) and len(validation_data) == 2:
        return _adapt(validation_data[0], validation_data[1], batch_size, False, "fit(validation_data)")
    raise ValueError("fit: validation_data must be (x_val, y_val), a Dataset or a DataLoader, got "
                     f"{type(validation_data).__name__}" + (f" of length {len(validation_data)}"
                                                              if isinstance(validation_data, (tuple, list)) else ""))


# -- one batch ---------------------------------------------------------------------------------------------------
def _unpack(model: Module, data: Any) -> tuple:
    """(x, y) of a batch: ``(x, y)`` / ``[x, y]`` / ``(x,)`` / a dict (``"labels"`` is y when a loss is compiled)."""
    if isinstance(data, (tuple, list)):
        if len(data) == 2:
            return data[0], data[1]
        if len(data) == 1:
            return data[0], None
        raise ValueError(f"{type(model).__name__}: a batch must be (x, y) or (x,), got a sequence of {len(data)} "
                         f"items (sample weights are not supported; pass several inputs as a tuple x)")
    if isinstance(data, dict) and "labels" in data and getattr(model, "compiled_loss", None) is not None:
        x = dict(data)
        return x, x.pop("labels")
    return data, None


def _call(model: Module, x: Any) -> Any:
    if isinstance(x, dict):
        return model(**x)
    if isinstance(x, tuple):
        return model(*x)
    return model(x)


def _output(out: Any) -> Any:
    """The prediction Tensor of a model output: the tensor, ``.logits`` of HF-style outputs, or item 0."""
    if isinstance(out, Tensor):
        return out
    if isinstance(out, dict) and "logits" in out:
        return out["logits"]
    if getattr(out, "logits", None) is not None:
        return out.logits
    if isinstance(out, (tuple, list)) and out:
        return out[0]
    return out


def _batch_len(data: Any) -> int:
    for leaf in _leaves(data):
        shape = getattr(leaf, "shape", None)
        if shape:
            return int(shape[0])
    return 1


def _require_compiled(model: Module, what: str) -> None:
    if not hasattr(model, "compiled_metrics"):
        raise RuntimeError(f"{type(model).__name__}.{what}: call model.compile(optimizer, loss, metrics) first")


# -- methods ---------------------------------------------------------------------------------------------------
def compile(self: Module, optimizer: Any = "rmsprop", loss: Any = None, metrics: Any = None) -> None:
    """Configure training: the optimizer, the loss and the metrics to report.

    Args:
        optimizer: a name (``"adam"``, ``"adamw"``, ``"sgd"``, ``"rmsprop"``, ``"adagrad"``; Keras' default
            learning rates), an ``Optimizer`` or a factory ``params -> Optimizer``. A name builds the optimizer over
            the parameters that require grad now (freeze before compiling).
        loss: a name (see ``nnforge.train.shortcuts``: ``"binary_crossentropy"`` takes probabilities,
            ``"sparse_categorical_crossentropy"`` takes **logits**), a callable ``loss(y_pred, y_true)`` such as
            ``nn.CrossEntropyLoss()``, or ``None`` to use the model's own ``output.loss`` (HF models given labels).
        metrics: names (``"accuracy"``, ``"f1"``, ``"precision"``, ``"recall"``, ``"auc"``, ``"mse"``, ...) or
            ``nnforge.metrics.Metric`` objects.

    Example:
        >>> model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy", "f1"])
    """
    opt = get_optimizer(optimizer, [p for p in self.parameters() if p.requires_grad])
    loss_fn = get_loss(loss)
    ms = [get_metric(m, loss_fn) for m in ([metrics] if isinstance(metrics, str) else (metrics or []))]
    names = ["loss"] + [m.name for m in ms]
    if len(set(names)) != len(names):
        raise ValueError(f"compile: metric names must be unique (and not 'loss'), got {names[1:]}")
    for name, value in (("optimizer", opt), ("compiled_loss", loss_fn), ("compiled_metrics", ms),
                        ("stop_training", False)):
        object.__setattr__(self, name, value)  # plain attributes: a loss Module is not registered as a submodule


def compute_loss(self: Module, x: Any = None, y: Any = None, y_pred: Any = None) -> Tensor:
    """The compiled loss of ``y_pred`` (the raw model output) against ``y``; with ``loss=None``, ``y_pred.loss``."""
    loss_fn = self.compiled_loss
    if loss_fn is None:
        loss = getattr(y_pred, "loss", None)
        if loss is None and isinstance(y_pred, dict):
            loss = y_pred.get("loss")
        if loss is None:
            raise ValueError(f"{type(self).__name__}: compile(loss=None) needs a model output with a .loss "
                             f"(e.g. pass labels in the input dict); got {type(y_pred).__name__}")
        return loss
    if y is None:
        raise ValueError(f"{type(self).__name__}: the compiled loss needs targets; give y (or (x, y) batches)")
    return loss_fn(_output(y_pred), y)


def compute_metrics(self: Module, x: Any, y: Any, y_pred: Any) -> None:
    """Update every compiled metric with this batch (targets: ``y``, else ``x["labels"]``)."""
    if y is None and isinstance(x, dict):
        y = x.get("labels")
    if y is None:
        return
    pred = _output(y_pred)
    for m in self.compiled_metrics:
        m.update(pred, y)


def train_step(self: Module, data: Any) -> dict:
    """One optimisation step on a batch: forward, loss, backward, optimizer step, metric update.

    Returns a dict of scalars for this batch (``{"loss": ...}``); ``fit`` averages every entry over the epoch
    (weighted by batch size) and adds the compiled metrics' running values. Override it for custom steps
    (use ``self.optimizer``, ``self.compute_loss``, ``self.compute_metrics``).
    """
    x, y = _unpack(self, data)
    y_pred = _call(self, x)
    loss = self.compute_loss(x, y, y_pred)
    opt = self.optimizer
    opt.zero_grad()
    loss.backward()
    opt.step()
    self.compute_metrics(x, y, y_pred)
    return {"loss": loss}


def test_step(self: Module, data: Any) -> dict:
    """Loss and metric update on a batch without gradients; returns ``{"loss": ...}``."""
    x, y = _unpack(self, data)
    with no_grad():
        y_pred = _call(self, x)
        loss = self.compute_loss(x, y, y_pred) if (y is not None or self.compiled_loss is None) else None
    self.compute_metrics(x, y, y_pred)
    return {} if loss is None else {"loss": loss}


def predict_step(self: Module, data: Any) -> Any:
    """The model's prediction for a batch (``.logits`` of HF-style outputs), without gradients."""
    x, _ = _unpack(self, data)
    with no_grad():
        return _output(_call(self, x))


class _Tracker:
    """Batch-size-weighted means of what a step returns, plus the compiled metrics' values."""

    def __init__(self, metrics: list) -> None:
        self.metrics, self.means = metrics, {}
        for m in metrics:
            m.reset()

    def update(self, out: dict, n: int) -> None:
        for k, v in out.items():
            mean = self.means.get(k)
            if mean is None:
                mean = self.means[k] = Mean(k)
            mean.update(v.item() if isinstance(v, Tensor) else float(v), n)

    def logs(self) -> dict:
        logs = {k: m.compute() for k, m in self.means.items()}
        for m in self.metrics:
            v = m.compute()
            if np.ndim(v) == 0:
                logs[m.name] = float(v)
        return logs


def _callbacks(model: Module, callbacks: Any, verbose: int, params: dict, history: History | None = None) -> Any:
    cbs = list(callbacks.callbacks if isinstance(callbacks, CallbackList) else callbacks or [])
    if history is not None:
        cbs.append(history)
    if verbose and not any(isinstance(c, ProgressBar) for c in cbs):
        cbs.append(ProgressBar(tty=False, log_interval=math.inf) if verbose == 2 else ProgressBar())
    return CallbackList(cbs, model=model, params=params)


def fit(self: Module, x: Any = None, y: Any = None, batch_size: int | None = None, epochs: int = 1,
        verbose: int = 1, callbacks: Any = None, validation_split: float = 0.0, validation_data: Any = None,
        shuffle: bool = True, initial_epoch: int = 0) -> History:
    """Train for ``epochs`` epochs (Keras ``Model.fit``); returns a ``History``.

    Args:
        x, y: training data (see the module docstring); ``y`` only with arrays/tensors.
        batch_size: samples per step (default 32; not with a DataLoader).
        verbose: 0 silent, 1 progress bar (plain lines when stdout is not a terminal), 2 one line per epoch.
        callbacks: ``nnforge.train.callbacks`` objects.
        validation_split: fraction of the array data, taken from the end before shuffling, held out for
            validation (Keras semantics); Datasets are split the same way.
        validation_data: ``(x_val, y_val)``, a Dataset or a DataLoader; overrides ``validation_split``.
        shuffle: reshuffle array/Dataset training data every epoch (drawn from ``nf.manual_seed``'s generator).
            Distributed (``nnforge.distributed`` initialised with several ranks): the model is wrapped in
            ``DistributedDataParallel`` for the call, arrays and Datasets are sharded per rank (rank 0's order,
            ``DistributedSampler``: each step sees ``ranks * batch_size`` samples; a DataLoader you pass is used
            as it is, give it a ``DistributedSampler``), epoch logs are averaged over ranks, only rank 0 shows
            progress, and validation runs on the whole set on every rank.
        initial_epoch: epoch to start from (for resuming: epochs run ``initial_epoch .. epochs-1``).

    Returns:
        ``History``: ``.history[key]`` is a per-epoch list for ``loss``, each metric, ``val_*`` and ``lr``.
    """
    _require_compiled(self, "fit")
    if validation_data is None and validation_split and isinstance(x, Dataset) and not isinstance(x, IterableDataset):
        n = len(x)
        cut = n - math.floor(n * validation_split)
        x, validation_data = Subset(x, range(cut)), Subset(x, range(cut, n))
    train = _adapt(x, y, batch_size, shuffle, "fit")
    val = None
    if validation_data is not None:
        val = _validation(validation_data, batch_size)
    elif validation_split:
        if not isinstance(train, _ArrayData):
            raise ValueError("fit: validation_split needs arrays, tensors or a map-style Dataset; with a "
                             "DataLoader pass validation_data")
        train, val = train.split(validation_split)
    history = History()
    params = {"epochs": epochs, "steps": train.steps, "verbose": verbose, "samples": train.samples}
    ddp = _maybe_ddp(self)
    if ddp is not None:
        train.distribute()
        params.update(steps=train.steps, samples=train.samples)
    cbs = _callbacks(self, callbacks, verbose, params, history)
    was_training = self.training
    object.__setattr__(self, "stop_training", False)
    cbs.on_train_begin()
    epoch_logs: dict = {}
    try:
        for epoch in range(initial_epoch, epochs):
            self.train()
            tracker = _Tracker(self.compiled_metrics)
            cbs.on_epoch_begin(epoch)
            for step, batch in enumerate(train):
                cbs.on_train_batch_begin(step)
                if ddp is not None:
                    ddp._pre_forward()
                tracker.update(self.train_step(batch), _batch_len(batch))
                cbs.on_train_batch_end(step, tracker.logs())
                if ddp is not None and not self.stop_training:  # any rank stopping stops all of them
                    object.__setattr__(self, "stop_training", _reduce_floats([float(self.stop_training)], "max")[0] > 0)
                if self.stop_training:
                    break
            epoch_logs = tracker.logs()
            if ddp is not None:  # the epoch's training logs averaged over ranks (equal shards)
                epoch_logs = dict(zip(epoch_logs, _reduce_floats(list(epoch_logs.values()), "avg")))
            if val is not None:
                val_logs = _run_evaluate(self, val, cbs)
                epoch_logs.update({f"val_{k}": v for k, v in val_logs.items()})
            epoch_logs["lr"] = float(self.optimizer.param_groups[0]["lr"])
            cbs.on_epoch_end(epoch, epoch_logs)
            if self.stop_training:
                break
    finally:
        self.train(was_training)
        if ddp is not None and ddp is not self:
            ddp.remove_hooks()
    cbs.on_train_end(epoch_logs)
    return history


def _run_evaluate(model: Module, data: Any, cbs: Any) -> dict:
    was_training = model.training
    model.eval()
    tracker = _Tracker(model.compiled_metrics)
    cbs.on_test_begin()
    try:
        with no_grad():
            for step, batch in enumerate(data):
                cbs.on_test_batch_begin(step)
                tracker.update(model.test_step(batch), _batch_len(batch))
                cbs.on_test_batch_end(step, tracker.logs())
    finally:
        model.train(was_training)
    logs = tracker.logs()
    cbs.on_test_end(logs)
    return logs


def evaluate(self: Module, x: Any = None, y: Any = None, batch_size: int | None = None, verbose: int = 0,
             callbacks: Any = None, return_dict: bool = False) -> Any:
    """Loss and metrics on data (Keras ``Model.evaluate``), in eval mode and without gradients.

    Returns:
        the loss when no metrics are compiled, else ``[loss, metric1, ...]`` (compile order); a dict with
        ``return_dict=True``. Deviation: quiet by default (``verbose=0``).
    """
    _require_compiled(self, "evaluate")
    data = _adapt(x, y, batch_size, False, "evaluate")
    params = {"epochs": 1, "steps": data.steps, "verbose": verbose, "samples": data.samples}
    logs = _run_evaluate(self, data, _callbacks(self, callbacks, verbose, params))
    if return_dict:
        return logs
    values = [logs[k] for k in (["loss"] if "loss" in logs else []) + [m.name for m in self.compiled_metrics]
              if k in logs]
    return values[0] if len(values) == 1 else values


def predict(self: Module, x: Any, batch_size: int | None = None, verbose: int = 0, callbacks: Any = None) -> Any:
    """Predictions for ``x`` computed in batches, in eval mode, concatenated into NumPy arrays (Keras
    ``Model.predict``); tuple/dict outputs give a tuple/dict of arrays. Deviation: quiet by default.

    Example:
        >>> labels = model.predict(x_test).argmax(1)
    """
    data = _adapt(x, None, batch_size, False, "predict")
    cbs = _callbacks(self, callbacks, 0, {"epochs": 1, "steps": data.steps, "verbose": verbose})
    was_training = self.training
    self.eval()
    outs = []
    cbs.on_predict_begin()
    try:
        with no_grad():
            for step, batch in enumerate(data):
                cbs.on_predict_batch_begin(step)
                outs.append(_to_numpy(self.predict_step(batch)))
                cbs.on_predict_batch_end(step, {})
    finally:
        self.train(was_training)
    cbs.on_predict_end()
    if not outs:
        raise ValueError("predict: x holds no samples")
    return _concat(outs)


def _to_numpy(out: Any) -> Any:
    if isinstance(out, Tensor):
        return out._backend.to_numpy(out.data)
    if isinstance(out, dict):
        return {k: _to_numpy(v) for k, v in out.items()}
    if isinstance(out, (tuple, list)):
        return tuple(_to_numpy(v) for v in out)
    return np.asarray(out)


def _concat(outs: list) -> Any:
    first = outs[0]
    if isinstance(first, dict):
        return {k: _concat([o[k] for o in outs]) for k in first}
    if isinstance(first, tuple):
        return tuple(_concat([o[i] for o in outs]) for i in range(len(first)))
    return np.concatenate(outs, axis=0)


for _fn in (compile, fit, evaluate, predict, train_step, test_step, predict_step, compute_loss, compute_metrics):
    setattr(Module, _fn.__name__, _fn)
del _fn
