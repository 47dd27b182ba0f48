"""``qwenlab doctor [--json] [--offline] [--timeout S]``: the environment report, PASS / WARN / FAIL.

The report is :func:`qwenlab.env.report`; this module only parses arguments and prints it.
"""

from __future__ import annotations

from ..env import report
from . import make_parser


def main(argv: list[str], prog: str = "qwenlab doctor") -> int:
    """Print the report (a table, or ``--json`` for a teacher to collect); exit 1 when a check FAILs."""
    parser = make_parser(prog, "Check this machine for running small Qwen models.")
    parser.add_argument("--json", action="store_true", help="print JSON (for a teacher to collect)")
    parser.add_argument("--offline", action="store_true", help="do not probe the model hubs")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for each hub (default 3)")
    args = parser.parse_args(argv)
    rep = report(probe=not args.offline, timeout=args.timeout)
    print(rep.to_json() if args.json else rep)
    return 0 if rep.ok else 1
