"""Token chips: how a tokenizer cuts a text, one coloured chip per token with its id (``show_tokens``).

Byte-level BPE (Qwen's tokenizer) works on UTF-8 bytes, so one Chinese character or emoji can be split
over two or three tokens; such a character is shown once, spanning the chips of all its tokens.

Also the small helpers the other ``qwenlab.tokens`` modules share: :func:`added_tokens`,
:func:`tokenizer_name`, the chip colours (:data:`PALETTE`) and :data:`MONO_FONT`.

Taught in ``03_tokenizer.ipynb``.
"""

from __future__ import annotations

import html
import os
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ..offline import qwen3_tokenizer_dir

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["Token", "Piece", "TokenView", "show_tokens", "added_tokens", "tokenizer_name", "PALETTE", "MONO_FONT"]

# Chip colours: pastel backgrounds; chip text is forced dark so it stays readable in dark themes too.
PALETTE = ("#ffd6a5", "#caffbf", "#9bf6ff", "#bdb2ff", "#ffc6ff", "#fdffb6")
MONO_FONT = "font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace"

# ---- bytes of a token ------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """Byte-level BPE writes each byte as a printable character (space -> "Ġ"); this maps it back."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return {char: byte for byte, char in bytes_to_unicode().items()}


def _backend(tokenizer: PreTrainedTokenizerBase) -> Any:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise TypeError(
            f"{type(tokenizer).__name__} has no Rust backend (backend_tokenizer); load the tokenizer with "
            "transformers.AutoTokenizer.from_pretrained(folder) to get a fast tokenizer."
        )
    return backend


def _is_byte_level(tokenizer: PreTrainedTokenizerBase) -> bool:
    return "ByteLevel" in repr(_backend(tokenizer).decoder)


def _normalize(tokenizer: PreTrainedTokenizerBase, text: str) -> str:
    normalizer = _backend(tokenizer).normalizer
    return normalizer.normalize_str(text) if normalizer is not None else text


def tokenizer_name(tokenizer: PreTrainedTokenizerBase) -> str:
    """A short name for titles: the model folder's name, or "Qwen3 tokenizer" for ``qwenlab.qwen3_tokenizer()``."""
    path = str(getattr(tokenizer, "name_or_path", "") or "").rstrip("/")
    try:
        if path and os.path.samefile(path, qwen3_tokenizer_dir()):
            return "Qwen3 tokenizer"
    except OSError:
        pass
    return os.path.basename(path)


def added_tokens(tokenizer: PreTrainedTokenizerBase) -> dict[int, Any]:
    """The tokenizer's added tokens (special ones and others such as ``<think>``): ``{id: AddedToken}``."""
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
        out = [f"<div class='qwenlab-tokens' style='{MONO_FONT};line-height:1.2'>",
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
    colours = [PALETTE[(first_index + i) % len(PALETTE)] for i in range(len(piece.tokens))]
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


def _tokens(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int]) -> list[Token]:
    added = added_tokens(tokenizer)
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


def _merge_by_offsets(tokenizer: PreTrainedTokenizerBase, text: str, tokens: list[Token], groups: list[list[int]],
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


def show_tokens(text_or_ids: str | Sequence[int], tokenizer: PreTrainedTokenizerBase) -> TokenView:
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
    name = tokenizer_name(tokenizer)
    if not isinstance(text_or_ids, str):
        return _view_of_ids([int(i) for i in text_or_ids], tokenizer, name)
    text = text_or_ids
    _check_unicode(text)
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


def _check_unicode(text: str) -> None:
    """A tokenizer needs real characters: refuse lone surrogates (bytes that were not UTF-8) with a ValueError."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(f"The text has {text[err.start]!r} at position {err.start}, which is not a character "
                         "(bytes that were not UTF-8, read with errors='surrogateescape'): decode the bytes "
                         "with their real encoding first, e.g. data.decode('gbk').") from None


def _view_of_ids(ids: list[int], tokenizer: PreTrainedTokenizerBase, name: str) -> TokenView:
    tokens = _tokens(tokenizer, ids)
    pieces = [
        Piece(b"".join(tokens[i].data for i in g).decode("utf-8", errors="replace"), tuple(tokens[i] for i in g))
        for g in (_groups(tokens) if tokens else [])
    ]
    return TokenView("".join(p.text for p in pieces), pieces, name)


def _view_from_offsets(text: str, tokenizer: PreTrainedTokenizerBase, ids: list[int], offsets: list, name: str) -> TokenView:
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
