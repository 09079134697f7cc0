"""The ``nnforge`` command line (console script ``nnforge = nnforge.cli:main``).

``nnforge finetune`` with no arguments fetches all-MiniLM-L6-v2 and the movie review sentences (first run only),
fine-tunes, tests on a held-out split and writes a run folder. ``evaluate``, ``predict``, ``generate``, ``train``,
``download`` and ``models`` are the other commands (``nnforge COMMAND --help``).

Bad input (missing or empty file, unknown column, one class, undecodable bytes, unseen labels, unknown model)
ends with exit status 2 and a one-line message on stderr (the traceback only with ``--debug``); Ctrl-C during
training saves a checkpoint and exits with status 130 after saying how to resume.
"""
from __future__ import annotations

import argparse
import sys

from .commands import add_commands

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback on errors")
    parser = argparse.ArgumentParser(prog="nnforge", description="nnforge: deep learning on NumPy",
                                     parents=[common])
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    add_commands(parser.add_subparsers(dest="command"), common)
    return parser


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def main(argv: list[str] | None = None) -> int:
    from ..finetune.errors import DataError, UsageError
    from ..finetune.run import Interrupted

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from .. import __version__
        print(__version__)
        return 0
    if args.command is None:
        parser.print_help()
        return 0
    debug = getattr(args, "debug", False)
    try:
        return args.func(args)
    except (UsageError, DataError) as e:
        if debug:
            raise
        print(f"nnforge {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"nnforge {args.command}: interrupted: {_one_line(e)}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"\nnforge {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
