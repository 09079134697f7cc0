"""The benchmark suite: every headline workload, nnforge against PyTorch (or transformers + PyTorch), one command.

    python -m benchmarks [--only NAME[,NAME]] [--repeats 5] [--threads N] [--markdown] [--json PATH]
    python -m benchmarks --list            # workload names
    python -m benchmarks --profile NAME    # nnforge's cProfile top entries for one workload

Per workload it reports:
- median time of nnforge and of PyTorch per call, timed alternately in this one process (``common.compare``),
  and the ratio nf/torch (below 1: nnforge is faster), next to the target from the issue;
- peak memory of each framework, measured in a fresh subprocess per framework (``--probe``, below): the growth
  of RSS during the measured steps over the RSS after setup + one warm-up step, and the total peak RSS;
- MFU of each: the workload's analytic FLOPs (formulas at each ``*_flops`` function) per second over the
  machine's float32 GEMM peak, measured once with NumPy's BLAS at the same thread count. Memory-bound work
  (AdamW) reports bandwidth in GB/s instead.

The builders are the per-area scripts' (``bench_minilm``, ``bench_gpt2``, ``bench_generation``, ``bench_conv``,
``bench_rnn``, ``bench_adamw``); ``--quick`` shrinks every size (and the GEMM probe) for tests.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .common import SETTLE_S, compare, gemm_peak_gflops, machine, print_profile, set_threads

MINILM = "all-MiniLM-L6-v2"
# all-MiniLM-L6-v2 (its config.json), GPT-2 small (transformers' defaults), SmolLM2-135M (its GGUF metadata)
MINILM_CFG = {"layers": 6, "d": 384, "ff": 1536}
GPT2_CFG = {"n_layer": 12, "n_embd": 768, "n_head": 12, "vocab_size": 50257}
GPT2_QUICK = {"n_layer": 2, "n_embd": 64, "n_head": 4, "vocab_size": 1000, "n_positions": 64}
SMOLLM2_CFG = {"layers": 30, "d": 576, "kv": 192, "ff": 1536, "vocab": 49152}


# -- analytic FLOPs -----------------------------------------------------------------------------------------
# Matmul FLOPs only (2 per multiply-add); elementwise work, softmax and normalisation are not counted.
# Training = forward + backward = 3x forward (the backward of a matmul is two matmuls of the same size).
# Attention scores and the weighted sum cost 2 * 2 * T^2 * d per sequence and layer, counted in full even
# where a causal mask makes half of it useless (both frameworks compute the full T x T products).

def encoder_flops(batch: int, seq: int, layers: int, d: int, ff: int, training: bool, labels: int = 2) -> float:
    """BERT: per token and layer Q, K, V, O (4 d^2) and the MLP (2 d ff) weights; per sequence the pooler
    (d^2) and, when training, the classifier (d * labels). Forward = 2 * weights * tokens + 4 L B T^2 d;
    training = 6 * weights * tokens + 12 L B T^2 d."""
    weights = batch * seq * layers * (4 * d * d + 2 * d * ff) + batch * (d * d + (d * labels if training else 0))
    fwd = 2 * weights + 4 * layers * batch * seq ** 2 * d
    return 3 * fwd if training else fwd


def gpt2_flops(batch: int, seq: int, n_layer: int, n_embd: int, vocab_size: int, **_) -> float:
    """GPT-2 training step: per token 12 d^2 weights per layer (c_attn 3 d^2, c_proj d^2, MLP 8 d^2) plus the
    LM head (V d): 6 * weights * tokens + 12 L B T^2 d."""
    tokens, d = batch * seq, n_embd
    return 6 * tokens * (n_layer * 12 * d * d + vocab_size * d) + 12 * n_layer * batch * seq ** 2 * d


def _llama_forward_flops(tokens: int, context: int, logits: int, layers: int, d: int, kv: int, ff: int,
                         vocab: int) -> float:
    """Llama forward of ``tokens`` new positions attending to ``context`` positions each: per token and
    layer q, o (d^2 each), k, v (d * kv each) and the gated MLP (3 d ff); attention 4 * tokens * context * d
    per layer; the LM head (V d) on ``logits`` positions."""
    per_token = layers * (2 * d * d + 2 * d * kv + 3 * d * ff)
    return 2 * tokens * per_token + 4 * layers * tokens * context * d + 2 * logits * vocab * d


def prefill_flops(length: int) -> float:
    """One forward over a ``length``-token prompt, logits of the last position only."""
    return _llama_forward_flops(length, length, 1, **SMOLLM2_CFG)


def generate_flops(new: int, prompt: int = 16) -> float:
    """Greedy generation with a KV cache: the prompt's forward, then one token per step attending to the
    cache (``new - 1`` steps; the first new token comes from the prompt's logits)."""
    steps = sum(_llama_forward_flops(1, prompt + i, 1, **SMOLLM2_CFG) for i in range(1, new))
    return prefill_flops(prompt) + steps


def cnn_flops(batch: int) -> float:
    """bench_conv's Fashion-MNIST CNN: conv 1->32 3x3 at 28x28, conv 32->64 3x3 at 14x14, Linear 3136->10.
    Forward 2 * MACs; backward 2 * MACs for weight grads plus 2 * MACs for input grads except the first conv
    (its input needs no gradient)."""
    conv1, conv2, fc = 28 * 28 * 32 * 1 * 9, 14 * 14 * 64 * 32 * 9, 64 * 7 * 7 * 10
    return batch * (6 * (conv2 + fc) + 4 * conv1)


def lstm_flops(batch: int, length: int, hidden: int = 256, emb: int = 128, classes: int = 2) -> float:
    """bench_rnn's LSTM classifier: per token the four gates' x W_ih^T + h W_hh^T (4H (E + H) MACs), per
    sequence the head (H * classes); training = 3 * 2 * MACs."""
    return 6 * (batch * length * 4 * hidden * (emb + hidden) + batch * hidden * classes)


def adamw_bytes(shapes: list) -> float:
    """AdamW reads param, grad, exp_avg, exp_avg_sq and writes param, exp_avg, exp_avg_sq: 7 float32 each."""
    return 28 * sum(_numel(s) for s in shapes)


def _numel(shape: tuple) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


# -- builders: the per-area scripts' (nnforge fn, torch fn) pairs ---------------------------------------------

def _minilm_finetune(batch: int, seq: int) -> tuple:
    from .bench_minilm import finetune, model_dir
    return finetune(model_dir(MINILM), batch, seq)


def _minilm_inference(batch: int, seq: int) -> tuple:
    from .bench_minilm import inference, model_dir
    return inference(model_dir(MINILM), batch, seq)


def _gpt2(batch: int, seq: int, **config) -> tuple:
    from .bench_gpt2 import train_step_case
    return train_step_case(batch, seq, **config)


def _prefill(length: int) -> tuple:
    from .bench_generation import models, prefill_case
    return prefill_case(*models(), length)


def _generate(new: int) -> tuple:
    from .bench_generation import generate_case, models
    return generate_case(*models(), new)


def _cnn(batch: int) -> tuple:
    from .bench_conv import cnn_step_case
    return cnn_step_case(batch)


def _lstm(batch: int, length: int) -> tuple:
    from .bench_rnn import training_step
    return training_step("LSTM", batch=batch, length=length)


def _adamw(shapes: list) -> tuple:
    from .bench_adamw import adamw_case
    return adamw_case(shapes)


def _adamw_shapes() -> list:
    from .bench_adamw import SHAPES
    return SHAPES


@dataclass(frozen=True)
class Workload:
    """One row of the suite. ``build(**size)`` returns (nnforge fn, torch fn), each one call of the workload;
    ``work(**size)`` its FLOPs (or bytes moved when ``bandwidth``); ``quick`` is the size used by --quick."""

    name: str
    title: str  # formatted with the size
    build: Callable[..., tuple]
    work: Callable[..., float]
    size: dict
    quick: dict
    target: float | None = None  # the target for the ratio nf/torch
    number: int = 1  # calls per timed repeat
    # at least this many timed repeats: workloads of under a second per call get more alternations for little
    # time (on a shared host one call's time moves 10-40% within seconds, so 5 samples left a median to 1-2
    # outliers: the LSTM step measured 1.07-1.63x in four runs of one afternoon)
    min_repeats: int = 0
    bandwidth: bool = False
    memory_target: bool = False  # the issue asks nnforge's peak memory <= torch's


_CHEAP_REPEATS = 11  # min_repeats of the workloads that take under a second per call

WORKLOADS = [
    Workload("minilm_ft_b16", "MiniLM-L6 fine-tune step (AdamW), B={batch}, L={seq}", _minilm_finetune,
             lambda batch, seq: encoder_flops(batch, seq, training=True, **MINILM_CFG),
             {"batch": 16, "seq": 128}, {"batch": 2, "seq": 16}, target=1.0, memory_target=True),
    Workload("minilm_ft_b32", "MiniLM-L6 fine-tune step (AdamW), B={batch}, L={seq}", _minilm_finetune,
             lambda batch, seq: encoder_flops(batch, seq, training=True, **MINILM_CFG),
             {"batch": 32, "seq": 128}, {"batch": 2, "seq": 16}, target=1.0, memory_target=True),
    Workload("minilm_infer", "MiniLM-L6 inference, B={batch}, L={seq}", _minilm_inference,
             lambda batch, seq: encoder_flops(batch, seq, training=False, **MINILM_CFG),
             {"batch": 32, "seq": 128}, {"batch": 2, "seq": 16}, target=0.9, min_repeats=_CHEAP_REPEATS),
    Workload("gpt2_train", "GPT-2 ({n_layer} layers, {n_embd} wide) train step (AdamW), B={batch}, L={seq}",
             _gpt2, gpt2_flops, {"batch": 4, "seq": 256, **GPT2_CFG}, {"batch": 2, "seq": 16, **GPT2_QUICK},
             target=1.0),
    Workload("smollm2_prefill", "SmolLM2-135M prompt processing, {length} tokens", _prefill, prefill_flops,
             {"length": 128}, {"length": 8}, min_repeats=_CHEAP_REPEATS),
    Workload("smollm2_generate", "SmolLM2-135M greedy generation, {new} new tokens", _generate, generate_flops,
             {"new": 64}, {"new": 4}, target=1.0),
    Workload("cnn", "Fashion-MNIST CNN train step (Adam), B={batch}", _cnn, cnn_flops,
             {"batch": 128}, {"batch": 8}, target=1.25, number=3, min_repeats=_CHEAP_REPEATS),
    Workload("lstm", "LSTM classifier train step (Adam), B={batch}, L={length}, H256", _lstm, lstm_flops,
             {"batch": 64, "length": 64}, {"batch": 4, "length": 8}, target=1.25, number=3,
             min_repeats=_CHEAP_REPEATS),
    Workload("adamw", "AdamW step, {params} params", _adamw, adamw_bytes, {"shapes": None},
             {"shapes": [(500, 200)] * 4}, target=1.0, number=3, bandwidth=True, min_repeats=_CHEAP_REPEATS),
]
BY_NAME = {w.name: w for w in WORKLOADS}


def size_of(w: Workload, quick: bool) -> dict:
    """The workload's sizes; AdamW's ``shapes: None`` stands for bench_adamw's 22M-parameter set."""
    size = dict(w.quick if quick else w.size)
    if w.name == "adamw" and size["shapes"] is None:
        size["shapes"] = _adamw_shapes()
    return size


def title_of(w: Workload, size: dict) -> str:
    params = f"{sum(_numel(s) for s in size['shapes']) / 1e6:.1f}M" if "shapes" in size else ""
    return w.title.format(params=params, **size)


# -- memory: one fresh interpreter per framework ------------------------------------------------------------

def _status_mb(field_name: str) -> float:
    """VmRSS / VmHWM of this process in MB (Linux)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field_name + ":")) / 1024


def _reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _release() -> None:
    """Collect garbage and hand freed heap pages back to the OS, so RSS counts live memory only."""
    import ctypes

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def probe(name: str, side: str, quick: bool, steps: int) -> dict:
    """Memory of one framework's side of a workload, in this (fresh) process: build both sides (the builders
    copy weights across), drop the other side and give its memory back, then one warm-up call (optimizer
    state is allocated there), then ``steps`` measured calls. Returns MB: ``setup`` (RSS with only this side
    alive), ``base`` (after warm-up), ``growth`` (peak RSS during the measured calls minus ``base``) and
    ``peak`` (peak RSS from ``setup`` on, warm-up included)."""
    w = BY_NAME[name]
    fns = dict(zip(("nf", "torch"), w.build(**size_of(w, quick))))
    fn = fns.pop(side)
    fns.clear()
    _release()
    setup = _status_mb("VmRSS")
    _reset_peak()
    fn()
    warm_peak = _status_mb("VmHWM")
    _release()
    base = _status_mb("VmRSS")
    _reset_peak()
    for _ in range(steps):
        fn()
    peak = _status_mb("VmHWM")
    return {"setup": setup, "base": base, "growth": peak - base, "peak": max(warm_peak, peak)}


def measure_memory(name: str, side: str, quick: bool, steps: int, threads: int) -> dict | None:
    """Run ``probe`` in a fresh interpreter; None where /proc is missing (not Linux) or the probe failed."""
    if not os.path.exists("/proc/self/clear_refs"):
        return None
    cmd = [sys.executable, "-m", "benchmarks", "--probe", name, side, "--threads", str(threads),
           "--mem-steps", str(steps)] + (["--quick"] if quick else [])
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    if out.returncode != 0:
        print(f"memory probe {name}/{side} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- running and reporting ----------------------------------------------------------------------------------

def run_workload(w: Workload, quick: bool, repeats: int, memory: bool, threads: int, mem_steps: int) -> dict:
    """Times (alternated, in this process), memory (fresh processes) and the work of one workload."""
    size = size_of(w, quick)
    nf_fn, torch_fn = w.build(**size)
    repeats = repeats if quick else max(repeats, w.min_repeats)
    nf_s, torch_s = compare(nf_fn, torch_fn, number=w.number, repeats=repeats, warmup=1, settle=SETTLE_S)
    del nf_fn, torch_fn
    gc.collect()
    work = w.work(**size)
    row = {"name": w.name, "title": title_of(w, size), "repeats": repeats, "nf_ms": nf_s * 1e3,
           "torch_ms": torch_s * 1e3, "ratio": nf_s / torch_s, "target": w.target, "memory_target": w.memory_target,
           "bytes" if w.bandwidth else "flops": work}
    for side in ("nf", "torch"):
        row[f"{side}_mem"] = measure_memory(w.name, side, quick, mem_steps, threads) if memory else None
    return row


def add_efficiency(row: dict, peak_gflops: float) -> None:
    """MFU of each side (FLOPs per second over the GEMM peak), or GB/s for bandwidth-bound work."""
    for side in ("nf", "torch"):
        seconds = row[f"{side}_ms"] / 1e3
        if "bytes" in row:
            row[f"{side}_gbps"] = row["bytes"] / seconds / 1e9
        else:
            row[f"{side}_mfu"] = row["flops"] / seconds / (peak_gflops * 1e9)


def _mem_cell(mem: dict | None) -> str:
    return "n/a" if mem is None else f"{mem['peak']:.0f} (+{mem['growth']:.0f})"


def _eff_cell(row: dict, side: str) -> str:
    return f"{row[side + '_gbps']:.1f} GB/s" if f"{side}_gbps" in row else f"{100 * row[side + '_mfu']:.1f}%"


def _target_cell(row: dict) -> str:
    parts = [f"<= {row['target']:.2f}"] if row["target"] is not None else []
    if row["memory_target"]:
        parts.append("mem <= torch")
    return "; ".join(parts) or "-"


def table(rows: list[dict]) -> str:
    """The results as a markdown table."""
    head = ["workload", "nnforge ms", "torch ms", "ratio nf/torch", "target", "nnforge MB peak (+steps)",
            "torch MB peak (+steps)", "MFU nnforge", "MFU torch"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        cells = [r["title"], f"{r['nf_ms']:.1f}", f"{r['torch_ms']:.1f}", f"{r['ratio']:.2f}", _target_cell(r),
                 _mem_cell(r["nf_mem"]), _mem_cell(r["torch_mem"]), _eff_cell(r, "nf"), _eff_cell(r, "torch")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _repeats_text(result: dict) -> str:
    """'5' or '5 (11 for MiniLM-L6 inference, ...)': the timed repeats behind the medians."""
    base = result["repeats"]
    more = [row for row in result["workloads"] if row.get("repeats", base) != base]
    if not more:
        return str(base)
    counts = ", ".join(str(c) for c in sorted({row["repeats"] for row in more}))
    return f"{base} ({counts} for {', '.join(row['title'].split(',')[0] for row in more)})"


def report(result: dict, markdown: bool) -> str:
    """The table; with ``markdown`` the whole README section (heading, machine, method, table)."""
    text = table(result["workloads"])
    if not markdown:
        return (f"{result['machine']}; {result['threads']} threads; float32 GEMM peak "
                f"{result['gemm_gflops']:.1f} GFLOP/s\n{text}")
    return "\n".join([
        "## Suite (`python -m benchmarks`)", "",
        (f"{result['date']}; {result['machine']}; {result['threads']} threads for both (torch intra-op, NumPy's "
         f"BLAS); float32 GEMM peak {result['gemm_gflops']:.1f} GFLOP/s (NumPy matmul, best of the "
         f"probes before and after the run); load average "
         f"{result['load'][0]:.1f} at start, {result['load'][1]:.1f} at end."), "",
        (f"Times: medians of {_repeats_text(result)} alternated repeats in one process (ratio below 1: nnforge "
         "faster). Memory: each framework in its own fresh process, total peak RSS in MB from after setup "
         "(warm-up included) and, in brackets, the peak RSS growth during the measured steps over the RSS "
         "after one warm-up step. MFU: analytic matmul FLOPs (formulas in `benchmarks/suite.py`) per second "
         "over the GEMM peak; AdamW reports bandwidth (7 float32 reads/writes per parameter)."), "",
        text, ""])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated workload names (see --list)")
    ap.add_argument("--list", action="store_true", help="print the workload names and exit")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats per framework (medians)")
    ap.add_argument("--threads", type=int, default=None, help="threads for both frameworks (default: all cores)")
    ap.add_argument("--markdown", action="store_true", help="print the README section, ready to paste")
    ap.add_argument("--json", help="save the results to this path")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, for tests")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    ap.add_argument("--mem-steps", type=int, default=2, help="measured calls in each memory probe")
    ap.add_argument("--profile", metavar="NAME", help="cProfile nnforge's side of one workload instead")
    ap.add_argument("--probe", nargs=2, metavar=("NAME", "SIDE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.list:
        for w in WORKLOADS:
            print(f"{w.name:18s} {title_of(w, size_of(w, args.quick))}")
        return
    names = args.only.split(",") if args.only else [w.name for w in WORKLOADS]
    unknown = [n for n in names + ([args.profile] if args.profile else []) if n not in BY_NAME]
    if unknown:
        ap.error(f"unknown workload(s) {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
    try:
        import transformers
        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:
        pass
    threads = set_threads(args.threads)
    if args.probe:
        print(json.dumps(probe(*args.probe, args.quick, args.mem_steps)))
        return
    if args.profile:
        w = BY_NAME[args.profile]
        print_profile(w.build(**size_of(w, args.quick))[0], w.number)
        return

    load0 = os.getloadavg()[0]
    gemm_n = 512 if args.quick else 2048
    peaks = [gemm_peak_gflops(gemm_n)]
    rows = []
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows.append(run_workload(BY_NAME[name], args.quick, args.repeats, not args.no_memory, threads,
                                 args.mem_steps))
    peaks.append(gemm_peak_gflops(gemm_n))  # before and after: on a busy machine one of them may be low
    peak = max(peaks)
    for row in rows:
        add_efficiency(row, peak)
    result = {"date": datetime.date.today().isoformat(), "machine": machine(), "threads": threads,
              "gemm_gflops": peak, "gemm_gflops_start_end": peaks, "repeats": args.repeats, "quick": args.quick,
              "load": [load0, os.getloadavg()[0]], "workloads": rows}
    print(report(result, args.markdown))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
