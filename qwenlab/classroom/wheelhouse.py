"""The wheelhouse: every wheel the students' laptops need, downloaded once by the teacher into one folder.

The day before class, on a machine with internet (``qwenlab wheelhouse``, see ``docs/teacher.md``)::

    qwenlab wheelhouse build/wheelhouse            # Windows, macOS, Linux x Python 3.10-3.12 (a few GB)
    qwenlab wheelhouse build/wheelhouse --native   # only this machine's platform (what CI builds)
    qwenlab wheelhouse build/wheelhouse --check    # resolve every target; nothing lands in the folder

then ``qwenlab mirror --wheelhouse build/wheelhouse ...`` serves it as a package index
(:mod:`qwenlab.classroom.index`), and the students install with
``setup_course.py install --pip-mirror http://TEACHER:8090/simple``.

Each target is one ``pip download --only-binary=:all: --platform ... --python-version ...`` of the course's
requirements (:func:`course_requirements`). Two things pip does not get right on its own:

- environment markers: pip evaluates ``colorama; platform_system == "Windows"`` against the machine it runs
  on, even with ``--platform``; it runs under :mod:`qwenlab.classroom.targetpip`, which gives it the target's
  marker environment, so a Windows wheelhouse built on Linux has pywinpty and colorama and no nvidia-* wheels.
- torch on Linux: PyPI's Linux x86-64 torch is the CUDA build (plus ~3 GB of nvidia-* wheels). Linux targets
  ask for ``torch==X+cpu``, with PyTorch's CPU index added when it answers; when no CPU build is found the
  target fails and says why, rather than filling the wheelhouse with the CUDA build.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from ..display import Table, TableView
from ..files import write_text_atomic
from ..sources import probe

__all__ = ["COURSE_EXTRAS", "TORCH", "TORCH_CPU_INDEX", "PYTHONS", "PLATFORMS", "BUILD_TOOLS", "MANIFEST",
           "Target", "STUDENT_TARGETS", "course_requirements", "cpu_torch", "pip_command", "TargetResult",
           "WheelhouseReport", "build", "package_files"]

COURSE_EXTRAS = "offline,lab,test,serve,quant"  # what setup_course.py installs (its EXTRAS; a test checks)
TORCH = "torch==2.13.0"  # setup_course.py's TORCH
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PYTHONS = ("3.10", "3.11", "3.12")
# setup_course.py upgrades pip, and `pip install -e .` builds qwenlab with setuptools (pyproject's build-system).
BUILD_TOOLS = ("pip", "setuptools>=68")
MANIFEST = "wheelhouse.json"  # what was built for which target, written into the wheelhouse
PACKAGE_SUFFIXES = (".whl", ".tar.gz", ".zip")

# platform -> (platform.system(), platform.machine(), os.name, sys.platform, pip --platform tags, best first).
# macOS arm64: torch 2.13 ships macosx_14_0 wheels only (macOS 14 Sonoma or newer); the tag also accepts older
# ones. Linux: pip does not expand manylinux_2_28 to older glibc tags by itself, so every tag is listed.
PLATFORMS: dict[str, tuple[str, str, str, str, tuple[str, ...]]] = {
    "win_amd64": ("Windows", "AMD64", "nt", "win32", ("win_amd64",)),
    "macosx_arm64": ("Darwin", "arm64", "posix", "darwin", ("macosx_14_0_arm64",)),
    "macosx_x86_64": ("Darwin", "x86_64", "posix", "darwin", ("macosx_13_0_x86_64",)),
    "manylinux_x86_64": ("Linux", "x86_64", "posix", "linux",
                         tuple(f"manylinux_2_{v}_x86_64" for v in range(28, 16, -1)) + ("manylinux2014_x86_64",)),
}
# The last python.org installers of each version (what a student most likely has), for python_full_version markers.
_PYTHON_FULL = {"3.10": "3.10.11", "3.11": "3.11.9", "3.12": "3.12.10"}
NATIVE = "native"


@dataclass(frozen=True)
class Target:
    """One kind of student laptop: a platform (a key of :data:`PLATFORMS`, or ``"native"`` for this machine)
    and a Python version (``"3.11"``).

    >>> Target.parse("win_amd64-3.11").name, Target("manylinux_x86_64", "3.12").system
    ('win_amd64-py3.11', 'Linux')
    """

    platform: str
    python: str

    def __post_init__(self) -> None:
        if self.platform != NATIVE and self.platform not in PLATFORMS:
            raise ValueError(f"unknown platform {self.platform!r}; choose one of {', '.join(PLATFORMS)} (or native)")
        if not re.fullmatch(r"3\.\d+", self.python):
            raise ValueError(f"python must look like '3.11', not {self.python!r}")

    @classmethod
    def native(cls) -> Target:
        """This machine: its own platform and Python (no ``--platform``: pip picks what would install here)."""
        return cls(NATIVE, f"{sys.version_info.major}.{sys.version_info.minor}")

    @classmethod
    def parse(cls, text: str) -> Target:
        """``"win_amd64-3.11"`` (or ``-py3.11``) -> Target."""
        plat, sep, python = text.rpartition("-")
        if not sep:
            raise ValueError(f"a target looks like 'win_amd64-3.11', not {text!r}")
        return cls(plat, python.removeprefix("py"))

    @property
    def name(self) -> str:
        return f"{self.platform}-py{self.python}"

    @property
    def system(self) -> str:
        """``"Windows"``, ``"Darwin"`` or ``"Linux"`` (what ``platform.system()`` says on such a laptop)."""
        return platform.system() if self.platform == NATIVE else PLATFORMS[self.platform][0]

    def markers(self) -> dict[str, str] | None:
        """The PEP 508 marker environment of such a laptop (None for this machine: pip's own is right)."""
        if self.platform == NATIVE:
            return None
        system, machine, os_name, sys_platform, _ = PLATFORMS[self.platform]
        full = _PYTHON_FULL.get(self.python, f"{self.python}.0")
        return {"os_name": os_name, "sys_platform": sys_platform, "platform_system": system,
                "platform_machine": machine, "python_version": self.python, "python_full_version": full,
                "implementation_name": "cpython", "implementation_version": full,
                "platform_python_implementation": "CPython"}

    def pip_args(self) -> list[str]:
        """pip's options that pick this target's wheels (binary wheels only: nothing is built on a laptop)."""
        args = ["--only-binary=:all:"]
        if self.platform != NATIVE:
            for tag in PLATFORMS[self.platform][4]:
                args += ["--platform", tag]
            args += ["--python-version", self.python, "--implementation", "cp"]
        return args


STUDENT_TARGETS: tuple[Target, ...] = tuple(Target(p, v) for p in PLATFORMS for v in PYTHONS)


# ---- what to download ------------------------------------------------------------------------------------


def _declared() -> tuple[list[str], dict[str, list[str]]]:
    """qwenlab's dependencies and extras: from pyproject.toml in a source checkout (the truth while editing),
    else from the installed package's metadata."""
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    try:
        import tomllib

        project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
        if project.get("name") == "qwenlab":
            return list(project["dependencies"]), {k: list(v) for k, v in project["optional-dependencies"].items()}
    except (ImportError, OSError, KeyError, ValueError):
        pass  # Python 3.10 (no tomllib), or an installed wheel without pyproject.toml
    deps: list[str] = []
    extras: dict[str, list[str]] = {}
    for line in importlib.metadata.requires("qwenlab") or []:
        spec, _, marker = line.partition(";")
        m = re.search(r"""extra\s*==\s*["']([^"']+)["']""", marker)
        if m:
            extras.setdefault(m.group(1), []).append(spec.strip())
        else:
            deps.append(line.strip())
    return deps, extras


def course_requirements(extras: str = COURSE_EXTRAS, torch: str = TORCH) -> list[str]:
    """What a student's ``setup_course.py install`` needs: the torch pin, qwenlab's dependencies and the
    ``extras`` (comma-separated), pip and setuptools.

    Raises:
        ValueError: an extra qwenlab does not have.
    """
    deps, optional = _declared()
    wanted = [e.strip() for e in extras.split(",") if e.strip()]
    unknown = [e for e in wanted if e not in optional]
    if unknown:
        raise ValueError(f"qwenlab has no extra {', '.join(unknown)}; it has {', '.join(sorted(optional))}")
    reqs = [torch] + [d for d in deps if not re.match(r"torch\b(?![-_.\w])", d)]
    for extra in wanted:
        reqs += optional[extra]
    reqs += BUILD_TOOLS
    return list(dict.fromkeys(reqs))


def cpu_torch(requirements: Iterable[str]) -> list[str]:
    """The requirements with an exact torch pin turned into its CPU build (``torch==2.13.0`` ->
    ``torch==2.13.0+cpu``), as Linux needs (PyPI's Linux torch is the CUDA build).

    >>> cpu_torch(["torch==2.13.0", "numpy>=1.26"])
    ['torch==2.13.0+cpu', 'numpy>=1.26']
    """
    return [re.sub(r"^(torch\s*==\s*[\w.]+)$", r"\1+cpu", r.strip()) for r in requirements]


def pip_command(target: Target, requirements: Sequence[str], dest: Path, index_url: str | None = None,
                extra_index_urls: Sequence[str] = (), report: Path | None = None) -> list[str]:
    """The pip command for one target: ``pip download`` into ``dest``, or with ``report`` a dry-run
    ``pip install --report`` that resolves without downloading the wheels (pip reads their metadata only)."""
    markers = target.markers()
    runner = ["-m", "pip"] if markers is None else ["-m", "qwenlab.classroom.targetpip", json.dumps(markers)]
    if report is None:
        action = ["download", "--dest", str(dest)]
    else:
        action = ["install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report)]
        if markers is not None:
            action += ["--target", str(dest)]  # pip wants one with --platform; nothing is written there
    indexes = (["--index-url", index_url] if index_url else [])
    for url in extra_index_urls:
        indexes += ["--extra-index-url", url]
    return [sys.executable, *runner, *action, "--progress-bar", "off", "--disable-pip-version-check",
            *target.pip_args(), *indexes, *requirements]


# ---- running it ------------------------------------------------------------------------------------------


@dataclass
class TargetResult:
    """How one target went: ``ok``, the package files it needs (names in the wheelhouse), their size, the time
    pip took, and when it failed, pip's reason."""

    target: Target
    ok: bool
    files: list[str] = field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0
    error: str = ""


_SAVED = re.compile(r"^\s*(?:Saved|File was already downloaded)\s+(.+?)\s*$")


def _run_pip(cmd: list[str], say: Callable[[str], None], name: str) -> tuple[int, list[str], list[str]]:
    """Run pip, passing each line to ``say``; (exit code, package file names it saved or found, error lines)."""
    files, errors = [], []
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONIOENCODING": "utf-8"}
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, encoding="utf-8",
                          errors="replace", env=env) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            m = _SAVED.match(line)
            if m:
                files.append(Path(m.group(1)).name)
            elif line.startswith("ERROR:"):
                errors.append(line.removeprefix("ERROR:").strip())
            if line and "is ignored: it is neither a file nor a directory" not in line:
                say(f"{name}: {line}")
    return proc.returncode, files, errors


def _why_failed(target: Target, errors: list[str], cpu_index: str | None) -> str:
    text = " ".join(errors[-3:]) or "pip failed (see its output above)"
    if target.system == "Linux" and "torch" in text and cpu_index is None:
        text += (f" — the CPU build of torch comes from PyTorch's CPU index ({TORCH_CPU_INDEX}), which did not "
                 "answer from here; build on a machine that reaches it, or download that wheel (torch-X+cpu for this "
                 "Python) elsewhere and point PIP_FIND_LINKS at its folder.")
    elif target.platform == "macosx_x86_64" and "torch" in text:
        text += " — PyTorch publishes no wheel of torch >= 2.4 for Intel Macs (the last one is 2.2.2)."
    return text


def _files_of(report_path: Path) -> list[str]:
    data = json.loads(report_path.read_text(encoding="utf-8"))
    return [unquote(item["download_info"]["url"].rsplit("/", 1)[-1]) for item in data.get("install", [])]


def build_target(target: Target, dest: Path, requirements: Sequence[str], index_url: str | None = None,
                 cpu_index: str | None = None, check: bool = False,
                 say: Callable[[str], None] = lambda line: None) -> TargetResult:
    """Download (or with ``check``, only resolve) one target's wheels into ``dest``.

    Args:
        cpu_index: PyTorch's CPU index, added for Linux targets (None when it does not answer).
    """
    reqs = cpu_torch(requirements) if target.system == "Linux" else list(requirements)
    extra = [cpu_index] if cpu_index and target.system == "Linux" else []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="qwenlab-wheelhouse-") as tmp:
        report = Path(tmp) / "report.json" if check else None
        cmd = pip_command(target, reqs, Path(tmp) if check else dest, index_url, extra, report)
        code, files, errors = _run_pip(cmd, say, target.name)
        if code == 0 and report is not None:
            files = _files_of(report)
    seconds = time.perf_counter() - start
    if code != 0:
        return TargetResult(target, False, seconds=seconds, error=_why_failed(target, errors, cpu_index))
    files = sorted(set(files))
    size = sum((dest / f).stat().st_size for f in files if (dest / f).is_file())
    return TargetResult(target, True, files, size, seconds)


def package_files(folder: str | os.PathLike) -> list[Path]:
    """The package files (wheels, sdists) in a wheelhouse folder."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(PACKAGE_SUFFIXES)) \
        if folder.is_dir() else []


@dataclass
class WheelhouseReport(TableView):
    """What :func:`build` did: one row per target (status, files, size, seconds), the folder's total below."""

    folder: Path
    results: list[TargetResult]
    check: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def total_bytes(self) -> int:
        """Bytes of every package file in the folder (all targets together, shared wheels counted once)."""
        return sum(p.stat().st_size for p in package_files(self.folder))

    def table(self) -> Table:
        rows = [(r.target.name, "ok" if r.ok else "FAILED", len(r.files) if r.ok else "",
                 "" if self.check or not r.ok else _size(r.bytes), f"{r.seconds:.0f} s")
                for r in self.results]
        files = package_files(self.folder)
        notes = [] if self.check else [f"wheelhouse {self.folder}: {len(files)} files, {_size(self.total_bytes)} "
                                       f"in all ({self.seconds:.0f} s)"]
        done = [r for r in self.results if r.ok and r.bytes]
        if done:
            big = max(done, key=lambda r: r.bytes)
            notes.append(f"one student downloads at most {_size(big.bytes)} ({big.target.name})")
        notes += [f"{r.target.name} FAILED: {r.error}" for r in self.results if not r.ok]
        title = "wheelhouse check (resolved, nothing downloaded)" if self.check else "wheelhouse"
        return Table(["target", "status", "files", "size", "time"], rows, title=title, notes=notes,
                     align_right=[2, 3, 4])


def _size(nbytes: int) -> str:
    return f"{nbytes / 1e9:.2f} GB" if nbytes >= 1e9 else f"{nbytes / 1e6:,.0f} MB"


def _write_manifest(folder: Path, results: list[TargetResult], requirements: Sequence[str]) -> None:
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = {}
    targets = manifest.get("targets", {}) if isinstance(manifest, dict) else {}
    for r in results:
        targets[r.target.name] = {"ok": r.ok, "files": r.files, "bytes": r.bytes, "seconds": round(r.seconds, 1),
                                  "error": r.error}
    manifest = {"built": time.strftime("%Y-%m-%d %H:%M"), "requirements": list(requirements), "targets": targets}
    write_text_atomic(path, json.dumps(manifest, indent=2))


def build(dest: str | os.PathLike, targets: Sequence[Target] = STUDENT_TARGETS,
          requirements: Sequence[str] | None = None, index_url: str | None = None,
          torch_index: str | None = TORCH_CPU_INDEX, check: bool = False, probe_timeout: float = 5.0,
          progress: Callable[[str], None] | None = None) -> WheelhouseReport:
    """Download the wheels of every target into ``dest`` (one pip run per target; a wheel shared by several
    targets is downloaded once), and record what each target needs in ``dest/wheelhouse.json``.

    Args:
        dest: the wheelhouse folder (created).
        targets: which laptops (default: Windows, macOS arm64/x86-64, Linux x86-64 x Python 3.10-3.12).
        requirements: what to download (default :func:`course_requirements`).
        index_url: the index to download from (default: pip's own configuration, e.g. a domestic mirror).
        torch_index: PyTorch's CPU index, used for the Linux targets when it answers within ``probe_timeout``.
        check: resolve every target and put nothing in ``dest`` (from PyPI, pip fetches only each wheel's
            metadata, PEP 658).
        progress: called with each line pip prints (prefixed with the target).

    Returns:
        A :class:`WheelhouseReport` (a table); ``.ok`` is False when a target failed (each says why).

    Taught in ``docs/teacher.md``.
    """
    say = progress or (lambda line: None)
    folder = Path(dest).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    reqs = list(requirements) if requirements is not None else course_requirements()
    cpu_index = None
    if torch_index and any(t.system == "Linux" for t in targets):
        answer = probe(probe_timeout, {"pytorch-cpu": torch_index.rstrip("/") + "/torch/"})[0]
        cpu_index = torch_index if answer.ok else None
        say(f"PyTorch CPU index {torch_index}: " + ("answers" if answer.ok else f"unreachable ({answer.detail})"))
    start = time.perf_counter()
    results = [build_target(t, folder, reqs, index_url, cpu_index, check, say) for t in targets]
    if not check:
        _write_manifest(folder, results, reqs)
    return WheelhouseReport(folder, results, check, time.perf_counter() - start)
