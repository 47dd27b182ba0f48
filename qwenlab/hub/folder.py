"""Writing a download into a folder that may be the user's, safely: plan what is already there, resume partial
files, check every file's size and hash, move each into place only once verified (``config.json`` last, so a
partial download never looks complete), never delete or overwrite a file qwenlab did not write.

The source side (which files, from where) is :mod:`qwenlab.hub.clients`; it hands :func:`install` one
``fetch_one(file, bar)`` per source. Taught in ``02_download.ipynb``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from ..files import HashingWriter, disk_room, git_blob_sha1, sha256_file, write_text_atomic
from ..ondisk import manifest_path, partial_dir, staging_dir, written_path
from .report import DownloadError, DownloadReport, FileResult, NotEnoughDiskError, UserFileConflictError

__all__ = ["LAST_FILE", "RemoteFile", "same_content", "fetch_file", "install", "write_manifest", "what_is_left"]

LAST_FILE = "config.json"  # written last: a folder without it never looks like a model


@dataclass
class RemoteFile:
    """One file of a repo as a source lists it: path, size and the hash to check it against."""

    path: str
    size: int
    sha256: str | None = None  # large (LFS) files
    blob_id: str | None = None  # git blob sha1 (small files)

    @property
    def etag(self) -> str:
        return self.sha256 or self.blob_id or f"size-{self.size}"


# ---- planning -----------------------------------------------------------------------------------------


def same_content(path: Path, rf: RemoteFile) -> bool:
    """A file on disk has the remote one's bytes: same size, and the hash the source publishes (sha256 for
    LFS/ModelScope files, git blob id for small Hub files). Always hashed: an mtime proves nothing."""
    return path.is_file() and path.stat().st_size == rf.size and _hash_ok(path, rf)


def _hash_ok(path: Path, rf: RemoteFile, sha256: str | None = None) -> bool:
    """The file's hash is the remote one's (sha256 for LFS files, git blob id for small ones; ``sha256``
    when already computed while writing)."""
    if rf.sha256:
        return (sha256 or sha256_file(path)) == rf.sha256
    if rf.blob_id:
        return git_blob_sha1(path) == rf.blob_id
    return True


def _read_written(folder: Path) -> set[str]:
    """The files of ``folder`` that qwenlab itself put in place (the only ones it may ever replace).

    Files it found already there with the right bytes are not in it: they stay the user's.
    """
    try:
        return {str(name) for name in json.loads(written_path(folder).read_text(encoding="utf-8"))["files"]}
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def _save_written(folder: Path, written: set[str]) -> None:
    write_text_atomic(written_path(folder), json.dumps({"files": sorted(written)}, indent=1))


def _plan(folder: Path, remote: list[RemoteFile],
          written: set[str]) -> tuple[list[RemoteFile], list[RemoteFile], list[RemoteFile]]:
    """Sort the repo's files: (kept: already there with the right bytes, todo: to fetch, theirs: a different
    file of the user's in the way)."""
    kept: list[RemoteFile] = []
    todo: list[RemoteFile] = []
    theirs: list[RemoteFile] = []
    for rf in remote:
        dest = folder / rf.path
        if not (dest.exists() or dest.is_symlink()):
            todo.append(rf)
        elif same_content(dest, rf):
            kept.append(rf)
        else:
            (todo if rf.path in written else theirs).append(rf)
    return kept, todo, theirs


def _partial_paths(folder: Path, rel: str) -> tuple[Path, Path]:
    part = partial_dir(folder) / f"{rel}.part"
    return part, part.with_name(part.name + ".json")


def _partial_size(folder: Path, rf: RemoteFile) -> int:
    part, meta = _partial_paths(folder, rf.path)
    try:
        if json.loads(meta.read_text()).get("etag") == rf.etag and part.stat().st_size <= rf.size:
            return part.stat().st_size
    except (OSError, ValueError):
        pass
    return 0


def _check_disk(folder: Path, needed: int, keep_free: int, repo_id: str) -> None:
    room = disk_room(folder, needed, keep_free)
    if not room.enough:
        raise NotEnoughDiskError(
            f"Not enough disk space for {repo_id}: {room.describe()}. Free some space "
            "(qwenlab models --delete NAME) or download elsewhere with local_dir=... / $QWENLAB_HOME."
        )


# ---- bytes ----------------------------------------------------------------------------------


def _bar_adapter(bar: Any) -> type:
    """A tqdm-like class for ``http_get`` that adds to one overall progress bar."""

    class _Adapter:
        def __init__(self, *args: Any, **kwargs: Any):
            pass

        def __enter__(self) -> _Adapter:
            return self

        def __exit__(self, *exc: Any) -> None:
            pass

        def update(self, n: float = 1) -> None:
            bar.update(n)

    return _Adapter


def fetch_file(url: str, folder: Path, rf: RemoteFile, bar: Any,
                token: str | None = None) -> tuple[Path, int, int]:
    """Download one file into its partial file, resuming; verify it. Returns (partial file, resumed_from, fetched)."""
    from huggingface_hub.file_download import http_get

    part, meta = _partial_paths(folder, rf.path)
    part.parent.mkdir(parents=True, exist_ok=True)
    resume = _partial_size(folder, rf)
    if resume == 0:
        part.unlink(missing_ok=True)
    meta.write_text(json.dumps({"etag": rf.etag, "size": rf.size}))
    part.touch()
    with open(part, "r+b") as raw:
        raw.seek(resume)
        raw.truncate()
        writer = HashingWriter(raw)
        if resume < rf.size:  # a complete partial (config.json set aside) needs no request
            http_get(url, cast(BinaryIO, writer), resume_size=resume, expected_size=rf.size,
                     headers={"authorization": f"Bearer {token}"} if token else None,
                     displayed_filename=rf.path, tqdm_class=_bar_adapter(bar))
        digest = writer.hexdigest()
    size = part.stat().st_size
    if size != rf.size or not _hash_ok(part, rf, sha256=digest):
        part.unlink(missing_ok=True)
        meta.unlink(missing_ok=True)
        raise DownloadError(
            f"{rf.path} arrived corrupted ({size} bytes, expected {rf.size} with hash {rf.etag[:12]}…); "
            "only that partial copy was deleted: run the download again."
        )
    meta.unlink(missing_ok=True)
    return part, resume, size - resume


def _put_in_place(folder: Path, rf: RemoteFile, got: Path, written: set[str], repo_id: str) -> None:
    """Move a verified file into the folder, unless a file of the user's took its name meanwhile."""
    dest = folder / rf.path
    if rf.path not in written and (dest.exists() or dest.is_symlink()):
        if same_content(dest, rf):  # the same bytes: keep the user's copy
            got.unlink()
            return
        raise UserFileConflictError(repo_id, folder, [rf.path], during=True)
    written.add(rf.path)
    _save_written(folder, written)  # recorded first: a crash right after never leaves a file qwenlab disowns
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(got, dest)


def _set_aside(folder: Path, rf: RemoteFile) -> Path:
    """Move qwenlab's own, verified ``config.json`` to its partial name while other files are fetched, so the
    folder does not look complete; a failed run leaves it there and the next run puts it back unfetched."""
    part, meta = _partial_paths(folder, rf.path)
    part.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps({"etag": rf.etag, "size": rf.size}))
    os.replace(folder / rf.path, part)
    return part


def _new_bar(total: int, initial: int, desc: str, progress: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                disable=not progress, leave=True)


def write_manifest(folder: Path, report: DownloadReport, remote: list[RemoteFile]) -> None:
    files = {}
    for rf in remote:
        files[rf.path] = {"size": rf.size, "etag": rf.etag}
    manifest = {
        "repo_id": report.repo_id, "name": report.name, "source": report.source, "url": report.url,
        "commit": report.commit, "completed_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "files": files,
    }
    write_text_atomic(manifest_path(folder), json.dumps(manifest, indent=1))


def install(folder: Path, remote: list[RemoteFile], fetch_one: Any, desc: str, progress: bool,
             keep_free: int, repo_id: str) -> list[FileResult]:
    """Shared by every source: plan (what is already good, what is the user's), check disk, fetch the rest
    under temporary names, move each file into place once verified, ``config.json`` last.

    ``fetch_one(rf, bar)`` downloads one file and returns (verified temporary file, resumed_from, fetched).
    Nothing in the folder is deleted; a file qwenlab wrote and that is now damaged is replaced only by a
    verified copy; a different file of the user's stops everything before any change.
    """
    written = _read_written(folder)
    kept, todo, theirs = _plan(folder, remote, written)
    if theirs:
        raise UserFileConflictError(repo_id, folder, [rf.path for rf in theirs])
    results = [FileResult(rf.path, rf.size, "kept") for rf in kept]
    if not todo:
        return results
    partial = {rf.path: _partial_size(folder, rf) for rf in todo}
    _check_disk(folder, sum(rf.size - partial[rf.path] for rf in todo), keep_free, repo_id)
    damaged = {rf.path for rf in todo if (folder / rf.path).exists()}
    # From here on the folder is being changed: make sure it does not look complete until the end.
    manifest_path(folder).unlink(missing_ok=True)
    aside = {rf.path: _set_aside(folder, rf) for rf in kept if rf.path == LAST_FILE and rf.path in written}
    results = [r for r in results if r.path not in aside]
    todo += [rf for rf in kept if rf.path in aside]
    todo.sort(key=lambda rf: rf.path == LAST_FILE)
    bar = _new_bar(sum(rf.size for rf in todo), sum(partial.values()), desc, progress)
    try:
        for rf in todo:
            got, resumed_from, fetched = (aside[rf.path], rf.size, 0) if rf.path in aside else fetch_one(rf, bar)
            _put_in_place(folder, rf, got, written, repo_id)
            action = ("refetched" if rf.path in damaged else "kept" if fetched == 0 and rf.size
                      else "resumed" if resumed_from else "downloaded")
            results.append(FileResult(rf.path, rf.size, action, fetched, resumed_from))
    finally:
        bar.close()
    shutil.rmtree(partial_dir(folder), ignore_errors=True)
    shutil.rmtree(staging_dir(folder), ignore_errors=True)
    return results


def what_is_left(folder: Path) -> str:
    """What a failed download left in ``folder``, in one or two sentences (said exactly, never guessed)."""
    partial = partial_dir(folder)
    parts = sorted(p.relative_to(partial).as_posix()[:-len(".part")] for p in partial.rglob("*.part")) \
        if partial.is_dir() else []
    waiting = (f"partial files of {', '.join(parts)} wait in {partial} and resume when you run the same "
               "command again" if parts else "run the same command again to fetch what is missing")
    return (f"No file of yours in {folder} was deleted or overwritten (qwenlab only replaces files it wrote "
            f"itself, and only with a verified copy); {waiting}.")
