"""generate() and stream(): text, new token ids, finish_reason, timings and the effective parameters.

Taught in ``00_quickstart.ipynb`` (first answer) and ``04_generate.ipynb`` (parameters, truncation,
streaming).
"""

from __future__ import annotations

import copy
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

__all__ = [
    "SAMPLING_KEYS",
    "GenerationResult",
    "build_inputs",
    "effective_params",
    "generate",
    "stream",
    "TextStream",
    "transformers_fallbacks",
    "ParameterTable",
    "parameter_sources",
]

SAMPLING_KEYS = ("do_sample", "temperature", "top_k", "top_p", "min_p", "repetition_penalty")
DEFAULT_MAX_NEW_TOKENS = 256

Messages = Sequence[dict]


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


def _as_messages(prompt_or_messages: str | Messages) -> list[dict]:
    if isinstance(prompt_or_messages, str):
        return [{"role": "user", "content": prompt_or_messages}]
    messages = list(prompt_or_messages)
    if not messages or not all(isinstance(m, dict) and "role" in m and "content" in m for m in messages):
        raise ValueError(
            "prompt_or_messages must be a string or a non-empty list of {'role': ..., 'content': ...} dicts."
        )
    return messages


def build_inputs(
    tokenizer: Any,
    prompt_or_messages: str | Messages,
    enable_thinking: bool | None = None,
    add_generation_prompt: bool = True,
) -> dict:
    """Render messages with the chat template and tokenize: ``{"input_ids", "attention_mask"}`` tensors.

    ``enable_thinking`` is passed to the template only when given (Qwen3's template reads it; others
    ignore it).
    """
    extra = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
    return dict(
        tokenizer.apply_chat_template(
            _as_messages(prompt_or_messages),
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
    from .sampling import sampling_steps

    sampling_steps(**{k: values.get(k) for k in SAMPLING_KEYS})


def _generation_config(model: Any, tokenizer: Any, params: dict):
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


def effective_params(model: Any, **params: Any) -> dict:
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
class ParameterTable:
    """Where each generation parameter comes from: transformers' generic fallback, the model's
    generation_config, and what :func:`generate` really uses (see :func:`parameter_sources`)."""

    rows: list[tuple[str, Any, Any, Any]]

    HEADER = ("parameter", "transformers fallback", "model generation_config", "qwenlab.generate uses")

    def __str__(self) -> str:
        cells = [self.HEADER] + [tuple("—" if v is None else str(v) for v in row) for row in self.rows]
        widths = [max(len(str(r[i])) for r in cells) for i in range(4)]
        return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in cells)

    def _repr_html_(self) -> str:
        import html

        def cell(v: Any) -> str:
            return "<td>—</td>" if v is None else f"<td><code>{html.escape(str(v))}</code></td>"

        head = "".join(f"<th>{h}</th>" for h in self.HEADER)
        body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in self.rows)
        return f"<table><tr>{head}</tr>{body}</table>"


def parameter_sources(model: Any, **params: Any) -> ParameterTable:
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
    rows = [("max_new_tokens / max_length", f"max_length={fallbacks.get('max_length')} (→ 20 new tokens)",
             own_length, f"max_new_tokens={used['max_new_tokens']}")]
    ignored = "(ignored: greedy)"
    rows += [(k, fallbacks.get(k), getattr(own, k, None),
              ignored if used[k] is None and not used["do_sample"] and k != "repetition_penalty" else used[k])
             for k in SAMPLING_KEYS]
    return ParameterTable(rows)


def _eos_ids(gc: Any, tokenizer: Any) -> set[int]:
    eos = gc.eos_token_id if gc.eos_token_id is not None else tokenizer.eos_token_id
    return set(eos if isinstance(eos, (list, tuple)) else [eos])


def _new_token_limit(gc: Any, prompt_len: int) -> int:
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


def _finish(tokenizer: Any, gc: Any, new_ids: list[int], prompt_len: int, seconds: float,
            skip_special_tokens: bool, params: dict) -> GenerationResult:
    eos = _eos_ids(gc, tokenizer)
    stopped = bool(new_ids) and new_ids[-1] in eos
    reason = "stop" if stopped else "length"
    hint = _cut_hint(gc, prompt_len) if reason == "length" else None
    return GenerationResult(
        text=tokenizer.decode(new_ids, skip_special_tokens=skip_special_tokens),
        token_ids=new_ids,
        finish_reason=reason,
        prompt_tokens=prompt_len,
        completion_tokens=len(new_ids),
        seconds=seconds,
        params=params,
        hint=hint,
    )


def generate(
    model: Any,
    tokenizer: Any,
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

    Example:
        >>> r = qwenlab.generate(model, tokenizer, "用一句话介绍你自己", max_new_tokens=64)  # doctest: +SKIP
        >>> r.text, r.finish_reason, r.tokens_per_second                                     # doctest: +SKIP

    Taught in ``00_quickstart.ipynb`` and ``04_generate.ipynb``.
    """
    import torch

    inputs = build_inputs(tokenizer, prompt_or_messages, enable_thinking)
    inputs = {k: v.to(model.device) for k, v in inputs.items()}
    gc = _generation_config(model, tokenizer, params)
    if seed is not None:
        torch.manual_seed(seed)
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(**inputs, generation_config=gc)
    seconds = time.perf_counter() - start
    prompt_len = inputs["input_ids"].shape[1]
    new_ids = out[0, prompt_len:].tolist()
    return _finish(tokenizer, gc, new_ids, prompt_len, seconds, skip_special_tokens,
                   effective_params(model, **params))


class _PieceStreamer:
    """A transformers streamer that turns new token ids into UTF-8-safe text pieces on a queue.

    Decoding token by token breaks characters whose bytes span two tokens (you would see "�"); this
    decodes everything generated so far and emits only the new, complete suffix.
    """

    def __init__(self, tokenizer: Any, skip_special_tokens: bool):
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.ids: list[int] = []
        self.sent = ""
        self.queue: queue.Queue = queue.Queue()
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:  # generate() first sends the prompt
            self._prompt_seen = True
            return
        self.ids.extend(value.reshape(-1).tolist())
        text = self.tokenizer.decode(self.ids, skip_special_tokens=self.skip_special_tokens)
        if text.endswith("\ufffd"):
            return  # an unfinished multi-byte character: wait for the next token
        if len(text) > len(self.sent):
            self.queue.put(text[len(self.sent):])
            self.sent = text

    def end(self) -> None:
        text = self.tokenizer.decode(self.ids, skip_special_tokens=self.skip_special_tokens)
        if len(text) > len(self.sent):
            self.queue.put(text[len(self.sent):])
            self.sent = text
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

    ``stop()`` ends generation early (the result then has ``finish_reason == "stopped"``).
    """

    def __init__(self, model: Any, tokenizer: Any, prompt_or_messages: str | Messages,
                 enable_thinking: bool | None, seed: int | None, skip_special_tokens: bool, params: dict):
        import torch
        from transformers import StoppingCriteriaList

        self.result: GenerationResult | None = None
        self._error: BaseException | None = None
        inputs = build_inputs(tokenizer, prompt_or_messages, enable_thinking)
        inputs = {k: v.to(model.device) for k, v in inputs.items()}
        gc = _generation_config(model, tokenizer, params)
        self._streamer = _PieceStreamer(tokenizer, skip_special_tokens)
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
                self.result = _finish(tokenizer, gc, self._streamer.ids, prompt_len,
                                      time.perf_counter() - start, skip_special_tokens,
                                      effective_params(model, **params))
                if self._stop.event.is_set() and self.result.finish_reason == "length":
                    self.result.finish_reason, self.result.hint = "stopped", None
            except BaseException as err:  # surfaced in the consumer's thread
                self._error = err
                self._streamer.queue.put(None)

        self._thread = threading.Thread(target=work, daemon=True)
        self._thread.start()

    def __iter__(self) -> Iterator[str]:
        while True:
            piece = self._streamer.queue.get()
            if piece is None:
                break
            yield piece
        self._thread.join()
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        """Ask generation to end after the current token."""
        self._stop.event.set()

    @property
    def text(self) -> str:
        return self._streamer.sent


def stream(
    model: Any,
    tokenizer: Any,
    prompt_or_messages: str | Messages,
    *,
    enable_thinking: bool | None = None,
    seed: int | None = None,
    skip_special_tokens: bool = True,
    **params: Any,
) -> TextStream:
    """Like :func:`generate`, but yields text pieces while the model generates (UTF-8 safe).

    Example:
        >>> for piece in qwenlab.stream(model, tokenizer, "写一首关于春天的短诗"):   # doctest: +SKIP
        ...     print(piece, end="", flush=True)

    Taught in ``04_generate.ipynb`` and ``05_chat.ipynb``.
    """
    return TextStream(model, tokenizer, prompt_or_messages, enable_thinking, seed, skip_special_tokens, params)
