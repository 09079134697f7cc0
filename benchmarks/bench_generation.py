"""SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised to float32) text generation: nnforge vs transformers + PyTorch.

Both run the same weights (transformers gets nnforge's dequantised state dict, or loads the GGUF itself with
``--hf-gguf``), greedy, with a KV cache, alternating repeats; medians are reported:
- prompt processing: one forward pass over a ``--prompt``-token prompt (logits of the last position only);
- generation: ``generate`` of ``--new`` tokens after a 16-token prompt (EOS disabled), tokens/s;
- loading: peak memory while nnforge loads the GGUF (tracemalloc peak and RSS growth, in a fresh process),
  against the size of the float32 weights.

BLAS / intra-op threads are set to the same ``--threads`` for both (default 1: this machine is shared).

    python benchmarks/bench_generation.py [--prompt 128] [--new 64] [--repeats 3] [--threads 1] [--profile]
"""
from __future__ import annotations

import nnforge  # noqa: F401  (before NumPy loads: OpenBLAS reads nnforge's thread defaults only then)

# isort: split

import argparse
import cProfile
import json
import pstats
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

import nnforge as nf
from nnforge.io.fetch_gguf import fetch_smollm2_gguf
from nnforge.models.llama import LlamaForCausalLM

try:
    from benchmarks.common import machine, set_threads
except ImportError:  # run as a script from benchmarks/
    from common import machine, set_threads

_LOAD_PROBE = """
import json, sys, time, tracemalloc
from nnforge.models.llama import LlamaForCausalLM

def hwm():  # peak RSS of this process image in bytes (VmHWM; ru_maxrss would include the parent's, from before exec)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))

rss0 = hwm()
tracemalloc.start()
t = time.perf_counter()
m = LlamaForCausalLM.from_pretrained(sys.argv[1])
seconds = time.perf_counter() - t
_, peak = tracemalloc.get_traced_memory()
rss1 = hwm()
weights = sum(p.numel() * p.data.itemsize for p in m.parameters())
print(json.dumps({"seconds": seconds, "tracemalloc_peak": peak, "rss_growth": rss1 - rss0,
                  "weights": weights}))
"""


def load_memory(path) -> dict:
    """Peak memory of loading the GGUF in a fresh interpreter (so earlier allocations do not count)."""
    out = subprocess.run([sys.executable, "-c", _LOAD_PROBE, str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def hf_model(ours: LlamaForCausalLM, path, from_gguf: bool):
    import transformers

    if from_gguf:
        return transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name).eval()
    cfg = ours.config.to_dict()
    cfg.pop("rope_scaling", None)
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**cfg)).eval()
    state = {k: torch.from_numpy(v.detach().numpy().copy()) for k, v in ours.state_dict().items()}
    hf.load_state_dict(state, strict=False)
    hf.tie_weights()
    return hf


def models(from_gguf: bool = False) -> tuple:
    """(nnforge model, transformers model) with the same SmolLM2 weights; EOS disabled for transformers."""
    path = fetch_smollm2_gguf()
    ours = LlamaForCausalLM.from_pretrained(path)
    hf = hf_model(ours, path, from_gguf)
    hf.generation_config.eos_token_id = None
    hf.generation_config.pad_token_id = 2
    return ours, hf


def prefill_case(ours: LlamaForCausalLM, hf, length: int) -> tuple:
    """(nnforge, transformers) closures: one forward pass over a random ``length``-token prompt that fills the
    KV cache and returns the last position's logits."""
    prompt = np.random.default_rng(0).integers(3, ours.config.vocab_size, (1, length))

    def nf_prefill():
        with nf.no_grad():
            return ours(nf.tensor(prompt), use_cache=True, logits_to_keep=1).logits

    def hf_prefill():
        with torch.no_grad():
            return hf(torch.tensor(prompt), use_cache=True, logits_to_keep=1).logits

    return nf_prefill, hf_prefill


def generate_case(ours: LlamaForCausalLM, hf, new: int, length: int = 16) -> tuple:
    """(nnforge, transformers) closures: greedy ``generate`` of ``new`` tokens (KV cache, no EOS) after a random
    ``length``-token prompt."""
    short = np.random.default_rng(1).integers(3, ours.config.vocab_size, (1, length))

    def nf_generate():
        return ours.generate(nf.tensor(short), max_new_tokens=new, eos_token_id=-1)

    def hf_generate():
        with torch.no_grad():
            return hf.generate(torch.tensor(short), max_new_tokens=new, do_sample=False)

    return nf_generate, hf_generate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompt", type=int, default=128, help="prompt length for prompt processing")
    ap.add_argument("--new", type=int, default=64, help="tokens to generate")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--hf-gguf", action="store_true", help="let transformers load the GGUF itself (slow)")
    ap.add_argument("--profile", action="store_true", help="cProfile nnforge's generation instead")
    args = ap.parse_args()

    set_threads(args.threads)
    ours, hf = models(args.hf_gguf)
    nf_prefill, hf_prefill = prefill_case(ours, hf, args.prompt)
    nf_generate, hf_generate = generate_case(ours, hf, args.new)

    if args.profile:
        nf_generate()
        cProfile.runctx("nf_generate()", globals(), locals(), "/tmp/nnforge_generation.prof")
        pstats.Stats("/tmp/nnforge_generation.prof").sort_stats("tottime").print_stats(25)
        return

    with torch.no_grad():
        diff = float(np.abs(nf_prefill().numpy()[:, -1] - hf_prefill().numpy()[:, -1]).max())
    same = bool((nf_generate().numpy() == hf_generate().numpy()).all())

    results = {"prefill": ([], []), "generate": ([], [])}
    for _ in range(args.repeats):
        for name, fns in (("prefill", (nf_prefill, hf_prefill)), ("generate", (nf_generate, hf_generate))):
            for fn, bucket in zip(fns, results[name]):
                t = time.perf_counter()
                fn()
                bucket.append(time.perf_counter() - t)

    mem = load_memory(fetch_smollm2_gguf())
    print(f"{machine()}; {args.threads} BLAS/intra-op thread(s); medians of {args.repeats} alternated runs")
    print(f"last-position logits max abs diff nnforge vs transformers: {diff:.3g}; greedy tokens identical: {same}")
    print("| workload | nnforge tok/s | transformers tok/s | ratio nf/hf |")
    print("|---|---|---|---|")
    for name, n in (("prefill", args.prompt), ("generate", args.new)):
        a, b = (statistics.median(x) for x in results[name])
        label = f"prompt processing ({n} tokens)" if name == "prefill" else f"generation ({n} new tokens)"
        print(f"| {label} | {n / a:.1f} | {n / b:.1f} | {b / a:.2f} |")
    print(f"loading SmolLM2 GGUF in nnforge: {mem['seconds']:.2f} s; float32 weights {mem['weights'] / 2**20:.0f} MiB; "
          f"tracemalloc peak {mem['tracemalloc_peak'] / 2**20:.0f} MiB "
          f"({mem['tracemalloc_peak'] / mem['weights']:.2f}x); RSS growth {mem['rss_growth'] / 2**20:.0f} MiB "
          f"({mem['rss_growth'] / mem['weights']:.2f}x)")


if __name__ == "__main__":
    main()
