"""Shared pieces of the CLI tests: a tiny BERT classifier folder (WordPiece vocab.txt, random weights) and small
labelled files, so the end-to-end tests run in seconds without downloads."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
POS = ["good", "great", "fine", "lovely", "superb", "fun", "warm", "smart", "bright", "moving"]
NEG = ["bad", "awful", "dull", "boring", "weak", "ugly", "cold", "silly", "flat", "tedious"]
FILL = ["the", "movie", "film", "was", "a", "story", "plot", "acting", "really", "very", "and", "it", "is", "this"]


def make_tiny_model(directory: Path) -> Path:
    """A 2-layer, 32-wide BERT with a WordPiece vocabulary of the words used by :func:`make_rows`."""
    import nnforge as nf
    from nnforge.models.bert import BertConfig, BertForSequenceClassification

    directory.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(set(POS + NEG + FILL + [".", ","]))
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (directory / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "model_max_length": 128}))
    nf.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, type_vocab_size=2)
    BertForSequenceClassification(config).save_pretrained(directory)
    return directory


def make_rows(n: int, seed: int = 0, labels: tuple = ("neg", "pos")) -> list[tuple[str, str]]:
    """``n`` (text, label) rows; a text's sentiment words give its label away."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        y = i % 2
        words = list(rng.choice(FILL, size=int(rng.integers(3, 12)))) + list(rng.choice(POS if y else NEG, size=2))
        rng.shuffle(words)
        rows.append((" ".join(words) + f" {'.' if i % 3 else ','}", labels[y]))
    return rows


def write_csv(path: Path, rows: list, header: tuple = ("review", "sentiment")) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "nnforge", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=timeout, check=False)
