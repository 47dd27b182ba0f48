"""Measure the mini thinker: format, switches, accuracy with and without thinking, and forgetting.

On questions drawn with :data:`~qwenlab.thinker.data.EVAL_SEED` (never trained on), each asked three times
with greedy decoding:

- thinking on (no switch): is the reply a well-formed ``<think>…</think>answer``, and is the answer right?
- hard off (``enable_thinking=False``; the prompt already holds the empty think block): does the reply
  leave out any think tags and answer, and is the answer right?
- soft off (``/no_think``): does the reply start with an empty ``<think>\\n\\n</think>`` and answer?

and the 14 probes of ``qwenlab/data/probes.json`` with thinking off, against the base model's own greedy
answers (is the thinker's answer unchanged?). Greedy decoding makes the numbers a function of the weights;
Qwen recommends sampling for real use (T=0.6, top_p=0.95, top_k=20 when thinking).

A benchmark, not a unit test: ``qwenlab train-thinker --measure --report FILE`` runs it (about 15 min on one
core); the recorded numbers are in ``benchmarks/thinker.md``.
Taught in ``06_thinking.ipynb`` and ``10_learn_to_think.ipynb``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..display import Table, TableView
from ..evaluation import Probe, is_correct, probe_answers, probes, same_answer
from ..generation import generate
from ..thinking import split_thinking
from .data import EVAL_SEED, KINDS, Problem, eval_problems, is_right, make_problems, prompt_messages

if TYPE_CHECKING:
    from ..modelfacts import CausalLM

__all__ = ["MAX_NEW_TOKENS", "Attempt", "ProbeRow", "ThinkerReport", "ask", "fresh_problems", "measure",
           "probe_rows"]

#: reply budgets per mode: a trained thought is under ~130 tokens, an answer under ~40
MAX_NEW_TOKENS = {"think": 320, "hard_off": 64, "soft_off": 72}


@dataclass
class Attempt:
    """One question asked in one mode."""

    problem: Problem
    mode: str
    state: str  # split_thinking's state: complete / none / empty / unfinished
    thinking: str
    answer: str
    finish_reason: str
    tokens: int
    seconds: float

    @property
    def obeyed(self) -> bool:
        """Thinking on: a closed, non-empty thought then an answer. Hard off: no think tags (the empty block
        is in the prompt) and an answer. Soft off: an empty think block then an answer."""
        wanted = {"think": "complete", "hard_off": "none", "soft_off": "empty"}[self.mode]
        return self.state == wanted and bool(self.answer) and self.finish_reason == "stop"

    @property
    def right(self) -> bool:
        return is_right(self.answer, self.problem)


@dataclass
class ProbeRow:
    """One probe: the base model's greedy answer and the thinker's (thinking off)."""

    probe: Probe
    base: str
    thinker: str

    @property
    def unchanged(self) -> bool:
        return same_answer(self.base, self.thinker)


@dataclass
class ThinkerReport(TableView):
    """The measurement: every attempt, every probe, and the settings (shows as :meth:`summary`)."""

    attempts: list[Attempt]
    probe_rows: list[ProbeRow]
    settings: dict = field(default_factory=dict)

    def of(self, mode: str) -> list[Attempt]:
        return [a for a in self.attempts if a.mode == mode]

    def rate(self, mode: str, what: str, kind: str | None = None) -> tuple[int, int]:
        items = [a for a in self.of(mode) if kind is None or a.problem.kind == kind]
        return sum(bool(getattr(a, what)) for a in items), len(items)

    @property
    def questions(self) -> int:
        return len(self.of("think"))

    def table(self) -> Table:
        return self.summary()

    def summary(self) -> Table:
        """The headline numbers, with the issue's targets."""
        def pct(hit: int, n: int) -> str:
            return f"{hit}/{n} = {100 * hit / n:.0f} %" if n else "-"

        rows = [
            ["well-formed `<think>…</think>answer`, thinking on", pct(*self.rate("think", "obeyed")), "≥ 95 %"],
            ["no think block in the reply, hard off (`enable_thinking=False`)", pct(*self.rate("hard_off", "obeyed")),
             "≥ 95 %"],
            ["empty `<think></think>` then answer, soft off (`/no_think`)", pct(*self.rate("soft_off", "obeyed")),
             "≥ 95 %"],
            ["right final answer, thinking on", pct(*self.rate("think", "right")), "≥ 70 %"],
            ["right final answer, thinking off (hard)", pct(*self.rate("hard_off", "right")), "(compare)"],
            ["right final answer, thinking off (soft)", pct(*self.rate("soft_off", "right")), "(compare)"],
            ["probe answers unchanged vs the base model (thinking off)",
             f"{sum(r.unchanged for r in self.probe_rows)}/{len(self.probe_rows)}", "≥ 13/14"],
        ]
        return Table(["measure", "result", "target"], rows, title="mini thinker (greedy)")

    def by_kind(self) -> Table:
        """Accuracy per kind of question, thinking on vs off, with tokens and seconds per reply."""
        rows = []
        for kind in KINDS:
            on, off = self.rate("think", "right", kind), self.rate("hard_off", "right", kind)
            think = [a for a in self.of("think") if a.problem.kind == kind]
            plain = [a for a in self.of("hard_off") if a.problem.kind == kind]
            rows.append([kind, f"{on[0]}/{on[1]}", f"{off[0]}/{off[1]}",
                         f"{_mean([a.tokens for a in think]):.0f}", f"{_mean([a.tokens for a in plain]):.0f}",
                         f"{_mean([a.seconds for a in think]):.1f}", f"{_mean([a.seconds for a in plain]):.1f}"])
        return Table(["kind", "right (on)", "right (off)", "tokens (on)", "tokens (off)", "s (on)", "s (off)"],
                     rows, align_right=range(1, 7))

    def probes_table(self) -> Table:
        rows = [[r.probe.question, " ".join(r.base.split()), " ".join(r.thinker.split()),
                 "same" if r.unchanged else "CHANGED", "yes" if is_correct(r.thinker, r.probe) else "no"]
                for r in self.probe_rows]
        return Table(["probe", "base model", "thinker", "unchanged", "thinker right"], rows)

    def misses(self) -> Table:
        """Every attempt that broke the format or got the answer wrong."""
        rows = [[a.mode, a.problem.question, a.problem.value, a.state, " ".join(a.answer.split())[:60]]
                for a in self.attempts if not (a.obeyed and a.right)]
        return Table(["mode", "question", "expected", "state", "answer"], rows)

    def to_markdown(self) -> str:
        lines = [self.summary().to_markdown(), "", self.by_kind().to_markdown(), "",
                 self.probes_table().to_markdown(), "", "Misses:", "", self.misses().to_markdown()]
        return "\n".join(lines)


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def ask(model: CausalLM, tokenizer: Any, problem: Problem, mode: str,
        max_new_tokens: int | None = None) -> Attempt:
    """Ask one question in ``mode`` (``think``, ``hard_off``, ``soft_off``, ``soft_think``), greedy."""
    messages, thinking = prompt_messages(problem.question, mode)
    budget = max_new_tokens or MAX_NEW_TOKENS.get(mode, MAX_NEW_TOKENS["think"])
    result = generate(model, tokenizer, messages, enable_thinking=thinking, do_sample=False,
                      max_new_tokens=budget)
    split = split_thinking(result.token_ids, tokenizer)
    return Attempt(problem, mode, split.state, split.thinking, split.content, result.finish_reason,
                   result.completion_tokens, result.seconds)


def probe_rows(thinker: CausalLM, tokenizer: Any, base_answers: Sequence[str]) -> list[ProbeRow]:
    """The thinker's greedy probe answers (thinking off) next to the base model's."""
    items = probes()
    mine = probe_answers(thinker, tokenizer, items)
    return [ProbeRow(p, b, t) for p, b, t in zip(items, base_answers, mine)]


def fresh_problems(n: int, seed: int, trained: Sequence[Problem]) -> list[Problem]:
    """``n`` questions drawn with another ``seed``, leaving out any question that was ``trained`` on."""
    seen = {p.question for p in trained}
    return [p for p in make_problems(n + len(seen), seed) if p.question not in seen][:n]


def measure(model: CausalLM, tokenizer: Any, base_answers: Sequence[str], n: int = 56, seed: int = EVAL_SEED,
            modes: Sequence[str] = ("think", "hard_off", "soft_off"),
            progress: Callable[[int, int], None] | None = None,
            problems: Sequence[Problem] | None = None) -> ThinkerReport:
    """Run the whole measurement on ``n`` eval questions (see the module docstring).

    Args:
        base_answers: the base model's greedy probe answers (``probe_answers(base, base_tokenizer)``).
        progress: called with (done, total) after each question.
        problems: the questions (default: ``eval_problems(n, seed)``).
    """
    start = time.perf_counter()
    source = "given" if problems is not None else seed
    problems = list(problems) if problems is not None else eval_problems(n, seed)
    attempts = []
    for i, problem in enumerate(problems):
        attempts += [ask(model, tokenizer, problem, mode) for mode in modes]
        if progress:
            progress(i + 1, len(problems))
    rows = probe_rows(model, tokenizer, base_answers)
    settings = {"questions": len(problems), "eval_seed": source, "decoding": "greedy (do_sample=False)",
                "max_new_tokens": dict(MAX_NEW_TOKENS), "dtype": str(model.dtype).replace("torch.", ""),
                "seconds": round(time.perf_counter() - start, 1)}
    return ThinkerReport(attempts, rows, settings)
