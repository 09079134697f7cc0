"""Keras-style training callbacks: small pluggable objects called at fixed points of a training loop.

A loop (``Module.fit`` or ``nnforge.train.Trainer``) calls the hooks of a :class:`CallbackList`; ``logs`` are dicts of
Python floats (``loss``, metric names, ``val_*``, ``lr``). A callback stops training by setting
``self.model.stop_training = True``; the loop checks it after each batch and each epoch.
"""
from __future__ import annotations

import csv
import io
import math
import os
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from ..distributed import is_main_process

__all__ = [
    "CSVLogger",
    "Callback",
    "CallbackList",
    "EarlyStopping",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "ProgressBar",
    "ReduceLROnPlateau",
    "TensorBoard",
    "TerminateOnNaN",
]


class Callback:
    """Base class: override the hooks you need. ``self.model`` and ``self.params`` (epochs, steps, verbose) are set
    by the loop before ``on_train_begin``.

    Example::

        class PrintLoss(Callback):
            def on_epoch_end(self, epoch, logs=None):
                print(epoch, logs["loss"])

    ``main_process_only = True`` (progress bars, loggers, checkpoint writers): in distributed training the
    callback runs on rank 0 only.
    """

    main_process_only = False

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = dict(params)

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_batch_begin(self, batch, logs=None):
        pass

    def on_train_batch_end(self, batch, logs=None):
        pass

    def on_test_begin(self, logs=None):
        pass

    def on_test_end(self, logs=None):
        pass

    def on_test_batch_begin(self, batch, logs=None):
        pass

    def on_test_batch_end(self, batch, logs=None):
        pass

    def on_predict_begin(self, logs=None):
        pass

    def on_predict_end(self, logs=None):
        pass

    def on_predict_batch_begin(self, batch, logs=None):
        pass

    def on_predict_batch_end(self, batch, logs=None):
        pass


_HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_train_batch_begin",
          "on_train_batch_end", "on_test_begin", "on_test_end", "on_test_batch_begin", "on_test_batch_end",
          "on_predict_begin", "on_predict_end", "on_predict_batch_begin", "on_predict_batch_end")


class CallbackList(Callback):
    """Fans every hook out to a list of callbacks, in order.

    Args:
        callbacks: iterable of :class:`Callback` (or ``None``).
        model: passed to each callback's ``set_model`` when given.
        params: passed to each callback's ``set_params`` when given.
    """

    def __init__(self, callbacks=None, model=None, params=None):
        super().__init__()
        self.callbacks = list(callbacks or [])
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"CallbackList: expected Callback instances, got {type(cb).__name__}")
        if model is not None:
            self.set_model(model)
        if params is not None:
            self.set_params(params)

    def append(self, callback):
        self.callbacks.append(callback)
        if self.model is not None:
            callback.set_model(self.model)
        if self.params:
            callback.set_params(self.params)

    def set_model(self, model):
        super().set_model(model)
        for cb in self.callbacks:
            cb.set_model(model)

    def set_params(self, params):
        super().set_params(params)
        for cb in self.callbacks:
            cb.set_params(params)

    def __iter__(self):
        return iter(self.callbacks)

    def __len__(self):
        return len(self.callbacks)


def _fan_out(name):
    def hook(self, *args, **kwargs):
        main = is_main_process()
        for cb in self.callbacks:
            if main or not cb.main_process_only:
                getattr(cb, name)(*args, **kwargs)
    hook.__name__ = name
    hook.__doc__ = f"Call ``{name}`` on every callback."
    return hook


for _name in _HOOKS:
    setattr(CallbackList, _name, _fan_out(_name))
del _name


# -- helpers -------------------------------------------------------------------------------------------------
_MAX_WORDS = ("acc", "auc", "f1", "precision", "recall")


def _monitor_op(name: str, monitor: str, mode: str, min_delta: float) -> tuple:
    """(is_improvement(current, best), initial best) for ``mode`` "min" | "max" | "auto" (max for accuracy-like)."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{name}: mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        mode = "max" if any(w in monitor.removeprefix("val_") for w in _MAX_WORDS) else "min"
    delta = abs(min_delta)
    if mode == "max":
        return (lambda cur, best: cur > best + delta), -math.inf
    return (lambda cur, best: cur < best - delta), math.inf


def _optimizer(callback: Callback) -> Any:
    opt = getattr(callback.model, "optimizer", None)
    if opt is None:
        raise RuntimeError(f"{type(callback).__name__}: the model has no optimizer; call model.compile(...) first "
                           f"(or set model.optimizer)")
    return opt


def _get_weights(model: Any) -> dict:
    """A detached copy of every state-dict entry (parameters and buffers)."""
    return {k: np.array(v._backend.to_numpy(v.data), copy=True) for k, v in model.state_dict().items()}


def _fmt_logs(logs: dict) -> str:
    return " - ".join(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}" for k, v in logs.items())


def _fmt_time(seconds: float) -> str:
    if seconds >= 3600:
        return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"
    if seconds >= 60:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
    return f"{seconds:.1f}s"


# -- callbacks -------------------------------------------------------------------------------------------------
class ProgressBar(Callback):
    """Progress of training: on a terminal, a bar redrawn in place (``\r``) with loss, metrics, throughput and
    ETA; elsewhere (logs, CI, pipes), a plain line every ``log_interval`` seconds and one per epoch.

    Args:
        stream: where to write (default: ``sys.stdout`` at each write).
        tty: force bar (``True``) or plain-line (``False``) mode; default: ``stream.isatty()``.
        log_interval: seconds between plain lines (``0``: a line per batch).
        refresh: seconds between bar redraws.
        width: characters of the bar.

    ``Module.fit(verbose=1)`` adds one; ``verbose=2`` gives one line per epoch.
    """

    main_process_only = True

    def __init__(self, stream: Any = None, tty: bool | None = None, log_interval: float = 10.0,
                 refresh: float = 0.1, width: int = 30) -> None:
        super().__init__()
        self.stream, self.tty, self.log_interval, self.refresh, self.width = stream, tty, log_interval, refresh, width
        self._training = False

    def _out(self) -> Any:
        return self.stream if self.stream is not None else sys.stdout

    def _is_tty(self) -> bool:
        if self.tty is not None:
            return self.tty
        isatty = getattr(self._out(), "isatty", None)
        return bool(isatty and isatty())

    def _write(self, text: str) -> None:
        out = self._out()
        out.write(text)
        out.flush()

    def on_train_begin(self, logs=None):
        self._training = True

    def on_train_end(self, logs=None):
        self._training = False

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._t0 = self._last = time.perf_counter()
        self._width_drawn = 0

    def _head(self) -> str:
        epochs = self.params.get("epochs")
        return f"Epoch {self._epoch + 1}/{epochs}" if epochs else f"Epoch {self._epoch + 1}"

    def _speed(self, done: int, elapsed: float) -> str:
        steps, samples = self.params.get("steps"), self.params.get("samples")
        if samples and steps:
            return f"{samples * done / steps / max(elapsed, 1e-9):.0f} samples/s"
        return f"{done / max(elapsed, 1e-9):.1f} it/s"

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        tty = self._is_tty()
        if now - self._last < (self.refresh if tty else self.log_interval):
            return
        self._last = now
        done, steps, elapsed = batch + 1, self.params.get("steps"), now - self._t0
        metrics = _fmt_logs(dict(logs or {}))
        eta = f" - ETA {_fmt_time(elapsed / done * (steps - done))}" if steps else ""
        speed = self._speed(done, elapsed)
        if tty:
            if steps:
                filled = int(self.width * done / steps)
                bar = "=" * max(filled - 1, 0) + (">" if filled < self.width else "=") + "." * (self.width - filled)
                line = f"{self._head()} {done}/{steps} [{bar}] {_fmt_time(elapsed)}{eta} - {speed} - {metrics}"
            else:
                line = f"{self._head()} {done} - {_fmt_time(elapsed)} - {speed} - {metrics}"
            pad = max(self._width_drawn - len(line), 0)
            self._width_drawn = len(line)
            self._write("\r" + line + " " * pad)
        else:
            where = f"step {done}/{steps}" if steps else f"step {done}"
            self._write(f"{self._head()} {where} - {speed}{eta} - {metrics}\n")

    def on_epoch_end(self, epoch, logs=None):
        elapsed = time.perf_counter() - self._t0
        steps = self.params.get("steps")
        line = f"{self._head()} {steps}/{steps}" if steps else self._head()
        line += f" - {_fmt_time(elapsed)} - {_fmt_logs(dict(logs or {}))}"
        if self._is_tty():
            pad = max(self._width_drawn - len(line), 0)
            self._write("\r" + line + " " * pad + "\n")
        else:
            self._write(line + "\n")

    def on_test_end(self, logs=None):
        if not self._training:  # a standalone evaluate(); inside fit the epoch line shows val_*
            self._write(f"Evaluate - {_fmt_logs(dict(logs or {}))}\n")


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs (Keras semantics).

    Args:
        monitor: log key, e.g. ``"val_loss"`` or ``"val_accuracy"``.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (max for accuracy/auc/f1/precision/recall).
        baseline: stop unless ``monitor`` beats it within ``patience`` epochs.
        restore_best_weights: at the end of training, load the weights of the best epoch.
        start_from_epoch: epochs to wait before monitoring.

    Example:
        >>> model.fit(x, y, validation_split=0.2, epochs=100, callbacks=[EarlyStopping(patience=3)])
    """

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0, verbose: int = 0,
                 mode: str = "auto", baseline: float | None = None, restore_best_weights: bool = False,
                 start_from_epoch: int = 0) -> None:
        super().__init__()
        self.monitor, self.min_delta, self.patience, self.verbose = monitor, min_delta, patience, verbose
        self.baseline, self.restore_best_weights, self.start_from_epoch = baseline, restore_best_weights, start_from_epoch
        self._better, self._init_best = _monitor_op("EarlyStopping", monitor, mode, min_delta)

    def on_train_begin(self, logs=None):
        self.wait, self.stopped_epoch, self.best_epoch = 0, 0, 0
        self.best, self.best_weights = self._init_best, None

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get(self.monitor)
        if current is None:
            raise KeyError(f"EarlyStopping: monitor {self.monitor!r} is not in the logs "
                           f"(available: {sorted(logs or {})})")
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = _get_weights(self.model), epoch
        self.wait += 1
        if self._better(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = _get_weights(self.model)
            if self.baseline is None or self._better(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.load_state_dict(self.best_weights)


class ModelCheckpoint(Callback):
    """Save the model's state dict (``nf.save``: safetensors, atomic) at the end of epochs.

    Args:
        filepath: may hold ``str.format`` fields: ``{epoch}`` (1-based) and any log key, e.g.
            ``"ckpt/model-{epoch:02d}-{val_loss:.3f}.safetensors"``.
        monitor, mode: what ``save_best_only`` compares (as in :class:`EarlyStopping`).
        save_best_only: save only when ``monitor`` improves (a fixed ``filepath`` then always holds the best).
        initial_value_threshold: the value to beat for the first save.

    Weights only (parameters and buffers); Keras' ``save_weights_only=False`` (whole-model pickles) does not
    exist here — resume whole runs with ``nnforge.train.Trainer``.
    """

    main_process_only = True

    def __init__(self, filepath: str | os.PathLike, monitor: str = "val_loss", verbose: int = 0,
                 save_best_only: bool = False, mode: str = "auto",
                 initial_value_threshold: float | None = None) -> None:
        super().__init__()
        self.filepath, self.monitor, self.verbose, self.save_best_only = os.fspath(filepath), monitor, verbose, save_best_only
        self._better, best = _monitor_op("ModelCheckpoint", monitor, mode, 0.0)
        self.best = best if initial_value_threshold is None else initial_value_threshold
        self.saved: list = []

    def on_epoch_end(self, epoch, logs=None):
        from ..serialization import save

        logs = dict(logs or {})
        path = self.filepath.format(epoch=epoch + 1, **logs)
        loss = logs.get("loss")
        if loss is not None and not math.isfinite(loss) or not all(
                bool(p._backend.xp.isfinite(p.data).all()) for p in self.model.parameters()):
            warnings.warn(f"ModelCheckpoint: epoch {epoch + 1}: the loss ({loss}) or the weights are not finite; "
                          f"not saving {path} (the files already saved keep the last good weights)",
                          RuntimeWarning, stacklevel=2)
            return
        if self.save_best_only:
            current = logs.get(self.monitor)
            if current is None:
                raise KeyError(f"ModelCheckpoint: monitor {self.monitor!r} is not in the logs (available: "
                               f"{sorted(logs)})")
            if not self._better(current, self.best):
                return
            if self.verbose:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best:.5g} to {current:.5g}, "
                      f"saving model to {path}")
            self.best = current
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        save(self.model.state_dict(), path)
        self.saved.append(path)


class CSVLogger(Callback):
    """Append one row of epoch logs (``epoch`` first, then sorted keys) per epoch to a CSV file.

    The file is rewritten atomically after each epoch (it holds one short row per epoch), so a crash never
    leaves a half-written row.

    Args:
        filename: the CSV path.
        separator: field separator.
        append: add to an existing file (no second header) instead of overwriting it.
    """

    main_process_only = True

    def __init__(self, filename: str | os.PathLike, separator: str = ",", append: bool = False) -> None:
        super().__init__()
        self.filename, self.sep, self.append = os.fspath(filename), separator, append
        self.keys: list | None = None
        self._text = ""

    def on_train_begin(self, logs=None):
        self.keys, self._text = None, ""
        if self.append and os.path.exists(self.filename) and os.path.getsize(self.filename) > 0:
            with open(self.filename, newline="") as f:
                self._text = f.read()
            if not self._text.endswith(("\n", "\r")):
                self._text += "\r\n"
            header = next(csv.reader(io.StringIO(self._text), delimiter=self.sep), None)
            self.keys = header[1:] if header else None

    def on_epoch_end(self, epoch, logs=None):
        from ..io.atomic import atomic_write_text

        logs = dict(logs or {})
        if self.keys is None:
            self.keys = sorted(logs)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=["epoch"] + self.keys, delimiter=self.sep, extrasaction="ignore",
                                restval="NA")
        if not self._text:
            writer.writeheader()
        writer.writerow({"epoch": epoch, **logs})
        self._text += buf.getvalue()
        atomic_write_text(self.filename, self._text)


class TensorBoard(Callback):
    """Scalars for TensorBoard (``tensorboard --logdir LOG_DIR``), laid out as Keras does: ``LOG_DIR/train``
    and ``LOG_DIR/validation`` runs with tags ``epoch_loss``, ``epoch_<metric>``, ``epoch_learning_rate``.

    Args:
        log_dir: the root directory.
        update_freq: ``"epoch"``, or ``"batch"`` / an int N to also write ``batch_<key>`` every N batches
            (step = global batch count).
    """

    main_process_only = True

    def __init__(self, log_dir: str | os.PathLike = "logs", update_freq: Any = "epoch") -> None:
        super().__init__()
        if update_freq not in ("epoch", "batch") and not (isinstance(update_freq, int) and update_freq > 0):
            raise ValueError(f"TensorBoard: update_freq must be 'epoch', 'batch' or a positive int, got {update_freq!r}")
        self.log_dir = os.fspath(log_dir)
        self.update_freq = 1 if update_freq == "batch" else update_freq
        self._writers: dict = {}

    def _writer(self, run: str) -> Any:
        from .tensorboard import EventFileWriter

        if run not in self._writers:
            self._writers[run] = EventFileWriter(os.path.join(self.log_dir, run))
        return self._writers[run]

    def on_train_begin(self, logs=None):
        self._step = 0

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self.update_freq != "epoch" and self._step % self.update_freq == 0:
            self._writer("train").add_scalars({f"batch_{k}": v for k, v in (logs or {}).items()}, self._step)

    def on_epoch_end(self, epoch, logs=None):
        train, val = {}, {}
        for k, v in (logs or {}).items():
            k = "learning_rate" if k == "lr" else k
            if k.startswith("val_"):
                val[f"epoch_{k[4:]}"] = v
            else:
                train[f"epoch_{k}"] = v
        for run, values in (("train", train), ("validation", val)):
            if values:
                w = self._writer(run)
                w.add_scalars(values, epoch)
                w.flush()

    def on_train_end(self, logs=None):
        for w in self._writers.values():
            w.close()
        self._writers = {}


class LearningRateScheduler(Callback):
    """Set the learning rate at the start of each epoch to ``schedule(epoch, lr)`` (or ``schedule(epoch)``);
    epochs are 0-based as in Keras. Every param group gets the new value."""

    def __init__(self, schedule: Callable, verbose: int = 0) -> None:
        super().__init__()
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch, logs=None):
        opt = _optimizer(self)
        lr = float(opt.param_groups[0]["lr"])
        try:
            new = self.schedule(epoch, lr)
        except TypeError:
            new = self.schedule(epoch)
        new = float(new)
        if not math.isfinite(new):
            raise ValueError(f"LearningRateScheduler: schedule returned {new} at epoch {epoch}")
        for group in opt.param_groups:
            group["lr"] = new
        if self.verbose:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {new:.6g}.")


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when ``monitor`` stalls for ``patience`` epochs (Keras semantics;
    the epoch-level ``nnforge.optim.lr_scheduler.ReduceLROnPlateau`` does the same for hand-written loops).

    Args:
        factor: new_lr = lr * factor (< 1).
        min_delta: the least change that counts as an improvement.
        cooldown: epochs to wait after a reduction before counting again.
        min_lr: lower bound.
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10, verbose: int = 0,
                 mode: str = "auto", min_delta: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0) -> None:
        super().__init__()
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau: factor must be < 1, got {factor}")
        self.monitor, self.factor, self.patience, self.verbose = monitor, factor, patience, verbose
        self.cooldown, self.min_lr = cooldown, min_lr
        self._better, self._init_best = _monitor_op("ReduceLROnPlateau", monitor, mode, min_delta)

    def on_train_begin(self, logs=None):
        self.best, self.wait, self.cooldown_counter = self._init_best, 0, 0

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get(self.monitor)
        if current is None:
            raise KeyError(f"ReduceLROnPlateau: monitor {self.monitor!r} is not in the logs "
                           f"(available: {sorted(logs or {})})")
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._better(current, self.best):
            self.best, self.wait = current, 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                opt = _optimizer(self)
                for group in opt.param_groups:
                    old = float(group["lr"])
                    if old > self.min_lr:
                        group["lr"] = max(old * self.factor, self.min_lr)
                if self.verbose:
                    print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to "
                          f"{opt.param_groups[0]['lr']:.6g}.")
                self.cooldown_counter, self.wait = self.cooldown, 0


class TerminateOnNaN(Callback):
    """Stop training as soon as a batch loss is NaN or infinite, printing (and keeping in ``self.message``)
    the epoch, the batch and the global step where it happened."""

    def __init__(self) -> None:
        super().__init__()
        self.message: str | None = None

    def on_train_begin(self, logs=None):
        # a resumed Trainer passes the step it starts from, so the message names the run's global step
        self._epoch, self._step, self.message = 0, int((logs or {}).get("global_step", 0)), None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            self.message = (f"TerminateOnNaN: invalid loss {loss} at epoch {self._epoch + 1}, batch {batch + 1} "
                            f"(global step {self._step}); terminating training")
            print(self.message)
            self.model.stop_training = True
