"""qwenlab.files: the one implementation of file hashes, free-disk checks and atomic writes."""

from __future__ import annotations

import hashlib
import shutil
import subprocess

import pytest

from qwenlab import files


@pytest.fixture
def blob(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(bytes(range(256)) * 40_000 + b"tail")  # ~10 MB: more than one read chunk
    return path


def test_sha256_matches_hashlib_across_chunks(blob):
    assert files.sha256_file(blob) == hashlib.sha256(blob.read_bytes()).hexdigest()


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_blob_sha1_is_what_git_prints(blob):
    printed = subprocess.run(["git", "hash-object", str(blob)], capture_output=True, text=True, check=True)
    assert files.git_blob_sha1(blob) == printed.stdout.strip()
    assert files.git_blob_sha1_of(blob.read_bytes()) == printed.stdout.strip()


def test_hashing_writer_hashes_the_whole_file_after_a_resume_and_a_restart(tmp_path, blob):
    data = blob.read_bytes()
    part = tmp_path / "part"
    part.write_bytes(data[:1000])  # an earlier, interrupted download
    with open(part, "r+b") as f:
        f.seek(0, 2)
        writer = files.HashingWriter(f)
        writer.write(data[1000:])
        assert writer.hexdigest() == hashlib.sha256(data).hexdigest()
        writer.seek(0)
        writer.truncate()  # the server ignored the Range header: start again from zero
        writer.write(data[:10])
        assert writer.hexdigest() == hashlib.sha256(data[:10]).hexdigest()


def test_disk_room_measures_where_a_missing_folder_would_be_created(tmp_path):
    missing = tmp_path / "not" / "yet" / "there"
    room = files.disk_room(missing, needed=1)
    assert room.folder == tmp_path.resolve() and room.enough
    too_much = files.disk_room(missing, needed=room.free, keep_free=10**9)
    assert not too_much.enough and "GB free (keeping 1.00 GB free)" in too_much.describe()


def test_write_text_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "state" / "manifest.json"
    files.write_text_atomic(target, "one")
    files.write_text_atomic(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["manifest.json"]


def test_folder_size_counts_every_file(tmp_path, blob):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a").write_bytes(b"x" * 10)
    assert files.folder_size(tmp_path) == blob.stat().st_size + 10
