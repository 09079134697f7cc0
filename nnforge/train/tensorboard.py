"""TensorBoard event files written by hand: TFRecord framing + a minimal ``Event``/``Summary`` protobuf.

No TensorFlow/TensorBoard dependency. A record is ``uint64 length | uint32 masked_crc32c(length) | data |
uint32 masked_crc32c(data)`` (little endian). ``data`` is an ``Event`` message::

    Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
    Summary { repeated Value value = 1; }
    Value   { string tag = 1; float simple_value = 2; }

Example:
    >>> w = EventFileWriter("runs/exp1")
    >>> w.add_scalar("loss", 0.25, step=10)
    >>> w.close()
"""
from __future__ import annotations

import os
import socket
import struct
import time
from pathlib import Path
from typing import Any

__all__ = ["EventFileWriter", "crc32c", "read_events"]


def _make_table() -> list:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _make_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as TFRecord uses."""
    crc = 0xFFFFFFFF
    table = _TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64 as ten-byte two's complement
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(number: int, wire: int) -> bytes:
    return _varint((number << 3) | wire)


def _bytes_field(number: int, payload: bytes) -> bytes:
    return _field(number, 2) + _varint(len(payload)) + payload


def _event(wall_time: float, step: int, *, file_version: str | None = None, summary: bytes | None = None) -> bytes:
    msg = _field(1, 1) + struct.pack("<d", wall_time)
    if step:
        msg += _field(2, 0) + _varint(step)
    if file_version is not None:
        msg += _bytes_field(3, file_version.encode())
    if summary is not None:
        msg += _bytes_field(5, summary)
    return msg


def _scalar_summary(values: dict) -> bytes:
    out = b""
    for tag, v in values.items():
        value = _bytes_field(1, str(tag).encode()) + _field(2, 5) + struct.pack("<f", float(v))
        out += _bytes_field(1, value)
    return out


class EventFileWriter:
    """Appends scalar events to a new ``events.out.tfevents.*`` file in ``log_dir``."""

    _counter = 0

    def __init__(self, log_dir: str | os.PathLike) -> None:
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        EventFileWriter._counter += 1
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}.{self._counter}"
        self.path = self.log_dir / name
        self._f = open(self.path, "wb")  # noqa: SIM115  (closed by close())
        self._write(_event(time.time(), 0, file_version="brain.Event:2"))

    def _write(self, data: bytes) -> None:
        header = struct.pack("<Q", len(data))
        self._f.write(header + struct.pack("<I", _masked_crc(header)) + data + struct.pack("<I", _masked_crc(data)))

    def add_scalars(self, values: dict, step: int, wall_time: float | None = None) -> None:
        """One event holding every ``tag -> float`` of ``values`` at ``step``."""
        if values:
            self._write(_event(time.time() if wall_time is None else wall_time, int(step),
                               summary=_scalar_summary(values)))

    def add_scalar(self, tag: str, value: float, step: int, wall_time: float | None = None) -> None:
        self.add_scalars({tag: value}, step, wall_time)

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()


# -- reading (for tests and quick inspection) ----------------------------------------------------------------
def _read_varint(buf: bytes, i: int) -> tuple:
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result, i


def _parse(buf: bytes) -> list:
    """(field number, wire type, value) triples of one protobuf message."""
    out, i = [], 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _read_varint(buf, i)
        elif wire == 1:
            v, i = buf[i:i + 8], i + 8
        elif wire == 5:
            v, i = buf[i:i + 4], i + 4
        elif wire == 2:
            n, i = _read_varint(buf, i)
            v, i = buf[i:i + n], i + n
        else:
            raise ValueError(f"read_events: unsupported protobuf wire type {wire}")
        out.append((number, wire, v))
    return out


def read_events(path: str | os.PathLike) -> list:
    """Decode an event file written here: a list of ``{"wall_time", "step", "file_version"?, "scalars"?}``.
    Every record's CRCs are checked (``ValueError`` on corruption)."""
    data = Path(path).read_bytes()
    events, i = [], 0
    while i < len(data):
        header = data[i:i + 8]
        (n,) = struct.unpack("<Q", header)
        (hcrc,) = struct.unpack("<I", data[i + 8:i + 12])
        body = data[i + 12:i + 12 + n]
        (bcrc,) = struct.unpack("<I", data[i + 12 + n:i + 16 + n])
        if hcrc != _masked_crc(header) or bcrc != _masked_crc(body):
            raise ValueError(f"read_events: CRC mismatch in record at byte {i} of {path}")
        i += 16 + n
        ev: dict[str, Any] = {"step": 0}
        for number, _, v in _parse(body):
            if number == 1:
                ev["wall_time"] = struct.unpack("<d", v)[0]
            elif number == 2:
                ev["step"] = v
            elif number == 3:
                ev["file_version"] = v.decode()
            elif number == 5:
                scalars = ev.setdefault("scalars", {})
                for _, _, value in _parse(v):
                    fields = {num: val for num, _, val in _parse(value)}
                    scalars[fields[1].decode()] = struct.unpack("<f", fields[2])[0]
        events.append(ev)
    return events
