"""The llama.cpp engine behind the server: the same HTTP API, limits, stop strings, thinking and tool-call
parsing as the PyTorch engine, with llama.cpp (``xllamacpp``, :class:`~qwenlab.engines.LlamaCppModel`)
writing the tokens.

What differs, and why:

- Several requests generate at once: llama.cpp's continuous batching serves ``slots`` conversations together
  (one weight read per step for all of them), so the server runs ``slots`` worker threads instead of one.
- The prompt is counted by llama.cpp (the chat template stored in the GGUF, run as Jinja) when the request
  reaches a slot. The server waits for that count (the first ``prompt_progress`` message, sent before any
  compute) before it answers, so a too-long prompt is still a 400 naming both numbers and no stream starts.
- llama.cpp returns the text as the model wrote it (``<think>`` and ``<tool_call>`` included); the server's
  own :class:`~qwenlab.serve.replies.ReplyParser` turns it into content, reasoning and tool calls, exactly as
  for the PyTorch engine. Returning True from the per-token callback stops llama.cpp on that token (a cancel,
  a stop string, the time limit).

Taught in ``08_serve.ipynb``.
"""

from __future__ import annotations

import logging
import time
from functools import cache
from typing import TYPE_CHECKING

from .engine import BaseEngine, Finished, Job, Limits
from .protocol import ChatRequest, RequestError
from .replies import ReplyParser

if TYPE_CHECKING:
    from ..engines import LlamaCppModel

__all__ = ["LlamaCppEngine", "gguf_chat_template"]

log = logging.getLogger("qwenlab.serve")


@cache
def gguf_chat_template(path: str) -> str:
    """The chat template stored in a GGUF file (``tokenizer.chat_template``; "" when it has none)."""
    try:
        from gguf import GGUFReader
    except ImportError:
        return ""
    field = GGUFReader(path).fields.get("tokenizer.chat_template")
    if field is None:
        return ""
    return bytes(field.parts[field.data[0]]).decode("utf-8", errors="replace")


class LlamaCppEngine(BaseEngine):
    """A :class:`~qwenlab.engines.LlamaCppModel` behind the server; ``llm.slots`` requests generate at once.

    Args:
        llm: from ``qwenlab.load_model(name, engine="llama.cpp", slots=N)``.
        limits: see :class:`~qwenlab.serve.engine.Limits` (the context is ``llm.context`` per conversation).
        template_kwargs: chat-template defaults (``{"enable_thinking": False}``); a request's
            ``chat_template_kwargs`` override them.
    """

    engine = "llama.cpp"

    def __init__(self, llm: LlamaCppModel, limits: Limits | None = None, template_kwargs: dict | None = None):
        super().__init__(limits, template_kwargs, workers=llm.slots)
        self.llm = llm
        self.context = llm.context
        template = gguf_chat_template(str(llm.path))
        self.thinking = "enable_thinking" in template or "<think>" in template

    def _params(self, request: ChatRequest, kwargs: dict) -> dict:
        """The request's sampling in the engine's (transformers') names."""
        asked = [n for n in (request.max_tokens, self.limits.max_tokens) if n is not None]
        params: dict = {"max_new_tokens": min(asked) if asked else -1}  # -1: what the context leaves
        if request.temperature == 0 or request.top_p == 0:  # the limit of both is greedy decoding
            params["do_sample"] = False
        elif request.temperature is not None:
            params["temperature"] = request.temperature
        if request.top_p is not None and request.top_p > 0 and params.get("do_sample") is not False:
            params["top_p"] = request.top_p
        if request.seed is not None:
            params["seed"] = request.seed
        if "enable_thinking" in kwargs:  # the catalog's sampling for that mode
            params["enable_thinking"] = bool(kwargs["enable_thinking"])
        return params

    def prepare(self, request: ChatRequest) -> Job:
        """Build the llama.cpp chat request; the prompt is counted when it reaches a slot (:meth:`admit`)."""
        kwargs = {**self.template_kwargs, **request.template_kwargs}
        params = self._params(request, kwargs)
        try:
            body = self.llm.request(request.messages, **params)
        except (TypeError, ValueError) as err:
            raise RequestError(f"These sampling settings cannot be used: {err}") from None
        if kwargs:
            body["chat_template_kwargs"] = kwargs
        if request.tools:
            body["tools"] = request.tools
        body.update(stream=True, stream_options={"include_usage": True}, return_progress=True)
        parser = ReplyParser(request.stop, thinking=self.thinking, tools=bool(request.tools),
                             parallel=request.parallel_tool_calls)
        budget = params["max_new_tokens"]
        return Job(0, budget if budget > 0 else None, parser, request.seed, request.model, work=body)

    async def admit(self, job: Job) -> None:
        """Wait for llama.cpp's count of the prompt; raise the 400 when it is too long."""
        await job.admitted()

    def _too_long(self, prompt_tokens: int) -> RequestError | None:
        try:
            self._check_prompt(prompt_tokens)
        except RequestError as err:
            return err
        return None

    def _generate(self, job: Job) -> Finished:
        run = _Run(self, job)
        try:
            self.llm.handle(job.work, run.on_chunk)
        except Exception as err:  # a broken model or binding: answer this request, keep serving
            log.exception("%s: generation failed", job.id)
            run.error = f"{type(err).__name__}: {err}"
        return run.finish()


class _Run:
    """One job inside llama.cpp: the callback that sees every message llama.cpp sends (prompt progress, text
    pieces, usage, errors), feeds the text to the job's parser and says whether to stop on this token."""

    def __init__(self, engine: LlamaCppEngine, job: Job):
        self.engine, self.job = engine, job
        self.began = time.monotonic()
        self.deadline = self.began + engine.limits.time_limit
        self.count = 0
        self.why: str | None = None  # why we stopped it: cancelled, refused, stop string, time limit
        self.finish_reason = "stop"
        self.usage: dict = {}
        self.error = ""
        self.admitted = False

    def _admit(self, refusal: RequestError | None) -> None:
        if not self.admitted:
            self.admitted = True
            self.job.admit(refusal)

    def on_chunk(self, item: dict) -> bool:
        if "error" in item:
            self._refuse_or_fail(item["error"])
            return True
        progress = item.get("prompt_progress")
        if progress is not None and not self.admitted:
            self.job.prompt_tokens = int(progress.get("total", 0))
            refusal = self.engine._too_long(self.job.prompt_tokens)
            self._admit(refusal)
            if refusal is not None:
                self.why = "refused"
                return True
        if item.get("usage"):
            self.usage = item["usage"]
        for choice in item.get("choices") or []:
            self.finish_reason = choice.get("finish_reason") or self.finish_reason
            piece = (choice.get("delta") or {}).get("content")
            if piece:
                self._admit(None)
                self.count += 1
                for event in self.job.parser.feed(piece):
                    self.job.emit(event)
        return self._should_stop()

    def _should_stop(self) -> bool:
        if self.why is None:
            self.why = self.job.stop_reason(self.deadline)
        return self.why is not None

    def _refuse_or_fail(self, error: dict) -> None:
        message = " ".join(str(error.get("message", error)).split())
        if self.admitted:
            self.error = f"llama.cpp: {message}"
            return
        if error.get("type") == "exceed_context_size_error":
            self.job.prompt_tokens = int(error.get("n_prompt_tokens", 0))
            refusal = self.engine._too_long(self.job.prompt_tokens) or RequestError(
                f"The prompt has {self.job.prompt_tokens} tokens; llama.cpp's context is {error.get('n_ctx')} tokens "
                "per conversation. Shorten the conversation (drop old turns) or the documents in it.",
                param="messages", code="context_length_exceeded")
        else:
            refusal = RequestError(f"llama.cpp refused the request: {message}", param="messages")
        self.why = "refused"
        self._admit(refusal)

    def finish(self) -> Finished:
        """Flush what the parser held back and say why generation ended."""
        seconds = time.monotonic() - self.began
        job = self.job
        self._admit(None)
        if self.usage:
            job.prompt_tokens = int(self.usage.get("prompt_tokens", job.prompt_tokens))
            self.count = int(self.usage.get("completion_tokens", self.count))
        if self.why == "refused":
            return Finished("error", job.prompt_tokens, 0, seconds, "refused before generating")
        if self.error:
            return Finished("error", job.prompt_tokens, self.count, seconds, self.error)
        if self.why == "cancelled":
            return Finished("cancelled", job.prompt_tokens, self.count, seconds, "cancelled")
        for event in job.parser.close():
            job.emit(event)
        if job.parser.tool_calls:
            reason = "tool_calls"
        elif self.why == "stop string":
            reason = "stop"
        elif self.why == "time limit":
            reason = "length"
        else:
            reason = self.finish_reason if self.finish_reason in ("stop", "length") else "stop"
        detail = self.why or ("max_tokens reached" if reason == "length" else "")
        return Finished(reason, job.prompt_tokens, self.count, seconds, detail)

