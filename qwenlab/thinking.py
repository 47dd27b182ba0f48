"""Qwen3 thinking mode: split a reply into thought and answer, stream both live, pick settings per mode.

Qwen3 writes ``<think> … </think>`` before its answer when thinking mode is on. The usual snippet
searches the ids for ``</think>`` (151668) and, when it is missing, puts everything into the answer —
so a thought cut by ``max_new_tokens`` silently becomes "the answer". :func:`split_thinking` says
what happened instead: ``complete``, ``none``, ``empty`` or ``unfinished``.

Later templates (Qwen3-2507 Thinking, Qwen3.5 with thinking on) put ``<think>`` into the prompt, so
the reply starts inside the thought and has no ``<think>`` of its own. :func:`prompt_opens_thinking`
reads that from the rendered prompt, :func:`template_opens_thinking` from the tokenizer's template;
``split_thinking`` and ``ThinkingStream`` take ``prompt=`` (or detect it from the template).

Taught in ``06_thinking.ipynb``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import catalog
from .modelfacts import model_name

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "THINK_OPEN",
    "THINK_CLOSE",
    "THINK_OPEN_ID",
    "THINK_CLOSE_ID",
    "SOFT_THINK",
    "SOFT_NO_THINK",
    "STATES",
    "TOOL_CALL",
    "ThinkingSplit",
    "split_thinking",
    "prompt_opens_thinking",
    "template_opens_thinking",
    "history_content",
    "StreamEvent",
    "ThinkingStream",
    "supports_thinking",
    "soft_switch",
    "with_soft_switch",
    "thinking_mode",
    "ModeSettings",
    "mode_settings",
]

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
THINK_OPEN_ID = 151667  # Qwen3 vocabulary; looked up in the tokenizer when one is given
THINK_CLOSE_ID = 151668
SOFT_THINK = "/think"
SOFT_NO_THINK = "/no_think"
TOOL_CALL = "<tool_call>"  # ends an open thought when it comes before any </think>

STATES = {
    "complete": "思考完整 (complete): a thought closed by </think>, then the answer",
    "none": "没有思考 (none): no think tags at all — thinking off in the prompt, or a model without thinking",
    "empty": "空思考 (empty): <think></think> with nothing inside — thinking switched off (e.g. /no_think)",
    "unfinished": "思考未完成 (unfinished): <think> opened (in the reply or the prompt) but never closed — cut by "
                  "max_new_tokens, no answer yet",
}


@dataclass(frozen=True)
class ThinkingSplit:
    """A reply split into thought and answer.

    Attributes:
        thinking: the thought without tags, surrounding whitespace trimmed ("" when there is none).
        content: the answer, surrounding whitespace trimmed ("" while the thought is unfinished).
        state: ``"complete"``, ``"none"``, ``"empty"`` or ``"unfinished"`` (see :data:`STATES`).
        opened / closed: whether the reply starts with ``<think>`` / has the ``</think>`` that ends
            the thought.
        raw_thinking / raw_content: the exact text of each part; ``text`` puts them back together,
            tags included, into exactly the decoded reply (nothing lost, nothing duplicated).
        thinking_tokens / content_tokens: how many tokens each part has (None when split from text).
        prompt_opened: the prompt already opened ``<think>``, so the reply started inside the thought.
        tool_call: the thought ended at a ``<tool_call>`` that came before any ``</think>`` (the call
            is the start of ``content``).
    """

    thinking: str
    content: str
    state: str
    opened: bool
    closed: bool
    raw_thinking: str
    raw_content: str
    thinking_tokens: int | None = None
    content_tokens: int | None = None
    prompt_opened: bool = False
    tool_call: bool = False

    @property
    def text(self) -> str:
        """The decoded reply, rebuilt from the parts."""
        return ((THINK_OPEN if self.opened else "") + self.raw_thinking
                + (THINK_CLOSE if self.closed else "") + self.raw_content)

    @property
    def hint(self) -> str | None:
        """What to do when the answer is missing because the thought was cut."""
        if self.state != "unfinished":
            return None
        return ("思考未完成 (unfinished thought): the reply ended before </think>, so there is no answer yet. "
                "Raise max_new_tokens (thinking often needs 1000+ tokens) or switch thinking off "
                "(enable_thinking=False or /no_think).")

    def __str__(self) -> str:
        lines = [f"state: {self.state}"]
        if self.thinking:
            lines.append(f"thinking: {self.thinking}")
        lines.append(f"content: {self.content}")
        if self.hint:
            lines.append(f"[{self.hint}]")
        return "\n".join(lines)


def _tag_ids(tokenizer: PreTrainedTokenizerBase) -> tuple[int, int]:
    open_id = tokenizer.convert_tokens_to_ids(THINK_OPEN)  # one token in, one id out
    close_id = tokenizer.convert_tokens_to_ids(THINK_CLOSE)
    unk = getattr(tokenizer, "unk_token_id", None)
    if open_id is None or close_id is None or unk is not None and unk in (open_id, close_id):
        return -1, -1  # a tokenizer without think tags: no id can match
    return int(open_id), int(close_id)  # type: ignore[arg-type]  # one token in, one id out


def _tool_call_id(tokenizer: PreTrainedTokenizerBase) -> int:
    call_id = tokenizer.convert_tokens_to_ids(TOOL_CALL)
    unk = getattr(tokenizer, "unk_token_id", None)
    return -1 if call_id is None or unk is not None and call_id == unk else int(call_id)  # type: ignore[arg-type]


def _make_split(opened: bool, closed: bool, raw_thinking: str, raw_content: str,
                n_thinking: int | None = None, n_content: int | None = None,
                prompt_opened: bool = False, tool_call: bool = False) -> ThinkingSplit:
    if closed or tool_call:
        state = "complete" if raw_thinking.strip() else "empty"
    else:
        state = "unfinished" if opened or prompt_opened else "none"
    return ThinkingSplit(raw_thinking.strip(), raw_content.strip(), state, opened, closed,
                         raw_thinking, raw_content, n_thinking, n_content, prompt_opened, tool_call)


def _split_ids(ids: list[int], tokenizer: PreTrainedTokenizerBase, skip_special_tokens: bool,
               prompt_opened: bool = False) -> ThinkingSplit:
    open_id, close_id = _tag_ids(tokenizer)
    special = set(tokenizer.all_special_ids) if skip_special_tokens else set()
    first = next((i for i, t in enumerate(ids) if t not in special), None)
    opened = first is not None and ids[first] == open_id
    start = first + 1 if first is not None and opened else 0
    closes = [i for i, t in enumerate(ids) if t == close_id]
    call_id = _tool_call_id(tokenizer)
    before = ids[start:closes[0]] if closes else ids[start:]
    call = start + before.index(call_id) if call_id in before else -1
    in_thought = opened or prompt_opened

    def decode(part: list[int]) -> str:
        return str(tokenizer.decode(part, skip_special_tokens=skip_special_tokens))

    if in_thought and call >= 0:  # a tool call before any </think> ends the thought
        thought, answer = ids[start:call], ids[call:]
        return _make_split(opened, False, decode(thought), decode(answer), len(thought), len(answer),
                           prompt_opened, tool_call=True)
    if closes and (in_thought or call < 0):  # outside a known thought, a tool call first means no thought
        last = closes[-1]
        thought, answer = ids[start:last], ids[last + 1:]
        return _make_split(opened, True, decode(thought), decode(answer), len(thought), len(answer), prompt_opened)
    if in_thought:
        thought = ids[start:]
        return _make_split(opened, False, decode(thought), "", len(thought), 0, prompt_opened)
    return _make_split(False, False, "", decode(ids), 0, len(ids))


def _split_text(text: str, prompt_opened: bool = False) -> ThinkingSplit:
    opened = text.startswith(THINK_OPEN)
    start = len(THINK_OPEN) if opened else 0
    first_close = text.find(THINK_CLOSE, start)
    call = text.find(TOOL_CALL, start, first_close if first_close >= 0 else len(text))
    in_thought = opened or prompt_opened
    if in_thought and call >= 0:
        return _make_split(opened, False, text[start:call], text[call:], prompt_opened=prompt_opened, tool_call=True)
    if first_close >= 0 and (in_thought or call < 0):
        last = text.rfind(THINK_CLOSE)
        return _make_split(opened, True, text[start:last], text[last + len(THINK_CLOSE):], prompt_opened=prompt_opened)
    if in_thought:
        return _make_split(opened, False, text[start:], "", prompt_opened=prompt_opened)
    return _make_split(False, False, "", text)


def _as_ids(value: Any) -> list[int]:
    """Token ids from a list, a 1-D or one-row 2-D tensor / array, or a tokenizer's ``BatchEncoding``."""
    if hasattr(value, "keys") and "input_ids" in value:
        value = value["input_ids"]
    if hasattr(value, "tolist"):
        value = value.tolist()
    value = list(value)
    if value and isinstance(value[0], (list, tuple)):
        if len(value) != 1:
            raise ValueError(f"Expected the ids of one prompt, got a batch of {len(value)}.")
        value = list(value[0])
    return [int(t) for t in value]


def prompt_opens_thinking(prompt: Any, tokenizer: PreTrainedTokenizerBase | None = None) -> bool:
    """Does this rendered prompt end inside an open ``<think>``? Then the reply starts inside the thought.

    True for the generation prompt of Qwen3-2507 Thinking and of Qwen3.5 with thinking on
    (``…<|im_start|>assistant\n<think>\n``); False for Qwen3-0.6B's (``…assistant\n``, the model
    writes ``<think>`` itself) and for a switched-off thought (``<think>\n\n</think>\n\n``).
    Only the last turn (after the last ``<|im_start|>``) counts: a ``<think>`` typed into an earlier
    message does not.

    Args:
        prompt: the prompt text, or its token ids (list, tensor, ``BatchEncoding``) with ``tokenizer``.
        tokenizer: needed to decode ids.

    Taught in ``06_thinking.ipynb``.
    """
    if isinstance(prompt, str):
        text = prompt
    else:
        if tokenizer is None:
            raise ValueError("prompt_opens_thinking got token ids but no tokenizer: pass the tokenizer too.")
        text = str(tokenizer.decode(_as_ids(prompt), skip_special_tokens=False))
    turn = text.rsplit("<|im_start|>", 1)[-1]
    at = turn.rfind(THINK_OPEN)
    return at >= 0 and THINK_CLOSE not in turn[at:]


_PROBE = [{"role": "user", "content": "1+1=?"}]
_TEMPLATE_OPENS: dict[tuple[str, bool | None], bool] = {}
_TEMPLATE_CLOSES: dict[str, bool] = {}


def _probe_prompt(tokenizer: PreTrainedTokenizerBase, enable_thinking: bool | None) -> str:
    extra: dict[str, Any] = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
    try:
        return str(tokenizer.apply_chat_template(_PROBE, tokenize=False, add_generation_prompt=True, **extra))
    except Exception:  # a template that cannot render the probe: it says nothing about thinking
        return ""


def _template_closes_thinking(tokenizer: PreTrainedTokenizerBase) -> bool:
    """True when the template's default generation prompt already holds an empty, closed thought
    (thinking off by default, as Qwen3.5's small models)."""
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        return False
    if str(template) not in _TEMPLATE_CLOSES:
        turn = _probe_prompt(tokenizer, None).rsplit("<|im_start|>", 1)[-1]
        _TEMPLATE_CLOSES[str(template)] = THINK_CLOSE in turn
    return _TEMPLATE_CLOSES[str(template)]


def template_opens_thinking(tokenizer: PreTrainedTokenizerBase, enable_thinking: bool | None = None) -> bool:
    """Does this tokenizer's chat template open ``<think>`` in the generation prompt?

    Renders a one-question conversation with ``add_generation_prompt=True`` (and ``enable_thinking``
    when given; None: the template's default) and asks :func:`prompt_opens_thinking`. False for a
    tokenizer without a chat template. Cached per template.

    Taught in ``06_thinking.ipynb``.
    """
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        return False
    key = (str(template), enable_thinking)
    if key not in _TEMPLATE_OPENS:
        _TEMPLATE_OPENS[key] = prompt_opens_thinking(_probe_prompt(tokenizer, enable_thinking))
    return _TEMPLATE_OPENS[key]


def _resolve_prompt_opened(prompt: Any, prompt_opened: bool | None,
                           tokenizer: PreTrainedTokenizerBase | None) -> bool:
    if prompt_opened is not None:
        return prompt_opened
    if prompt is not None:
        return prompt_opens_thinking(prompt, tokenizer)
    return tokenizer is not None and template_opens_thinking(tokenizer)


def split_thinking(reply: Any, tokenizer: PreTrainedTokenizerBase | None = None, skip_special_tokens: bool = True, *,
                   prompt: Any = None, prompt_opened: bool | None = None) -> ThinkingSplit:
    """Split a Qwen3 reply into its thought and its answer, and say which case it is.

    Works on token ids (the reliable way: the last ``</think>`` token, id 151668 in Qwen3) or on text
    (the last ``"</think>"`` string, for text from a server or a file). Cases:

    - ``complete``: ``<think>thought</think>answer`` → both parts.
    - ``none``: no tags (thinking switched off in the prompt, or a model without thinking) → all answer.
    - ``empty``: ``<think>\\n\\n</think>answer`` (e.g. after ``/no_think``) → empty thought, the answer.
    - ``unfinished``: ``<think>`` but no ``</think>`` — the thought was cut by ``max_new_tokens``. The
      partial thought stays in ``thinking``, ``content`` is empty and ``hint`` says what to do. (The
      common snippet puts this half thought into the answer.)

    When the prompt already opened ``<think>`` (Qwen3-2507 Thinking, Qwen3.5 with thinking on), the
    reply starts inside the thought: text before ``</think>`` is thought, and a reply cut before
    ``</think>`` is ``unfinished`` — never an answer. In an open thought a ``<tool_call>`` that comes
    before any ``</think>`` ends the thought (``tool_call=True``; the call starts ``content``).
    Without that knowledge, a reply that has ``</think>`` but no opening ``<think>`` still counts
    everything before the last ``</think>`` as thought.

    Args:
        reply: new token ids (list or 1-D tensor), a :class:`~qwenlab.generation.GenerationResult`,
            or the decoded text.
        tokenizer: needed for ids (to decode them).
        skip_special_tokens: drop ``<|im_end|>`` and other special tokens when decoding (think tags
            are not special tokens and are always seen).
        prompt: the rendered prompt (text or ids) the reply answers; decides whether the prompt
            opened the thought (:func:`prompt_opens_thinking`). The reliable way.
        prompt_opened: say it directly instead (None: from ``prompt``; without a prompt, from the
            tokenizer's template with its default settings, :func:`template_opens_thinking`; with
            neither, False).

    Example:
        >>> r = qwenlab.generate(model, tokenizer, "1+1=?", max_new_tokens=512)   # doctest: +SKIP
        >>> s = qwenlab.split_thinking(r.token_ids, tokenizer)                     # doctest: +SKIP
        >>> s.state, s.thinking[:40], s.content                                    # doctest: +SKIP

    Taught in ``06_thinking.ipynb``.
    """
    if hasattr(reply, "token_ids") and hasattr(reply, "finish_reason"):  # a GenerationResult
        reply = reply.token_ids
    if isinstance(reply, str):
        return _split_text(reply, _resolve_prompt_opened(prompt, prompt_opened, tokenizer))
    if hasattr(reply, "tolist"):
        reply = reply.tolist()
    ids = [int(t) for t in reply]
    if ids and tokenizer is None:
        raise ValueError("split_thinking got token ids but no tokenizer: pass the tokenizer, "
                         "split_thinking(ids, tokenizer), so the parts can be decoded.")
    opened = _resolve_prompt_opened(prompt, prompt_opened, tokenizer)
    if not ids or tokenizer is None:
        return _make_split(False, False, "", "", 0, 0, opened)
    return _split_ids(ids, tokenizer, skip_special_tokens, opened)


def history_content(reply: ThinkingSplit | str) -> str:
    """The part of a reply that goes back into the chat history: the answer, with no thinking.

    Qwen's rule for multi-turn chat: earlier assistant turns keep only their final answer. An
    unfinished thought gives ``""``; a stray ``<think>`` opened after the answer is cut off too.
    Taught in ``05_chat.ipynb`` and ``06_thinking.ipynb``.
    """
    split = _split_text(reply) if isinstance(reply, str) else reply
    content = split.content.split(THINK_OPEN)[0]
    return content.replace(THINK_CLOSE, "").strip()


# ---- live streaming -----------------------------------------------------------------------------

@dataclass(frozen=True)
class StreamEvent:
    """One thing a :class:`ThinkingStream` says while a reply arrives.

    ``channel`` is ``"thinking"`` or ``"answer"`` (append ``text`` to that pane), or ``"retract"``:
    a later ``</think>`` showed that the text shown as answer (``text``) was still thought — clear the
    answer pane; that text arrives again on the thinking channel right after.
    """

    channel: str
    text: str


def _partial_tag_len(text: str) -> int:
    """Length of the longest end of ``text`` that could still grow into a think tag or ``<tool_call>``."""
    for n in range(min(len(text), len(TOOL_CALL) - 1), 0, -1):
        tail = text[-n:]
        if any(tag.startswith(tail) and len(tail) < len(tag) for tag in (THINK_OPEN, THINK_CLOSE, TOOL_CALL)):
            return n
    return 0


class ThinkingStream:
    """Feed a reply piece by piece; get its thought and its answer on two channels, live.

    Feed token ids with :meth:`feed` (the reliable way) or text pieces with :meth:`feed_text` (from
    :func:`qwenlab.stream` or a server); call :meth:`close` at the end. Each call returns the
    :class:`StreamEvent` s to show. At every moment the emitted text agrees with
    :func:`split_thinking` on what has arrived so far (characters whose bytes are still incomplete and
    text that may still become a tag are held back until they are decided); after :meth:`close`,
    ``raw_thinking`` / ``raw_answer`` equal the ``raw_thinking`` / ``raw_content`` of
    ``split_thinking`` on the whole reply, and :attr:`result` is that split.

    ``prompt=`` (the rendered prompt) or ``prompt_opened=`` say whether the prompt opened ``<think>``,
    as in :func:`split_thinking`; without them it is read from the tokenizer's template (default
    settings), and with no tokenizer either the reply is expected to open its own thought.

    Example:
        >>> ts = ThinkingStream(tokenizer)                                    # doctest: +SKIP
        >>> for token_id in ids:                                              # doctest: +SKIP
        ...     for ev in ts.feed(token_id):
        ...         print(ev.channel, ev.text)

    Taught in ``06_thinking.ipynb`` (drives the two-pane ``ThinkingView``).
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase | None = None, skip_special_tokens: bool = True, *,
                 prompt: Any = None, prompt_opened: bool | None = None):
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.prompt_opened = _resolve_prompt_opened(prompt, prompt_opened, tokenizer)
        self.ids: list[int] = []
        self.text = ""
        self.raw_thinking = ""
        self.raw_answer = ""
        self.closed = False
        self._mode: str | None = None
        self._split = _make_split(False, False, "", "", 0, 0, self.prompt_opened)

    @property
    def thinking(self) -> str:
        return self.raw_thinking.strip()

    @property
    def answer(self) -> str:
        return self.raw_answer.strip()

    @property
    def state(self) -> str:
        """State of the reply so far (``unfinished`` while a thought is being written)."""
        return self._split.state

    @property
    def result(self) -> ThinkingSplit:
        """``split_thinking`` of everything fed so far."""
        return self._split

    def _use(self, mode: str) -> None:
        if self.closed:
            raise RuntimeError("This ThinkingStream is closed; make a new one for the next reply.")
        if self._mode not in (None, mode):
            raise ValueError("Feed either token ids (feed) or text (feed_text) to one ThinkingStream, not both.")
        self._mode = mode

    def feed(self, token_ids: int | Iterable[int]) -> list[StreamEvent]:
        """Add one token id (or several); return the events to show."""
        self._use("ids")
        if self.tokenizer is None:
            raise ValueError("ThinkingStream needs the tokenizer to decode ids: ThinkingStream(tokenizer).")
        ids = token_ids.tolist() if hasattr(token_ids, "tolist") else token_ids  # tensors, numpy
        self.ids.extend([int(ids)] if isinstance(ids, int) else [int(t) for t in ids])
        self._split = _split_ids(self.ids, self.tokenizer, self.skip_special_tokens, self.prompt_opened)
        return self._emit(self._split, final=False)

    def feed_text(self, piece: str) -> list[StreamEvent]:
        """Add a piece of decoded text; return the events to show."""
        self._use("text")
        self.text += piece
        self._split = _split_text(self.text, self.prompt_opened)
        stable = self.text[: len(self.text) - _partial_tag_len(self.text)]
        return self._emit(_split_text(stable, self.prompt_opened), final=False)

    def close(self) -> list[StreamEvent]:
        """The reply is over: emit whatever was held back; :attr:`result` is final."""
        events = self._emit(self._split, final=True)
        self.closed = True
        return events

    def _emit(self, split: ThinkingSplit, final: bool) -> list[StreamEvent]:
        thinking, answer = split.raw_thinking, split.raw_content
        if not final and self._mode == "ids":  # hold back bytes of a character not complete yet
            if split.state == "unfinished":
                thinking = thinking.rstrip("\ufffd")
            else:
                answer = answer.rstrip("\ufffd")
        events: list[StreamEvent] = []
        if not answer.startswith(self.raw_answer):
            events.append(StreamEvent("retract", self.raw_answer))
            self.raw_answer = ""
        if len(thinking) > len(self.raw_thinking) and thinking.startswith(self.raw_thinking):
            events.append(StreamEvent("thinking", thinking[len(self.raw_thinking):]))
            self.raw_thinking = thinking
        if len(answer) > len(self.raw_answer):
            events.append(StreamEvent("answer", answer[len(self.raw_answer):]))
            self.raw_answer = answer
        return events


# ---- modes and settings -------------------------------------------------------------------------

def supports_thinking(tokenizer: PreTrainedTokenizerBase) -> bool:
    """True when the tokenizer's chat template knows ``enable_thinking`` (Qwen3, Qwen3.5) or always opens
    ``<think>`` in the prompt (Qwen3-2507 Thinking)."""
    template = getattr(tokenizer, "chat_template", None) or ""
    if isinstance(template, dict):
        template = " ".join(template.values())
    return "enable_thinking" in template or bool(template) and template_opens_thinking(tokenizer)


_SOFT = re.compile(r"(?<![\w/])(/think|/no_think)(?![\w/])")


def soft_switch(text: str) -> bool | None:
    """The last soft switch in a message: ``/think`` → True, ``/no_think`` → False, none → None."""
    found = _SOFT.findall(text or "")
    return None if not found else found[-1] == SOFT_THINK


def with_soft_switch(text: str, thinking: bool) -> str:
    """Append Qwen3's soft switch to a user message: ``"… /think"`` or ``"… /no_think"``."""
    return f"{text.rstrip()} {SOFT_THINK if thinking else SOFT_NO_THINK}"


def thinking_mode(messages: Sequence[dict], enable_thinking: bool | None = None,
                  tokenizer: PreTrainedTokenizerBase | None = None) -> bool:
    """Will the model think on its next reply? Qwen3's rules, in order:

    1. a template that opens ``<think>`` in the prompt for this ``enable_thinking`` (Qwen3-2507
       Thinking always, Qwen3.5 with ``enable_thinking=True``) → thinking (when ``tokenizer`` is given);
    2. a model whose template has no ``enable_thinking`` never thinks (when ``tokenizer`` is given);
    3. ``enable_thinking=False`` (the hard switch) → no thinking; soft switches are then ignored;
    4. else the most recent soft switch (``/think`` or ``/no_think``) in a user or system message
       (Qwen3; Qwen3.5 has no soft switch — see ``qwenlab.catalog`` ``soft_switch``);
    5. else the template's default: off when its default prompt already closes an empty thought
       (Qwen3.5 small), else on (Qwen3's default).

    Taught in ``06_thinking.ipynb``.
    """
    if tokenizer is not None and template_opens_thinking(tokenizer, enable_thinking):
        return True
    if tokenizer is not None and not supports_thinking(tokenizer):
        return False
    if enable_thinking is False:
        return False
    for message in reversed(list(messages)):
        if message.get("role") in ("user", "system"):
            switch = soft_switch(str(message.get("content", "")))
            if switch is not None:
                return switch
    return not (enable_thinking is None and tokenizer is not None and _template_closes_thinking(tokenizer))


@dataclass
class ModeSettings:
    """The sampling settings for one mode: Qwen's recommendation merged with your overrides.

    Attributes:
        thinking: the mode these settings are for.
        params: what to pass to ``generate`` (recommended values, then yours on top).
        source: where the base values came from (a catalog entry, or the model's generation_config).
        recommended: the recommended values alone.
        warnings: advice when an override goes against Qwen's guidance.
    """

    thinking: bool
    params: dict
    source: str
    recommended: dict
    warnings: list[str]


def _catalog_name(model_or_name: Any) -> str | None:
    if model_or_name is None:
        return None
    name = model_name(model_or_name)  # the name load_model recorded, else the model's config path
    if not name:
        return None
    info = catalog.find(name)
    return info.name if info else None


_SAMPLING_ONLY = ("temperature", "top_p", "top_k", "min_p")


def mode_settings(model_or_name: Any, thinking: bool, **overrides: Any) -> ModeSettings:
    """Qwen's recommended sampling for this model and mode, with your overrides applied on top.

    Catalog models get the values from :func:`qwenlab.catalog.recommended_sampling` (Qwen3 thinking:
    T=0.6, top_p=0.95, top_k=20; non-thinking: T=0.7, top_p=0.8, top_k=20). A model that is not in the
    catalog (a local folder) keeps its own ``generation_config``: no values are added.

    Args:
        model_or_name: a model loaded with :func:`qwenlab.load_model`, or a catalog name.
        thinking: the mode of the next reply (see :func:`thinking_mode`).
        **overrides: your values (``temperature=…``, ``max_new_tokens=…``); they always win.

    Taught in ``06_thinking.ipynb``.
    """
    name = _catalog_name(model_or_name)
    recommended = catalog.recommended_sampling(name, thinking=thinking) if name else {}
    source = f"catalog: {name} ({'thinking' if thinking else 'non-thinking'})" if name else \
        "the model's generation_config (not in the catalog)"
    params = {**recommended, **overrides}
    if params.get("do_sample") is False:  # greedy: the recommended sampling values do not apply
        params = {k: v for k, v in params.items() if k in overrides or k not in _SAMPLING_ONLY}
    warnings = []
    if thinking and params.get("do_sample") is False:
        warnings.append("Qwen advises against greedy decoding (do_sample=False) in thinking mode: it can "
                        "repeat itself endlessly. Use the recommended sampling (T=0.6, top_p=0.95, top_k=20).")
    return ModeSettings(thinking, params, source, recommended, warnings)
