"""A small ModelScope stand-in on 127.0.0.1 for tests: the endpoints the ``modelscope`` client uses to download.

The real client (``modelscope`` >= 1.38 delegates to ``modelscope_hub``) reads its endpoint from
``$MODELSCOPE_ENDPOINT`` (or an ``endpoint=`` argument) and, for ``snapshot_download``, asks for:

- ``GET /api/v1/repos/internalAccelerationInfo``: only answered inside Alibaba Cloud; a 404 here, as
  on any other machine, so the client uses the ordinary route.
- ``GET /api/v1/models/{owner}/{name}/repo/files?Revision=...&Recursive=True[&Root=dir]``: the file
  list, ``{"Code": 200, "Data": {"Files": [{"Path", "Name", "Type", "Size", "Sha256", ...}]}}``. The
  client checks each file it writes against ``Size`` and ``Sha256``.
- ``GET /api/v1/models/{owner}/{name}/repo?Revision=...&FilePath=...``: the bytes of one file. The
  client writes them to ``<file>.incomplete`` and resumes that with ``Range: bytes=N-``; a 206 answer
  must carry ``Content-Range: bytes N-END/TOTAL``.
- ``GET /api/v1/models/{owner}/{name}``: the repo's metadata (asked only when a listing comes back 404).

``HEAD /`` answers too (qwenlab's source probe). Every request is logged in :attr:`ModelScopeServer.log`.
Two switches break downloads on purpose: :attr:`ModelScopeServer.drop_after` (send that many bytes of
a file, then close the connection, once) and :attr:`ModelScopeServer.corrupt` (serve a file with one
byte flipped, that many times).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np

REPO_ID = "qwenlab-test/Tiny-Qwen3"
COMMIT = "5d2c1e0b6f3a4e8d9c7b1a2f3e4d5c6b7a8f9e0d"
_REPO = re.compile(r"^/api/v1/models/(?P<repo>[^/]+/[^/]+)(?P<rest>/repo(?:/files)?)?$")
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


def make_model_repo(folder: Path) -> Path:
    """A small Qwen3-shaped model folder: config, tokenizer files, a ~2.6 MB safetensors file, a README."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    save_file({"model.embed_tokens.weight": rng.standard_normal((5000, 128), dtype=np.float32),
               "model.norm.weight": np.ones(128, dtype=np.float32)}, str(folder / "model.safetensors"))
    config = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 128,
              "num_hidden_layers": 0, "vocab_size": 5000, "torch_dtype": "float32"}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "generation_config.json").write_text(json.dumps({"do_sample": True, "temperature": 0.6}))
    vocab = {f"tok{i}": i for i in range(300)}
    tokenizer = {"version": "1.0", "model": {"type": "BPE", "vocab": vocab, "merges": []}}
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False))
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 32768, "eos_token": "tok1"}))
    (folder / "README.md").write_text("# Tiny-Qwen3\n\n测试用的小模型 (a test model).\n", encoding="utf-8")
    return folder


@dataclass
class Request:
    """One request the server answered: what was asked and what went back."""

    method: str
    path: str  # the URL path, without the query
    params: dict[str, str]
    range: str | None  # the Range header, as sent
    status: int
    sent: int = 0  # body bytes written

    @property
    def file(self) -> str | None:
        """The repo file a download request asked for (``FilePath``), else None."""
        return self.params.get("FilePath") if self.path.endswith("/repo") else None


@dataclass
class _File:
    data: bytes
    sha256: str


@dataclass
class ModelScopeServer:
    """Serve model folders under ModelScope's download endpoints, on 127.0.0.1 (a free port).

    Use as a context manager; :attr:`url` is the endpoint to give the client.
    """

    repos: dict[str, Path]  # repo id -> folder
    drop_after: dict[str, int] = field(default_factory=dict)  # file -> bytes sent before the cut (once)
    corrupt: dict[str, int] = field(default_factory=dict)  # file -> how many more answers get a flipped byte
    log: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._files = {repo: {p.relative_to(folder).as_posix(): _File(p.read_bytes(), _sha256(p))
                              for p in sorted(folder.rglob("*")) if p.is_file()}
                       for repo, folder in self.repos.items()}
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> ModelScopeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def downloads(self, file: str) -> list[Request]:
        """The download requests for one repo file, in order."""
        with self._lock:
            return [r for r in self.log if r.file == file]

    def listing(self, repo_id: str) -> list[dict]:
        """The ``Files`` entries of a repo, as the real server lists them."""
        return [{"Name": path.rsplit("/", 1)[-1], "Path": path, "Type": "blob", "Size": len(f.data),
                 "Sha256": f.sha256, "IsLFS": path.endswith(".safetensors"), "Revision": COMMIT}
                for path, f in self._files[repo_id].items()]

    def _take_drop(self, file: str) -> int | None:
        """Bytes of ``file`` to send before cutting the connection (once), or None."""
        with self._lock:
            return self.drop_after.pop(file, None)

    def _take_corrupt(self, file: str) -> bool:
        """Whether this answer for ``file`` gets a flipped byte (uses up one of its count)."""
        with self._lock:
            left = self.corrupt.get(file, 0)
            if left <= 0:
                return False
            self.corrupt[file] = left - 1
            return True

    def _record(self, request: Request) -> None:
        with self._lock:
            self.log.append(request)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _envelope(data: object) -> bytes:
    return json.dumps({"Code": 200, "Data": data, "Message": "success", "Success": True}).encode()


def _error(code: int, message: str) -> bytes:
    return json.dumps({"Code": code, "Message": message, "Success": False}).encode()


def _handler_for(server: ModelScopeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002  (quiet test output)
            pass

        def do_HEAD(self) -> None:
            self._reply(200, b"", "text/html", head=True)

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            record = Request("GET", parts.path, params, self.headers.get("Range"), 0)
            try:
                self._route(parts.path, params, record)
            finally:
                server._record(record)

        def _route(self, path: str, params: dict[str, str], record: Request) -> None:
            match = _REPO.match(path)
            if match is None or match["repo"] not in server._files:
                message = "model not exists" if match else "not found"
                record.status = 404
                record.sent = self._reply(404, _error(404, message))
                return
            repo, rest = match["repo"], match["rest"]
            if params.get("Revision", "master") not in ("master", COMMIT):
                record.status = 404
                record.sent = self._reply(404, _error(404, f"revision {params['Revision']} not exists"))
            elif rest == "/repo/files":
                root = params.get("Root", "").strip("/")
                files = [f for f in server.listing(repo) if not root or f["Path"].startswith(root + "/")]
                record.status = 200
                record.sent = self._reply(200, _envelope({"Files": files}))
            elif rest == "/repo":
                self._file(repo, params.get("FilePath", ""), record)
            else:
                owner, name = repo.split("/")
                record.status = 200
                record.sent = self._reply(200, _envelope({"Path": owner, "Name": name, "Revision": COMMIT}))

        def _file(self, repo: str, file: str, record: Request) -> None:
            entry = server._files[repo].get(file)
            if entry is None:
                record.status = 404
                record.sent = self._reply(404, _error(404, f"file {file} not exists"))
                return
            data = entry.data
            if server._take_corrupt(file):
                flipped = bytearray(data)
                flipped[len(data) // 2] ^= 0xFF
                data = bytes(flipped)
            start, end = 0, len(data) - 1
            wanted = _RANGE.match(record.range or "")
            if wanted:
                start = int(wanted[1])
                end = min(int(wanted[2]), end) if wanted[2] else end
                if start >= len(data):
                    record.status = 416
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
            body = data[start:end + 1]
            record.status = 206 if wanted else 200
            self.send_response(record.status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            if wanted:
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            self.end_headers()
            cut = server._take_drop(file)
            if cut is not None and cut < len(body):
                body = body[:cut]
                self.close_connection = True  # the client sees the body end early
            self.wfile.write(body)
            self.wfile.flush()
            record.sent = len(body)

        def _reply(self, status: int, body: bytes, content_type: str = "application/json",
                   head: bool = False) -> int:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)
            return 0 if head else len(body)

    return Handler
