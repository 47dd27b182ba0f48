"""Repository rules: notebooks committed without outputs; environment.yml and pyproject agree."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _tracked_notebooks() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "notebooks/*.ipynb"], cwd=ROOT, capture_output=True, text=True)
    files = out.stdout.split() if out.returncode == 0 and out.stdout.strip() else []
    return [ROOT / f for f in files] or sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("nb_path", _tracked_notebooks(), ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(nb_path):
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    dirty = [i for i, c in enumerate(nb["cells"])
             if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"{nb_path.name}: cells {dirty} carry outputs; run `make strip` before committing"


@pytest.mark.parametrize("nb_path", _tracked_notebooks(), ids=lambda p: p.name)
def test_notebook_starts_with_setup_and_ends_with_summary_and_exercises(nb_path):
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert "setup_notebook(" in "".join(code[0]["source"]), "first code cell must call qwenlab.setup_notebook()"
    markdown = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    assert "小结" in markdown and "练习" in markdown


def test_environment_yml_has_the_same_direct_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"]}
    for extra in ("offline", "lab", "test", "serve", "quant"):
        wanted |= {_name(r) for r in project["optional-dependencies"][extra]}
    env_text = (ROOT / "environment.yml").read_text()
    listed = set()
    for line in env_text.splitlines():
        m = re.match(r"\s*-\s+([A-Za-z0-9_.\-\[\]]+.*)$", line)
        if not m or line.strip().startswith("- -") or m.group(1).startswith(("pip", "python", "conda-forge")):
            continue
        listed.add(_name(m.group(1)))
    assert listed == wanted, f"only in pyproject: {wanted - listed}; only in environment.yml: {listed - wanted}"


def test_every_qwenlab_module_has_a_layer_in_the_import_contract():
    """A new module must be placed in a layer (pyproject's import-linter contract), or lint-imports
    would never check its imports."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    named = {m.strip() for contract in config["contracts"] if contract["type"] == "layers"
             for line in contract["layers"] for m in line.split("|")}
    package = ROOT / "qwenlab"
    modules = {f"qwenlab.{p.stem}" for p in package.glob("*.py") if p.stem != "__init__"}
    modules |= {f"qwenlab.{p.parent.name}" for p in package.glob("*/__init__.py")}
    assert modules - named == set(), f"modules missing from [tool.importlinter] layers: {modules - named}"
    assert named - modules == set(), f"layers name modules that do not exist: {named - modules}"


def test_public_names_are_listed_once_and_all_resolve():
    import qwenlab

    exported = set(qwenlab._EXPORTS)  # the lazy map is the package's own, read here as its spec
    assert set(qwenlab.__all__) == exported | {"__version__"}
    missing = [name for name in qwenlab.__all__ if not hasattr(qwenlab, name)]
    assert missing == []
