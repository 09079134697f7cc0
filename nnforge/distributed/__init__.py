"""Data-parallel training across processes and machines on MPI (``torch.distributed`` style).

Launch the same script on N processes with ``mpirun -n N python train.py`` (several machines: ``--hostfile``;
Slurm: ``srun``), call ``init_process_group()``, wrap the model in ``nnforge.nn.parallel.DistributedDataParallel``
and give each rank its shard of the data with ``nnforge.utils.data.DistributedSampler``. ``Trainer``, ``fit`` and
``nnforge finetune`` do all of this by themselves once the group is initialised (the CLI initialises it when
launched by ``mpirun``). Needs mpi4py (``pip install 'nnforge[mpi]'``) and an MPI library (OpenMPI).

Example:
    >>> import nnforge.distributed as dist
    >>> dist.init_process_group()
    >>> t = nf.ones(3) * dist.get_rank()
    >>> dist.all_reduce(t)            # every rank now holds the sum over ranks
"""
from .collectives import ReduceOp, all_gather, all_reduce, barrier, broadcast
from .process_group import (abort, destroy_process_group, get_rank, get_world_size, init_process_group,
                            is_available, is_initialized, is_main_process, launched_by_mpi)

__all__ = [
    "ReduceOp",
    "abort",
    "all_gather",
    "all_reduce",
    "barrier",
    "broadcast",
    "destroy_process_group",
    "get_rank",
    "get_world_size",
    "init_process_group",
    "is_available",
    "is_initialized",
    "is_main_process",
    "launched_by_mpi",
]
