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

The modules, one job each: :mod:`~qwenlab.hub.fetching` (``fetch`` / ``download``: sources in order, the
report), :mod:`~qwenlab.hub.clients` (what each source lists and how its files are fetched),
:mod:`~qwenlab.hub.folder` (writing verified files into a folder that may be the user's),
:mod:`~qwenlab.hub.report` (the errors and the report). Every name below is importable from ``qwenlab.hub``.

Taught in ``02_download.ipynb``.
"""

from __future__ import annotations

from ..ondisk import (
    LocalModel, ModelList, delete_model, find_local, folder_weights, hf_cache_dir, list_models, modelscope_cache_dir,
)
from ..sources import SOURCES, Probe, Source, default_sources, probe, probe_sources
from .clients import NEEDED_FILES
from .fetching import DEFAULT_KEEP_FREE, download, fetch, offline_mode
from .report import (
    Attempt, DownloadError, DownloadReport, FileResult, NotEnoughDiskError, RepoNotFoundError, UserFileConflictError,
)

__all__ = [
    # downloading (qwenlab.hub.fetching, .report, .clients)
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
