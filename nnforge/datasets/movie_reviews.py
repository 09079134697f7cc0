"""Movie-review sentences with human sentiment ratings (Hutto & Gilbert, ICWSM 2014).

The file ships inside the vaderSentiment 3.3.2 sdist (MIT licence), nested in a second
tarball.  Each line is ``id<TAB>mean_rating<TAB>text`` with CRLF line ends; ratings are
means of 20 raters on [-4, 4].  Label = 1 if rating > 0, 0 if < 0; neutral rows are dropped.
"""

from __future__ import annotations

import io
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from .cache import atomic_write_bytes, cache_dir, pip_download

__all__ = ["fetch_movie_reviews", "load_movie_reviews", "movie_reviews_path", "parse_movie_reviews"]

_PIP_SPEC = "vaderSentiment==3.3.2"
_OUTER_MEMBER = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
_INNER_MEMBER = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
_FILENAME = "movieReviewSnippets_GroundTruth.txt"


def movie_reviews_path() -> Path:
    """Where the extracted ground-truth file lives in the cache (it may not exist yet)."""
    return cache_dir("vader") / _FILENAME


def _tar_member(data: bytes, name: str, source: str) -> bytes:
    # Read the member straight out of the archive: nothing is extracted to disk, so hostile
    # member paths (../, symlinks) cannot escape.
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        try:
            f = tar.extractfile(name)
        except KeyError:
            f = None
        if f is None:
            raise ValueError(f"{source}: no regular file {name!r} in archive")
        return f.read()


def fetch_movie_reviews() -> Path:
    """Download the vaderSentiment sdist with pip (if not cached) and cache only the ratings file."""
    path = movie_reviews_path()
    if path.is_file():
        return path
    with tempfile.TemporaryDirectory(prefix="nnforge-vader-") as tmp:
        sdist = pip_download(_PIP_SPEC, tmp, "--no-binary", ":all:", pattern="vaderSentiment-3.3.2.tar.gz")
        inner = _tar_member(sdist.read_bytes(), _OUTER_MEMBER, sdist.name)
        text = _tar_member(inner, _INNER_MEMBER, _OUTER_MEMBER)
    parse_movie_reviews(text, source=_INNER_MEMBER)  # refuse to cache something we cannot read
    return atomic_write_bytes(path, text)


# cp1252 with its five undefined bytes (0x81, 0x8d, 0x8f, 0x90, 0x9d) kept as latin-1,
# expressed as a translation of latin-1 text so decoding never fails.
_CP1252_FIX = {b: bytes([b]).decode("cp1252") for b in range(0x80, 0xA0) if b not in (0x81, 0x8D, 0x8F, 0x90, 0x9D)}


def _decode(raw: bytes) -> str:
    # The 3.3.2 file is valid UTF-8 (accents such as "clichés", "Almodóvar", en dashes).
    # Older copies of these files were cp1252, so fall back to it rather than failing.
    raw = raw.removeprefix(b"\xef\xbb\xbf")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1").translate(_CP1252_FIX)


def parse_movie_reviews(raw: bytes, source: str = "<bytes>") -> tuple[list[str], np.ndarray]:
    """Parse the ground-truth file's bytes into ``(texts, labels)``, dropping neutral rows."""
    texts: list[str] = []
    labels: list[int] = []
    # Split on "\n" only: str.splitlines would also split on U+0085/U+2028 inside a sentence.
    for lineno, line in enumerate(_decode(raw).split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        fields = line.split("\t", 2)
        try:
            if len(fields) != 3:
                raise ValueError("expected 3 tab-separated fields")
            rating = float(fields[1])
            if not -4.0 <= rating <= 4.0:
                raise ValueError(f"rating {rating} outside [-4, 4]")
        except ValueError as e:
            raise ValueError(f"{source}:{lineno}: {e}: {line[:80]!r}") from None
        if rating != 0.0:
            texts.append(fields[2].strip())
            labels.append(1 if rating > 0 else 0)
    return texts, np.asarray(labels, dtype=np.int64)


def load_movie_reviews() -> tuple[list[str], np.ndarray]:
    """Return ``(texts, labels int64)``: 10,568 sentences, 1 = positive, 0 = negative."""
    path = movie_reviews_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found; run `python -m nnforge.datasets` or call fetch_movie_reviews()"
        )
    return parse_movie_reviews(path.read_bytes(), source=str(path))
