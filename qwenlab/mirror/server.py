"""The classroom mirror's HTTP server: :class:`MirrorServer` (start, stop, what it serves, the lines students
type) and :class:`MirrorHandler`, which checks the class code and the pause, sends each request to its route
(:mod:`~qwenlab.mirror.hub_routes` for models, :mod:`~qwenlab.mirror.class_routes` for the package index and
the class dashboard) and writes the answer: files with ``sendfile``, ``Range`` and ``ETag``.

Taught in ``02_download.ipynb``; the classroom parts in ``docs/teacher.md``.
"""

from __future__ import annotations

import os
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

from ..classroom.dashboard import PAGE_PATH, REPORTS_PATH, ClassBoard
from ..classroom.index import PackageIndex
from ..display import Table, TableView
from ..files import format_gb
from . import class_routes, hub_routes
from .access import CLASS_CODE_HINT, authorized, challenge, lan_ip, required_code
from .replies import FileReply, Reply, error_reply, parse_range
from .served import HashCache, ServedRepo, served_models

__all__ = ["DEFAULT_PORT", "LogEntry", "MirrorHandler", "MirrorServer", "start"]

DEFAULT_PORT = 8090


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



class MirrorHandler(BaseHTTPRequestHandler):
    """Answers one client connection: the Hub API routes, ``resolve`` downloads with ``Range``, the package
    index (``/simple/``, ``/packages/``), the class dashboard (``/class``), an index page
    (a subclass set as :attr:`MirrorServer.handler_class` can add routes in :meth:`reply_for`)."""

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
        self._answer(head=True)

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_POST(self) -> None:
        refused = self._refusal()
        if refused is None and urlsplit(self.path).path.rstrip("/") != REPORTS_PATH:
            refused = error_reply(404, "EntryNotFound", f"POST goes to {REPORTS_PATH} only")
        if refused is not None:
            self.close_connection = True  # the body was not read
            return self._send(refused, head=False)
        reply = class_routes.receive_report(self.server.mirror.board, self.headers.get("Content-Length"),
                                            bool(self.headers.get("Transfer-Encoding")), self.rfile.read,
                                            self.client_address[0])
        return self._send(reply, head=False)

    # -- routing
    def _refusal(self) -> Reply | None:
        """Why not to answer at all: no class code (401, when one is set), or the mirror is paused (503)."""
        mirror = self.server.mirror
        if not authorized(self.headers.get("Authorization", ""), mirror.api_key):
            return error_reply(401, "Unauthorized", mirror.key_hint(),
                               extra={"WWW-Authenticate": challenge(urlsplit(self.path).path)})
        if mirror.paused:
            return error_reply(503, "ServiceUnavailable", "the mirror is paused")
        return None

    def _answer(self, head: bool) -> None:
        reply = self._refusal() or self.reply_for(self.path)
        if isinstance(reply, FileReply):
            return self._send_range(reply, head)
        return self._send(reply, head)

    def reply_for(self, target: str) -> Reply | FileReply:
        """The answer to ``GET``/``HEAD`` of ``target`` (path and query), by the path's first part."""
        mirror = self.server.mirror
        url = urlsplit(target)
        parts = [unquote(p) for p in url.path.split("/") if p]
        if not parts:
            return Reply(200, {"Content-Type": "text/plain; charset=utf-8"}, mirror.index_page().encode())
        if parts[0] in ("simple", "packages"):
            return class_routes.package_index(mirror.index, parts)
        if parts[0] == PAGE_PATH.strip("/"):
            return class_routes.dashboard(mirror.board, url.path.rstrip("/"))
        if parts[:2] == ["api", "models"]:
            return hub_routes.api(mirror.repos, parts[2:], parse_qs(url.query))
        if len(parts) >= 5 and parts[2] == "resolve":
            return hub_routes.resolve(mirror.repos, parts)
        return error_reply(404, "EntryNotFound", f"{url.path} is not served by this mirror")

    # -- responses
    def _send(self, reply: Reply, head: bool) -> None:
        if reply.close:
            self.close_connection = True
        self.send_response(reply.status)
        for k, v in reply.headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if not head:
            self.wfile.write(reply.body)
        self._log(reply.status, sent=0 if head else len(reply.body))

    def _send_range(self, f: FileReply, head: bool) -> None:
        """A file, whole or the ``Range`` asked for (206; 416 when unsatisfiable), with its ETag."""
        size = f.size
        rng = parse_range(self.headers.get("Range"), size)
        headers = {"Content-Type": "application/octet-stream", "ETag": f'"{f.etag}"', "Accept-Ranges": "bytes",
                   **f.headers}
        if rng == "bad":
            headers["Content-Range"] = f"bytes */{size}"
            return self._send(Reply(416, headers), head)
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
        self._send_file(f.path, start, length, status, rng)

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
        self.api_key = required_code(host, api_key)
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
        host = lan_ip() if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    def key_hint(self) -> str:
        """What a client without the class code is told (the 401 message)."""
        return CLASS_CODE_HINT

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

    def index_page(self) -> str:
        """The text of ``/``: what is served and the lines students type."""
        lines = [f"qwenlab classroom mirror — {len(self.repos)} model(s)", ""]
        lines += [f"  {r.repo_id}" for r in self.repos.values()]
        lines += ["", *self.student_commands("MODEL")]
        if self.index is not None:
            lines += ["", f"package index: {self.url}/simple/ ({len(self.index.files)} files)",
                      *self.setup_commands()]
        lines += ["", f"class dashboard: {self.url}{PAGE_PATH}", self.doctor_command()]
        return "\n".join(lines)

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

