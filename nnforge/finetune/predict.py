"""Loading a fine-tuned model (a run folder or a model folder), batched prediction, and metrics."""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import metrics as M
from ..autograd.grad_mode import no_grad
from ..data import bucket_batches, pad_sequences
from .errors import UsageError
from .progress import Progress

__all__ = ["Loaded", "compute_metrics", "load_for_inference", "predict_logits", "probabilities"]

PROBLEM_TYPES = {"classification": "single_label_classification", "multilabel": "multi_label_classification",
                 "regression": "regression"}
_TASKS = {v: k for k, v in PROBLEM_TYPES.items()}


@dataclass
class Loaded:
    model: Any
    tokenizer: Any
    task: str
    label_names: list
    max_length: int
    path: Path


def resolve_model(name: str) -> Path:
    """A local folder/file or a known name (downloaded into the cache when missing); UsageError otherwise."""
    from .. import hub

    try:
        return hub.resolve_model_path(name)
    except FileNotFoundError as e:
        try:
            hub.cached_path(name)
        except KeyError:  # neither a path nor a known name
            raise UsageError(str(e)) from None
    print(f"Downloading {name} into the nnforge cache (pip, first run only)...", flush=True)
    try:
        return hub.download(name)
    except RuntimeError as e:
        raise UsageError(f"could not download {name}: {str(e).splitlines()[0]}") from None


def load_for_inference(run_or_model: str) -> Loaded:
    """A run folder (its ``model/``) or a fine-tuned Hugging Face folder, in eval mode."""
    from ..models import AutoModelForSequenceClassification
    from ..tokenizers import AutoTokenizer

    path = Path(run_or_model).expanduser()
    if (path / "model" / "config.json").is_file():
        path = path / "model"
    if not (path / "config.json").is_file():
        raise UsageError(f"{run_or_model}: not a run folder (with model/) or a model folder (with config.json)")
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    task = _TASKS.get(config.get("problem_type") or "", "classification")
    names = [v for _, v in sorted(((int(k), v) for k, v in (config.get("id2label") or {}).items()))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModelForSequenceClassification.from_pretrained(path)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    max_length = int(config.get("nnforge_max_length") or 128)
    return Loaded(model, tokenizer, task, names, max_length, path)


def predict_logits(model: Any, input_ids: list, batch_size: int, pad_id: int, desc: str = "Predicting") -> np.ndarray:
    """Logits (N, K) in input order; batches sorted by length so each is padded as little as possible."""
    batches = bucket_batches([len(s) for s in input_ids], batch_size, seed=None)
    out: np.ndarray | None = None
    model.eval()
    with no_grad(), Progress(len(batches), desc) as bar:
        for idx in batches:
            ids, mask = pad_sequences([input_ids[j] for j in idx], pad_id)
            logits = model(ids, attention_mask=mask).logits.numpy()
            if out is None:
                out = np.empty((len(input_ids), logits.shape[-1]), dtype=np.float32)
            out[idx] = logits
            bar.update()
    return out if out is not None else np.zeros((0, 1), np.float32)


def probabilities(logits: np.ndarray, task: str) -> np.ndarray:
    """Softmax (classification), sigmoid (multilabel) or the raw value (regression)."""
    logits = logits.astype(np.float64)
    if task == "classification":
        z = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return z / z.sum(axis=-1, keepdims=True)
    if task == "multilabel":
        return 1.0 / (1.0 + np.exp(-logits))
    return logits


def _loss(task: str, targets: np.ndarray, logits: np.ndarray) -> float:
    lg = logits.astype(np.float64)
    if task == "classification":
        m = lg.max(axis=-1, keepdims=True)
        logz = (m + np.log(np.exp(lg - m).sum(axis=-1, keepdims=True)))[:, 0]
        return float(np.mean(logz - lg[np.arange(len(lg)), targets]))
    if task == "multilabel":
        return float(np.mean(np.maximum(lg, 0) - lg * targets + np.log1p(np.exp(-np.abs(lg)))))
    return float(np.mean((lg[:, 0] - targets) ** 2))


def compute_metrics(task: str, targets: np.ndarray, logits: np.ndarray, names: list, prefix: str = "test") -> dict:
    """``{prefix_accuracy, prefix_loss, per_class: {name: {precision, recall, f1, support}}, macro: {...}}``
    (regression: ``prefix_loss`` (MSE), ``prefix_mae``, ``prefix_rmse``)."""
    out: dict = {f"{prefix}_loss": _loss(task, targets, logits), f"{prefix}_examples": len(targets)}
    if task == "regression":
        err = logits[:, 0].astype(np.float64) - targets
        out[f"{prefix}_mae"] = float(np.mean(np.abs(err)))
        out[f"{prefix}_rmse"] = float(np.sqrt(np.mean(err ** 2)))
        return out
    if task == "multilabel":
        pred = (logits > 0).astype(np.int64)
        truth = targets.astype(np.int64)
        out[f"{prefix}_accuracy"] = float(np.mean(np.all(pred == truth, axis=1)))  # exact match
        tp = (pred & truth).sum(0).astype(np.float64)
        prec = np.divide(tp, pred.sum(0), out=np.zeros_like(tp), where=pred.sum(0) > 0)
        rec = np.divide(tp, truth.sum(0), out=np.zeros_like(tp), where=truth.sum(0) > 0)
        support = truth.sum(0)
    else:
        pred = logits.argmax(-1)
        out[f"{prefix}_accuracy"] = float(np.mean(pred == targets))
        labels = np.arange(len(names))
        prec, rec, _ = M.precision_recall_f1(targets, pred, average=None, labels=labels)
        prec, rec = np.asarray(prec, np.float64), np.asarray(rec, np.float64)
        support = np.bincount(targets, minlength=len(names))
    f1 = np.divide(2 * prec * rec, prec + rec, out=np.zeros_like(prec), where=(prec + rec) > 0)
    out["per_class"] = {str(n): {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                        for n, p, r, f, s in zip(names, prec, rec, f1, support)}
    out["macro"] = {"precision": float(prec.mean()), "recall": float(rec.mean()), "f1": float(f1.mean())}
    return out
