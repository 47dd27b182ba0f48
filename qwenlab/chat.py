"""Multi-turn chat: history as a list of messages, a context budget, thinking kept out of the history.

A chat model has no memory: every reply is generated from the whole conversation rendered again with
the chat template. :class:`Conversation` keeps that list of messages, drops the oldest turns when the
prompt would not fit the context budget (never the system prompt), stores assistant turns without
their thinking (Qwen's multi-turn rule) and applies Qwen's recommended sampling for the mode of each
reply unless you override it. ``qwenlab chat`` is the same thing in a terminal.

Taught in ``05_chat.ipynb`` (and ``06_thinking.ipynb`` for the thinking mode).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from .display import Table
from .files import write_text_atomic
from .generation import (
    DEFAULT_MAX_NEW_TOKENS,
    ContextTooLongError,
    GenerationResult,
    as_messages,
    build_inputs,
    context_length,
    effective_params,
    generate,
    generation_config,
)
from .generation import stream as stream_text
from .modelfacts import model_name
from .thinking import (
    ModeSettings,
    StreamEvent,
    ThinkingSplit,
    ThinkingStream,
    history_content,
    mode_settings,
    split_thinking,
    template_opens_thinking,
    thinking_mode,
)

if TYPE_CHECKING:
    from .modelfacts import CausalLM
    from transformers import PreTrainedTokenizerBase

__all__ = ["ContextTooLongError", "ChatReply", "ContextWindow", "Conversation", "ChatStream", "read_saved"]

FORMAT = "qwenlab-conversation"
# ContextTooLongError (from qwenlab.generation) is raised here when even the system prompt and the last
# message alone do not fit the context budget.


@dataclass
class ContextWindow:
    """The part of the conversation the next prompt holds.

    Attributes:
        messages: what is sent: the system prompt (if any) and the newest turns that fit.
        dropped: the oldest messages left out to fit the budget (still kept in the history).
        prompt_tokens: tokens of the rendered prompt.
        budget: tokens the prompt may use: ``max_context_tokens`` minus ``max_new_tokens`` kept free
            for the reply (None: no budget).
    """

    messages: list[dict]
    dropped: list[dict]
    prompt_tokens: int
    budget: int | None


@dataclass
class ChatReply:
    """One assistant reply.

    Attributes:
        content: the answer — what goes into the history.
        thinking: the thought ("" when the model did not think); never stored in the history.
        state: ``complete`` / ``none`` / ``empty`` / ``unfinished`` (see :func:`qwenlab.split_thinking`).
        finish_reason: ``stop``, ``length`` (cut by max_new_tokens) or ``stopped`` (you stopped it).
        thinking_mode: whether this reply was generated in thinking mode.
        params: the sampling parameters generation really used.
        dropped: messages left out of this prompt to fit the context budget.
        warnings: advice about the settings (e.g. greedy decoding in thinking mode).
    """

    content: str
    thinking: str
    state: str
    finish_reason: str
    thinking_mode: bool
    params: dict
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    dropped: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    split: ThinkingSplit | None = field(default=None, repr=False)
    result: GenerationResult | None = field(default=None, repr=False)

    @property
    def text(self) -> str:
        """The whole reply as generated (thought and tags included)."""
        return self.result.text if self.result else self.content

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def hint(self) -> str | None:
        """What to change when the reply was cut (an unfinished thought, or max_new_tokens reached)."""
        if self.split is not None and self.split.hint:
            return self.split.hint
        return self.result.hint if self.result else None

    def __str__(self) -> str:
        return self.content if not self.hint else f"{self.content}\n[{self.hint}]"


def _json_safe(params: dict) -> dict:
    out = {}
    for key, value in params.items():
        try:
            json.dumps(value)
        except TypeError:
            continue
        out[key] = value
    return out


class Conversation:
    """A chat with a model: the history, the context budget, the mode, and the replies.

    Args:
        model, tokenizer: from :func:`qwenlab.load_model` (``model=None`` renders prompts but cannot reply).
        system: the system prompt; always first in the prompt, never dropped.
        max_context_tokens: tokens the prompt plus the reply may use. When the history grows past it,
            the oldest turns are left out of the prompt (and listed in :attr:`dropped`). Default: the
            model's context length.
        thinking: Qwen3's hard switch ``enable_thinking``: True / False, or None for the template's
            default (on). Soft switches ``/think`` and ``/no_think`` in your messages work when it is
            not False.
        **params: generation parameters for every reply (``max_new_tokens=…``, ``temperature=…``);
            they override Qwen's recommended values for the mode.

    Example:
        >>> chat = qwenlab.Conversation(model, tokenizer, system="你是一个乐于助人的助手。")   # doctest: +SKIP
        >>> print(chat.reply("你好！", max_new_tokens=64))                                  # doctest: +SKIP
        >>> for piece in chat.reply("再说一遍", stream=True):                                # doctest: +SKIP
        ...     print(piece, end="", flush=True)

    Taught in ``05_chat.ipynb``.
    """

    def __init__(self, model: CausalLM, tokenizer: PreTrainedTokenizerBase, system: str | None = None,
                 max_context_tokens: int | None = None, thinking: bool | None = None, **params: Any):
        self.model = model
        self.tokenizer = tokenizer
        self.system = system
        self.max_context_tokens = max_context_tokens
        self.thinking = thinking
        self.params = dict(params)
        self.history: list[dict] = []
        self.dropped: list[dict] = []

    # ---- the history -----------------------------------------------------------------------------

    @property
    def messages(self) -> list[dict]:
        """The whole conversation as chat messages: the system prompt, then every turn."""
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + [dict(m) for m in self.history]

    def add_user(self, content: str) -> None:
        """Add a user message (it may end with a soft switch, ``/think`` or ``/no_think``).

        Raises:
            TypeError: ``content`` is not a str (``None`` is not stored as the text "None").
        """
        _check_text("add_user", content)
        if self.history and self.history[-1]["role"] == "user":
            raise ValueError("The last message is already a user message with no reply yet: call reply() "
                             "first, or add_assistant() to answer it yourself.")
        self.history.append({"role": "user", "content": content})

    def add_assistant(self, content: str) -> None:
        """Add an assistant message; any ``<think>…</think>`` part is removed (Qwen's multi-turn rule)."""
        _check_text("add_assistant", content)
        self.history.append({"role": "assistant", "content": history_content(content)})

    def reset(self) -> None:
        """Forget every turn (the system prompt, mode and parameters stay)."""
        self.history.clear()
        self.dropped = []

    # ---- the prompt ------------------------------------------------------------------------------

    def _context_limit(self) -> int | None:
        if self.max_context_tokens:
            return int(self.max_context_tokens)
        return context_length(self.model)

    def count_tokens(self, messages: list[dict]) -> int:
        """Tokens of ``messages`` rendered with the chat template (generation prompt included)."""
        return int(build_inputs(self.tokenizer, messages, self.thinking)["input_ids"].shape[1])

    def window(self, max_new_tokens: int | None = None) -> ContextWindow:
        """The messages the next prompt holds: the newest whole turns that fit the budget.

        The budget is ``max_context_tokens - max_new_tokens``: room is kept for the reply. Turns are
        dropped from the oldest, a user message and its answer together; the system prompt and the
        last user message are never dropped.

        Raises:
            ContextTooLongError: the system prompt and the last message alone do not fit.
        """
        head = self.messages[:1] if self.system else []
        if not self.history:
            return ContextWindow(head, [], self.count_tokens(head) if head else 0, None)
        reserve = max_new_tokens if max_new_tokens is not None else self._max_new_tokens({})
        limit = self._context_limit()
        budget = None if limit is None else limit - reserve
        starts = [i for i, m in enumerate(self.history) if m["role"] == "user"] or [0]
        if self.history[0]["role"] != "user":
            starts.insert(0, 0)

        def size(start: int) -> int:
            return self.count_tokens(head + self.history[start:])

        lo, hi = 0, len(starts) - 1  # binary search: fewer turns never need more tokens
        if budget is not None and size(starts[lo]) > budget:
            if size(starts[hi]) > budget:
                raise ContextTooLongError(
                    f"The system prompt and the last message need {size(starts[hi])} tokens, but the budget "
                    f"leaves {budget} (max_context_tokens={limit} minus max_new_tokens={reserve} for the "
                    "reply): shorten the message or the system prompt, or raise max_context_tokens.",
                    size(starts[hi]), budget)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if size(starts[mid]) <= budget else (mid, hi)
            lo = hi
        start = starts[lo]
        kept = head + [dict(m) for m in self.history[start:]]
        return ContextWindow(kept, [dict(m) for m in self.history[:start]], self.count_tokens(kept), budget)

    def render(self, max_new_tokens: int | None = None) -> str:
        """The prompt text of the next reply, as the chat template writes it (after any dropping)."""
        extra: dict[str, Any] = {} if self.thinking is None else {"enable_thinking": self.thinking}
        return str(self.tokenizer.apply_chat_template(self.window(max_new_tokens).messages, tokenize=False,
                                                      add_generation_prompt=True, **extra))

    # ---- modes and parameters --------------------------------------------------------------------

    def next_thinking_mode(self) -> bool:
        """Will the next reply think? (hard switch, then the latest soft switch; see ``thinking_mode``)."""
        return thinking_mode(self.messages, self.thinking, self.tokenizer)

    def settings(self, **params: Any) -> ModeSettings:
        """Parameters for the next reply: Qwen's recommendation for its mode < ``self.params`` < ``params``."""
        return mode_settings(self.model, self.next_thinking_mode(), **{**self.params, **params})

    def set_params(self, **params: Any) -> None:
        """Change the generation parameters of every later reply, checked first: a wrong name
        (``TypeError``) or value (``ValueError``, e.g. ``max_new_tokens="abc"``) changes nothing.
        ``None`` removes a parameter (back to the recommended or the model's value)."""
        merged = {k: v for k, v in {**self.params, **params}.items() if v is not None}
        if self.model is not None:
            settings = mode_settings(self.model, self.next_thinking_mode(), **merged)
            generation_config(self.model, self.tokenizer, settings.params)
        self.params = merged

    def _max_new_tokens(self, params: dict) -> int:
        merged = {**self.params, **params}
        if merged.get("max_new_tokens"):
            return int(merged["max_new_tokens"])
        if self.model is None:
            return DEFAULT_MAX_NEW_TOKENS
        return int(effective_params(self.model).get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS)

    # ---- replies ---------------------------------------------------------------------------------

    def _prepare(self, message: str | None, params: dict) -> tuple[ContextWindow, ModeSettings]:
        if self.model is None:
            raise ValueError("This Conversation has no model (model=None): it can render prompts but not "
                             "reply. Make it with a model from qwenlab.load_model to get replies.")
        if message is not None:
            self.add_user(message)
        try:
            if not self.history or self.history[-1]["role"] != "user":
                raise ValueError("Nothing to reply to: the last message is not a user message. "
                                 "Pass one: conversation.reply('你好')")
            settings = self.settings(**params)
            generation_config(self.model, self.tokenizer, settings.params)  # bad parameters fail here
            window = self.window(self._max_new_tokens(settings.params))
        except BaseException:
            if message is not None:  # refused: the conversation stays as it was
                self.history.pop()
            raise
        self.dropped = window.dropped
        return window, settings

    def prompt_opens_thinking(self) -> bool:
        """Does the chat template open ``<think>`` in this conversation's prompt (Qwen3-2507 Thinking,
        Qwen3.5 with thinking on)? Then a reply starts inside its thought. Read from the template, with the
        same ``enable_thinking`` the prompt is rendered with."""
        return template_opens_thinking(self.tokenizer, self.thinking)

    def _make_reply(self, result: GenerationResult, window: ContextWindow, settings: ModeSettings,
                    split: ThinkingSplit | None = None) -> ChatReply:
        split = split or split_thinking(result.token_ids, self.tokenizer, prompt_opened=self.prompt_opens_thinking())
        return ChatReply(
            content=history_content(split), thinking=split.thinking, state=split.state,
            finish_reason=result.finish_reason, thinking_mode=settings.thinking, params=result.params,
            prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens,
            seconds=result.seconds, dropped=window.dropped, warnings=list(settings.warnings),
            split=split, result=result,
        )

    def _commit(self, reply: ChatReply) -> None:
        self.history.append({"role": "assistant", "content": reply.content})

    @overload
    def reply(self, message: str | None = None, *, stream: Literal[False] = False, seed: int | None = None,
              **params: Any) -> ChatReply: ...

    @overload
    def reply(self, message: str | None = None, *, stream: Literal[True], seed: int | None = None,
              **params: Any) -> ChatStream: ...

    def reply(self, message: str | None = None, *, stream: bool = False, seed: int | None = None,
              **params: Any) -> ChatReply | ChatStream:
        """Generate the assistant's next reply and add it (without its thinking) to the history.

        Args:
            message: a new user message; None replies to the last user message already added.
            stream: return a :class:`ChatStream` to iterate over text pieces as they are generated.
            seed: seed sampling, to reproduce a reply.
            **params: generation parameters for this reply only (they win over everything else).

        Returns:
            a :class:`ChatReply` (``print`` it for the answer), or a :class:`ChatStream`.
        """
        window, settings = self._prepare(message, params)
        try:
            if stream:
                text_stream = stream_text(self.model, self.tokenizer, window.messages,
                                          enable_thinking=self.thinking, seed=seed, **settings.params)
                return ChatStream(self, text_stream, window, settings, added_message=message is not None)
            result = generate(self.model, self.tokenizer, window.messages, enable_thinking=self.thinking,
                              seed=seed, **settings.params)
        except BaseException:
            if message is not None:  # interrupted or failed: the conversation stays as it was
                self.history.pop()
            raise
        reply = self._make_reply(result, window, settings)
        self._commit(reply)
        return reply

    # ---- saving ----------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """What :meth:`save` writes: the format tag, the model's name, the settings and every turn."""
        return {
            "format": FORMAT,
            "version": 1,
            "model": None if self.model is None else model_name(self.model),
            "system": self.system,
            "thinking": self.thinking,
            "max_context_tokens": self.max_context_tokens,
            "params": _json_safe(self.params),
            "messages": [dict(m) for m in self.history],
        }

    def save(self, path: str | Path) -> Path:
        """Write the conversation (system prompt, settings, every turn) to a JSON file.

        The file is written under a temporary name and renamed into place, so a failed save (a full
        disk, a folder you may not write) leaves any older file of that name as it was.
        """
        path = Path(path).expanduser()
        write_text_atomic(path, json.dumps(self.to_dict(), ensure_ascii=False, indent=2))
        return path

    @classmethod
    def from_dict(cls, data: dict, model: CausalLM, tokenizer: PreTrainedTokenizerBase) -> Conversation:
        """A conversation from :meth:`to_dict`'s data (checked with :func:`read_saved` first)."""
        conv = cls(model, tokenizer, system=data.get("system"), max_context_tokens=data.get("max_context_tokens"),
                   thinking=data.get("thinking"), **(data.get("params") or {}))
        conv.history = [{"role": m["role"], "content": m["content"]} for m in data.get("messages", [])]
        return conv

    @classmethod
    def load(cls, path: str | Path, model: CausalLM, tokenizer: PreTrainedTokenizerBase) -> Conversation:
        """Read a conversation saved with :meth:`save` and continue it with ``model``.

        Raises:
            ValueError: the file is missing, not JSON, or not a saved conversation (see :func:`read_saved`).
        """
        return cls.from_dict(read_saved(path), model, tokenizer)

    # ---- display ---------------------------------------------------------------------------------

    def __repr__(self) -> str:
        return (f"Conversation({len(self.history)} messages, system={self.system!r}, thinking={self.thinking}, "
                f"max_context_tokens={self.max_context_tokens})")

    def table(self) -> Table:
        """The conversation as a role/content table (what Jupyter shows for a Conversation)."""
        note = [f"{len(self.dropped)} 条旧消息未放入提示 (dropped to fit the budget)"] if self.dropped else []
        return Table([], [(m["role"], m["content"]) for m in self.messages], notes=note)

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()


def _check_text(where: str, content: Any) -> None:
    if not isinstance(content, str):
        raise TypeError(f"{where} needs the message text as a str, got {content!r} ({type(content).__name__}).")


def read_saved(path: str | Path) -> dict:
    """Read and check a conversation file written by :meth:`Conversation.save` (or ``/save``, or the
    autosave of ``qwenlab chat``), without a model: ``qwenlab chat --load`` checks it before loading one.

    Raises:
        ValueError: the file is missing or unreadable, not JSON, or not a saved conversation; the
            message names what is wrong and what to give instead.
    """
    path = Path(path).expanduser()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"Cannot read a conversation from {path} ({err}); give the path of a file "
                         "written by Conversation.save or /save.") from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path} is not a saved qwenlab conversation (no \"format\": \"{FORMAT}\").")
    problem = _saved_problem(data)
    if problem:
        raise ValueError(f"{path} is a damaged qwenlab conversation: {problem.rstrip('.')}. Fix that entry by hand or "
                         "start a new chat.")
    return data


def _saved_problem(data: dict) -> str | None:
    """What is wrong in a saved conversation's fields (None: nothing)."""
    messages = data.get("messages", [])
    if not isinstance(messages, list):
        return "\"messages\" is not a list"
    try:
        if messages:
            as_messages(messages)
    except (TypeError, ValueError) as err:
        return str(err)
    for key, kind in (("system", str), ("thinking", bool), ("max_context_tokens", int), ("params", dict)):
        if data.get(key) is not None and not isinstance(data[key], kind):
            return f"\"{key}\" should be {kind.__name__} or null, got {data[key]!r}"
    return None


class ChatStream:
    """A reply being generated. Iterate for text pieces, or :meth:`events` for thought/answer channels.

    When the iteration ends (or :meth:`finish` is called) the reply is added to the history and
    :attr:`reply` holds the :class:`ChatReply`. :meth:`stop` ends the reply early; what was generated
    is kept. Leaving the loop (``break``) or interrupting it (Ctrl-C, Jupyter's stop button) stops the
    reply the same way and keeps the conversation. When generation fails, the user message this reply
    added is taken back out, so the conversation is as it was before and the error is raised.
    """

    def __init__(self, conversation: Conversation, text_stream: Any, window: ContextWindow,
                 settings: ModeSettings, added_message: bool = False):
        self.conversation = conversation
        self._added_message = added_message
        self.window = window
        self.settings = settings
        self.reply: ChatReply | None = None
        self._text_stream = text_stream
        self._thinking = ThinkingStream(prompt_opened=conversation.prompt_opens_thinking())
        self._pending: list[StreamEvent] = []
        self._done = False

    @property
    def thinking_mode(self) -> bool:
        return self.settings.thinking

    def stop(self) -> None:
        """End the reply after the current token (the part generated so far is kept)."""
        self._text_stream.stop()

    def _pieces(self) -> Iterator[str]:
        if not self._done:
            try:
                for piece in self._text_stream:
                    self._pending.extend(self._thinking.feed_text(piece))
                    yield piece
            except (KeyboardInterrupt, GeneratorExit):  # Ctrl-C, or the loop was left with break
                self._text_stream.close()  # stops generation and waits for it: the result is there
                self._complete()
                raise
            except BaseException:
                self._take_back()
                raise
            self._done = True
        self._complete()

    def _take_back(self) -> None:
        """Generation failed: remove the user message this reply added (the history is as before)."""
        history = self.conversation.history
        if self._added_message and self.reply is None and history and history[-1]["role"] == "user":
            history.pop()
        self._added_message = False

    def __iter__(self) -> Iterator[str]:
        """Text pieces as the model writes them (thought and tags included, UTF-8 safe)."""
        return self._pieces()

    def events(self) -> Iterator[StreamEvent]:
        """:class:`~qwenlab.thinking.StreamEvent` s: ``thinking`` / ``answer`` text, or ``retract``."""
        for _ in self._pieces():
            yield from self._take_events()
        yield from self._take_events()

    def _take_events(self) -> list[StreamEvent]:
        events, self._pending = self._pending, []
        return events

    def finish(self) -> ChatReply:
        """Wait for the end of the reply (consuming what is left) and return it."""
        for _ in self._pieces():
            pass
        assert self.reply is not None
        return self.reply

    def _complete(self) -> None:
        if self.reply is not None:
            return
        result = self._text_stream.result
        if result is None:  # generation failed after the loop was left
            self._take_back()
            raise RuntimeError("The reply ended without a result (generation failed); see the error above.")
        self._done = True
        self._pending.extend(self._thinking.close())
        split = split_thinking(result.token_ids, self.conversation.tokenizer,
                               prompt_opened=self.conversation.prompt_opens_thinking())
        self.reply = self.conversation._make_reply(result, self.window, self.settings, split)
        self.conversation._commit(self.reply)
