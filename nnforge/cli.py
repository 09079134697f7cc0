"""The ``nnforge`` command line.

Subcommands grow with the project; ``nnforge train`` runs a real training job today (the Fashion-MNIST CNN).
``finetune``, ``evaluate``, ``predict``, ``generate`` and ``download`` arrive with the fine-tuning, model and
CLI issues; until then they say so and exit with status 2 instead of pretending to work.
"""
from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

_EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
_PENDING = {
    "finetune": "fine-tune a pretrained model on a data set (all-MiniLM-L6-v2 on movie reviews by default)",
    "evaluate": "evaluate a fine-tuned model and write a report",
    "predict": "run a fine-tuned model on new texts",
    "generate": "generate text with a causal language model",
}


def _train(args: argparse.Namespace) -> int:
    script = _EXAMPLES / "cnn_fashion_mnist.py"
    if not script.exists():
        print(f"nnforge train: {script} is missing (run from a source checkout)", file=sys.stderr)
        return 2
    sys.argv = [str(script), "--epochs", str(args.epochs)] + (["--subset", str(args.subset)] if args.subset else [])
    runpy.run_path(str(script), run_name="__main__")
    return 0


def _download(args: argparse.Namespace) -> int:
    from . import hub

    if args.list or not args.names:
        for kind in ("model", "dataset"):
            for name, text in hub.known_names(kind).items():
                path = hub.cached_path(name)
                state = "cached" if path.exists() else "not cached"
                print(f"{name:24s} {kind:8s} {state:11s} {text}")
        return 0 if args.list else 2
    failed = 0
    for name in args.names:
        try:
            print(f"{name}: {hub.download(name)}")
        except Exception as e:  # report every name, then fail at the end
            failed += 1
            print(f"nnforge download {name}: {e}", file=sys.stderr)
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nnforge", description="nnforge: deep learning on NumPy")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")
    train = sub.add_parser("train", help="train the Fashion-MNIST CNN from scratch and report test accuracy")
    train.add_argument("--epochs", type=int, default=2)
    train.add_argument("--subset", type=int, default=0, help="train on the first N images only (0 = all)")
    train.set_defaults(func=_train)
    download = sub.add_parser("download", help="fetch pretrained models or data sets into the local cache "
                                               "($NNFORGE_HOME, default ~/.cache/nnforge)")
    download.add_argument("names", nargs="*", metavar="NAME", help="e.g. all-MiniLM-L6-v2 smollm2-135m-instruct")
    download.add_argument("--list", action="store_true", help="list the known names and whether they are cached")
    download.set_defaults(func=_download)
    for name, text in _PENDING.items():
        p = sub.add_parser(name, help=f"{text} (not available yet)")
        p.set_defaults(func=lambda a, name=name: _pending(name))
    return parser


def _pending(name: str) -> int:
    print(f"nnforge {name}: not implemented yet in this version ({_PENDING[name]}).", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__
        print(__version__)
        return 0
    if args.command is None:
        parser.print_help()
        return 0
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
