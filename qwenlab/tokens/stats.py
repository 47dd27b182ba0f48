"""Token cost: characters per token and tokens per 100 characters for Chinese, English, code, emoji.

Taught in ``03_tokenizer.ipynb``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..display import Table, TableView, cjk_fonts
from .chips import PALETTE, tokenizer_name

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["SAMPLES", "StatsRow", "TokenStats", "token_stats"]

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
class TokenStats(TableView):
    """Characters per token and tokens per 100 characters for several texts; ``.plot()`` draws bars."""

    rows: list[StatsRow]
    tokenizer_name: str = ""

    def row(self, name: str) -> StatsRow:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"no sample named {name!r}; the samples are {[r.name for r in self.rows]}")

    def table(self) -> Table:
        head = ("sample", "characters", "UTF-8 bytes", "tokens", "chars/token", "tokens/100 chars")
        rows = [(r.name, r.chars, r.utf8_bytes, r.tokens, f"{r.chars_per_token:.2f}", f"{r.tokens_per_100_chars:.1f}")
                for r in self.rows]
        return Table(head, rows, align_right=(1, 2, 3, 4, 5), css_class="qwenlab-token-stats")

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))

    def plot(self) -> Any:
        """Two bar charts: tokens per 100 characters (density) and tokens per sample (the bill).

        Returns the matplotlib Figure (shown by Jupyter; ``fig.savefig(...)`` elsewhere).
        """
        from matplotlib.figure import Figure

        fig = Figure(figsize=(9, 0.5 * len(self.rows) + 1.2))
        left, right = fig.subplots(1, 2, sharey=True)
        names = [r.name for r in self.rows]
        colours = [PALETTE[i % len(PALETTE)] for i in range(len(names))]
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


def _use_cjk_font(ax: Any) -> bool:
    """Use a font with Chinese glyphs for the tick labels when one is installed; False when none is."""
    fonts = cjk_fonts()
    if fonts:
        for label in ax.get_yticklabels():
            label.set_fontfamily(fonts[0])
        return True
    return not any(ord(ch) > 0x2E80 for label in ax.get_yticklabels() for ch in label.get_text())


def _latin_label(name: str) -> str:
    """"中文 (Chinese)" -> "Chinese": a label the default font can draw."""
    inside = re.search(r"\(([^)]*)\)", name)
    if any(ord(ch) > 0x2E80 for ch in name) and inside:
        return inside.group(1)
    return name


def token_stats(texts: dict[str, str] | Sequence[str] | None, tokenizer: PreTrainedTokenizerBase) -> TokenStats:
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
    name = tokenizer_name(tokenizer)
    return TokenStats(rows, name)
