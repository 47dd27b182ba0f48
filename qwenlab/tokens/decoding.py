"""Streaming decode, done wrong and right: decoding each generated token alone shows "�" wherever a
character's bytes span two tokens; ``qwenlab.stream``'s streamer waits for the whole character
(``decode_steps`` puts the two side by side).

Taught in ``03_tokenizer.ipynb``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..display import Table, TableView
from ..generation import PieceStreamer

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = ["DecodeStep", "DecodeSteps", "decode_steps"]


@dataclass(frozen=True)
class DecodeStep:
    """One generated token: what decoding it alone shows, and what a correct streamer prints."""

    id: int
    alone: str
    streamed: str


@dataclass
class DecodeSteps(TableView):
    """Token-by-token decoding (wrong: "�") next to what ``qwenlab.stream`` emits (right)."""

    steps: list[DecodeStep]

    @property
    def naive_text(self) -> str:
        return "".join(s.alone for s in self.steps)

    @property
    def streamed_text(self) -> str:
        return "".join(s.streamed for s in self.steps)

    def table(self) -> Table:
        rows = [(s.id, repr(s.alone), repr(s.streamed) if s.streamed else "(waits)") for s in self.steps]
        notes = [f"token by token: {self.naive_text!r}", f"streamed:       {self.streamed_text!r}"]
        return Table(("id", "decode([id]) alone", "stream prints"), rows, notes=notes, align_right=(0,),
                     css_class="qwenlab-decode-steps")

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))


def decode_steps(text_or_ids: str | Sequence[int], tokenizer: PreTrainedTokenizerBase, skip_special_tokens: bool = True) -> DecodeSteps:
    """Replay a generation one token at a time: decoding each token alone vs what ``qwenlab.stream`` prints.

    Decoding token by token shows "�" wherever a character's bytes span two tokens. ``qwenlab.stream``
    (its streamer, :class:`qwenlab.generation.PieceStreamer`, is used here unchanged) decodes everything
    so far and prints only the new, complete text, waiting while the end is an unfinished character.

    Example:
        >>> steps = decode_steps("囧", tokenizer)
        >>> [(s.alone, s.streamed) for s in steps.steps]
        [('�', ''), ('�', '囧')]

    Taught in ``03_tokenizer.ipynb``.
    """
    ids = (tokenizer.encode(text_or_ids, add_special_tokens=False) if isinstance(text_or_ids, str)
           else [int(i) for i in text_or_ids])
    streamer = PieceStreamer(tokenizer, skip_special_tokens)
    steps = [DecodeStep(token_id, str(tokenizer.decode([token_id], skip_special_tokens=skip_special_tokens)),
                        streamer.add([token_id]))
             for token_id in ids]
    tail = streamer.flush()  # an unfinished character at the very end: shown with the last token
    if tail and steps:
        last = steps[-1]
        steps[-1] = DecodeStep(last.id, last.alone, last.streamed + tail)
    return DecodeSteps(steps)
