"""nnforge.data: readers (CSV/TSV/JSONL, column detection, errors), cleaning counts, stratified split, bucketing;
label mapping and the finetune configuration."""
from __future__ import annotations

import numpy as np
import pytest

from nnforge.data import (
    DataError,
    PaddedBatches,
    bucket_batches,
    clean_texts,
    detect_columns,
    pad_sequences,
    read_table,
    stratified_split,
)
from nnforge.finetune.config import FinetuneConfig, load_yaml
from nnforge.finetune.dataset import label_targets
from nnforge.finetune.errors import UsageError


def test_readers_and_detection(tmp_path):
    csv_path = tmp_path / "a.csv"
    csv_path.write_bytes(b"\xef\xbb\xbfid,Review,stars\n1,\"A fine, long film\",pos\n2,dull,neg\n\n")
    t = read_table(csv_path)
    assert t.columns == ["id", "Review", "stars"] and len(t.rows) == 2 and t.lines == [2, 3]
    assert detect_columns(t) == ("Review", "stars")  # text by name; label: the fewest distinct values
    tsv = tmp_path / "b.tsv"
    tsv.write_text("sentence\tlabel\nhello there\t1\nbye\t0\n")
    assert detect_columns(read_table(tsv)) == ("sentence", "label")
    jl = tmp_path / "c.jsonl"
    jl.write_text('{"body": "one two three", "y": 1}\n\n{"body": "four", "y": 0}\n')
    t = read_table(jl)
    assert t.lines == [1, 3] and detect_columns(t) == ("body", "y")
    assert detect_columns(t, text_column="body", label_column="y") == ("body", "y")


@pytest.mark.parametrize("content, needle", [
    (b"", "empty"),
    (b"text,label\n", "no data rows"),
    (b"text,label\na,b,c\n", "line 2: 3 fields"),
    (b"text,label\nok,1\n\xff\xfe,0\n", "line 3, column 1: byte 0xff"),
])
def test_reader_errors(tmp_path, content, needle):
    p = tmp_path / "bad.csv"
    p.write_bytes(content)
    with pytest.raises(DataError, match=needle):
        read_table(p)


def test_reader_missing_file_and_unknown_column(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_table(tmp_path / "missing.csv")
    p = tmp_path / "a.csv"
    p.write_text("text,label\nx,1\n")
    with pytest.raises(DataError, match="no text column 'body'; columns found: text, label"):
        detect_columns(read_table(p), text_column="body")
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"text": 1}\n[1, 2]\n')
    with pytest.raises(DataError, match="line 2: expected a JSON object"):
        read_table(bad)


def test_cleaning_counts():
    texts = ["Cafe\u0301  au\tlait", "  ", None, "Café au lait", "new\nline", "new line", "other", "other"]
    labels = ["a", "a", "a", "a", "b", "a", "b", "b"]
    out, kept, report = clean_texts(texts, labels)
    assert out == ["Café au lait", "new line", "other"] and kept == [0, 4, 6]
    assert (report.empty, report.duplicates, report.conflicts, report.rows_out) == (2, 2, 1, 3)
    assert report.changed == 3  # NFC + whitespace, the blank row, the newline
    assert "2 duplicates dropped" in str(report)


def test_stratified_split_keeps_class_shares():
    labels = np.array([0] * 300 + [1] * 100 + [2] * 50)
    parts = stratified_split(labels, (0.8, 0.1, 0.1), seed=3)
    assert [len(p) for p in parts] == [360, 45, 45]
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(450))
    for p in parts:
        shares = np.bincount(labels[p], minlength=3) / len(p)
        np.testing.assert_allclose(shares, [300 / 450, 100 / 450, 50 / 450], atol=0.01)
    again = stratified_split(labels, (0.8, 0.1, 0.1), seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
    other = stratified_split(labels, (0.8, 0.1, 0.1), seed=4)
    assert not np.array_equal(parts[2], other[2])
    with pytest.raises(DataError, match="sum to 1"):
        stratified_split(labels, (0.8, 0.3))


def test_bucketing_and_dynamic_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 60, size=1000)
    batches = bucket_batches(lengths, 32, seed=0, chunk_batches=10)
    assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(1000))
    padded = sum(len(b) * lengths[b].max() for b in batches)
    naive = sum(len(b) * lengths[b].max() for b in np.array_split(rng.permutation(1000), len(batches)))
    assert padded < 0.7 * naive  # bucketing removes most of the padding
    assert all(np.all(np.diff(lengths[b]) >= 0) for b in batches)
    assert not np.array_equal(np.concatenate(batches), np.argsort(lengths, kind="stable"))  # still mixed
    ordered = bucket_batches(lengths, 32, seed=None)
    assert np.all(np.diff(lengths[np.concatenate(ordered)]) >= 0)
    seqs = [[i] * int(n) for i, n in enumerate(lengths)]
    ds = PaddedBatches(seqs, batches, labels=np.arange(1000), pad_id=0)
    b = ds[0]
    assert b["input_ids"].shape == (32, lengths[batches[0]].max()) and b["input_ids"].dtype == np.int64
    assert np.array_equal(b["attention_mask"].sum(1), lengths[batches[0]])
    assert np.array_equal(b["labels"], batches[0])
    ids, mask = pad_sequences([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]


def test_label_mapping():
    y, names = label_targets(["pos", "neg", "pos"], "classification")
    assert names == ["neg", "pos"] and y.tolist() == [1, 0, 1]
    y, names = label_targets(["10", "2", "2"], "classification")
    assert names == ["2", "10"] and y.tolist() == [1, 0, 0]  # numeric names sort as numbers
    with pytest.raises(DataError, match="only one class"):
        label_targets(["a", "a"], "classification")
    with pytest.raises(DataError, match="labels not seen in training: 'c'"):
        label_targets(["a", "c"], "classification", names=["a", "b"])
    y, names = label_targets([("x",), ("x", "y"), ()], "multilabel")
    assert names == ["x", "y"] and y.tolist() == [[1, 0], [1, 1], [0, 0]]
    y, _ = label_targets([1.5, -2.0], "regression")
    assert y.dtype == np.float32


def test_config_yaml(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("epochs: 2\nlr: 1e-4\nbatch-size: 16\n")
    values = load_yaml(p)
    cfg = FinetuneConfig.from_dict(values)
    assert (cfg.epochs, cfg.lr, cfg.batch_size) == (2, 1e-4, 16)
    with pytest.raises(UsageError, match="unknown setting"):
        FinetuneConfig.from_dict({"learning_rate": 1})
    with pytest.raises(UsageError, match="--task must be one of"):
        FinetuneConfig(task="ranking")
    with pytest.raises(UsageError, match="epochs must be int"):
        FinetuneConfig.from_dict({"epochs": "two"})
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        load_yaml(tmp_path / "bad.yaml")
