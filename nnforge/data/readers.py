"""Readers for labelled text tables: CSV, TSV and JSON Lines, with text/label column detection.

``read_table(path)`` returns a :class:`Table` (column names + rows of strings / JSON values). Bytes must be UTF-8
(a BOM is allowed); an undecodable byte is reported with its line number.

Example:
    >>> table = read_table("reviews.csv")                       # doctest: +SKIP
    >>> text_col, label_col = detect_columns(table)             # doctest: +SKIP
"""
from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DataError

__all__ = ["Table", "detect_columns", "read_table"]

_TEXT_NAMES = ("text", "sentence", "review", "content", "body", "document", "comment", "message", "tweet", "question",
               "utterance", "input", "sentence1", "x")
_LABEL_NAMES = ("label", "labels", "sentiment", "class", "category", "target", "polarity", "rating", "score",
                "tag", "tags", "y", "output")


@dataclass
class Table:
    """Rows read from a file: ``columns`` (names in file order) and ``rows`` (one dict per data row); ``lines[i]``
    is the 1-based line number of ``rows[i]`` in the file."""

    path: Path
    columns: list[str]
    rows: list[dict[str, Any]]
    lines: list[int]

    def column(self, name: str) -> list[Any]:
        return [r.get(name) for r in self.rows]


def _decode(raw: bytes, path: Path) -> str:
    raw = raw.removeprefix(b"\xef\xbb\xbf")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataError(f"{path}: line {line}, column {col}: byte 0x{raw[e.start]:02x} is not valid UTF-8 "
                        f"(save the file as UTF-8)") from None


def _format(path: Path, text: str, fmt: str | None) -> str:
    if fmt:
        if fmt not in ("csv", "tsv", "jsonl"):
            raise DataError(f"{path}: unknown format {fmt!r} (expected csv, tsv or jsonl)")
        return fmt
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".tsv", ".tab"):
        return "tsv"
    if suffix == ".csv":
        return "csv"
    first = text.lstrip()[:1]
    if first == "{":
        return "jsonl"
    head = text.split("\n", 1)[0]
    return "tsv" if head.count("\t") > head.count(",") else "csv"


def read_table(path: str | os.PathLike, fmt: str | None = None) -> Table:
    """Read a CSV (header row), TSV (header row) or JSON Lines (one object per line) file.

    Args:
        path: the file; the format comes from its suffix (``.csv``, ``.tsv``, ``.jsonl``/``.json``), else from
            its first line.
        fmt: force ``"csv"``, ``"tsv"`` or ``"jsonl"``.
    Raises:
        DataError: a missing, empty or malformed file, or bytes that are not UTF-8 (the line is named).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a CSV, TSV or JSONL file")
    raw = path.read_bytes()
    text = _decode(raw, path)
    if not text.strip():
        raise DataError(f"{path}: the file is empty")
    fmt = _format(path, text, fmt)
    table = _read_jsonl(path, text) if fmt == "jsonl" else _read_delimited(path, text, "\t" if fmt == "tsv" else ",")
    if not table.rows:
        raise DataError(f"{path}: no data rows (only a header: {', '.join(table.columns)})")
    return table


def _read_delimited(path: Path, text: str, sep: str) -> Table:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    try:
        header = next(reader)
    except csv.Error as e:
        raise DataError(f"{path}: line 1: {e}") from None
    columns = [h.strip() for h in header]
    if len(set(columns)) != len(columns) or any(not c for c in columns):
        raise DataError(f"{path}: line 1: the header must name every column once, got {header}")
    rows, lines = [], []
    try:
        for record in reader:
            if not record or all(not f.strip() for f in record):
                continue
            if len(record) != len(columns):
                raise DataError(f"{path}: line {reader.line_num}: {len(record)} fields, the header has "
                                f"{len(columns)} ({', '.join(columns)})")
            rows.append(dict(zip(columns, record)))
            lines.append(reader.line_num)
    except csv.Error as e:
        raise DataError(f"{path}: line {reader.line_num}: {e}") from None
    return Table(path, columns, rows, lines)


def _read_jsonl(path: Path, text: str) -> Table:
    columns: dict[str, None] = {}
    rows, lines = [], []
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: line {lineno}: not valid JSON ({e.msg})") from None
        except (ValueError, RecursionError) as e:  # a number of thousands of digits, nesting too deep
            raise DataError(f"{path}: line {lineno}: not valid JSON ({type(e).__name__}: {str(e)[:120]})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}: line {lineno}: expected a JSON object per line, got {type(obj).__name__}")
        for k in obj:
            columns.setdefault(str(k))
        rows.append({str(k): v for k, v in obj.items()})
        lines.append(lineno)
    return Table(path, list(columns), rows, lines)


def _is_number(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, (int, float)):
        return True
    try:
        float(str(v))
        return True
    except ValueError:
        return False


def detect_columns(table: Table, text_column: str | None = None, label_column: str | None = None,
                   need_label: bool = True) -> tuple[str, str | None]:
    """``(text_column, label_column)``: the given names (checked), else detected.

    Detection: a column with a conventional name (``text``, ``sentence``, ``review``... / ``label``,
    ``sentiment``, ``class``...), else the text column is the one with the longest mean string length and the
    label column the remaining one with the fewest distinct values.

    Raises:
        DataError: a named column does not exist, or nothing fits (the columns found are listed).
    """
    cols = table.columns
    found = f"columns found: {', '.join(cols)}"
    for what, name in (("text", text_column), ("label", label_column)):
        if name is not None and name not in cols:
            raise DataError(f"{table.path}: no {what} column {name!r}; {found}")
    lower = {c.lower(): c for c in cols}
    sample = table.rows[:2000]
    if text_column is None:
        named = [lower[n] for n in _TEXT_NAMES if n in lower and lower[n] != label_column]
        if named:
            text_column = named[0]
        else:
            stringy = [c for c in cols if c != label_column and not all(_is_number(r.get(c, "")) for r in sample)]
            if not stringy:
                raise DataError(f"{table.path}: cannot tell which column holds the text (no column of strings); "
                                f"{found}; pass --text-column")
            text_column = max(stringy, key=lambda c: sum(len(str(r.get(c, ""))) for r in sample))
    if label_column is None and need_label:
        named = [lower[n] for n in _LABEL_NAMES if n in lower and lower[n] != text_column]
        if named:
            label_column = named[0]
        else:
            rest = [c for c in cols if c != text_column]
            if not rest:
                raise DataError(f"{table.path}: cannot find a label column besides the text column "
                                f"{text_column!r}; {found}; pass --label-column")
            distinct = {c: len({json.dumps(r.get(c), sort_keys=True, default=str) for r in sample}) for c in rest}
            # an id column (by name, or one value per row) is never the label when something else is left
            not_ids = [c for c in rest if c.lower() not in ("id", "idx", "index", "uid", "key")
                       and (distinct[c] < len(sample) or len(sample) < 3)]
            label_column = min(not_ids or rest, key=distinct.__getitem__)
    return text_column, label_column
