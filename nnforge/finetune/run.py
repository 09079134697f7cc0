"""The fine-tuning pipeline behind ``nnforge finetune``: data -> tokens -> Trainer -> test report -> run folder.

Run folder (``--output-dir``, default ``runs/<model>-<data>-<time>``)::

    config.yaml        the resolved configuration (defaults < --config file < flags)
    labels.json        label names in id order (string labels mapped to ids)
    history.csv        step, epoch, train_loss, lr, val_loss, val_accuracy
    metrics.json       test_accuracy, test_loss, per-class and macro precision/recall/F1, timings, data counts
    predictions.csv    the test split with predicted labels and probabilities
    report.html        curves, confusion matrix, per-class scores, confidence histogram, confident mistakes (PNGs)
    model/             the fine-tuned model + tokenizer as a Hugging Face folder (nnforge and transformers load it)
    checkpoints/       while training (Ctrl-C saves one here; ``--resume`` continues); removed when the run ends
"""
from __future__ import annotations

import csv
import json
import re
import shutil
import signal
import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..data import PaddedBatches, bucket_batches, first, stratified_split
from ..io.atomic import atomic_write_text
from ..train.callbacks import Callback, ProgressBar, TerminateOnNaN
from .config import FinetuneConfig, save_yaml
from .dataset import encode, label_targets, load_examples
from .errors import UsageError
from .predict import PROBLEM_TYPES, compute_metrics, load_for_inference, predict_logits, probabilities, resolve_model
from .progress import EvalProgress
from .report import write_predictions, write_report

__all__ = ["Interrupted", "evaluate_run", "predict_texts", "run_finetune"]

_HISTORY_FIELDS = ["step", "epoch", "train_loss", "lr", "val_loss", "val_accuracy"]


class Interrupted(Exception):
    """Training stopped by Ctrl-C after a checkpoint was saved; the message says how to resume."""


def default_output_dir(cfg: FinetuneConfig) -> Path:
    model = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(cfg.model).name)
    data = "movie-reviews" if cfg.data is None else re.sub(r"[^A-Za-z0-9._-]+", "-", Path(cfg.data).stem)
    return Path("runs") / f"{model}-{data}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


class _History(Callback):
    """Mean training loss every ``every`` steps and each validation result, appended to ``history.csv`` as it
    goes (a resumed run keeps the rows up to its checkpoint)."""

    main_process_only = True

    def __init__(self, path: Path, trainer_ref: dict, every: int = 10) -> None:
        super().__init__()
        self.path, self.ref, self.every = path, trainer_ref, every
        self.rows: list = []
        self._losses: list = []

    def on_train_begin(self, logs=None):
        st = self.ref["trainer"].state
        self.rows = []
        if st.global_step and self.path.is_file():
            with open(self.path, newline="", encoding="utf-8") as f:
                self.rows = [r for r in csv.DictReader(f) if int(r["step"]) <= st.global_step]
        self._flush()

    def _epoch(self) -> float:
        t = self.ref["trainer"]
        return round(t.state.epoch + t.state.batch_in_epoch / t.num_batches, 4)

    def on_train_batch_end(self, batch, logs=None):
        self._losses.append(float((logs or {}).get("loss", float("nan"))))
        t = self.ref["trainer"]
        if t.state.global_step % self.every == 0:
            self.rows.append({"step": t.state.global_step, "epoch": self._epoch(),
                              "train_loss": f"{np.mean(self._losses):.5f}", "lr": f"{logs.get('lr', 0.0):.3g}"})
            self._losses = []
            self._flush()

    def on_train_end(self, logs=None):
        if self._losses:  # the steps since the last row
            t = self.ref["trainer"]
            self.rows.append({"step": t.state.global_step, "epoch": self._epoch(),
                              "train_loss": f"{np.mean(self._losses):.5f}", "lr": f"{t._lr():.3g}"})
            self._losses = []
            self._flush()

    def on_test_end(self, logs=None):
        logs = logs or {}
        t = self.ref["trainer"]
        row = {"step": t.state.global_step, "epoch": self._epoch(), "val_loss": f"{logs.get('loss', float('nan')):.5f}"}
        if "accuracy" in logs:
            row["val_accuracy"] = f"{logs['accuracy']:.5f}"
        self.rows.append(row)
        self._flush()
        print(f"  validation at step {row['step']}: " + ", ".join(f"{k} {v}" for k, v in row.items()
                                                                  if k.startswith("val_")), flush=True)

    def _flush(self) -> None:
        buf = _csv_text(self.rows, _HISTORY_FIELDS)
        atomic_write_text(self.path, buf)


def _csv_text(rows: list, fields: list) -> str:
    import io
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, restval="")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


class _StopOnSignal(Callback):
    """Ctrl-C (SIGINT) once: finish the current step, then stop (the Trainer then saves a checkpoint); twice: abort."""

    def __init__(self) -> None:
        super().__init__()
        self.requested = False
        self._previous: Any = None

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nInterrupted: finishing this step and saving a checkpoint (Ctrl-C again to abort)...", flush=True)

    def __enter__(self) -> _StopOnSignal:
        self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)

    def on_train_batch_end(self, batch, logs=None):
        if self.requested:
            self.model.stop_training = True


def _load_model(path: Path, cfg: FinetuneConfig, names: list) -> Any:
    from ..models import AutoModelForSequenceClassification

    k = 1 if cfg.task == "regression" else len(names)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the new classification head is reported below instead
            model = AutoModelForSequenceClassification.from_pretrained(
                path, num_labels=k, id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)},
                problem_type=PROBLEM_TYPES[cfg.task], ignore_mismatched_sizes=True)
    except (ValueError, KeyError, OSError) as e:
        raise UsageError(f"cannot load {cfg.model} ({path}) for sequence classification: "
                         f"{str(e).splitlines()[0]}") from None
    if cfg.method == "head":
        model.freeze()
        model.unfreeze(["classifier.*", "*pooler*"])
    elif cfg.method == "lora":
        try:
            from ..peft import LoraConfig, get_peft_model
        except ImportError:
            raise UsageError("--method lora needs nnforge.peft, which this installation lacks") from None
        model = get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                                 lora_dropout=cfg.lora_dropout, target_modules=["query", "value"],
                                                 modules_to_save=["classifier", "pooler"]))
    return model


def _optimizer(model: Any, cfg: FinetuneConfig, total_steps: int) -> tuple:
    from ..optim import AdamW
    from ..optim.lr_scheduler import get_linear_schedule_with_warmup

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if name.endswith("bias") or "LayerNorm" in name or "norm" in name.lower() else decay).append(p)
    opt = AdamW([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                lr=cfg.lr)
    sched = get_linear_schedule_with_warmup(opt, int(cfg.warmup_ratio * total_steps), total_steps)
    return opt, sched


def _exact_match(y_true: Any, logits: Any) -> float:
    return float(np.mean(np.all((np.asarray(logits) > 0) == (np.asarray(y_true) > 0.5), axis=1)))


def _mae(y_true: Any, y_pred: Any) -> float:
    return float(np.mean(np.abs(np.asarray(y_pred).reshape(-1) - np.asarray(y_true).reshape(-1))))


def _eval_metrics(task: str) -> list:
    if task == "classification":
        return ["accuracy"]
    if task == "multilabel":
        _exact_match.__name__ = "accuracy"
        return [_exact_match]
    return [_mae]


def _strata(task: str, targets: np.ndarray) -> list:
    if task == "multilabel":
        return ["|".join(map(str, np.flatnonzero(r))) for r in targets]
    return list(targets)


def _check_run_dir(run_dir: Path, resume: bool) -> None:
    if resume:
        if not (run_dir / "config.yaml").is_file():
            raise UsageError(f"--resume: {run_dir} holds no run to resume (no config.yaml)")
        if (run_dir / "metrics.json").is_file():
            raise UsageError(f"--resume: the run in {run_dir} is already finished (metrics.json exists)")
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise UsageError(f"{run_dir} is not empty; choose another --output-dir (or add --resume to continue the run "
                         f"there)")


def run_finetune(cfg: FinetuneConfig, resume: bool = False) -> dict:
    """Run the whole job; returns the metrics written to ``metrics.json``.

    Everything that can fail on bad input (the model name, the data file, its columns and labels) is checked
    before anything is written to the run folder.

    Raises:
        UsageError / DataError: bad input (one-line message).
        Interrupted: Ctrl-C during training (a checkpoint was saved).
    """
    from .. import distributed as dist
    from ..distributed.collectives import _broadcast_text
    from ..random import manual_seed
    from ..tokenizers import AutoTokenizer
    from ..train import Trainer

    wall0, cpu0 = time.perf_counter(), time.process_time()
    run_dir = Path(cfg.output_dir) if cfg.output_dir else default_output_dir(cfg)
    parallel = dist.is_initialized() and dist.get_world_size() > 1
    main = dist.is_main_process()  # under mpirun only rank 0 writes the run folder
    if parallel:
        run_dir = Path(_broadcast_text(str(run_dir)))  # rank 0's (default names hold the time)
    _check_run_dir(run_dir, resume)
    if parallel:
        dist.barrier()  # every rank has checked the folder before rank 0 writes into it
    model_path = resolve_model(cfg.model)

    # -- data ----------------------------------------------------------------------------------------------------
    print(f"Preparing data from {cfg.data or 'the movie review sentences'}...", flush=True)
    ex = load_examples(cfg.data, cfg.task, cfg.text_column, cfg.label_column, cfg.unicode_form, cfg.limit)
    targets, names = label_targets(ex.raw_labels, cfg.task, source=ex.source)
    print(f"  columns: text={ex.text_column!r}, label={ex.label_column!r}; cleaning: {ex.report}"
          + "".join(f"; {n}" for n in ex.notes), flush=True)
    train_idx, val_idx, test_idx = stratified_split(
        _strata(cfg.task, targets), (1 - cfg.val_fraction - cfg.test_fraction, cfg.val_fraction, cfg.test_fraction),
        seed=cfg.seed)
    if len(train_idx) == 0 or len(test_idx) == 0:
        raise UsageError(f"{ex.source}: {len(ex.texts)} rows are too few for a train/validation/test split")
    print(f"  split (stratified, seed {cfg.seed}): {len(train_idx)} train, {len(val_idx)} validation, "
          f"{len(test_idx)} test; labels: {', '.join(map(str, names))}", flush=True)

    # -- model and tokens ----------------------------------------------------------------------------------------
    manual_seed(cfg.seed)  # the new head's initialisation
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = _load_model(model_path, cfg, names)
    ids = encode(tokenizer, ex.texts, cfg.max_length)
    pad_id = tokenizer.pad_token_id or 0

    def part(idx: np.ndarray, seed: int | None) -> PaddedBatches:
        sub = [ids[i] for i in idx]
        return PaddedBatches(sub, bucket_batches([len(s) for s in sub], cfg.batch_size, seed), targets[idx], pad_id)

    train_ds = part(train_idx, cfg.seed)
    val_ds = part(val_idx, None) if len(val_idx) else None
    steps_per_epoch = -(-len(train_ds) // dist.get_world_size()) if parallel else len(train_ds)
    total = cfg.max_steps or cfg.epochs * steps_per_epoch
    opt, sched = _optimizer(model, cfg, total)

    # -- the run folder (nothing is written before this point) ---------------------------------------------------
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_yaml(cfg.to_dict(), run_dir / "config.yaml")
        atomic_write_text(run_dir / "labels.json", json.dumps(names, indent=1, ensure_ascii=False))
    print(f"Run folder: {run_dir}", flush=True)
    ref: dict = {}
    history = _History(run_dir / "history.csv", ref)
    evalbar = EvalProgress()
    evalbar.total = len(val_ds) if val_ds is not None else 0
    stopper = _StopOnSignal()
    trainer = Trainer(model, opt, None, train_ds, val_ds, batch_size=1, epochs=cfg.epochs,
                      output_dir=str(run_dir / "checkpoints"), save_steps=cfg.save_steps, seed=cfg.seed,
                      callbacks=[ProgressBar(), evalbar, history, TerminateOnNaN(), stopper],
                      max_grad_norm=cfg.max_grad_norm, lr_scheduler=sched, collate_fn=first, save_total_limit=1,
                      eval_steps=-(-steps_per_epoch // cfg.evals_per_epoch), logging_steps=10,
                      metrics=_eval_metrics(cfg.task))
    ref["trainer"] = trainer
    trainable = sum(int(np.prod(p.shape)) for p in model.parameters() if p.requires_grad)
    print(f"Fine-tuning {cfg.model} ({cfg.method}, {trainable:,} trainable parameters): {total} steps of "
          f"{cfg.batch_size} examples" + (f" on each of {dist.get_world_size()} processes" if parallel else "")
          + f", lr {cfg.lr:g}", flush=True)
    train_wall, train_cpu = time.perf_counter(), time.process_time()
    with stopper:
        try:
            result = trainer.train(max_steps=cfg.max_steps, resume_from_checkpoint=resume)
        except ValueError as e:
            if not resume:
                raise
            raise UsageError(f"cannot resume the run in {run_dir}: {e}") from None
    train_wall, train_cpu = time.perf_counter() - train_wall, time.process_time() - train_cpu
    if stopper.requested:
        raise Interrupted(f"stopped at step {trainer.state.global_step}/{total}; checkpoint saved in "
                          f"{run_dir / 'checkpoints'}. Resume with: nnforge finetune --output-dir {run_dir} --resume")
    if not np.isfinite(result["train_loss"]):
        raise UsageError(f"training diverged (loss {result['train_loss']}); try a smaller --lr")

    # -- test ----------------------------------------------------------------------------------------------------
    if not main:  # rank 0 tests, reports and saves
        return {"run_dir": str(run_dir), "train_loss": result["train_loss"], "steps": result["global_step"]}
    test_ids = [ids[i] for i in test_idx]
    logits = predict_logits(model, test_ids, cfg.batch_size, pad_id, desc="Testing")
    metrics = compute_metrics(cfg.task, targets[test_idx], logits, names, prefix="test")
    val_rows = [r for r in history.rows if r.get("val_loss")]
    if val_rows:
        metrics["val_loss"] = float(val_rows[-1]["val_loss"])
        if val_rows[-1].get("val_accuracy"):
            metrics["val_accuracy"] = float(val_rows[-1]["val_accuracy"])
    metrics.update(train_loss=result["train_loss"], steps=result["global_step"], epochs=round(result["epoch"], 4),
                   train_wall_s=round(train_wall, 1), train_cpu_s=round(train_cpu, 1),
                   data={"source": ex.source, "cleaning": ex.report.as_dict(), "train": len(train_idx),
                         "validation": len(val_idx), "test": len(test_idx)})

    # -- save ----------------------------------------------------------------------------------------------------
    if cfg.method == "lora":
        model = model.merge_and_unload()
    model.config.nnforge_max_length = cfg.max_length
    model.save_pretrained(run_dir / "model")
    tokenizer.save_pretrained(run_dir / "model")
    texts = [ex.texts[i] for i in test_idx]
    write_report(run_dir, cfg.task, names, texts, probabilities(logits, cfg.task), targets[test_idx], metrics,
                 history.rows, title=f"Fine-tuning {cfg.model} on {ex.source}", config=cfg.to_dict())
    metrics.update(total_wall_s=round(time.perf_counter() - wall0, 1), total_cpu_s=round(time.process_time() - cpu0, 1))
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2, ensure_ascii=False))
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return {"run_dir": str(run_dir), **metrics}


def _fresh_dir(base: Path) -> Path:
    out, k = base, 2
    while out.exists() and any(out.iterdir()):
        out, k = base.with_name(f"{base.name}-{k}"), k + 1
    return out


def evaluate_run(run_or_model: str, data: str, text_column: str | None = None, label_column: str | None = None,
                 output_dir: str | None = None, batch_size: int = 32) -> dict:
    """Score a fine-tuned model on a labelled file and write the same report (metrics.json, predictions.csv,
    report.html with plots) into ``output_dir`` (default: ``RUN/eval-<file>``, never over an earlier one)."""
    loaded = load_for_inference(run_or_model)
    ex = load_examples(data, loaded.task, text_column, label_column, drop_duplicates=False)
    targets, names = label_targets(ex.raw_labels, loaded.task, names=loaded.label_names, source=ex.source)
    src = Path(run_or_model)
    base = Path(output_dir) if output_dir else (src if (src / "model").is_dir() else Path(".")) / f"eval-{Path(data).stem}"
    out = Path(output_dir) if output_dir and not (Path(output_dir).exists() and any(Path(output_dir).iterdir())) \
        else _fresh_dir(base)
    ids = encode(loaded.tokenizer, ex.texts, loaded.max_length)
    logits = predict_logits(loaded.model, ids, batch_size, loaded.tokenizer.pad_token_id or 0, desc="Evaluating")
    metrics = compute_metrics(loaded.task, targets, logits, names, prefix="test")
    out.mkdir(parents=True, exist_ok=True)
    write_report(out, loaded.task, names, ex.texts, probabilities(logits, loaded.task), targets, metrics,
                 title=f"Evaluation of {run_or_model} on {data}")
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2, ensure_ascii=False))
    return {"output_dir": str(out), **metrics}


def predict_texts(run_or_model: str, texts: list | None = None, data: str | None = None,
                  text_column: str | None = None, output: str | None = None, batch_size: int = 32) -> list:
    """Predicted label and probabilities for ``texts`` (or the texts of file ``data``); rows of
    ``(text, label, confidence, {class: probability})``; ``output``: also write them as CSV."""
    loaded = load_for_inference(run_or_model)
    if data is not None:
        ex = load_examples(data, loaded.task, text_column, None, need_labels=False, drop_duplicates=False)
        texts = ex.texts
    if not texts:
        raise UsageError("predict: give texts or --data FILE")
    ids = encode(loaded.tokenizer, list(texts), loaded.max_length)
    probs = probabilities(predict_logits(loaded.model, ids, batch_size, loaded.tokenizer.pad_token_id or 0),
                          loaded.task)
    if output:
        write_predictions(Path(output), loaded.task, loaded.label_names, list(texts), probs)
    rows = []
    for text, p in zip(texts, probs):
        if loaded.task == "classification":
            k = int(p.argmax())
            rows.append((text, loaded.label_names[k], float(p[k]), dict(zip(loaded.label_names, map(float, p)))))
        elif loaded.task == "multilabel":
            on = [n for n, q in zip(loaded.label_names, p) if q > 0.5]
            rows.append((text, "|".join(on), float(np.where(p > 0.5, p, 1 - p).min()),
                         dict(zip(loaded.label_names, map(float, p)))))
        else:
            rows.append((text, f"{float(p[0]):.6g}", 1.0, {}))
    return rows
