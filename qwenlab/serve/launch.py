"""Starting a server from a notebook: :func:`start` runs ``qwenlab serve`` as a child process, waits
until it answers and returns a :class:`Server` handle; :func:`stop_all` (also at exit) stops them.

Taught in ``08_serve.ipynb``.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .app import (
    API_KEY_ENV,
    LOOPBACK_HOSTS,
    NO_KEY,
    WORKDIR_PREFIX,
    ServeError,
    check_host,
    check_port,
    engine_options,
    resolve_servable,
    served_name,
)
from .engine import DEFAULT_TIME_LIMIT, Limits

__all__ = ["Server", "start", "running_servers", "stop_all"]

# --------------------------------------------------------------------------------------- the handle

_RUNNING: list[Server] = []


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
        if self.log_path.parent.name.startswith(WORKDIR_PREFIX):
            shutil.rmtree(self.log_path.parent, ignore_errors=True)

    def __enter__(self) -> Server:
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
                   device: str, dtype: str, limits: Limits, engine: str = "pytorch", options: dict | None = None
                   ) -> list[str]:
    """The child's argv: never the API key (argv is visible to every user in ``ps``; it goes in the env)."""
    command = [sys.executable, "-m", "qwenlab.commands.serve", model, "--host", host, "--port", str(port),
               "--name", name, "--reasoning", reasoning, "--device", device, "--dtype", dtype,
               "--time-limit", repr(float(limits.time_limit)),
               "--port-file", port_file, "--parent-pid", str(os.getpid())]
    if limits.max_tokens is not None:
        command += ["--max-tokens", str(limits.max_tokens)]
    if limits.max_prompt_tokens is not None:
        command += ["--max-prompt-tokens", str(limits.max_prompt_tokens)]
    if engine != "pytorch":
        command += ["--engine", engine]
    for key, value in (options or {}).items():
        command += [f"--{key}", str(value)]
    return command


def _child_model(where: Any, model: str | os.PathLike) -> str:
    """What the child loads: the folder or GGUF file already found, or the catalog name when the model is more
    than a folder (``offline-thinker``: the offline model + a LoRA adapter + the Qwen3 tokenizer). For llama.cpp
    (``where`` is the GGUF file) the name as given, so a catalog model keeps its recommended sampling."""
    if isinstance(where, Path):
        path = Path(model).expanduser()
        return str(path.resolve()) if path.exists() else str(model)
    if where.adapter is not None or where.tokenizer_folder is not None:
        return str(where.name)
    return str(where.folder / where.gguf_file) if where.gguf_file else str(where.folder)


def _child_env(api_key: str | None) -> dict:
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])  # the folder holding qwenlab/
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env["HF_HUB_OFFLINE"] = "1"  # the model is on disk already: never wait for a hub
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.pop(API_KEY_ENV, None)
    if api_key:
        env[API_KEY_ENV] = api_key  # through the environment: argv is visible to every user in `ps`
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
          max_tokens: int | None = None, max_prompt_tokens: int | None = None,
          time_limit: float = DEFAULT_TIME_LIMIT, timeout: float = 600.0, engine: str = "pytorch", slots: int = 1,
          context: int | None = None) -> Server:
    """Start an OpenAI-compatible server for ``model`` in a child process and wait until it answers.

    Args:
        model: a catalog name (``"Qwen/Qwen3-0.6B"``, ``"offline"``), a local folder or a ``.gguf`` file.
        host: ``"127.0.0.1"`` (default): only this machine can connect. Another address needs ``api_key``.
        port: 0 (default) picks a free port; LM Studio uses 1234, Ollama 11434.
        api_key: require ``Authorization: Bearer <api_key>`` on every request.
        name: the model id ``/v1/models`` lists (default: the catalog name, or the folder name). One
            model is served, so requests naming any model get it (as in LM Studio).
        reasoning: Qwen3's thinking default: ``"auto"`` (template default), ``"on"``, ``"off"``.
        device, dtype: as in :func:`qwenlab.load_model`.
        max_tokens: the most tokens one reply may have (default: what the context leaves after the prompt).
        max_prompt_tokens: the longest prompt accepted (default: the context minus one); longer gets a 400.
        time_limit: seconds one request may generate before it ends with ``finish_reason "length"``.
        timeout: seconds to wait for the model to load.
        engine: ``"pytorch"`` (default; one request generates at a time) or ``"llama.cpp"`` (a GGUF file, e.g.
            ``"offline"``: several times faster on a CPU, and ``slots`` requests generate at once by llama.cpp's
            continuous batching).
        slots, context: llama.cpp only: conversations served at once, and tokens per conversation (4096).

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
    check_port(port)
    limits = Limits(max_tokens=max_tokens, max_prompt_tokens=max_prompt_tokens, time_limit=time_limit)
    options = engine_options(engine, slots, context)
    where = resolve_servable(model, engine)  # fails here, fast and clearly, for an unknown, missing or unsafe model
    if host in LOOPBACK_HOSTS:
        _bypass_proxy_for_loopback()
    name = name or served_name(model)
    child_model = _child_model(where, model)
    workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
    log_path, port_file = workdir / "server.log", workdir / "port.json"
    began = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            _child_command(child_model, host, port, str(port_file), name, reasoning, device, dtype, limits, engine,
                           options),
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
