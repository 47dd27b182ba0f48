"""The course plumbing: exercise checks, setup_notebook, the CLI dispatcher, `make course`'s runner."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import qwenlab
from qwenlab import course
from qwenlab.course import ExerciseError

ROOT = Path(__file__).resolve().parents[1]


def test_check_unanswered_is_never_an_error(monkeypatch, capsys):
    monkeypatch.setenv("QWENLAB_STRICT_CHECKS", "1")
    assert qwenlab.check("练习 1", None, lambda a: a == 1) is None  # nothing extra shows in a notebook
    assert course.last_check is None
    assert "尚未作答" in capsys.readouterr().out


def test_check_right_and_wrong_answers(monkeypatch, capsys):
    monkeypatch.delenv("QWENLAB_STRICT_CHECKS", raising=False)
    qwenlab.check("练习 1", 3, lambda a: a == 3)
    assert course.last_check is True
    qwenlab.check("练习 1", 4, lambda a: a == 3, hint="试试 3")
    assert course.last_check is False
    out = capsys.readouterr().out
    assert "✅" in out and "❌" in out and "试试 3" in out


def test_check_survives_a_test_that_raises(monkeypatch, capsys):
    monkeypatch.delenv("QWENLAB_STRICT_CHECKS", raising=False)
    qwenlab.check("练习 2", "abc", lambda a: a + 1 > 0)
    assert course.last_check is False
    assert "TypeError" in capsys.readouterr().out


def test_check_is_strict_under_make_test(monkeypatch):
    monkeypatch.setenv("QWENLAB_STRICT_CHECKS", "1")
    with pytest.raises(ExerciseError, match="练习 3"):
        qwenlab.check("练习 3", "stop", lambda a: a == "length")


def test_setup_notebook_reports_model_device_and_versions(monkeypatch, capsys):
    monkeypatch.setenv("QWENLAB_MODEL", "offline")
    setup = qwenlab.setup_notebook()
    assert setup.model == "offline" and setup.device in ("cpu", "cuda")
    assert {"python", "torch", "transformers", "qwenlab"} <= set(setup.versions)
    assert "model: offline" in capsys.readouterr().out


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qwenlab.cli", *args], capture_output=True, text=True, timeout=60)


def test_cli_lists_commands_and_rejects_unknown_ones():
    out = _run_cli("--help")
    assert out.returncode == 0 and "offline-model" in out.stdout and "doctor" in out.stdout
    bad = _run_cli("frobnicate")
    assert bad.returncode == 2 and "unknown command 'frobnicate'" in bad.stderr


def _notebook(path: Path, *sources: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(nb, path)


def test_course_runner_writes_html_and_reports_failures(tmp_path):
    src = tmp_path / "nbs"
    src.mkdir()
    _notebook(src / "00_ok.ipynb", "x = 6 * 7", "print('answer', x)")
    _notebook(src / "01_broken.ipynb", "raise ValueError('boom')")
    out_dir = tmp_path / "build"
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "run_course.py"), str(src), str(out_dir)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    table = done.stdout
    assert "00_ok.ipynb" in table and "01_broken.ipynb" in table and "FAILED" in table
    html = (out_dir / "00_ok.html").read_text(encoding="utf-8")
    assert "answer 42" in html
    executed = nbformat.read(out_dir / "00_ok.ipynb", as_version=4)
    assert executed.cells[1].outputs[0]["text"].strip() == "answer 42"


COURSE = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("nb_path", COURSE, ids=lambda p: p.name)
def test_first_cell_states_time_peak_memory_and_the_core_path(nb_path):
    """A teacher cutting a 3-hour path reads, at the top of every notebook, how long it ran (offline model,
    2 CPU cores), its peak memory, and which sections are core (★) or optional (☆)."""
    import re

    nb = nbformat.read(nb_path, as_version=4)
    first = next(c.source for c in nb.cells if c.cell_type == "markdown")
    assert re.search(r"运行时间 \(time to run\)：约 \d+ 分钟[^\n]*2 个 CPU 核", first), "time to run missing"
    assert re.search(r"峰值内存 \(peak memory\)：约 \d+(\.\d+)? GB", first), "peak memory missing"
    path = re.search(r"路线 \(path\)：★ 核心 \(core\) [^\n]+ · ☆ 选学 \(optional\) [^\n]+", first)
    assert path, "the ★ core / ☆ optional path line is missing"
    headings = [line for c in nb.cells if c.cell_type == "markdown" for line in c.source.splitlines()
                if re.match(r"## \d+\.", line)]
    marked = [h for h in headings if "★" in h or "☆" in h]
    assert not marked or len(marked) == len(headings), f"some section headings lack ★/☆: {set(headings) - set(marked)}"
