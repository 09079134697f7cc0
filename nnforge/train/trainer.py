"""``Trainer``: a step-based training loop (Hugging Face ``Trainer`` style) with exact checkpoint/resume.

One optimizer step = ``gradient_accumulation_steps`` micro-batches of ``batch_size`` samples. A run that is
stopped (``max_steps``, a callback, a crash) and resumed from a checkpoint ends bit-identical to one that never
stopped: the checkpoint holds the weights and buffers, the optimizer and scheduler states, nnforge's global
generator (dropout), Python's ``random``, the data-order generator and the position in the epoch.
"""
from __future__ import annotations

import logging
import math
import random
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from ..autograd.grad_mode import no_grad
from ..distributed import barrier, get_rank, get_world_size, is_main_process
from ..distributed.collectives import _reduce_floats
from ..nn.utils import clip_grad_norm_
from ..optim.lr_scheduler import ReduceLROnPlateau
from ..random import Generator, get_rng_state, manual_seed, set_rng_state
from ..tensor import Tensor
from ..utils.data import DataLoader, Dataset, IterableDataset, TensorDataset
from ..utils.data.distributed_sampler import shard_indices
from . import checkpoint as ckpt
from .callbacks import CallbackList

__all__ = ["Trainer", "TrainerState"]

logger = logging.getLogger("nnforge.train")


@dataclass
class TrainerState:
    """Where a run stands; saved in every checkpoint as ``trainer_state.json``.

    ``batch_in_epoch`` counts the micro-batches of epoch ``epoch`` already consumed (always at the end of an
    accumulation window when saved: checkpoints are taken between optimizer steps, so no partial gradient is
    pending). ``data_state`` is the data-order generator's state at the start of the epoch; the epoch's
    permutation is drawn from it again on resume.
    """

    global_step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    data_state: dict = field(default_factory=dict)
    epoch_loss_sum: float = 0.0
    epoch_steps: int = 0
    loss_sum: float = 0.0
    losses_since_log: list = field(default_factory=list)
    log_history: list = field(default_factory=list)


class Trainer:
    """Train ``model`` on ``train_dataset`` with ``optimizer``, checkpointing to ``output_dir``.

    Args:
        model: an ``nn.Module``.
        optimizer: an ``nnforge.optim`` optimizer over the model's parameters.
        loss_fn: ``loss_fn(outputs, targets) -> 0-d Tensor``, or None for models that compute their own loss.
            How a batch is fed (override ``compute_loss(model, batch)`` for anything else):

            - ``(x1, ..., xk, y)`` (tuple/list, e.g. from a ``TensorDataset``): ``loss_fn(model(x1..xk), y)``;
              a 1-element batch or a bare tensor ``x``: ``loss_fn(model(x))``.
            - dict (Hugging Face style): without ``loss_fn``, ``model(**batch).loss`` (the model gets
              ``labels``); with ``loss_fn``, ``loss_fn(model(**rest), batch["labels"])``.
        train_dataset: a map-style ``Dataset`` (``__len__`` + ``__getitem__``), or a tuple of arrays/tensors
            (wrapped in a ``TensorDataset``).
        eval_dataset: evaluated every ``eval_steps`` optimizer steps and at the end of each epoch.
        batch_size: samples per micro-batch (training and evaluation).
        epochs: passes over the data (ignored when ``train(max_steps=...)`` is given, as in HF).
        output_dir: where ``checkpoint-<step>/`` directories go (see ``nnforge.train.checkpoint``); when set,
            a checkpoint is also written when training ends. Once a step's loss is NaN/Inf no checkpoint is
            written any more (a warning names the step), so the newest one holds the last good state; add
            ``TerminateOnNaN`` to stop there.
        save_steps: checkpoint every that many optimizer steps.
        save_total_limit: keep only the newest that many checkpoints (older ones are deleted after the new
            one is complete).
        seed: a fresh ``train()`` seeds nnforge's global generator and Python's ``random`` with it; the
            data order comes from a separate generator seeded with it too.
        callbacks: ``Callback`` objects (see ``nnforge.train.callbacks``); ``on_train_batch_*`` run once per
            optimizer step; epoch logs use Keras names (``loss``, ``val_loss``, ``val_<metric>``, ``lr``).
            A callback stops training by setting ``model.stop_training = True``.
        gradient_accumulation_steps: micro-batches per optimizer step. Each micro-batch loss is scaled by
            ``1/N`` so one step equals one step on an ``N`` times larger batch (for equal-sized micro-batches);
            the last window of an epoch may be shorter and is scaled by ``1/len(window)``.
        max_grad_norm: clip the gradients' global L2 norm (``clip_grad_norm_``) before each step.
        lr_scheduler: stepped after every optimizer step (``ReduceLROnPlateau``: after every evaluation with
            ``eval_loss``, or at epoch end with the training loss when there is no eval set).
        collate_fn: list of samples -> batch (default: ``default_collate``).
        metrics: names of ``nnforge.metrics`` functions (``"accuracy"``), callables ``fn(y_true, y_pred)
            -> float`` or ``nnforge.metrics.Metric`` objects, computed by ``evaluate`` on the concatenated
            targets and predictions (logits; ``outputs.logits`` for model outputs) of the eval set.
        eval_steps: evaluate every that many optimizer steps (besides each epoch end).
        logging_steps: append ``{"step", "epoch", "loss", "lr"}`` (mean loss since the last entry) to
            ``log_history`` and the ``nnforge.train`` logger every that many optimizer steps.
        shuffle: draw a new order of the training set each epoch.
        drop_last: drop the last incomplete micro-batch of each epoch.

    Distributed (``mpirun -n N``, after ``nnforge.distributed.init_process_group()``): the model is wrapped in
    ``DistributedDataParallel`` (unless it already is), each rank trains on its ``DistributedSampler``-style
    shard of each epoch's order (the same permutation on every rank, padded by wrapping to equal shards), so one
    step sees ``N * batch_size`` samples; gradient accumulation all-reduces once per step (``no_sync``); step
    losses are averaged over ranks; a callback's ``stop_training`` on any rank stops all ranks. Evaluation runs
    on the whole eval set on every rank. Only rank 0 logs, shows progress bars and writes checkpoints (callbacks
    with ``main_process_only = True`` run on rank 0 only); resuming reads the checkpoint on every rank (a
    shared folder across machines).

    Example:
        >>> trainer = Trainer(model, nf.optim.AdamW(model.parameters(), lr=1e-3), F.cross_entropy,
        ...                   TensorDataset(x, y), batch_size=64, epochs=3, output_dir="runs/a", save_steps=100)
        >>> trainer.train()                                  # later, after a crash:
        >>> trainer.train(resume_from_checkpoint=True)       # continues from the newest complete checkpoint
    """

    def __init__(self, model: Any, optimizer: Any, loss_fn: Callable | None, train_dataset: Any,
                 eval_dataset: Any = None, batch_size: int = 32, epochs: int = 1, output_dir: str | None = None,
                 save_steps: int | None = None, seed: int = 0, callbacks: Iterable | None = None,
                 gradient_accumulation_steps: int = 1, max_grad_norm: float | None = None,
                 lr_scheduler: Any = None, collate_fn: Callable | None = None,
                 save_total_limit: int | None = None, eval_steps: int | None = None, logging_steps: int = 50,
                 metrics: Iterable | None = None, shuffle: bool = True, drop_last: bool = False) -> None:
        for name, value in (("batch_size", batch_size), ("epochs", epochs),
                            ("gradient_accumulation_steps", gradient_accumulation_steps),
                            ("logging_steps", logging_steps), ("save_steps", save_steps),
                            ("eval_steps", eval_steps), ("save_total_limit", save_total_limit)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"Trainer: {name} must be a positive integer, got {value!r}")
        if save_steps is not None and output_dir is None:
            raise ValueError("Trainer: save_steps needs an output_dir to write checkpoints to")
        self.model = model
        self.optimizer = optimizer
        # Keras-style callbacks (LearningRateScheduler, ReduceLROnPlateau) reach the optimizer via the model
        object.__setattr__(model, "optimizer", optimizer)
        self.loss_fn = loss_fn
        self.train_dataset = _as_dataset(train_dataset, "train_dataset")
        self.eval_dataset = None if eval_dataset is None else _as_dataset(eval_dataset, "eval_dataset")
        self.batch_size = batch_size
        self.epochs = epochs
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.save_steps = save_steps
        self.save_total_limit = save_total_limit
        self.seed = seed
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self.max_grad_norm = max_grad_norm
        self.lr_scheduler = lr_scheduler
        self.collate_fn = collate_fn
        self.eval_steps = eval_steps
        self.logging_steps = logging_steps
        self.metrics = _resolve_metrics(metrics)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.callbacks = CallbackList(callbacks, model=model)
        self.state = TrainerState()
        self.resumed_from: Path | None = None  # the checkpoint the last train() resumed from
        self._data_generator = Generator()
        self._ddp = _maybe_ddp(model)
        self.num_batches = len(self._loader(self.train_dataset, self._shard(list(range(len(self.train_dataset))))))
        if self.num_batches == 0:
            raise ValueError(f"Trainer: train_dataset has {len(self.train_dataset)} samples, fewer than one "
                             f"batch of {batch_size} with drop_last=True")

    @property
    def log_history(self) -> list:
        return self.state.log_history

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch (the last accumulation window of an epoch may be short)."""
        return -(-self.num_batches // self.gradient_accumulation_steps)

    # -- the loss of one batch ---------------------------------------------------------------------------------
    def compute_loss(self, model: Any, batch: Any, return_outputs: bool = False) -> Any:
        """The 0-d loss of ``batch`` (see the class docstring for the batch conventions); with
        ``return_outputs``, ``(loss, outputs, targets)``. Override it for custom forward passes."""
        if isinstance(batch, dict):
            if self.loss_fn is None:
                outputs = model(**batch)
                loss = outputs["loss"] if isinstance(outputs, dict) else getattr(outputs, "loss", None)
                if loss is None:
                    raise ValueError(f"Trainer: {type(model).__name__} returned no loss for a dict batch "
                                     f"(keys {sorted(batch)}); pass labels in the batch or give a loss_fn")
                targets = batch.get("labels")
            else:
                inputs = dict(batch)
                if "labels" not in inputs:
                    raise ValueError(f"Trainer: a dict batch used with loss_fn needs a 'labels' entry, got keys "
                                     f"{sorted(batch)}")
                targets = inputs.pop("labels")
                outputs = model(**inputs)
                loss = self.loss_fn(outputs, targets)
        else:
            if self.loss_fn is None:
                raise ValueError("Trainer: loss_fn=None works only with dict batches whose model computes a "
                                 "loss (outputs.loss); give a loss_fn for (inputs..., targets) batches")
            parts = list(batch) if isinstance(batch, (list, tuple)) else [batch]
            if len(parts) == 1:
                outputs, targets = model(parts[0]), None
                loss = self.loss_fn(outputs)
            else:
                outputs, targets = model(*parts[:-1]), parts[-1]
                loss = self.loss_fn(outputs, targets)
        if not isinstance(loss, Tensor) or loss.ndim != 0:
            raise ValueError(f"Trainer: the loss must be a 0-d Tensor, got "
                             f"{type(loss).__name__}{tuple(loss.shape) if isinstance(loss, Tensor) else ''}")
        return (loss, outputs, targets) if return_outputs else loss

    # -- training ------------------------------------------------------------------------------------------------
    def train(self, max_steps: int | None = None, resume_from_checkpoint: bool | str | Path = False) -> dict:
        """Run the training loop; returns ``{"global_step", "train_loss", "epoch"}`` (``train_loss``: the mean
        step loss since step 0, ``epoch``: fractional epochs done).

        Args:
            max_steps: stop after this many optimizer steps in total (counting the steps before a resume);
                overrides ``epochs``.
            resume_from_checkpoint: ``True`` resumes from the newest complete, readable checkpoint in
                ``output_dir`` (a corrupt newest one is skipped with a warning; none: starts fresh with a
                warning); a path resumes from that checkpoint directory (or the newest in that folder).
        """
        if max_steps is not None and (not isinstance(max_steps, int) or max_steps < 1):
            raise ValueError(f"Trainer.train: max_steps must be a positive integer, got {max_steps!r}")
        if self.output_dir is not None and is_main_process():
            ckpt.remove_stale(self.output_dir)
        if self._ddp is not None:
            barrier()
        self._start(resume_from_checkpoint)
        st = self.state
        limit = max_steps if max_steps is not None else self.epochs * self.steps_per_epoch
        self.model.stop_training = False
        self.callbacks.set_params({"epochs": self.epochs if max_steps is None else
                                   -(-max_steps // self.steps_per_epoch), "steps": self.steps_per_epoch,
                                   "verbose": 1})
        self.callbacks.on_train_begin({"global_step": st.global_step})
        last_saved = st.global_step if self.resumed_from is not None else None
        nonfinite_step = None  # first step whose loss was NaN/Inf: no checkpoint is written from then on
        while st.global_step < limit and not self.model.stop_training:
            self._data_generator.set_state(st.data_state)
            order = (self._data_generator.rng.permutation(len(self.train_dataset)).tolist() if self.shuffle
                     else list(range(len(self.train_dataset))))
            order = self._shard(order)
            n = self.gradient_accumulation_steps
            batches = iter(self._loader(self.train_dataset, order[st.batch_in_epoch * self.batch_size:]))
            self.callbacks.on_epoch_begin(st.epoch, {})
            for start in range(st.batch_in_epoch, self.num_batches, n):
                window = [next(batches) for _ in range(min(n, self.num_batches - start))]
                step_in_epoch = start // n
                self.callbacks.on_train_batch_begin(step_in_epoch, {})
                loss, grad_norm = self._optimizer_step(window)
                st.global_step += 1
                if nonfinite_step is None and not math.isfinite(loss):
                    nonfinite_step = st.global_step
                    self._warn_nonfinite(loss, nonfinite_step)
                st.batch_in_epoch = start + len(window)
                st.epoch_loss_sum += loss
                st.epoch_steps += 1
                st.loss_sum += loss
                st.losses_since_log.append(loss)
                self.callbacks.on_train_batch_end(step_in_epoch, {"loss": loss, "lr": self._lr()})
                if self._ddp is not None and self.model.stop_training is not True:
                    self.model.stop_training = _reduce_floats([float(bool(self.model.stop_training))], "max")[0] > 0
                if st.global_step % self.logging_steps == 0:
                    self._log(grad_norm)
                epoch_end = st.batch_in_epoch == self.num_batches
                metrics = None
                if self.eval_dataset is not None and (epoch_end or self.eval_steps is not None
                                                      and st.global_step % self.eval_steps == 0):
                    metrics = self.evaluate()
                    if isinstance(self.lr_scheduler, ReduceLROnPlateau):
                        self.lr_scheduler.step(metrics["eval_loss"])
                if epoch_end:
                    self._end_epoch(metrics)
                if self.output_dir is not None and self.save_steps is not None and nonfinite_step is None \
                        and st.global_step % self.save_steps == 0:
                    self.save_checkpoint()
                    last_saved = st.global_step
                if st.global_step >= limit or self.model.stop_training or epoch_end:
                    break
        if self.output_dir is not None and last_saved != st.global_step and nonfinite_step is None:
            self.save_checkpoint()
        train_loss = st.loss_sum / st.global_step if st.global_step else math.nan
        self.callbacks.on_train_end({"loss": train_loss})
        return {"global_step": st.global_step, "train_loss": train_loss,
                "epoch": st.epoch + st.batch_in_epoch / self.num_batches}

    def _warn_nonfinite(self, loss: float, step: int) -> None:
        newest = ckpt.list_checkpoints(self.output_dir) if self.output_dir is not None else []
        keep = f"; the newest checkpoint, {newest[-1]}, holds the last good state" if newest else ""
        msg = (f"Trainer: the loss became {loss} at step {step}; the model is no longer trustworthy and no "
               f"checkpoint will be written by this run{keep} (add TerminateOnNaN to stop at once)")
        if is_main_process():
            logger.warning("%s", msg)
            warnings.warn(msg, RuntimeWarning, stacklevel=3)

    def _start(self, resume: bool | str | Path) -> None:
        """Reset to a fresh run (seeded), or restore everything from a checkpoint."""
        candidates = self._candidates(resume) if resume else []
        if not candidates:
            manual_seed(self.seed)
            random.seed(self.seed)
            self._data_generator.manual_seed(self.seed)
            self.state = TrainerState(data_state=self._data_generator.get_state())
            self.resumed_from = None
            return
        self._load(candidates)
        logger.info("Trainer: resumed from %s (step %d)", self.resumed_from, self.state.global_step)

    def _candidates(self, resume: bool | str | Path) -> list[Path]:
        """Checkpoints to resume from, newest first."""
        if resume is True:
            if self.output_dir is None:
                raise ValueError("Trainer.train: resume_from_checkpoint=True needs an output_dir")
            found = ckpt.list_checkpoints(self.output_dir)
            if not found:
                warnings.warn(f"Trainer: no complete checkpoint in {self.output_dir}; training from scratch",
                              stacklevel=4)
            return found[::-1]
        path = Path(resume)
        if (path / ckpt.COMPLETE).is_file():
            return [path]
        found = ckpt.list_checkpoints(path)
        if not found:
            raise FileNotFoundError(f"Trainer.train: {path} is neither a complete checkpoint directory nor a "
                                    f"folder holding one")
        return found[::-1]

    def _load(self, candidates: list[Path]) -> None:
        """Restore the first readable checkpoint of ``candidates``; unreadable ones are skipped with a warning
        (the last one's error is raised)."""
        for i, path in enumerate(candidates):
            try:
                data = ckpt.read_checkpoint(path)
                break
            except ckpt.CheckpointError as e:
                if i == len(candidates) - 1:
                    raise
                warnings.warn(f"Trainer: skipping checkpoint {path}: {e}", stacklevel=4)
        ts = data["trainer_state"]
        saved = ts["config"]
        current = self._config()
        if saved != current:
            raise ValueError(f"Trainer: checkpoint {path} was written with {saved}, this trainer has {current}; "
                             f"the data position cannot be restored")
        self.model.load_state_dict(data["model"])
        self.optimizer.load_state_dict(data["optimizer"])
        if self.lr_scheduler is not None:
            if data["scheduler"] is None:
                raise ValueError(f"Trainer: checkpoint {path} has no scheduler state but this trainer has an "
                                 f"lr_scheduler ({type(self.lr_scheduler).__name__})")
            self.lr_scheduler.load_state_dict(data["scheduler"])
        set_rng_state(ts["rng_state"])
        random.setstate(ts["python_random_state"])
        self.state = TrainerState(**ts["state"])
        self.resumed_from = path

    def _config(self) -> dict:
        config = {"batch_size": self.batch_size, "gradient_accumulation_steps": self.gradient_accumulation_steps,
                  "num_examples": len(self.train_dataset), "shuffle": self.shuffle, "drop_last": self.drop_last}
        if self._ddp is not None:
            config["world_size"] = get_world_size()
        return config

    def _shard(self, order: list) -> list:
        """This rank's share of an epoch's order (all of it outside distributed training)."""
        if self._ddp is None:
            return order
        return shard_indices(order, get_world_size(), get_rank())

    def save_checkpoint(self) -> Path:
        """Write ``output_dir/checkpoint-<global_step>`` now (atomically), then apply ``save_total_limit``
        (on rank 0 only in distributed training; the others return the path it writes)."""
        if self.output_dir is None:
            raise ValueError("Trainer.save_checkpoint: no output_dir was given")
        if not is_main_process():
            return self.output_dir / f"{ckpt.PREFIX}{self.state.global_step}"
        trainer_state = {"state": asdict(self.state), "config": self._config(), "rng_state": get_rng_state(),
                         "python_random_state": random.getstate()}
        path = ckpt.save_checkpoint(self.output_dir, self.state.global_step, self.model, self.optimizer,
                                    self.lr_scheduler, trainer_state)
        ckpt.rotate_checkpoints(self.output_dir, self.save_total_limit)
        return path

    def _optimizer_step(self, window: list) -> tuple[float, float | None]:
        """Forward/backward each micro-batch of ``window`` (losses scaled by 1/len), clip, step; returns the
        window's mean loss and the gradient norm (when clipping)."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        scale = 1.0 / len(window)
        total = 0.0
        if self._ddp is not None:
            self._ddp._pre_forward()
        for k, batch in enumerate(window):
            local = self._ddp.no_sync() if self._ddp is not None and k < len(window) - 1 else nullcontext()
            with local:
                loss = self.compute_loss(self.model, batch)
                (loss * scale if len(window) > 1 else loss).backward()
            total += float(loss.item())
        if self._ddp is not None:
            total = _reduce_floats([total], "avg")[0]
        grad_norm = None
        if self.max_grad_norm is not None:
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            grad_norm = float(clip_grad_norm_(params, self.max_grad_norm).item())
        self.optimizer.step()
        if self.lr_scheduler is not None and not isinstance(self.lr_scheduler, ReduceLROnPlateau):
            self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total * scale, grad_norm

    def _end_epoch(self, metrics: dict | None) -> None:
        st = self.state
        train_loss = st.epoch_loss_sum / max(st.epoch_steps, 1)
        if isinstance(self.lr_scheduler, ReduceLROnPlateau) and metrics is None:
            self.lr_scheduler.step(train_loss)
        logs = {"loss": train_loss, "lr": self._lr()}
        for k, v in (metrics or {}).items():
            logs["val_" + k[len("eval_"):]] = v
        epoch = st.epoch
        st.epoch += 1
        st.batch_in_epoch = 0
        st.epoch_loss_sum = 0.0
        st.epoch_steps = 0
        st.data_state = self._data_generator.get_state()
        self.callbacks.on_epoch_end(epoch, logs)

    def _log(self, grad_norm: float | None) -> None:
        st = self.state
        entry = {"step": st.global_step, "epoch": st.epoch + st.batch_in_epoch / self.num_batches,
                 "loss": sum(st.losses_since_log) / len(st.losses_since_log), "lr": self._lr()}
        if grad_norm is not None:
            entry["grad_norm"] = grad_norm
        st.losses_since_log = []
        st.log_history.append(entry)
        if is_main_process():
            logger.info("%s", entry)

    def _lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    # -- evaluation ----------------------------------------------------------------------------------------------
    def evaluate(self, eval_dataset: Any = None) -> dict:
        """Loss (mean over samples) and metrics on ``eval_dataset`` (default: the one given at construction),
        in eval mode without gradients: ``{"eval_loss": ..., "eval_<metric>": ...}``."""
        dataset = self.eval_dataset if eval_dataset is None else _as_dataset(eval_dataset, "eval_dataset")
        if dataset is None:
            raise ValueError("Trainer.evaluate: no eval_dataset was given")
        was_training = self.model.training
        self.model.eval()
        self.callbacks.on_test_begin({})
        total, count = 0.0, 0
        preds, targets = [], []
        try:
            with no_grad():
                for i, batch in enumerate(self._loader(dataset, list(range(len(dataset))), drop_last=False)):
                    self.callbacks.on_test_batch_begin(i, {})
                    loss, outputs, y = self.compute_loss(self.model, batch, return_outputs=True)
                    n = _batch_len(batch)
                    total += float(loss.item()) * n
                    count += n
                    if self.metrics:
                        preds.append(_logits(outputs).numpy())
                        targets.append(y.numpy() if isinstance(y, Tensor) else y)
                    self.callbacks.on_test_batch_end(i, {"loss": float(loss.item())})
        finally:
            self.model.train(was_training)
        result = {"eval_loss": total / max(count, 1)}
        if self.metrics:
            import numpy as np  # host-side: metrics run on NumPy arrays
            y_true, y_pred = np.concatenate(targets), np.concatenate(preds)
            for name, fn in self.metrics.items():
                result[f"eval_{name}"] = float(fn(y_true, y_pred))
        self.callbacks.on_test_end({"loss": result["eval_loss"],
                                    **{k[len("eval_"):]: v for k, v in result.items() if k != "eval_loss"}})
        return result

    def _loader(self, dataset: Any, order: list, drop_last: bool | None = None) -> DataLoader:
        return DataLoader(dataset, batch_size=self.batch_size, sampler=order, collate_fn=self.collate_fn,
                          drop_last=self.drop_last if drop_last is None else drop_last)


def _maybe_ddp(model: Any) -> Any:
    """The model's ``DistributedDataParallel`` wrapper when a group of several ranks is initialised (the model
    itself if it is one; a new wrapper, which copies rank 0's weights to all ranks, otherwise), else None."""
    from .. import distributed as dist
    from ..nn.parallel import DistributedDataParallel

    if not dist.is_initialized() or dist.get_world_size() == 1:
        return None
    return model if isinstance(model, DistributedDataParallel) else DistributedDataParallel(model)


def _as_dataset(data: Any, name: str) -> Any:
    if isinstance(data, IterableDataset) or not (hasattr(data, "__len__") and hasattr(data, "__getitem__")):
        raise TypeError(f"Trainer: {name} must be a map-style Dataset (with __len__ and __getitem__) or a tuple "
                        f"of arrays, got {type(data).__name__} (streams cannot be resumed at an exact position)")
    if isinstance(data, tuple) and not isinstance(data, Dataset):
        return TensorDataset(*data)
    return data


def _resolve_metrics(metrics: Iterable | None) -> dict:
    out = {}
    for m in metrics or ():
        if isinstance(m, str):
            from .. import metrics as metric_functions
            fn = getattr(metric_functions, m, None)
            if not callable(fn):
                raise ValueError(f"Trainer: unknown metric {m!r} (not a function of nnforge.metrics)")
            out[m] = fn
        elif hasattr(m, "update") and hasattr(m, "compute"):  # a streaming nnforge.metrics.Metric
            out[m.name] = _metric_object_fn(m)
        elif callable(m):
            out[getattr(m, "__name__", type(m).__name__)] = m
        else:
            raise TypeError(f"Trainer: metrics must be names or callables, got {type(m).__name__}")
    return out


def _metric_object_fn(metric: Any) -> Callable:
    def fn(y_true: Any, y_pred: Any) -> float:
        metric.reset()
        metric.update(y_pred, y_true)
        return metric.compute()
    return fn


def _logits(outputs: Any) -> Tensor:
    if isinstance(outputs, Tensor):
        return outputs
    logits = getattr(outputs, "logits", None)
    if logits is None and isinstance(outputs, (tuple, list)) and outputs:
        logits = outputs[0]
    if not isinstance(logits, Tensor):
        raise ValueError(f"Trainer.evaluate: cannot find predictions in a {type(outputs).__name__} for metrics "
                         f"(expected a Tensor, an output with .logits, or a tuple starting with a Tensor)")
    return logits


def _batch_len(batch: Any) -> int:
    first = next(iter(batch.values())) if isinstance(batch, dict) else \
        batch[0] if isinstance(batch, (list, tuple)) else batch
    return int(first.shape[0]) if hasattr(first, "shape") and len(first.shape) else len(first)
