"""A small, safe reader for R's serialization format (XDR, versions 2 and 3).

Only data is decoded: NULL, pairlists, symbols, strings, integer/double/logical vectors,
lists and the back-references between them, plus R's compact ALTREP sequences.  Anything
that could carry code (closures, environments, bytecode, ...) raises ValueError naming the
type.  Every read is bounds-checked, so malformed input raises ValueError rather than
allocating huge arrays or recursing without limit.

Also reads R lazy-load databases (``Rdata.rdx`` + ``Rdata.rdb``), the form in which R
packages ship their data sets.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RObject", "parse_rds", "read_rds", "read_lazyload_db", "unserialize"]

NA_INTEGER = -(2**31)
# Real data nests a handful of levels; each level costs ~2-3 Python frames, so this stays
# well inside Python's default recursion limit.
_MAX_DEPTH = 128

# SEXP type codes (R's Rinternals.h / serialize.c).
_NAMES = {
    0: "NILSXP", 1: "SYMSXP", 2: "LISTSXP", 3: "CLOSXP", 4: "ENVSXP", 5: "PROMSXP",
    6: "LANGSXP", 7: "SPECIALSXP", 8: "BUILTINSXP", 9: "CHARSXP", 10: "LGLSXP",
    13: "INTSXP", 14: "REALSXP", 15: "CPLXSXP", 16: "STRSXP", 17: "DOTSXP", 18: "ANYSXP",
    19: "VECSXP", 20: "EXPRSXP", 21: "BCODESXP", 22: "EXTPTRSXP", 23: "WEAKREFSXP",
    24: "RAWSXP", 25: "S4SXP", 238: "ALTREP_SXP", 239: "ATTRLISTSXP", 240: "ATTRLANGSXP",
    241: "BASEENV_SXP", 242: "EMPTYENV_SXP", 243: "BCREPREF", 244: "BCREPDEF",
    245: "GENERICREFSXP", 246: "CLASSREFSXP", 247: "PERSISTSXP", 248: "PACKAGESXP",
    249: "NAMESPACESXP", 250: "BASENAMESPACE_SXP", 251: "MISSINGARG_SXP",
    252: "UNBOUNDVALUE_SXP", 253: "GLOBALENV_SXP", 254: "NILVALUE_SXP", 255: "REFSXP",
}
NILSXP, SYMSXP, LISTSXP, CHARSXP, LGLSXP, INTSXP, REALSXP, STRSXP, VECSXP = 0, 1, 2, 9, 10, 13, 14, 16, 19
ALTREP_SXP, NILVALUE_SXP, REFSXP = 238, 254, 255
_VECTOR_DTYPES = {INTSXP: ">i4", LGLSXP: ">i4", REALSXP: ">f8"}
_KIND = {NILSXP: "NULL", SYMSXP: "symbol", LISTSXP: "pairlist", LGLSXP: "logical",
         INTSXP: "integer", REALSXP: "double", STRSXP: "character", VECSXP: "list"}


@dataclass
class RObject:
    """A decoded R value.

    ``value`` is: None (NULL); str (symbol); list[str | None] (character, None = NA);
    np.ndarray (integer/logical as int32 with NA = -2**31, double as float64);
    list[RObject] (list); list[tuple[str | None, RObject]] (pairlist, with tags).
    """

    kind: str
    value: Any
    attributes: dict[str, RObject] = field(default_factory=dict)

    @property
    def names(self) -> list[str | None] | None:
        names = self.attributes.get("names")
        return None if names is None else names.value

    def __getitem__(self, name: str) -> RObject:
        """Element of a named list / pairlist by name."""
        if self.kind == "pairlist":
            for tag, item in self.value:
                if tag == name:
                    return item
        elif self.kind == "list" and self.names is not None and name in self.names:
            return self.value[self.names.index(name)]
        raise KeyError(name)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.refs: list[RObject] = []
        self.native_encoding = "utf-8"

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            have = len(self.data) - self.pos
            raise ValueError(f"R stream truncated: need {n} bytes at offset {self.pos}, have {have}")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def i32(self) -> int:
        return int.from_bytes(self.take(4), "big", signed=True)

    def length(self, item_size: int) -> int:
        n = self.i32()
        if n == -1:  # long vector: two more ints, upper and lower 32 bits
            n = (self.i32() << 32) | (self.i32() & 0xFFFFFFFF)
        # Each element needs at least item_size bytes, so a huge declared length is corruption.
        if n < 0 or n * item_size > len(self.data) - self.pos:
            raise ValueError(f"R stream: bad vector length {n} at offset {self.pos}")
        return n

    def header(self) -> None:
        fmt = bytes(self.take(2))
        if fmt != b"X\n":
            raise ValueError(f"R stream: unsupported format {fmt!r} (only XDR 'X\\n' is supported)")
        version = self.i32()
        self.i32(), self.i32()  # writer's R version, minimal reader version
        if version == 3:
            self.native_encoding = bytes(self.take(self.length(1))).decode("ascii", "replace")
        elif version != 2:
            raise ValueError(f"R stream: unsupported serialization version {version}")

    def charsxp(self, levels: int) -> str | None:
        n = self.i32()
        if n == -1:
            return None  # NA_STRING
        raw = bytes(self.take(n))  # take() rejects other negative lengths
        if levels & 4:  # LATIN1_MASK
            return raw.decode("latin-1")
        if levels & 64:  # ASCII_MASK
            return raw.decode("ascii")
        if levels & 8:  # UTF8_MASK
            return raw.decode("utf-8")
        if levels & 2:  # BYTES_MASK: arbitrary bytes, keep them recoverable
            return raw.decode("utf-8", "surrogateescape")
        try:  # native encoding, as declared by a version-3 header
            return raw.decode(self.native_encoding)
        except (LookupError, UnicodeDecodeError):
            return raw.decode("utf-8", "surrogateescape")

    def attributes(self, depth: int) -> dict[str, RObject]:
        attrs = self.item(depth)
        if attrs.kind != "pairlist":
            raise ValueError(f"R stream: attributes must be a pairlist, got {attrs.kind}")
        return {str(tag): value for tag, value in attrs.value}

    def item(self, depth: int = 0) -> RObject:
        if depth > _MAX_DEPTH:
            raise ValueError("R stream: nesting too deep")
        flags = self.i32()
        sexp, levels = flags & 0xFF, flags >> 12
        has_attr = bool(flags & (1 << 9))  # (the tag bit only matters for pairlists)
        if sexp in (NILVALUE_SXP, NILSXP):
            return RObject("NULL", None)
        if sexp == REFSXP:
            index = (flags >> 8) or self.i32()
            if not 1 <= index <= len(self.refs):
                raise ValueError(f"R stream: bad reference {index}")
            return self.refs[index - 1]
        if sexp == SYMSXP:
            name = self.item(depth + 1)
            if name.kind != "CHARSXP":
                raise ValueError("R stream: symbol name is not a CHARSXP")
            sym = RObject("symbol", name.value)
            self.refs.append(sym)  # symbols are entered in the reference table when read
            return sym
        if sexp == LISTSXP:
            return self.pairlist(flags, depth)
        if sexp == CHARSXP:
            return RObject("CHARSXP", self.charsxp(levels))
        if sexp in _VECTOR_DTYPES:
            dtype = np.dtype(_VECTOR_DTYPES[sexp])
            n = self.length(dtype.itemsize)
            value = np.frombuffer(self.take(n * dtype.itemsize), dtype=dtype).astype(dtype.newbyteorder("="))
        elif sexp == STRSXP:
            value = []
            for _ in range(self.length(4)):
                s = self.item(depth + 1)
                if s.kind != "CHARSXP":
                    raise ValueError("R stream: character vector element is not a CHARSXP")
                value.append(s.value)
        elif sexp == VECSXP:
            value = [self.item(depth + 1) for _ in range(self.length(4))]
        elif sexp == ALTREP_SXP:
            return self.altrep(depth)
        else:
            raise ValueError(f"R stream: unsupported SEXP type {_NAMES.get(sexp, 'unknown')} ({sexp})")
        obj = RObject(_KIND[sexp], value)
        if has_attr:
            obj.attributes = self.attributes(depth + 1)
        return obj

    def pairlist(self, flags: int, depth: int) -> RObject:
        # Walk the CDR chain iteratively so long pairlists don't hit the depth limit.
        cells: list[tuple[str | None, RObject]] = []
        attrs: dict[str, RObject] = {}
        while True:
            if flags & (1 << 9):  # R writes a pairlist's attributes on its first cell
                cell_attrs = self.attributes(depth + 1)
                if not cells:
                    attrs = cell_attrs
            tag = self.item(depth + 1).value if flags & (1 << 10) else None
            cells.append((tag, self.item(depth + 1)))
            flags = self.i32()
            if flags & 0xFF in (NILVALUE_SXP, NILSXP):
                return RObject("pairlist", cells, attrs)
            if flags & 0xFF != LISTSXP:
                raise ValueError(f"R stream: pairlist ends in {_NAMES.get(flags & 0xFF, flags & 0xFF)}")

    def altrep(self, depth: int) -> RObject:
        # R >= 3.5 may write compact sequences (e.g. 1:n) as ALTREP: (class info, state, attributes).
        info, state, attr = self.item(depth + 1), self.item(depth + 1), self.item(depth + 1)
        cls = info.value[0][1].value if info.kind == "pairlist" and info.value else None
        if cls in ("compact_intseq", "compact_realseq") and state.kind == "double" and len(state.value) == 3:
            n, start, step = state.value
            if not 0 <= n <= 2**26:  # refuse to expand a tiny stream into gigabytes
                raise ValueError(f"R stream: bad compact sequence length {n}")
            seq = start + step * np.arange(int(n), dtype=np.float64)
            obj = RObject(*(("integer", seq.astype(np.int32)) if cls == "compact_intseq" else ("double", seq)))
        elif cls in ("wrap_integer", "wrap_real", "wrap_logical", "wrap_string", "wrap_list") \
                and state.kind == "list" and state.value:
            obj = RObject(state.value[0].kind, state.value[0].value, dict(state.value[0].attributes))
        elif cls == "deferred_string" and state.kind == "pairlist" and state.value:
            src = state.value[0][1]  # the numeric vector the strings are deferred from
            obj = RObject("character", [None if _isna(x, src.kind) else _fmt(x) for x in src.value])
        else:
            raise ValueError(f"R stream: unsupported ALTREP class {cls!r}")
        if attr.kind == "pairlist":
            obj.attributes.update({str(t): v for t, v in attr.value})
        return obj


def _isna(x: Any, kind: str) -> bool:
    return bool(np.isnan(x)) if kind == "double" else int(x) == NA_INTEGER


def _fmt(x: Any) -> str:
    # Close to R's as.character: whole numbers without a decimal point, else 15 significant digits.
    return str(int(x)) if float(x).is_integer() else f"{float(x):.15g}"


def unserialize(data: bytes) -> RObject:
    """Decode one uncompressed XDR serialization stream (what R's ``serialize()`` writes)."""
    reader = _Reader(data)
    reader.header()
    return reader.item()


def _decompress(data: bytes, source: str) -> bytes:
    try:
        if data[:2] == b"\x1f\x8b":
            return gzip.decompress(data)
        if data[:3] == b"BZh":
            return bz2.decompress(data)
        if data[:6] == b"\xfd7zXZ\x00":
            return lzma.decompress(data)
    except (OSError, EOFError, zlib.error, lzma.LZMAError) as e:
        raise ValueError(f"{source}: corrupt compressed data ({e})") from e
    return data


def parse_rds(data: bytes, source: str = "<bytes>") -> RObject:
    """Decode the contents of an ``.rds`` file (gzip/bzip2/xz or uncompressed)."""
    return unserialize(_decompress(data, source))


def read_rds(path: str | os.PathLike[str]) -> RObject:
    """Read an ``.rds`` file (also the ``.rdx`` index of a lazy-load database)."""
    return parse_rds(Path(path).read_bytes(), str(path))


def _lazyload_blob(blob: bytes, source: str) -> bytes:
    # Each entry: 4-byte big-endian uncompressed length, then zlib data (R's compress=1).
    # Types 2/3 add one byte saying how the rest is compressed: '0' none, '1' zlib, '2' bzip2, 'Z' xz.
    if len(blob) < 5:
        raise ValueError(f"{source}: lazy-load entry too short ({len(blob)} bytes)")
    size = int.from_bytes(blob[:4], "big")
    try:
        if blob[4:6] in (b"x\x01", b"x\x5e", b"x\x9c", b"x\xda"):
            out = zlib.decompress(blob[4:])
        elif blob[4:5] == b"1":
            out = zlib.decompress(blob[5:])
        elif blob[4:5] == b"2":
            out = bz2.decompress(blob[5:])
        elif blob[4:5] == b"Z":
            out = lzma.decompress(blob[5:])
        elif blob[4:5] == b"0":
            out = blob[5:]
        else:
            raise ValueError(f"unknown compression marker {blob[4:6]!r}")
    except (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError) as e:
        raise ValueError(f"{source}: cannot decompress lazy-load entry: {e}") from e
    if len(out) != size:
        raise ValueError(f"{source}: entry decompressed to {len(out)} bytes, header says {size}")
    return out


def read_lazyload_db(rdx: str | os.PathLike[str], names: list[str] | None = None) -> dict[str, RObject]:
    """Read objects from an R lazy-load database (``X.rdx`` index next to ``X.rdb``).

    Returns ``{name: RObject}`` for ``names`` (all variables when None).
    """
    rdx = Path(rdx)
    rdb = rdx.with_suffix(".rdb")
    try:
        variables = read_rds(rdx)["variables"]
    except KeyError:
        raise ValueError(f"{rdx}: not a lazy-load index (no 'variables')") from None
    if variables.kind != "list" or variables.names is None or len(variables.names) != len(variables.value):
        raise ValueError(f"{rdx}: 'variables' is not a named list")
    index = dict(zip(variables.names, variables.value, strict=True))
    wanted = list(index) if names is None else names
    out: dict[str, RObject] = {}
    with open(rdb, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        for name in wanted:
            if name not in index:
                raise KeyError(f"{name!r} not in {rdx} (has {sorted(index)})")
            entry = index[name]
            if entry.kind not in ("integer", "double") or len(entry.value) != 2:
                raise ValueError(f"{rdx}: bad index entry for {name!r}")
            offset, length = (int(v) for v in entry.value)
            if offset < 0 or length < 0 or offset + length > size:
                raise ValueError(f"{rdb}: entry {name!r} ({offset}+{length}) outside file of {size} bytes")
            f.seek(offset)
            out[name] = unserialize(_lazyload_blob(f.read(length), f"{rdb}[{name}]"))
    return out
