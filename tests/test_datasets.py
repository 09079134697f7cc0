"""Tests for nnforge.datasets: real-data counts (skipped when not fetched) and error paths."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from nnforge.datasets import cache, rdata
from nnforge.datasets.fashion_mnist import fashion_mnist_dir, load_fashion_mnist, read_idx_images, read_idx_labels
from nnforge.datasets.jane_austen import BOOKS, jane_austen_dir, load_jane_austen, load_jane_austen_lines
from nnforge.datasets.movie_reviews import load_movie_reviews, movie_reviews_path, parse_movie_reviews

FETCH_HINT = "run .ci/fetch_data.sh (or `python -m nnforge.datasets`) to fetch it"
needs_fashion = pytest.mark.skipif(fashion_mnist_dir() is None, reason=f"Fashion-MNIST absent; {FETCH_HINT}")
needs_movies = pytest.mark.skipif(not movie_reviews_path().is_file(), reason=f"movie reviews absent; {FETCH_HINT}")
needs_austen = pytest.mark.skipif(jane_austen_dir() is None, reason=f"janeaustenr data absent; {FETCH_HINT}")


# ---------------------------------------------------------------- Fashion-MNIST


@needs_fashion
@pytest.mark.parametrize("split,n", [("train", 60000), ("test", 10000)])
def test_fashion_mnist_counts_and_balance(split: str, n: int) -> None:
    images, labels = load_fashion_mnist(split)
    assert images.shape == (n, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (n,) and labels.dtype == np.int64
    assert np.bincount(labels, minlength=10).tolist() == [n // 10] * 10
    assert 0 < images.mean() < 255 and images.max() == 255


def _idx(magic: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    return struct.pack(f">{1 + len(dims)}I", magic, *dims) + payload


def test_idx_roundtrip(tmp_path: Path) -> None:
    imgs = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "i.gz").write_bytes(gzip.compress(_idx(0x803, (2, 3, 4), imgs.tobytes())))
    (tmp_path / "l").write_bytes(_idx(0x801, (2,), bytes([7, 3])))  # uncompressed also accepted
    np.testing.assert_array_equal(read_idx_images(tmp_path / "i.gz"), imgs)
    assert read_idx_labels(tmp_path / "l").tolist() == [7, 3]


def test_idx_truncated_payload_names_file(tmp_path: Path) -> None:
    path = tmp_path / "short-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(_idx(0x803, (10, 28, 28), b"\0" * 100)))
    with pytest.raises(ValueError, match=r"short-images-idx3-ubyte\.gz.*truncated"):
        read_idx_images(path)


def test_idx_truncated_gzip_names_file(tmp_path: Path) -> None:
    path = tmp_path / "cut-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(_idx(0x801, (1000,), b"\1" * 1000))[:-20])
    with pytest.raises(ValueError, match=r"cut-labels-idx1-ubyte\.gz"):
        read_idx_labels(path)


def test_idx_bad_magic(tmp_path: Path) -> None:
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(_idx(0x803, (1,), b"\0")))  # image magic in a label file
    with pytest.raises(ValueError, match=r"labels\.gz.*magic"):
        read_idx_labels(path)


def test_idx_short_header(tmp_path: Path) -> None:
    path = tmp_path / "tiny"
    path.write_bytes(b"\0\0\x08")
    with pytest.raises(ValueError, match="tiny.*header"):
        read_idx_images(path)


def test_fashion_mnist_wrong_split_and_dims(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist("valid")
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(0x803, (1, 2, 2), b"\0" * 4)))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(0x801, (1,), b"\0")))
    with pytest.raises(ValueError, match="expected shape"):
        load_fashion_mnist("test", root=tmp_path)


# ---------------------------------------------------------------- movie reviews


@needs_movies
def test_movie_reviews_counts() -> None:
    texts, labels = load_movie_reviews()
    assert len(texts) == len(labels) == 10568
    assert int(labels.sum()) == 5242 and int((labels == 0).sum()) == 5326
    assert labels.dtype == np.int64
    assert all(t and "\t" not in t and "\r" not in t for t in texts)
    assert any("clichés" in t for t in texts)  # decoded as UTF-8, not mojibake
    assert texts[0].startswith("The Rock is destined to be the 21st Century's new")


def test_movie_reviews_parse_and_errors() -> None:
    raw = "1\t2.5\tGood film\r\n2\t0\tMeh\r\n3\t-1.25\tBad caf\xe9 scene\r\n".encode("cp1252")
    texts, labels = parse_movie_reviews(raw)  # not UTF-8: falls back to cp1252
    assert texts == ["Good film", "Bad café scene"] and labels.tolist() == [1, 0]
    with pytest.raises(ValueError, match=r"src:2: .*3 tab-separated"):
        parse_movie_reviews(b"1\t1\tok\r\n2\tno tabs here\r\n", source="src")
    with pytest.raises(ValueError, match=r"outside \[-4, 4\]"):
        parse_movie_reviews(b"1\t9\ttoo good\r\n")


# ---------------------------------------------------------------- Jane Austen


@needs_austen
def test_jane_austen_text() -> None:
    text = load_jane_austen()
    assert abs(len(text) - 3.95e6) / 3.95e6 < 0.05, len(text)
    assert "It is a truth universally acknowledged" in text
    assert text.startswith("SENSE AND SENSIBILITY")
    lines = load_jane_austen_lines()
    assert list(lines) == list(BOOKS)
    assert len(lines["emma"]) > 10000 and lines["emma"][0] == "EMMA"
    assert "£20,000" in load_jane_austen(["mansfieldpark"])  # the one non-ASCII (UTF-8 flagged) line
    with pytest.raises(ValueError, match="unknown book"):
        load_jane_austen(["ulysses"])


# ---------------------------------------------------------------- R serialization

_UTF8, _LATIN1 = 1 << 3, 1 << 2


def _i(*xs: int) -> bytes:
    return struct.pack(f">{len(xs)}i", *xs)


def _flags(sexp: int, levels: int = 0, attr: bool = False, tag: bool = False) -> bytes:
    return _i(sexp | (levels << 12) | (attr << 9) | (tag << 10))


def _chars(s: str | None, enc: int = _UTF8, codec: str = "utf-8") -> bytes:
    if s is None:
        return _flags(9) + _i(-1)
    raw = s.encode(codec)
    return _flags(9, enc) + _i(len(raw)) + raw


def _header(version: int = 3) -> bytes:
    return b"X\n" + _i(version, 0x040201, 0x030500) + (_i(5) + b"UTF-8" if version == 3 else b"")


def _strsxp(*items: str | None) -> bytes:
    return _flags(16) + _i(len(items)) + b"".join(_chars(s) for s in items)


def _named_list() -> bytes:
    # list(a = 1:2, b = c("x", NA), c = 2.5, d = structure(list(TRUE), names = "n")).
    # Elements are read before their list's attributes, so the symbol `names` is first
    # written inside d; the outer list's "names" tag is a back-reference (REFSXP 1) to it.
    inner_names = _flags(2, tag=True) + _flags(1) + _chars("names") + _strsxp("n") + _i(254)
    inner = _flags(19, attr=True) + _i(1) + _flags(10) + _i(1, 1) + inner_names
    body = _flags(13) + _i(2, 1, 2) + _strsxp("x", None) + _flags(14) + _i(1) + struct.pack(">d", 2.5) + inner
    outer_names = _flags(2, tag=True) + _i(255 | (1 << 8)) + _strsxp("a", "b", "c", "d") + _i(254)
    return _flags(19, attr=True) + _i(4) + body + outer_names


def test_rdata_reads_vectors_attributes_and_refs() -> None:
    for version in (2, 3):
        obj = rdata.unserialize(_header(version) + _named_list())
        assert obj.kind == "list" and obj.names == ["a", "b", "c", "d"]
        assert obj["a"].kind == "integer" and obj["a"].value.tolist() == [1, 2]
        assert obj["b"].value == ["x", None]
        assert obj["c"].kind == "double" and obj["c"].value.tolist() == [2.5]
        assert obj["d"].names == ["n"] and obj["d"]["n"].kind == "logical"
        assert obj["d"]["n"].value.tolist() == [1]


def test_rdata_encodings_and_rds_compression() -> None:
    stream = _header() + _flags(16) + _i(2) + _chars("café", _LATIN1, "latin-1") + _chars("naïve")
    for blob in (stream, gzip.compress(stream)):
        assert rdata.parse_rds(blob).value == ["café", "naïve"]


@pytest.mark.parametrize("sexp,name", [(3, "CLOSXP"), (4, "ENVSXP"), (21, "BCODESXP"), (99, "unknown")])
def test_rdata_unsupported_sexp_raises(sexp: int, name: str) -> None:
    with pytest.raises(ValueError, match=f"unsupported SEXP type {name}"):
        rdata.unserialize(_header() + _flags(sexp) + _i(0) * 4)


def test_rdata_malformed_streams_raise() -> None:
    with pytest.raises(ValueError, match="truncated"):
        rdata.unserialize(_header() + _named_list()[:-7])
    with pytest.raises(ValueError, match="bad vector length"):
        rdata.unserialize(_header() + _flags(13) + _i(2**30))  # claims 4 GiB of ints
    with pytest.raises(ValueError, match="bad reference"):
        rdata.unserialize(_header() + _i(255 | (5 << 8)))
    with pytest.raises(ValueError, match="unsupported format"):
        rdata.unserialize(b"A\n" + _i(3))
    with pytest.raises(ValueError, match="nesting too deep"):
        rdata.unserialize(_header() + (_flags(19) + _i(1)) * 2000 + _i(254))


def test_rdata_altrep_compact_sequence() -> None:
    # R >= 3.5 writes 1:5 as ALTREP: info pairlist (class, package, type), state c(n, start, step), attrs.
    sym = lambda name: _flags(1) + _chars(name)  # noqa: E731
    info = _flags(2) + sym("compact_intseq") + _flags(2) + sym("base") + _flags(2) + _flags(13) + _i(1, 13) + _i(254)
    state = _flags(14) + _i(3) + struct.pack(">3d", 5, 1, 1)
    obj = rdata.unserialize(_header() + _i(238) + info + state + _i(254))
    assert obj.kind == "integer" and obj.value.tolist() == [1, 2, 3, 4, 5]
    bogus = info.replace(b"compact_intseq", b"compact_intsez")
    with pytest.raises(ValueError, match="unsupported ALTREP class 'compact_intsez'"):
        rdata.unserialize(_header() + _i(238) + bogus + state + _i(254))


def test_rdata_lazyload_db(tmp_path: Path) -> None:
    objs = [_header() + _strsxp("line one", "line two"), _header() + _flags(13) + _i(1, 42)]
    blobs = [struct.pack(">I", len(o)) + zlib.compress(o) for o in objs]
    (tmp_path / "Rdata.rdb").write_bytes(b"".join(blobs))
    entry = lambda off, n: _flags(13) + _i(2, off, n)  # noqa: E731
    variables = _flags(19, attr=True) + _i(2) + entry(0, len(blobs[0])) + entry(len(blobs[0]), len(blobs[1]))
    variables += _flags(2, tag=True) + _flags(1) + _chars("names") + _strsxp("text", "answer") + _i(254)
    index = _flags(19, attr=True) + _i(1) + variables + _flags(2, tag=True) + _i(0x1FF) + _strsxp("variables")
    (tmp_path / "Rdata.rdx").write_bytes(gzip.compress(_header() + index + _i(254)))
    got = rdata.read_lazyload_db(tmp_path / "Rdata.rdx")
    assert got["text"].value == ["line one", "line two"] and got["answer"].value.tolist() == [42]
    # A corrupted entry must fail loudly, naming the entry.
    (tmp_path / "Rdata.rdb").write_bytes(blobs[0][:4] + b"\0" * (len(blobs[0]) - 4) + blobs[1])
    with pytest.raises(ValueError, match=r"Rdata\.rdb\[text\]"):
        rdata.read_lazyload_db(tmp_path / "Rdata.rdx", ["text"])


# ---------------------------------------------------------------- cache


def test_cache_dir_and_atomic_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NNFORGE_HOME", raising=False)  # NNFORGE_HOME would take precedence
    monkeypatch.setenv("NNFORGE_CACHE", str(tmp_path / "c"))
    d = cache.cache_dir("sub")
    assert d == tmp_path / "c" / "sub" and d.is_dir()
    cache.atomic_write_bytes(d / "f.bin", b"old")
    cache.atomic_write_bytes(d / "f.bin", b"new")
    assert (d / "f.bin").read_bytes() == b"new"
    assert sorted(p.name for p in d.iterdir()) == ["f.bin"]  # no temp files left behind
