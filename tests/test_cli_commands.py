"""The other commands: ``models``, ``download --list``, ``train --config``, ``generate`` (streams SmolLM2 tokens),
and the parser (``--help`` of every command)."""
from __future__ import annotations

import pytest

from nnforge import hub
from nnforge.cli import build_parser, main
from tests.cli_helpers import REPO, run_cli


def test_every_command_has_help(capsys):
    for command in ("finetune", "evaluate", "predict", "generate", "train", "download", "models"):
        with pytest.raises(SystemExit) as e:
            build_parser().parse_args([command, "--help"])
        assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--resume" in out and "--method" in out and "--text-column" in out


def test_models_lists_known_names(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in hub.known_names():
        assert name in out
    assert "cached" in out
    assert main(["download", "--list"]) == 0


def test_train_config_errors(tmp_path, capsys):
    cfg = tmp_path / "t.yaml"
    cfg.write_text("example: resnet\n")
    assert main(["train", "--config", str(cfg)]) == 2
    assert "unknown example 'resnet'" in capsys.readouterr().err
    cfg.write_text("example: char_lm\nargs: {no_such_option: 1}\n")
    assert main(["train", "--config", str(cfg)]) == 2
    assert "bad option" in capsys.readouterr().err


def test_shipped_train_configs_parse():
    from nnforge.finetune.config import FinetuneConfig, load_yaml

    for path in sorted((REPO / "examples" / "configs").glob("*.yaml")):
        values = load_yaml(path)
        if path.name.startswith("finetune"):
            FinetuneConfig.from_dict(values)
        else:
            assert values["example"] in ("cnn_fashion_mnist", "char_lm", "rnn_sentiment") and isinstance(values["args"], dict)


def test_train_char_lm_from_config(tmp_path):
    from nnforge.datasets import jane_austen

    if jane_austen.jane_austen_dir() is None:
        pytest.skip("Jane Austen's novels are not fetched (bash .ci/fetch_data.sh)")
    cfg = tmp_path / "lm.yaml"
    cfg.write_text("example: char_lm\nargs: {steps: 3, batch_size: 4, seq_len: 16, hidden: 16, length: 10}\n")
    proc = run_cli("train", "--config", str(cfg), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_generate_streams_tokens():
    if not hub.cached_path("smollm2-135m-instruct").exists():
        pytest.skip("SmolLM2 is not in the cache (nnforge download smollm2-135m-instruct)")
    proc = run_cli("generate", "What is the capital of France?", "--max-new-tokens", "12")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Paris" in proc.stdout


def test_generate_unknown_model():
    proc = run_cli("generate", "no-such-lm", "hello")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "no-such-lm" in proc.stderr
