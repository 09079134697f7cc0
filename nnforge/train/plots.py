"""PNG plots of training curves and confusion matrices (matplotlib, an optional extra: ``pip install nnforge[plot]``).

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, no global backend change, no display needed)
and written atomically.
"""
from __future__ import annotations

import io
import os
from typing import Any

import numpy as np

from ..io.atomic import atomic_write_bytes

__all__ = ["plot_confusion_matrix", "plot_history"]


def _figure(figsize: tuple) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError("plotting needs matplotlib: pip install nnforge[plot]") from e
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str | os.PathLike, dpi: int) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    return os.fspath(path)


def plot_history(history: dict, path: str | os.PathLike, metrics: Any = None, title: str | None = None,
                 dpi: int = 100) -> str:
    """One panel per quantity (``loss``, each metric), the training curve and its ``val_`` curve, per epoch.

    Args:
        history: ``{key: [value per epoch]}`` (``History.history``).
        metrics: quantities to draw (default: every key but ``lr``, ``val_`` pairs merged).
    Returns:
        the path written.
    """
    names = list(metrics) if metrics else [k for k in history if not k.startswith("val_") and k != "lr"]
    names += [k[4:] for k in history if k.startswith("val_") and k[4:] not in names and metrics is None]
    if not names:
        raise ValueError("plot_history: nothing to plot (the history is empty)")
    fig = _figure((4.5 * len(names), 3.5))
    for i, name in enumerate(names):
        ax = fig.add_subplot(1, len(names), i + 1)
        for key, label in ((name, "train"), (f"val_{name}", "validation")):
            if key in history:
                ys = history[key]
                ax.plot(np.arange(1, len(ys) + 1), ys, marker="o", markersize=3, label=label)
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return _save(fig, path, dpi)


def plot_confusion_matrix(cm: Any, path: str | os.PathLike, class_names: Any = None, normalize: bool = False,
                          title: str = "Confusion matrix", cmap: str = "Blues", dpi: int = 100) -> str:
    """Draw a confusion matrix (rows: true class, columns: predicted class) with the count in each cell.

    Args:
        cm: (K, K) matrix, e.g. ``nnforge.metrics.confusion_matrix(y_true, y_pred)``.
        class_names: K tick labels (default ``0..K-1``).
        normalize: show row fractions (recall per class) instead of counts.

    Example:
        >>> plot_confusion_matrix(metrics.confusion_matrix(y, model.predict(x).argmax(1)), "cm.png")
    """
    cm = np.asarray(cm, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"plot_confusion_matrix: expected a square (K, K) matrix, got shape {cm.shape}")
    k = cm.shape[0]
    if normalize:
        cm = np.nan_to_num(cm / cm.sum(axis=1, keepdims=True))
    names = [str(c) for c in (class_names if class_names is not None else range(k))]
    if len(names) != k:
        raise ValueError(f"plot_confusion_matrix: {len(names)} class_names for a {k}x{k} matrix")
    size = max(4.0, 0.55 * k + 2)
    fig = _figure((size, size))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(cm, cmap=cmap)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(k), names, rotation=45, ha="right")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    hi = cm.max() if cm.size else 0.0
    for i in range(k):
        for j in range(k):
            text = f"{cm[i, j]:.2f}" if normalize else f"{int(cm[i, j])}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if cm[i, j] > hi / 2 else "black")
    return _save(fig, path, dpi)
