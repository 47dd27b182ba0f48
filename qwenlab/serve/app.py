"""The server process: the FastAPI app (``/health``, ``/v1/models``, ``/v1/chat/completions``) around an
:class:`~qwenlab.serve.engine.Engine`, and :func:`run_server` (what ``qwenlab serve`` and the child of
:func:`qwenlab.serve.start` run).

A request is checked (:mod:`~qwenlab.serve.protocol`), its prompt measured against the limits, then it
waits in line for the model. While it waits or generates, its connection is watched: a client that goes
away (closes the tab, times out, Ctrl-C) cancels its generation within one token, streaming or not.

Taught in ``08_serve.ipynb``.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures (``request: Request``) at runtime.
import asyncio
import contextlib
import hmac
import json
import logging
import os
import shutil
import socket
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import catalog
from ..paths import API_KEY_ENV
from .engine import DEFAULT_TIME_LIMIT, BaseEngine, Engine, Job, Limits
from .protocol import (
    SSE_DONE,
    ChatRequest,
    RequestError,
    chunk,
    completion,
    decode_json,
    reasoning_delta,
    sse,
    usage_chunk,
    validate_chat_request,
)
from .replies import ToolCall

if TYPE_CHECKING:
    from ..engines import LlamaCppModel
    from ..modelfacts import CausalLM
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "DEFAULT_PORT",
    "LOOPBACK_HOSTS",
    "NO_KEY",
    "API_KEY_ENV",
    "WORKDIR_PREFIX",
    "MAX_BODY_BYTES",
    "ServeError",
    "check_host",
    "check_port",
    "served_name",
    "resolve_servable",
    "engine_options",
    "build_app",
    "run_server",
]

DEFAULT_PORT = 8000  # `qwenlab serve`; LM Studio uses 1234, Ollama 11434, `start()` picks a free port
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
NO_KEY = "not-needed"  # what clients send when the server has no API key (LM Studio: "lm-studio")
WORKDIR_PREFIX = "qwenlab-serve-"  # temporary folder of a started server (its log and port file)
MAX_BODY_BYTES = 4 * 1024 * 1024  # a 32k-token conversation is ~150 KB of JSON
log = logging.getLogger("qwenlab.serve")


class ServeError(RuntimeError):
    """The server could not start (or stopped); the message says why and quotes its log."""


def check_host(host: str, api_key: str | None) -> None:
    """Refuse to listen beyond this machine without an API key.

    Raises:
        ValueError: ``host`` is not a loopback address and ``api_key`` is empty.
    """
    if host not in LOOPBACK_HOSTS and not api_key:
        raise ValueError(
            f"host={host!r} would expose the model to every machine on the network with no password; "
            f"set an API key (api_key=... or ${API_KEY_ENV}) or keep host='127.0.0.1'."
        )


def served_name(model: str | os.PathLike) -> str:
    """The model id a server lists in ``/v1/models``: a catalog name as given, else the folder/file name."""
    text = str(model)
    if not Path(text).expanduser().exists():
        info = catalog.find(text)
        if info is not None:
            return info.name
    path = Path(text).expanduser()
    return path.stem if path.suffix == ".gguf" else path.name


def resolve_servable(model: str | os.PathLike, engine: str = "pytorch") -> Any:
    """``models.resolve``, refusing a folder without safetensors weights (pickle ``.bin`` can run code); with
    ``engine="llama.cpp"``, the GGUF file to run (``models.gguf_path``).

    Raises:
        ServeError: the folder has no complete safetensors weights.
        NotGGUFError: llama.cpp was asked to run something that is not a GGUF file.
    """
    from ..engines import check_engine
    from ..hub import folder_weights
    from ..models import gguf_path, resolve

    if check_engine(engine) == "llama.cpp":
        return gguf_path(model)[0]
    where = resolve(model)
    if not where.gguf_file and folder_weights(where.folder) != "safetensors":
        raise ServeError(f"{where.folder} has no complete safetensors weights; the server loads only safetensors "
                         "(pickle .bin files can run code): use a safetensors copy of the model.")
    return where


# --------------------------------------------------------------------------------------- the app


def _engine_for(model: Any, tokenizer: Any, limits: Limits | None, template_kwargs: dict) -> BaseEngine:
    """The PyTorch engine for a transformers model, the llama.cpp one for a :class:`~qwenlab.engines.LlamaCppModel`."""
    if getattr(model, "engine", None) == "llama.cpp":
        from .llamacpp import LlamaCppEngine

        return LlamaCppEngine(model, limits, template_kwargs)
    if tokenizer is None:
        raise TypeError("build_app: a PyTorch model needs its tokenizer (model, tokenizer = load_model(...)).")
    return Engine(model, tokenizer, limits, template_kwargs)


async def _read_body(request: Any) -> bytes:
    declared = request.headers.get("content-length", "")
    too_big = RequestError(f"The request body is larger than {MAX_BODY_BYTES // 1024 // 1024} MiB; send a shorter "
                           "conversation.", status=413, code="request_too_large")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_big
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > MAX_BODY_BYTES:
            raise too_big
    return bytes(body)


async def _admitted(request: Any, engine: BaseEngine, job: Job) -> None:
    """Wait until the engine accepted the prompt (llama.cpp counts it when a slot takes the request), watching
    the connection meanwhile; a refusal (too long) raises its 400 before any response starts."""
    watcher = asyncio.create_task(_cancel_on_disconnect(request, job))
    try:
        await engine.admit(job)
    finally:
        watcher.cancel()


async def _cancel_on_disconnect(request: Any, job: Job) -> None:
    """Cancel ``job`` as soon as its client disconnects (the body is read: the next ASGI message is that)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            job.cancel.set()
            return


def _delta(event: Any, index: int) -> dict:
    if event.kind == "reasoning":
        return reasoning_delta(event.text)
    if event.kind == "tool_call":
        return {"tool_calls": [event.call.to_openai(index)]}
    return {"content": event.text}


async def _stream(job: Job, chat: ChatRequest, name: str):
    """The SSE body: a role chunk, content / reasoning / tool-call chunks, the chunk with ``finish_reason``,
    the usage chunk (only with ``stream_options.include_usage``), then ``data: [DONE]``."""
    flag = chat.include_usage
    try:
        yield sse(chunk(job.id, name, {"role": "assistant", "content": ""}, with_usage_field=flag))
        calls = 0
        async for event in job.events():
            yield sse(chunk(job.id, name, _delta(event, calls), with_usage_field=flag))
            calls += event.kind == "tool_call"
        result = job.outcome
        if result.finish_reason in ("error", "cancelled"):
            yield sse({"error": {"message": _failure(result), "type": "server_error", "param": None, "code": None}})
            return
        yield sse(chunk(job.id, name, {}, result.finish_reason, with_usage_field=flag))
        if chat.include_usage:
            yield sse(usage_chunk(job.id, name, result.prompt_tokens, result.completion_tokens))
        yield SSE_DONE
    finally:  # the client went away (the task is cancelled) or the stream ended: never generate for nobody
        if job.result is None:
            job.cancel.set()


def _failure(result: Any) -> str:
    if result.finish_reason == "cancelled":
        return "The request was cancelled (the server is stopping)."
    return f"Generation failed ({result.detail}); the server keeps running: try again, or a shorter request."


async def _answer(request: Any, job: Job, name: str) -> Any:
    from fastapi.responses import JSONResponse

    watcher = asyncio.create_task(_cancel_on_disconnect(request, job))
    content: list[str] = []
    reasoning: list[str] = []
    calls: list[ToolCall] = []
    try:
        async for event in job.events():
            if event.call is not None:
                calls.append(event.call)
            else:
                (reasoning if event.kind == "reasoning" else content).append(event.text)
    finally:
        watcher.cancel()
        if job.result is None:
            job.cancel.set()
    result = job.outcome
    if result.finish_reason in ("error", "cancelled"):
        err = RequestError(_failure(result), status=500 if result.finish_reason == "error" else 503)
        return JSONResponse(err.payload(), status_code=err.status)
    return JSONResponse(completion(job.id, name, "".join(content), "".join(reasoning), calls, result.finish_reason,
                                   result.prompt_tokens, result.completion_tokens))


def _model_card(name: str, engine: BaseEngine, created: int) -> dict:
    limits = engine.limits
    return {"id": name, "object": "model", "created": created, "owned_by": "qwenlab",
            "context_length": engine.context,
            "qwenlab": {"answers_any_model_name": True, "engine": engine.engine, "slots": engine.workers,
                        "note": "The only model served here: a request that names any model gets this one.",
                        "max_prompt_tokens": engine.max_prompt_tokens, "max_tokens": limits.max_tokens,
                        "time_limit_s": limits.time_limit}}


def build_app(model: "CausalLM | LlamaCppModel", tokenizer: "PreTrainedTokenizerBase | None", name: str, *,
              limits: Limits | None = None, reasoning: str = "auto",
              api_key: str | None = None) -> Any:
    """The FastAPI app serving ``model``: ``/health``, ``/v1/models``, ``/v1/chat/completions``.

    Args:
        model, tokenizer: from :func:`qwenlab.load_model`; or a llama.cpp model
            (``load_model(name, engine="llama.cpp", slots=N)``) and None: then ``N`` requests generate at once.
        name: the model id ``/v1/models`` lists and replies carry; requests may name any model.
        limits: prompt / reply / time limits (:class:`~qwenlab.serve.engine.Limits`).
        reasoning: ``"on"`` / ``"off"`` / ``"auto"``: Qwen3's thinking default (``enable_thinking``);
            a request's ``chat_template_kwargs.enable_thinking`` or ``reasoning_effort`` overrides it. The
            thought comes back in both ``reasoning_content`` and ``reasoning`` (servers differ; clients read one).
        api_key: when set, every ``/v1`` request must send ``Authorization: Bearer <api_key>``.
    """
    try:
        from fastapi import APIRouter, Depends, FastAPI, Request
        from fastapi.responses import JSONResponse, StreamingResponse
        from starlette.exceptions import HTTPException
    except ImportError as err:
        raise ImportError(f"Serving needs FastAPI and uvicorn ({err}); install them: "
                          "pip install 'qwenlab[serve]'.") from err

    template_kwargs = {"on": {"enable_thinking": True}, "off": {"enable_thinking": False}}.get(reasoning, {})
    engine = _engine_for(model, tokenizer, limits, template_kwargs)
    card = _model_card(name, engine, int(time.time()))
    names_seen: set[str] = set()

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any):
        yield
        engine.cancel_all()

    app = FastAPI(title=f"qwenlab: {name}", lifespan=lifespan)
    app.state.engine = engine

    def error(err: RequestError) -> JSONResponse:
        return JSONResponse(err.payload(), status_code=err.status)

    @app.exception_handler(RequestError)
    async def _request_error(_request: Request, exc: RequestError) -> JSONResponse:
        return error(exc)

    @app.exception_handler(HTTPException)
    async def _http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return error(RequestError(str(exc.detail), status=exc.status_code))

    @app.exception_handler(Exception)
    async def _crash(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("request failed")
        return error(RequestError(f"The server failed on this request ({type(exc).__name__}: {exc}); it keeps "
                                  "running.", status=500))

    def check_key(request: Request) -> None:
        if not api_key:
            return
        sent = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(sent.encode(), api_key.encode()):
            raise RequestError("Missing or wrong API key: send the header 'Authorization: Bearer <key>' "
                               "(openai clients do it when given api_key=...).", status=401, code="invalid_api_key")

    def note_model_name(asked: str | None) -> None:
        if asked and asked != name and asked not in names_seen:
            names_seen.add(asked)
            log.info("A client asked for model %r: answered by %r, the only model served here.", asked, name)

    @app.get("/health")
    def _health() -> dict:
        return {"status": "ok", "model": name, **engine.status()}

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(check_key)])

    @v1.get("/models")
    def _models() -> dict:
        return {"object": "list", "data": [card]}

    @v1.get("/models/{model_id:path}")
    def _model(model_id: str) -> dict:
        return card

    @v1.post("/chat/completions")
    async def _chat(request: Request):
        chat = validate_chat_request(decode_json(await _read_body(request)))
        job = engine.prepare(chat)
        note_model_name(chat.model)
        engine.submit(job)
        await _admitted(request, engine, job)
        if chat.stream:
            return StreamingResponse(_stream(job, chat, name), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        return await _answer(request, job, name)

    app.include_router(v1)
    return app


# --------------------------------------------------------------------------------------- running it


def engine_options(engine: str, slots: int = 1, context: int | None = None) -> dict:
    """The llama.cpp options ``slots`` and ``context``, checked (PyTorch takes neither: it serves one
    request at a time with the model's own context).

    Raises:
        ValueError: an unknown engine, ``slots < 1``, or slots / context given to the PyTorch engine.
    """
    from ..engines import check_engine

    check_engine(engine)
    if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
        raise ValueError(f"slots must be a whole number >= 1, got {slots!r}.")
    if engine == "pytorch":
        if slots != 1 or context is not None:
            raise ValueError("slots and context are options of engine='llama.cpp'; the PyTorch engine serves one "
                             "request at a time with the model's own context.")
        return {}
    return {"slots": slots} | ({} if context is None else {"context": context})


def check_port(port: Any) -> None:
    """Raise ``ValueError`` unless ``port`` is a whole number from 0 (any free port) to 65535."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be a whole number from 0 to 65535 (0 picks a free one), got {port!r}.")


def _bind(host: str, port: int) -> socket.socket:
    check_port(port)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise ServeError(f"Cannot listen on {host}:{port} ({err.strerror or err}); another program (an earlier "
                         "server?) holds the port, or the address is not this machine's: stop it, or choose "
                         "another port (port=0 picks a free one).") from None
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


def _log_to_stderr(level: str) -> None:
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(level.upper() if level.upper() in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL") else "INFO")


def _announce(name: str, engine: BaseEngine, host: str, port: int) -> None:
    limits = engine.limits
    shown = f"[{host}]" if ":" in host else host
    log.info("Serving %s at http://%s:%d/v1 (engine %s, context %d tokens).", name, shown, port, engine.engine,
             engine.context)
    log.info("One model is loaded, so a request naming any model gets %s (as in LM Studio): clients set up for "
             "another name, e.g. model='qwen/Qwen1.5-0.5B-Chat-GGUF', work unchanged.", name)
    reply = f"at most {limits.max_tokens} tokens" if limits.max_tokens else "what the context leaves"
    at_once = "one generation at a time" if engine.workers == 1 else f"{engine.workers} generations at once"
    log.info("Limits: prompt <= %d tokens, reply <= %s, %.0f s per request, %d waiting; %s.",
             engine.max_prompt_tokens, reply, limits.time_limit, limits.max_waiting, at_once)


def run_server(model: str | os.PathLike, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *,
               name: str | None = None, reasoning: str = "auto", device: str = "auto", dtype: str = "auto",
               api_key: str | None = None, max_tokens: int | None = None, max_prompt_tokens: int | None = None,
               time_limit: float = DEFAULT_TIME_LIMIT, port_file: str | None = None, parent_pid: int | None = None,
               log_level: str = "info", engine: str = "pytorch", slots: int = 1, context: int | None = None) -> None:
    """Run the server in this process until Ctrl-C (what ``qwenlab serve`` does; ``start`` runs it as a child).

    Args:
        model: catalog name, local folder or ``.gguf`` file.
        engine: ``"pytorch"`` (one generation at a time) or ``"llama.cpp"`` (a GGUF file; ``slots`` requests
            generate at once by continuous batching, each with ``context`` tokens, default 4096).
        port: 0 picks a free port; it is written to ``port_file`` (JSON) as soon as it is bound.
        max_tokens, max_prompt_tokens, time_limit: the per-request limits (:class:`~qwenlab.serve.engine.Limits`).
        parent_pid: stop when that process dies (set by ``start``).

    Raises:
        ServeError: the port cannot be used or the folder has no safetensors weights.
        ValueError: a public host without an API key, or a limit out of range.
    """
    import uvicorn

    from ..models import load_model

    check_host(host, api_key)
    limits = Limits(max_tokens=max_tokens, max_prompt_tokens=max_prompt_tokens, time_limit=time_limit)
    options = engine_options(engine, slots, context)
    resolve_servable(model, engine)
    name = name or served_name(model)
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    if port_file:
        Path(port_file).write_text(json.dumps({"port": bound, "pid": os.getpid()}))
    _log_to_stderr(log_level)
    if engine == "llama.cpp":
        app = build_app(load_model(model, device=device, dtype=dtype, engine="llama.cpp", **options), None, name,
                        limits=limits, reasoning=reasoning, api_key=api_key)
    else:
        loaded, tokenizer = load_model(model, device=device, dtype=dtype)
        app = build_app(loaded, tokenizer, name, limits=limits, reasoning=reasoning, api_key=api_key)
    worker: BaseEngine = app.state.engine
    _announce(name, worker, host, bound)

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:  # Ctrl-C / SIGTERM: stop generating at once
            worker.cancel_all()
            super().handle_exit(sig, frame)

    server = _Server(uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=5))
    orphaned = threading.Event()
    if parent_pid:
        def parent_gone() -> None:
            orphaned.set()
            worker.cancel_all()
            server.should_exit = True
            threading.Timer(15.0, os._exit, args=(0,)).start()  # if something still blocks the shutdown

        _watch_parent(parent_pid, parent_gone)
    try:
        server.run(sockets=[sock])
    finally:
        worker.cancel_all()
    workdir = Path(port_file).parent if port_file else None
    if orphaned.is_set() and workdir is not None and workdir.name.startswith(WORKDIR_PREFIX):
        shutil.rmtree(workdir, ignore_errors=True)  # nobody is left to read the log
