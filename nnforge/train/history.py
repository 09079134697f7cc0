"""``History``: the per-epoch logs of a ``fit`` run (what ``Module.fit`` returns)."""
from __future__ import annotations

import os
from typing import Any

from .callbacks import Callback

__all__ = ["History"]


class History(Callback):
    """Records epoch logs: ``history.history`` maps ``loss``, each metric, ``val_*`` and ``lr`` to a list with one
    value per epoch; ``history.epoch`` lists the (0-based) epochs run.

    Example:
        >>> h = model.fit(x, y, epochs=5, validation_split=0.1)
        >>> h.history["val_accuracy"][-1]
        >>> h.plot("curves.png")
    """

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []

    def set_model(self, model: Any) -> None:
        super().set_model(model)
        object.__setattr__(model, "history", self)

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)

    def plot(self, path: str | os.PathLike, metrics: Any = None, title: str | None = None) -> str:
        """Write loss/metric curves (train and validation) as a PNG; needs ``pip install nnforge[plot]``."""
        from .plots import plot_history
        return plot_history(self.history, path, metrics=metrics, title=title)

    def __repr__(self) -> str:
        return f"History(epochs={len(self.epoch)}, keys={list(self.history)})"
