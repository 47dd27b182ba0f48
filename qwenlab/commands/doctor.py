"""``qwenlab doctor [--json] [--offline] [--timeout S] [--send URL [--class-code CODE] [--name NAME] [--no-speed]]``.

The environment report, PASS / WARN / FAIL. With ``--send http://TEACHER:8090`` it also goes to the teacher's
class dashboard (:mod:`qwenlab.classroom.dashboard`), with this laptop's decode speed measured on the model
that is ready on disk (a few seconds; ``--no-speed`` skips it).

The report is :func:`qwenlab.env.report`; this module only parses arguments, measures and prints.
"""

from __future__ import annotations

import os
import platform
import sys

from ..classroom.dashboard import ReportSendError, send_report
from ..env import ready_model, report, student_report
from . import fail, make_parser

CLASS_CODE_ENV = "QWENLAB_CLASS_CODE"


def decode_speed() -> tuple[float | None, str]:
    """Tokens per second of a short greedy decode (:func:`qwenlab.measure.decode_speed`, CPU) on the model ready
    on disk, and how it was measured; ``(None, why)`` when no model is ready or loading it fails."""
    name = ready_model()
    if name is None:
        return None, "no model on disk yet: run `qwenlab offline-model` (or `qwenlab download MODEL`)"
    from .. import measure  # torch and the model load only when the report is sent
    from ..models import load_model

    try:
        model, tokenizer = load_model(name, device="cpu", download=False)
    except (OSError, ValueError, RuntimeError) as err:
        return None, f"{name} did not load: {str(err)[:160]}"
    speed, how = measure.decode_speed(model, tokenizer)
    return speed, f"{name}, {how}"


def main(argv: list[str], prog: str = "qwenlab doctor") -> int:
    """Print the report (a table, or ``--json`` for a teacher to collect); with ``--send``, send it to the class
    dashboard too. Exit 1 when a check FAILs or the report could not be sent."""
    parser = make_parser(prog, "Check this machine for running small Qwen models.")
    parser.add_argument("--json", action="store_true", help="print JSON (for a teacher to collect)")
    parser.add_argument("--offline", action="store_true", help="do not probe the model hubs")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for each hub (default 3)")
    parser.add_argument("--send", metavar="URL", help="also send the report to the teacher's class dashboard, "
                                                      "e.g. http://192.168.1.10:8090 (what the teacher shows)")
    parser.add_argument("--class-code", default=os.environ.get(CLASS_CODE_ENV), metavar="CODE",
                        help=f"the class code, when the teacher's mirror has one (default ${CLASS_CODE_ENV})")
    parser.add_argument("--name", default=platform.node() or "laptop",
                        help="what the teacher's page calls this laptop: your name or seat (default: host name)")
    parser.add_argument("--no-speed", action="store_true",
                        help="with --send: do not measure the decode speed (it loads the model: a few seconds)")
    args = parser.parse_args(argv)
    rep = report(probe=not args.offline, timeout=args.timeout)
    print(rep.to_json() if args.json else rep)
    if not args.send:
        return 0 if rep.ok else 1
    speed, note = (None, "not measured (--no-speed)") if args.no_speed else decode_speed()
    try:
        answer = send_report(args.send, student_report(rep, args.name, speed, note), args.class_code)
    except (ReportSendError, ValueError) as err:
        return fail(prog, f"the report was not sent: {err}")
    measured = f"{speed:.1f} tok/s" if speed is not None else note
    print(f"\nsent to the teacher's dashboard as {args.name!r} (decode: {measured}; "
          f"{answer.get('laptops', '?')} laptop(s) reported so far)", file=sys.stderr)
    return 0 if rep.ok else 1
