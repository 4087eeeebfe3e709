"""The ``dmap`` command line; each subcommand lives in a module of this package."""

from __future__ import annotations

import argparse
import os
import sys

import torch

from dmap.cli import analyze, bench, restore, train
from dmap.cli.common import EXIT_CODES, OutputFolder, Parser, UsageError
from dmap.solvers import SolveError


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="dmap",
        description="Imaging inverse problems with diffusion priors: DPS, DSG, DMAP and the "
        "conditional score estimator (Xu et al., ICLR 2025) on shipped priors; benchmarks and diagnostics.",
        epilog=EXIT_CODES,
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in (restore, train, analyze, bench):
        module.add_parsers(sub)
    for parser in sub.choices.values():
        parser.epilog = EXIT_CODES
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``dmap`` with ``argv``; returns the exit code (see :data:`EXIT_CODES`).  A
    failed run leaves no output folder behind that it made itself."""
    parser = build_parser()
    code = 1
    try:
        args = parser.parse_args(argv)
        if getattr(args, "threads", None) and args.command != "bench":
            torch.set_num_threads(args.threads)
        code = args.func(args)
    except UsageError as e:
        print(f"dmap: error: {e}", file=sys.stderr)
        code = 2
    except SolveError as e:
        print(f"dmap: error: {e}", file=sys.stderr)
        code = 1
    finally:
        if code != 0:
            OutputFolder.discard()
        OutputFolder.made.clear()
    return code


def run() -> None:
    """Console-script entry point: Ctrl-C exits with 130 (only here, not in :func:`main`)."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("dmap: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # the reader went away (``dmap list | head``): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
