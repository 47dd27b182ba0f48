"""Models on disk: whether a folder is a complete model, where a model already is, listing and deleting.

- :func:`folder_weights`: what weights a folder holds, and None when it is incomplete (a truncated
  ``.safetensors``, a missing shard, a file shorter than qwenlab's download manifest says).
- :func:`find_local`: a complete copy of a model in qwenlab's folders, the Hugging Face cache or the
  ModelScope cache, looked up before any download.
- :func:`list_models` / :func:`find_model` / :func:`delete_model`: every model on disk (with its size and
  state), the one entry a name or path means, and deleting that entry on request.

A qwenlab download keeps its state in a hidden ``.qwenlab/`` folder inside the model folder (the manifest
of verified files, the record of the files qwenlab itself put there, partial files); transformers ignores
it. ``qwenlab.hub`` writes it; this module reads it.

Taught in ``02_download.ipynb``.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from . import catalog
from .display import Table, TableView
from .files import folder_size, format_gb
from .offline import FOLDER_NAME as OFFLINE_FOLDER_NAME
from .paths import models_dir, offline_dir

__all__ = [
    "STATE_DIR",
    "manifest_path",
    "written_path",
    "partial_dir",
    "staging_dir",
    "read_manifest",
    "safetensors_complete",
    "folder_weights",
    "hf_cache_dir",
    "modelscope_cache_dir",
    "download_folder",
    "find_local",
    "LocalModel",
    "ModelList",
    "list_models",
    "find_model",
    "delete_model",
]

STATE_DIR = ".qwenlab"  # inside a model folder: manifest and partial files (ignored by transformers)


# ---- a download's state folder ------------------------------------------------------------------------


def manifest_path(folder: Path) -> Path:
    """Where a finished qwenlab download records its verified files (size, hash, mtime) and source."""
    return Path(folder) / STATE_DIR / "download.json"


def written_path(folder: Path) -> Path:
    """Where a qwenlab download records the files it put in place itself (only those may ever be replaced)."""
    return Path(folder) / STATE_DIR / "written.json"


def partial_dir(folder: Path) -> Path:
    """Where a qwenlab download keeps partial files (``<file>.part``) until they are complete and checked."""
    return Path(folder) / STATE_DIR / "partial"


def staging_dir(folder: Path) -> Path:
    """Where a ModelScope download lands before its files move into the model folder."""
    return Path(folder) / STATE_DIR / "modelscope"


def read_manifest(folder: Path) -> dict | None:
    """The download manifest of ``folder``, or None (not a qwenlab download, or one that is not finished)."""
    try:
        return json.loads(manifest_path(folder).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _manifest_sizes_ok(folder: Path) -> bool:
    """For a qwenlab download: every file listed in its manifest is on disk with the recorded size."""
    manifest = read_manifest(folder)
    if manifest is None:
        return True
    for path, meta in manifest.get("files", {}).items():
        f = folder / path
        if not f.is_file() or f.stat().st_size != meta["size"]:
            return False
    return True


# ---- is a folder a complete model? ---------------------------------------------------------------------


def safetensors_complete(path: Path) -> bool:
    """True when a ``.safetensors`` file is as long as its own header says (a truncated file is not)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return False
            n = int.from_bytes(head, "little")
            if n <= 0 or 8 + n > size:
                return False
            header = json.loads(f.read(n))
    except (OSError, ValueError):
        return False
    ends = [t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"]
    return 8 + n + max(ends, default=0) == size


def folder_weights(folder: Path) -> str | None:
    """What weights a model folder holds: "safetensors", "pickle" (``.bin``/``.pt``), "gguf" or None.

    None also when the folder is incomplete: no config.json, a shard named in the index missing, a
    truncated .safetensors file (shorter than its header says), or a file smaller than qwenlab's
    download manifest recorded. "gguf" is a folder with no config.json but a ``.gguf`` file (a GGUF repo:
    the file carries config and tokenizer; qwenlab puts it in place only once it is complete).

    Taught in ``02_download.ipynb``.
    """
    folder = Path(folder)
    if not _manifest_sizes_ok(folder):
        return None
    if not (folder / "config.json").is_file():
        return "gguf" if any(folder.glob("*.gguf")) else None
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text())["weight_map"].values())
        except (OSError, ValueError, KeyError):
            return None
        ok = all((folder / s).is_file() and safetensors_complete(folder / s) for s in shards)
        return "safetensors" if ok else None
    tensors = list(folder.glob("*.safetensors"))
    if tensors:
        return "safetensors" if all(safetensors_complete(t) for t in tensors) else None
    if any(folder.glob("*.bin")) or any(folder.glob("*.pt")):
        return "pickle"
    return None


def _complete(folder: Path, gguf_file: str | None) -> bool:
    if gguf_file:
        return (folder / gguf_file).is_file() and folder_weights(folder) == "gguf"
    return folder_weights(folder) in ("safetensors", "pickle")


# ---- where models are ------------------------------------------------------------------------------------


def hf_cache_dir() -> Path:
    """The Hugging Face cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``).

    Read now, not at import (``huggingface_hub`` reads these variables once, when it is imported).
    """
    env = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if env:
        return Path(env).expanduser()
    home = os.environ.get("HF_HOME")
    if home:
        return Path(home).expanduser() / "hub"
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "huggingface" / "hub"


def modelscope_cache_dir() -> Path:
    """ModelScope's cache root: ``$MODELSCOPE_CACHE``, else ``~/.cache/modelscope`` (modelscope >= 1.38).

    Its models are in ``models/<owner>--<name>/snapshots/<revision>/``; older clients wrote
    ``<root>/[models/]<owner>/<name>/`` under ``~/.cache/modelscope/hub`` (both are still found).
    """
    env = os.environ.get("MODELSCOPE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "modelscope"


def _modelscope_roots() -> list[Path]:
    """The ModelScope cache roots to look in: today's, and (with no ``$MODELSCOPE_CACHE``) the old default."""
    roots = [modelscope_cache_dir()]
    if not os.environ.get("MODELSCOPE_CACHE"):
        roots.append(roots[0] / "hub")  # modelscope < 1.38
    return roots


def _subdirs(folder: Path) -> list[Path]:
    """Sub-folders of ``folder`` in name order, hidden ones (``.lock``, ``._____temp``) left out."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def download_folder(repo_id: str) -> Path:
    """qwenlab's own folder for a repo: ``models_dir() / "<org>--<name>"`` (where ``qwenlab.download`` writes)."""
    return models_dir() / repo_id.replace("/", "--")


def _modelscope_candidates(repo_id: str) -> list[Path]:
    """Where a ModelScope repo may be: its snapshots (newest first), then the old ``<owner>/<name>`` folders."""
    org, _, name = repo_id.partition("/")
    names = {name, name.replace(".", "___")}
    orgs = {org, org.lower()}
    out: list[Path] = []
    for root in _modelscope_roots():
        snapshots = _subdirs(root / "models" / f"{org}--{name}" / "snapshots")
        out += sorted(snapshots, key=lambda p: p.stat().st_mtime, reverse=True)
        out += [root / sub / o / n for sub in ("models", "") for o in orgs for n in names]
    return out


def find_local(repo_ids: list[str], modelscope_ids: list[str] | None = None,
               gguf_file: str | None = None) -> tuple[Path, str] | None:
    """Look for a complete copy of a model on disk, before any download.

    Order: qwenlab's own folders, the Hugging Face cache, the ModelScope cache. With ``gguf_file`` (a
    GGUF repo of the catalog) the folder must hold that file.

    Returns:
        (folder, where) or None. ``where`` says which cache it came from.

    Taught in ``02_download.ipynb``.
    """
    for repo_id in repo_ids:
        folder = download_folder(repo_id)
        if _complete(folder, gguf_file):
            return folder, "qwenlab cache"
    from huggingface_hub import try_to_load_from_cache

    for repo_id in repo_ids:
        hit = try_to_load_from_cache(repo_id, gguf_file or "config.json", cache_dir=hf_cache_dir())
        if isinstance(hit, str) and _complete(Path(hit).parent, gguf_file):
            return Path(hit).parent, "Hugging Face cache"
    for repo_id in modelscope_ids or []:
        for folder in _modelscope_candidates(repo_id):
            if _complete(folder, gguf_file):
                return folder, "ModelScope cache"
    return None


# ---- what is on disk ----------------------------------------------------------------------------------


@dataclass
class LocalModel:
    """One model on disk: where it is, how big, and whether it is complete."""

    name: str
    repo_id: str
    where: str  # "qwenlab", "Hugging Face cache", "ModelScope cache", "offline model"
    path: Path
    size_bytes: int
    complete: bool
    detail: str = ""
    revision: str | None = None


class ModelList(TableView, list):
    """A list of :class:`LocalModel` that shows as a table (HTML in Jupyter, text in a terminal)."""

    def rows(self) -> list[tuple[str, str, str, str, str]]:
        return [(m.name, m.where, format_gb(m.size_bytes),
                 "complete" if m.complete else f"PARTIAL {m.detail}".strip(), str(m.path)) for m in self]

    def table(self) -> Table:
        if not self:
            return Table([], [], title="no models on disk")
        return Table(["模型 (model)", "位置 (where)", "大小 (size)", "状态 (state)", "路径 (path)"], self.rows(),
                     align_right=[2])


def _state(folder: Path) -> tuple[bool, str]:
    if folder_weights(folder):
        return True, ""
    partial = partial_dir(folder)
    if partial.is_dir() and any(partial.rglob("*.part")):
        return False, "(interrupted download: run it again to resume)"
    if staging_dir(folder).is_dir():
        return False, "(interrupted ModelScope download)"
    return False, "(no config.json or weights incomplete)"


def _name_for(repo_id: str) -> str:
    info = catalog.find(repo_id)
    return info.name if info else repo_id


def _qwenlab_models() -> list[LocalModel]:
    out = []
    root = models_dir()
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if folder.is_dir() and not folder.name.startswith("."):
            repo_id = folder.name.replace("--", "/", 1)
            complete, detail = _state(folder)
            out.append(LocalModel(_name_for(repo_id), repo_id, "qwenlab", folder, folder_size(folder),
                                  complete, detail))
    return out


def _offline_models() -> list[LocalModel]:
    folder = offline_dir() / OFFLINE_FOLDER_NAME
    if not folder.is_dir():
        return []
    complete, detail = _state(folder)
    return [LocalModel("offline", f"qwenlab/{OFFLINE_FOLDER_NAME}", "offline model", folder, folder_size(folder),
                       complete, detail)]


def _hf_cache_models() -> list[LocalModel]:
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(hf_cache_dir())
    except (CacheNotFound, OSError, ValueError):
        return []
    out = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        for rev in repo.revisions:
            complete, detail = _state(Path(rev.snapshot_path))
            out.append(LocalModel(_name_for(repo.repo_id), repo.repo_id, "Hugging Face cache",
                                  Path(rev.snapshot_path), rev.size_on_disk, complete, detail, rev.commit_hash))
    return out


def _modelscope_folders() -> list[tuple[str, Path, str | None]]:
    """(ModelScope repo id, folder, revision) of every model-looking folder in the ModelScope caches:
    ``models/<owner>--<name>/snapshots/<revision>/`` (modelscope >= 1.38) and the old ``[models/]<owner>/<name>/``."""
    found: list[tuple[str, Path, str | None]] = []
    for root in _modelscope_roots():
        for repo in _subdirs(root / "models"):
            if "--" in repo.name and (repo / "snapshots").is_dir():
                ms_id = repo.name.replace("--", "/", 1)
                found += [(ms_id, snap, snap.name) for snap in _subdirs(repo / "snapshots")]
        for base in (root / "models", root):
            for org in _subdirs(base):
                if org.name in ("models", "datasets", "hub") or "--" in org.name:
                    continue
                found += [(f"{org.name}/{f.name.replace('___', '.')}", f, None) for f in _subdirs(org)]
    return [(ms_id, folder, rev) for ms_id, folder, rev in found
            if (folder / "config.json").exists() or any(folder.glob("*.safetensors")) or any(folder.glob("*.gguf"))]


def _modelscope_models() -> list[LocalModel]:
    out = []
    for ms_id, folder, revision in _modelscope_folders():
        info = catalog.find(ms_id)
        complete, detail = _state(folder)
        out.append(LocalModel(info.name if info else ms_id, info.hf_id if info else ms_id, "ModelScope cache",
                              folder, folder_size(folder), complete, detail, revision))
    return out


def list_models() -> ModelList:
    """Every model on disk: qwenlab's folders, the offline model, the Hugging Face and ModelScope caches.

    Each entry says whether it is complete (loadable) or partial (an interrupted download).

    Taught in ``02_download.ipynb``.
    """
    return ModelList(_qwenlab_models() + _offline_models() + _hf_cache_models() + _modelscope_models())


def _matches(m: LocalModel, key: str) -> bool:
    k = key.strip().lower()
    if k in (m.name.lower(), m.repo_id.lower()):
        return True
    try:
        return Path(key).expanduser().resolve() == m.path.resolve()
    except OSError:
        return False


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def find_model(name_or_path: str, where: str | None = None) -> LocalModel:
    """The ONE model listed by :func:`list_models` that a name, repo id or path means (what
    :func:`delete_model` would delete).

    Raises:
        ValueError: an empty name, or a name that matches several copies (pass ``where=`` or the path).
        FileNotFoundError: no listed model has that name or path.

    Taught in ``02_download.ipynb``.
    """
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise ValueError(f"No model named {name_or_path!r}: give a model name, repo id or path "
                         "(see `qwenlab models`); nothing was deleted.")
    found = [m for m in list_models() if _matches(m, name_or_path) and (where is None or m.where == where)]
    if not found:
        raise FileNotFoundError(
            f"No model {name_or_path!r} on disk{f' in {where}' if where else ''}; nothing was deleted. "
            "See qwenlab.list_models() (or `qwenlab models`) for names and paths."
        )
    if len(found) > 1:
        places = "; ".join(f"{m.where}: {m.path}" for m in found)
        raise ValueError(
            f"{name_or_path!r} matches {len(found)} models ({places}); nothing was deleted. "
            "Pass the path, or where='qwenlab' / 'Hugging Face cache' / 'ModelScope cache'."
        )
    return found[0]


def delete_model(name_or_path: str, where: str | None = None) -> LocalModel:
    """Delete ONE model listed by :func:`list_models` (by name, repo id or path) and return what was deleted.

    Refuses anything that is not such an entry (an empty name included), and asks for ``where=`` (or the
    path) when the name matches several copies (e.g. the same model in the Hugging Face cache and in
    qwenlab's folder). See :func:`find_model` for the errors.

    Taught in ``02_download.ipynb``.
    """
    model = find_model(name_or_path, where)
    if model.where == "Hugging Face cache":
        from huggingface_hub import scan_cache_dir

        scan_cache_dir(hf_cache_dir()).delete_revisions(str(model.revision)).execute()
        return model
    roots = {"qwenlab": models_dir(), "ModelScope cache": modelscope_cache_dir(), "offline model": offline_dir()}
    root = roots[model.where]
    if not _inside(model.path, root) or model.path.resolve() == root.resolve():
        raise ValueError(f"Refusing to delete {model.path}: it is not inside {root}.")
    shutil.rmtree(model.path)
    snapshots = model.path.parent
    if snapshots.name == "snapshots" and not any(snapshots.iterdir()):  # ModelScope's last revision: its repo folder
        shutil.rmtree(snapshots.parent)
    return model
