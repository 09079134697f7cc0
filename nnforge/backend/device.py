"""``nf.device``: a small value object naming where a tensor's data lives."""
from __future__ import annotations


class Device:
    """A device such as ``cpu`` or ``cuda:0``; compares equal to its string form."""

    __slots__ = ("type", "index", "_backend")

    def __init__(self, type: str, index: int | None = None) -> None:
        self.type = type
        self.index = index
        self._backend = None  # filled on first use by nnforge.backend.backend_of

    @property
    def backend(self):
        """The backend object that runs this device (looked up once, then cached)."""
        b = self._backend
        if b is None:
            from . import get_backend
            b = self._backend = get_backend(self)
        return b

    def __repr__(self) -> str:
        return f"device(type='{self.type}')" if self.index is None else f"device(type='{self.type}', index={self.index})"

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            other = device(other)
        return isinstance(other, Device) and self.type == other.type and self.index == other.index

    def __hash__(self) -> int:
        return hash((self.type, self.index))


_CACHE: dict = {}


def device(spec: "str | Device", index: int | None = None) -> Device:
    """Parse ``"cpu"``, ``"cuda:1"`` or a Device into a (cached, so identity-comparable) Device."""
    if isinstance(spec, Device):
        if index is None:
            return spec
        spec = spec.type
    key = (spec, index)
    dev = _CACHE.get(key)
    if dev is None:
        if not isinstance(spec, str):
            raise TypeError(f"device: expected a string like 'cpu' or a Device, got {type(spec).__name__}")
        type_, _, idx = spec.partition(":")
        if idx:
            if index is not None:
                raise ValueError(f"device: index given twice in '{spec}' and index={index}")
            index = int(idx)
        if type_ == "cpu":
            index = None  # there is one CPU device; 'cpu:0' means it too
        dev = _CACHE[key] = Device(type_, index)
        # share one object per distinct device so that ops can compare devices by identity
        dev = _CACHE.setdefault(("canon", type_, index), dev)
        _CACHE[key] = dev
    return dev
