"""A small progress bar with ETA (on stderr) for data preparation, evaluation and prediction (training uses
``nnforge.train.callbacks.ProgressBar``). On a terminal it redraws in place; elsewhere it prints a line every
``interval`` seconds and at the end."""
from __future__ import annotations

import sys
import time
from typing import Any

from ..train.callbacks import Callback, _fmt_time

__all__ = ["EvalProgress", "Progress"]


class Progress:
    """``with Progress(total, "Tokenizing") as bar: bar.update(n)``."""

    def __init__(self, total: int, desc: str, stream: Any = None, interval: float = 10.0, width: int = 30) -> None:
        self.total, self.desc, self.width, self.interval = max(int(total), 1), desc, width, interval
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = 0
        self._t0 = self._last = time.perf_counter()
        self._drawn = 0

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        elif self.tty and self._drawn:
            self.stream.write("\n")

    def _line(self) -> str:
        elapsed = time.perf_counter() - self._t0
        eta = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        filled = int(self.width * self.done / self.total)
        bar = "=" * filled + "." * (self.width - filled)
        return f"{self.desc} {self.done}/{self.total} [{bar}] {_fmt_time(elapsed)} - ETA {_fmt_time(eta)}"

    def update(self, n: int = 1) -> None:
        self.done = min(self.done + n, self.total)
        now = time.perf_counter()
        if now - self._last < (0.1 if self.tty else self.interval) and self.done < self.total:
            return
        self._last = now
        self._draw()

    def _draw(self) -> None:
        line = self._line()
        if self.tty:
            self.stream.write("\r" + line + " " * max(self._drawn - len(line), 0))
            self._drawn = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            if self._drawn == 0 or self._last < time.perf_counter():
                self._draw()
            self.stream.write("\n")
            self.stream.flush()
        elif self.done < self.total or self._drawn == 0 and self.done == 0:
            self._draw()


class EvalProgress(Callback):
    """A :class:`Progress` over the validation batches that ``Trainer.evaluate`` runs during training."""

    main_process_only = True

    def __init__(self, desc: str = "Validating") -> None:
        super().__init__()
        self.desc = desc
        self.total = 0
        self._bar: Progress | None = None

    def on_test_begin(self, logs=None):
        self._bar = Progress(self.total, self.desc)

    def on_test_batch_end(self, batch, logs=None):
        if self._bar is not None:
            self._bar.update()

    def on_test_end(self, logs=None):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
