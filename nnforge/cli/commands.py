"""The subcommands: each ``_<name>(args) -> exit status`` plus its argparse definition in ``add_commands``."""
from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

_EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"
_TRAIN_EXAMPLES = {"cnn_fashion_mnist": "cnn_fashion_mnist.py", "char_lm": "char_lm.py",
                   "rnn_sentiment": "rnn_sentiment.py"}
S = argparse.SUPPRESS


# -- finetune ----------------------------------------------------------------------------------------------------
_FLAG_FIELDS = ("model", "data", "text_column", "label_column", "task", "method", "epochs", "max_steps", "lr",
                "batch_size", "max_length", "seed", "output_dir", "limit")


def _finetune(args: argparse.Namespace) -> int:
    from ..finetune.config import FinetuneConfig, load_yaml
    from ..finetune.errors import UsageError
    from ..finetune.run import run_finetune

    values: dict = {}
    if args.resume:
        if not getattr(args, "output_dir", None):
            raise UsageError("--resume needs --output-dir RUN_FOLDER (the run to continue)")
        saved = Path(args.output_dir) / "config.yaml"
        if not saved.is_file():
            raise UsageError(f"--resume: {args.output_dir} holds no run to resume (no config.yaml)")
        values.update(load_yaml(saved))
    if args.config:
        values.update(load_yaml(args.config))
    values.update({k: getattr(args, k) for k in _FLAG_FIELDS if hasattr(args, k)})
    cfg = FinetuneConfig.from_dict(values, source=args.config or "options")
    m = run_finetune(cfg, resume=args.resume)
    if "test_loss" not in m:  # a rank other than 0 of a distributed run: rank 0 reports
        return 0
    line = f"test_accuracy {m['test_accuracy']:.4f}" if "test_accuracy" in m else f"test_mae {m['test_mae']:.4f}"
    print(f"Done: {line}, test_loss {m['test_loss']:.4f}, macro F1 {m.get('macro', {}).get('f1', float('nan')):.4f} "
          f"({m['total_wall_s']:.0f} s wall, {m['total_cpu_s']:.0f} s CPU). Run folder: {m['run_dir']} "
          f"(report.html, metrics.json, model/)")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from ..finetune.run import evaluate_run

    m = evaluate_run(args.run, args.data, args.text_column, args.label_column, args.output_dir, args.batch_size)
    acc = f"accuracy {m['test_accuracy']:.4f}, " if "test_accuracy" in m else ""
    print(f"{acc}loss {m['test_loss']:.4f} on {m['test_examples']} examples; report: {m['output_dir']}/report.html")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from ..finetune.errors import UsageError
    from ..finetune.run import predict_texts

    if bool(args.texts) == bool(args.data):
        raise UsageError("predict: give texts or --data FILE (not both)")
    rows = predict_texts(args.run, args.texts or None, args.data, args.text_column, args.output, args.batch_size)
    for text, label, conf, probs in rows:
        detail = " ".join(f"{k}={v:.3f}" for k, v in probs.items())
        print(f"{label}\t{conf:.3f}\t{detail}\t{text}")
    if args.output:
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


# -- generate ----------------------------------------------------------------------------------------------------
def _generate(args: argparse.Namespace) -> int:
    import warnings

    from ..finetune.errors import UsageError
    from ..finetune.predict import resolve_model
    from ..models import AutoModelForCausalLM
    from ..tokenizers import AutoTokenizer

    path = resolve_model(args.model)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = AutoModelForCausalLM.from_pretrained(path)
        tok = AutoTokenizer.from_pretrained(path)
    except (ValueError, KeyError) as e:
        raise UsageError(f"cannot load {args.model} as a causal language model: {str(e).splitlines()[0]}") from None
    if tok.chat_template and not args.raw:
        ids = tok.apply_chat_template([{"role": "user", "content": args.prompt}], add_generation_prompt=True)
    else:
        ids = tok(args.prompt)["input_ids"]
    import numpy as np

    streamer = _TextStreamer(tok)
    model.generate(np.asarray([ids], dtype=np.int64), max_new_tokens=args.max_new_tokens,
                   do_sample=args.temperature > 0, temperature=args.temperature or 1.0, top_p=args.top_p,
                   repetition_penalty=args.repetition_penalty, streamer=streamer)
    print(flush=True)
    return 0


class _TextStreamer:
    """Prints new tokens as they arrive (``generate(streamer=...)``), decoding the whole continuation each time
    so multi-byte characters and word pieces come out right; the prompt (first ``put``) is skipped."""

    def __init__(self, tokenizer) -> None:
        self.tok, self.ids, self.shown, self.prompt_seen = tokenizer, [], "", False

    def put(self, ids) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.ids.extend(int(i) for i in ids.reshape(-1))
        text = self.tok.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return
        sys.stdout.write(text[len(self.shown):])
        sys.stdout.flush()
        self.shown = text

    def end(self) -> None:
        pass


# -- train, download, models -------------------------------------------------------------------------------------
def _train(args: argparse.Namespace) -> int:
    from ..finetune.config import load_yaml
    from ..finetune.errors import UsageError

    example, options = "cnn_fashion_mnist", {"epochs": args.epochs, "subset": args.subset or None}
    if args.config:
        values = load_yaml(args.config)
        example = str(values.pop("example", example))
        options = values.pop("args", None) or {}
        if values:
            raise UsageError(f"{args.config}: unknown setting(s) {', '.join(sorted(values))}; expected 'example' "
                             f"and 'args'")
        if not isinstance(options, dict):
            raise UsageError(f"{args.config}: 'args' must be a mapping of the example's options")
    if example not in _TRAIN_EXAMPLES:
        raise UsageError(f"unknown example {example!r}; known: {', '.join(_TRAIN_EXAMPLES)}")
    script = _EXAMPLES / _TRAIN_EXAMPLES[example]
    if not script.exists():
        raise UsageError(f"{script} is missing (run from a source checkout)")
    argv = [str(script)]
    for k, v in options.items():
        if v is not None and v is not False:
            argv += [f"--{str(k).replace('_', '-')}"] + ([] if v is True else [str(v)])
    sys.argv = argv
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as e:  # argparse in the example rejected an option
        if e.code not in (0, None):
            raise UsageError(f"{example}: bad option in {args.config or 'the command line'} ({' '.join(argv[1:])})") \
                from None
    return 0


def _download(args: argparse.Namespace) -> int:
    from .. import hub

    if args.list or not args.names:
        _print_known(hub)
        return 0 if args.list else 2
    failed = 0
    for name in args.names:
        try:
            print(f"{name}: downloading (pip, once; cached afterwards)...", flush=True)
            print(f"{name}: {hub.download(name)}")
        except Exception as e:  # noqa: BLE001  (report every name, then fail at the end)
            failed += 1
            print(f"nnforge download {name}: {e}", file=sys.stderr)
    return 1 if failed else 0


def _print_known(hub) -> None:
    for kind in ("model", "dataset"):
        for name, text in hub.known_names(kind).items():
            path = hub.cached_path(name)
            state = "cached" if path.exists() else "not cached"
            print(f"{name:24s} {kind:8s} {state:11s} {text}")


def _models(args: argparse.Namespace) -> int:
    from .. import hub
    from ..datasets.cache import cache_root

    print(f"Known models and data sets (cache: {cache_root()}; fetch with `nnforge download NAME`):")
    _print_known(hub)
    print("Also accepted by --model: any local Hugging Face folder of a BERT checkpoint (config.json + "
          "model.safetensors or pytorch_model.bin), or a run folder from `nnforge finetune`.")
    return 0


# -- the parser ----------------------------------------------------------------------------------------------------
def add_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    ft = sub.add_parser("finetune", parents=[common], help="fine-tune a pretrained model on a labelled data set "
                        "(no options: all-MiniLM-L6-v2 on the movie review sentences)",
                        description="Fine-tune, test on a held-out split and write a run folder. Options override "
                                    "--config FILE.yaml, which overrides the defaults.")
    ft.add_argument("--model", default=S, metavar="NAME|PATH", help="a known name (nnforge models) or a local folder")
    ft.add_argument("--data", default=S, metavar="PATH", help="CSV, TSV or JSONL with a text and a label column "
                                                              "(default: the movie review sentences)")
    ft.add_argument("--text-column", default=S)
    ft.add_argument("--label-column", default=S)
    ft.add_argument("--task", default=S, choices=("classification", "multilabel", "regression"))
    ft.add_argument("--method", default=S, choices=("full", "head", "lora"),
                    help="train all weights, only the head, or LoRA adapters (merged into the saved model)")
    ft.add_argument("--epochs", type=int, default=S)
    ft.add_argument("--max-steps", type=int, default=S, help="stop after this many optimizer steps")
    ft.add_argument("--lr", type=float, default=S)
    ft.add_argument("--batch-size", type=int, default=S)
    ft.add_argument("--max-length", type=int, default=S, help="tokens per text (longer texts are truncated)")
    ft.add_argument("--seed", type=int, default=S)
    ft.add_argument("--limit", type=int, default=S, help="use only the first N rows of the data")
    ft.add_argument("--output-dir", default=S, metavar="RUN", help="the run folder (default runs/<model>-<data>-<time>)")
    ft.add_argument("--config", metavar="FILE.yaml", help="settings file (keys as in the run's config.yaml)")
    ft.add_argument("--resume", action="store_true", help="continue the interrupted run in --output-dir")
    ft.set_defaults(func=_finetune)

    ev = sub.add_parser("evaluate", parents=[common], help="score a fine-tuned model on a labelled file and write "
                                                           "a report")
    ev.add_argument("run", metavar="RUN_OR_MODEL")
    ev.add_argument("--data", required=True, metavar="FILE")
    ev.add_argument("--text-column")
    ev.add_argument("--label-column")
    ev.add_argument("--output-dir", help="where the report goes (default RUN/eval-<file>)")
    ev.add_argument("--batch-size", type=int, default=32)
    ev.set_defaults(func=_evaluate)

    pr = sub.add_parser("predict", parents=[common], help="labels with probabilities for texts")
    pr.add_argument("run", metavar="RUN_OR_MODEL")
    pr.add_argument("texts", nargs="*", metavar="TEXT")
    pr.add_argument("--data", metavar="FILE", help="predict every text of a CSV/TSV/JSONL file")
    pr.add_argument("--text-column")
    pr.add_argument("--output", metavar="FILE.csv", help="also write the predictions as CSV")
    pr.add_argument("--batch-size", type=int, default=32)
    pr.set_defaults(func=_predict)

    ge = sub.add_parser("generate", parents=[common], help="chat with a causal LM (SmolLM2), streaming tokens")
    ge.add_argument("model", nargs="?", default="smollm2-135m-instruct", metavar="MODEL")
    ge.add_argument("prompt", metavar="PROMPT")
    ge.add_argument("--max-new-tokens", type=int, default=128)
    ge.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    ge.add_argument("--top-p", type=float, default=1.0)
    ge.add_argument("--repetition-penalty", type=float, default=1.1)
    ge.add_argument("--raw", action="store_true", help="no chat template: continue the prompt as plain text")
    ge.set_defaults(func=_generate)

    tr = sub.add_parser("train", parents=[common], help="train an architecture from scratch (default: the "
                                                        "Fashion-MNIST CNN; --config examples/configs/*.yaml)")
    tr.add_argument("--config", metavar="FILE.yaml", help="{example: cnn_fashion_mnist|char_lm|rnn_sentiment, "
                                                          "args: {option: value}}")
    tr.add_argument("--epochs", type=int, default=2)
    tr.add_argument("--subset", type=int, default=0, help="train on the first N images only (0 = all)")
    tr.set_defaults(func=_train)

    dl = sub.add_parser("download", parents=[common], help="fetch pretrained models or data sets into the local "
                                                           "cache ($NNFORGE_HOME, default ~/.cache/nnforge)")
    dl.add_argument("names", nargs="*", metavar="NAME", help="e.g. all-MiniLM-L6-v2 smollm2-135m-instruct")
    dl.add_argument("--list", action="store_true", help="list the known names and whether they are cached")
    dl.set_defaults(func=_download)

    mo = sub.add_parser("models", parents=[common], help="what models and data sets are available and cached")
    mo.set_defaults(func=_models)
