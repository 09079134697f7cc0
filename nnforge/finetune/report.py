"""The run report: ``predictions.csv``, PNG plots and ``report.html`` (plots need matplotlib: ``nnforge[plot]``).

Plots: training/validation curves (from ``history.csv`` rows), confusion matrix, per-class precision/recall/F1,
confidence histogram (right vs wrong), and a table of the most confident mistakes with their texts.
"""
from __future__ import annotations

import csv
import html
import io
from pathlib import Path
from typing import Any

import numpy as np

from ..io.atomic import atomic_write_text
from ..train.plots import _figure, _save, plot_confusion_matrix

__all__ = ["write_predictions", "write_report"]


def _predicted(task: str, probs: np.ndarray) -> tuple[list, np.ndarray]:
    """Per-row predicted label (index, index tuple, or value) and its confidence."""
    if task == "classification":
        return list(probs.argmax(-1)), probs.max(-1)
    if task == "multilabel":
        on = probs > 0.5
        conf = np.where(on, probs, 1 - probs).min(-1)
        return [tuple(np.flatnonzero(r)) for r in on], conf
    return list(probs[:, 0]), np.ones(len(probs))


def _name(task: str, names: list, value: Any) -> str:
    if task == "classification":
        return str(names[int(value)])
    if task == "multilabel":
        return "|".join(str(names[i]) for i in value)
    return f"{float(value):.6g}"


def write_predictions(path: Path, task: str, names: list, texts: list, probs: np.ndarray,
                      targets: np.ndarray | None = None) -> Path:
    """One row per text: ``text, [label,] predicted, confidence, [correct,] p_<class>...``."""
    pred, conf = _predicted(task, probs)
    buf = io.StringIO()
    w = csv.writer(buf)
    head = ["text"] + (["label"] if targets is not None else []) + ["predicted", "confidence"]
    head += (["correct"] if targets is not None and task != "regression" else [])
    head += [f"p_{n}" for n in names] if task != "regression" else []
    w.writerow(head)
    for i, text in enumerate(texts):
        row = [text]
        if targets is not None:
            t = tuple(np.flatnonzero(targets[i])) if task == "multilabel" else targets[i]
            row.append(_name(task, names, t))
        row += [_name(task, names, pred[i]), f"{conf[i]:.4f}"]
        if targets is not None and task != "regression":
            row.append(int(_name(task, names, pred[i]) == row[1]))
        if task != "regression":
            row += [f"{p:.4f}" for p in probs[i]]
        w.writerow(row)
    return atomic_write_text(path, buf.getvalue())


def _plot_curves(rows: list, path: Path) -> str | None:
    steps = [r for r in rows if r.get("train_loss") not in (None, "")]
    evals = [r for r in rows if r.get("val_loss") not in (None, "")]
    if not steps and not evals:
        return None
    has_acc = any(r.get("val_accuracy") not in (None, "") for r in evals)
    fig = _figure((10 if has_acc else 5, 3.6))
    ax = fig.add_subplot(1, 2 if has_acc else 1, 1)
    if steps:
        ax.plot([float(r["step"]) for r in steps], [float(r["train_loss"]) for r in steps], label="train")
    if evals:
        ax.plot([float(r["step"]) for r in evals], [float(r["val_loss"]) for r in evals], marker="o", label="validation")
    ax.set_xlabel("optimizer step")
    ax.set_title("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    if has_acc:
        ax2 = fig.add_subplot(1, 2, 2)
        acc = [r for r in evals if r.get("val_accuracy") not in (None, "")]
        ax2.plot([float(r["step"]) for r in acc], [float(r["val_accuracy"]) for r in acc], marker="o", color="C1")
        ax2.set_xlabel("optimizer step")
        ax2.set_title("validation accuracy")
        ax2.grid(alpha=0.3)
    return _save(fig, path, 100)


def _plot_per_class(per_class: dict, path: Path) -> str:
    names = list(per_class)
    fig = _figure((max(5.0, 1.2 * len(names) + 2), 3.6))
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(names))
    for k, key in enumerate(("precision", "recall", "f1")):
        ax.bar(x + (k - 1) * 0.27, [per_class[n][key] for n in names], width=0.27, label=key)
    ax.set_xticks(x, names, rotation=30 if len(names) > 4 else 0, ha="right" if len(names) > 4 else "center")
    ax.set_ylim(0, 1.05)
    ax.set_title("per-class scores")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="lower right")
    return _save(fig, path, 100)


def _plot_confidence(conf: np.ndarray, correct: np.ndarray, path: Path) -> str:
    fig = _figure((5.5, 3.6))
    ax = fig.add_subplot(1, 1, 1)
    bins = np.linspace(float(min(conf.min(), 0.5)) if conf.size else 0.0, 1.0, 21)
    ax.hist([conf[correct], conf[~correct]], bins=bins, stacked=True, label=["correct", "wrong"],
            color=["C2", "C3"])
    ax.set_xlabel("confidence of the predicted label")
    ax.set_ylabel("examples")
    ax.set_title("confidence histogram")
    ax.legend()
    return _save(fig, path, 100)


def _table(headers: list, rows: list) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(out_dir: Path, task: str, names: list, texts: list, probs: np.ndarray, targets: np.ndarray,
                 metrics: dict, history: list | None = None, title: str = "nnforge fine-tuning report",
                 config: dict | None = None, top_errors: int = 20) -> Path:
    """``predictions.csv``, the PNG plots (when matplotlib is installed) and ``report.html`` in ``out_dir``."""
    out_dir = Path(out_dir)
    write_predictions(out_dir / "predictions.csv", task, names, texts, probs, targets)
    pred, conf = _predicted(task, probs)
    images: list[tuple[str, str]] = []
    note = ""
    try:
        if history:
            p = _plot_curves(history, out_dir / "curves.png")
            if p:
                images.append(("Training and validation curves", "curves.png"))
        if task == "classification":
            from ..metrics import confusion_matrix
            cm = confusion_matrix(targets, np.asarray(pred), labels=np.arange(len(names)))
            plot_confusion_matrix(cm, out_dir / "confusion_matrix.png", class_names=names)
            images.append(("Confusion matrix (rows: true, columns: predicted)", "confusion_matrix.png"))
        if "per_class" in metrics:
            _plot_per_class(metrics["per_class"], out_dir / "per_class.png")
            images.append(("Per-class precision, recall and F1", "per_class.png"))
        if task != "regression":
            correct = np.asarray([_name(task, names, p) == _name(task, names, t) for p, t in zip(
                pred, [tuple(np.flatnonzero(t)) for t in targets] if task == "multilabel" else targets)], bool)
            _plot_confidence(conf, correct, out_dir / "confidence.png")
            images.append(("Confidence histogram", "confidence.png"))
    except ImportError as e:
        note = f"<p><b>No plots:</b> {html.escape(str(e))}</p>"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             ("<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
              "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}img{max-width:100%}"
              "</style></head><body>"), f"<h1>{html.escape(title)}</h1>", note]
    headline = [(k, f"{v:.4f}" if isinstance(v, float) else v) for k, v in metrics.items()
                if not isinstance(v, dict)]
    parts += ["<h2>Metrics</h2>", _table(["metric", "value"], headline)]
    if "per_class" in metrics:
        rows = [(n, f"{s['precision']:.4f}", f"{s['recall']:.4f}", f"{s['f1']:.4f}", s["support"])
                for n, s in metrics["per_class"].items()]
        m = metrics["macro"]
        rows.append(("macro", f"{m['precision']:.4f}", f"{m['recall']:.4f}", f"{m['f1']:.4f}", ""))
        parts += ["<h2>Per class</h2>", _table(["class", "precision", "recall", "F1", "support"], rows)]
    for caption, name in images:
        parts += [f"<h2>{html.escape(caption)}</h2>", f"<img src='{name}' alt='{html.escape(caption)}'>"]
    if task != "regression":
        wrong = [i for i in range(len(texts)) if not correct[i]]
        wrong.sort(key=lambda i: -conf[i])
        rows = [(f"{conf[i]:.3f}", _name(task, names, targets[i] if task != "multilabel" else
                                         tuple(np.flatnonzero(targets[i]))), _name(task, names, pred[i]), texts[i])
                for i in wrong[:top_errors]]
        parts += [f"<h2>Most confident mistakes ({len(wrong)} mistakes in all)</h2>",
                  _table(["confidence", "true", "predicted", "text"], rows)]
    if config:
        parts += ["<h2>Configuration</h2>", _table(["setting", "value"], list(config.items()))]
    parts.append("</body></html>")
    return atomic_write_text(out_dir / "report.html", "\n".join(parts))
