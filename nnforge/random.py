"""Random number generation: one global generator per process, seeded by ``nf.manual_seed``.

Every random draw in nnforge (initialisation, dropout, shuffling) goes through a ``Generator``, so one
``manual_seed`` call makes a run reproducible.
"""
from __future__ import annotations

from typing import Any

from .backend import CPU


class Generator:
    """A seedable random stream (torch.Generator); ``get_state``/``set_state`` for exact resume."""

    def __init__(self, device: Any = "cpu") -> None:
        self._backend = CPU.backend
        self._seed = 0
        self._rng = self._backend.default_generator(0)

    def manual_seed(self, seed: int) -> "Generator":
        self._seed = int(seed)
        self._rng = self._backend.default_generator(int(seed))
        return self

    def seed(self) -> int:
        import secrets
        s = secrets.randbits(63)
        self.manual_seed(s)
        return s

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self) -> dict:
        return {"seed": self._seed, "bit_generator": self._rng.bit_generator.state}

    def set_state(self, state: dict) -> None:
        self._seed = state["seed"]
        self._rng.bit_generator.state = state["bit_generator"]

    @property
    def rng(self) -> Any:
        """The underlying array-library generator (NumPy's ``Generator`` on the CPU)."""
        return self._rng


default_generator = Generator()


def manual_seed(seed: int) -> Generator:
    """Seed the global generator; returns it (like torch.manual_seed)."""
    return default_generator.manual_seed(seed)


def initial_seed() -> int:
    return default_generator.initial_seed()


def get_rng_state() -> dict:
    return default_generator.get_state()


def set_rng_state(state: dict) -> None:
    default_generator.set_state(state)


def _rng(generator: Generator | None) -> Any:
    return (generator or default_generator).rng
