"""See how a tokenizer cuts text: token chips, cost statistics, the chat template, special tokens.

- :func:`show_tokens` — every token as a coloured chip with its id; a character whose UTF-8 bytes are
  split over several tokens is shown once, spanning those tokens (no "Ġ" or "�" noise).
- :func:`token_stats` — characters per token and tokens per 100 characters (Chinese, English, code ...).
- :func:`render_chat` — the chat template's output with roles and special tokens highlighted;
  ``a.diff(b)`` compares two renderings (e.g. thinking on vs off).
- :func:`special_tokens` — the special and added tokens, their ids, what each is for, and which ones
  ``skip_special_tokens=True`` removes.
- :func:`decode_steps` — why a streamer must not decode token by token.

Every function returns a data object: it shows as HTML in Jupyter and as text with ``print``.

Taught in ``03_tokenizer.ipynb``.
"""

from __future__ import annotations

import difflib
import html
import os
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Sequence

__all__ = [
    "SAMPLES",
    "Token",
    "Piece",
    "TokenView",
    "show_tokens",
    "StatsRow",
    "TokenStats",
    "token_stats",
    "ChatSegment",
    "ChatRendering",
    "RenderingDiff",
    "render_chat",
    "SpecialToken",
    "SpecialTokenTable",
    "special_tokens",
    "DecodeStep",
    "DecodeSteps",
    "decode_steps",
    "load_tokenizer",
    "cli",
]

# Chip colours: pastel backgrounds; chip text is forced dark so it stays readable in dark themes too.
_PALETTE = ("#ffd6a5", "#caffbf", "#9bf6ff", "#bdb2ff", "#ffc6ff", "#fdffb6")
_FONT = "font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace"

# ---- bytes of a token ------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """Byte-level BPE writes each byte as a printable character (space -> "Ġ"); this maps it back."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return {char: byte for byte, char in bytes_to_unicode().items()}


def _backend(tokenizer: Any) -> Any:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise TypeError(
            f"{type(tokenizer).__name__} has no Rust backend (backend_tokenizer); load the tokenizer with "
            "transformers.AutoTokenizer.from_pretrained(folder) to get a fast tokenizer."
        )
    return backend


def _is_byte_level(tokenizer: Any) -> bool:
    return "ByteLevel" in repr(_backend(tokenizer).decoder)


def _normalize(tokenizer: Any, text: str) -> str:
    normalizer = _backend(tokenizer).normalizer
    return normalizer.normalize_str(text) if normalizer is not None else text


def _tokenizer_name(tokenizer: Any) -> str:
    """A short name for titles: the model folder's name, or "Qwen3" for qwenlab.qwen3_tokenizer()."""
    from .offline import qwen3_tokenizer_dir

    path = str(getattr(tokenizer, "name_or_path", "") or "").rstrip("/")
    try:
        if path and os.path.samefile(path, qwen3_tokenizer_dir()):
            return "Qwen3 tokenizer"
    except OSError:
        pass
    return os.path.basename(path)


def _added(tokenizer: Any) -> dict[int, Any]:
    return dict(getattr(tokenizer, "added_tokens_decoder", {}) or {})


def _token_bytes(raw: str, token_id: int, added: dict[int, Any]) -> bytes:
    """The UTF-8 bytes one token stands for (added tokens are stored as plain text, not byte-level)."""
    if token_id in added:
        return added[token_id].content.encode("utf-8")
    table = _byte_decoder()
    try:
        return bytes(table[ch] for ch in raw)
    except KeyError:
        raise ValueError(
            f"token {token_id} ({raw!r}) is not byte-level BPE; show_tokens supports byte-level tokenizers "
            "(Qwen, GPT-2 family)."
        ) from None


def _char_ends(data: bytes) -> list[int]:
    """Byte positions where a character ends; a byte that starts no valid UTF-8 character is its own "�"."""
    ends, i = [], 0
    while i < len(data):
        step = 1
        for length in (1, 2, 3, 4):
            try:
                data[i:i + length].decode("utf-8")
            except UnicodeDecodeError:
                continue
            step = length
            break
        i += step
        ends.append(i)
    return ends


# ---- show_tokens -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    """One token: its id, its vocabulary string (byte-level: space is "Ġ"), and the bytes it stands for."""

    id: int
    raw: str
    data: bytes
    kind: str = "normal"  # "normal", "special" (removed by skip_special_tokens) or "added" (e.g. <think>)

    @property
    def text(self) -> str:
        """The token decoded alone: "�" where it holds only part of a character."""
        return self.data.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Piece:
    """A run of text and the token(s) that spell it: one token, or several when they split a character."""

    text: str
    tokens: tuple[Token, ...]

    @property
    def ids(self) -> list[int]:
        return [t.id for t in self.tokens]

    @property
    def split(self) -> bool:
        """True when a character's bytes are spread over more than one token."""
        return len(self.tokens) > 1


def _visible(text: str) -> str:
    """Whitespace and invisible characters made visible: space ·, newline ↵, tab ⇥, others as U+XXXX."""
    out = []
    for ch in text:
        if ch == " ":
            out.append("·")
        elif ch == "\n":
            out.append("↵")
        elif ch == "\t":
            out.append("⇥")
        elif ch == "\r":
            out.append("␍")
        elif unicodedata.category(ch) in ("Cc", "Cf", "Zs", "Zl", "Zp", "Cs", "Co", "Cn"):
            out.append(f"⟨U+{ord(ch):04X}⟩")
        else:
            out.append(ch)
    return "".join(out)


@dataclass
class TokenView:
    """How a tokenizer cut a text: pieces of text with their token ids, in order.

    ``"".join(p.text for p in view.pieces) == view.text`` always holds, and ``view.ids`` equals
    ``tokenizer.encode(view.text, add_special_tokens=False)``.
    """

    text: str
    pieces: list[Piece]
    tokenizer_name: str = ""

    @property
    def tokens(self) -> list[Token]:
        return [t for p in self.pieces for t in p.tokens]

    @property
    def ids(self) -> list[int]:
        return [t.id for t in self.tokens]

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    @property
    def chars_per_token(self) -> float:
        return len(self.text) / self.n_tokens if self.n_tokens else 0.0

    def _summary(self) -> str:
        split = sum(p.split for p in self.pieces)
        line = f"{self.n_tokens} tokens · {len(self.text)} characters · {self.chars_per_token:.2f} characters/token"
        if split:
            line += f" · {split} piece(s) where one character spans several tokens"
        return line

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))

    def __str__(self) -> str:
        chips = []
        for p in self.pieces:
            chips.append(f"[{_visible(p.text)}|{' '.join(map(str, p.ids))}]")
            if p.text.endswith("\n"):
                chips.append("\n")
        return self._summary() + "\n" + "".join(chips).rstrip("\n")

    def __repr__(self) -> str:
        return f"TokenView({self.n_tokens} tokens, ids={self.ids!r})"

    def _repr_html_(self) -> str:
        out = [f"<div class='qwenlab-tokens' style='{_FONT};line-height:1.2'>",
               f"<div style='color:#555;margin-bottom:4px'>{html.escape(self._summary())}</div>"]
        index = 0
        for p in self.pieces:
            out.append(_piece_html(p, index))
            index += len(p.tokens)
            if p.text.endswith("\n"):
                out.append("<br>")
        out.append("</div>")
        return "".join(out)


def _piece_html(piece: Piece, first_index: int) -> str:
    colours = [_PALETTE[(first_index + i) % len(_PALETTE)] for i in range(len(piece.tokens))]
    background = colours[0] if len(colours) == 1 else f"linear-gradient(90deg,{','.join(colours)})"
    special = any(t.kind != "normal" for t in piece.tokens)
    border = "2px solid #d1242f" if special else "1px solid #0000"
    ids = "".join(
        f"<span class='qt-tok' data-id='{t.id}' data-kind='{t.kind}' "
        f"title='{html.escape(_token_title(t), quote=True)}' "
        f"style='background:{c};padding:0 3px;margin:0 1px;border-radius:3px'>{t.id}</span>"
        for t, c in zip(piece.tokens, colours)
    )
    return (
        f"<span class='qt-piece' data-text='{html.escape(piece.text, quote=True)}' "
        "style='display:inline-flex;flex-direction:column;align-items:stretch;margin:2px 2px;vertical-align:top'>"
        f"<span class='qt-text' style='background:{background};color:#111;white-space:pre;padding:1px 3px;"
        f"border-radius:4px;border:{border};text-align:center'>{html.escape(_visible(piece.text))}</span>"
        f"<span class='qt-ids' style='display:flex;justify-content:center;font-size:70%;color:#333'>{ids}</span>"
        "</span>"
    )


def _token_title(token: Token) -> str:
    hexes = " ".join(f"{b:02X}" for b in token.data)
    return f"id {token.id} · {token.kind} · bytes {hexes} · vocab {token.raw!r} · alone {token.text!r}"


def _tokens(tokenizer: Any, ids: Sequence[int]) -> list[Token]:
    added = _added(tokenizer)
    raws = tokenizer.convert_ids_to_tokens(list(ids))
    out = []
    for token_id, raw in zip(ids, raws):
        kind = "normal"
        if token_id in added:
            kind = "special" if added[token_id].special else "added"
        out.append(Token(int(token_id), raw, _token_bytes(raw, token_id, added), kind))
    return out


def _groups(tokens: list[Token]) -> list[list[int]]:
    """Token indices grouped so that every group's bytes are whole characters (minimal groups)."""
    ends = set(_char_ends(b"".join(t.data for t in tokens)))
    groups: list[list[int]] = []
    current: list[int] = []
    position = 0
    for i, token in enumerate(tokens):
        current.append(i)
        position += len(token.data)
        if position in ends or i == len(tokens) - 1:
            groups.append(current)
            current = []
    return groups


def _texts_from_normalized(text: str, tokens: list[Token], groups: list[list[int]]) -> list[str]:
    """Slice the (already normalized) text along the groups' byte lengths."""
    texts, start = [], 0
    for group in groups:
        chunk = b"".join(tokens[i].data for i in group).decode("utf-8")
        texts.append(text[start:start + len(chunk)])
        start += len(chunk)
    return texts


def _merge_by_offsets(tokenizer: Any, text: str, tokens: list[Token], groups: list[list[int]],
                      offsets: list[tuple[int, int]]) -> tuple[list[list[int]], list[str]]:
    """For text the tokenizer normalizes (e.g. NFC turns "e" + U+0301 into "é"): cut the original text at
    the tokens' start offsets, and merge groups until each slice normalizes to what its tokens decode to.
    """
    merged_groups: list[list[int]] = []
    texts: list[str] = []
    pending: list[int] = []
    start = 0
    for k, group in enumerate(groups):
        pending = pending + group
        if k + 1 < len(groups):
            cut = offsets[groups[k + 1][0]][0]
            if cut <= start:
                continue
        else:
            cut = len(text)
        decoded = b"".join(tokens[i].data for i in pending).decode("utf-8", errors="replace")
        if k + 1 < len(groups) and _normalize(tokenizer, text[start:cut]) != decoded:
            continue
        merged_groups.append(pending)
        texts.append(text[start:cut])
        pending, start = [], cut
    return merged_groups, texts


def show_tokens(text_or_ids: str | Sequence[int], tokenizer: Any) -> TokenView:
    """Show how ``tokenizer`` cuts a text (or what a list of token ids spells): chips with token ids.

    Byte-level BPE (Qwen's tokenizer) works on UTF-8 bytes, so one Chinese character or emoji can be
    split over two or three tokens; decoded alone, each of those tokens is "�". Such a character is
    shown once, spanning the chips of all its tokens. The pieces concatenate exactly to the input.

    Args:
        text_or_ids: a string, or token ids (e.g. a model's output).
        tokenizer: a fast (byte-level BPE) tokenizer, e.g. ``qwenlab.qwen3_tokenizer()``.

    Returns:
        :class:`TokenView` — HTML chips in Jupyter, ``[text|id]`` chips with ``print``; ``.ids``, ``.pieces``.

    Example:
        >>> view = qwenlab.show_tokens("你好，世界 🤗", qwenlab.qwen3_tokenizer())   # doctest: +SKIP
        >>> view.ids                                                                  # doctest: +SKIP

    Taught in ``03_tokenizer.ipynb``.
    """
    name = _tokenizer_name(tokenizer)
    if not isinstance(text_or_ids, str):
        return _view_of_ids([int(i) for i in text_or_ids], tokenizer, name)
    text = text_or_ids
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(encoding["input_ids"])
    if not ids:
        return TokenView(text, [Piece(text, ())] if text else [], name)
    if not _is_byte_level(tokenizer):
        return _view_from_offsets(text, tokenizer, ids, encoding["offset_mapping"], name)
    tokens = _tokens(tokenizer, ids)
    groups = _groups(tokens)
    normalized = b"".join(t.data for t in tokens).decode("utf-8", errors="replace")
    if normalized == text:
        texts = _texts_from_normalized(text, tokens, groups)
    else:
        groups, texts = _merge_by_offsets(tokenizer, text, tokens, groups, list(encoding["offset_mapping"]))
    return TokenView(text, [Piece(t, tuple(tokens[i] for i in g)) for g, t in zip(groups, texts)], name)


def _view_of_ids(ids: list[int], tokenizer: Any, name: str) -> TokenView:
    tokens = _tokens(tokenizer, ids)
    pieces = [
        Piece(b"".join(tokens[i].data for i in g).decode("utf-8", errors="replace"), tuple(tokens[i] for i in g))
        for g in (_groups(tokens) if tokens else [])
    ]
    return TokenView("".join(p.text for p in pieces), pieces, name)


def _view_from_offsets(text: str, tokenizer: Any, ids: list[int], offsets: list, name: str) -> TokenView:
    """Tokenizers that are not byte-level: cut the text at each token's start offset."""
    raws = tokenizer.convert_ids_to_tokens(ids)
    starts = [0] + [max(offsets[i][0], 0) for i in range(1, len(ids))] + [len(text)]
    pieces: list[Piece] = []
    for i, (token_id, raw) in enumerate(zip(ids, raws)):
        start, end = starts[i], max(starts[i + 1], starts[i])
        starts[i + 1] = end
        token = Token(token_id, raw, text[start:end].encode("utf-8"))
        if pieces and start == end:
            pieces[-1] = Piece(pieces[-1].text, pieces[-1].tokens + (token,))
        else:
            pieces.append(Piece(text[start:end], (token,)))
    return TokenView(text, pieces, name)


# ---- token_stats -----------------------------------------------------------------------------------

SAMPLES: dict[str, str] = {
    "中文 (Chinese)": "大语言模型先把文字切成一个个词元，再一次预测一个词元，直到回答结束。",
    "English": "A large language model first cuts text into tokens, then predicts one token at a time "
               "until the answer ends.",
    "代码 (code)": "def mean(xs):\n    \"\"\"Average of a list.\"\"\"\n    return sum(xs) / len(xs)\n\n"
                 "print(mean([1, 2, 3]))\n",
    "混合 (mixed)": "用 tokenizer.encode() 把「你好，world 🤗」变成 token ids，再用 decode() 还原。",
    "表情 (emoji)": "🤗🚀🎉👍🏽🇨🇳",
}
"""Built-in samples for :func:`token_stats`: the Chinese and English sentences say the same thing."""


@dataclass(frozen=True)
class StatsRow:
    """Token cost of one text."""

    name: str
    text: str
    chars: int
    tokens: int
    utf8_bytes: int

    @property
    def chars_per_token(self) -> float:
        return self.chars / self.tokens if self.tokens else 0.0

    @property
    def tokens_per_100_chars(self) -> float:
        return 100 * self.tokens / self.chars if self.chars else 0.0


@dataclass
class TokenStats:
    """Characters per token and tokens per 100 characters for several texts; ``.plot()`` draws bars."""

    rows: list[StatsRow]
    tokenizer_name: str = ""

    def row(self, name: str) -> StatsRow:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"no sample named {name!r}; the samples are {[r.name for r in self.rows]}")

    def _table(self) -> list[tuple[str, ...]]:
        head = ("sample", "characters", "UTF-8 bytes", "tokens", "chars/token", "tokens/100 chars")
        return [head] + [
            (r.name, str(r.chars), str(r.utf8_bytes), str(r.tokens), f"{r.chars_per_token:.2f}",
             f"{r.tokens_per_100_chars:.1f}")
            for r in self.rows
        ]

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))

    def __str__(self) -> str:
        table = self._table()
        widths = [max(_width(row[i]) for row in table) for i in range(len(table[0]))]
        lines = ["  ".join(cell + " " * (w - _width(cell)) for cell, w in zip(row, widths)) for row in table]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head, *body = self._table()
        cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
        rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body)
        return f"<table class='qwenlab-token-stats'><tr>{cells}</tr>{rows}</table>"

    def plot(self) -> Any:
        """Two bar charts: tokens per 100 characters (density) and tokens per sample (the bill).

        Returns the matplotlib Figure (shown by Jupyter; ``fig.savefig(...)`` elsewhere).
        """
        from matplotlib.figure import Figure

        fig = Figure(figsize=(9, 0.5 * len(self.rows) + 1.2))
        left, right = fig.subplots(1, 2, sharey=True)
        names = [r.name for r in self.rows]
        colours = [_PALETTE[i % len(_PALETTE)] for i in range(len(names))]
        for ax, values, label, fmt in (
            (left, [r.tokens_per_100_chars for r in self.rows], "tokens per 100 characters", "%.1f"),
            (right, [r.tokens for r in self.rows], "tokens in the sample", "%d"),
        ):
            bars = ax.barh(names, values, color=colours, edgecolor="#333")
            ax.bar_label(bars, fmt=fmt, padding=3)
            ax.set_xlabel(label)
            ax.set_xlim(0, max(values, default=1) * 1.25)
        left.invert_yaxis()
        if not _use_cjk_font(left):  # no Chinese font installed: keep the English part of "中文 (Chinese)"
            left.set_yticks(range(len(names)), [_latin_label(n) for n in names])
        fig.suptitle(f"Token cost{f' ({self.tokenizer_name})' if self.tokenizer_name else ''}")
        fig.tight_layout()
        return fig


def _width(text: str) -> int:
    """Display width in a terminal: CJK and other wide characters take two columns."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _use_cjk_font(ax: Any) -> bool:
    """Use a font with Chinese glyphs for the tick labels when one is installed; False when none is."""
    from matplotlib import font_manager

    wanted = ("Noto Sans CJK SC", "Noto Sans SC", "WenQuanYi Zen Hei", "Microsoft YaHei", "SimHei",
              "PingFang SC", "Heiti SC", "Source Han Sans SC", "Arial Unicode MS")
    installed = {f.name for f in font_manager.fontManager.ttflist}
    for name in wanted:
        if name in installed:
            for label in ax.get_yticklabels():
                label.set_fontfamily(name)
            return True
    return not any(ord(ch) > 0x2E80 for label in ax.get_yticklabels() for ch in label.get_text())


def _latin_label(name: str) -> str:
    """"中文 (Chinese)" -> "Chinese": a label the default font can draw."""
    inside = re.search(r"\(([^)]*)\)", name)
    if any(ord(ch) > 0x2E80 for ch in name) and inside:
        return inside.group(1)
    return name


def token_stats(texts: dict[str, str] | Sequence[str] | None, tokenizer: Any) -> TokenStats:
    """Token cost of texts: characters per token and tokens per 100 characters.

    Args:
        texts: ``{name: text}``, a list of texts, or None for :data:`SAMPLES` (Chinese, English, code,
            mixed, emoji — the Chinese and English samples say the same thing).
        tokenizer: any tokenizer with ``encode``.

    Returns:
        :class:`TokenStats` — a table in Jupyter / with ``print``; ``.plot()`` for a bar chart.

    Taught in ``03_tokenizer.ipynb``.
    """
    if texts is None:
        texts = SAMPLES
    named = dict(texts) if isinstance(texts, dict) else {f"text {i + 1}": t for i, t in enumerate(texts)}
    rows = []
    for name, text in named.items():
        if not isinstance(text, str):
            raise TypeError(f"sample {name!r} is a {type(text).__name__}; token_stats needs strings.")
        ids = tokenizer.encode(text, add_special_tokens=False)
        rows.append(StatsRow(name, text, len(text), len(ids), len(text.encode("utf-8"))))
    name = _tokenizer_name(tokenizer)
    return TokenStats(rows, name)


# ---- render_chat -----------------------------------------------------------------------------------

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
            f"<div class='qwenlab-chat'><div style='color:#555;{_FONT}'>{html.escape(self._header())} · "
            f"{legend} · <span style='color:#d1242f;font-weight:bold'>special token</span> · "
            f"<span style='color:#8250df;font-weight:bold'>added token</span></div>"
            f"<pre style='white-space:pre-wrap;{_FONT};padding:6px;border:1px solid #d0d7de;color:#111'>"
            f"{_segments_html(self.segments)}</pre></div>"
        )

    def diff(self, other: "ChatRendering", labels: tuple[str, str] | None = None) -> "RenderingDiff":
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


def _added_pattern(tokenizer: Any) -> tuple[re.Pattern | None, dict[str, bool]]:
    contents = {t.content: bool(t.special) for t in _added(tokenizer).values() if t.content}
    if not contents:
        return None, contents
    alternatives = sorted(contents, key=len, reverse=True)
    return re.compile("|".join(re.escape(c) for c in alternatives)), contents


def _segments(text: str, tokenizer: Any) -> list[ChatSegment]:
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
    tokenizer: Any,
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
    from .generation import _as_messages

    options: dict[str, Any] = {"add_generation_prompt": add_generation_prompt}
    if enable_thinking is not None:
        options["enable_thinking"] = enable_thinking
    options.update(template_kwargs)
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError(
            "This tokenizer has no chat template (a base model?); use the tokenizer of an Instruct/chat model, "
            "e.g. qwenlab.qwen3_tokenizer()."
        )
    text = tokenizer.apply_chat_template(_as_messages(messages), tokenize=False, **options)
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
        pre = f"<pre style='white-space:pre-wrap;{_FONT};margin:0;color:#111'>"
        return (
            f"<div class='qwenlab-diff'><div style='color:#555;{_FONT}'>{html.escape(self._summary())}</div>"
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
        labels = tuple(", ".join(f"{k}={r.options.get(k)}" for k in differ) or "rendering" for r in (a, b))
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


# ---- special_tokens --------------------------------------------------------------------------------

_PURPOSE = {
    "<|endoftext|>": "文档结束 (end of text); Qwen 也用它做 padding (pad token)",
    "<|im_start|>": "一条消息开始，后面跟角色名 (start of a chat message; the role follows)",
    "<|im_end|>": "一条消息结束；对话模型在这里停 (end of a message; chat models stop here = eos)",
    "<|object_ref_start|>": "视觉模型 Qwen-VL 用 (vision models only)",
    "<|object_ref_end|>": "视觉模型 Qwen-VL 用 (vision models only)",
    "<|box_start|>": "视觉模型：框坐标 (Qwen-VL bounding box)",
    "<|box_end|>": "视觉模型：框坐标 (Qwen-VL bounding box)",
    "<|quad_start|>": "视觉模型 Qwen-VL 用 (vision models only)",
    "<|quad_end|>": "视觉模型 Qwen-VL 用 (vision models only)",
    "<|vision_start|>": "视觉模型：图像/视频开始 (Qwen-VL)",
    "<|vision_end|>": "视觉模型：图像/视频结束 (Qwen-VL)",
    "<|vision_pad|>": "视觉模型：占位 (Qwen-VL placeholder)",
    "<|image_pad|>": "视觉模型：图像占位 (Qwen-VL image placeholder)",
    "<|video_pad|>": "视觉模型：视频占位 (Qwen-VL video placeholder)",
    "<tool_call>": "工具调用开始，里面是 JSON (a function call follows, as JSON)",
    "</tool_call>": "工具调用结束 (end of a function call)",
    "<|fim_prefix|>": "代码补全：前缀 (fill-in-the-middle, code before the gap)",
    "<|fim_middle|>": "代码补全：要填的中间 (fill-in-the-middle, the gap)",
    "<|fim_suffix|>": "代码补全：后缀 (fill-in-the-middle, code after the gap)",
    "<|fim_pad|>": "代码补全：填充 (fill-in-the-middle padding)",
    "<|repo_name|>": "仓库级代码：仓库名 (repository name, code models)",
    "<|file_sep|>": "仓库级代码：文件分隔 (file separator, code models)",
    "<tool_response>": "工具返回的结果开始 (a tool's result follows)",
    "</tool_response>": "工具结果结束 (end of a tool's result)",
    "<think>": "思考开始 (Qwen3 reasoning starts)",
    "</think>": "思考结束 (Qwen3 reasoning ends)",
}
_PLACEHOLDER = re.compile(r"\[PAD(\d+)\]")


@dataclass(frozen=True)
class SpecialToken:
    """One special or added token: id, text, whether it is special, and what ``skip_special_tokens`` does."""

    id: int
    content: str
    special: bool
    skipped: bool  # decode(..., skip_special_tokens=True) removes it
    purpose: str
    named_as: tuple[str, ...] = ()  # e.g. ("eos_token", "pad_token")
    count: int = 1  # > 1: a collapsed run of placeholder tokens [PADn] … [PADm]
    last_id: int | None = None
    last_content: str = ""


@dataclass
class SpecialTokenTable:
    """All added tokens of a tokenizer (and placeholder tokens), with the vocabulary sizes around them."""

    rows: list[SpecialToken]
    regular: int  # ordinary tokens learned by BPE (151,643 for Qwen: ids 0 … 151,642)
    added: int  # special and added tokens (<|im_end|>, <think> ...)
    placeholders: int  # unused [PADn] entries that fill the vocabulary up to the embedding size
    tokenizer_name: str = ""

    @property
    def total(self) -> int:
        """``len(tokenizer)``: every id the tokenizer knows."""
        return self.regular + self.added + self.placeholders

    def get(self, content: str) -> SpecialToken:
        for r in self.rows:
            if r.content == content:
                return r
        raise KeyError(f"{content!r} is not an added token of this tokenizer")

    @property
    def skipped(self) -> list[str]:
        """Tokens that ``skip_special_tokens=True`` removes when decoding."""
        return [r.content for r in self.rows if r.skipped]

    @property
    def kept(self) -> list[str]:
        """Added tokens that ``skip_special_tokens=True`` keeps (e.g. ``<think>``)."""
        return [r.content for r in self.rows if not r.skipped]

    def _table(self) -> list[tuple[str, ...]]:
        head = ("id", "token", "special", "skip_special_tokens", "named", "purpose")
        body = []
        for r in self.rows:
            ident = str(r.id) if r.count == 1 else f"{r.id}–{r.last_id}"
            content = r.content if r.count == 1 else f"{r.content} … {r.last_content} ({r.count})"
            body.append((ident, content, "yes" if r.special else "no",
                         "removed" if r.skipped else "kept", ", ".join(r.named_as), r.purpose))
        return [head] + body

    def _summary(self) -> str:
        parts = f"{self.regular:,} regular (BPE) tokens + {self.added:,} added tokens"
        if self.placeholders:
            parts += f" + {self.placeholders:,} placeholders"
        return f"{parts} = {self.total:,} = len(tokenizer)"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))

    def __str__(self) -> str:
        table = self._table()
        widths = [max(_width(row[i]) for row in table) for i in range(len(table[0]) - 1)]
        lines = ["  ".join(c + " " * (w - _width(c)) for c, w in zip(row, widths)) + "  " + row[-1] for row in table]
        return self._summary() + "\n" + "\n".join(lines)

    def _repr_html_(self) -> str:
        head, *body = self._table()
        cells = "".join(f"<th style='text-align:left'>{html.escape(h)}</th>" for h in head)
        rows = "".join(
            "<tr>" + "".join(f"<td style='text-align:left;{_FONT if i == 1 else ''}'>{html.escape(c)}</td>"
                             for i, c in enumerate(row)) + "</tr>"
            for row in body
        )
        return (f"<div class='qwenlab-special'><div>{html.escape(self._summary())}</div>"
                f"<table><tr>{cells}</tr>{rows}</table></div>")


def _named(tokenizer: Any) -> dict[str, list[str]]:
    named: dict[str, list[str]] = {}
    for attr in ("bos_token", "eos_token", "pad_token", "unk_token"):
        value = getattr(tokenizer, attr, None)
        if value:
            named.setdefault(str(value), []).append(attr)
    return named


def _placeholder_ids(tokenizer: Any, added: dict[int, Any]) -> dict[int, str]:
    """Vocabulary entries like ``[PAD151665]`` (a GGUF conversion pads the vocabulary with them)."""
    first = min(added, default=0)
    return {i: t for t, i in tokenizer.get_vocab().items()
            if i >= first and i not in added and _PLACEHOLDER.fullmatch(t)}


def special_tokens(tokenizer: Any) -> SpecialTokenTable:
    """Table of the special and added tokens: id, text, purpose, and whether ``skip_special_tokens`` drops them.

    "Removed" is measured, not assumed: each token is decoded with ``skip_special_tokens=True``.
    In Qwen3, ``<think>``/``</think>`` are added but *not* special, so decoding keeps them.
    Runs of placeholder tokens (``[PAD151665]`` … from a GGUF conversion) are collapsed into one row.

    Taught in ``03_tokenizer.ipynb``.
    """
    added = _added(tokenizer)
    named = _named(tokenizer)
    placeholders = _placeholder_ids(tokenizer, added)
    entries = {i: (a.content, bool(a.special)) for i, a in added.items()}
    entries.update({i: (t, False) for i, t in placeholders.items()})
    rows: list[SpecialToken] = []
    for token_id, (content, special) in sorted(entries.items()):
        skipped = tokenizer.decode([token_id], skip_special_tokens=True) == ""
        is_placeholder = bool(_PLACEHOLDER.fullmatch(content))
        last = rows[-1] if rows else None
        if (is_placeholder and last is not None and last.last_id == token_id - 1
                and _PLACEHOLDER.fullmatch(last.content) and (last.special, last.skipped) == (special, skipped)):
            rows[-1] = SpecialToken(last.id, last.content, special, skipped, last.purpose, last.named_as,
                                    last.count + 1, token_id, content)
            continue
        purpose = _PURPOSE.get(content, "")
        if is_placeholder:
            purpose = "占位，从不出现：把词表补齐到嵌入矩阵的行数 (unused placeholder up to the embedding size)"
        rows.append(SpecialToken(token_id, content, special, skipped, purpose, tuple(named.get(content, ())),
                                 1, token_id, content))
    name = _tokenizer_name(tokenizer)
    regular = len(tokenizer) - len(added) - len(placeholders)
    return SpecialTokenTable(rows, regular, len(added), len(placeholders), name)


# ---- decode_steps: streaming, done wrong and right -------------------------------------------------


@dataclass(frozen=True)
class DecodeStep:
    """One generated token: what decoding it alone shows, and what a correct streamer prints."""

    id: int
    alone: str
    streamed: str


@dataclass
class DecodeSteps:
    """Token-by-token decoding (wrong: "�") next to what ``qwenlab.stream`` emits (right)."""

    steps: list[DecodeStep]

    @property
    def naive_text(self) -> str:
        return "".join(s.alone for s in self.steps)

    @property
    def streamed_text(self) -> str:
        return "".join(s.streamed for s in self.steps)

    def _table(self) -> list[tuple[str, str, str]]:
        return [("id", "decode([id]) alone", "stream prints")] + [
            (str(s.id), repr(s.alone), repr(s.streamed) if s.streamed else "(waits)") for s in self.steps
        ]

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))

    def __str__(self) -> str:
        table = self._table()
        widths = [max(_width(r[i]) for r in table) for i in range(3)]
        lines = ["  ".join(c + " " * (w - _width(c)) for c, w in zip(r, widths)) for r in table]
        lines.append(f"token by token: {self.naive_text!r}")
        lines.append(f"streamed:       {self.streamed_text!r}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head, *body = self._table()
        cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
        rows = "".join("<tr>" + "".join(f"<td style='{_FONT}'>{html.escape(c)}</td>" for c in r) + "</tr>"
                       for r in body)
        return (f"<table class='qwenlab-decode-steps'><tr>{cells}</tr>{rows}</table>"
                f"<div style='{_FONT}'>token by token: {html.escape(repr(self.naive_text))}<br>"
                f"streamed: {html.escape(repr(self.streamed_text))}</div>")


class _Ids:
    """The tiny slice of a tensor's interface the streamer uses (``reshape(-1).tolist()``)."""

    def __init__(self, ids: list[int]):
        self._ids = ids

    def reshape(self, *shape: int) -> "_Ids":
        return self

    def tolist(self) -> list[int]:
        return list(self._ids)


def decode_steps(text_or_ids: str | Sequence[int], tokenizer: Any, skip_special_tokens: bool = True) -> DecodeSteps:
    """Replay a generation one token at a time: decoding each token alone vs what ``qwenlab.stream`` prints.

    Decoding token by token shows "�" wherever a character's bytes span two tokens. ``qwenlab.stream``
    (its streamer is used here, unchanged) decodes everything so far and prints only the new, complete
    text, waiting while the end is an unfinished character.

    Taught in ``03_tokenizer.ipynb``.
    """
    from .generation import _PieceStreamer

    ids = (tokenizer.encode(text_or_ids, add_special_tokens=False) if isinstance(text_or_ids, str)
           else [int(i) for i in text_or_ids])
    streamer = _PieceStreamer(tokenizer, skip_special_tokens)
    streamer.put(_Ids([]))  # generate() first sends the prompt; the streamer skips it
    steps = []
    for token_id in ids:
        streamer.put(_Ids([token_id]))
        pieces = []
        while not streamer.queue.empty():
            pieces.append(streamer.queue.get_nowait())
        alone = tokenizer.decode([token_id], skip_special_tokens=skip_special_tokens)
        steps.append(DecodeStep(token_id, alone, "".join(p for p in pieces if p)))
    streamer.end()
    tail = "".join(p for p in iter(streamer.queue.get_nowait, None))
    if tail and steps:
        last = steps[-1]
        steps[-1] = DecodeStep(last.id, last.alone, last.streamed + tail)
    return DecodeSteps(steps)


# ---- loading a tokenizer alone ---------------------------------------------------------------------


def load_tokenizer(name_or_path: str | os.PathLike = "qwen3") -> Any:
    """Load only the tokenizer of a model (no weights): ``"qwen3"`` (always offline), a catalog name or a folder.

    Taught in ``03_tokenizer.ipynb``.
    """
    if str(name_or_path).lower() == "qwen3":
        from .offline import qwen3_tokenizer

        return qwen3_tokenizer()
    from transformers import AutoTokenizer

    from .models import resolve

    where = resolve(name_or_path)
    extra = {"gguf_file": where.gguf_file} if where.gguf_file else {}
    return AutoTokenizer.from_pretrained(where.folder, **extra)


def cli(argv: list[str], prog: str = "qwenlab tokens", command: str = "tokens") -> int:
    """``qwenlab tokens [TEXT] [--model NAME] [--special] [--stats]``: tokens of a text in the terminal."""
    import sys

    from .cli import make_parser

    parser = make_parser(prog, "Show how a Qwen tokenizer cuts a text into tokens (reads stdin without TEXT).")
    parser.add_argument("text", nargs="?", help="text to tokenize (default: read standard input)")
    parser.add_argument("--model", default="qwen3",
                        help="whose tokenizer: 'qwen3' (offline, default), a catalog name or a model folder")
    parser.add_argument("--special", action="store_true", help="list the special and added tokens")
    parser.add_argument("--stats", action="store_true", help="token cost of the built-in samples")
    args = parser.parse_args(argv)
    try:
        tokenizer = load_tokenizer(args.model)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.special:
        print(special_tokens(tokenizer))
    if args.stats:
        print(token_stats(None, tokenizer))
    if args.text is not None or not (args.special or args.stats):
        text = args.text if args.text is not None else sys.stdin.read()
        print(show_tokens(text, tokenizer))
    return 0
