"""GPT-2 training step (forward + causal-LM loss + backward + AdamW, dropout on): nnforge vs transformers +
PyTorch on the CPU, alternated, median times and the nnforge/torch ratio.

Default: the GPT-2 small config (12 layers, 768 wide, 12 heads, vocab 50257), random init in nnforge with the
same weights copied into transformers' ``GPT2LMHeadModel``; batch 4 x length 256 of random token ids.

    python benchmarks/bench_gpt2.py [--batch 4] [--seq 256] [--repeats 3] [--threads N] [--profile]
"""
from __future__ import annotations

import nnforge  # noqa: F401  (before NumPy loads: OpenBLAS reads nnforge's thread defaults only then)

# isort: split

import argparse

import numpy as np
import torch

import nnforge as nf
from nnforge.models.gpt2 import GPT2Config, GPT2LMHeadModel

try:
    from benchmarks.common import compare, machine, print_profile, print_table, set_threads
except ImportError:  # run as a script from benchmarks/
    from common import compare, machine, print_profile, print_table, set_threads


def train_step_case(batch: int = 4, seq: int = 256, **config) -> tuple:
    """(nnforge step, torch step) closures: one AdamW training step of the same GPT-2 on the same batch.

    ``config`` overrides GPT2Config fields (defaults: GPT-2 small)."""
    import transformers

    nf.manual_seed(0)
    ours = GPT2LMHeadModel(GPT2Config(**config)).train()
    theirs = transformers.GPT2LMHeadModel(transformers.GPT2Config(**config)).train()
    # nnforge Linear (out, in) -> transformers Conv1D (in, out) through the checkpoint key mapping
    state = ours._to_checkpoint_keys({k: v.numpy() for k, v in ours.state_dict().items()})
    missing, unexpected = theirs.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state.items()},
                                                 strict=False)
    if unexpected or [k for k in missing if not k.endswith((".attn.bias", ".attn.masked_bias"))]:
        raise RuntimeError(f"GPT-2 weight copy: missing {missing}, unexpected {unexpected}")
    nf_opt = nf.optim.AdamW(ours.parameters(), lr=1e-4)
    torch_opt = torch.optim.AdamW(theirs.parameters(), lr=1e-4)
    ids = np.random.default_rng(0).integers(0, ours.config.vocab_size, (batch, seq))
    t_ids = torch.from_numpy(ids)

    def nf_step() -> None:
        nf_opt.zero_grad()
        ours(ids, labels=ids).loss.backward()
        nf_opt.step()

    def torch_step() -> None:
        torch_opt.zero_grad()
        theirs(input_ids=t_ids, labels=t_ids).loss.backward()
        torch_opt.step()

    return nf_step, torch_step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    threads = set_threads(args.threads)
    nf_step, torch_step = train_step_case(args.batch, args.seq)
    if args.profile:
        print_profile(nf_step, 1)
        return
    a, b = compare(nf_step, torch_step, number=1, repeats=args.repeats, warmup=1)
    print(machine() + f", {threads} threads")
    print_table(f"GPT-2 small training step (B={args.batch}, L={args.seq}, AdamW)", [("fwd + loss + bwd + AdamW", a, b)],
                unit="ms", scale=1e3)


if __name__ == "__main__":
    main()
