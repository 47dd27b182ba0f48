"""``qwenlab wheelhouse DIR [--native | --target PLATFORM-PY ... | --platform P ... --python V ...] [--check]``.

Downloads every wheel the students' laptops need into DIR (the teacher's command, the day before class), and
prints a table: per target its status, files, size and time; the folder's total. ``qwenlab mirror
--wheelhouse DIR`` then serves it. The work is :func:`qwenlab.classroom.wheelhouse.build`; this module only
parses arguments and prints.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..classroom.wheelhouse import (
    COURSE_EXTRAS, PLATFORMS, PYTHONS, STUDENT_TARGETS, TORCH, TORCH_CPU_INDEX, Target, build, course_requirements,
)
from . import fail, make_parser

_EPILOG = (
    "Default: every student platform (" + ", ".join(PLATFORMS) + ") x Python " + ", ".join(PYTHONS) +
    " — a few GB; run it where the internet is fast (a domestic mirror: --index-url "
    "https://pypi.tuna.tsinghua.edu.cn/simple). Intel Macs: PyTorch publishes no torch >= 2.4 for them, so that "
    "target fails and says so. Then: qwenlab mirror --wheelhouse DIR --model offline --host 0.0.0.0; students: "
    "python setup_course.py install --pip-mirror http://TEACHER:8090/simple --torch-index http://TEACHER:8090/simple."
)


def _targets(args) -> list[Target]:
    if args.native:
        return [Target.native()]
    if args.target:
        return [Target.parse(t) for t in args.target]
    if args.platform or args.python:
        return [Target(p, v) for p in (args.platform or list(PLATFORMS)) for v in (args.python or PYTHONS)]
    return list(STUDENT_TARGETS)


class _Progress:
    """Prints one line when a target starts and pip's errors; with ``verbose``, every line pip prints."""

    def __init__(self, verbose: bool):
        self.verbose = verbose
        self.current = ""

    def __call__(self, line: str) -> None:
        name, _, text = line.partition(": ")
        if name != self.current and "-py" in name:
            self.current = name
            print(f"==> {name}", file=sys.stderr, flush=True)
        if self.verbose or text.startswith("ERROR") or "PyTorch CPU index" in line:
            print(f"    {text if '-py' in name else line}", file=sys.stderr, flush=True)


def main(argv: list[str], prog: str = "qwenlab wheelhouse") -> int:
    """Build (or ``--check``) the wheelhouse; exit 1 when a target failed (the table says why)."""
    parser = make_parser(prog, "Download the wheels of the course for the students' laptops into one folder "
                               "(served by `qwenlab mirror --wheelhouse DIR` as a package index).")
    parser.epilog = _EPILOG
    parser.add_argument("folder", type=Path, help="the wheelhouse folder (created; files already there are kept)")
    parser.add_argument("--native", action="store_true", help="only this machine's platform and Python (CI)")
    parser.add_argument("--target", action="append", metavar="PLATFORM-PY",
                        help="one target, e.g. win_amd64-3.11 (repeatable)")
    parser.add_argument("--platform", action="append", choices=list(PLATFORMS), help="platforms (repeatable)")
    parser.add_argument("--python", action="append", metavar="3.X", help="Python versions (repeatable)")
    parser.add_argument("--extras", default=COURSE_EXTRAS, help="the course's extras (default: %(default)s, what "
                                                                "setup_course.py installs)")
    parser.add_argument("--torch", default=TORCH, metavar="SPEC", help="torch requirement (default: %(default)s)")
    parser.add_argument("--packages", nargs="+", metavar="REQ",
                        help="download these requirements instead of the course's (a trial run)")
    parser.add_argument("--index-url", metavar="URL", help="download from this index (default: pip's configuration)")
    parser.add_argument("--torch-index", default=TORCH_CPU_INDEX, metavar="URL",
                        help="PyTorch's CPU wheel index, for the Linux targets (default: %(default)s; 'none': skip)")
    parser.add_argument("--check", action="store_true", help="resolve every target; put nothing in the folder (from PyPI: metadata only)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print everything pip prints")
    args = parser.parse_args(argv)
    try:
        targets = _targets(args)
        requirements = args.packages or course_requirements(args.extras, args.torch)
    except ValueError as err:
        return fail(prog, str(err), code=2)
    torch_index = None if args.torch_index.lower() == "none" else args.torch_index
    report = build(args.folder, targets, requirements, index_url=args.index_url, torch_index=torch_index,
                   check=args.check, progress=_Progress(args.verbose))
    print(report)
    return 0 if report.ok else 1
