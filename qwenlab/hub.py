"""Model sources (Hugging Face, hf-mirror, ModelScope, a classroom mirror): probing and finding local copies.

Taught in ``02_download.ipynb``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .paths import models_dir

__all__ = ["SOURCES", "probe_sources", "find_local", "folder_weights", "modelscope_cache_dir"]

# Name -> base URL. "modelscope" is not a Hub-protocol endpoint: it is served through modelscope's client.
SOURCES: dict[str, str] = {
    "huggingface": "https://huggingface.co",
    "hf-mirror": "https://hf-mirror.com",
    "modelscope": "https://www.modelscope.cn",
}


def _reachable(url: str, timeout: float) -> bool:
    import httpx

    try:
        httpx.head(url, timeout=timeout, follow_redirects=False)
        return True
    except httpx.HTTPError:
        return False


def probe_sources(timeout: float = 3.0, sources: dict[str, str] | None = None) -> dict[str, bool]:
    """Which sources answer right now, probed in parallel (total time ≈ ``timeout`` at worst)."""
    sources = sources or SOURCES
    with ThreadPoolExecutor(max_workers=len(sources)) as pool:
        futures = {name: pool.submit(_reachable, url, timeout) for name, url in sources.items()}
        return {name: f.result() for name, f in futures.items()}


def folder_weights(folder: Path) -> str | None:
    """What weights a model folder holds: "safetensors", "pickle" (``.bin``/``.pt``) or None.

    Sharded safetensors count only when every shard named in the index is present.
    """
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        return None
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        import json

        shards = set(json.loads(index.read_text())["weight_map"].values())
        return "safetensors" if all((folder / s).is_file() for s in shards) else None
    if any(folder.glob("*.safetensors")):
        return "safetensors"
    if any(folder.glob("*.bin")) or any(folder.glob("*.pt")):
        return "pickle"
    return None


def modelscope_cache_dir() -> Path:
    """ModelScope's cache root (``$MODELSCOPE_CACHE`` or ``~/.cache/modelscope/hub``)."""
    env = os.environ.get("MODELSCOPE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "modelscope" / "hub"


def _modelscope_candidates(repo_id: str) -> list[Path]:
    org, _, name = repo_id.partition("/")
    root = modelscope_cache_dir()
    names = {name, name.replace(".", "___")}
    orgs = {org, org.lower()}
    return [root / sub / o / n for sub in ("models", "") for o in orgs for n in names]


def find_local(repo_ids: list[str], modelscope_ids: list[str] | None = None) -> tuple[Path, str] | None:
    """Look for a complete copy of a model on disk, before any download.

    Order: qwenlab's own folders, the Hugging Face cache, the ModelScope cache.

    Returns:
        (folder, where) or None. ``where`` says which cache it came from.
    """
    for repo_id in repo_ids:
        folder = models_dir() / repo_id.replace("/", "--")
        if folder_weights(folder):
            return folder, "qwenlab cache"
    from huggingface_hub import try_to_load_from_cache

    for repo_id in repo_ids:
        hit = try_to_load_from_cache(repo_id, "config.json")
        if isinstance(hit, str) and folder_weights(Path(hit).parent):
            return Path(hit).parent, "Hugging Face cache"
    for repo_id in modelscope_ids or []:
        for folder in _modelscope_candidates(repo_id):
            if folder_weights(folder):
                return folder, "ModelScope cache"
    return None
