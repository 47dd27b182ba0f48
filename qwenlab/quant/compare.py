"""Quantized variants side by side, measured in one run on this machine: memory, load time, peak RSS,
prefill and decode speed, perplexity and probe answers (``compare``), with plots; and the fast recipe's
benchmark against fp32 (``benchmark_fast_recipe``, what ``qwenlab bench quant`` prints).

Taught in ``07_quantization.ipynb`` (section 6); ``qwenlab bench`` times :func:`cpu_variants` too.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from collections.abc import Callable, Mapping, Sequence

import torch

from ..display import Table, TableView, pick
from ..evaluation import Probe, is_correct, perplexity, probe_answers, probes, same_answer
from ..generation import build_inputs
from ..measure import PeakRss, load_average, machine_info, time_generate
from ..modelfacts import facts_of
from ..models import release_memory
from .footprint import model_footprint
from .methods import gguf_file, load_quantized, quantize

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from ..modelfacts import CausalLM

__all__ = [
    "COMPARE_PROMPT",
    "cpu_variants",
    "full_variants",
    "VariantResult",
    "Comparison",
    "AnswerTable",
    "compare",
    "plot_comparison",
    "plot_speed_quality",
    "RecipeBenchmark",
    "benchmark_fast_recipe",
]

COMPARE_PROMPT = "用三句话介绍一下长城。Then say one sentence about it in English."


def cpu_variants() -> dict[str, Callable[[Any], Any]]:
    """The CPU methods as ``{label: build(model) -> quantized copy}``, ready for :func:`compare` and
    ``qwenlab bench`` (each build leaves the model it gets unchanged)."""
    return {
        "dynamic int8, torch defaults (all Linear)": lambda m: quantize(m, "dynamic-int8"),
        "dynamic int8 (lm_head only)": lambda m: quantize(m, "dynamic-int8-lm-head"),
        "torchao int8 weight-only": lambda m: quantize(m, "torchao-int8-weight-only"),
        "qwenlab fast CPU (int8 per-channel)": lambda m: quantize(m, "fast"),
    }


def full_variants(model: CausalLM, name: str) -> dict[str, Any]:
    """fp32 + every CPU method as lazily built variants for :func:`compare` (GGUF when a file is known)."""
    variants: dict[str, Any] = {"fp32": model}
    for label, build in cpu_variants().items():
        variants[label] = (lambda b=build: b(model))
    variants["bf16"] = lambda: quantize(model, "bf16")
    try:
        gguf = gguf_file(name)
    except FileNotFoundError:
        gguf = None
    if gguf is not None:
        variants["GGUF Q4_K_M via transformers"] = lambda: load_quantized(str(gguf), "gguf").model
    return variants


@dataclass
class VariantResult:
    """One row of :class:`Comparison` (times in seconds, sizes in bytes, speeds in tokens/s)."""

    name: str
    weight_bytes: int
    decode_tokens_per_second: float
    prefill_tokens_per_second: float
    perplexity: float
    answers: list[str]
    correct: int
    kept: int
    load_seconds: float | None = None
    peak_rss_bytes: int | None = None
    speedup: float = 1.0
    note: str = ""

    @property
    def total(self) -> int:
        return len(self.answers)


@dataclass
class Comparison(TableView):
    """Memory, speed and quality of model variants measured in one run on one machine (:func:`compare`).

    ``kept`` counts answers identical to the reference's (greedy); ``correct`` counts answers that
    contain an accepted answer. ``measured`` says when/where, ``load_average`` how busy the machine was.
    """

    rows: list[VariantResult]
    reference: str
    questions: list[str]
    measured: dict = field(default_factory=dict)

    def row(self, name: str) -> VariantResult:
        return pick(self.rows, "name", name, "variant")

    def table(self) -> Table:
        head = ["variant", "weights MiB", "load s", "peak RSS MiB", "prefill tok/s", "decode tok/s", "vs ref",
                "perplexity", "correct", "same as ref"]
        rows = [[r.name, f"{r.weight_bytes / 2**20:,.0f}", _opt(r.load_seconds, 1),
                 _opt(None if r.peak_rss_bytes is None else r.peak_rss_bytes / 2**20, 0),
                 f"{r.prefill_tokens_per_second:,.0f}", f"{r.decode_tokens_per_second:.1f}",
                 f"{r.speedup:.2f}x", f"{r.perplexity:.3f}", f"{r.correct}/{r.total}", f"{r.kept}/{r.total}"]
                for r in self.rows]
        return Table(head, rows, title=self.header(), align_right=range(1, len(head)))

    def header(self) -> str:
        m = self.measured
        when = m.get("date") or m.get("when", "?")  # "when": comparisons saved before qwenlab.measure
        parts = [f"measured {when} on {m.get('cpu', '?')} ({m.get('threads', '?')} threads)"]
        if isinstance(m.get("load_average"), list):
            parts.append(f"load average {m['load_average'][0]:.1f} -> {m['load_average'][1]:.1f}")
        if m.get("label"):
            parts.append(str(m["label"]))
        return "; ".join(parts)

    def answers(self) -> AnswerTable:
        """Every variant's answer to every probe, with the ones that differ from the reference marked."""
        return AnswerTable(self)

    def to_json(self) -> str:
        return json.dumps({"reference": self.reference, "questions": self.questions, "measured": self.measured,
                           "rows": [asdict(r) for r in self.rows]}, ensure_ascii=False, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Comparison:
        data = json.loads(text)
        return cls([VariantResult(**r) for r in data["rows"]], data["reference"], data["questions"],
                    data.get("measured", {}))

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Comparison:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


@dataclass
class AnswerTable(TableView):
    """Answers per probe (rows) and variant (columns); ``✗`` marks an answer that changed (red in Jupyter)."""

    comparison: Comparison

    def table(self) -> Table:
        cmp = self.comparison
        ref = cmp.row(cmp.reference).answers
        rows = []
        for i, q in enumerate(cmp.questions):
            cells = [q]
            for r in cmp.rows:
                a = r.answers[i] if i < len(r.answers) else ""
                cells.append(a if same_answer(a, ref[i]) else f"✗ {a}")
            rows.append([c.replace("\n", " ")[:40] for c in cells])
        return Table(["question"] + [r.name for r in cmp.rows], rows)

    def _repr_html_(self) -> str:
        return self.table()._repr_html_().replace("<td>✗", "<td style='color:#c44e52'>✗")


def _opt(x: float | None, digits: int) -> str:
    return "—" if x is None else f"{x:,.{digits}f}"


def _decode_and_prefill(model: CausalLM, inputs: dict, new_tokens: int, repeats: int) -> tuple[float, float]:
    """(decode tok/s, prefill tok/s): greedy ``generate`` of exactly ``new_tokens``; medians of ``repeats``."""
    time_generate(model, {k: v[:, -4:] for k, v in inputs.items()}, 2)  # warm-up
    runs = [time_generate(model, inputs, new_tokens) for _ in range(max(1, repeats))]
    step = statistics.median(r.step_median for r in runs)
    prefill = statistics.median(r.prefill_seconds for r in runs)
    return 1.0 / step, inputs["input_ids"].shape[1] / prefill


def compare(variants: Mapping[str, Any], tokenizer: PreTrainedTokenizerBase, *, reference: str | None = None,
            questions: Sequence[Probe] | None = None, max_new_tokens: int = 16, decode_tokens: int = 24,
            repeats: int = 2, perplexity_tokens: int = 512, label: str = "",
            progress: Callable[[str], None] | None = None) -> Comparison:
    """Measure model variants side by side in one run: weight bytes, load time, peak RSS, prefill and
    decode tok/s, perplexity on the shipped zh + en text, and greedy answers to the probe set.

    Args:
        variants: ``{name: model}`` or ``{name: callable() -> model}``. A callable is built when its turn
            comes (its load time and peak RSS are measured) and released afterwards, so only one extra
            variant is in memory at a time. The first entry is the reference unless ``reference`` is given.
        tokenizer: the tokenizer all variants share.
        questions: probe subset (default :func:`probes`, all 14); ``max_new_tokens`` bounds each answer.
        decode_tokens, repeats: the speed measurement (greedy ``generate`` of exactly that many tokens).
        label: a note stored with the result (e.g. "quick run for the notebook").

    Returns:
        :class:`Comparison` — prints as a table, renders as HTML, ``.answers()`` shows every answer.

    Example:
        >>> cmp = qwenlab.compare({"fp32": model, "fast": lambda: qwenlab.quantize(model, "fast")},
        ...                       tokenizer)                                    # doctest: +SKIP

    Taught in ``07_quantization.ipynb``.
    """
    if not variants:
        raise ValueError("variants is empty: pass e.g. {'fp32': model, 'fast': lambda: quantize(model, 'fast')}.")
    say = progress or (lambda msg: None)
    items = list(questions) if questions is not None else probes()
    reference = reference or next(iter(variants))
    if reference not in variants:
        raise ValueError(f"reference={reference!r} is not one of the variants: {', '.join(variants)}.")
    inputs = build_inputs(tokenizer, COMPARE_PROMPT, enable_thinking=False)
    load_before = load_average()
    rows = []
    order = [reference] + [n for n in variants if n != reference]
    for name in order:
        say(f"measuring {name} ...")
        rows.append(_measure_variant(name, variants[name], tokenizer, inputs, items, max_new_tokens,
                                     decode_tokens, repeats, perplexity_tokens))
    ref = rows[0]
    for r in rows:
        r.speedup = r.decode_tokens_per_second / ref.decode_tokens_per_second
        r.kept = sum(same_answer(a, b) for a, b in zip(r.answers, ref.answers))
    measured = machine_info(torch.get_num_threads())
    load_after = load_average()
    if load_before is not None and load_after is not None:
        measured["load_average"] = [load_before[0], load_after[0]]
    measured["label"] = label
    by_name = {r.name: r for r in rows}
    return Comparison([by_name[n] for n in variants], reference, [p.question for p in items], measured)


def _measure_variant(name: str, variant: Any, tokenizer: PreTrainedTokenizerBase, inputs: dict, items: Sequence[Probe],
                     max_new_tokens: int, decode_tokens: int, repeats: int, perplexity_tokens: int) -> VariantResult:
    built = callable(variant) and not isinstance(variant, torch.nn.Module)
    with PeakRss() as rss:
        start = time.perf_counter()
        model = variant() if built else variant
        if isinstance(model, tuple):  # a loader that returns (model, tokenizer)
            model = model[0]
        load_seconds = time.perf_counter() - start if built else None
        decode, prefill = _decode_and_prefill(model, inputs, decode_tokens, repeats)
        ppl = perplexity(model, tokenizer, max_tokens=perplexity_tokens)
        answers = probe_answers(model, tokenizer, items, max_new_tokens)
        weight_bytes = model_footprint(model).total_bytes
    result = VariantResult(name=name, weight_bytes=weight_bytes, decode_tokens_per_second=decode,
                           prefill_tokens_per_second=prefill, perplexity=ppl, answers=answers,
                           correct=sum(is_correct(a, p) for a, p in zip(answers, items)), kept=0,
                           load_seconds=load_seconds, peak_rss_bytes=(rss.peak - rss.start) if built else None)
    if built:
        del model
        release_memory()  # gc + hand the freed heap back, so the next variant starts from the same base
    return result


def plot_comparison(cmp: Comparison) -> Any:
    """Four bar charts of a :class:`Comparison`: weight memory, decode speed, perplexity, answers kept.

    Returns the matplotlib Figure. Taught in ``07_quantization.ipynb``.
    """
    import matplotlib.pyplot as plt

    names = [r.name for r in cmp.rows]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    panels: list[tuple[str, list[float]]] = [
        ("weights (MiB)", [r.weight_bytes / 2**20 for r in cmp.rows]),
        ("decode (tokens/s)", [r.decode_tokens_per_second for r in cmp.rows]),
        ("perplexity (lower is better)", [r.perplexity for r in cmp.rows]),
        ("answers same as reference", [float(r.kept) for r in cmp.rows]),
    ]
    colors = ["#8c8c8c" if n == cmp.reference else ("#55a868" if r.kept == r.total else "#c44e52")
              for n, r in zip(names, cmp.rows)]
    for ax, (title, values) in zip(axes, panels):
        ax.barh(range(len(names)), values, color=colors)
        ax.set_yticks(range(len(names)), names if ax is axes[0] else [""] * len(names), fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=10)
        for i, v in enumerate(values):
            ax.annotate(f"{v:,.3g}", (v, i), fontsize=7, va="center", xytext=(2, 0), textcoords="offset points")
    axes[3].set_xlim(0, max(r.total for r in cmp.rows) * 1.2)
    fig.suptitle(cmp.header(), fontsize=8)
    fig.tight_layout()
    return fig


def plot_speed_quality(cmp: Comparison, ax: Any = None) -> Any:
    """Speed vs quality: decode speed-up over the reference (x) against the perplexity change (y), one
    point per variant; green when every probe answer is kept, red when some changed.

    Returns the matplotlib Figure. Taught in ``07_quantization.ipynb``.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4.5))
    else:
        fig = ax.figure
    ref = cmp.row(cmp.reference)
    for r in cmp.rows:
        change = 100 * (r.perplexity / ref.perplexity - 1)
        good = r.kept == r.total
        ax.scatter(r.speedup, change, s=30 + r.weight_bytes / 2**20 / 4, alpha=0.7,
                   color="#55a868" if good else "#c44e52", edgecolor="black")
        ax.annotate(f"{r.name}\n{r.kept}/{r.total} kept", (r.speedup, change), fontsize=7,
                    xytext=(6, 4), textcoords="offset points")
    ax.axhline(0, color="gray", lw=0.8)
    ax.axvline(1, color="gray", lw=0.8)
    ax.set_xlabel(f"decode speed-up vs {cmp.reference} (x)")
    ax.set_ylabel("perplexity change (%)")
    ax.set_title("faster (right) and better (down); dot size = weight memory", fontsize=10)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------ benchmark


@dataclass
class RecipeBenchmark:
    """``qwenlab bench quant``: decode speed of the fast CPU recipe vs fp32, answers checked, one run.

    Timing rounds alternate fp32 and fast, so a change in the machine's load hits both alike;
    ``speedup`` is the median of the per-round ratios.
    """

    model: str
    new_tokens: int
    rounds: int
    fp32_tokens_per_second: float
    fast_tokens_per_second: float
    speedup: float
    round_ratios: list[float]
    kept: int
    total: int
    changed: list[tuple[str, str, str]]
    fp32_bytes: int
    fast_bytes: int
    machine: dict

    GOAL = 2.0

    def lines(self) -> list[str]:
        m = self.machine
        load = m.get("load_average")
        out = [f"model {self.model}; {m.get('cpu')} ({m.get('threads')} threads); "
               + (f"load average {load[0]:.1f} -> {load[1]:.1f} " if isinstance(load, list) else "")
               + "(a busy machine slows both alike; the ratio is what counts)",
               f"weights: fp32 {self.fp32_bytes / 2**20:,.0f} MiB -> fast {self.fast_bytes / 2**20:,.0f} MiB",
               f"decode fp32 {self.fp32_tokens_per_second:.2f} tok/s, fast {self.fast_tokens_per_second:.2f} tok/s "
               f"({self.new_tokens} tokens x {self.rounds} rounds, ratios "
               + ", ".join(f"{r:.2f}" for r in self.round_ratios) + ")",
               f"probe answers unchanged: {self.kept}/{self.total}"]
        out += [f"  changed: {q} | fp32 {a!r} -> fast {b!r}" for q, a, b in self.changed]
        ok = self.speedup >= self.GOAL and self.kept == self.total
        out.append(f"decode speed-up of the fast CPU recipe vs fp32: {self.speedup:.2f}x "
                   f"(goal >= {self.GOAL:.1f}x with every answer kept: {'met' if ok else 'NOT met'})")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


def benchmark_fast_recipe(model: CausalLM, tokenizer: PreTrainedTokenizerBase, *, name: str = "", new_tokens: int = 32, rounds: int = 3,
                          questions: Sequence[Probe] | None = None,
                          progress: Callable[[str], None] | None = None) -> RecipeBenchmark:
    """Fast CPU recipe vs fp32 on one model, in one run: probe answers (greedy) and decode speed.

    Taught in ``07_quantization.ipynb``; ``qwenlab bench quant`` prints it.
    """
    say = progress or (lambda msg: None)
    load_before = load_average()
    items = probes() if questions is None else list(questions)
    fast = quantize(model, "fast")
    say("probe answers (fp32, then fast) ...")
    ref = probe_answers(model, tokenizer, items)
    got = probe_answers(fast, tokenizer, items)
    changed = [(p.question, a, b) for p, a, b in zip(items, ref, got) if not same_answer(a, b)]
    inputs = build_inputs(tokenizer, COMPARE_PROMPT, enable_thinking=False)
    for m in (model, fast):
        time_generate(m, {k: v[:, -4:] for k, v in inputs.items()}, 2)
    steps: dict[str, list[float]] = {"fp32": [], "fast": []}
    for i in range(max(1, rounds)):
        say(f"timing round {i + 1}/{rounds} ...")
        for which in (("fp32", "fast") if i % 2 == 0 else ("fast", "fp32")):
            steps[which].append(time_generate(model if which == "fp32" else fast, inputs, new_tokens).step_median)
    ratios = [a / b for a, b in zip(steps["fp32"], steps["fast"])]
    machine = machine_info(torch.get_num_threads())
    load_after = load_average()
    machine["load_average"] = [load_before[0], load_after[0]] if load_before and load_after else None
    return RecipeBenchmark(
        model=name or facts_of(model).name,
        new_tokens=new_tokens, rounds=max(1, rounds),
        fp32_tokens_per_second=1 / statistics.median(steps["fp32"]),
        fast_tokens_per_second=1 / statistics.median(steps["fast"]),
        speedup=statistics.median(ratios), round_ratios=ratios, kept=len(items) - len(changed), total=len(items),
        changed=changed, fp32_bytes=model_footprint(model).total_bytes, fast_bytes=model_footprint(fast).total_bytes,
        machine=machine)
