"""setup_course.py: the one setup entry point (standard-library Python, the same on Windows, macOS and Linux)."""

from __future__ import annotations

import ast
import http.server
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "setup_course.py"
MIRROR = "https://pypi.tuna.tsinghua.edu.cn/simple"


def _load():
    spec = importlib.util.spec_from_file_location("setup_course", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["setup_course"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


sc = _load()
LINUX = sc.Host("Linux", "x86_64")
WINDOWS = sc.Host("Windows", "AMD64")
MACOS = sc.Host("Darwin", "arm64")


@pytest.fixture
def project(tmp_path):
    """A folder with a pyproject.toml, and Options pointing at it (no venv yet)."""
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    return sc.Options(venv=tmp_path / ".venv", root=tmp_path, pip_mirror=MIRROR)


def _fake_venv(opts, host):
    py = sc.venv_python(opts.venv, host)
    py.parent.mkdir(parents=True)
    py.write_text("")
    return py


def _answers(ok):
    def probe(url, timeout):
        probe.asked.append(url)
        return ok, "HTTP 200" if ok else "Name or service not known"
    probe.asked = []
    return probe


def _never(url, timeout):
    raise AssertionError(f"probed {url}")


def _torch(steps):
    [step] = [s for s in steps if "torch==" in " ".join(s.argv)]
    return step.argv


def test_the_venv_python_is_scripts_python_exe_on_windows_and_bin_python_elsewhere():
    venv = Path("C:/course/.venv")
    assert sc.venv_python(venv, WINDOWS).relative_to(venv).parts == ("Scripts", "python.exe")
    assert sc.venv_python(venv, LINUX).relative_to(venv).parts == ("bin", "python")
    assert sc.venv_python(venv, MACOS).relative_to(venv).parts == ("bin", "python")


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_linux_installs_cpu_torch_from_the_pytorch_index_and_the_rest_from_the_mirror(project, machine):
    probe = _answers(True)
    steps = sc.plan("install", project, sc.Host("Linux", machine), probe)
    py = str(sc.venv_python(project.venv, LINUX))
    assert steps[0].argv == [sys.executable, "-m", "venv", str(project.venv)]
    assert probe.asked == ["https://download.pytorch.org/whl/cpu/torch/"]
    assert _torch(steps) == [py, "-m", "pip", "install", "--index-url", sc.TORCH_CPU_INDEX, "torch==2.13.0"]
    course = [s.argv for s in steps if "-e" in s.argv]
    assert course == [[py, "-m", "pip", "install", "--index-url", MIRROR, "-e", ".[offline,lab,test,serve,quant]"]]
    assert steps[-1].action is not None  # the stamp, written last


def test_an_unreachable_cpu_index_falls_back_to_the_default_index_and_says_so(project, capsys):
    project.pip_mirror = None
    steps = sc.plan("install", project, LINUX, _answers(False))
    assert _torch(steps)[-2:] == ["install", "torch==2.13.0"]  # no --index-url: pip's default index
    warning = capsys.readouterr().err
    assert "unreachable (Name or service not known)" in warning and "CUDA build" in warning


@pytest.mark.parametrize("host", [WINDOWS, MACOS, sc.Host("Darwin", "x86_64")], ids=lambda h: h.system + h.machine)
def test_other_platforms_get_torch_from_the_default_index_without_probing(project, host):
    steps = sc.plan("install", project, host, _never)
    assert _torch(steps) == [str(sc.venv_python(project.venv, host)), "-m", "pip", "install", "--index-url", MIRROR,
                             "torch==2.13.0"]


class _Index(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_the_probe_accepts_an_answering_index_and_gives_up_on_a_silent_or_closed_one(tmp_path):
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "index.html").write_text("<a href='torch-2.13.0.whl'>torch</a>")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _Index(*a, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    silent = socket.socket()  # accepts connections (the kernel does) but never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    try:
        assert sc.index_reachable(f"http://127.0.0.1:{server.server_port}/torch/", 5.0) == (True, "HTTP 200")
        assert sc.index_reachable(f"http://127.0.0.1:{server.server_port}/nothing/", 5.0) == (False, "HTTP 404")
        ok, why = sc.index_reachable(f"http://127.0.0.1:{silent.getsockname()[1]}/torch/", 0.5)
        assert not ok and ("timed out" in why or "no answer" in why)
        ok, why = sc.index_reachable(f"http://127.0.0.1:{closed_port}/torch/", 5.0)
        assert not ok and "refused" in why.lower()
    finally:
        server.shutdown()
        silent.close()


def test_install_runs_again_only_when_pyproject_toml_changed(project):
    _fake_venv(project, LINUX)
    assert [s.what for s in sc.plan("install", project, LINUX, _answers(True))][0] == "upgrade pip"  # venv kept
    sc.write_stamp(project)
    assert sc.plan("install", project, LINUX, _never) == []
    (project.root / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "2"\n')
    assert "upgrade pip" in [s.what for s in sc.plan("install", project, LINUX, _answers(True))]
    sc.write_stamp(project)
    assert [p.name for p in project.venv.glob(".installed-*")] == [sc.stamp_path(project).name]  # old one gone


def test_each_command_does_what_it_needs_first(project):
    """`test` = model + lint + the teacher edition's notebooks + the suite on them (strict exercise checks);
    `lab` = model + JupyterLab; no reinstall."""
    _fake_venv(project, LINUX)
    sc.write_stamp(project)
    test = sc.plan("test", project, LINUX, _never)
    assert [s.what for s in test] == ["make the course model ready", "ruff", "import contracts", "mypy",
                                      "the teacher edition's notebooks", "the whole suite"]
    assert test[-2].argv[1:] == ["-m", "qwenlab.cli", "edition", "teacher", "--notebooks-only", sc.TEACHER_NOTEBOOKS]
    assert test[-1].env == {"QWENLAB_STRICT_CHECKS": "1"}
    assert test[-1].argv[1:] == ["-m", "pytest", "tests", sc.TEACHER_NOTEBOOKS, "qwenlab", "--doctest-modules",
                                 "--nbval-lax", "--nbval-current-env"]
    assert test[0].env == {"PIP_INDEX_URL": MIRROR}  # the offline model's packages come from the mirror too
    lab = sc.plan("lab", project, LINUX, _never)
    assert [s.what for s in lab] == ["make the course model ready", "open the course in JupyterLab"]
    assert Path(lab[-1].argv[0]).name == "jupyter" and lab[-1].argv[1:] == ["lab", "notebooks/"]


def test_a_failing_step_stops_the_run_with_its_exit_code_and_hint(project, tmp_path, capsys):
    marker = tmp_path / "second-step-ran"
    steps = [sc.Step("fail", [sys.executable, "-c", "raise SystemExit(3)"], hint="Do this next."),
             sc.Step("write", [sys.executable, "-c", f"open({str(marker)!r}, 'w')"])]
    assert sc.run(steps, project) == 3
    assert not marker.exists()
    assert "`fail` failed (exit code 3). Do this next." in capsys.readouterr().err
    assert sc.run(steps[1:], project, dry_run=True) == 0 and not marker.exists()
    assert sc.run(steps[1:], project) == 0 and marker.exists()


def test_the_script_needs_only_the_standard_library_and_starts_on_older_pythons():
    """It runs before anything is installed; on Python < 3.10 it must get as far as saying so."""
    tree = ast.parse(SCRIPT.read_text(encoding="utf-8"), feature_version=(3, 8))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported - set(sys.stdlib_module_names) - {"__future__"} == set()
    with pytest.raises(SystemExit, match=r"needs Python 3\.10 or newer; this is Python 3\.9\.18"):
        sc.check_python((3, 9, 18))
    sc.check_python((3, 10, 0))


def _script(*args, **kw):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120, **kw)


def test_dry_run_prints_every_step_and_creates_nothing(tmp_path):
    venv = tmp_path / "venv with space"
    out = _script("--venv", str(venv), "--pip-mirror", MIRROR, "--dry-run", "lab")
    assert out.returncode == 0, out.stderr
    assert f"-m venv '{venv}'" in out.stdout and f"--index-url {MIRROR} -e" in out.stdout
    assert f"{sc.venv_tool(venv, sc.Host.current(), 'jupyter')}' lab notebooks/" in out.stdout
    assert not venv.exists()


@pytest.mark.skipif(os.name == "nt", reason="links a POSIX venv's python and lib/")
def test_check_exits_1_without_an_installed_venv_and_0_with_one(tmp_path):
    missing = _script("--venv", str(tmp_path / "none"), "check")
    assert missing.returncode == 1 and "missing" in missing.stdout and "setup_course.py install" in missing.stderr
    host = sc.Host.current()
    real = sc.venv_python(ROOT / ".venv", host)
    if not real.exists():
        pytest.skip("no .venv here")
    opts = sc.Options(venv=tmp_path / "v")  # a venv whose python and packages are the real ones, linked
    sc.venv_python(opts.venv, host).parent.mkdir(parents=True)
    sc.venv_python(opts.venv, host).symlink_to(real)
    shutil.copy(ROOT / ".venv" / "pyvenv.cfg", opts.venv)
    (opts.venv / "lib").symlink_to(ROOT / ".venv" / "lib")
    sc.write_stamp(opts)
    ready = _script("--venv", str(opts.venv), "check")
    assert ready.returncode == 0, ready.stdout + ready.stderr
    assert "imports   ok: torch" in ready.stdout and "the whole suite" in ready.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
@pytest.mark.parametrize("target", ["install", "model", "lint", "test", "test-fast", "course", "lab", "strip", "clean"])
def test_every_make_target_is_one_call_of_the_script(target):
    """One source of truth: make only forwards its variables (make lab PIP_MIRROR=... included)."""
    # Under `make test` this test runs inside make: drop the parent's MAKELEVEL/MAKEFLAGS, or the child make
    # prints "make[1]: Entering directory" lines around the command (CI failed on exactly that).
    env = {k: v for k, v in os.environ.items() if k not in {"MAKELEVEL", "MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES"}}
    out = subprocess.run(["make", "--no-print-directory", "-n", target, f"PIP_MIRROR={MIRROR}", "VENV=.v"], cwd=ROOT,
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    [line] = out.stdout.strip().splitlines()
    assert line.startswith("python3 setup_course.py ") and line.endswith(f" {target}")
    assert f'--pip-mirror "{MIRROR}"' in line and '--venv ".v"' in line
