"""The student and teacher editions of the course.

``notebooks/*.ipynb`` are the student edition: exercises with empty answers and no solutions. The reference
solutions live in ``solutions/NN_name.py`` (one ``# %%`` block = one code cell). The teacher edition is each
notebook with its solutions appended under "参考答案", so a student notebook is always the first cells of
the teacher's: ``make test`` runs the teacher edition (every solution must pass strictly), which also runs
every student cell.

``qwenlab edition student --zip`` / ``qwenlab edition teacher --zip`` build handouts; see docs/teacher.md.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any, Literal

Edition = Literal["student", "teacher"]
CELL_MARK = "# %%"
SOLUTION_TAG = "solution"
SOLUTIONS_TITLE = ("## 参考答案 (Solutions) — 教师版\n\n"
                   "每一格给出一个练习的参考答案并重新检查；学生版没有这一节。\n"
                   "Each cell answers one exercise and checks it again; the student edition stops above.")
# never in a handout: tooling, tests, and (in the student edition) the solutions
_ALWAYS_LEFT_OUT = {".git", ".venv", "build", "__pycache__", ".pytest_cache", ".hypothesis", ".ipynb_checkpoints",
                    ".mypy_cache", ".ruff_cache", ".ci", "tests"}


def solutions_file(notebook: Path, root: Path) -> Path:
    """``solutions/03_tokenizer.py`` for ``notebooks/03_tokenizer.ipynb``."""
    return root / "solutions" / f"{notebook.stem}.py"


def solution_cells(path: Path) -> list[str]:
    """The code cells of a solutions file: the blocks after each ``# %%`` line (the header before the first
    mark is a comment for people and is not a cell)."""
    blocks: list[list[str]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith(CELL_MARK):
            blocks.append([])
        elif blocks:
            blocks[-1].append(line)
    return [text for text in ("\n".join(b).strip("\n") for b in blocks) if text.strip()]


def _cell(kind: str, source: str, tags: list[str] | None = None, cell_id: str | None = None) -> dict[str, Any]:
    cell: dict[str, Any] = {"cell_type": kind, "metadata": {"tags": tags} if tags else {}, "source": source}
    if cell_id:
        cell["id"] = cell_id
    if kind == "code":
        cell.update(outputs=[], execution_count=None)
    return cell


def student_notebook(nb: dict[str, Any]) -> dict[str, Any]:
    """A copy without outputs, execution counts or solution cells."""
    out = copy.deepcopy(nb)
    out["cells"] = [c for c in out["cells"] if SOLUTION_TAG not in c.get("metadata", {}).get("tags", [])]
    for cell in out["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
        cell.get("metadata", {}).pop("execution", None)
    return out


def teacher_notebook(nb: dict[str, Any], solutions: list[str]) -> dict[str, Any]:
    """The student notebook with ``solutions`` appended (tagged ``solution``) under a 参考答案 heading."""
    out = student_notebook(nb)
    if solutions:
        out["cells"].append(_cell("markdown", SOLUTIONS_TITLE, [SOLUTION_TAG], "solutions"))
        out["cells"] += [_cell("code", text, [SOLUTION_TAG], f"solution-{n}") for n, text in enumerate(solutions, 1)]
    return out


def write_notebooks(edition: Edition, root: Path, out: Path) -> list[Path]:
    """Write the edition's notebooks into ``out`` (created); returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for src in sorted((root / "notebooks").glob("*.ipynb")):
        nb = json.loads(src.read_text(encoding="utf-8"))
        if edition == "teacher":
            sol = solutions_file(src, root)
            nb = teacher_notebook(nb, solution_cells(sol) if sol.exists() else [])
        else:
            nb = student_notebook(nb)
        target = out / src.name
        target.write_text(json.dumps(nb, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        written.append(target)
    return written


def course_files(root: Path, edition: Edition) -> list[Path]:
    """The files of the course tree that go into a handout (git's list when ``root`` is a clone)."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root, capture_output=True, check=True).stdout
        files = [Path(p) for p in listed.decode().split("\0") if p]
    except (OSError, subprocess.CalledProcessError):
        files = [p.relative_to(root) for p in root.rglob("*") if p.is_file()]
    left_out = _ALWAYS_LEFT_OUT | ({"solutions"} if edition == "student" else set())
    return [p for p in files if not left_out & set(p.parts) and (root / p).is_file()]


def build(edition: Edition, root: Path, out: Path, make_zip: bool = False) -> Path:
    """Build the ``edition`` under ``out/<edition>/qwenlab-course`` (course files + that edition's
    notebooks); with ``make_zip`` also ``out/qwenlab-course-<edition>.zip``. Returns what was made.

    Never touches ``root``; an earlier build of the same edition under ``out`` is replaced.
    """
    if edition not in ("student", "teacher"):
        raise ValueError(f"edition must be 'student' or 'teacher', not {edition!r}")
    tree = out / edition / "qwenlab-course"
    if tree.exists():
        shutil.rmtree(tree)
    for rel in course_files(root, edition):
        if rel.parts[0] == "notebooks" and rel.suffix == ".ipynb":
            continue
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, tree / rel)
    write_notebooks(edition, root, tree / "notebooks")
    if not make_zip:
        return tree
    archive = out / f"qwenlab-course-{edition}.zip"
    partial = archive.with_suffix(".zip.partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(p for p in tree.rglob("*") if p.is_file()):
            zf.write(path, Path("qwenlab-course") / path.relative_to(tree))
    partial.replace(archive)
    return archive
