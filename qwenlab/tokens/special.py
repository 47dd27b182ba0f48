"""The special and added tokens of a tokenizer: ids, what each is for, and which ones
``skip_special_tokens=True`` really removes (``special_tokens``).

Taught in ``03_tokenizer.ipynb``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..display import Table, TableView
from .chips import added_tokens, tokenizer_name

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["SpecialToken", "SpecialTokenTable", "special_tokens"]

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
class SpecialTokenTable(TableView):
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

    def _summary(self) -> str:
        parts = f"{self.regular:,} regular (BPE) tokens + {self.added:,} added tokens"
        if self.placeholders:
            parts += f" + {self.placeholders:,} placeholders"
        return f"{parts} = {self.total:,} = len(tokenizer)"

    def table(self) -> Table:
        head = ("id", "token", "special", "skip_special_tokens", "named", "purpose")
        body = []
        for r in self.rows:
            ident = str(r.id) if r.count == 1 else f"{r.id}–{r.last_id}"
            content = r.content if r.count == 1 else f"{r.content} … {r.last_content} ({r.count})"
            body.append((ident, content, "yes" if r.special else "no",
                         "removed" if r.skipped else "kept", ", ".join(r.named_as), r.purpose))
        return Table(head, body, title=self._summary(), css_class="qwenlab-special")

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))


def _named(tokenizer: PreTrainedTokenizerBase) -> dict[str, list[str]]:
    named: dict[str, list[str]] = {}
    for attr in ("bos_token", "eos_token", "pad_token", "unk_token"):
        value = getattr(tokenizer, attr, None)
        if value:
            named.setdefault(str(value), []).append(attr)
    return named


def _placeholder_ids(tokenizer: PreTrainedTokenizerBase, added: dict[int, Any]) -> dict[int, str]:
    """Vocabulary entries like ``[PAD151665]`` (a GGUF conversion pads the vocabulary with them)."""
    first = min(added, default=0)
    return {i: t for t, i in tokenizer.get_vocab().items()
            if i >= first and i not in added and _PLACEHOLDER.fullmatch(t)}


def special_tokens(tokenizer: PreTrainedTokenizerBase) -> SpecialTokenTable:
    """Table of the special and added tokens: id, text, purpose, and whether ``skip_special_tokens`` drops them.

    "Removed" is measured, not assumed: each token is decoded with ``skip_special_tokens=True``.
    In Qwen3, ``<think>``/``</think>`` are added but *not* special, so decoding keeps them.
    Runs of placeholder tokens (``[PAD151665]`` … from a GGUF conversion) are collapsed into one row.

    Taught in ``03_tokenizer.ipynb``.
    """
    added = added_tokens(tokenizer)
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
    name = tokenizer_name(tokenizer)
    regular = len(tokenizer) - len(added) - len(placeholders)
    return SpecialTokenTable(rows, regular, len(added), len(placeholders), name)
