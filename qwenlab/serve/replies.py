"""From the model's text to what an OpenAI client expects: ``stop`` strings cut, Qwen3's ``<think>`` part
as reasoning (sent as ``reasoning_content`` and ``reasoning``), Qwen's ``<tool_call>{...}</tool_call>`` blocks as ``tool_calls``.

:class:`ReplyParser` takes the reply piece by piece (as it is generated) and returns
:class:`ReplyEvent` s in the order a stream sends them; text that could still turn into a stop string or
a tag is held back until it is decided, so nothing sent ever has to be taken back. Pure text in, events
out: no model, no HTTP. :func:`parse_tool_calls` is the same parser over a whole reply.

Taught in ``08_serve.ipynb`` (tool calls).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..thinking import ThinkingStream

__all__ = ["TOOL_OPEN", "TOOL_CLOSE", "ToolCall", "ReplyEvent", "ReplyParser", "parse_tool_call", "parse_tool_calls"]

TOOL_OPEN = "<tool_call>"
TOOL_CLOSE = "</tool_call>"


def _call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


@dataclass(frozen=True)
class ToolCall:
    """One function call the model asked for.

    Attributes:
        name: the function's name.
        arguments: its arguments as JSON text (OpenAI's ``function.arguments`` is a string).
        id: the id a client sends back with the tool's result (``tool_call_id``).
    """

    name: str
    arguments: str
    id: str = field(default_factory=_call_id)

    def to_openai(self, index: int | None = None) -> dict:
        """The OpenAI ``tool_calls`` entry (with ``index`` for a streaming delta)."""
        entry: dict = {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}
        return entry if index is None else {"index": index, **entry}


@dataclass(frozen=True)
class ReplyEvent:
    """A piece of the reply: ``kind`` is ``"content"`` or ``"reasoning"`` (with ``text``), or
    ``"tool_call"`` (with ``call``)."""

    kind: str
    text: str = ""
    call: ToolCall | None = None


def parse_tool_call(block: str) -> ToolCall | None:
    """The call inside one ``<tool_call>…</tool_call>`` block, or None when it is not a JSON object with a
    ``name`` and object (or JSON-text) ``arguments``.

    >>> parse_tool_call('{"name": "get_weather", "arguments": {"city": "巴黎"}}').arguments
    '{"city": "巴黎"}'
    """
    try:
        data = json.loads(block.strip())
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"].strip():
        return None
    arguments = data.get("arguments", data.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            json.loads(arguments)
        except json.JSONDecodeError:
            return None
        return ToolCall(data["name"], arguments)
    if not isinstance(arguments, dict):
        return None
    return ToolCall(data["name"], json.dumps(arguments, ensure_ascii=False))


def _held_prefix(text: str, words: Iterable[str]) -> int:
    """Length of the longest end of ``text`` that is the start of one of ``words`` (it may still grow into it)."""
    best = 0
    for word in words:
        for n in range(min(len(text), len(word) - 1), best, -1):
            if word.startswith(text[-n:]):
                best = n
                break
    return best


class ReplyParser:
    """Turn a reply, fed piece by piece, into content / reasoning / tool-call events.

    Args:
        stop: stop strings; the reply ends before the first one (it is not part of the content) and
            :attr:`stopped` becomes True, so the caller can end generation.
        thinking: split Qwen3's ``<think>…</think>`` into ``"reasoning"`` events.
        opened_thinking: the prompt already opened ``<think>`` (Qwen3-2507 Thinking templates): the reply
            starts inside the thought.
        tools: turn ``<tool_call>`` blocks into ``"tool_call"`` events (only when the request gave tools).
        parallel: keep every call (False: only the first one).

    Example:
        >>> p = ReplyParser(stop=["END"])
        >>> p.feed("Hello E") + p.feed("ND more")
        [ReplyEvent(kind='content', text='Hello ', call=None)]
        >>> p.stopped
        True
    """

    def __init__(self, stop: Iterable[str] = (), *, thinking: bool = False, opened_thinking: bool = False,
                 tools: bool = False, parallel: bool = True):
        self.stop = [s for s in stop if s]
        self.stopped = False
        self.tool_calls: list[ToolCall] = []
        self._raw, self._released = "", 0
        self._thinking = ThinkingStream(prompt_opened=opened_thinking) if thinking or opened_thinking else None
        self._thought_seen = False
        self._answer_started = False
        self._tools, self._parallel = tools, parallel
        self._buffer, self._in_call = "", False

    # ----------------------------------------------------------------- the three stages, in order

    def feed(self, piece: str) -> list[ReplyEvent]:
        """Add the next piece of text; return the events that are now certain."""
        if self.stopped or not piece:
            return []
        self._raw += piece
        cut = min((i for i in (self._raw.find(s, max(0, self._released - len(s) + 1)) for s in self.stop) if i >= 0),
                  default=-1)
        if cut >= 0:
            self.stopped = True
            safe = cut
        else:
            safe = len(self._raw) - _held_prefix(self._raw, self.stop)
        new, self._released = self._raw[self._released:safe], max(self._released, safe)
        return self._split_thinking(new, final=False)

    def close(self) -> list[ReplyEvent]:
        """The reply is over: return everything held back (an unfinished tool call comes back as text)."""
        events = [] if self.stopped else self._split_thinking(self._raw[self._released:], final=False)
        self._released = len(self._raw)
        events += self._split_thinking("", final=True)
        return events

    def _split_thinking(self, text: str, final: bool) -> list[ReplyEvent]:
        if self._thinking is None:
            return self._find_tool_calls(text, final)
        events: list[ReplyEvent] = []
        steps = self._thinking.close() if final else self._thinking.feed_text(text) if text else []
        for step in steps:
            if step.channel == "thinking":
                self._thought_seen = True
                events.append(ReplyEvent("reasoning", step.text))
            elif step.channel == "answer":
                events += self._find_tool_calls(self._answer_text(step.text), final=False)
            # "retract" (a late </think> without <think>): text already sent cannot be taken back
        return events + (self._find_tool_calls("", final=True) if final else [])

    def _answer_text(self, text: str) -> str:
        """After a thought the answer starts with blank lines: drop them (as ``split_thinking`` does)."""
        if not self._answer_started and self._thought_seen:
            text = text.lstrip()
        self._answer_started = self._answer_started or bool(text)
        return text

    def _find_tool_calls(self, text: str, final: bool) -> list[ReplyEvent]:
        if not self._tools:
            return [ReplyEvent("content", text)] if text else []
        self._buffer += text
        events: list[ReplyEvent] = []
        while True:
            if not self._in_call:
                start = self._buffer.find(TOOL_OPEN)
                if start < 0:
                    keep = 0 if final else max(_held_prefix(self._buffer, [TOOL_OPEN]),
                                               len(self._buffer) - len(self._buffer.rstrip()))
                    events += self._content(self._buffer[: len(self._buffer) - keep], final)
                    self._buffer = self._buffer[len(self._buffer) - keep:]
                    return events
                events += self._content(self._buffer[:start], final, before_call=True)
                self._buffer, self._in_call = self._buffer[start + len(TOOL_OPEN):], True
            end = self._buffer.find(TOOL_CLOSE)
            if end < 0:
                if final:  # cut before </tool_call>: give the text back as it was written
                    events += self._content(TOOL_OPEN + self._buffer, final)
                    self._buffer, self._in_call = "", False
                return events
            call = parse_tool_call(self._buffer[:end])
            if call is None:  # not a call after all: from here on, everything is plain text
                self._tools = False
                rest, self._buffer, self._in_call = TOOL_OPEN + self._buffer, "", False
                return events + [ReplyEvent("content", rest)]
            if self._parallel or not self.tool_calls:
                self.tool_calls.append(call)
                events.append(ReplyEvent("tool_call", call=call))
            self._buffer, self._in_call = self._buffer[end + len(TOOL_CLOSE):], False

    def _content(self, text: str, final: bool, before_call: bool = False) -> list[ReplyEvent]:
        """Content around tool calls: blank text next to a call is layout, not an answer."""
        if before_call:
            text = text.rstrip()
        if (before_call or self.tool_calls) and not text.strip():
            return []
        return [ReplyEvent("content", text)] if text else []


def parse_tool_calls(text: str, parallel: bool = True) -> tuple[str, list[ToolCall]]:
    """Split a whole reply into its text and its tool calls (Qwen's ``<tool_call>`` format).

    A block that is not valid JSON with a ``name`` stays in the text, as the model wrote it.

    Example:
        >>> text, calls = parse_tool_calls('<tool_call>\\n{"name": "add", "arguments": {"a": 1}}\\n</tool_call>')
        >>> text, calls[0].name, calls[0].arguments
        ('', 'add', '{"a": 1}')

    Taught in ``08_serve.ipynb``.
    """
    parser = ReplyParser(tools=True, parallel=parallel)
    events = parser.feed(text) + parser.close()
    return "".join(e.text for e in events if e.kind == "content"), parser.tool_calls
