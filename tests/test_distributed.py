"""nnforge.distributed, DistributedDataParallel and DistributedSampler: 2 ranks under mpirun against
single-process training computed here, plus failure handling (an error or a hang on one rank ends the job).

Needs OpenMPI (mpirun) and mpi4py; without them these tests skip, unless NNFORGE_REQUIRE_MPI=1 (CI), where
they fail."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import nnforge as nf
from nnforge.utils.data import DistributedSampler

HERE = Path(__file__).resolve().parent / "distributed"
sys.path.insert(0, str(HERE))
import common

REQUIRE = os.environ.get("NNFORGE_REQUIRE_MPI") == "1"


def _missing() -> str | None:
    if shutil.which("mpirun") is None:
        return "mpirun not found (apt-get install -y openmpi-bin libopenmpi-dev)"
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed (pip install mpi4py, or pip install -e '.[mpi]')"
    return None


def _need_mpi() -> None:
    reason = _missing()
    if reason is not None:
        if REQUIRE:
            pytest.fail(f"NNFORGE_REQUIRE_MPI=1 but {reason}")
        pytest.skip(reason)


def mpirun(out: Path, *modes: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``mpirun -n 2 python worker.py OUT MODES`` with one BLAS thread per rank."""
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(HERE.parent.parent))
    cmd = ["mpirun", "--oversubscribe", "--allow-run-as-root", "-n", "2", sys.executable, str(HERE / "worker.py"),
           str(out), *modes]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One mpirun for all the result-producing modes (each launch costs a few seconds)."""
    _need_mpi()
    out = tmp_path_factory.mktemp("mpi")
    proc = mpirun(out, "collectives", "ddp", "nosync", "frozen", "lora", "trainer", "fit")
    assert proc.returncode == 0 and (out / "done").is_file(), f"mpirun failed:\n{proc.stdout}\n{proc.stderr}"
    return out, proc


def _close(out: Path, name: str, model: nf.nn.Module) -> None:
    got = nf.load(out / f"{name}.safetensors")
    ref = model.state_dict()
    assert sorted(got) == sorted(ref)
    for k in ref:
        np.testing.assert_allclose(got[k].numpy(), ref[k].detach().numpy(), rtol=0, atol=1e-5, err_msg=k)


def _reference() -> nf.nn.Module:
    nf.manual_seed(100)  # rank 0's weights, which DDP copies to every rank
    return common.Net()


def test_collectives(run):
    out, _ = run
    result = json.loads((out / "collectives.json").read_text())
    assert result["ok"]
    errors = result["errors"]
    assert "median" in errors["bad_op"] and "floating-point" in errors["avg_int"]
    assert "world_size=2" in errors["gather_len"] and "src=5" in errors["bad_src"]


def test_ddp_equals_single_process_full_batch(run):
    """Ranks start from different random weights, agree after wrapping, and after 6 SGD-momentum steps on
    half batches each match one process on the full batch (fc2 gets two gradients per backward)."""
    model = common.train_reference(_reference())
    _close(run[0], "ddp", model)
    assert model.unused.weight.grad is None


def test_no_sync_accumulation_equals_full_batch(run):
    _close(run[0], "nosync", common.train_reference(_reference()))


def test_frozen_parameters(run):
    model = _reference()
    model.fc1.weight.requires_grad_(False)
    frozen_before = model.fc1.weight.detach().numpy().copy()
    common.train_reference(model, [p for p in model.parameters() if p.requires_grad])
    _close(run[0], "frozen", model)
    np.testing.assert_array_equal(nf.load(run[0] / "frozen.safetensors")["fc1.weight"].numpy(), frozen_before)


def test_lora(run):
    nf.manual_seed(100)
    model = common.lora_net()
    common.train_reference(model, [p for p in model.parameters() if p.requires_grad])
    _close(run[0], "lora", model)


def test_trainer_two_ranks_equals_double_batch(run, tmp_path):
    """Trainer on 2 ranks (batch B, accumulation 2) == Trainer on one process with batch 2B; only rank 0
    writes checkpoints."""
    out = run[0]
    model = _reference()
    result = common.make_trainer(model, batch_size=common.BATCH // 2, output_dir=tmp_path / "t",
                                 accumulation=2).train()
    _close(out, "trainer", model)
    got = json.loads((out / "trainer.json").read_text())
    assert got["steps"] == result["global_step"]
    assert abs(got["loss"] - result["train_loss"]) < 1e-5
    assert (out / "trainer-rank0").is_dir() and not (out / "trainer-rank1").exists()


def test_fit_two_ranks_equals_double_batch(run):
    out, proc = run
    model = _reference()
    history = common.run_fit(model, batch_size=common.BATCH)
    _close(out, "fit", model)
    got = json.loads((out / "fit.json").read_text())
    np.testing.assert_allclose(got["loss"], history.history["loss"], atol=1e-5)
    assert proc.stdout.count("Epoch 1/2") == 1, "only rank 0 shows the progress bar"


def _failing(out: Path, mode: str, limit: float) -> subprocess.CompletedProcess:
    start = time.monotonic()
    proc = mpirun(out, mode, timeout=limit + 30)
    took = time.monotonic() - start
    assert proc.returncode != 0, f"the job should fail:\n{proc.stdout}\n{proc.stderr}"
    assert took < limit, f"the job took {took:.1f} s to fail"
    assert not (out / "done").exists()
    return proc


def test_failing_rank_ends_the_job(tmp_path):
    _need_mpi()
    proc = _failing(tmp_path, "fail", limit=25)
    assert "rank 1 of 2: failed with ValueError: deliberate failure" in proc.stderr


def test_hanging_rank_times_out(tmp_path):
    _need_mpi()
    proc = _failing(tmp_path, "hang", limit=25)
    assert "rank 0 of 2: all_reduce" in proc.stderr and "timed out after 3 s" in proc.stderr


# -- DistributedSampler (no MPI needed) -------------------------------------------------------------------------
@pytest.mark.parametrize("n,replicas,drop_last", [(10, 3, False), (10, 3, True), (12, 4, False), (5, 2, False),
                                                  (2, 4, False)])
@pytest.mark.parametrize("shuffle", [False, True])
def test_sampler_shards_cover_dataset_once(n, replicas, drop_last, shuffle):
    import torch.utils.data as tud

    data = list(range(n))
    for epoch in range(2):
        shards = []
        for rank in range(replicas):
            s = DistributedSampler(data, num_replicas=replicas, rank=rank, shuffle=shuffle, seed=5,
                                   drop_last=drop_last)
            s.set_epoch(epoch)
            t = tud.DistributedSampler(data, num_replicas=replicas, rank=rank, shuffle=shuffle, seed=5,
                                       drop_last=drop_last)
            t.set_epoch(epoch)
            shard = list(s)
            assert len(shard) == len(s) == len(t) == len(list(t))
            if not shuffle:
                assert shard == list(t)
            shards.append(shard)
        flat = [i for sh in shards for i in sh]
        if drop_last:
            assert len(set(flat)) == len(flat) == (n // replicas) * replicas
        else:
            assert set(flat) == set(data) and len(flat) == -(-n // replicas) * replicas
            if n >= replicas:  # padding by wrapping repeats each index at most once
                assert max(flat.count(i) for i in data) <= 2
        if shuffle:
            assert sorted(shards[0]) != shards[0] or n < 4 or replicas * 2 > n


def test_sampler_epochs_differ_and_are_reproducible():
    a = DistributedSampler(range(50), num_replicas=2, rank=0, seed=1)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    a.set_epoch(0)
    assert list(a) == first


def test_sampler_bad_arguments():
    with pytest.raises(ValueError, match=r"invalid rank 2.*\[0, 1\]"):
        DistributedSampler(range(4), num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="num_replicas"):
        DistributedSampler(range(4), num_replicas=0, rank=0)
    with pytest.raises(RuntimeError, match="init_process_group"):
        DistributedSampler(range(4))


def test_not_initialized_errors():
    import nnforge.distributed as dist

    assert not dist.is_initialized() and dist.is_main_process()
    with pytest.raises(RuntimeError, match="init_process_group"):
        dist.get_rank()
    with pytest.raises(RuntimeError, match="init_process_group"):
        nf.nn.parallel.DistributedDataParallel(common.Net())
    with pytest.raises(ValueError, match="backend"):
        dist.init_process_group(backend="nccl")


@pytest.mark.slow
def test_cli_finetune_under_mpirun(tmp_path):
    """``mpirun -n 2 python -m nnforge finetune``: one run folder (rank 0's default name), one set of prints,
    a finished report; a bad argument fails on every rank with exit status != 0."""
    _need_mpi()
    from tests.cli_helpers import make_rows, make_tiny_model, write_csv

    model = make_tiny_model(tmp_path / "tiny-bert")
    data = write_csv(tmp_path / "reviews.csv", make_rows(120))
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", PYTHONPATH=str(HERE.parent.parent))
    cmd = ["mpirun", "--oversubscribe", "--allow-run-as-root", "-n", "2", sys.executable, "-m", "nnforge",
           "finetune", "--model", str(model), "--data", str(data), "--epochs", "1", "--batch-size", "8",
           "--lr", "3e-3"]
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=work, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = list((work / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "metrics.json").is_file() and (runs[0] / "report.html").is_file()
    assert proc.stdout.count("Preparing data from") == 1 and "on each of 2 processes" in proc.stdout
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    batches = -(-int(metrics["data"]["train"]) // 8)
    assert metrics["steps"] == -(-batches // 2)
    bad = subprocess.run(cmd[:-2] + ["--lr", "-1"], capture_output=True, text=True, timeout=120, env=env, cwd=work,
                         check=False)
    assert bad.returncode != 0 and "nnforge finetune" in bad.stderr
