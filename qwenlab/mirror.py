"""Classroom mirror: one machine serves the models it already has to the class over the Hugging Face Hub protocol.

The teacher runs ``qwenlab mirror --host 0.0.0.0 --model Qwen/Qwen3-0.6B``; students set
``HF_ENDPOINT=http://<teacher>:8090`` and ``HF_TOKEN=<class code>`` and the stock ``huggingface_hub`` client
works unchanged: 40 students download over the room's Wi-Fi instead of 40 × 1.5 GB from abroad.

What is served, and to whom:

- only what the teacher names: model names found on disk (:func:`qwenlab.hub.find_local`) or folders that are
  model folders (``config.json`` + complete ``*.safetensors``, or ``*.gguf`` files); every complete model on
  disk, the Hugging Face cache included, only when asked for (``all_models=True`` / ``--all-models``);
- inside a model folder, only its own files: no hidden files or folders (``.git``, ``.qwenlab``), no symlink
  that points out of the folder (the Hugging Face cache's links into its ``blobs/`` are followed), no file
  name unsafe on POSIX or Windows; a request path that is not such a name gets 400, one not served 404;
- beyond this machine (any host but loopback) only with a class code: every request must send
  ``Authorization: Bearer <code>``, which ``huggingface_hub`` and ``hf`` do when ``HF_TOKEN=<code>`` is set
  (or ``token=<code>`` is passed). One is generated when none is given.

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

The same server is the classroom's one machine for everything else (see :mod:`qwenlab.classroom`), under the
same class code:

- ``/simple/`` (with ``wheelhouse=`` / ``--wheelhouse DIR``): the teacher's wheelhouse as a PEP 503 package
  index, so students install the course without the internet (pip sends the class code as Basic auth:
  ``--pip-mirror http://student:CODE@TEACHER:8090/simple``);
- ``/class``: the live class dashboard (always on): students POST their ``qwenlab doctor --send`` report to
  ``/class/reports``, the teacher's browser shows every laptop (it asks for the class code: any user name,
  the code as password).

Taught in ``02_download.ipynb``; the classroom parts in ``docs/teacher.md``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import os
import re
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from . import catalog
from .classroom.dashboard import (
    MAX_REPORT_BYTES, PAGE_HTML, PAGE_PATH, PAGE_POLICY, PAGE_SCRIPT, REPORTS_PATH, SCRIPT_PATH, ClassBoard,
    ReportError, parse_report,
)
from .classroom.index import PackageIndex, normalize_name
from .display import Table, TableView
from .files import (
    UnsafePathError, format_gb, git_blob_sha1, git_blob_sha1_of, safe_relpath, sha256_file, write_text_atomic,
)
from .offline import check_folder as check_offline_folder
from .ondisk import find_local, folder_weights, list_models
from .paths import qwenlab_home

__all__ = ["OFFLINE_REPO_ID", "DEFAULT_PORT", "API_KEY_ENV", "NotServableError", "model_folder_kind",
           "is_loopback", "class_code", "ServedFile", "HashCache", "ServedRepo", "LogEntry", "MirrorHandler",
           "MirrorServer", "served_models", "start"]

OFFLINE_REPO_ID = "qwenlab/Qwen2.5-Coder-0.5B-Instruct"  # how the offline model is named on a mirror
DEFAULT_PORT = 8090
API_KEY_ENV = "QWENLAB_API_KEY"  # the class code, as for `qwenlab serve` (kept out of argv: `ps` shows argv)
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


class MirrorHandler(BaseHTTPRequestHandler):
    """Answers one client connection: the Hub API routes, ``resolve`` downloads with ``Range``, the package
    index (``/simple/``, ``/packages/``), the class dashboard (``/class``), an index page
    (a subclass set as :attr:`MirrorServer.handler_class` can add routes)."""

    protocol_version = "HTTP/1.1"
    server_version = "qwenlab-mirror"
    timeout = 60  # idle keep-alive connections end after this
    server: _Server

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

    def do_POST(self) -> None:
        if not self._admitted(head=False):
            self.close_connection = True  # the body was not read
            return None
        if urlsplit(self.path).path.rstrip("/") != REPORTS_PATH:
            self.close_connection = True
            return self._error(404, "EntryNotFound", f"POST goes to {REPORTS_PATH} only", head=False)
        return self._receive_report()

    # -- routing
    def _admitted(self, head: bool) -> bool:
        """Whether to answer at all: the class code (when one is set), and not paused (else 401 / 503 sent)."""
        if not self._authorized():
            # Browsers (the dashboard) and pip answer a Basic challenge; huggingface_hub sends Bearer unasked.
            basic = urlsplit(self.path).path.startswith((PAGE_PATH, "/simple", "/packages"))
            challenge = ('Basic realm="qwenlab class: any user name, the class code as password"' if basic
                         else 'Bearer realm="qwenlab mirror"')
            self._error(401, "Unauthorized", self.server.mirror.key_hint(), head,
                        extra={"WWW-Authenticate": challenge})
            return False
        if self.server.mirror.paused:
            self._error(503, "ServiceUnavailable", "the mirror is paused", head)
            return False
        return True

    def _route(self, head: bool) -> None:
        if not self._admitted(head):
            return None
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/") if p]
        query = parse_qs(url.query)
        if not parts:
            return self._index(head)
        if parts[0] in ("simple", "packages"):
            return self._package_index(parts, head)
        if parts[0] == PAGE_PATH.strip("/"):
            return self._dashboard(url.path.rstrip("/"), head)
        if parts[:2] == ["api", "models"]:
            return self._api(parts[2:], query, head)
        if len(parts) >= 5 and parts[2] == "resolve":
            path = self._file_path("/".join(parts[4:]), head)
            return None if path is None else self._resolve(f"{parts[0]}/{parts[1]}", parts[3], path, head)
        return self._error(404, "EntryNotFound", f"{url.path} is not served by this mirror", head)

    def _authorized(self) -> bool:
        """No class code set, or the request sends it: ``Authorization: Bearer <code>`` (huggingface_hub, the
        doctor's report) or Basic auth with the code as password and any user name (pip, a browser); compared
        in constant time."""
        key = self.server.mirror.api_key
        if not key:
            return True
        scheme, _, sent = self.headers.get("Authorization", "").strip().partition(" ")
        if scheme.lower() == "basic":
            try:
                sent = base64.b64decode(sent.strip(), validate=True).decode("utf-8").partition(":")[2]
            except ValueError:  # not base64, or not UTF-8
                return False
        elif scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(sent.strip().encode(), key.encode())

    # -- the package index and the class dashboard (qwenlab.classroom)
    def _package_index(self, parts: list[str], head: bool) -> None:
        index = self.server.mirror.index
        if index is None:
            return self._error(404, "EntryNotFound", "this mirror serves no package index (start it with "
                                                     "--wheelhouse DIR)", head)
        if parts == ["simple"]:
            return self._html(index.root_page(), head)
        if parts[0] == "simple" and len(parts) == 2:
            name = normalize_name(parts[1])
            if name != parts[1]:  # PEP 503: other spellings of a name redirect to its normal form
                return self._send(301, {"Location": f"/simple/{quote(name)}/"}, b"", head)
            page = index.project_page(name)
            if page is None:
                return self._error(404, "EntryNotFound", f"no package {name!r} in this wheelhouse", head)
            return self._html(page, head)
        f = index.files.get(parts[1]) if parts[0] == "packages" and len(parts) == 2 else None
        if f is None:
            return self._error(404, "EntryNotFound", f"{'/'.join(parts)} is not in this wheelhouse", head)
        return self._send_range(f.path, f.size, f.sha256, head)

    def _dashboard(self, path: str, head: bool) -> None:
        security = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
        if path == PAGE_PATH:
            return self._send(200, {"Content-Type": "text/html; charset=utf-8", "Content-Security-Policy": PAGE_POLICY,
                                    "X-Frame-Options": "DENY", **security}, PAGE_HTML.encode(), head)
        if path == SCRIPT_PATH:
            return self._send(200, {"Content-Type": "text/javascript; charset=utf-8", **security},
                              PAGE_SCRIPT.encode(), head)
        if path == REPORTS_PATH:
            return self._send(200, {"Content-Type": "application/json", **security},
                              self.server.mirror.board.to_json(), head)
        return self._error(404, "EntryNotFound", f"{path} is not part of the class dashboard", head)

    def _receive_report(self) -> None:
        """``POST /class/reports``: check the size before reading, then the report, then keep it (or 4xx)."""
        length = self.headers.get("Content-Length")
        try:
            if self.headers.get("Transfer-Encoding") or length is None:
                raise ReportError(411, "send the report with a Content-Length")
            if not length.strip().isdigit():
                raise ReportError(400, "Content-Length is not a number")
            if int(length) > MAX_REPORT_BYTES:
                raise ReportError(413, f"a report is at most {MAX_REPORT_BYTES} bytes")
            body = self.rfile.read(int(length))
            if len(body) < int(length):
                raise ReportError(400, "the report ended early")
            count = self.server.mirror.board.add(parse_report(body), self.client_address[0])
        except ReportError as err:
            self.close_connection = err.status in (411, 413) or self.close_connection
            return self._error(err.status, "BadReport", str(err), head=False)
        return self._send(200, {"Content-Type": "application/json"},
                          json.dumps({"ok": True, "laptops": count}).encode(), head=False)

    def _file_path(self, path: str, head: bool) -> str | None:
        """A requested file name, if it is a plain relative name under POSIX and Windows rules (else answer 400)."""
        try:
            ok = safe_relpath(path) == path
            reason = "" if ok else "it is not in normal form"
        except UnsafePathError as err:
            ok, reason = False, str(err)
        if ok:
            return path
        self._error(400, "BadRequest", f"refused file name {path!r}: {reason}", head)
        return None

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
            sub = "/".join(rest[2:])
            if sub and self._file_path(sub, head) is None:
                return None  # already answered 400
            entries = repo.tree(sub, recursive)
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

    def _html(self, page: str, head: bool) -> None:
        self._send(200, {"Content-Type": "text/html; charset=utf-8"}, page.encode(), head)

    def _error(self, status: int, code: str, message: str, head: bool, repo: ServedRepo | None = None,
               extra: dict[str, str] | None = None) -> None:
        # a header is Latin-1: a name in another script goes as \u escapes there (intact in the JSON body)
        safe = message.encode("ascii", "backslashreplace").decode("ascii")
        headers = {"Content-Type": "application/json", "X-Error-Code": code, "X-Error-Message": safe,
                   **(extra or {})}
        if repo is not None:
            headers["X-Repo-Commit"] = repo.commit
        self._send(status, headers, json.dumps({"error": message}).encode(), head)

    def _index(self, head: bool) -> None:
        mirror = self.server.mirror
        lines = [f"qwenlab classroom mirror — {len(mirror.repos)} model(s)", ""]
        lines += [f"  {r.repo_id}" for r in mirror.repos.values()]
        lines += ["", *mirror.student_commands("MODEL")]
        if mirror.index is not None:
            lines += ["", f"package index: {mirror.url}/simple/ ({len(mirror.index.files)} files)",
                      *mirror.setup_commands()]
        lines += ["", f"class dashboard: {mirror.url}{PAGE_PATH}", mirror.doctor_command()]
        self._send(200, {"Content-Type": "text/plain; charset=utf-8"}, "\n".join(lines).encode(), head)

    def _resolve(self, repo_id: str, rev: str, path: str, head: bool) -> None:
        repo = self._repo(repo_id, head)
        if repo is None or not self._revision_ok(repo, rev, head):
            return
        f = repo.files.get(path)
        if f is None:
            return self._error(404, "EntryNotFound", f"{path} is not in {repo_id}", head, repo)
        return self._send_range(f.abspath, f.size, f.etag, head, {"X-Repo-Commit": repo.commit})

    def _send_range(self, path: Path, size: int, etag: str, head: bool, extra: dict[str, str] | None = None) -> None:
        """A file, whole or the ``Range`` asked for (206; 416 when unsatisfiable), with its ETag."""
        rng = _parse_range(self.headers.get("Range"), size)
        headers = {"Content-Type": "application/octet-stream", "ETag": f'"{etag}"', "Accept-Ranges": "bytes",
                   **(extra or {})}
        if rng == "bad":
            headers["Content-Range"] = f"bytes */{size}"
            return self._send(416, headers, b"", head)
        start, end = rng if isinstance(rng, tuple) else (0, size - 1)
        length = max(end - start + 1, 0)
        self.send_response(206 if isinstance(rng, tuple) else 200)
        for k, v in headers.items():
            self.send_header(k, v)
        if isinstance(rng, tuple):
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(length))
        self.end_headers()
        status = 206 if isinstance(rng, tuple) else 200
        if head:
            return self._log(status, start if rng else None, end if rng else None)
        self._send_file(path, start, length, status, rng)

    def _send_file(self, path: Path, start: int, length: int, status: int, rng: Any) -> None:
        limit = self.server.mirror.drop_after
        count = min(length, limit) if limit else length
        sent = 0
        try:
            # O_NOFOLLOW: a file swapped for a link after the mirror started is not followed out of the folder.
            with os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)), "rb") as fh:
                while sent < count:  # in slices, so the log knows how far a cut-off client got
                    n = self.connection.sendfile(fh, start + sent, min(16 << 20, count - sent))
                    if n == 0:
                        break
                    sent += n
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except OSError:  # the file went away (or became a link) after the headers were sent
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
    mirror: MirrorServer


class MirrorServer(TableView):
    """A running (or ready) Hub-protocol server for local model folders; shows as a table of what it serves.

    Args:
        repos: repo id -> model folder (e.g. ``{"Qwen/Qwen3-0.6B": "~/.cache/qwenlab/models/Qwen--Qwen3-0.6B"}``).
            Each folder must be a model folder (:func:`model_folder_kind`), else :class:`NotServableError`.
        host: ``127.0.0.1`` (default: this machine only) or ``0.0.0.0`` to serve the classroom.
        port: TCP port; 0 picks a free one.
        drop_after: for demos and tests of resuming: cut every file response after this many bytes
            (the client sees a dropped connection, as on a bad Wi-Fi).
        on_request: called with each :class:`LogEntry` (the CLI prints them).
        api_key: the class code every request must send as ``Authorization: Bearer <code>`` (401 otherwise;
            students set ``HF_TOKEN=<code>``), or as the password of Basic auth (pip, a browser). Given on
            loopback, it is required there too. Off loopback without one, a code is generated (see
            :attr:`api_key`, and the table).
        wheelhouse: a folder of wheels (``qwenlab wheelhouse``) to serve as a package index at ``/simple/``
            (:class:`qwenlab.classroom.PackageIndex`; its files are hashed once, when the mirror starts).

    The class dashboard is always on: :attr:`board` (a :class:`qwenlab.classroom.ClassBoard`) holds the
    reports students send to ``/class/reports``; the page is ``/class``.

    Set ``paused = True`` to answer every request with 503 Service Unavailable (as a mirror that went
    down; downloads fall back to the next source and resume later), ``False`` to serve again.

    Use as a context manager, or call :meth:`start` / :meth:`stop`. Taught in ``02_download.ipynb``.
    """

    handler_class: type = MirrorHandler  # the request handler (a subclass can add behaviour)

    def __init__(self, repos: Mapping[str, str | os.PathLike], host: str = "127.0.0.1", port: int = 0,
                 drop_after: int | None = None, on_request: Callable[[LogEntry], None] | None = None,
                 api_key: str | None = None, wheelhouse: str | os.PathLike | None = None):
        cache = HashCache()
        self.repos: dict[str, ServedRepo] = {rid: ServedRepo.from_folder(rid, folder, cache)
                                             for rid, folder in repos.items()}
        self.index = PackageIndex(wheelhouse) if wheelhouse is not None else None
        self.board = ClassBoard()
        self.host = host
        self.api_key = api_key or (None if is_loopback(host) else class_code())
        self.drop_after = drop_after
        self.on_request = on_request
        self.paused = False
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

    def key_hint(self) -> str:
        """What a client without the class code is told (the 401 message)."""
        return ("this classroom mirror needs the class code: ask your teacher for it and set HF_TOKEN=<class code> "
                "(huggingface_hub and hf send it as 'Authorization: Bearer <class code>'); pip: "
                "http://student:<class code>@HOST:PORT/simple; qwenlab doctor --send URL --class-code <class code>; "
                "a browser asks for it (any user name, the class code as password).")

    def student_commands(self, model: str) -> list[str]:
        """The lines a student types to download ``model`` from this mirror (with the class code, if one is set)."""
        token = f"HF_TOKEN={self.api_key} " if self.api_key else ""
        return [f"{token}HF_ENDPOINT={self.url} HF_HUB_DISABLE_XET=1 hf download {model}",
                f"{token}qwenlab download {model} --source {self.url}"]

    def pip_index_url(self) -> str:
        """The index URL students give pip: ``/simple`` on this mirror, with the class code as the password of
        Basic auth when one is set (``http://student:CODE@TEACHER:8090/simple``)."""
        if not self.api_key:
            return f"{self.url}/simple"
        return self.url.replace("://", f"://student:{quote(self.api_key, safe='')}@", 1) + "/simple"

    def setup_commands(self) -> list[str]:
        """The lines a student types to install the course from this mirror's package index (torch too)."""
        index = self.pip_index_url()
        return [f"python setup_course.py install --pip-mirror {index} --torch-index {index}   (Windows: py ...)"]

    def doctor_command(self) -> str:
        """The line a student types to send their ``qwenlab doctor`` report to this mirror's dashboard."""
        code = f" --class-code {self.api_key}" if self.api_key else ""
        return f"qwenlab doctor --send {self.url}{code}"

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

    def start(self) -> MirrorServer:
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

    def __enter__(self) -> MirrorServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"MirrorServer({self.url}, repos={list(self.repos)})"

    def table(self) -> Table:
        """What is served: one row per repo (files, size, folder), titled with the URL students use; the class
        code, when one is set, in the notes."""
        rows: list[tuple[object, ...]] = [(r.repo_id, len(r.files), format_gb(sum(f.size for f in r.files.values())),
                                           str(r.folder)) for r in self.repos.values()]
        if self.index is not None:
            rows.append(("/simple/ (package index)", len(self.index.files), format_gb(self.index.size),
                         str(self.index.folder)))
        rows.append((f"{PAGE_PATH} (class dashboard)", f"{len(self.board)} laptop(s)", "", ""))
        notes = [f"class code: {self.api_key}  (students: HF_TOKEN={self.api_key}, sent as "
                 "'Authorization: Bearer <code>'; without it every request gets 401)"] if self.api_key else []
        return Table(["repo", "files", "size", "folder"], rows, title=f"qwenlab mirror at {self.url}",
                     align_right=[1, 2], notes=notes)


def _lan_ip() -> str:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))  # no packet is sent; this only picks the outgoing interface
            return s.getsockname()[0]
    except OSError:
        return socket.gethostname()


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (``127.0.0.1``, ``localhost``, ``::1``).

    >>> is_loopback("127.0.0.1"), is_loopback("0.0.0.0"), is_loopback("")
    (True, False, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_CODE_LETTERS = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: easy to read aloud and type


def class_code() -> str:
    """A fresh class code: three groups of four letters and digits (about 59 bits), e.g. ``"k3mz-7qpa-vx2d"``."""
    return "-".join("".join(secrets.choice(_CODE_LETTERS) for _ in range(4)) for _ in range(3))


def _local_repo_id(folder: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", folder.resolve().name).strip("-.") or "model"
    return f"local/{name}"


def _find_model(name: str) -> tuple[str, Path] | None:
    """(repo id, folder) of a model name found complete on disk (qwenlab's folders, the HF and ModelScope caches)."""
    info = catalog.find(name)
    if name == OFFLINE_REPO_ID or (info is not None and info.name == catalog.OFFLINE_MODEL):
        check = check_offline_folder()
        return (OFFLINE_REPO_ID, check.folder) if check.ready else None
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


def start(models: Iterable[str] | Mapping[str, str | os.PathLike] | None = None, host: str = "127.0.0.1",
          port: int = 0, drop_after: int | None = None, api_key: str | None = None,
          all_models: bool = False, wheelhouse: str | os.PathLike | None = None) -> MirrorServer:
    """Start a mirror in a background thread and return it (call ``.stop()`` when done).

    Args:
        models: repo id -> model folder, or what :func:`served_models` accepts (names, folders, ``REPO=PATH``).
        host: ``127.0.0.1`` (default) or ``0.0.0.0`` for the classroom (then a class code is required).
        port: 0 picks a free port.
        drop_after: cut every file response after this many bytes (to see resuming at work).
        api_key: the class code clients must send (``HF_TOKEN=<code>``); generated off loopback when None.
        all_models: serve every complete model on disk as well (the Hugging Face cache included).
        wheelhouse: a folder of wheels to serve as a package index at ``/simple/`` (``qwenlab wheelhouse``).

    Example:
        >>> mirror = qwenlab.start_mirror({"qwenlab/coder": folder})       # doctest: +SKIP
        >>> qwenlab.download("qwenlab/coder", source=mirror.url)             # doctest: +SKIP

    Taught in ``02_download.ipynb``.
    """
    if models is None and not all_models and wheelhouse is not None:
        repos: Mapping[str, str | os.PathLike] = {}  # a package index (and the dashboard) without models
    else:
        repos = models if isinstance(models, Mapping) else served_models(models, all_models=all_models)
    return MirrorServer(repos, host=host, port=port, drop_after=drop_after, api_key=api_key,
                        wheelhouse=wheelhouse).start()
