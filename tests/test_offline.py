"""The offline model: assembled from PyPI slices, SHA-256 checked, converted atomically, reused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

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
    """Kill the converter mid-way: the final folder must not exist (or not be ready); a rerun would redo it."""
    offline.assemble()
    script = textwrap.dedent("""
        from qwenlab import offline
        offline.convert(offline._gguf_path(), offline._folder())
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(20)  # GGUF parsing / de-quantizing is under way
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    st = offline.status()
    assert not st.folder_ready
    assert not (st.folder / "config.json").exists()
