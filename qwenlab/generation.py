"""generate() and stream(): text, new token ids, finish_reason, timings and the effective parameters.

The pieces they share are public, so other code builds on them instead of copying them:
:func:`generation_config` (your parameters over the model's, checked), :func:`end_of_turn_ids`,
:func:`new_token_limit`, :func:`make_result` (``finish_reason`` and the cut-answer hint) — used by
``qwenlab.sample_loop`` — :func:`check_context` (a prompt longer than the model's context is refused
before any compute, with :class:`ContextTooLongError`) and :class:`PieceStreamer`, the UTF-8-safe
streamer (an extension point like transformers' ``BaseStreamer``).

Wrong inputs get errors that name the argument: a role other than :data:`ROLES`, content that is not
text, ``max_new_tokens=1.5``, ``num_return_sequences=3`` (these functions return one answer).

Taught in ``00_quickstart.ipynb`` (first answer) and ``04_generate.ipynb`` (parameters, truncation,
streaming).
"""

from __future__ import annotations

import atexit
import copy
import queue
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .display import Table, TableView
from .modelfacts import model_name
from .sampling import sampling_steps

if TYPE_CHECKING:
    from .modelfacts import CausalLM
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "SAMPLING_KEYS",
    "DEFAULT_MAX_NEW_TOKENS",
    "ROLES",
    "ContextTooLongError",
    "GenerationResult",
    "as_messages",
    "build_inputs",
    "effective_params",
    "generation_config",
    "context_length",
    "check_context",
    "end_of_turn_ids",
    "new_token_limit",
    "make_result",
    "generate",
    "stream",
    "PieceStreamer",
    "TextStream",
    "transformers_fallbacks",
    "ParameterTable",
    "parameter_sources",
]

SAMPLING_KEYS = ("do_sample", "temperature", "top_k", "top_p", "min_p", "repetition_penalty")
DEFAULT_MAX_NEW_TOKENS = 256
ROLES = ("system", "user", "assistant", "tool")  # the roles Qwen's chat templates know

# whole-number generation parameters and their smallest allowed value
_WHOLE_NUMBERS = {"max_new_tokens": 1, "max_length": 1, "min_new_tokens": 0, "min_length": 0,
                  "num_beams": 1, "num_return_sequences": 1}

Messages = Sequence[dict]


class ContextTooLongError(ValueError):
    """A prompt that does not fit the model's context (or a conversation's budget); nothing was generated.

    Attributes:
        prompt_tokens: tokens the prompt needs.
        limit: tokens the context (or the budget) allows.
    """

    def __init__(self, message: str, prompt_tokens: int, limit: int):
        super().__init__(message)
        self.prompt_tokens = prompt_tokens
        self.limit = limit


@dataclass
class GenerationResult:
    """What one generation produced.

    Attributes:
        text: the decoded new tokens (special tokens removed; ``<think>`` tags kept — they are not special).
        token_ids: the new token ids only (``output_ids[len(input_ids):]``).
        finish_reason: ``"stop"`` (the model ended its turn) or ``"length"`` (cut by ``max_new_tokens``).
        prompt_tokens / completion_tokens: token counts.
        seconds: wall time of the whole call; ``tokens_per_second`` = completion_tokens / seconds.
        params: the parameters generation really used (the model's generation_config merged with yours).
        hint: what to change when the answer was cut, else None.
    """

    text: str
    token_ids: list[int]
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    params: dict = field(default_factory=dict)
    hint: str | None = None

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        return self.text if not self.hint else f"{self.text}\n[{self.hint}]"


def as_messages(prompt_or_messages: str | Messages) -> list[dict]:
    """A prompt as chat messages: a string becomes ``[{"role": "user", "content": ...}]``; a list of
    ``{"role", "content"}`` dicts is checked and returned as a list.

    >>> as_messages("你好")
    [{'role': 'user', 'content': '你好'}]

    Taught in ``04_generate.ipynb`` (the chat template of a plain prompt).
    """
    if isinstance(prompt_or_messages, str):
        return [{"role": "user", "content": prompt_or_messages}]
    if not isinstance(prompt_or_messages, (list, tuple)) or not prompt_or_messages:
        raise TypeError("prompt_or_messages must be a string or a non-empty list of {'role': ..., 'content': ...} "
                        f"dicts, got {type(prompt_or_messages).__name__}: "
                        "e.g. [{'role': 'user', 'content': '你好'}].")
    for i, message in enumerate(prompt_or_messages):
        _check_message(i, message)
    return list(prompt_or_messages)


def _check_message(i: int, message: Any) -> None:
    """A chat message: a dict with a role Qwen's template knows and text content (else a named error)."""
    if not isinstance(message, dict):
        raise TypeError(f"message {i} must be a dict with 'role' and 'content', got {type(message).__name__} "
                        f"{message!r}: e.g. {{'role': 'user', 'content': '你好'}}.")
    if "role" not in message or "content" not in message:
        raise ValueError(f"message {i} needs both 'role' and 'content', got {message!r}: "
                         "e.g. {'role': 'user', 'content': '你好'}.")
    if message["role"] not in ROLES:
        raise ValueError(f"message {i} has role {message['role']!r}; the chat template knows only "
                         f"{', '.join(ROLES)}.")
    content = message["content"]
    tool_call = message["role"] == "assistant" and message.get("tool_calls") and content in (None, "")
    if not isinstance(content, str) and not tool_call:
        raise TypeError(f"message {i} ({message['role']}) has content {content!r} of type "
                        f"{type(content).__name__}; the content must be text (a str).")


def build_inputs(
    tokenizer: PreTrainedTokenizerBase,
    prompt_or_messages: str | Messages,
    enable_thinking: bool | None = None,
    add_generation_prompt: bool = True,
) -> dict:
    """Render messages with the chat template and tokenize: ``{"input_ids", "attention_mask"}`` tensors.

    ``enable_thinking`` is passed to the template only when given (Qwen3's template reads it; others
    ignore it).
    """
    extra: dict[str, Any] = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
    return dict(
        tokenizer.apply_chat_template(  # type: ignore[arg-type]  # a BatchEncoding with return_dict=True
            as_messages(prompt_or_messages),
            add_generation_prompt=add_generation_prompt,
            return_tensors="pt",
            return_dict=True,
            **extra,
        )
    )


def transformers_fallbacks() -> dict:
    """What ``model.generate`` uses for a parameter that neither you nor the model's generation_config set.

    These generic fallbacks (``max_length=20``, ``top_k=50``, ``do_sample=False`` ...) come from
    transformers' ``GenerationConfig._get_default_generation_params``. When nobody sets a length,
    transformers 5 reads ``max_length=20`` as "20 new tokens" (and warns).

    Taught in ``04_generate.ipynb``.
    """
    from transformers import GenerationConfig

    defaults = getattr(GenerationConfig, "_get_default_generation_params", None)
    if defaults is None:  # a transformers without that method: its documented values
        return {"max_length": 20, "do_sample": False, "temperature": 1.0, "top_k": 50, "top_p": 1.0,
                "repetition_penalty": 1.0}
    return dict(defaults())


def _check_sampling(values: dict) -> None:
    """Raise our ValueError (naming the argument and its range) before transformers raises its own."""
    sampling_steps(bool(values.get("do_sample")), values.get("temperature"), values.get("top_k"), values.get("top_p"),
                   values.get("min_p"), values.get("repetition_penalty"))


def _check_kinds(params: dict) -> None:
    """Whole numbers where transformers needs them, a bool for ``do_sample``, one answer per call."""
    for key, lowest in _WHOLE_NUMBERS.items():
        value = params.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < lowest):
            raise ValueError(f"{key} must be a whole number >= {lowest}, got {value!r} "
                             f"({type(value).__name__}): e.g. {key}={max(lowest, 64) if 'new' in key else lowest}.")
    if params.get("do_sample") is not None and not isinstance(params["do_sample"], bool):
        raise ValueError(f"do_sample must be True or False, got {params['do_sample']!r}.")
    if (params.get("num_return_sequences") or 1) > 1:
        raise ValueError(f"num_return_sequences={params['num_return_sequences']}: qwenlab.generate and "
                         "qwenlab.stream return one answer per call. For several answers call generate once per "
                         "answer with seed=0, 1, 2 ... (or call model.generate yourself).")


def generation_config(model: CausalLM, tokenizer: PreTrainedTokenizerBase, params: dict) -> Any:
    """The ``GenerationConfig`` :func:`generate` passes to ``model.generate``: the model's own with your
    ``params`` on top, checked (unknown names: ``TypeError``; values out of range or of the wrong kind,
    such as ``max_new_tokens=1.5``, and ``num_return_sequences`` > 1: ``ValueError``), a pad token set,
    and ``max_new_tokens`` defaulting to 256 when no length is given.

    Used by :func:`generate`, :func:`stream` and ``qwenlab.sample_loop``. Taught in ``04_generate.ipynb``.
    """
    _check_kinds(params)
    gc = copy.deepcopy(model.generation_config)
    unknown = gc.update(**params)
    if unknown:
        raise TypeError(f"Unknown generation parameter(s): {sorted(unknown)}. Known sampling ones: {SAMPLING_KEYS}.")
    _check_sampling(effective_params(model, **params))
    if not gc.do_sample:  # greedy ignores these; neutral values (not None, which transformers would refill
        # from the model's generation_config) avoid its "flags are not valid" warning
        gc.temperature, gc.top_p, gc.top_k, gc.min_p = 1.0, 1.0, 50, None
    if gc.pad_token_id is None:
        gc.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if gc.max_new_tokens is None and "max_length" not in params:
        gc.max_new_tokens = DEFAULT_MAX_NEW_TOKENS
    return gc


def effective_params(model: CausalLM, **params: Any) -> dict:
    """The sampling parameters ``generate`` will really use: yours, else the model's generation_config,
    else transformers' generic fallbacks (:func:`transformers_fallbacks`) — the order transformers uses.

    Qwen2.5-Instruct's generation_config, for example, silently sets ``do_sample=True, temperature=0.7,
    top_k=20, top_p=0.8, repetition_penalty=1.05``; this shows it. With ``do_sample=False``
    temperature/top-k/top-p/min-p are ignored and reported as None. ``max_new_tokens`` is qwenlab's
    default (256) unless you or the model set one.

    Taught in ``04_generate.ipynb``.
    """
    gc = copy.deepcopy(model.generation_config)
    gc.update(**params)
    fallbacks = transformers_fallbacks()
    out = {k: fallbacks.get(k) if getattr(gc, k, None) is None else getattr(gc, k) for k in SAMPLING_KEYS}
    if not out["do_sample"]:
        out.update(temperature=None, top_k=None, top_p=None, min_p=None)
    out["max_new_tokens"] = gc.max_new_tokens or DEFAULT_MAX_NEW_TOKENS
    return out


@dataclass
class ParameterTable(TableView):
    """Where each generation parameter comes from: transformers' generic fallback, the model's
    generation_config, and what :func:`generate` really uses (see :func:`parameter_sources`).

    ``rows`` holds ``(parameter, fallback, model's value, used)`` with the raw values (None: not set).
    """

    rows: list[tuple[str, Any, Any, Any]]

    HEADER = ("parameter", "transformers fallback", "model generation_config", "qwenlab.generate uses")

    def table(self) -> Table:
        return Table(self.HEADER, self.rows, css_class="qwenlab-parameters")


def parameter_sources(model: CausalLM, **params: Any) -> ParameterTable:
    """A table of each sampling parameter: transformers' generic fallback, the model's generation_config,
    and the value :func:`generate` uses with your ``params`` (yours > the model's > the fallback).

    The length row shows why answers of a bare ``model.generate(**inputs)`` stop after 20 tokens: the
    fallback ``max_length=20`` (read as 20 new tokens when nobody sets a length), while qwenlab passes
    ``max_new_tokens`` (default 256).

    Taught in ``04_generate.ipynb``.
    """
    fallbacks = transformers_fallbacks()
    own = model.generation_config
    used = effective_params(model, **params)
    own_length = (f"max_new_tokens={own.max_new_tokens}" if own.max_new_tokens is not None
                  else f"max_length={own.max_length}" if own.max_length is not None else None)
    length = ("max_new_tokens / max_length", f"max_length={fallbacks.get('max_length')} (→ 20 new tokens)",
              own_length, f"max_new_tokens={used['max_new_tokens']}")
    rows: list[tuple[str, Any, Any, Any]] = [length]
    ignored = "(ignored: greedy)"
    rows += [(k, fallbacks.get(k), getattr(own, k, None),
              ignored if used[k] is None and not used["do_sample"] and k != "repetition_penalty" else used[k])
             for k in SAMPLING_KEYS]
    return ParameterTable(rows)


def context_length(model: CausalLM) -> int | None:
    """How many tokens the model reads at most (``config.max_position_embeddings``; None when unknown).

    Taught in ``05_chat.ipynb`` (the context budget).
    """
    config = getattr(model, "config", None)
    for cfg in (config, getattr(config, "text_config", None)):
        value = getattr(cfg, "max_position_embeddings", None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_context(model: CausalLM, prompt_tokens: int) -> None:
    """Refuse a prompt the model cannot read: at least its whole context, so no room for one new token.

    Called by :func:`generate` and :func:`stream` after tokenizing and before any compute (a 35k-token
    prompt on a 32k model would otherwise run for minutes and then answer from broken positions).

    Raises:
        ContextTooLongError: with the numbers and what to do.
    """
    limit = context_length(model)
    if limit is not None and prompt_tokens >= limit:
        raise ContextTooLongError(
            f"The prompt has {prompt_tokens:,} tokens, but {model_name(model)} reads at most {limit:,} "
            "(config.max_position_embeddings), leaving no room for an answer: shorten the prompt, or let "
            "qwenlab.Conversation drop the oldest turns.", prompt_tokens, limit)


def _prepare_inputs(model: CausalLM, tokenizer: PreTrainedTokenizerBase, prompt_or_messages: str | Messages,
                    enable_thinking: bool | None, params: dict) -> tuple[dict, Any]:
    """Check the parameters, tokenize, check the length: everything that can fail before generating."""
    gc = generation_config(model, tokenizer, params)
    inputs = build_inputs(tokenizer, prompt_or_messages, enable_thinking)
    check_context(model, int(inputs["input_ids"].shape[1]))
    return {k: v.to(model.device) for k, v in inputs.items()}, gc


def end_of_turn_ids(gc: Any, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """The token ids that end a reply: the config's ``eos_token_id`` (one id or a list), else the
    tokenizer's (Qwen chat models: ``<|im_end|>`` and ``<|endoftext|>``)."""
    eos = gc.eos_token_id if gc.eos_token_id is not None else tokenizer.eos_token_id
    return set(eos if isinstance(eos, (list, tuple)) else [eos])


def new_token_limit(gc: Any, prompt_len: int) -> int:
    """How many tokens generation may add: ``max_new_tokens``, else what ``max_length`` (a total) leaves."""
    if gc.max_new_tokens is not None:
        return gc.max_new_tokens
    return max(0, (gc.max_length or prompt_len + DEFAULT_MAX_NEW_TOKENS) - prompt_len)


def _cut_hint(gc: Any, prompt_len: int) -> str:
    if gc.max_new_tokens is not None:
        limit, bigger = f"max_new_tokens={gc.max_new_tokens}", f"max_new_tokens (e.g. {gc.max_new_tokens * 2})"
    else:
        limit = f"max_length={gc.max_length} (prompt {prompt_len} + answer)"
        bigger = f"max_new_tokens instead (e.g. {DEFAULT_MAX_NEW_TOKENS})"
    return (f"回答被截断 (answer cut): it reached {limit} before the model ended its turn. "
            f"Raise {bigger} or ask for a shorter answer.")


def make_result(tokenizer: PreTrainedTokenizerBase, gc: Any, new_ids: list[int], prompt_len: int, seconds: float,
                skip_special_tokens: bool, params: dict) -> GenerationResult:
    """The :class:`GenerationResult` of new token ids: decoded text, ``finish_reason`` (``"stop"`` when
    the last id ends the turn, else ``"length"``) and, for a cut answer, the hint naming the limit.

    Shared by :func:`generate`, :func:`stream` and ``qwenlab.sample_loop``, so they report alike.
    """
    eos = end_of_turn_ids(gc, tokenizer)
    stopped = bool(new_ids) and new_ids[-1] in eos
    reason = "stop" if stopped else "length"
    hint = _cut_hint(gc, prompt_len) if reason == "length" else None
    return GenerationResult(
        text=str(tokenizer.decode(new_ids, skip_special_tokens=skip_special_tokens)),
        token_ids=new_ids,
        finish_reason=reason,
        prompt_tokens=prompt_len,
        completion_tokens=len(new_ids),
        seconds=seconds,
        params=params,
        hint=hint,
    )


def generate(
    model: CausalLM,
    tokenizer: PreTrainedTokenizerBase,
    prompt_or_messages: str | Messages,
    *,
    enable_thinking: bool | None = None,
    seed: int | None = None,
    skip_special_tokens: bool = True,
    **params: Any,
) -> GenerationResult:
    """Generate one answer to a prompt or a list of chat messages.

    Args:
        prompt_or_messages: a user prompt, or ``[{"role": ..., "content": ...}, ...]``.
        enable_thinking: Qwen3's thinking switch (None: the template's default).
        seed: seed torch's RNG first, so a sampled answer can be reproduced.
        **params: any ``transformers.GenerationConfig`` field: ``max_new_tokens`` (default 256),
            ``do_sample``, ``temperature``, ``top_k``, ``top_p``, ``min_p``, ``repetition_penalty`` ...

    Raises:
        ContextTooLongError: the prompt does not fit the model's context (checked before generating).
        ValueError / TypeError: a parameter or message that cannot work, named in the message.

    Example:
        >>> r = qwenlab.generate(model, tokenizer, "用一句话介绍你自己", max_new_tokens=64)  # doctest: +SKIP
        >>> r.text, r.finish_reason, r.tokens_per_second                                     # doctest: +SKIP

    Taught in ``00_quickstart.ipynb`` and ``04_generate.ipynb``.
    """
    import torch

    inputs, gc = _prepare_inputs(model, tokenizer, prompt_or_messages, enable_thinking, params)
    if seed is not None:
        torch.manual_seed(seed)
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(**inputs, generation_config=gc)
    seconds = time.perf_counter() - start
    prompt_len = inputs["input_ids"].shape[1]
    new_ids = out[0, prompt_len:].tolist()
    return make_result(tokenizer, gc, new_ids, prompt_len, seconds, skip_special_tokens,
                       effective_params(model, **params))


class PieceStreamer:
    """Turns generated token ids into UTF-8-safe text pieces — the streamer behind :func:`stream`.

    Decoding token by token breaks a character whose bytes span two tokens (you would see "�"). This
    decodes everything generated so far and hands on only the new, complete suffix; while the text
    ends in an unfinished character it waits for the next token.

    Two ways in:

    - :meth:`add` (token ids) and :meth:`flush` (the end) — call them yourself, e.g. to replay a
      generation one token at a time (``qwenlab.tokens.decode_steps`` does);
    - :meth:`put` / :meth:`end` — transformers' streamer interface (``model.generate(...,
      streamer=s)``; the first ``put`` is the prompt and is skipped).

    Each new piece goes to :meth:`on_text` and the end to :meth:`on_end`; override them to send the
    pieces somewhere (the way transformers' ``TextStreamer.on_finalized_text`` is overridden).

    Args:
        tokenizer: decodes the ids.
        skip_special_tokens: drop ``<|im_end|>`` and other special tokens from the text (default True).

    Example:
        >>> s = PieceStreamer(tokenizer)
        >>> [s.add([i]) for i in tokenizer.encode("囧!")]  # 囧 is two tokens: nothing until both arrived
        ['', '囧', '!']

    Taught in ``03_tokenizer.ipynb`` (why) and ``04_generate.ipynb`` (streaming).
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, skip_special_tokens: bool = True):
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.ids: list[int] = []
        self.text = ""  # everything handed on so far
        self._prompt_seen = False

    def add(self, token_ids: Iterable[int]) -> str:
        """Add newly generated token ids; return the new complete text ("" while a character is unfinished)."""
        self.ids.extend(int(t) for t in token_ids)
        text = self._decode()
        if text.endswith("\ufffd"):
            return ""  # an unfinished multi-byte character: wait for the next token
        return self._hand_on(text)

    def flush(self) -> str:
        """Generation is over: return (and hand on) whatever text is left, even an unfinished character."""
        return self._hand_on(self._decode())

    def on_text(self, piece: str) -> None:
        """Called with each new piece of text; does nothing here (override it)."""

    def on_end(self) -> None:
        """Called once after the last piece; does nothing here (override it)."""

    def put(self, value: Any) -> None:
        """transformers' streamer call: a tensor of new token ids (the first call is the prompt: skipped)."""
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self.add(value.reshape(-1).tolist())

    def end(self) -> None:
        """transformers' streamer call when generation ends."""
        self.flush()
        self.on_end()

    def _decode(self) -> str:
        return str(self.tokenizer.decode(self.ids, skip_special_tokens=self.skip_special_tokens))

    def _hand_on(self, text: str) -> str:
        if len(text) <= len(self.text):
            return ""
        piece, self.text = text[len(self.text):], text
        self.on_text(piece)
        return piece


class _QueueStreamer(PieceStreamer):
    """Puts each piece on a queue (read by :class:`TextStream` in the caller's thread); None marks the end."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, skip_special_tokens: bool):
        super().__init__(tokenizer, skip_special_tokens)
        self.queue: queue.Queue = queue.Queue()

    def on_text(self, piece: str) -> None:
        self.queue.put(piece)

    def on_end(self) -> None:
        self.queue.put(None)


class _StopFlag:
    """A StoppingCriteria that ends generation when ``set()`` is called (Ctrl-C, a Stop button)."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class TextStream:
    """Iterate to get text pieces as they are generated; ``.result`` holds the full result afterwards.

    Generation runs in a background thread. ``stop()`` ends it after the current token (the result then
    has ``finish_reason == "stopped"``). Leaving the loop early (``break``, an exception, Ctrl-C) or
    :meth:`close` stops it *and* waits for the thread, so nothing keeps computing behind your back;
    ``with qwenlab.stream(...) as s:`` closes on the way out. A stream still running when Python exits
    is stopped the same way (an unfinished generation thread would otherwise abort the interpreter).
    """

    def __init__(self, model: CausalLM, tokenizer: PreTrainedTokenizerBase, prompt_or_messages: str | Messages,
                 enable_thinking: bool | None, seed: int | None, skip_special_tokens: bool, params: dict):
        import torch
        from transformers import StoppingCriteriaList

        if (params.get("num_beams") or 1) > 1:
            raise ValueError(f"num_beams={params['num_beams']}: beam search cannot stream (the best beam is known "
                             "only at the end); use qwenlab.generate for beam search.")
        self.result: GenerationResult | None = None
        self._error: BaseException | None = None
        self._ended = False  # the end marker was read: iterating again yields nothing
        inputs, gc = _prepare_inputs(model, tokenizer, prompt_or_messages, enable_thinking, params)
        self._streamer = _QueueStreamer(tokenizer, skip_special_tokens)
        self._stop = _StopFlag()
        prompt_len = inputs["input_ids"].shape[1]

        def work() -> None:
            start = time.perf_counter()
            try:
                if seed is not None:
                    torch.manual_seed(seed)
                with torch.inference_mode():
                    model.generate(**inputs, generation_config=gc, streamer=self._streamer,
                                   stopping_criteria=StoppingCriteriaList([self._stop]))
                self.result = make_result(tokenizer, gc, self._streamer.ids, prompt_len,
                                          time.perf_counter() - start, skip_special_tokens,
                                          effective_params(model, **params))
                if self._stop.event.is_set() and self.result.finish_reason == "length":
                    self.result.finish_reason, self.result.hint = "stopped", None
            except BaseException as err:  # surfaced in the consumer's thread
                self._error = err
                self._streamer.queue.put(None)

        self._thread = threading.Thread(target=work, daemon=True, name="qwenlab.stream")
        _RUNNING.add(self)
        self._thread.start()

    def __iter__(self) -> Iterator[str]:
        try:
            while not self._ended:
                piece = self._streamer.queue.get()
                if piece is None:
                    self._ended = True
                    break
                yield piece
        finally:  # the loop was left early (break, an error, Ctrl-C): stop generating and wait for it
            if not self._ended:
                self.close()
        self._thread.join()
        _RUNNING.discard(self)
        if self._error is not None:
            raise self._error

    def __enter__(self) -> TextStream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def stop(self) -> None:
        """Ask generation to end after the current token (returns at once; see :meth:`close`)."""
        self._stop.event.set()

    def close(self) -> None:
        """Stop generation and wait until its thread has ended; the result so far is kept in ``.result``."""
        self.stop()
        self._thread.join()
        _RUNNING.discard(self)

    @property
    def running(self) -> bool:
        """Whether the generation thread is still working."""
        return self._thread.is_alive()

    def finish(self) -> GenerationResult:
        """Wait for the end of generation (consuming the pieces not read yet) and return the result."""
        for _ in self:
            pass
        assert self.result is not None  # the worker sets it before its thread ends, and iterating joins it
        return self.result

    @property
    def text(self) -> str:
        """The text generated so far."""
        return self._streamer.text


_RUNNING: weakref.WeakSet[TextStream] = weakref.WeakSet()  # streams whose thread may still be working


@atexit.register
def _close_running_streams() -> None:
    """At interpreter exit, stop every stream still generating and wait for it (else torch aborts, rc 134)."""
    for text_stream in list(_RUNNING):
        text_stream.close()


def stream(
    model: CausalLM,
    tokenizer: PreTrainedTokenizerBase,
    prompt_or_messages: str | Messages,
    *,
    enable_thinking: bool | None = None,
    seed: int | None = None,
    skip_special_tokens: bool = True,
    **params: Any,
) -> TextStream:
    """Like :func:`generate`, but yields text pieces while the model generates (UTF-8 safe).

    The parameters and the prompt's length are checked here, before the generation thread starts (the
    errors of :func:`generate`). ``break`` out of the loop stops generation and waits for its thread.

    Example:
        >>> for piece in qwenlab.stream(model, tokenizer, "写一首关于春天的短诗"):   # doctest: +SKIP
        ...     print(piece, end="", flush=True)

    Taught in ``04_generate.ipynb`` and ``05_chat.ipynb``.
    """
    return TextStream(model, tokenizer, prompt_or_messages, enable_thinking, seed, skip_special_tokens, params)
