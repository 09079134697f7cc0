"""The default process group: MPI's world communicator (through mpi4py), set up by ``init_process_group``.

Every collective waits with a timeout (``init_process_group(timeout=...)``, env ``NNFORGE_DIST_TIMEOUT``, default
30 minutes, as in torch): a rank that waits longer prints which collective it was in and aborts the whole job,
so a crashed or diverged rank never leaves the others hanging. An uncaught exception on any rank aborts the job
at once (``MPI_Abort``) after printing the traceback and the failing rank.
"""
from __future__ import annotations

import os
import sys
import time
from datetime import timedelta
from typing import Any

__all__ = [
    "abort",
    "destroy_process_group",
    "get_rank",
    "get_world_size",
    "init_process_group",
    "is_available",
    "is_initialized",
    "is_main_process",
    "launched_by_mpi",
]

_STATE: dict = {"comm": None, "rank": 0, "size": 1, "timeout": 1800.0, "excepthook": None}
_ENV_SIZES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE")
_ENV_RANKS = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK")


def _mpi() -> Any:
    """mpi4py's ``MPI`` module, imported on first use (importing it starts MPI)."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError(
            "nnforge.distributed needs an MPI library and mpi4py: install OpenMPI (Debian/Ubuntu: "
            "apt-get install -y openmpi-bin libopenmpi-dev), then pip install mpi4py (or pip install "
            "'nnforge[mpi]')") from e
    return MPI


def is_available() -> bool:
    """True when mpi4py can be imported (without starting MPI)."""
    import importlib.util
    return importlib.util.find_spec("mpi4py") is not None


def launched_by_mpi() -> bool:
    """True when this process is one of several started by ``mpirun``/``srun`` (from the launcher's
    environment variables, before MPI is started)."""
    return any(int(os.environ.get(k, "1") or 1) > 1 for k in _ENV_SIZES)


def _env_rank() -> int:
    """This process's rank as the launcher's environment says (0 when not launched by MPI)."""
    for k in _ENV_RANKS:
        if os.environ.get(k):
            return int(os.environ[k])
    return 0


def init_process_group(backend: str = "mpi", timeout: float | timedelta | None = None) -> None:
    """Join the job's processes (all ranks started by ``mpirun -n N``) into the default group.

    Args:
        backend: only ``"mpi"`` (OpenMPI or any MPI through mpi4py).
        timeout: how long any collective may wait for the other ranks before the job is aborted with a
            message naming the collective (seconds or a ``timedelta``; default env ``NNFORGE_DIST_TIMEOUT``
            or 1800 s).

    Calling it again while initialised does nothing. Also installs an exception hook: an uncaught exception
    on any rank prints its traceback and ``rank R of N failed``, then aborts every rank (``MPI_Abort``).

    Example:
        >>> import nnforge.distributed as dist
        >>> dist.init_process_group()          # run with: mpirun -n 2 python train.py
        >>> dist.get_rank(), dist.get_world_size()
    """
    if backend != "mpi":
        raise ValueError(f"init_process_group: unknown backend {backend!r}; nnforge supports only 'mpi'")
    if _STATE["comm"] is not None:
        return
    if timeout is None:
        timeout = float(os.environ.get("NNFORGE_DIST_TIMEOUT", "1800"))
    elif isinstance(timeout, timedelta):
        timeout = timeout.total_seconds()
    if not timeout > 0:
        raise ValueError(f"init_process_group: timeout must be positive, got {timeout!r}")
    MPI = _mpi()
    comm = MPI.COMM_WORLD.Dup()
    _STATE.update(comm=comm, rank=comm.Get_rank(), size=comm.Get_size(), timeout=float(timeout))
    if _STATE["excepthook"] is None:
        _STATE["excepthook"] = sys.excepthook
        sys.excepthook = _abort_on_exception


def destroy_process_group() -> None:
    """Leave the group (the MPI library itself is finalised at interpreter exit by mpi4py)."""
    comm = _STATE["comm"]
    if comm is None:
        return
    comm.Free()
    _STATE.update(comm=None, rank=0, size=1)
    if _STATE["excepthook"] is not None:
        sys.excepthook = _STATE["excepthook"]
        _STATE["excepthook"] = None


def is_initialized() -> bool:
    return _STATE["comm"] is not None


def _comm() -> Any:
    if _STATE["comm"] is None:
        raise RuntimeError("nnforge.distributed: the default process group is not initialized; call "
                           "nnforge.distributed.init_process_group() first (and launch with mpirun -n N)")
    return _STATE["comm"]


def get_rank() -> int:
    """This process's rank, 0 .. world_size-1."""
    _comm()
    return _STATE["rank"]


def get_world_size() -> int:
    """The number of processes in the group."""
    _comm()
    return _STATE["size"]


def is_main_process() -> bool:
    """True on rank 0, and in any process that is not part of an initialised group: the one that logs, shows
    progress bars and writes files."""
    return _STATE["rank"] == 0


def _distributed() -> bool:
    """True when a group of more than one process is initialised (collectives are needed)."""
    return _STATE["size"] > 1


def abort(code: int = 1, reason: str = "") -> None:
    """Print ``reason`` with this rank and end every process of the job (``MPI_Abort``); outside a group,
    ``sys.exit(code)``."""
    where = f"rank {_STATE['rank']} of {_STATE['size']}"
    sys.stdout.flush()
    sys.stderr.write(f"nnforge.distributed: {where}: {reason}; aborting all ranks\n")
    sys.stderr.flush()
    if _STATE["comm"] is None:
        sys.exit(code)
    _STATE["comm"].Abort(code)


def _abort_on_exception(exc_type: type, exc: BaseException, tb: Any) -> None:
    (_STATE["excepthook"] or sys.__excepthook__)(exc_type, exc, tb)
    if _distributed():
        abort(1, f"failed with {exc_type.__name__}: {exc}")


def _wait(request: Any, what: str) -> None:
    """Wait for a non-blocking MPI request, aborting the job after the group's timeout.

    Spins on ``Test`` (which also drives MPI's progress) for the first second, then polls every millisecond
    so a long wait for a slow rank does not burn a core."""
    if request.Test():
        return
    start = time.monotonic()
    deadline = start + _STATE["timeout"]
    spins = 0
    while not request.Test():
        spins += 1
        if spins < 4096:  # a tight spin first: most waits are short
            continue
        now = time.monotonic()
        if now > deadline:
            abort(1, f"{what} timed out after {_STATE['timeout']:g} s waiting for the other ranks "
                     f"(one of them crashed, hangs or runs different code)")
        if now - start > 1.0:
            time.sleep(0.001)
