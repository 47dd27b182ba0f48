"""The ``qwenlab`` subcommands: argparse and terminal I/O only, one module per command.

Each module defines ``main(argv: list[str], prog: str) -> int`` and calls the topic modules for the
real work, so ``qwenlab.hub``, ``qwenlab.chat`` … never parse arguments, read stdin or print.
``qwenlab.cli`` is the dispatcher that picks the module.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["make_parser", "fail"]


def make_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An argparse parser for one subcommand (one look for every command)."""
    return argparse.ArgumentParser(prog=prog, description=description)


def fail(prog: str, message: str, code: int = 1) -> int:
    """Print ``prog: message`` on stderr (one line a student can act on) and return ``code``."""
    print(f"{prog}: {message}", file=sys.stderr)
    return code
