"""The ``dmap`` command line; each subcommand lives in a module of this package."""

from __future__ import annotations

import argparse
import sys

from dmap.cli import analyze, bench, restore, train
from dmap.cli.common import Parser, UsageError


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="dmap", description="Imaging inverse problems with diffusion priors: DPS, DSG, DMAP and the "
               "conditional score estimator (Xu et al., ICLR 2025) on shipped priors; benchmarks and diagnostics.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in (restore, train, analyze, bench):
        module.add_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return args.func(args)
    except UsageError as e:
        print(f"dmap: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dmap: interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
