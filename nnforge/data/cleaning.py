"""Text cleaning before training: Unicode normalisation, whitespace, empty rows and exact duplicates, counted."""
from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["CleanReport", "clean_text", "clean_texts"]

_SPACE = re.compile(r"\s+")
# zero-width characters and the BOM carry no meaning for a classifier
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))


@dataclass
class CleanReport:
    """What cleaning did: rows read, rows whose text changed, empty rows dropped, exact duplicates dropped
    (same text and label), and conflicting duplicates (same text, other label; the first row is kept)."""

    rows_in: int = 0
    changed: int = 0
    empty: int = 0
    duplicates: int = 0
    conflicts: int = 0
    rows_out: int = 0

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (f"{self.rows_in} rows read, {self.changed} normalised, {self.empty} empty dropped, "
                f"{self.duplicates} duplicates dropped, {self.conflicts} conflicting duplicates dropped, "
                f"{self.rows_out} kept")


def clean_text(text: Any, form: str = "NFC") -> str:
    """Unicode ``form`` normalisation, zero-width characters removed, runs of whitespace (incl. newlines and
    tabs) collapsed to one space, ends stripped. ``None`` becomes ``""``."""
    if text is None:
        return ""
    text = unicodedata.normalize(form, str(text)).translate(_INVISIBLE)
    return _SPACE.sub(" ", text).strip()


def clean_texts(texts: list, labels: list | None = None, form: str = "NFC",
                drop_duplicates: bool = True) -> tuple[list[str], list[int], CleanReport]:
    """Clean ``texts``; drop empty rows and exact duplicates. Returns ``(texts, kept_indices, report)``:
    ``kept_indices`` index the input rows (use them to select labels and other columns).

    Args:
        labels: per-row labels (any hashable or JSON-like values); duplicates are judged on (text, label), and a
            text seen again with another label counts as a conflict (the first row wins).
        form: ``"NFC"`` (default, keeps characters as written) or ``"NFKC"`` (also folds compatibility forms).
    """
    report = CleanReport(rows_in=len(texts))
    out, kept = [], []
    seen: dict[str, str] = {}
    for i, raw in enumerate(texts):
        text = clean_text(raw, form)
        if text != ("" if raw is None else str(raw)):
            report.changed += 1
        if not text:
            report.empty += 1
            continue
        if drop_duplicates:
            label = repr(labels[i]) if labels is not None else ""
            if text in seen:
                if seen[text] == label:
                    report.duplicates += 1
                else:
                    report.conflicts += 1
                continue
            seen[text] = label
        out.append(text)
        kept.append(i)
    report.rows_out = len(out)
    return out, kept, report
