"""The llama.cpp engine: a GGUF file run in this process by llama.cpp's server code (the wheel ``xllamacpp``).

No compiler and no separate program: ``pip install xllamacpp`` brings prebuilt CPU wheels for Windows, macOS
and Linux (the course installs it with the ``offline`` extra). The model keeps its GGUF quantization in memory
(Q4_K_M: about 4.5 bits per weight) and llama.cpp's kernels multiply with it directly — the PyTorch engine
de-quantizes the same file to fp32 on load, so every generated token reads about 6–7× more bytes.

What is the same as the PyTorch engine: the chat template is the model's own (the one stored in the GGUF),
the reply stops at ``<|im_end|>``, the text keeps ``<think>…</think>`` (parse it with
:func:`qwenlab.split_thinking`), catalog models get Qwen's recommended sampling, ``do_sample=False`` is
greedy, and the parameters keep their transformers names (``max_new_tokens``, ``repetition_penalty``).

Taught in ``08_serve.ipynb`` and ``09_performance.ipynb``.
"""

from __future__ import annotations

import os
import queue
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..catalog import find, recommended_sampling
from ..generation import DEFAULT_MAX_NEW_TOKENS, ContextTooLongError, Messages, as_messages
from ..thinking import ThinkingSplit, split_thinking

__all__ = [
    "ENGINES",
    "EngineError",
    "EngineNotInstalledError",
    "EngineReply",
    "LlamaCppModel",
    "LlamaCppStream",
    "NotGGUFError",
    "check_engine",
    "is_gguf",
    "physical_cores",
]

ENGINES = ("pytorch", "llama.cpp")
DEFAULT_CONTEXT = 4096
GGUF_MAGIC = b"GGUF"

# qwenlab's (transformers') parameter name -> the name in llama.cpp's chat request; the same name if absent
_RENAMED = {"max_new_tokens": "max_tokens", "repetition_penalty": "repeat_penalty"}
PARAMS = ("max_new_tokens", "max_tokens", "temperature", "top_p", "top_k", "min_p", "repetition_penalty",
          "presence_penalty", "frequency_penalty", "seed", "stop", "do_sample", "enable_thinking")
_SAMPLING_ONLY = ("temperature", "top_p", "top_k", "min_p")


class EngineNotInstalledError(ImportError):
    """The llama.cpp engine's package ``xllamacpp`` is not importable; the message says how to install it."""


class NotGGUFError(ValueError):
    """The llama.cpp engine was given something that is not a GGUF file."""


class EngineError(RuntimeError):
    """llama.cpp refused a request or could not load the file (its own message, on one line)."""


def check_engine(engine: str) -> str:
    """The engine's name, checked: ``"pytorch"`` or ``"llama.cpp"`` (else a ValueError naming both)."""
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r}: use one of {', '.join(repr(e) for e in ENGINES)}.")
    return engine


def physical_cores() -> int:
    """CPU cores (not hardware threads): llama.cpp's decode is memory-bound, and a second thread per core
    only competes for the same caches."""
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def is_gguf(path: str | os.PathLike) -> bool:
    """True when ``path`` is a file that starts with GGUF's magic bytes ``GGUF``."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == GGUF_MAGIC
    except (IsADirectoryError, PermissionError, FileNotFoundError):
        return False


def _import_xllamacpp() -> Any:
    try:
        import xllamacpp
    except ImportError as err:
        raise EngineNotInstalledError(
            f"The llama.cpp engine needs the package xllamacpp, which does not import here ({err}). "
            "Install it: pip install xllamacpp (or reinstall the course: make install). Until then use "
            "engine='pytorch'."
        ) from err
    return xllamacpp


def _check_gguf(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: give the path of a .gguf file.")
    if path.is_dir():
        raise NotGGUFError(f"{path} is a folder, not a GGUF file: the llama.cpp engine runs one .gguf file "
                           "(a transformers folder runs with engine='pytorch').")
    if not is_gguf(path):
        raise NotGGUFError(f"{path} is not a GGUF file (it does not start with the bytes 'GGUF'): the llama.cpp "
                           "engine runs .gguf files only.")


@dataclass
class EngineReply:
    """One reply of the llama.cpp engine.

    Attributes:
        text: what the model wrote, ``<think>…</think>`` included (``<|im_end|>`` not included).
        finish_reason: ``stop`` (the model ended its turn), ``length`` (cut by max_new_tokens) or
            ``stopped`` (you stopped it).
        prompt_tokens, completion_tokens: as llama.cpp counted them (the chat template applied).
        cached_prompt_tokens: prompt tokens llama.cpp reused from the previous request (not computed again).
        prompt_seconds, decode_seconds: llama.cpp's own timings of the prompt and of the new tokens.
        seconds: wall time of the whole request, seen from Python.
        params: the request's sampling fields, with llama.cpp's names.
    """

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    cached_prompt_tokens: int = 0
    prompt_seconds: float = 0.0
    decode_seconds: float = 0.0
    seconds: float = 0.0
    params: dict = field(default_factory=dict)

    @property
    def tokens_per_second(self) -> float:
        """Decode speed: new tokens per second of decoding (the prompt not counted)."""
        seconds = self.decode_seconds or self.seconds
        return self.completion_tokens / seconds if seconds > 0 else 0.0

    @property
    def split(self) -> ThinkingSplit:
        """The thought and the answer (:func:`qwenlab.split_thinking` on :attr:`text`)."""
        return split_thinking(self.text)

    def __str__(self) -> str:
        return self.text


def _request_error(error: dict) -> Exception:
    message = " ".join(str(error.get("message", error)).split())
    if error.get("type") == "exceed_context_size_error":
        return ContextTooLongError(f"llama.cpp: {message}", int(error.get("n_prompt_tokens", 0)),
                                   int(error.get("n_ctx", 0)))
    return EngineError(f"llama.cpp refused the request: {message}")


def _fill_reply(reply: EngineReply, answer: dict) -> None:
    """Counts and timings from llama.cpp's answer (a whole reply, or the last chunk of a stream)."""
    usage = answer.get("usage") or {}
    timings = answer.get("timings") or {}
    reply.prompt_tokens = int(usage.get("prompt_tokens", reply.prompt_tokens))
    reply.completion_tokens = int(usage.get("completion_tokens", reply.completion_tokens))
    reply.cached_prompt_tokens = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0))
    reply.prompt_seconds = float(timings.get("prompt_ms", 0.0)) / 1000
    reply.decode_seconds = float(timings.get("predicted_ms", 0.0)) / 1000


_END = object()


class LlamaCppStream:
    """A reply being generated: iterate for its text pieces; :meth:`finish` gives the :class:`EngineReply`.

    llama.cpp runs the request in a worker thread and hands each piece over a queue. :meth:`stop` ends
    the reply after the current token (what was written is kept, ``finish_reason="stopped"``); leaving
    the loop early (``break``, Ctrl-C) stops it the same way.
    """

    def __init__(self, server: Any, body: dict):
        self.reply: EngineReply | None = None
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._pieces: list[str] = []
        self._finish_reason = "stop"
        self._last: dict = {}
        self._body = body
        self._start = time.perf_counter()
        self._thread = threading.Thread(target=self._work, args=(server,), daemon=True, name="qwenlab-llama.cpp")
        self._thread.start()

    def _work(self, server: Any) -> None:
        try:
            server.handle_chat_completions(self._body, self._on_chunk)
        except BaseException as err:  # handed to the reading thread, raised there
            self._queue.put(err)
        finally:
            self._queue.put(_END)

    def _on_chunk(self, chunk: dict) -> bool:
        self._queue.put(chunk)
        return self._stop.is_set()  # True: llama.cpp stops this request

    def stop(self) -> None:
        """End the reply after the current token (the text so far is kept)."""
        self._stop.set()

    def _take(self, item: Any) -> str | None:
        """One item from the worker: a text piece, or None (bookkeeping); raises llama.cpp's errors."""
        if isinstance(item, BaseException):
            raise item
        if "error" in item:
            raise _request_error(item["error"])
        if item.get("usage") or item.get("timings"):
            self._last = item
        for choice in item.get("choices") or []:
            if choice.get("finish_reason"):
                self._finish_reason = choice["finish_reason"]
            piece = (choice.get("delta") or {}).get("content")
            if piece:
                self._pieces.append(piece)
                return piece
        return None

    def __iter__(self) -> Iterator[str]:
        """Text pieces as llama.cpp writes them (thought and tags included)."""
        if self.reply is not None:
            return
        try:
            while (item := self._queue.get()) is not _END:
                piece = self._take(item)
                if piece:
                    yield piece
        except (KeyboardInterrupt, GeneratorExit):
            self.stop()
            self._thread.join()
            self._complete()
            raise
        self._thread.join()
        self._complete()

    def _complete(self) -> None:
        if self.reply is not None:
            return
        finish = "stopped" if self._stop.is_set() and self._finish_reason == "stop" else self._finish_reason
        reply = EngineReply("".join(self._pieces), finish, prompt_tokens=0, completion_tokens=len(self._pieces),
                            seconds=time.perf_counter() - self._start,
                            params={k: v for k, v in self._body.items() if k not in ("messages", "stream")})
        _fill_reply(reply, self._last)  # absent when stopped early: the pieces counted then
        self.reply = reply

    def finish(self) -> EngineReply:
        """Wait for the end of the reply (consuming what is left) and return it."""
        for _ in self:
            pass
        assert self.reply is not None
        return self.reply

    @property
    def text(self) -> str:
        """The text received so far."""
        return "".join(self._pieces)


class LlamaCppModel:
    """A GGUF chat model run by llama.cpp (through ``xllamacpp``), loaded once and ready to reply.

    Args:
        path: a ``.gguf`` file.
        name: what to call it (default: the file name); a catalog name gives Qwen's recommended sampling.
        context: tokens one conversation may hold, prompt and reply together (default 4096).
        threads: CPU threads (default: the physical cores, :func:`physical_cores`).
        seed: the seed of every reply that does not give its own (None: a new random seed each time).
        slots: conversations served at once (llama.cpp's continuous batching; the KV cache holds
            ``slots × context`` tokens).
        recommended: default sampling (transformers names) under each request's own parameters; None
            takes the catalog's recommendation for ``name`` (nothing outside the catalog: llama.cpp's
            defaults, or the GGUF's).

    Example:
        >>> llm = qwenlab.load_model("offline", engine="llama.cpp")                  # doctest: +SKIP
        >>> llm.chat("What is the capital of France?", do_sample=False).text          # doctest: +SKIP
        'The capital of France is Paris.'
        >>> for piece in llm.chat_stream("讲个笑话"):                                  # doctest: +SKIP
        ...     print(piece, end="", flush=True)

    Taught in ``08_serve.ipynb`` and ``09_performance.ipynb``.
    """

    engine = "llama.cpp"

    def __init__(self, path: str | os.PathLike, *, name: str | None = None, context: int = DEFAULT_CONTEXT,
                 threads: int | None = None, seed: int | None = None, slots: int = 1,
                 recommended: dict | None = None):
        self.path = Path(path).expanduser()
        _check_gguf(self.path)
        xlc = _import_xllamacpp()
        if context < 16 or slots < 1:
            raise ValueError(f"context={context} and slots={slots}: use context >= 16 and slots >= 1.")
        self.name = name or self.path.name
        self.context = context
        self.threads = threads or physical_cores()
        self.seed = seed
        self.slots = slots
        self.recommended = dict(recommended) if recommended is not None else self._catalog_sampling(None)
        self._http_key = secrets.token_urlsafe(24)
        start = time.perf_counter()
        self._server = xlc.Server(self._params(xlc))
        self.load_seconds = time.perf_counter() - start

    def _params(self, xlc: Any) -> Any:
        params = xlc.CommonParams()
        params.model.path = str(self.path)
        params.n_ctx = self.context * self.slots
        params.n_parallel = self.slots
        params.cpuparams.n_threads = self.threads
        params.cpuparams_batch.n_threads = self.threads
        params.use_jinja = True  # the chat template stored in the GGUF, run as Jinja like transformers does
        params.reasoning_format = xlc.common_reasoning_format.COMMON_REASONING_FORMAT_NONE  # <think> stays in text
        params.verbosity = -1  # llama.cpp's log lines off; errors come back as answers
        params.hostnames = ["127.0.0.1"]  # xllamacpp always starts llama.cpp's own HTTP server: loopback only,
        params.api_keys = [self._http_key]  # and locked with a key only this object knows (see http_endpoint)
        return params

    @property
    def http_endpoint(self) -> tuple[str, str]:
        """llama.cpp's own OpenAI-compatible HTTP server for this model: ``(base_url, api_key)``.

        ``xllamacpp`` starts it with every model, on 127.0.0.1 at a free port; qwenlab locks it with a random
        key, so nobody else on this machine can use it. ``qwenlab bench serve --baseline`` measures it as
        "llama.cpp alone" next to ``qwenlab serve --engine llama.cpp`` (taught in ``08_serve.ipynb``).
        """
        return f"{self._server.listening_address}/v1", self._http_key

    def _catalog_sampling(self, thinking: bool | None) -> dict:
        info = find(self.name)
        return recommended_sampling(info.name, thinking=thinking) if info else {}

    def request(self, messages: str | Messages, **params: Any) -> dict:
        """The chat request sent to llama.cpp: the messages and the sampling (recommended, then yours).

        ``do_sample=False`` is greedy (``temperature=0``); ``enable_thinking`` goes to the chat template;
        ``repetition_penalty`` counts the whole context like transformers (llama.cpp's default: the last 64).
        """
        unknown = sorted(set(params) - set(PARAMS))
        if unknown:
            raise ValueError(f"unknown parameter(s) {', '.join(unknown)} for the llama.cpp engine; it takes "
                             f"{', '.join(PARAMS)}.")
        thinking = params.get("enable_thinking")
        base = self.recommended if thinking is None else (self._catalog_sampling(thinking) or self.recommended)
        merged = {**base, **params}
        if merged.get("do_sample") is False:
            merged = {k: v for k, v in merged.items() if k not in _SAMPLING_ONLY} | {"temperature": 0.0}
        body: dict[str, Any] = {"messages": as_messages(messages), "max_tokens": DEFAULT_MAX_NEW_TOKENS}
        for key, value in merged.items():
            if key == "enable_thinking":
                body["chat_template_kwargs"] = {"enable_thinking": bool(value)}
            elif key != "do_sample" and value is not None:
                body[_RENAMED.get(key, key)] = value
        if "repeat_penalty" in body:
            body["repeat_last_n"] = self.context
        if "seed" not in body and self.seed is not None:
            body["seed"] = self.seed
        return body

    def chat(self, messages: str | Messages, **params: Any) -> EngineReply:
        """The whole reply to ``messages`` (a string or a list of chat messages), in one call.

        Raises:
            ContextTooLongError: the prompt does not fit ``context``.
            EngineError: llama.cpp refused the request.
        """
        body = self.request(messages, **params)
        start = time.perf_counter()
        answer = self._server.handle_chat_completions(body)
        if "error" in answer:
            raise _request_error(answer["error"])
        choice = answer["choices"][0]
        reply = EngineReply(choice["message"].get("content") or "", choice.get("finish_reason") or "stop", 0, 0,
                            seconds=time.perf_counter() - start,
                            params={k: v for k, v in body.items() if k != "messages"})
        _fill_reply(reply, answer)
        return reply

    def chat_stream(self, messages: str | Messages, **params: Any) -> LlamaCppStream:
        """The reply to ``messages`` as it is written: iterate for text pieces, then ``.finish()`` or ``.reply``
        for the :class:`EngineReply` (finish_reason, token counts, timings)."""
        body = self.request(messages, **params) | {"stream": True, "stream_options": {"include_usage": True}}
        return LlamaCppStream(self._server, body)

    def handle(self, body: dict[str, Any], on_chunk: Any = None) -> Any:
        """Send a raw OpenAI-style chat body to llama.cpp (for the server and the bench, which need fields
        :meth:`request` does not build: ``tools``, ``cache_prompt``, ``ignore_eos``, ``return_progress``).

        With ``on_chunk`` the reply streams: llama.cpp calls it with each chunk and this returns when it
        is done; without it, the whole answer (a dict) is returned.
        """
        if on_chunk is None:
            return self._server.handle_chat_completions(body)
        return self._server.handle_chat_completions(body, on_chunk)

    def complete(self, body: dict[str, Any]) -> dict:
        """Send a raw text-completion body to llama.cpp (its ``/completion``: a prompt of text or token ids,
        ``n_probs``, ``logit_bias``, ``cache_prompt``) and return its answer; the held-out quality measure
        (``qwenlab.quant.quality``) reads next-token log-probabilities this way.

        Raises:
            EngineError: llama.cpp refused the request.
        """
        answer = self._server.handle_completions(body)
        if "error" in answer:
            raise _request_error(answer["error"])
        return answer

    def close(self) -> None:
        """Free the model's memory now (otherwise when the object is garbage-collected)."""
        self.__dict__.pop("_server", None)

    def __enter__(self) -> LlamaCppModel:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"LlamaCppModel({self.name!r}, path={str(self.path)!r}, context={self.context}, "
                f"threads={self.threads}, slots={self.slots})")
