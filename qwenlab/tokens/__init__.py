"""See how a tokenizer cuts text: token chips, cost statistics, the chat template, special tokens.

- :func:`show_tokens` — every token as a coloured chip with its id; a character whose UTF-8 bytes are
  split over several tokens is shown once, spanning those tokens (no "Ġ" or "�" noise). (``chips``)
- :func:`token_stats` — characters per token and tokens per 100 characters (Chinese, English, code ...).
  (``stats``)
- :func:`render_chat` — the chat template's output with roles and special tokens highlighted;
  ``a.diff(b)`` compares two renderings (e.g. thinking on vs off). (``template``)
- :func:`special_tokens` — the special and added tokens, their ids, what each is for, and which ones
  ``skip_special_tokens=True`` removes. (``special``)
- :func:`decode_steps` — why a streamer must not decode token by token. (``decoding``)
- :func:`load_tokenizer` — a model's tokenizer alone, without its weights.

Every function returns a data object: it shows as HTML in Jupyter and as text with ``print``.
``qwenlab tokens TEXT`` shows the same in a terminal (``qwenlab.commands.tokens``).

Taught in ``03_tokenizer.ipynb``.
"""

from __future__ import annotations

import os
from typing import Any

from ..offline import qwen3_tokenizer
from .chips import Piece, Token, TokenView, show_tokens
from .decoding import DecodeStep, DecodeSteps, decode_steps
from .special import SpecialToken, SpecialTokenTable, special_tokens
from .stats import SAMPLES, StatsRow, TokenStats, token_stats
from .template import ChatRendering, ChatSegment, DiffOp, RenderingDiff, render_chat

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
    "DiffOp",
    "RenderingDiff",
    "render_chat",
    "SpecialToken",
    "SpecialTokenTable",
    "special_tokens",
    "DecodeStep",
    "DecodeSteps",
    "decode_steps",
    "load_tokenizer",
]


def load_tokenizer(name_or_path: str | os.PathLike = "qwen3") -> Any:
    """Load only the tokenizer of a model (no weights): ``"qwen3"`` (always offline), a catalog name or a folder.

    Taught in ``03_tokenizer.ipynb``.
    """
    if str(name_or_path).lower() == "qwen3":
        return qwen3_tokenizer()
    from transformers import AutoTokenizer

    from ..models import resolve  # models (layer 5) loads on demand: `import qwenlab.tokens` stays light

    where = resolve(name_or_path)
    extra = {"gguf_file": where.gguf_file} if where.gguf_file else {}
    return AutoTokenizer.from_pretrained(where.folder, **extra)
