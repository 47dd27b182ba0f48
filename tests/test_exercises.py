"""Exercises (#14): answers live in qwenlab.exercises, solutions in solutions/, editions built from both."""

from __future__ import annotations

import json
import re
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from qwenlab import course, editions
from qwenlab.exercises import EXERCISES, Exercise, Mistake, check, load_all
from qwenlab.exercises.core import judge

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CHECK_CALL = re.compile(r"""exercises\.check\(\s*["'](\d\d\.\w+)["']""")


def _code(nb_path: Path) -> list[str]:
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def _course_items() -> dict[str, Exercise]:
    return {k: ex for k, ex in load_all().items() if not k.startswith("demo.")}


def test_the_course_has_enough_items_and_most_need_thinking():
    items = _course_items()
    kinds = Counter(ex.kind for ex in items.values())
    assert len(items) >= 60, kinds
    assert kinds["lookup"] <= len(items) / 2, f"at most half may be look-ups: {kinds}"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_has_a_prediction_and_a_function_to_write(nb):
    kinds = {ex.kind for ex in _course_items().values() if ex.notebook == nb.stem[:2]}
    assert {"predict", "write"} <= kinds, f"{nb.name} has {sorted(kinds)}"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_hold_no_expected_values_and_no_solutions(nb):
    """Every check goes through qwenlab.exercises (the expected value is computed there, not in a cell)."""
    for source in _code(nb):
        assert "qwenlab.check(" not in source and "course.check(" not in source, source
    text = nb.read_text(encoding="utf-8")
    assert "## 参考答案" not in text and editions.SOLUTION_TAG not in json.dumps(
        [c.get("metadata", {}) for c in json.loads(text)["cells"]]), f"{nb.name} still has solutions in it"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_item_is_asked_in_its_notebook_and_solved_in_solutions(nb):
    asked = {k for s in _code(nb) for k in CHECK_CALL.findall(s)}
    registered = {k for k, ex in _course_items().items() if ex.notebook == nb.stem[:2]}
    assert asked == registered, f"asked but not registered: {asked - registered}; never asked: {registered - asked}"
    sol = editions.solutions_file(nb, ROOT)
    solved = {k for s in (editions.solution_cells(sol) if sol.exists() else []) for k in CHECK_CALL.findall(s)}
    assert registered <= solved, f"no solution in {sol.name} for {sorted(registered - solved)}"


def test_every_item_names_a_misconception_or_shows_a_counterexample():
    for key, ex in _course_items().items():
        assert ex.hint.strip(), key
        if ex.kind != "write":
            assert ex.mistakes, f"{key}: a wrong answer must name a likely misconception"


def test_a_matching_misconception_is_what_the_student_reads(monkeypatch, capsys):
    monkeypatch.delenv("QWENLAB_STRICT_CHECKS", raising=False)
    check("demo.1", 5, text="hello ")              # counted without the space
    assert course.last_check is False
    assert "空格也是字符" in capsys.readouterr().out
    check("demo.1", 6, text="hello ")
    assert course.last_check is True and "✅" in capsys.readouterr().out


def test_a_written_function_is_tried_on_many_inputs_and_the_first_difference_is_shown():
    ex = Exercise("demo.w", "write", expected=lambda: (lambda n: n * n), hint="平方 (square) 是 n*n。",
                  mistakes=(Mistake(lambda got, want: got == 2 * (want ** 0.5), "你算的是 2n，不是 n²。"),),
                  cases=lambda: ((n,) for n in range(10)))
    assert judge(ex, lambda n: n * n, {}) == (True, "")
    passed, message = judge(ex, lambda n: n * 2, {})       # right for 0 and 2, wrong on 1
    assert not passed and "(1,)" in message and "2n" in message
    passed, message = judge(ex, lambda n: n / 0, {})
    assert not passed and "ZeroDivisionError" in message
    passed, message = judge(ex, 4, {})
    assert not passed and "函数" in message


def test_an_unknown_key_says_which_items_the_notebook_has():
    with pytest.raises(KeyError, match="demo.1"):
        check("demo.9", 1)


def test_the_teacher_edition_is_the_student_notebook_plus_solutions(tmp_path):
    student = editions.write_notebooks("student", ROOT, tmp_path / "s")
    teacher = editions.write_notebooks("teacher", ROOT, tmp_path / "t")
    assert [p.name for p in student] == [p.name for p in teacher] == [p.name for p in NOTEBOOKS]
    for s_path, t_path in zip(student, teacher):
        s_cells = json.loads(s_path.read_text(encoding="utf-8"))["cells"]
        t_cells = json.loads(t_path.read_text(encoding="utf-8"))["cells"]
        assert t_cells[: len(s_cells)] == s_cells           # the student's run is the first part of the teacher's
        extra = t_cells[len(s_cells):]
        sol = editions.solutions_file(s_path, ROOT)
        if sol.exists():
            assert extra and all(editions.SOLUTION_TAG in c["metadata"]["tags"] for c in extra)
            assert len(extra) == 1 + len(editions.solution_cells(sol))


def test_handout_zips_leave_solutions_out_of_the_student_edition(tmp_path):
    student = editions.build("student", ROOT, tmp_path, make_zip=True)
    teacher = editions.build("teacher", ROOT, tmp_path, make_zip=True)
    s_names = zipfile.ZipFile(student).namelist()
    t_names = zipfile.ZipFile(teacher).namelist()
    assert "qwenlab-course/README.md" in s_names and "qwenlab-course/setup_course.py" in s_names
    assert not any(n.startswith(("qwenlab-course/solutions/", "qwenlab-course/tests/")) for n in s_names)
    assert any(n.startswith("qwenlab-course/solutions/") for n in t_names)
    nb = "qwenlab-course/notebooks/03_tokenizer.ipynb"
    assert "## 参考答案" not in zipfile.ZipFile(student).read(nb).decode()
    assert "## 参考答案" in zipfile.ZipFile(teacher).read(nb).decode()
    assert "## 参考答案" not in (ROOT / "notebooks" / "03_tokenizer.ipynb").read_text(encoding="utf-8")


def test_solutions_file_cells_split_at_each_mark(tmp_path):
    sol = tmp_path / "09_x.py"
    sol.write_text("# header, not a cell\n# %%\na = 1\n\n# %% 练习 2\nb = 2\n# %%\n\n", encoding="utf-8")
    assert editions.solution_cells(sol) == ["a = 1", "b = 2"]


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_cell_has_the_id_nbformat_requires(nb):
    """Cells added by a script without an id make nbformat warn now and fail in a future version."""
    cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
    missing = [i for i, c in enumerate(cells) if not c.get("id")]
    assert not missing, f"{nb.name}: cells {missing} have no id; run `make strip`"
