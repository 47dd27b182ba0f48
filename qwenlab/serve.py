"""Serve a local model behind an OpenAI-compatible API on 127.0.0.1 (what LM Studio and Ollama do).

``start(model)`` runs the server as a child process, waits until it answers and returns a
:class:`Server` handle (``base_url``, ``model``, ``client()``, ``stop()``). ``qwenlab serve MODEL`` runs
the same server in the foreground. Any OpenAI client (the ``openai`` package, AutoGen, LangChain,
curl) then talks to ``server.base_url``.

What does the work: ``transformers serve``'s own building blocks (its ``ModelManager`` loads the model,
its ``ChatCompletionHandler`` applies the chat template, generates, streams SSE chunks, counts usage and
splits Qwen3's ``<think>`` into ``reasoning_content``). qwenlab adds a thin HTTP layer in front because
plain ``transformers serve`` (5.23) with a local model fails a client in these ways, checked by hand:

- ``GET /v1/models`` scans the Hugging Face cache, not the served folder: a 500 when that cache does
  not exist, and never the local model;
- a negative ``max_tokens``, an empty or missing ``messages`` list answer ``500 Internal Server Error``
  with no message (the ``ValueError`` stays in the server log);
- the only accepted model name is the full folder path;
- a GGUF file does not load at all (its config has no ``architectures``, which serve needs);
- errors are not in OpenAI's ``{"error": {"message": ...}}`` shape, so clients show no reason.

The layer validates requests (4xx with a one-sentence reason, OpenAI error format), names the model
(``/v1/models``), checks an optional API key, and forwards everything else unchanged.

Safe defaults: binds 127.0.0.1; refuses another address unless an API key is set; safetensors only;
no ``trust_remote_code``; with a proxy set in the environment, the loopback names are added to
``NO_PROXY`` so clients reach the local server directly. The child process stops with ``stop()``, at
interpreter exit, and by itself when its parent dies (a killed or restarted notebook kernel), so no
orphan keeps the port.

Taught in ``08_serve.ipynb``.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures (``request: Request``) at runtime.
import argparse
import atexit
import hmac
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_PORT",
    "LOOPBACK_HOSTS",
    "ServeError",
    "RequestError",
    "Server",
    "start",
    "running_servers",
    "stop_all",
    "served_name",
    "check_host",
    "validate_chat_request",
    "build_app",
    "run_server",
    "cli",
]

DEFAULT_PORT = 8000  # `qwenlab serve`; LM Studio uses 1234, Ollama 11434, `start()` picks a free port
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
NO_KEY = "not-needed"  # what clients send when the server has no API key (LM Studio: "lm-studio")
_API_KEY_ENV = "QWENLAB_API_KEY"
_WORKDIR_PREFIX = "qwenlab-serve-"
_ROLES = {"system", "developer", "user", "assistant", "tool"}


class ServeError(RuntimeError):
    """The server could not start (or stopped); the message says why and quotes its log."""


class RequestError(ValueError):
    """A chat request a client sent is invalid; becomes an HTTP 4xx in OpenAI's error format."""

    def __init__(self, message: str, status: int = 400, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.param, self.code = status, param, code

    def payload(self) -> dict:
        kind = "invalid_request_error" if self.status != 401 else "authentication_error"
        return {"error": {"message": str(self), "type": kind, "param": self.param, "code": self.code}}


# --------------------------------------------------------------------------------------- validation


def check_host(host: str, api_key: str | None) -> None:
    """Refuse to listen beyond this machine without an API key.

    Raises:
        ValueError: ``host`` is not a loopback address and ``api_key`` is empty.
    """
    if host not in LOOPBACK_HOSTS and not api_key:
        raise ValueError(
            f"host={host!r} would expose the model to every machine on the network with no password; "
            f"set an API key (api_key=... or ${_API_KEY_ENV}) or keep host='127.0.0.1'."
        )


def _positive_int(body: dict, key: str) -> None:
    value = body.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RequestError(f"{key} must be a whole number >= 1, got {value!r}; leave it out for the default.",
                           param=key, code="invalid_value")


def _number_in(body: dict, key: str, low: float, high: float) -> None:
    value = body.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise RequestError(f"{key} must be a number between {low} and {high}, got {value!r}.",
                           param=key, code="invalid_value")


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise RequestError(
            "messages must be a non-empty list such as [{\"role\": \"user\", \"content\": \"Hello\"}], "
            f"got {messages!r}.", param="messages", code="invalid_value")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise RequestError(
                f"messages[{i}] must be an object with a role in {sorted(_ROLES)}, got {message!r}.",
                param=f"messages[{i}]", code="invalid_value")
        content = message.get("content")
        if content is None and not message.get("tool_calls"):
            raise RequestError(f"messages[{i}] has no content; give it a text (it may be \"\").",
                               param=f"messages[{i}].content", code="invalid_value")
        if content is not None and not isinstance(content, (str, list)):
            raise RequestError(f"messages[{i}].content must be a string or a list of parts, got {content!r}.",
                               param=f"messages[{i}].content", code="invalid_value")


def validate_chat_request(body: Any, served: str, aliases: tuple[str, ...] = ()) -> dict:
    """Check a ``/v1/chat/completions`` body before it reaches the model.

    Args:
        body: the decoded JSON body.
        served: the model id this server lists in ``/v1/models``.
        aliases: other names accepted for it (its folder path, its catalog name).

    Returns:
        The body, unchanged.

    Raises:
        RequestError: with the HTTP status (400, or 404 for an unknown model) and one actionable sentence.
    """
    if not isinstance(body, dict):
        raise RequestError(f"The request body must be a JSON object, got {type(body).__name__}.")
    model = body.get("model")
    if model is not None and model != served and model not in aliases:
        raise RequestError(f"The model {model!r} is not served here; this server serves {served!r} "
                           f"(GET /v1/models lists it): send model={served!r}.",
                           status=404, param="model", code="model_not_found")
    _check_messages(body.get("messages"))
    for key in ("max_tokens", "max_completion_tokens"):
        _positive_int(body, key)
    _number_in(body, "temperature", 0.0, 2.0)
    _number_in(body, "top_p", 0.0, 1.0)
    if body.get("n") not in (None, 1):
        raise RequestError("This server returns one answer per request (n=1); send several requests instead.",
                           param="n", code="invalid_value")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise RequestError(f"stream must be true or false, got {body['stream']!r}.", param="stream")
    return body


def _decode_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RequestError(f"The request body is not valid JSON ({err}); send a JSON object such as "
                           "{\"model\": ..., \"messages\": [...]}.", code="invalid_json") from None


# --------------------------------------------------------------------------------------- the app


def served_name(model: str | os.PathLike) -> str:
    """The model id a server lists in ``/v1/models``: a catalog name as given, else the folder/file name."""
    from . import catalog

    text = str(model)
    if not Path(text).expanduser().exists():
        info = catalog.find(text)
        if info is not None:
            return info.name
    path = Path(text).expanduser()
    return path.stem if path.suffix == ".gguf" else path.name


def _model_ref(folder: Path, gguf_file: str | None) -> str:
    """``transformers serve``'s spelling of a model: a folder, or ``<folder>:<file>.gguf``."""
    return f"{folder}:{gguf_file}" if gguf_file else str(folder)


def build_app(model_ref: str, name: str, *, aliases: tuple[str, ...] = (), reasoning: str = "auto",
              device: str = "cpu", dtype: str = "auto", api_key: str | None = None) -> Any:
    """The FastAPI app: loads the model now, then serves ``/health``, ``/v1/models``, ``/v1/chat/completions``.

    Args:
        model_ref: a local model folder, or ``<folder>:<file>.gguf``.
        name: the model id clients send and ``/v1/models`` lists.
        aliases: other accepted model names.
        reasoning: ``"on"`` / ``"off"`` / ``"auto"``: Qwen3's thinking default (``enable_thinking``);
            a request's ``chat_template_kwargs`` overrides it.
        device, dtype: where and in which precision the model runs (``"auto"`` keeps the file's dtype).
        api_key: when set, every ``/v1`` request must send ``Authorization: Bearer <api_key>``.
    """
    try:
        from fastapi import FastAPI, HTTPException, Request
        from fastapi.responses import JSONResponse, StreamingResponse
        from transformers.cli.serving.chat_completion import ChatCompletionHandler
        from transformers.cli.serving.model_manager import ModelManager
        from transformers.cli.serving.utils import GenerationState
    except ImportError as err:
        raise ImportError(f"Serving needs FastAPI and uvicorn ({err}); install them: "
                          "pip install 'qwenlab[serve]'.") from err

    class _Manager(ModelManager):
        """transformers 5.23 picks the class from ``config.architectures``, which a GGUF config lacks
        (``TypeError: 'NoneType' object is not subscriptable``): load GGUF as a causal LM instead."""

        def _load_model(self, model_id_and_revision, tqdm_class=None, progress_callback=None, gguf_file=None):
            if gguf_file is None:
                return super()._load_model(model_id_and_revision, tqdm_class, progress_callback, gguf_file)
            from transformers import AutoModelForCausalLM

            return AutoModelForCausalLM.from_pretrained(model_id_and_revision.split("@", 1)[0], gguf_file=gguf_file,
                                                        dtype=self.dtype, device_map=self.device)

    manager = _Manager(device=device, dtype=dtype, force_model=model_ref)  # loads the model now
    template_kwargs = {"on": {"enable_thinking": True}, "off": {"enable_thinking": False}}.get(reasoning, {})
    handler = ChatCompletionHandler(model_manager=manager, generation_state=GenerationState(),
                                    chat_template_kwargs=template_kwargs)
    created = int(time.time())
    app = FastAPI(title=f"qwenlab: {name}")

    def error(err: RequestError) -> JSONResponse:
        return JSONResponse(err.payload(), status_code=err.status)

    @app.exception_handler(HTTPException)
    async def _http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return error(RequestError(str(exc.detail), status=exc.status_code))

    @app.middleware("http")
    async def _auth(request: Request, call_next):
        if api_key and request.url.path.startswith("/v1"):
            sent = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(sent.encode(), api_key.encode()):
                return error(RequestError("Missing or wrong API key: send the header 'Authorization: Bearer <key>' "
                                          "(openai clients do it when given api_key=...).",
                                          status=401, code="invalid_api_key"))
        return await call_next(request)

    @app.get("/health")
    def _health() -> dict:
        return {"status": "ok", "model": name}

    model_card = {"id": name, "object": "model", "created": created, "owned_by": "qwenlab"}

    @app.get("/v1/models")
    def _models() -> dict:
        return {"object": "list", "data": [model_card]}

    @app.get("/v1/models/{model_id:path}")
    def _model(model_id: str):
        if model_id != name and model_id not in aliases:
            return error(RequestError(f"The model {model_id!r} is not served here; this server serves {name!r}.",
                                      status=404, param="model", code="model_not_found"))
        return model_card

    @app.post("/v1/chat/completions")
    async def _chat(request: Request):
        try:
            body = validate_chat_request(_decode_json(await request.body()), name, aliases)
            body["model"] = model_ref
            response = await handler.handle_request(body, request.headers.get("x-request-id") or _request_id())
        except RequestError as err:
            return error(err)
        except (ValueError, TypeError, KeyError) as err:  # raised by the template or generation config
            return error(RequestError(f"The model could not use this request: {err}"))
        if isinstance(response, StreamingResponse):
            return StreamingResponse(_renamed_stream(response.body_iterator, name),
                                     media_type=response.media_type)
        payload = json.loads(response.body)
        payload["model"] = name
        return JSONResponse(payload, status_code=response.status_code)

    return app


def _request_id() -> str:
    import uuid

    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


async def _renamed_stream(chunks: Any, name: str):
    """Re-label each SSE chunk's ``model`` with the served name (transformers puts the folder path)."""
    try:
        async for part in chunks:
            text = part if isinstance(part, str) else part.decode()
            events = []
            for event in text.split("\n\n"):
                if event.startswith("data: {"):
                    try:
                        data = json.loads(event[6:])
                        if "model" in data:
                            data["model"] = name
                        event = "data: " + json.dumps(data, ensure_ascii=False)
                    except json.JSONDecodeError:
                        pass
                events.append(event)
            yield "\n\n".join(events)
    finally:
        closer = getattr(chunks, "aclose", None)
        if closer is not None:
            await closer()


# --------------------------------------------------------------------------------------- running it


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise ServeError(f"Cannot listen on {host}:{port} ({err.strerror}); another program (an earlier "
                         "server?) holds the port: stop it, or choose another port (port=0 picks a free one)."
                         ) from None
    return sock


def _watch_parent(parent_pid: int, on_gone: Any) -> None:
    """Call ``on_gone`` once the parent process is gone (a killed or restarted notebook kernel)."""
    import psutil

    try:
        parent = psutil.Process(parent_pid)
    except psutil.NoSuchProcess:
        on_gone()
        return

    def stdin_closed() -> None:  # the parent holds our stdin: EOF means it died, at once
        try:
            while sys.stdin.buffer.read(1024):
                pass
        except (OSError, ValueError, AttributeError):
            return
        on_gone()

    def alive() -> bool:
        try:
            return parent.is_running() and parent.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def poll() -> None:  # fallback when stdin was inherited elsewhere (a fork of the parent)
        while alive():
            time.sleep(1.0)
        on_gone()

    threading.Thread(target=stdin_closed, daemon=True, name="qwenlab-stdin-watch").start()
    threading.Thread(target=poll, daemon=True, name="qwenlab-parent-watch").start()


def _resolve_safe(model: str | os.PathLike) -> Any:
    """``models.resolve``, refusing a folder without safetensors weights (pickle ``.bin`` can run code)."""
    from .hub import folder_weights
    from .models import resolve

    where = resolve(model)
    if not where.gguf_file and folder_weights(where.folder) != "safetensors":
        raise ServeError(f"{where.folder} has no complete safetensors weights; the server loads only safetensors "
                         "(pickle .bin files can run code): use a safetensors copy of the model.")
    return where


def run_server(model: str | os.PathLike, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *,
               name: str | None = None, reasoning: str = "auto", device: str = "auto", dtype: str = "auto",
               api_key: str | None = None, port_file: str | None = None, parent_pid: int | None = None,
               log_level: str = "info") -> None:
    """Run the server in this process until Ctrl-C (what ``qwenlab serve`` does; ``start`` runs it as a child).

    Args:
        model: catalog name, local folder or ``.gguf`` file.
        port: 0 picks a free port; it is written to ``port_file`` (JSON) as soon as it is bound.
        parent_pid: stop when that process dies (set by ``start``).
    """
    import uvicorn

    from .models import choose_device, choose_dtype

    check_host(host, api_key)
    where = _resolve_safe(model)
    device = choose_device(device)
    torch_dtype, _ = choose_dtype(device, dtype)
    name = name or served_name(model)
    aliases = tuple({str(model), where.name, str(where.folder), _model_ref(where.folder, where.gguf_file)} - {name})
    sock = _bind(host, port)
    if port_file:
        Path(port_file).write_text(json.dumps({"port": sock.getsockname()[1], "pid": os.getpid()}))
    app = build_app(_model_ref(where.folder, where.gguf_file), name, aliases=aliases, reasoning=reasoning,
                    device=device, dtype=str(torch_dtype).removeprefix("torch."), api_key=api_key)
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=5))
    orphaned = threading.Event()
    if parent_pid:
        def parent_gone() -> None:
            orphaned.set()
            server.should_exit = True
            threading.Timer(15.0, os._exit, args=(0,)).start()  # if a generation blocks the shutdown

        _watch_parent(parent_pid, parent_gone)
    server.run(sockets=[sock])
    workdir = Path(port_file).parent if port_file else None
    if orphaned.is_set() and workdir is not None and workdir.name.startswith(_WORKDIR_PREFIX):
        shutil.rmtree(workdir, ignore_errors=True)  # nobody is left to read the log


# --------------------------------------------------------------------------------------- the handle

_RUNNING: list["Server"] = []


@dataclass
class Server:
    """A running OpenAI-compatible server (returned by :func:`start`).

    Attributes:
        base_url: what clients need, e.g. ``http://127.0.0.1:43117/v1``.
        model: the model id to send (``/v1/models`` lists it).
        api_key: the key clients send (``"not-needed"`` when the server has none; any text works then).
        log_path: the server's log (requests, errors), kept until ``stop()``.
    """

    base_url: str
    model: str
    api_key: str
    host: str
    port: int
    pid: int
    log_path: Path
    startup_seconds: float
    _proc: subprocess.Popen = field(repr=False)

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._proc.poll() is None

    def client(self, **kwargs: Any) -> Any:
        """An ``openai.OpenAI`` client pointed at this server."""
        from openai import OpenAI

        return OpenAI(base_url=self.base_url, api_key=self.api_key, **kwargs)

    def logs(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the server log."""
        return _tail(self.log_path, lines)

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the server and everything it started; afterwards the port is free and its log is deleted.

        Safe to call twice."""
        _terminate(self._proc, timeout)
        if self in _RUNNING:
            _RUNNING.remove(self)
        if self.log_path.parent.name.startswith(_WORKDIR_PREFIX):
            shutil.rmtree(self.log_path.parent, ignore_errors=True)

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __str__(self) -> str:
        state = "running" if self.running else "stopped"
        return (f"OpenAI-compatible server ({state}, pid {self.pid}, started in {self.startup_seconds:.0f} s)\n"
                f"  base_url : {self.base_url}\n  model    : {self.model}\n  api_key  : {self.api_key}\n"
                f"  log      : {self.log_path}")


def _tail(path: Path, lines: int) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    kept = [line for line in text.replace("\r", "\n").splitlines() if line.strip()]  # \r: progress bars
    return "\n".join(kept[-lines:])


def _terminate(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM the server's process group, wait, then SIGKILL it; close our end of its stdin."""
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM if os.name == "posix" else None)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL if os.name == "posix" else None, hard=True)
            proc.wait(10)
    if os.name == "posix":  # children left in the group (none expected) go too
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if proc.stdin is not None:
        try:
            proc.stdin.close()
        except OSError:
            pass


def _signal_group(proc: subprocess.Popen, sig: Any, hard: bool = False) -> None:
    try:
        if os.name == "posix":
            os.killpg(proc.pid, sig)
        elif hard:
            proc.kill()
        else:
            proc.terminate()
    except (ProcessLookupError, PermissionError):
        pass


def running_servers() -> list[Server]:
    """Servers started by :func:`start` in this process and not stopped yet."""
    return [s for s in _RUNNING if s.running]


def stop_all() -> int:
    """Stop every server this process started (also run at interpreter exit); returns how many."""
    servers = list(_RUNNING)
    for server in servers:
        server.stop()
    return len(servers)


atexit.register(stop_all)


def _child_command(model: str, host: str, port: int, port_file: str, name: str, reasoning: str,
                   device: str, dtype: str) -> list[str]:
    return [sys.executable, "-m", "qwenlab.serve", model, "--host", host, "--port", str(port),
            "--name", name, "--reasoning", reasoning, "--device", device, "--dtype", dtype,
            "--port-file", port_file, "--parent-pid", str(os.getpid())]


def _child_env(api_key: str | None) -> dict:
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env["HF_HUB_OFFLINE"] = "1"  # the model is on disk already: never wait for a hub
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.pop(_API_KEY_ENV, None)
    if api_key:
        env[_API_KEY_ENV] = api_key  # through the environment: argv is visible to every user in `ps`
    return env


def _health(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy
    try:
        with opener.open(url, timeout=5) as reply:
            return reply.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _bypass_proxy_for_loopback() -> None:
    """With HTTP(S)_PROXY set (common behind a VPN or a campus proxy), clients would send requests for
    127.0.0.1 to the proxy and fail; add the loopback names to NO_PROXY, as curl and httpx understand it."""
    if not any(os.environ.get(v) for v in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                                           "http_proxy", "https_proxy", "all_proxy")):
        return
    for var in ("NO_PROXY", "no_proxy"):
        have = [h.strip() for h in os.environ.get(var, "").split(",") if h.strip()]
        os.environ[var] = ",".join(have + [h for h in LOOPBACK_HOSTS if h not in have])


def start(model: str | os.PathLike, host: str = "127.0.0.1", port: int = 0, *, api_key: str | None = None,
          name: str | None = None, reasoning: str = "auto", device: str = "auto", dtype: str = "auto",
          timeout: float = 600.0) -> Server:
    """Start an OpenAI-compatible server for ``model`` in a child process and wait until it answers.

    Args:
        model: a catalog name (``"Qwen/Qwen3-0.6B"``, ``"offline"``), a local folder or a ``.gguf`` file.
        host: ``"127.0.0.1"`` (default): only this machine can connect. Another address needs ``api_key``.
        port: 0 (default) picks a free port; LM Studio uses 1234, Ollama 11434.
        api_key: require ``Authorization: Bearer <api_key>`` on every request.
        name: the model id clients send (default: the catalog name, or the folder name).
        reasoning: Qwen3's thinking default: ``"auto"`` (template default), ``"on"``, ``"off"``.
        device, dtype: as in :func:`qwenlab.load_model`.
        timeout: seconds to wait for the model to load.

    Returns:
        A :class:`Server`: ``base_url``, ``model``, ``api_key``, ``client()``, ``stop()``.

    Example:
        >>> server = qwenlab.start_server(course.model)            # doctest: +SKIP
        >>> server.client().chat.completions.create(model=server.model, messages=[...])  # doctest: +SKIP
        >>> server.stop()                                            # doctest: +SKIP

    Taught in ``08_serve.ipynb``.
    """
    if reasoning not in ("auto", "on", "off"):
        raise ValueError(f"reasoning must be 'auto', 'on' or 'off', got {reasoning!r}.")
    check_host(host, api_key)
    where = _resolve_safe(model)  # fails here, fast and clearly, for an unknown, missing or unsafe model
    if host in LOOPBACK_HOSTS:
        _bypass_proxy_for_loopback()
    name = name or served_name(model)
    child_model = str(where.folder / where.gguf_file) if where.gguf_file else str(where.folder)
    workdir = Path(tempfile.mkdtemp(prefix=_WORKDIR_PREFIX))
    log_path, port_file = workdir / "server.log", workdir / "port.json"
    began = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            _child_command(child_model, host, port, str(port_file), name, reasoning, device, dtype),
            stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=_child_env(api_key),
            start_new_session=os.name == "posix",
            creationflags=getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0),
        )
    try:
        bound = _wait_ready(proc, host, port_file, log_path, timeout)
    except BaseException as err:  # timeout, a failed load, or Ctrl-C while waiting: leave nothing behind
        _terminate(proc, 10.0)
        if not isinstance(err, ServeError):  # a ServeError names the log: keep it for reading
            shutil.rmtree(workdir, ignore_errors=True)
        raise
    url_host = f"[{host}]" if ":" in host else host
    server = Server(base_url=f"http://{url_host}:{bound}/v1", model=name, api_key=api_key or NO_KEY, host=host,
                    port=bound, pid=proc.pid, log_path=log_path, startup_seconds=time.perf_counter() - began,
                    _proc=proc)
    _RUNNING.append(server)
    return server


def _wait_ready(proc: subprocess.Popen, host: str, port_file: Path, log_path: Path, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    port = None
    probe_host = "127.0.0.1" if host in ("0.0.0.0", "localhost") else host
    probe_host = "[::1]" if host in ("::", "::1") else probe_host
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServeError(f"The server exited (code {proc.returncode}) before answering; its log ({log_path}) "
                             f"ends with:\n{_tail(log_path, 15)}")
        if port is None and port_file.is_file():
            try:
                port = json.loads(port_file.read_text())["port"]
            except (ValueError, KeyError):
                port = None
        if port is not None and _health(f"http://{probe_host}:{port}/health"):
            return port
        time.sleep(0.25)
    raise ServeError(f"The server did not answer within {timeout:.0f} s (a slow or busy machine?); "
                     f"raise timeout=... . Its log ({log_path}) ends with:\n{_tail(log_path, 15)}")


# --------------------------------------------------------------------------------------- command line


def cli(argv: list[str] | None = None, prog: str = "qwenlab serve", command: str = "serve") -> int:
    """``qwenlab serve MODEL``: serve a model on http://127.0.0.1:8000/v1 until Ctrl-C."""
    from .cli import make_parser

    parser = make_parser(prog, "Serve a model behind an OpenAI-compatible API (chat completions, streaming).")
    parser.add_argument("model", help="catalog name (Qwen/Qwen3-0.6B, offline), model folder or .gguf file")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 = any free)")
    parser.add_argument("--name", help="model id clients send (default: catalog name or folder name)")
    parser.add_argument("--reasoning", choices=("auto", "on", "off"), default="auto",
                        help="Qwen3 thinking default; a request's chat_template_kwargs overrides it")
    parser.add_argument("--api-key", default=os.environ.get(_API_KEY_ENV),
                        help=f"require this key (Authorization: Bearer ...); default ${_API_KEY_ENV}")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--port-file", help=argparse.SUPPRESS)
    parser.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        check_host(args.host, args.api_key)
        if not args.parent_pid:
            shown = f"[{args.host}]" if ":" in args.host else args.host
            print(f"Loading {args.model} ... then serving it at http://{shown}:{args.port}/v1 "
                  "(OpenAI-compatible; Ctrl-C stops).", file=sys.stderr)
        run_server(args.model, args.host, args.port, name=args.name, reasoning=args.reasoning,
                   device=args.device, dtype=args.dtype, api_key=args.api_key, port_file=args.port_file,
                   parent_pid=args.parent_pid, log_level=args.log_level)
    except (ValueError, FileNotFoundError, ServeError) as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
