"""The chat template made visible: the exact string a model reads, roles and special tokens
highlighted (``render_chat``), and two renderings compared token by token (``ChatRendering.diff``).

Taught in ``03_tokenizer.ipynb``.
"""

from __future__ import annotations

import difflib
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..generation import as_messages
from .chips import MONO_FONT, Piece, added_tokens, show_tokens

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["ChatSegment", "ChatRendering", "DiffOp", "RenderingDiff", "render_chat"]

_ROLE_COLOURS = {"system": "#eaeef2", "user": "#ddf4ff", "assistant": "#dafbe1", "tool": "#fff8c5"}


@dataclass(frozen=True)
class ChatSegment:
    """A run of the rendered template: ``kind`` is "special", "added" (e.g. <think>), "role" or "text"."""

    text: str
    kind: str
    role: str | None = None


@dataclass
class ChatRendering:
    """What the chat template makes of a conversation: the exact string the model reads.

    ``text`` equals ``tokenizer.apply_chat_template(messages, tokenize=False, ...)`` with the same
    options; ``segments`` split it into special tokens, role names and message text (they concatenate
    to ``text``); ``token_ids`` is what the model receives. ``a.diff(b)`` compares two renderings.
    """

    text: str
    segments: list[ChatSegment]
    token_ids: list[int]
    options: dict = field(default_factory=dict)
    _tokenizer: Any = field(default=None, repr=False, compare=False)

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))

    def __str__(self) -> str:
        return self.text

    def _header(self) -> str:
        opts = ", ".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.n_tokens} tokens · {opts}" if opts else f"{self.n_tokens} tokens"

    def _repr_html_(self) -> str:
        legend = " ".join(
            f"<span style='background:{c};padding:0 4px'>{r}</span>" for r, c in _ROLE_COLOURS.items()
        )
        return (
            f"<div class='qwenlab-chat'><div style='color:#555;{MONO_FONT}'>{html.escape(self._header())} · "
            f"{legend} · <span style='color:#d1242f;font-weight:bold'>special token</span> · "
            f"<span style='color:#8250df;font-weight:bold'>added token</span></div>"
            f"<pre style='white-space:pre-wrap;{MONO_FONT};padding:6px;border:1px solid #d0d7de;color:#111'>"
            f"{_segments_html(self.segments)}</pre></div>"
        )

    def diff(self, other: ChatRendering, labels: tuple[str, str] | None = None) -> RenderingDiff:
        """Compare with another rendering, token by token (e.g. ``enable_thinking=True`` vs ``False``)."""
        return _diff(self, other, labels)


def _segments_html(segments: list[ChatSegment]) -> str:
    out = []
    for s in segments:
        text = html.escape(s.text)
        background = _ROLE_COLOURS.get(s.role or "", "#f6f8fa" if s.role else "transparent")
        if s.kind == "special":
            out.append(f"<span class='qc-special' style='color:#d1242f;font-weight:bold'>{text}</span>")
        elif s.kind == "added":
            out.append(f"<span class='qc-added' style='color:#8250df;font-weight:bold;background:{background}'>"
                       f"{text}</span>")
        elif s.kind == "role":
            out.append(f"<span class='qc-role' data-role='{html.escape(s.text, quote=True)}' "
                       f"style='font-weight:bold;text-decoration:underline;background:{background}'>{text}</span>")
        else:
            out.append(f"<span class='qc-text' style='background:{background}'>{text}</span>")
    return "".join(out)


def _added_pattern(tokenizer: PreTrainedTokenizerBase) -> tuple[re.Pattern | None, dict[str, bool]]:
    contents = {t.content: bool(t.special) for t in added_tokens(tokenizer).values() if t.content}
    if not contents:
        return None, contents
    alternatives = sorted(contents, key=len, reverse=True)
    return re.compile("|".join(re.escape(c) for c in alternatives)), contents


def _segments(text: str, tokenizer: PreTrainedTokenizerBase) -> list[ChatSegment]:
    """Split a rendered template into special/added tokens, role names (after <|im_start|>) and text."""
    pattern, contents = _added_pattern(tokenizer)
    parts: list[tuple[str, str]] = []
    position = 0
    for m in pattern.finditer(text) if pattern else ():
        if m.start() > position:
            parts.append((text[position:m.start()], "text"))
        parts.append((m.group(), "special" if contents[m.group()] else "added"))
        position = m.end()
    if position < len(text):
        parts.append((text[position:], "text"))

    segments: list[ChatSegment] = []
    role: str | None = None
    expect_role = False
    for chunk, kind in parts:
        if kind != "text":
            if chunk in ("<|im_end|>", "<|endoftext|>"):
                segments.append(ChatSegment(chunk, kind, role))
                role = None
            else:
                segments.append(ChatSegment(chunk, kind, role))
            expect_role = chunk == "<|im_start|>"
            continue
        if expect_role:
            name, newline, rest = chunk.partition("\n")
            role = name.strip() or None
            segments.append(ChatSegment(name, "role", role))
            chunk = newline + rest
            expect_role = False
            if not chunk:
                continue
        segments.append(ChatSegment(chunk, "text", role))
    return segments


def render_chat(
    messages: str | Sequence[dict],
    tokenizer: PreTrainedTokenizerBase,
    add_generation_prompt: bool = True,
    enable_thinking: bool | None = None,
    **template_kwargs: Any,
) -> ChatRendering:
    """Render messages with the tokenizer's chat template, highlighting roles and special tokens.

    Args:
        messages: a user prompt, or ``[{"role": "system"|"user"|"assistant", "content": ...}, ...]``.
        add_generation_prompt: end with ``<|im_start|>assistant\\n`` so the model answers (True, as
            ``qwenlab.generate`` does; ``apply_chat_template``'s own default is False).
        enable_thinking: Qwen3's switch; ``False`` inserts an empty ``<think>\\n\\n</think>\\n\\n``.
            None: not passed (the template's default; templates without thinking ignore it).
        **template_kwargs: passed on to ``apply_chat_template`` (e.g. ``tools=[...]``).

    Returns:
        :class:`ChatRendering`; ``str(r)`` is exactly ``apply_chat_template(..., tokenize=False)``.

    Example:
        >>> on = qwenlab.render_chat("你好", tok, enable_thinking=True)     # doctest: +SKIP
        >>> on.diff(qwenlab.render_chat("你好", tok, enable_thinking=False))  # doctest: +SKIP

    Taught in ``03_tokenizer.ipynb``.
    """
    options: dict[str, Any] = {"add_generation_prompt": add_generation_prompt}
    if enable_thinking is not None:
        options["enable_thinking"] = enable_thinking
    options.update(template_kwargs)
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError(
            "This tokenizer has no chat template (a base model?); use the tokenizer of an Instruct/chat model, "
            "e.g. qwenlab.qwen3_tokenizer()."
        )
    text = str(tokenizer.apply_chat_template(as_messages(messages), tokenize=False, **options))
    ids = tokenizer.encode(text, add_special_tokens=False)
    return ChatRendering(text, _segments(text, tokenizer), ids, options, tokenizer)


@dataclass(frozen=True)
class DiffOp:
    """One run of a diff: ``tag`` is "equal", "delete" (only left), "insert" (only right) or "replace"."""

    tag: str
    left: str
    right: str
    left_ids: tuple[int, ...]
    right_ids: tuple[int, ...]


@dataclass
class RenderingDiff:
    """Two renderings side by side, compared token by token; ``inserted``/``deleted`` list what changed."""

    left: ChatRendering
    right: ChatRendering
    ops: list[DiffOp]
    labels: tuple[str, str]

    @property
    def inserted(self) -> list[str]:
        """Text present only on the right."""
        return [op.right for op in self.ops if op.tag in ("insert", "replace")]

    @property
    def deleted(self) -> list[str]:
        """Text present only on the left."""
        return [op.left for op in self.ops if op.tag in ("delete", "replace")]

    @property
    def token_change(self) -> int:
        """Right's token count minus left's."""
        return self.right.n_tokens - self.left.n_tokens

    def _summary(self) -> str:
        return (f"{self.labels[0]}: {self.left.n_tokens} tokens | {self.labels[1]}: {self.right.n_tokens} tokens "
                f"({self.token_change:+d})")

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))

    def __str__(self) -> str:
        out = []
        for op in self.ops:
            if op.tag == "equal":
                out.append(op.left)
            else:
                if op.left:
                    out.append(f"[-{op.left}-]")
                if op.right:
                    out.append(f"{{+{op.right}+}}")
        return self._summary() + "\n" + "".join(out)

    def _repr_html_(self) -> str:
        left, right = [], []
        for op in self.ops:
            if op.tag == "equal":
                left.append(html.escape(op.left))
                right.append(html.escape(op.right))
                continue
            if op.left:
                left.append(f"<span class='qd-del' style='background:#ffcecb'>{html.escape(op.left)}</span>")
            if op.right:
                right.append(f"<span class='qd-ins' style='background:#aceebb'>{html.escape(op.right)}</span>")
        pre = f"<pre style='white-space:pre-wrap;{MONO_FONT};margin:0;color:#111'>"
        return (
            f"<div class='qwenlab-diff'><div style='color:#555;{MONO_FONT}'>{html.escape(self._summary())}</div>"
            "<table style='table-layout:fixed;width:100%'><tr>"
            f"<th style='text-align:left'>{html.escape(self.labels[0])}</th>"
            f"<th style='text-align:left'>{html.escape(self.labels[1])}</th></tr>"
            f"<tr><td style='vertical-align:top;text-align:left'>{pre}{''.join(left)}</pre></td>"
            f"<td style='vertical-align:top;text-align:left'>{pre}{''.join(right)}</pre></td></tr>"
            "</table></div>"
        )


def _diff(a: ChatRendering, b: ChatRendering, labels: tuple[str, str] | None) -> RenderingDiff:
    if labels is None:
        keys = sorted(set(a.options) | set(b.options))
        differ = [k for k in keys if a.options.get(k) != b.options.get(k)]
        left, right = (", ".join(f"{k}={r.options.get(k)}" for k in differ) or "rendering" for r in (a, b))
        labels = (left, right)
    tokenizer = a._tokenizer or b._tokenizer
    pa = show_tokens(a.text, tokenizer).pieces if tokenizer else [Piece(c, ()) for c in a.text]
    pb = show_tokens(b.text, tokenizer).pieces if tokenizer else [Piece(c, ()) for c in b.text]
    keys_a = [(p.text, tuple(p.ids)) for p in pa]
    keys_b = [(p.text, tuple(p.ids)) for p in pb]
    ops = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, keys_a, keys_b, autojunk=False).get_opcodes():
        ops.append(DiffOp(
            tag,
            "".join(p.text for p in pa[i1:i2]),
            "".join(p.text for p in pb[j1:j2]),
            tuple(i for p in pa[i1:i2] for i in p.ids),
            tuple(i for p in pb[j1:j2] for i in p.ids),
        ))
    return RenderingDiff(a, b, ops, labels)
