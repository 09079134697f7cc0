"""Determinism: the same seed on the same machine gives bit-identical losses and weights, run after run — in one
process, across processes (with different hash seeds), and through the ``nnforge finetune`` CLI."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import nnforge as nf
from tests.cli_helpers import REPO, make_rows, make_tiny_model, run_cli, write_csv

# A Trainer run with everything that draws random numbers: init, dropout, shuffling, accumulation, a scheduler.
SCRIPT = r"""
import sys
import numpy as np
import nnforge as nf, nnforge.nn as nn, nnforge.nn.functional as F
from nnforge.optim import lr_scheduler as lrs
from nnforge.train import Trainer


def run(out=None):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((96, 10)).astype(np.float32)
    y = (x[:, :4].sum(1) > 0).astype(np.int64)
    nf.manual_seed(123)
    model = nn.Sequential(nn.Linear(10, 32), nn.GELU(), nn.Dropout(0.3), nn.LayerNorm(32), nn.Linear(32, 2))
    opt = nf.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    sched = lrs.get_linear_schedule_with_warmup(opt, 3, 24)
    trainer = Trainer(model, opt, F.cross_entropy, (x, y), batch_size=8, epochs=2, seed=7, logging_steps=1,
                      gradient_accumulation_steps=2, lr_scheduler=sched, max_grad_norm=1.0, output_dir=out)
    trainer.train()
    return [e["loss"] for e in trainer.log_history], {k: v.numpy() for k, v in model.state_dict().items()}


if __name__ == "__main__":
    losses, weights = run()
    nf.save({"losses": np.array(losses, np.float64), **weights}, sys.argv[1])
"""


def _run_in_process():
    namespace: dict = {}
    exec(compile(SCRIPT, "determinism_script", "exec"), namespace)  # noqa: S102  (our own script)
    return namespace["run"]()


def test_trainer_same_seed_bit_identical_in_process():
    losses_a, weights_a = _run_in_process()
    nf.manual_seed(999)  # disturb the global generator between the runs: the Trainer reseeds
    np.random.seed(5)
    losses_b, weights_b = _run_in_process()
    assert len(losses_a) == 12 and losses_a == losses_b  # float equality: bit for bit
    for name in weights_a:
        assert np.array_equal(weights_a[name], weights_b[name]), name


def test_trainer_same_seed_bit_identical_across_processes(tmp_path):
    outputs = []
    for hash_seed in ("0", "4242"):
        out = tmp_path / f"run-{hash_seed}.safetensors"
        env = dict(os.environ, PYTHONHASHSEED=hash_seed,
                   PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        subprocess.run([sys.executable, "-c", SCRIPT, str(out)], env=env, check=True, timeout=120)
        outputs.append(nf.load(out))
    losses, weights = _run_in_process()
    assert outputs[0].keys() == outputs[1].keys()
    for name in outputs[0]:
        assert np.array_equal(outputs[0][name].numpy(), outputs[1][name].numpy()), name
    assert outputs[0]["losses"].numpy().tolist() == losses
    for name, value in weights.items():
        assert np.array_equal(outputs[0][name].numpy(), value), name


def _cli_available() -> bool:
    try:
        from nnforge.cli import main  # noqa: F401
        from nnforge.finetune.run import run_finetune  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _cli_available(), reason="the nnforge CLI (nnforge.cli, nnforge.finetune) is not available")
def test_cli_finetune_same_seed_bit_identical(tmp_path):
    model = make_tiny_model(tmp_path / "tiny-bert")
    data = write_csv(tmp_path / "reviews.csv", make_rows(80))
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        proc = run_cli("finetune", "--model", str(model), "--data", str(data), "--max-steps", "6", "--batch-size", "8",
                       "--lr", "3e-3", "--seed", "11", "--output-dir", str(out), cwd=tmp_path, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        with open(out / "history.csv", newline="") as f:
            history = [{k: v for k, v in row.items() if "time" not in k and not k.endswith("_s")}
                       for row in csv.DictReader(f)]
        metrics = {k: v for k, v in json.loads((out / "metrics.json").read_text()).items()
                   if not k.endswith(("_s", "_seconds", "time"))}  # losses and scores, not timings
        runs.append((history, metrics, nf.load(out / "model" / "model.safetensors")))
    (hist_a, metrics_a, weights_a), (hist_b, metrics_b, weights_b) = runs
    assert hist_a and hist_a == hist_b
    assert "test_loss" in metrics_a and metrics_a == metrics_b
    assert weights_a.keys() == weights_b.keys()
    for name in weights_a:
        assert np.array_equal(weights_a[name].numpy(), weights_b[name].numpy()), name
