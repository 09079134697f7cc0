"""The benchmark suite (`python -m benchmarks`) end to end on its smallest workload, plus its analytic FLOP
counts against hand-computed values."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import suite

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmarks", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, check=False)


def test_quick_adamw_prints_ratio_row_and_saves_json(tmp_path):
    path = tmp_path / "suite.json"
    out = run("--only", "adamw", "--quick", "--repeats", "2", "--threads", "1", "--markdown", "--json", str(path))
    assert out.returncode == 0, out.stderr
    assert "## Suite (`python -m benchmarks`)" in out.stdout
    assert "| workload | nnforge ms | torch ms | ratio nf/torch |" in out.stdout
    rows = [line for line in out.stdout.splitlines() if line.startswith("| AdamW step")]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    ratio = float(cells[3])
    assert cells[4] == "<= 1.00" and cells[-1].endswith("GB/s")

    result = json.loads(path.read_text())
    assert result["threads"] == 1 and result["quick"] is True and result["gemm_gflops"] > 0
    (row,) = result["workloads"]
    assert row["name"] == "adamw" and row["bytes"] == 28 * 4 * 500 * 200
    assert row["repeats"] == 2  # --quick keeps the repeats asked for (min_repeats applies to full runs)
    assert row["ratio"] == pytest.approx(row["nf_ms"] / row["torch_ms"])
    assert f"{row['ratio']:.2f}" == f"{ratio:.2f}"
    for side in ("nf", "torch"):
        assert row[f"{side}_ms"] > 0 and row[f"{side}_gbps"] > 0
        if sys.platform.startswith("linux"):
            mem = row[f"{side}_mem"]
            assert set(mem) == {"setup", "base", "growth", "peak"}
            assert mem["peak"] >= mem["base"] > 0 and mem["growth"] >= 0


def test_list_and_unknown_workload(capsys):
    suite.main(["--list"])
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == [w.name for w in suite.WORKLOADS]
    with pytest.raises(SystemExit):
        suite.main(["--only", "adamw,resnet"])
    assert "unknown workload(s) resnet" in capsys.readouterr().err


def test_cheap_workloads_get_more_repeats_and_the_report_says_so():
    cheap = {w.name for w in suite.WORKLOADS if w.min_repeats > 5}
    assert {"minilm_infer", "cnn", "lstm", "adamw"} <= cheap and "gpt2_train" not in cheap
    result = {"repeats": 5, "workloads": [{"title": "LSTM step, B=64", "repeats": 11},
                                          {"title": "GPT-2 step, B=4", "repeats": 5},
                                          {"title": "CNN step, B=128", "repeats": 11}]}
    assert suite._repeats_text(result) == "5 (11 for LSTM step, CNN step)"
    assert suite._repeats_text({"repeats": 5, "workloads": result["workloads"][1:2]}) == "5"


def test_flop_formulas():
    # one BERT layer, d=2, ff=4, B=1, T=3, inference: weights 3 * (4*4 + 2*8) + pooler 4 = 100; attention 4*9*2
    assert suite.encoder_flops(1, 3, layers=1, d=2, ff=4, training=False) == 2 * 100 + 72
    # training adds the classifier (d * labels = 4) and triples
    assert suite.encoder_flops(1, 3, layers=1, d=2, ff=4, training=True) == 3 * (2 * 104 + 72)
    assert suite.gpt2_flops(1, 2, n_layer=1, n_embd=2, vocab_size=5) == 6 * 2 * (48 + 10) + 12 * 4 * 2
    assert suite.cnn_flops(1) == 6 * (14 * 14 * 64 * 32 * 9 + 3136 * 10) + 4 * 28 * 28 * 32 * 9
    assert suite.lstm_flops(1, 1, hidden=1, emb=1, classes=1) == 6 * (8 + 1)
    # generation = prompt forward + one single-token forward per further new token
    assert suite.generate_flops(1, prompt=4) == suite.prefill_flops(4)
    step = suite._llama_forward_flops(1, 5, 1, **suite.SMOLLM2_CFG)  # the second token attends to 5 positions
    assert suite.generate_flops(2, prompt=4) == suite.prefill_flops(4) + step
