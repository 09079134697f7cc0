"""Crash safety: SIGKILL a training process at random moments (many inside a checkpoint save), resume each time
in a fresh process, and the final weights equal an uninterrupted run's bit for bit."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import nnforge as nf
from nnforge.train import checkpoint as ckpt

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")

TOTAL_STEPS = 30
REPO = Path(__file__).resolve().parents[1]

# The worker trains a dropout MLP with AdamW + scheduler + accumulation + shuffling, saving every step and
# keeping 3 checkpoints. With SLOW_FSYNC set, each fsync prints "fsync" and sleeps: saves become slow and
# observable, so the test can kill the process in the middle of one.
WORKER = r"""
import os, sys, time
if os.environ.get("SLOW_FSYNC"):
    _fsync = os.fsync
    def _slow_fsync(fd):
        print("fsync", flush=True)
        time.sleep(float(os.environ["SLOW_FSYNC"]))
        _fsync(fd)
    os.fsync = _slow_fsync
import numpy as np
import nnforge as nf, nnforge.nn as nn, nnforge.nn.functional as F
from nnforge.optim import lr_scheduler as lrs
from nnforge.train import Trainer
out, steps, resume = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "resume"
rng = np.random.default_rng(0)
x = rng.standard_normal((60, 8)).astype(np.float32)
y = (x[:, :3].sum(1) > 0).astype(np.int64)
nf.manual_seed(0)
model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.25), nn.Linear(32, 2))
opt = nf.optim.AdamW(model.parameters(), lr=1e-2)
sched = lrs.get_cosine_schedule_with_warmup(opt, 5, steps)
trainer = Trainer(model, opt, F.cross_entropy, (x, y), batch_size=8, epochs=1000, output_dir=out,
                  save_steps=1, save_total_limit=3, seed=1, gradient_accumulation_steps=2, lr_scheduler=sched,
                  max_grad_norm=1.0)
print("start", flush=True)
trainer.train(max_steps=steps, resume_from_checkpoint=resume)
nf.save(model.state_dict(), os.path.join(out, "final.safetensors"))
print("done", trainer.resumed_from, flush=True)
"""


def _spawn(out: Path, mode: str, slow: float | None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("SLOW_FSYNC", None)
    if slow:
        env["SLOW_FSYNC"] = str(slow)
    return subprocess.Popen([sys.executable, "-c", WORKER, str(out), str(TOTAL_STEPS), mode], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run_to_end(out: Path, mode: str) -> str:
    proc = _spawn(out, mode, None)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    return stdout


def _check_directory(out: Path) -> None:
    """Every checkpoint-<step> directory is complete and verifies against its manifest."""
    for p in out.iterdir():
        if p.name.startswith("checkpoint-") and "." not in p.name:
            assert (p / ckpt.COMPLETE).is_file(), f"{p.name} exists without its COMPLETE marker"
            ckpt.read_checkpoint(p)


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_is_bit_identical(tmp_path):
    ref_dir, run_dir = tmp_path / "reference", tmp_path / "killed"
    _run_to_end(ref_dir, "fresh")
    reference = nf.load(ref_dir / "final.safetensors")

    rnd = random.Random(20240601)
    mid_save_kills = 0
    for attempt in range(8):
        proc = _spawn(run_dir, "resume", slow=0.004)
        try:
            if attempt % 2 == 0:
                # kill right after the k-th fsync: inside a checkpoint save (files half written, marker
                # missing, directory not yet renamed or old checkpoints being rotated out)
                k = rnd.randint(1, 60)
                seen = 0
                for line in proc.stdout:
                    seen += line.strip() == "fsync"
                    if seen >= k:
                        break
            else:
                assert proc.stdout.readline().strip() == "start"
                time.sleep(rnd.uniform(0.0, 0.6))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
        if proc.returncode == -signal.SIGKILL:
            mid_save_kills += any(".tmp-" in p.name for p in run_dir.iterdir())
        _check_directory(run_dir)
    assert mid_save_kills >= 1, "no kill landed inside a save"
    steps = [int(p.name.split("-")[1]) for p in ckpt.list_checkpoints(run_dir)]
    assert steps and max(steps) < TOTAL_STEPS, steps  # the kills interrupted real progress

    stdout = _run_to_end(run_dir, "resume")
    assert "done" in stdout and "checkpoint-" in stdout  # the last process resumed, it did not start over
    final = nf.load(run_dir / "final.safetensors")
    assert final.keys() == reference.keys()
    for name in reference:
        assert np.array_equal(final[name].numpy(), reference[name].numpy()), f"{name} differs"
    _check_directory(run_dir)
    assert [p.name for p in ckpt.list_checkpoints(run_dir)] == [f"checkpoint-{s}" for s in (28, 29, 30)]
    assert not [p for p in run_dir.iterdir() if ".tmp-" in p.name or ".trash-" in p.name]
