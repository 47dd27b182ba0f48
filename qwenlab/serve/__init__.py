"""Serve a local model behind an OpenAI-compatible API on 127.0.0.1 (what LM Studio and Ollama do).

``start(model)`` runs the server as a child process, waits until it answers and returns a
:class:`Server` handle (``base_url``, ``model``, ``client()``, ``stop()``). ``qwenlab serve MODEL`` runs
the same server in the foreground. Any OpenAI client (the ``openai`` package, AutoGen, LangChain,
curl) then talks to ``server.base_url``.

What does the work: qwenlab's own loop around ``model.generate`` (:mod:`~qwenlab.serve.engine`) or, with
``engine="llama.cpp"``, llama.cpp's server code on a GGUF file (:mod:`~qwenlab.serve.llamacpp`, several
requests at once by continuous batching); either way the
server controls what a wrapper around ``transformers serve`` could not: a client that goes away stops its
generation within one token (streaming or not); prompts are checked against the context before any
compute; every reply has a token cap and a time limit; ``stop`` strings are cut; Qwen's ``<tool_call>``
blocks become OpenAI ``tool_calls``; a Qwen3 thought comes back apart from the answer, under both names
clients read (``reasoning_content`` and ``reasoning``), and either switch turns it off per request
(``chat_template_kwargs.enable_thinking``, ``reasoning_effort: "none"``); unsupported OpenAI fields get a 400 that names them instead of being
ignored; streams follow OpenAI's chunk shapes (``finish_reason`` in the last choice chunk, usage in its own
chunk when ``stream_options.include_usage`` asks, ``data: [DONE]``). One model is served, and a request
naming any model gets it (LM Studio does the same), so a client set up for LM Studio works unchanged.

Safe defaults: binds 127.0.0.1; refuses another address unless an API key is set (the key reaches the
child process through the environment, never its command line, which every user sees in ``ps``);
safetensors only; no ``trust_remote_code``; with a proxy set in the environment, the loopback names are
added to ``NO_PROXY`` so clients reach the local server directly. The child process stops with ``stop()``,
at interpreter exit, and by itself when its parent dies (a killed or restarted notebook kernel), so no
orphan keeps the port.

Modules: ``protocol`` (request checks, OpenAI response shapes), ``replies`` (model text → content,
reasoning, tool calls), ``engine`` (limits, the worker threads, the PyTorch engine), ``llamacpp`` (the llama.cpp engine: a GGUF
file, ``slots`` requests at once), ``app`` (the server process: the HTTP
app, ``run_server``), ``launch`` (the notebook side: ``start``, the :class:`Server` handle,
``stop_all``). ``qwenlab serve`` is ``qwenlab.commands.serve``.

Taught in ``08_serve.ipynb``.
"""

from __future__ import annotations

from .app import (
    API_KEY_ENV,
    DEFAULT_PORT,
    LOOPBACK_HOSTS,
    NO_KEY,
    ServeError,
    build_app,
    check_host,
    check_port,
    run_server,
    served_name,
)
from .engine import DEFAULT_TIME_LIMIT, BaseEngine, Engine, Limits, context_length
from .llamacpp import LlamaCppEngine
from .launch import Server, running_servers, start, stop_all
from .protocol import ChatRequest, RequestError, validate_chat_request
from .replies import ReplyParser, ToolCall, parse_tool_calls

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_TIME_LIMIT",
    "LOOPBACK_HOSTS",
    "NO_KEY",
    "API_KEY_ENV",
    "ServeError",
    "RequestError",
    "Server",
    "start",
    "running_servers",
    "stop_all",
    "served_name",
    "check_host",
    "check_port",
    "validate_chat_request",
    "ChatRequest",
    "Limits",
    "Engine",
    "BaseEngine",
    "LlamaCppEngine",
    "context_length",
    "ToolCall",
    "ReplyParser",
    "parse_tool_calls",
    "build_app",
    "run_server",
]
