"""Classroom mirror: one machine serves the models it already has to the class over the Hugging Face Hub protocol.

The teacher runs ``qwenlab mirror --host 0.0.0.0``; students set ``HF_ENDPOINT=http://<teacher>:8090`` (or
``qwenlab download MODEL --source http://<teacher>:8090``) and the stock ``huggingface_hub`` client works
unchanged: 40 students download over the room's Wi-Fi instead of 40 × 1.5 GB from abroad.

The server answers the endpoints ``huggingface_hub`` uses to download:

- ``GET /api/models/{repo}`` and ``/api/models/{repo}/revision/{rev}`` (repo info, ``?blobs=true`` for sizes/hashes)
- ``GET /api/models/{repo}/tree/{rev}[/{path}]`` (file listing, used by ``snapshot_download`` / ``hf download``)
- ``HEAD`` / ``GET /{repo}/resolve/{rev}/{file}`` with ``ETag`` (sha256 for large files, git blob sha1 for
  small ones), ``X-Repo-Commit``, ``Content-Length`` and ``Range`` requests (206), so downloads resume.

Why not olah (the existing mirror on PyPI, tried first, 0.5.4): it serves local models only as git repos with
LFS objects, and in that mode it reads the whole file into memory for every request (1.3 GB RSS per
download of a 0.5B model), re-hashes the whole file on every ``HEAD`` (~10 s on our test machine for
1.26 GB), and ignores ``Range`` (answers 200 with the full file), so an interrupted download can never resume.
This server streams files with ``sendfile``, hashes each file once (cached), and honours ``Range``.

Taught in ``02_download.ipynb``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs, unquote, urlsplit

from .paths import qwenlab_home

__all__ = ["OFFLINE_REPO_ID", "DEFAULT_PORT", "ServedFile", "ServedRepo", "LogEntry", "MirrorServer",
           "served_models", "start", "cli"]

OFFLINE_REPO_ID = "qwenlab/Qwen2.5-Coder-0.5B-Instruct"  # how the offline model is named on a mirror
DEFAULT_PORT = 8090
_LFS_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".model", ".msgpack", ".h5", ".onnx")
_LFS_MIN_SIZE = 10 * 2**20  # the Hub stores files of 10 MiB and more in LFS
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX40 = re.compile(r"[0-9a-f]{40}")


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


class _HashCache:
    """Hashes of served files, kept on disk and keyed by (path, size, mtime), so each file is hashed once."""

    def __init__(self, path: Path | None = None):
        self.path = path or qwenlab_home() / "mirror" / "hashes.json"
        try:
            self.data: dict = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.data = {}
        self.dirty = False

    def get(self, real: Path, kind: str) -> str:
        st = real.stat()
        key = f"{real}|{st.st_size}|{st.st_mtime_ns}|{kind}"
        if key not in self.data:
            self.data[key] = _sha256(real) if kind == "sha256" else _git_sha1(real)
            self.dirty = True
        return self.data[key]

    def save(self) -> None:
        if self.dirty:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.data))
            os.replace(tmp, self.path)
            self.dirty = False


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(8 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _git_sha1(path: Path) -> str:
    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _served_file(folder: Path, path: Path, cache: _HashCache) -> ServedFile:
    real = path.resolve()
    size = real.stat().st_size
    rel = path.relative_to(folder).as_posix()
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
    pointer = f.pointer().encode()
    f.blob_id = hashlib.sha1(b"blob %d\0" % len(pointer) + pointer).hexdigest()
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
    def from_folder(cls, repo_id: str, folder: str | os.PathLike, cache: _HashCache | None = None) -> "ServedRepo":
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is not a folder; give the model folder that holds config.json.")
        cache = cache or _HashCache()
        files = {}
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder)
            if any(p.startswith(".") for p in rel.parts) or not path.is_file() or path.suffix in (".part", ".lock"):
                continue
            f = _served_file(folder, path, cache)
            files[f.path] = f
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


# ---- the server -------------------------------------------------------------------------------------


@dataclass
class LogEntry:
    """One request the mirror answered (what a teacher watches, and what tests assert on)."""

    time: float
    client: str
    method: str
    path: str
    status: int
    range_start: int | None = None
    range_end: int | None = None
    bytes_sent: int = 0
    dropped: bool = False


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """``Range: bytes=a-b`` -> (start, end inclusive); None without a header; "bad" when unsatisfiable."""
    if not header:
        return None
    m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if not m or (not m.group(1) and not m.group(2)):
        return "bad"
    if not m.group(1):  # suffix range: the last N bytes
        n = int(m.group(2))
        return (max(size - n, 0), size - 1) if n else "bad"
    start = int(m.group(1))
    end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
    return (start, end) if start < size and start <= end else "bad"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "qwenlab-mirror"
    timeout = 60  # idle keep-alive connections end after this
    server: "_Server"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence the default stderr log
        pass

    def setup(self) -> None:
        super().setup()
        self.server.mirror._connections.add(self.connection)

    def finish(self) -> None:
        self.server.mirror._connections.discard(self.connection)
        super().finish()

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)

    # -- routing
    def _route(self, head: bool) -> None:
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/") if p]
        query = parse_qs(url.query)
        if not parts:
            return self._index(head)
        if parts[:2] == ["api", "models"]:
            return self._api(parts[2:], query, head)
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._resolve(f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]), head)
        return self._error(404, "EntryNotFound", f"{url.path} is not served by this mirror", head)

    def _api(self, parts: list[str], query: dict, head: bool) -> None:
        if not parts:
            return self._json([{"id": r.repo_id, "modelId": r.repo_id, "sha": r.commit}
                               for r in self.server.mirror.repos.values()], head)
        repo = self._repo("/".join(parts[:2]), head)
        if repo is None:
            return None
        rest = parts[2:]
        blobs = query.get("blobs", ["false"])[0].lower() == "true"
        if not rest:
            return self._json(repo.info(blobs), head)
        if (rest[0] == "revision" and len(rest) == 2) or (rest[0] == "tree" and len(rest) >= 2):
            if not self._revision_ok(repo, rest[1], head):
                return None  # already answered 404 RevisionNotFound
            if rest[0] == "revision":
                return self._json(repo.info(blobs), head)
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            entries = repo.tree("/".join(rest[2:]), recursive)
            if entries is None:
                return self._error(404, "EntryNotFound", "no such folder", head, repo)
            return self._json(entries, head)
        return self._error(404, "EntryNotFound", "unsupported API path", head, repo)

    def _repo(self, repo_id: str, head: bool) -> ServedRepo | None:
        repo = self.server.mirror.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", f"Repository {repo_id} is not served by this mirror", head)
        return repo

    def _revision_ok(self, repo: ServedRepo, rev: str, head: bool) -> bool:
        if rev in ("main", repo.commit):
            return True
        self._error(404, "RevisionNotFound", f"Revision {rev} not found (this mirror serves 'main')", head, repo)
        return False

    # -- responses
    def _send(self, status: int, headers: dict[str, str], body: bytes, head: bool) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)
        self._log(status, sent=0 if head else len(body))

    def _json(self, data: Any, head: bool) -> None:
        self._send(200, {"Content-Type": "application/json"}, json.dumps(data).encode(), head)

    def _error(self, status: int, code: str, message: str, head: bool, repo: ServedRepo | None = None) -> None:
        headers = {"Content-Type": "application/json", "X-Error-Code": code, "X-Error-Message": message}
        if repo is not None:
            headers["X-Repo-Commit"] = repo.commit
        self._send(status, headers, json.dumps({"error": message}).encode(), head)

    def _index(self, head: bool) -> None:
        mirror = self.server.mirror
        lines = [f"qwenlab classroom mirror — {len(mirror.repos)} model(s)", ""]
        lines += [f"  {r.repo_id}" for r in mirror.repos.values()]
        lines += ["", f"  qwenlab download MODEL --source {mirror.url}",
                  f"  HF_ENDPOINT={mirror.url} HF_HUB_DISABLE_XET=1 hf download MODEL"]
        self._send(200, {"Content-Type": "text/plain; charset=utf-8"}, "\n".join(lines).encode(), head)

    def _resolve(self, repo_id: str, rev: str, path: str, head: bool) -> None:
        repo = self._repo(repo_id, head)
        if repo is None or not self._revision_ok(repo, rev, head):
            return
        f = repo.files.get(path)
        if f is None:
            return self._error(404, "EntryNotFound", f"{path} is not in {repo_id}", head, repo)
        rng = _parse_range(self.headers.get("Range"), f.size)
        headers = {"Content-Type": "application/octet-stream", "ETag": f'"{f.etag}"', "Accept-Ranges": "bytes",
                   "X-Repo-Commit": repo.commit}
        if rng == "bad":
            headers["Content-Range"] = f"bytes */{f.size}"
            return self._send(416, headers, b"", head)
        start, end = rng if isinstance(rng, tuple) else (0, f.size - 1)
        length = max(end - start + 1, 0)
        self.send_response(206 if isinstance(rng, tuple) else 200)
        for k, v in headers.items():
            self.send_header(k, v)
        if isinstance(rng, tuple):
            self.send_header("Content-Range", f"bytes {start}-{end}/{f.size}")
        self.send_header("Content-Length", str(length))
        self.end_headers()
        status = 206 if isinstance(rng, tuple) else 200
        if head:
            return self._log(status, start if rng else None, end if rng else None)
        self._send_file(f, start, length, status, rng)

    def _send_file(self, f: ServedFile, start: int, length: int, status: int, rng: Any) -> None:
        limit = self.server.mirror.drop_after
        count = min(length, limit) if limit else length
        sent = 0
        try:
            with open(f.abspath, "rb") as fh:
                while sent < count:  # in slices, so the log knows how far a cut-off client got
                    n = self.connection.sendfile(fh, start + sent, min(16 << 20, count - sent))
                    if n == 0:
                        break
                    sent += n
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        dropped = count < length
        if dropped:  # simulate a Wi-Fi drop: the client gets fewer bytes than Content-Length promised
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._log(status, start if rng else None, start + length - 1 if rng else None, sent, dropped)

    def _log(self, status: int, start: int | None = None, end: int | None = None, sent: int = 0,
             dropped: bool = False) -> None:
        entry = LogEntry(time.time(), self.client_address[0], self.command, urlsplit(self.path).path, status,
                         start, end, sent, dropped)
        self.server.mirror._record(entry)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    mirror: "MirrorServer"


class MirrorServer:
    """A running (or ready) Hub-protocol server for local model folders.

    Args:
        repos: repo id -> model folder (e.g. ``{"Qwen/Qwen3-0.6B": "~/.cache/qwenlab/models/Qwen--Qwen3-0.6B"}``).
        host: ``127.0.0.1`` (default: this machine only) or ``0.0.0.0`` to serve the classroom.
        port: TCP port; 0 picks a free one.
        drop_after: for demos and tests of resuming: cut every file response after this many bytes
            (the client sees a dropped connection, as on a bad Wi-Fi).
        on_request: called with each :class:`LogEntry` (the CLI prints them).

    Use as a context manager, or call :meth:`start` / :meth:`stop`. Taught in ``02_download.ipynb``.
    """

    handler_class: type = _Handler  # the request handler (a subclass can add behaviour)

    def __init__(self, repos: dict[str, str | os.PathLike], host: str = "127.0.0.1", port: int = 0,
                 drop_after: int | None = None, on_request: Callable[[LogEntry], None] | None = None):
        cache = _HashCache()
        self.repos: dict[str, ServedRepo] = {rid: ServedRepo.from_folder(rid, folder, cache)
                                             for rid, folder in repos.items()}
        self.host = host
        self.drop_after = drop_after
        self.on_request = on_request
        self._log: deque[LogEntry] = deque(maxlen=10_000)
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()  # open client connections (closed by stop())
        self._server = _Server((host, port), self.handler_class)
        self._server.mirror = self
        self.port = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The URL students use (the machine's LAN address when serving on 0.0.0.0)."""
        host = _lan_ip() if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def log(self) -> list[LogEntry]:
        with self._lock:
            return list(self._log)

    def _record(self, entry: LogEntry) -> None:
        with self._lock:
            self._log.append(entry)
        if self.on_request:
            self.on_request(entry)

    def requests(self, contains: str = "", method: str | None = None) -> list[LogEntry]:
        """Logged requests whose path contains ``contains`` (and of ``method``, when given)."""
        return [e for e in self.log if contains in e.path and (method is None or e.method == method)]

    def start(self) -> "MirrorServer":
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, name="qwenlab-mirror", daemon=True)
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until Ctrl+C (what ``qwenlab mirror`` does)."""
        try:
            self._server.serve_forever()
        finally:
            self._server.server_close()

    def stop(self) -> None:
        """Stop serving, close open client connections (keep-alive ones too) and free the port."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()
        for conn in list(self._connections):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> "MirrorServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"MirrorServer({self.url}, repos={list(self.repos)})"

    def _repr_html_(self) -> str:
        import html

        rows = "".join(f"<tr><td>{html.escape(r.repo_id)}</td><td>{len(r.files)}</td>"
                       f"<td>{sum(f.size for f in r.files.values()) / 1e9:.2f} GB</td>"
                       f"<td>{html.escape(str(r.folder))}</td></tr>" for r in self.repos.values())
        return (f"<b>qwenlab mirror</b> at <code>{html.escape(self.url)}</code>"
                "<table><tr><th>repo</th><th>files</th><th>size</th><th>folder</th></tr>" + rows + "</table>")


def _lan_ip() -> str:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))  # no packet is sent; this only picks the outgoing interface
            return s.getsockname()[0]
    except OSError:
        return socket.gethostname()


def served_models(models: Iterable[str] | None = None) -> dict[str, Path]:
    """Repo id -> folder for what the mirror should serve.

    Args:
        models: None = every complete model on disk (see ``qwenlab.list_models()``), the offline model
            as :data:`OFFLINE_REPO_ID`. Otherwise names from that list, folder paths, or ``REPO_ID=PATH``.
    """
    from .hub import list_models

    on_disk = [m for m in list_models() if m.complete]
    if models is None:
        out: dict[str, Path] = {}
        for m in on_disk:
            out.setdefault(m.repo_id, m.path)
        return out
    out = {}
    for item in models:
        repo_id, sep, path = item.partition("=")
        if sep:
            out[repo_id] = Path(path).expanduser()
            continue
        hits = [m for m in on_disk if item.lower() in (m.name.lower(), m.repo_id.lower())]
        if hits:
            out[hits[0].repo_id] = hits[0].path
        elif Path(item).expanduser().is_dir():
            folder = Path(item).expanduser()
            out[f"local/{folder.name}"] = folder
        else:
            raise FileNotFoundError(
                f"{item!r} is neither a complete model on disk nor a folder; see `qwenlab models`, "
                "or give REPO_ID=PATH."
            )
    return out


def start(models: Iterable[str] | dict[str, str | os.PathLike] | None = None, host: str = "127.0.0.1",
          port: int = 0, drop_after: int | None = None) -> MirrorServer:
    """Start a mirror in a background thread and return it (call ``.stop()`` when done).

    Args:
        models: repo id -> folder, or what :func:`served_models` accepts (None = every complete model on disk).
        host: ``127.0.0.1`` (default) or ``0.0.0.0`` for the classroom.
        port: 0 picks a free port.
        drop_after: cut every file response after this many bytes (to see resuming at work).

    Example:
        >>> mirror = qwenlab.start_mirror({"qwenlab/coder": folder})       # doctest: +SKIP
        >>> qwenlab.download("qwenlab/coder", source=mirror.url)             # doctest: +SKIP

    Taught in ``02_download.ipynb``.
    """
    repos = models if isinstance(models, dict) else served_models(models)
    return MirrorServer(repos, host=host, port=port, drop_after=drop_after).start()


def _print_entry(entry: LogEntry) -> None:
    if entry.method == "GET" and "/resolve/" in entry.path:
        stamp = time.strftime("%H:%M:%S", time.localtime(entry.time))
        extra = f" from byte {entry.range_start}" if entry.range_start else ""
        print(f"{stamp} {entry.client:<15} {entry.status} {entry.path} {entry.bytes_sent / 1e6:,.1f} MB{extra}",
              flush=True)


def cli(argv: list[str], prog: str = "qwenlab mirror", command: str = "mirror") -> int:
    """``qwenlab mirror [--host 0.0.0.0] [--port 8090] [--model NAME|PATH|REPO=PATH ...]``."""
    import sys

    from .cli import make_parser

    parser = make_parser(prog, "Serve the models on this machine to a classroom over the Hugging Face Hub "
                               "protocol (students: HF_ENDPOINT=http://THIS-MACHINE:PORT).")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1 = this machine only; 0.0.0.0 = the classroom)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT})")
    parser.add_argument("--model", action="append", metavar="NAME|PATH|REPO=PATH",
                        help="serve only these (repeatable); default: every complete model on disk")
    parser.add_argument("--list", action="store_true", help="show what would be served and exit")
    args = parser.parse_args(argv)
    try:
        repos = served_models(args.model)
    except FileNotFoundError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 1
    if not repos:
        print(f"{prog}: no complete model on disk to serve; download one first (qwenlab download "
              "Qwen/Qwen3-0.6B) or build the offline model (qwenlab offline-model).", file=sys.stderr)
        return 1
    if args.list:
        for rid, folder in repos.items():
            print(f"{rid:<40} {folder}")
        return 0
    print("hashing files (once; cached afterwards)...", file=sys.stderr, flush=True)
    try:
        server = MirrorServer(repos, host=args.host, port=args.port, on_request=_print_entry)
    except OSError as err:
        print(f"{prog}: cannot listen on {args.host}:{args.port} ({err}); pick another --port.", file=sys.stderr)
        return 1
    print(f"Serving {len(repos)} model(s) at {server.url}")
    for rid, repo in server.repos.items():
        print(f"  {rid:<40} {sum(f.size for f in repo.files.values()) / 1e9:.2f} GB  {repo.folder}")
    print(f"\nStudents:  qwenlab download {next(iter(repos))} --source {server.url}")
    print(f"      or:  HF_ENDPOINT={server.url} HF_HUB_DISABLE_XET=1 hf download {next(iter(repos))}")
    if args.host == "127.0.0.1":
        print("(only this machine can connect; use --host 0.0.0.0 to serve the classroom)")
    print("Ctrl+C stops the mirror.\n", flush=True)
    server.serve_forever()
    return 0
