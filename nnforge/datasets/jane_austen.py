"""Jane Austen's six completed novels (public domain), from the R package janeaustenr (MIT).

The Debian package ``r-cran-janeaustenr`` is downloaded but not installed; its lazy-load
database (``data/Rdata.rdx`` + ``Rdata.rdb``) holds one character vector of text lines
per novel, which :mod:`.rdata` decodes without needing R.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from .cache import atomic_write_bytes, cache_dir, fetch_deb_files
from .rdata import read_lazyload_db

__all__ = ["BOOKS", "fetch_jane_austen", "jane_austen_dir", "load_jane_austen", "load_jane_austen_lines"]

# Publication order, the order janeaustenr's austen_books() uses.
BOOKS = ("sensesensibility", "prideprejudice", "mansfieldpark", "emma", "northangerabbey", "persuasion")
_PACKAGE = "r-cran-janeaustenr"
_DATA = "usr/lib/R/site-library/janeaustenr/data"
_SYSTEM_DIR = Path("/", _DATA)  # present if someone installed the R package


def jane_austen_dir() -> Path | None:
    """A directory holding ``Rdata.rdx`` and ``Rdata.rdb``: the installed R package's, then the cache's."""
    for d in (_SYSTEM_DIR, cache_dir("janeaustenr")):
        if (d / "Rdata.rdx").is_file() and (d / "Rdata.rdb").is_file():
            return d
    return None


def fetch_jane_austen() -> Path:
    """Download r-cran-janeaustenr with apt-get (no install) and cache its data files."""
    found = jane_austen_dir()
    if found is not None:
        return found
    files = fetch_deb_files(_PACKAGE, [f"{_DATA}/Rdata.rdb", f"{_DATA}/Rdata.rdx"])
    dest = cache_dir("janeaustenr")
    # .rdb first, .rdx last: jane_austen_dir() only accepts the pair once the index exists.
    atomic_write_bytes(dest / "Rdata.rdb", files[f"{_DATA}/Rdata.rdb"])
    atomic_write_bytes(dest / "Rdata.rdx", files[f"{_DATA}/Rdata.rdx"])
    return dest


def load_jane_austen_lines(books: Iterable[str] | None = None) -> dict[str, list[str]]:
    """Return ``{book: lines}`` for ``books`` (default: all six, in publication order)."""
    wanted = list(BOOKS if books is None else books)
    unknown = [b for b in wanted if b not in BOOKS]
    if unknown:
        raise ValueError(f"unknown book(s) {unknown}; choose from {list(BOOKS)}")
    d = jane_austen_dir()
    if d is None:
        raise FileNotFoundError(
            f"janeaustenr data not found in {_SYSTEM_DIR} or {cache_dir('janeaustenr')}; "
            "run `python -m nnforge.datasets` or call fetch_jane_austen()"
        )
    objects = read_lazyload_db(d / "Rdata.rdx", wanted)
    out: dict[str, list[str]] = {}
    for name in wanted:
        obj = objects[name]
        if obj.kind != "character" or any(line is None for line in obj.value):
            raise ValueError(f"{d}: {name!r} is not a character vector without NAs (got {obj.kind})")
        out[name] = obj.value
    return out


def load_jane_austen(books: Iterable[str] | None = None) -> str:
    """The novels' lines joined with "\\n" (about 4.03 M characters for all six)."""
    return "\n".join(line for lines in load_jane_austen_lines(books).values() for line in lines)
