"""What the classroom mirror serves: which model folders (named by the teacher, or every complete one on disk),
which files inside them, and each file's hashes as the Hub protocol reports them.

- :func:`served_models`: repo id -> folder for ``--model NAME|FOLDER|REPO=PATH`` and ``--all-models``;
- :func:`model_folder_kind`: whether a folder is a model folder at all (``config.json`` + complete
  ``*.safetensors``, or ``*.gguf`` files), else :class:`NotServableError` with the reason;
- :class:`ServedRepo`: one folder as a Hub repo (its files, a commit id from their hashes, the JSON of the
  ``/api/models`` routes); :class:`HashCache` hashes each file once.

Taught in ``02_download.ipynb``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import catalog
from ..files import UnsafePathError, git_blob_sha1, git_blob_sha1_of, safe_relpath, sha256_file, write_text_atomic
from ..offline import check_folder as check_offline_folder
from ..ondisk import find_local, folder_weights, list_models
from ..paths import qwenlab_home

__all__ = ["OFFLINE_REPO_ID", "NotServableError", "model_folder_kind", "ServedFile", "HashCache", "ServedRepo",
           "served_models"]

OFFLINE_REPO_ID = "qwenlab/Qwen2.5-Coder-0.5B-Instruct"  # how the offline model is named on a mirror
_LFS_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".model", ".msgpack", ".h5", ".onnx")
_LFS_MIN_SIZE = 10 * 2**20  # the Hub stores files of 10 MiB and more in LFS
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX40 = re.compile(r"[0-9a-f]{40}")


# ---- what may be served -----------------------------------------------------------------------------


class NotServableError(ValueError):
    """A name or folder the mirror will not serve (not a model folder, not on disk); the message says why."""


_KIND_HELP = "a model folder holds config.json and complete *.safetensors weights, or *.gguf files"


def model_folder_kind(folder: str | os.PathLike) -> str:
    """``"safetensors"`` or ``"gguf"`` when ``folder`` is a model folder the mirror serves, else raise.

    Raises:
        NotServableError: not a folder, no model in it (``/etc``, a home folder), an incomplete download, or
            pickle-only weights; the one-line message says which.

    Taught in ``02_download.ipynb``.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise NotServableError(f"{folder} is not a folder; give a model name (see `qwenlab models`) or a model "
                               f"folder ({_KIND_HELP}).")
    kind = folder_weights(folder)
    if kind == "pickle":
        raise NotServableError(f"{folder} holds only pickle weights (.bin/.pt); the mirror serves only "
                               "safetensors or GGUF models.")
    if kind is None:
        raise NotServableError(f"{folder} is not a model folder, so the mirror will not serve it ({_KIND_HELP}; "
                               "an interrupted download is not complete).")
    return kind


_GGUF_EXTRAS = ("README.md", "LICENSE", "LICENSE.txt")  # served beside the .gguf files of a GGUF folder
_SKIPPED_SUFFIXES = (".part", ".lock", ".incomplete", ".tmp")


def _allowed_roots(root: Path) -> list[Path]:
    """Where a served file may really live: the folder, and for a Hugging Face cache snapshot
    (``models--org--name/snapshots/<rev>``, whose files are links) the repo's ``blobs`` folder."""
    roots = [root]
    if root.parent.name == "snapshots" and root.parent.parent.name.startswith("models--"):
        roots.append(root.parent.parent / "blobs")
    return roots


def _inside_any(path: Path, roots: list[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)


def _model_files(root: Path, kind: str) -> Iterable[tuple[str, Path]]:
    """(repo path, real path) of each file the mirror serves from a model folder (``root`` is resolved)."""
    roots = _allowed_roots(root)
    for dirpath, dirnames, filenames in os.walk(root):  # does not descend into linked folders
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if kind == "gguf" and Path(dirpath) != root:
            continue
        for name in sorted(filenames):
            if name.startswith(".") or name.endswith(_SKIPPED_SUFFIXES):
                continue
            if kind == "gguf" and not (name.endswith(".gguf") or name in _GGUF_EXTRAS):
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            real = path.resolve()
            try:
                safe = safe_relpath(rel) == rel
            except UnsafePathError:
                safe = False
            if safe and real.is_file() and _inside_any(real, roots):
                yield rel, real


# ---- what is served ---------------------------------------------------------------------------------


@dataclass
class ServedFile:
    """One file of a served repo, with the hashes the Hub protocol reports."""

    path: str
    abspath: Path
    size: int
    sha256: str | None  # large (LFS) files
    blob_id: str  # git blob sha1 (of the file, or of its LFS pointer)

    @property
    def etag(self) -> str:
        return self.sha256 or self.blob_id

    def pointer(self) -> str:
        return f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {self.size}\n"


class HashCache:
    """Hashes of served files, kept on disk and keyed by (path, size, mtime), so each file is hashed once.

    Args:
        path: the JSON file the hashes are kept in (default ``$QWENLAB_HOME/mirror/hashes.json``).
    """

    def __init__(self, path: Path | None = None):
        self.path = path or qwenlab_home() / "mirror" / "hashes.json"
        try:
            self.data: dict = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.data = {}
        self.dirty = False

    def get(self, real: Path, kind: str) -> str:
        """The ``"sha256"`` or git blob ``"sha1"`` of a file, computed only when the file changed."""
        st = real.stat()
        key = f"{real}|{st.st_size}|{st.st_mtime_ns}|{kind}"
        if key not in self.data:
            self.data[key] = sha256_file(real) if kind == "sha256" else git_blob_sha1(real)
            self.dirty = True
        return self.data[key]

    def save(self) -> None:
        """Write the hashes to disk (atomically) when new ones were computed."""
        if self.dirty:
            write_text_atomic(self.path, json.dumps(self.data))
            self.dirty = False


def _served_file(rel: str, real: Path, cache: HashCache) -> ServedFile:
    size = real.stat().st_size
    # The Hugging Face cache names its blobs by hash: sha256 for LFS files, git sha1 for small ones.
    if _HEX64.fullmatch(real.name):
        sha256: str | None = real.name
    elif _HEX40.fullmatch(real.name):
        return ServedFile(rel, real, size, None, real.name)
    elif rel.endswith(_LFS_SUFFIXES) or size >= _LFS_MIN_SIZE:
        sha256 = cache.get(real, "sha256")
    else:
        return ServedFile(rel, real, size, None, cache.get(real, "sha1"))
    f = ServedFile(rel, real, size, sha256, "")
    f.blob_id = git_blob_sha1_of(f.pointer().encode())
    return f


@dataclass
class ServedRepo:
    """A local model folder served as a Hub repo: its files, and a commit id derived from their hashes."""

    repo_id: str
    folder: Path
    files: dict[str, ServedFile]
    commit: str
    last_modified: str

    @classmethod
    def from_folder(cls, repo_id: str, folder: str | os.PathLike, cache: HashCache | None = None) -> ServedRepo:
        """Serve a model folder as ``repo_id`` (see :func:`model_folder_kind` for what counts as one).

        Raises:
            NotServableError: ``folder`` is not a model folder.
        """
        folder = Path(folder).expanduser()
        kind = model_folder_kind(folder)
        cache = cache or HashCache()
        files = {rel: _served_file(rel, real, cache) for rel, real in _model_files(folder.resolve(), kind)}
        cache.save()
        digest = hashlib.sha1("".join(f"{p}\0{f.etag}\n" for p, f in files.items()).encode()).hexdigest()
        mtime = max((f.abspath.stat().st_mtime for f in files.values()), default=time.time())
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(mtime))
        return cls(repo_id, folder, files, digest, stamp)

    def info(self, blobs: bool) -> dict:
        siblings = []
        for f in self.files.values():
            s: dict[str, Any] = {"rfilename": f.path}
            if blobs:
                s.update(size=f.size, blobId=f.blob_id)
                if f.sha256:
                    s["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": len(f.pointer())}
            siblings.append(s)
        org = self.repo_id.split("/")[0]
        return {
            "_id": self.commit[:24], "id": self.repo_id, "modelId": self.repo_id, "author": org,
            "sha": self.commit, "lastModified": self.last_modified, "createdAt": self.last_modified,
            "private": False, "gated": False, "disabled": False, "downloads": 0, "likes": 0,
            "tags": ["qwenlab-mirror"], "library_name": "transformers", "siblings": siblings,
        }

    def tree(self, sub: str, recursive: bool) -> list[dict] | None:
        prefix = sub.strip("/") + "/" if sub.strip("/") else ""
        entries: dict[str, dict] = {}
        for f in self.files.values():
            if not f.path.startswith(prefix):
                continue
            rest = f.path[len(prefix):]
            if "/" in rest and not recursive:
                d = prefix + rest.split("/")[0]
                entries[d] = {"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d}
                continue
            e: dict[str, Any] = {"type": "file", "oid": f.blob_id, "size": f.size, "path": f.path}
            if f.sha256:
                e["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": len(f.pointer())}
            entries[f.path] = e
        if prefix and not entries:
            return None
        return list(entries.values())




# ---- what the teacher names -------------------------------------------------------------------------


def _local_repo_id(folder: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", folder.resolve().name).strip("-.") or "model"
    return f"local/{name}"


def _find_model(name: str) -> tuple[str, Path] | None:
    """(repo id, folder) of a model name found complete on disk (qwenlab's folders, the HF and ModelScope caches)."""
    info = catalog.find(name)
    if name == OFFLINE_REPO_ID or (info is not None and info.name == catalog.OFFLINE_MODEL):
        check = check_offline_folder()
        return (OFFLINE_REPO_ID, check.folder) if check.ready else None
    if info is not None and info.built_locally:
        return None  # the mini thinker: the offline model + files shipped with qwenlab, no folder of its own
    if info is not None:
        hit = find_local([info.hf_id], [info.modelscope_id], info.gguf_file)
        return (info.hf_id, hit[0]) if hit else None
    if catalog.is_repo_id(name):
        hit = find_local([name], [name])
        return (name, hit[0]) if hit else None
    return None


def _named(item: str) -> tuple[str, Path]:
    """What one ``--model`` item names: ``REPO_ID=PATH``, a model name on disk, or a model folder."""
    repo_id, sep, path = item.partition("=")
    if sep:
        if not catalog.is_repo_id(repo_id):
            raise NotServableError(f"{repo_id!r} is not a repo id like 'org/name'; write REPO_ID=PATH.")
        folder = Path(path).expanduser()
        model_folder_kind(folder)
        return repo_id, folder
    hit = _find_model(item)
    if hit:
        return hit
    folder = Path(item).expanduser()
    if folder.exists():
        model_folder_kind(folder)
        return _local_repo_id(folder), folder
    info = catalog.find(item)
    if item == OFFLINE_REPO_ID or (info is not None and info.name == catalog.OFFLINE_MODEL):
        raise NotServableError("the offline model is not built (or not ready) here; run `qwenlab offline-model`.")
    if info is not None and info.built_locally:
        raise NotServableError(f"{info.name} is not a folder to serve: each laptop builds it from the offline model "
                               "and files that ship with qwenlab; serve 'offline' instead.")
    raise NotServableError(f"{item!r} is neither a complete model on this machine nor a folder; see `qwenlab "
                           f"models`, download it first (qwenlab download {item}), or give REPO_ID=PATH.")


def served_models(models: Iterable[str] | None = None, all_models: bool = False) -> dict[str, Path]:
    """Repo id -> folder for what the mirror should serve: only what is named, unless ``all_models``.

    Args:
        models: model names found on disk (``"Qwen/Qwen3-0.6B"``, ``"offline"`` as :data:`OFFLINE_REPO_ID`),
            model folders, or ``REPO_ID=PATH``.
        all_models: also every complete safetensors/GGUF model on disk (``qwenlab.list_models()``: qwenlab's
            folders, the offline model, the Hugging Face and ModelScope caches).

    Raises:
        NotServableError: nothing named and ``all_models`` False; a name not on disk; a folder that is not a
            model folder (see :func:`model_folder_kind`).
    """
    items = list(models or [])
    if not items and not all_models:
        raise NotServableError("name the models to serve (model names or model folders), or ask for every "
                               "model on disk (all_models=True; on the command line --all-models).")
    out: dict[str, Path] = {}
    if all_models:
        for m in list_models():
            if m.repo_id == OFFLINE_REPO_ID and not check_offline_folder(m.path).ready:
                continue  # its files no longer match their manifest (see qwenlab.offline.check_folder)
            if m.complete and m.repo_id not in out and folder_weights(m.path) in ("safetensors", "gguf"):
                out[m.repo_id] = m.path
    for item in items:
        repo_id, folder = _named(item)
        out[repo_id] = folder
    return out

