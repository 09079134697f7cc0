"""The ``nnforge`` command line (console script ``nnforge = nnforge.cli:main``).

``nnforge finetune`` with no arguments fetches all-MiniLM-L6-v2 and the movie review sentences (first run only),
fine-tunes, tests on a held-out split and writes a run folder. ``evaluate``, ``predict``, ``generate``, ``train``,
``download`` and ``models`` are the other commands (``nnforge COMMAND --help``).

Bad input (missing or empty file, unknown column, one class, undecodable bytes, unseen labels, unknown model)
ends with exit status 2 and a one-line message on stderr (the traceback only with ``--debug``); Ctrl-C during
training saves a checkpoint and exits with status 130 after saying how to resume.

Under ``mpirun -n N`` (or ``srun``), ``finetune`` trains data-parallel on the N processes (see
``nnforge.distributed``): rank 0 prints and writes the run folder, the other ranks are silent; an error on any
rank ends all of them. Other commands run on rank 0 only.
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
    if _distributed_start(args.command):
        return 0
    try:
        return _end_all_ranks(args.func(args), args.command)
    except (UsageError, DataError) as e:
        if debug:
            raise
        print(f"nnforge {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return _end_all_ranks(2, args.command)
    except Interrupted as e:
        print(f"nnforge {args.command}: interrupted: {_one_line(e)}", file=sys.stderr)
        return _end_all_ranks(130, args.command)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"\nnforge {args.command}: interrupted", file=sys.stderr)
        return _end_all_ranks(130, args.command)


def _distributed_start(command: str) -> bool:
    """Under mpirun: ``finetune`` joins the process group (ranks other than 0 print nothing); for the other
    commands every rank but 0 stops at once. True when this process should exit now."""
    from .. import distributed as dist
    from ..distributed.process_group import _env_rank

    if not dist.launched_by_mpi():
        return False
    if command != "finetune":
        if _env_rank() == 0:
            print(f"nnforge {command}: runs on one process; ranks other than 0 exit (only finetune is "
                  f"data-parallel)", file=sys.stderr)
        return _env_rank() != 0
    dist.init_process_group()
    if not dist.is_main_process():
        import os
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (for the life of the process)
    return False


def _end_all_ranks(code: int, command: str) -> int:
    """A failing rank of a distributed run ends the whole job (the others would wait for it forever)."""
    from .. import distributed as dist

    if code and dist.is_initialized() and dist.get_world_size() > 1:
        dist.abort(code, f"nnforge {command} failed (exit status {code})")
    return code


if __name__ == "__main__":
    sys.exit(main())
