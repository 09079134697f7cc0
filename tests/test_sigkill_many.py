"""Crash safety at scale: 20+ SIGKILLs at random moments of one training run (half of them inside a checkpoint
save), then a resume whose final weights equal an uninterrupted run's bit for bit.

After every kill: each ``checkpoint-<step>`` directory is complete and verifies against its manifest (none
corrupted), and the newest checkpoint that existed before the kill is still there or superseded (none lost).
The worker process and the helpers come from ``test_trainer_sigkill``.
"""
from __future__ import annotations

import random
import signal
import time

import numpy as np
import pytest

import nnforge as nf
from nnforge.train import checkpoint as ckpt
from tests import test_trainer_sigkill as worker

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")]

KILLS = 20
STEPS = 100


def _newest(out) -> int:
    found = ckpt.list_checkpoints(out)
    return int(found[-1].name.split("-")[1]) if found else 0


def test_twenty_random_kills_lose_nothing_and_resume_bit_identical(tmp_path, monkeypatch):
    monkeypatch.setattr(worker, "TOTAL_STEPS", STEPS)
    ref_dir, run_dir = tmp_path / "reference", tmp_path / "killed"
    worker._run_to_end(ref_dir, "fresh")
    reference = nf.load(ref_dir / "final.safetensors")

    rnd = random.Random(7)
    kills = mid_save = lost = 0
    for attempt in range(KILLS):
        before = _newest(run_dir)
        proc = worker._spawn(run_dir, "resume", slow=0.003)
        try:
            if attempt % 2 == 0:  # right after the k-th fsync: inside a save (or a rotation)
                k, seen = rnd.randint(1, 40), 0
                for line in proc.stdout:
                    seen += line.strip() == "fsync"
                    if seen >= k:
                        break
            else:  # at a random moment after start-up
                assert proc.stdout.readline().strip() == "start"
                time.sleep(rnd.uniform(0.0, 0.4))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
        assert proc.returncode == -signal.SIGKILL, f"attempt {attempt}: the worker ended before the kill"
        kills += 1
        mid_save += any(".tmp-" in p.name for p in run_dir.iterdir())
        worker._check_directory(run_dir)  # every complete checkpoint loads and matches its manifest
        lost += _newest(run_dir) < before
    print(f"\n{kills} kills, {mid_save} inside a save, {lost} checkpoints lost, newest step {_newest(run_dir)}")
    assert kills >= 20 and lost == 0
    assert mid_save >= 3, "too few kills landed inside a save"
    assert 0 < _newest(run_dir) < STEPS, "the kills did not interrupt real progress"

    stdout = worker._run_to_end(run_dir, "resume")
    assert "done" in stdout and "checkpoint-" in stdout  # it resumed, it did not start over
    final = nf.load(run_dir / "final.safetensors")
    assert final.keys() == reference.keys()
    for name in reference:
        assert np.array_equal(final[name].numpy(), reference[name].numpy()), f"{name} differs"
    worker._check_directory(run_dir)
    assert [p.name for p in ckpt.list_checkpoints(run_dir)] == [f"checkpoint-{s}" for s in (98, 99, 100)]
    assert not [p for p in run_dir.iterdir() if ".tmp-" in p.name or ".trash-" in p.name]
