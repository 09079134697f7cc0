"""Bad input to the CLI ends with exit status 2 and one line on stderr (no traceback), leaves an existing run folder
as it was; Ctrl-C during training saves a checkpoint, says how to resume, and ``--resume`` finishes the run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from nnforge.cli import main
from tests.cli_helpers import REPO, make_rows, make_tiny_model, run_cli, write_csv


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-errors")
    model = make_tiny_model(root / "tiny-bert")
    data = write_csv(root / "good.csv", make_rows(60))
    run = root / "run"
    assert main(["finetune", "--model", str(model), "--data", str(data), "--max-steps", "2",
                 "--output-dir", str(run)]) == 0
    snapshot = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    return {"root": root, "model": model, "data": data, "run": run, "snapshot": snapshot}


def _fails(capsys, argv, *needles):
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _finetune(setup, data, *extra):
    return ["finetune", "--model", str(setup["model"]), "--data", str(data), "--max-steps", "1",
            "--output-dir", str(setup["root"] / "never"), *extra]


def test_missing_and_empty_file(setup, capsys):
    _fails(capsys, _finetune(setup, setup["root"] / "nope.csv"), "nope.csv", "no such file")
    empty = setup["root"] / "empty.csv"
    empty.write_text("")
    _fails(capsys, _finetune(setup, empty), "empty")
    header_only = write_csv(setup["root"] / "header.csv", [])
    _fails(capsys, _finetune(setup, header_only), "no data rows")


def test_unknown_columns_listed(setup, capsys):
    msg = _fails(capsys, _finetune(setup, setup["data"], "--text-column", "body"), "no text column 'body'")
    assert "review" in msg and "sentiment" in msg  # the columns found
    _fails(capsys, _finetune(setup, setup["data"], "--label-column", "stars"), "columns found: review, sentiment")


def test_one_class(setup, capsys):
    one = write_csv(setup["root"] / "one.csv", [(t, "pos") for t, _ in make_rows(20)])
    _fails(capsys, _finetune(setup, one), "only one class", "'pos'")


def test_undecodable_bytes_name_the_line(setup, capsys):
    bad = setup["root"] / "latin1.csv"
    bad.write_bytes(b"text,label\ngood film,pos\nbad film,neg\n" + b"caf\xe9 film,pos\n")
    _fails(capsys, _finetune(setup, bad), "line 4", "UTF-8")


def test_unseen_labels_at_evaluation(setup, capsys):
    other = write_csv(setup["root"] / "other.csv", [(t, "meh") for t, _ in make_rows(6)] + make_rows(4))
    _fails(capsys, ["evaluate", str(setup["run"]), "--data", str(other)], "labels not seen in training", "'meh'")


def test_unknown_model_name(setup, capsys):
    _fails(capsys, _finetune(setup, setup["data"])[:1] + ["--model", "no-such-model-xyz", "--data",
                                                           str(setup["data"])], "no-such-model-xyz", "known names")


def test_bad_config_file(setup, capsys):
    cfg = setup["root"] / "bad.yaml"
    cfg.write_text("learning_rate: 0.1\n")
    _fails(capsys, ["finetune", "--config", str(cfg)], "unknown setting", "learning_rate")


def test_existing_run_folder_is_kept(setup, capsys):
    run = setup["run"]
    _fails(capsys, ["finetune", "--model", str(setup["model"]), "--data", str(setup["data"]),
                    "--output-dir", str(run)], "not empty")
    _fails(capsys, ["finetune", "--model", str(setup["model"]), "--data", str(setup["root"] / "missing.csv"),
                    "--output-dir", str(run), "--resume"])
    after = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()
             if not str(p.relative_to(run)).startswith("eval-")}
    assert after == setup["snapshot"]


def test_subprocess_exit_status_and_debug(setup):
    proc = run_cli("finetune", "--data", str(setup["root"] / "nope.csv"), "--output-dir", str(setup["root"] / "x"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    proc = run_cli("finetune", "--debug", "--data", str(setup["root"] / "nope.csv"),
                   "--output-dir", str(setup["root"] / "x"))
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_ctrl_c_saves_checkpoint_and_resume_finishes(setup):
    root = setup["root"]
    data = write_csv(root / "long.csv", make_rows(400, seed=1))
    run = root / "run-interrupted"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "nnforge", "finetune", "--model", str(setup["model"]), "--data",
                             str(data), "--batch-size", "4", "--epochs", "30", "--output-dir", str(run)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    for line in proc.stdout:  # wait until training has started
        if line.startswith("Fine-tuning") or time.time() > deadline:
            break
    time.sleep(2.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    checkpoints = list((run / "checkpoints").glob("checkpoint-*"))
    assert len(checkpoints) == 1
    step = int(checkpoints[0].name.split("-")[1])
    assert step >= 1 and not (run / "metrics.json").exists()
    proc = run_cli("finetune", "--output-dir", str(run), "--resume", "--max-steps", str(step + 3))
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = json.loads((run / "metrics.json").read_text())
    assert m["steps"] == step + 3
