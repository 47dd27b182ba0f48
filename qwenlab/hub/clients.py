"""The sources' side of a download: what to fetch (:class:`Target`: the repo id on each source, which files), the
file listing with hashes from a Hub-protocol source (``huggingface_hub.HfApi``) or from ModelScope (its own
client), the checks that a repo holds what qwenlab loads, and one download per source, written into the folder
by :func:`qwenlab.hub.folder.install`.

Taught in ``02_download.ipynb``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .. import catalog
from ..catalog import UnknownModelError
from ..files import UnsafePathError, safe_relpath
from ..ondisk import staging_dir
from ..sources import Source
from .folder import LAST_FILE, RemoteFile, fetch_file, install, same_content
from .report import DownloadError, FileResult

__all__ = ["NEEDED_FILES", "needed", "Target", "target_of", "NotFound", "WrongRepo", "download_hub",
           "download_modelscope"]

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



def needed(path: str) -> bool:
    return "/" not in path and any(fnmatch.fnmatch(path, pattern) for pattern in NEEDED_FILES)


@dataclass
class Target:
    """What :func:`qwenlab.hub.fetch` downloads: the repo id on each kind of source and which files of it."""

    name: str  # what the user asked for, or the catalog name
    hf_id: str
    modelscope_id: str
    in_catalog: bool
    gguf_file: str | None = None  # a GGUF repo: only this file is downloaded
    built_locally: bool = False  # the offline models: built on this machine from PyPI, never downloaded

    def wants(self, path: str) -> bool:
        """Whether a file of the repo is downloaded: the needed files, or the one GGUF file of a GGUF repo."""
        return path == self.gguf_file if self.gguf_file else needed(path)

    def repo_for(self, source: Source) -> str:
        return self.modelscope_id if source.kind == "modelscope" else self.hf_id


def target_of(name: str) -> Target:
    """What ``name`` (a catalog name or any ``org/name`` repo id) downloads; else :class:`UnknownModelError`."""
    info = catalog.find(name)
    if info is not None:
        return Target(info.name, info.hf_id, info.modelscope_id, True, info.gguf_file, info.built_locally)
    if not catalog.is_repo_id(name):
        raise UnknownModelError(name, catalog.closest(name))
    return Target(name, name, name, False)


class NotFound(Exception):
    pass


class WrongRepo(DownloadError):
    """The repo exists but lacks what qwenlab needs (no safetensors, no config.json, not the GGUF file)."""


def _hub_files(source: Source, repo_id: str, revision: str | None,
               wants: Callable[[str], bool] | None = None) -> tuple[str | None, list[RemoteFile]]:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    api = HfApi(endpoint=source.url, token=source.class_code or False)
    try:
        info = api.model_info(repo_id, revision=revision, files_metadata=True, timeout=15)
    except RevisionNotFoundError as err:
        raise DownloadError(f"{repo_id} has no revision {revision!r} on {source.name}") from err
    except RepositoryNotFoundError as err:
        raise NotFound(f"{repo_id} not found") from err
    remote = [
        RemoteFile(s.rfilename, s.size or 0, s.lfs.sha256 if s.lfs else None, None if s.lfs else s.blob_id)
        for s in info.siblings or [] if (wants or needed)(s.rfilename)
    ]
    return info.sha, remote


def _safe_names(remote: list[RemoteFile], repo_id: str, source: Source) -> list[RemoteFile]:
    """Every file name the source lists, normalised; refused unless it stays inside the folder on every OS."""
    out = []
    for rf in remote:
        try:
            out.append(replace(rf, path=safe_relpath(rf.path)))
        except UnsafePathError as err:
            raise WrongRepo(f"{repo_id} on {source.name} lists a file qwenlab will not write ({err}, so it "
                             f"could land outside the download folder); nothing was downloaded from {source.name}. "
                             "Use another source, or tell whoever runs it.") from err
    return out


def _check_repo(remote: list[RemoteFile], repo_id: str, source: Source,
                gguf_file: str | None = None) -> list[RemoteFile]:
    """The repo's wanted files with safe names, if it has what qwenlab loads: safetensors weights +
    config.json, or the catalog's GGUF file."""
    remote = _safe_names(remote, repo_id, source)
    if gguf_file:
        if not any(rf.path == gguf_file for rf in remote):
            raise WrongRepo(f"{repo_id} on {source.name} has no file {gguf_file}; the repo may have renamed it. "
                             "Download the .gguf you want by hand and load it by path: load_model('file.gguf').")
        return remote
    if not any(rf.path.endswith(".safetensors") for rf in remote):
        raise WrongRepo(
            f"{repo_id} on {source.name} has no *.safetensors weights; qwenlab only downloads safetensors "
            "(pickle .bin weights can run code when loaded). Pick a repo with safetensors weights."
        )
    if not any(rf.path == LAST_FILE for rf in remote):
        raise WrongRepo(f"{repo_id} on {source.name} has no config.json, so it is not a transformers model.")
    return remote


def download_hub(source: Source, target: Target, folder: Path, revision: str | None, progress: bool,
                  keep_free: int) -> tuple[str | None, list[FileResult], list[RemoteFile]]:
    from huggingface_hub import hf_hub_url

    repo_id = target.repo_for(source)
    commit, remote = _hub_files(source, repo_id, revision, target.wants)
    remote = _check_repo(remote, repo_id, source, target.gguf_file)

    def fetch_one(rf: RemoteFile, bar: Any) -> tuple[Path, int, int]:
        url = hf_hub_url(repo_id, rf.path, revision=commit, endpoint=source.url)
        return fetch_file(url, folder, rf, bar, source.class_code)

    results = install(folder, remote, fetch_one, f"{repo_id} ← {source.name}", progress, keep_free, repo_id)
    return commit, results, remote


def _modelscope_files(source: Source, repo_id: str, revision: str | None,
                      wants: Callable[[str], bool]) -> tuple[str, list[RemoteFile]]:
    """The repo's wanted files on ModelScope with size and SHA-256 (the client's listing), and the commit."""
    from modelscope_hub import HubApi
    from modelscope_hub.errors import NotExistError

    try:
        listing = HubApi(endpoint=source.url).legacy.list_repo_files(repo_id, "model", revision=revision or "master")
    except NotExistError as err:
        if revision and "revision" in str(err).lower():
            raise DownloadError(f"{repo_id} has no revision {revision!r} on {source.name}") from err
        raise NotFound(f"{repo_id} not found") from err
    remote = [RemoteFile(f["Path"], int(f.get("Size") or 0), f.get("Sha256") or None)
              for f in listing if f.get("Type", "blob") != "tree" and wants(f["Path"])]
    commits = {str(f["Revision"]) for f in listing if f.get("Revision")}
    return (commits.pop() if len(commits) == 1 else revision or "master"), remote


def download_modelscope(source: Source, target: Target, folder: Path, revision: str | None,
                         progress: bool, keep_free: int) -> tuple[str | None, list[FileResult], list[RemoteFile]]:
    """ModelScope through its own client at ``source.url``: one file at a time into a staging folder (the
    client resumes it and checks it against the listed size and SHA-256), then checked again and moved into
    place (config.json last)."""
    from modelscope_hub import HubApi

    repo_id = target.repo_for(source)
    commit, remote = _modelscope_files(source, repo_id, revision, target.wants)
    remote = _check_repo(remote, repo_id, source, target.gguf_file)
    staging = staging_dir(folder)
    api = HubApi(endpoint=source.url)

    def fetch_one(rf: RemoteFile, bar: Any) -> tuple[Path, int, int]:
        incomplete = staging / f"{rf.path}.incomplete"
        resumed = incomplete.stat().st_size if incomplete.is_file() else 0
        got = Path(api.download_file(repo_id, "model", rf.path, revision=revision or "master", local_dir=staging,
                                     expected_sha256=rf.sha256, file_size=rf.size))
        if not same_content(got, rf):
            got.unlink(missing_ok=True)
            raise DownloadError(f"{rf.path} from ModelScope does not match its listed size and SHA-256; only that "
                                "staged copy was deleted: run the download again.")
        bar.update(rf.size - resumed)
        return got, resumed, rf.size - resumed

    results = install(folder, remote, fetch_one, f"{repo_id} ← {source.name}", progress, keep_free, repo_id)
    return commit, results, remote
