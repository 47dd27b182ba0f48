"""run_qwen.py, the plain-transformers script notebook 00 writes (its ``%%writefile`` cell is the only copy):
no qwenlab import, and it answers a probe question on the offline model's folder."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "00_quickstart.ipynb"
MAGIC = "%%writefile run_qwen.py"


def script_text() -> str:
    """The script exactly as the student sees it in notebook 00 (the cell body after the magic line)."""
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    sources = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    found = [s for s in sources if s.startswith(MAGIC)]
    assert len(found) == 1, f"notebook 00 must have exactly one `{MAGIC}` cell"
    return found[0].split("\n", 1)[1] + "\n"


@pytest.fixture(scope="module")
def script(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("student") / "run_qwen.py"
    path.write_text(script_text(), encoding="utf-8")
    return path


def run(script: Path, folder: Path, question: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), str(folder), question], capture_output=True, text=True,
                          timeout=600, cwd=script.parent)


def test_script_uses_only_transformers_and_torch():
    tree = ast.parse(script_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported == {"sys", "torch", "transformers"}
    calls = {node.func.attr for node in ast.walk(tree) if isinstance(node, ast.Call)
             and isinstance(node.func, ast.Attribute)}
    assert {"from_pretrained", "apply_chat_template", "generate", "decode"} <= calls
    assert "trust_remote_code" not in script_text() and "torch_dtype" not in script_text()


def test_script_runs_on_the_tiny_model(script, tiny_dir):
    """Plumbing on the random-weight tiny Qwen3: it loads a folder, generates and prints only new text."""
    out = run(script, tiny_dir, "hi")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip()


@pytest.mark.real_model
def test_script_answers_the_probe_on_the_offline_model(script, offline_dir):
    out = run(script, offline_dir, "What is the capital of France?")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Paris" in out.stdout
    assert "capital of France?" not in out.stdout  # only the new tokens are printed, not the question
