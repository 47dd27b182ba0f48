"""``qwenlab edition student|teacher [--zip] [--out build/editions] [--notebooks-only DIR]``.

Builds the hand-out editions of the course (:mod:`qwenlab.editions`): the student edition has the exercises
without solutions; the teacher edition appends ``solutions/NN_*.py`` to each notebook. Run it in the course
folder (the clone); nothing in it is changed.
"""

from __future__ import annotations

from pathlib import Path

from ..editions import build, write_notebooks
from . import fail, make_parser


def course_root(start: Path) -> Path | None:
    """The course folder: ``start`` or a parent that has ``notebooks/`` and ``pyproject.toml``."""
    for folder in (start, *start.parents):
        if (folder / "notebooks").is_dir() and (folder / "pyproject.toml").is_file():
            return folder
    return None


def main(argv: list[str], prog: str = "qwenlab edition") -> int:
    """Build one edition as a folder (and a zip with ``--zip``), or only its notebooks."""
    parser = make_parser(prog, "Build the student edition (no solutions) or the teacher edition (solutions "
                               "appended) of the course, as a folder or a zip to hand out.")
    parser.add_argument("edition", choices=["student", "teacher"])
    parser.add_argument("--out", type=Path, default=Path("build/editions"), help="default: build/editions")
    parser.add_argument("--zip", action="store_true", help="also write OUT/qwenlab-course-EDITION.zip")
    parser.add_argument("--notebooks-only", type=Path, metavar="DIR",
                        help="write only the edition's notebooks into DIR (what `make test` runs)")
    args = parser.parse_args(argv)
    root = course_root(Path.cwd())
    if root is None:
        return fail(prog, "run this in the course folder (the one with notebooks/ and pyproject.toml)")
    if args.notebooks_only is not None:
        written = write_notebooks(args.edition, root, args.notebooks_only)
        print(f"{len(written)} {args.edition} notebooks -> {args.notebooks_only}")
        return 0
    made = build(args.edition, root, args.out, make_zip=args.zip)
    print(f"{args.edition} edition -> {made}")
    return 0
