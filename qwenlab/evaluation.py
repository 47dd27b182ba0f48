"""Is a changed model still as good? A fixed bilingual probe set with accepted answers, answer
agreement between two variants, and perplexity on a fixed text — all shipped in ``qwenlab/data``.

Taught in ``07_quantization.ipynb`` (does quantization keep the answers?); ``qwenlab bench`` checks
its quantized rows with the same probes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from collections.abc import Sequence

import torch

from .generation import generate

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from .modelfacts import CausalLM

__all__ = [
    "Probe",
    "probes",
    "perplexity_text",
    "calibration_text",
    "is_correct",
    "same_answer",
    "probe_answers",
    "perplexity",
]

DATA = Path(__file__).with_name("data")


@dataclass(frozen=True)
class Probe:
    """One short factual question with its accepted answers (any of ``expected`` found = correct)."""

    question: str
    expected: tuple[str, ...]
    lang: str


def probes(lang: str | None = None) -> list[Probe]:
    """The fixed probe set shipped in ``qwenlab/data/probes.json`` (14 questions, 7 zh + 7 en).

    The questions are ones the fp32 offline model answers correctly *and* confidently (its top token
    leads the runner-up by more than one logit at every step). A question the model is guessing at
    flips under any change of arithmetic — even bf16 — and would measure noise, not quantization.

    >>> sorted({p.lang for p in probes()})
    ['en', 'zh']
    """
    items = json.loads((DATA / "probes.json").read_text(encoding="utf-8"))
    out = [Probe(p["question"], tuple(p["expected"]), p["lang"]) for p in items]
    return [p for p in out if lang is None or p.lang == lang]


def perplexity_text(lang: str = "both") -> str:
    """The fixed perplexity text (``"en"``, ``"zh"`` or ``"both"``), written for qwenlab (no copyright)."""
    if lang not in ("en", "zh", "both"):
        raise ValueError(f"lang={lang!r}: use 'en', 'zh' or 'both'.")
    parts = ["en", "zh"] if lang == "both" else [lang]
    return "\n\n".join((DATA / f"perplexity_{p}.txt").read_text(encoding="utf-8").strip() for p in parts)


def calibration_text() -> str:
    """A short zh + en text (different from the perplexity text) used to measure activation ranges."""
    return (DATA / "calibration.txt").read_text(encoding="utf-8")


def _norm(text: str) -> str:
    return " ".join(text.strip().lower().replace("₂", "2").split()).strip(" .。!！")


def is_correct(answer: str, probe: Probe) -> bool:
    """True when the answer contains one of the probe's accepted answers (case-insensitive).

    >>> is_correct("Paris.", Probe("Capital of France?", ("Paris",), "en"))
    True
    """
    return any(_norm(e) in _norm(answer) for e in probe.expected)


def same_answer(a: str, b: str) -> bool:
    """True when two answers are the same text, ignoring case, spacing and a final full stop.

    >>> same_answer("Paris.", "paris"), same_answer("Paris", "Paris is the capital")
    (True, False)
    """
    return _norm(a) == _norm(b)


def probe_answers(model: CausalLM, tokenizer: PreTrainedTokenizerBase, items: Sequence[Probe] | None = None,
                  max_new_tokens: int = 16) -> list[str]:
    """Greedy answers (thinking off) of ``model`` to each probe question.

    Greedy decoding makes the answer a function of the weights only, so two variants of one model can
    be compared answer by answer. Taught in ``07_quantization.ipynb``.
    """
    items = probes() if items is None else items
    return [generate(model, tokenizer, p.question, enable_thinking=False, do_sample=False,
                     max_new_tokens=max_new_tokens).text.strip() for p in items]


def perplexity(model: CausalLM, tokenizer: PreTrainedTokenizerBase, text: str | None = None, max_tokens: int = 512) -> float:
    """Perplexity of ``model`` on ``text`` (default :func:`perplexity_text`): ``exp(mean negative log-likelihood)``.

    Lower is better; a quantized model should stay within a few percent of its fp32 original.
    Taught in ``07_quantization.ipynb``.
    """
    text = perplexity_text() if text is None else text
    ids = tokenizer(text, return_tensors="pt").input_ids[:, :max_tokens].to(model.device)
    if ids.shape[1] < 2:
        raise ValueError("The text has fewer than 2 tokens; perplexity needs a longer text.")
    with torch.inference_mode():
        loss = model(input_ids=ids, labels=ids).loss
    return float(torch.exp(loss.float()))
