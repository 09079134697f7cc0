"""Data-parallel training on MPI (nnforge.distributed) on this machine:

(a) all-reduce of 22M float32 values (MiniLM-L6's gradient size) between two local ranks: ms and GB/s
    (algorithm bandwidth: bytes reduced / time), through ``nnforge.distributed.all_reduce`` and raw mpi4py;
(b) all-MiniLM-L6-v2 fine-tuning step (forward + loss + backward + AdamW, global batch 32 x 128): one process
    with 2 BLAS threads vs 2 processes x 1 thread under ``mpirun`` (DistributedDataParallel, 16 per rank).

    python benchmarks/bench_distributed.py [--repeats 5] [--seq 128]

Runs the workers itself (``mpirun --oversubscribe -n 2 python bench_distributed.py --worker ...``).
"""
from __future__ import annotations

import nnforge  # noqa: F401  (before NumPy loads: OpenBLAS reads nnforge's thread defaults only then)

# isort: split

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


def _median_ms(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e3)


def worker_allreduce(args: argparse.Namespace) -> dict:
    from mpi4py import MPI

    import nnforge as nf
    import nnforge.distributed as dist

    dist.init_process_group()
    n = 22_000_000
    t = nf.ones(n)
    raw = np.ones(n, dtype=np.float32)

    def ours() -> None:
        dist.barrier()
        dist.all_reduce(t, op="avg")

    def mpi() -> None:
        dist.barrier()
        MPI.COMM_WORLD.Allreduce(MPI.IN_PLACE, raw, op=MPI.SUM)

    ms, raw_ms = _median_ms(ours, args.repeats * 2), _median_ms(mpi, args.repeats * 2)
    return {"ms": ms, "raw_ms": raw_ms, "bytes": n * 4}


def worker_step(args: argparse.Namespace) -> dict:
    from threadpoolctl import threadpool_limits

    import nnforge as nf
    import nnforge.distributed as dist
    from nnforge.models.bert import BertForSequenceClassification

    sys.path.insert(0, str(HERE))
    from bench_minilm import inputs, model_dir

    threadpool_limits(args.threads)
    parallel = dist.launched_by_mpi()
    if parallel:
        dist.init_process_group()
    ranks = dist.get_world_size() if parallel else 1
    rank = dist.get_rank() if parallel else 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = BertForSequenceClassification.from_pretrained(model_dir(args.model), num_labels=2).train()
    params = sum(p.numel() for p in model.parameters())
    wrapped = nf.nn.parallel.DistributedDataParallel(model) if parallel else model
    opt = nf.optim.AdamW(model.parameters(), lr=2e-5)
    ids, mask, labels = inputs(args.batch, args.seq, model.config.vocab_size, seed=1)
    shard = slice(rank, None, ranks)  # DistributedSampler's rule on an equal split
    ids, mask, labels = ids[shard], mask[shard], labels[shard]

    def step() -> None:
        if parallel:
            dist.barrier()
        opt.zero_grad()
        wrapped(ids, attention_mask=mask, labels=labels).loss.backward()
        opt.step()

    return {"ms": _median_ms(step, args.repeats), "params": params, "ranks": ranks, "threads": args.threads}


def _run(cmd: list, env: dict) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(lines[0][len("RESULT "):])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", choices=["allreduce", "step"])
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--batch", type=int, default=32, help="global batch")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if args.worker:
        result = (worker_allreduce if args.worker == "allreduce" else worker_step)(args)
        if int(os.environ.get("OMPI_COMM_WORLD_RANK", os.environ.get("PMI_RANK", "0"))) == 0:
            print("RESULT " + json.dumps(result), flush=True)
        return
    if shutil.which("mpirun") is None:
        raise SystemExit("mpirun not found: apt-get install -y openmpi-bin libopenmpi-dev; pip install mpi4py")
    sys.path.insert(0, str(HERE))
    from common import machine

    me = [sys.executable, str(Path(__file__).resolve())]
    common_args = ["--model", args.model, "--batch", str(args.batch), "--seq", str(args.seq),
                   "--repeats", str(args.repeats)]
    mpirun = ["mpirun", "--oversubscribe", "--allow-run-as-root", "-n", "2"]

    def env(threads: int) -> dict:
        t = str(threads)
        return dict(os.environ, **MPI_ENV, OMP_NUM_THREADS=t, OPENBLAS_NUM_THREADS=t, MKL_NUM_THREADS=t,
                    PYTHONPATH=str(HERE.parent))

    print(machine() + f", {time.strftime('%Y-%m-%d')}")
    ar = _run(mpirun + me + ["--worker", "allreduce"] + common_args, env(1))
    gb = ar["bytes"] / 1e9
    print(f"\n(a) all-reduce of 22M float32 ({ar['bytes'] / 2**20:.0f} MiB) between 2 local ranks:")
    print(f"    nnforge.distributed.all_reduce  {ar['ms']:8.1f} ms  {gb / (ar['ms'] / 1e3):6.2f} GB/s")
    print(f"    mpi4py Allreduce (blocking)     {ar['raw_ms']:8.1f} ms  {gb / (ar['raw_ms'] / 1e3):6.2f} GB/s")
    one = _run(me + ["--worker", "step", "--threads", "2"] + common_args, env(2))
    two = _run(mpirun + me + ["--worker", "step", "--threads", "1"] + common_args, env(1))
    print(f"\n(b) all-MiniLM-L6-v2 fine-tuning step ({one['params'] / 1e6:.1f}M parameters), global batch "
          f"{args.batch} x {args.seq}, AdamW, median of {args.repeats}:")
    print(f"    {'setup':36s} {'ms/step':>9s} {'samples/s':>10s} {'speed-up':>9s}")
    for name, r in (("1 process x 2 BLAS threads", one), ("2 processes x 1 thread (mpirun, DDP)", two)):
        print(f"    {name:36s} {r['ms']:9.0f} {args.batch / (r['ms'] / 1e3):10.1f} {one['ms'] / r['ms']:8.2f}x")


if __name__ == "__main__":
    main()
