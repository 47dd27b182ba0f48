"""The model side of the server: requests wait in line and generate in worker threads (one at a time with
PyTorch; with llama.cpp as many as it has slots, :mod:`~qwenlab.serve.llamacpp`), under limits a client
cannot lift.

- a prompt longer than ``Limits.max_prompt_tokens`` (default: the model's context minus one) is refused
  before any compute, with the numbers;
- a reply gets at most ``Limits.max_tokens`` tokens (default: what the context leaves after the prompt);
  a request may ask for fewer;
- a generation that runs longer than ``Limits.time_limit`` seconds ends (``finish_reason "length"``);
- a cancelled request (its client went away) stops within one token, and one still waiting in line
  never starts.

Every generated token passes one :class:`_Watch` (a stopping criterion): it decodes the token, feeds
the text to the :class:`~qwenlab.serve.replies.ReplyParser`, hands the events to the request and decides
on the same token whether to stop (a stop string, the time limit, a cancel). In transformers 5.24 the
stopping criteria run before a streamer's ``put``, so a streamer would see a stop string one token late.

Taught in ``08_serve.ipynb``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..generation import PieceStreamer, end_of_turn_ids, generation_config
from ..thinking import prompt_opens_thinking, supports_thinking
from .protocol import ChatRequest, RequestError, completion_id
from .replies import ReplyEvent, ReplyParser

if TYPE_CHECKING:
    from ..modelfacts import CausalLM
    from transformers import PreTrainedTokenizerBase

__all__ = ["DEFAULT_TIME_LIMIT", "DEFAULT_MAX_WAITING", "Limits", "Finished", "Job", "BaseEngine", "Engine",
           "context_length"]

DEFAULT_TIME_LIMIT = 300.0  # seconds one request may generate (~4000 tokens of the offline model on 2 cores)
DEFAULT_MAX_WAITING = 64  # requests in line before new ones get 503
log = logging.getLogger("qwenlab.serve")


@dataclass(frozen=True)
class Limits:
    """What one request may cost the server.

    Attributes:
        max_tokens: the most tokens one reply may have (None: what the model's context leaves after the
            prompt). A request asking for more gets this many (its ``finish_reason`` is then ``"length"``).
        max_prompt_tokens: the longest prompt accepted (None: the context minus one); longer prompts get
            a 400 with the numbers.
        time_limit: seconds one generation may run; then it ends with ``finish_reason "length"``.
        max_waiting: requests allowed to wait in line; more get 503 ("busy, try again").
    """

    max_tokens: int | None = None
    max_prompt_tokens: int | None = None
    time_limit: float = DEFAULT_TIME_LIMIT
    max_waiting: int = DEFAULT_MAX_WAITING

    def __post_init__(self) -> None:
        for key in ("max_tokens", "max_prompt_tokens", "max_waiting"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{key} must be a whole number >= 1 (or None for the default), got {value!r}.")
        if isinstance(self.time_limit, bool) or not isinstance(self.time_limit, (int, float)) or self.time_limit <= 0:
            raise ValueError(f"time_limit must be a number of seconds > 0, got {self.time_limit!r}.")


def context_length(model: CausalLM) -> int:
    """The model's context window in tokens (``config.max_position_embeddings``; 32768 for Qwen2.5-0.5B)."""
    config = model.config
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return 2048  # an old config without one: a safe, small window


@dataclass(frozen=True)
class Finished:
    """How a generation ended: ``finish_reason`` is OpenAI's (``stop``, ``length``, ``tool_calls``) or
    ``cancelled`` / ``error`` (then ``detail`` says why)."""

    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float = 0.0
    detail: str = ""


class Job:
    """One request's generation: its prompt, its settings, its events and the flag that cancels it.

    The worker thread calls :meth:`emit`; the request handler reads :meth:`events` on its event loop.
    ``work`` is what the engine runs (the PyTorch engine: ``input_ids`` and the generation config; the
    llama.cpp engine: the chat request for llama.cpp).
    """

    def __init__(self, prompt_tokens: int, max_new_tokens: int | None, parser: ReplyParser, seed: int | None = None,
                 model_asked: str | None = None, work: Any = None):
        self.id = completion_id()
        self.prompt_tokens = prompt_tokens
        self.max_new_tokens = max_new_tokens
        self.parser, self.seed, self.model_asked, self.work = parser, seed, model_asked, work
        self.cancel = threading.Event()
        self.result: Finished | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue | None = None
        self._admission: asyncio.Future | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Deliver events to ``loop`` (the server's event loop)."""
        self._loop, self._queue, self._admission = loop, asyncio.Queue(), loop.create_future()

    def _call(self, fn: Any, *args: Any) -> None:
        if self._loop is None:
            return
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            pass

    def stop_reason(self, deadline: float) -> str | None:
        """Why generation must stop now: the client went away, a stop string was written, or the time limit
        (``deadline``, a ``time.monotonic()`` value) passed; None to go on. Both engines ask after each token."""
        if self.cancel.is_set():
            return "cancelled"
        if self.parser.stopped:
            return "stop string"
        if time.monotonic() > deadline:
            return "time limit"
        return None

    def emit(self, item: ReplyEvent | Finished) -> None:
        """Hand an event to the request (thread-safe); dropped when the server is shutting down."""
        if self._queue is None:
            return
        if isinstance(item, Finished):
            self.admit(None)
        self._call(self._queue.put_nowait, item)

    def admit(self, refusal: RequestError | None) -> None:
        """Say (thread-safe, once) whether the engine accepted the prompt: None, or the error to answer with.
        An engine that counts the prompt only when it starts (llama.cpp) calls it from its worker."""
        self._call(self._settle, refusal)

    def _settle(self, refusal: RequestError | None) -> None:
        if self._admission is not None and not self._admission.done():
            self._admission.set_result(refusal)

    async def admitted(self) -> None:
        """Wait until the engine accepted the prompt.

        Raises:
            RequestError: the engine refused it (e.g. too long for the context, with both numbers).
        """
        assert self._admission is not None, "submit the job first"
        refusal = await self._admission
        if refusal is not None:
            raise refusal

    @property
    def outcome(self) -> Finished:
        """How the job ended (once :meth:`events` is used up)."""
        if self.result is None:
            raise RuntimeError(f"{self.id} has not finished yet; read its events first.")
        return self.result

    async def events(self) -> AsyncIterator[ReplyEvent]:
        """The reply's events as they are generated; afterwards :attr:`result` says how it ended."""
        assert self._queue is not None, "submit the job first"
        while True:
            item = await self._queue.get()
            if isinstance(item, Finished):
                self.result = item
                return
            yield item


class _Watch:
    """A stopping criterion that sees every new token: decodes it, parses the text, emits the events,
    and stops generation on a stop string, the time limit or a cancel (on this very token)."""

    def __init__(self, job: Job, tokenizer: PreTrainedTokenizerBase, deadline: float):
        self.job, self.deadline = job, deadline
        self.pieces = PieceStreamer(tokenizer)
        self.count = 0
        self.why: str | None = None

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        self.count += 1
        self._send(self.job.parser.feed(self.pieces.add([int(input_ids[0, -1])])))
        self.why = self.why or self.job.stop_reason(self.deadline)
        return torch.full((input_ids.shape[0],), self.why is not None, dtype=torch.bool, device=input_ids.device)

    def _send(self, events: list[ReplyEvent]) -> None:
        for event in events:
            self.job.emit(event)

    def finish(self, eos: set[int], seconds: float) -> Finished:
        """Flush what the parser held back and say why generation ended."""
        if self.why != "cancelled":
            self._send(self.job.parser.feed(self.pieces.flush()) + self.job.parser.close())
        if self.why == "cancelled":
            reason = "cancelled"
        elif self.job.parser.tool_calls:
            reason = "tool_calls"
        elif self.why == "stop string" or self.pieces.ids and self.pieces.ids[-1] in eos:
            reason = "stop"
        else:
            reason = "length"
        detail = self.why or ("max_tokens reached" if reason == "length" else "")
        return Finished(reason, self.job.prompt_tokens, self.count, seconds, detail)


class BaseEngine:
    """What every engine behind the server shares: the limits, the line of waiting requests, the worker
    threads (``workers`` jobs generate at once), cancelling, ``/health``'s status and the log.

    A subclass sets ``context`` and ``thinking`` and implements :meth:`prepare` (a request -> a :class:`Job`)
    and :meth:`_generate` (run one job in a worker thread, emitting its events; return how it ended).
    """

    engine = "base"
    context: int
    thinking: bool

    def __init__(self, limits: Limits | None = None, template_kwargs: dict | None = None, workers: int = 1):
        self.limits = limits or Limits()
        self.template_kwargs = dict(template_kwargs or {})
        self.workers = workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="qwenlab-generate")
        self._lock = threading.Lock()
        self._pending: set[Job] = set()
        self._running: list[Job] = []

    def prepare(self, request: ChatRequest) -> Job:
        """Turn a checked request into a :class:`Job` (raises :class:`RequestError` for a refused one)."""
        raise NotImplementedError

    def _generate(self, job: Job) -> Finished:
        raise NotImplementedError

    async def admit(self, job: Job) -> None:
        """Wait until the engine accepted ``job``'s prompt (raises its :class:`RequestError` when refused).
        Engines that check the prompt in :meth:`prepare` accept at once."""
        return None

    # ------------------------------------------------------------------------------ limits

    @property
    def max_prompt_tokens(self) -> int:
        """The longest prompt accepted (the context minus one, or less when configured)."""
        own = self.context - 1
        return own if self.limits.max_prompt_tokens is None else min(own, self.limits.max_prompt_tokens)

    def reply_budget(self, prompt_tokens: int, asked: int | None = None) -> int:
        """How many tokens a reply may have: what the context leaves, the server's cap, the request's ask."""
        budget = self.context - prompt_tokens
        if self.limits.max_tokens is not None:
            budget = min(budget, self.limits.max_tokens)
        return budget if asked is None else min(asked, budget)

    def _check_prompt(self, prompt_tokens: int) -> None:
        limit = self.max_prompt_tokens
        if prompt_tokens > limit:
            why = (f"the model's context is {self.context} tokens, and at least one is needed for the reply"
                   if limit == self.context - 1 else f"the server's --max-prompt-tokens; the context is {self.context}")
            raise RequestError(f"The prompt has {prompt_tokens} tokens; this server accepts at most {limit} ({why}). "
                               "Shorten the conversation (drop old turns) or the documents in it.",
                               param="messages", code="context_length_exceeded")

    # ------------------------------------------------------------------------------ running

    def submit(self, job: Job) -> None:
        """Queue ``job`` (call from the event loop that reads its events).

        Raises:
            RequestError: 503 when ``Limits.max_waiting`` requests are already waiting.
        """
        with self._lock:
            waiting = len(self._pending) - len(self._running)
            if waiting >= self.limits.max_waiting:
                raise RequestError(f"The server is busy: {waiting} requests are waiting for the model. "
                                   "Try again in a minute.", status=503, code="server_busy")
            self._pending.add(job)
        job.bind(asyncio.get_running_loop())
        self._pool.submit(self._run, job)

    @property
    def current(self) -> Job | None:
        """The job generating now, the oldest when several are (None when the model is idle)."""
        with self._lock:
            return self._running[0] if self._running else None

    @property
    def running(self) -> list[Job]:
        """The jobs generating now (at most ``workers``)."""
        with self._lock:
            return list(self._running)

    @property
    def pending(self) -> list[Job]:
        """Jobs submitted and not finished yet (the one generating included)."""
        with self._lock:
            return list(self._pending)

    def status(self) -> dict:
        """``{"generating": bool, "waiting": int, "running": int, "slots": int}``: what ``/health`` reports."""
        with self._lock:
            running = len(self._running)
            return {"generating": running > 0, "waiting": len(self._pending) - running, "running": running,
                    "slots": self.workers}

    def cancel_all(self) -> None:
        """Cancel every job (server shutdown): the running one stops within a token, waiting ones never start."""
        with self._lock:
            jobs = list(self._pending)
            waiting = [job for job in jobs if job not in self._running]
            self._pending.difference_update(waiting)
        for job in jobs:
            job.cancel.set()
        for job in waiting:  # their turn never comes: answer their requests now
            job.emit(Finished("cancelled", job.prompt_tokens, 0, 0.0, "the server is stopping"))
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self, job: Job) -> None:
        with self._lock:
            if job.cancel.is_set():
                self._pending.discard(job)
                job.emit(Finished("cancelled", job.prompt_tokens, 0, 0.0, "cancelled while waiting"))
                log.info("%s: client went away while waiting: not started", job.id)
                return
            self._running.append(job)
        try:
            result = self._generate(job)
        finally:
            with self._lock:
                self._running.remove(job)
                self._pending.discard(job)
        job.emit(result)
        self._log(job, result)

    def _log(self, job: Job, result: Finished) -> None:
        if result.finish_reason == "cancelled":
            log.info("%s: client went away: stopped after %d tokens", job.id, result.completion_tokens)
            return
        speed = result.completion_tokens / result.seconds if result.seconds > 0 else 0.0
        detail = f" ({result.detail})" if result.detail and result.finish_reason != "stop" else ""
        log.info("%s: %s%s: prompt %d + reply %d tokens in %.1f s (%.1f tok/s)", job.id, result.finish_reason,
                 detail, result.prompt_tokens, result.completion_tokens, result.seconds, speed)


class Engine(BaseEngine):
    """The PyTorch engine behind the server: turns a :class:`ChatRequest` into a :class:`Job` (checking the
    limits) and runs jobs one at a time in a worker thread (``model.generate``).

    Args:
        model, tokenizer: from :func:`qwenlab.load_model`.
        limits: see :class:`Limits`.
        template_kwargs: chat-template defaults (``{"enable_thinking": False}``); a request's
            ``chat_template_kwargs`` override them.
    """

    engine = "pytorch"

    def __init__(self, model: CausalLM, tokenizer: PreTrainedTokenizerBase, limits: Limits | None = None,
                 template_kwargs: dict | None = None):
        super().__init__(limits, template_kwargs, workers=1)
        self.model, self.tokenizer = model, tokenizer
        self.context = context_length(model)
        self.thinking = supports_thinking(tokenizer)
        self.eos = end_of_turn_ids(model.generation_config, tokenizer)

    def _prompt_ids(self, request: ChatRequest) -> tuple[Any, str]:
        kwargs = {**self.template_kwargs, **request.template_kwargs}
        try:
            text = str(self.tokenizer.apply_chat_template(
                request.messages, tools=request.tools,  # type: ignore[arg-type]  # list[dict] (invariant list)
                tokenize=False, add_generation_prompt=True, **kwargs))
        except Exception as err:  # jinja's TemplateError (e.g. "System message must be at the beginning")
            raise RequestError(f"The model's chat template cannot render these messages: {err}",
                               param="messages") from None
        ids = self.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        return ids, text

    def _params(self, request: ChatRequest, max_new_tokens: int) -> dict:
        params: dict = {"max_new_tokens": max_new_tokens}
        if request.temperature == 0 or request.top_p == 0:  # the limit of both is greedy decoding
            params["do_sample"] = False
        elif request.temperature is not None:
            params.update(do_sample=True, temperature=request.temperature)
        if request.top_p is not None and request.top_p > 0:
            params["top_p"] = request.top_p
        return params

    def prepare(self, request: ChatRequest) -> Job:
        """Render and tokenize the prompt, check it against the limits and build the :class:`Job`.

        Raises:
            RequestError: the template cannot render the messages, or the prompt is too long (400).
        """
        ids, text = self._prompt_ids(request)
        self._check_prompt(ids.shape[-1])
        budget = self.reply_budget(ids.shape[-1], request.max_tokens)
        try:
            gc = generation_config(self.model, self.tokenizer, self._params(request, budget))
        except (TypeError, ValueError) as err:
            raise RequestError(f"These sampling settings cannot be used: {err}") from None
        parser = ReplyParser(request.stop, thinking=self.thinking,
                             opened_thinking=prompt_opens_thinking(text),
                             tools=bool(request.tools), parallel=request.parallel_tool_calls)
        job = Job(int(ids.shape[-1]), budget, parser, request.seed, request.model,
                  work=(ids.to(self.model.device), gc))
        if request.max_tokens is not None and request.max_tokens > budget:
            log.info("%s: max_tokens %d lowered to %d (the limit for this prompt)", job.id, request.max_tokens, budget)
        return job

    def _generate(self, job: Job) -> Finished:
        import torch
        from transformers import StoppingCriteriaList

        began = time.monotonic()
        watch = _Watch(job, self.tokenizer, began + self.limits.time_limit)
        try:
            input_ids, gc = job.work
            if job.seed is not None:
                torch.manual_seed(job.seed)
            with torch.inference_mode():
                self.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                    generation_config=gc,
                                    stopping_criteria=StoppingCriteriaList([watch]))
        except Exception as err:  # out of memory, a broken model: answer this request, keep serving
            log.exception("%s: generation failed", job.id)
            return Finished("error", job.prompt_tokens, watch.count, time.monotonic() - began,
                            f"{type(err).__name__}: {err}")
        return watch.finish(self.eos, time.monotonic() - began)
