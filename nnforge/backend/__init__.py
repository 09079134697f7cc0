"""Backend registry: the only place that knows which array library runs a device.

A backend is an object with ``name`` (the device type), ``xp`` (a NumPy-compatible array module) and a
few helpers (see ``NumpyBackend``). Adding a device (e.g. CuPy on "cuda") is one module that defines such an
object plus a call to ``register_backend``; ops, layers and models never change.
"""
from __future__ import annotations

from typing import Any

from .device import Device, device
from .numpy_backend import NumpyBackend

_BACKENDS: dict[str, Any] = {}


def register_backend(backend: Any) -> None:
    """Make ``backend`` serve the device type ``backend.name``."""
    _BACKENDS[backend.name] = backend


def get_backend(dev: Device | str) -> Any:
    """The backend serving a device (or device string)."""
    name = dev.type if isinstance(dev, Device) else device(dev).type
    try:
        return _BACKENDS[name]
    except KeyError:
        raise RuntimeError(
            f"no backend is registered for device '{name}' (registered: {sorted(_BACKENDS)}); "
            f"a GPU backend needs its array library installed and registered"
        ) from None


def available_devices() -> list[str]:
    return sorted(_BACKENDS)


cpu_backend = NumpyBackend()
register_backend(cpu_backend)
CPU = device("cpu")

__all__ = ["Device", "device", "register_backend", "get_backend", "available_devices", "cpu_backend", "CPU"]
