"""Does a quantized or fast path keep the model's quality? Judged the way quantization papers do, on data
no recipe was tuned on: 200 held-out questions (zh + en; greedy answers unchanged vs fp32), and next-token
agreement, KL divergence and perplexity over ≥ 5,000 positions of held-out text — for every PyTorch
variant and every llama.cpp GGUF variant, in one run (``qwenlab bench quant --quality``).

The data (``qwenlab/data/heldout/``, written by ``tools/make_heldout.py``): 240 generated questions with
a fixed split — ``tune`` (40: the only ones a recipe may be tuned on) and ``report`` (200: every number
published) — and the course's own prose (notebook Markdown for zh, docstrings for en).

Taught in ``07_quantization.ipynb`` (section 7); the full table measured here is shipped as
:func:`recorded_quality`.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..display import Table, TableView, pick
from ..evaluation import DATA, Probe, is_correct, same_answer
from ..measure import machine_info
from ..modelfacts import facts_of
from .footprint import model_footprint

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from ..engines import LlamaCppModel
    from ..modelfacts import CausalLM

__all__ = [
    "Threshold",
    "THRESHOLD",
    "HeldoutQuestion",
    "heldout_questions",
    "heldout_text",
    "heldout_chunks",
    "greedy_answers",
    "bucketed_kl",
    "Reference",
    "reference",
    "QualityRow",
    "QualityReport",
    "measure_pytorch",
    "measure_gguf",
    "quality_report",
    "recorded_quality",
    "standard_variants",
    "standard_ggufs",
]

HELDOUT = DATA / "heldout"
RECORD = HELDOUT / "record.json"
TOP_K = 40  # next-token distributions are compared on the reference's top-40 tokens + "all the rest"
CHUNK = 512  # tokens of held-out text per forward pass (each position sees up to 511 tokens before it)
ANSWER_TOKENS = 12


@dataclass(frozen=True)
class Threshold:
    """What "keeps the answers" means, on the report split: both rates at least these."""

    answers_same: float = 0.97
    top1: float = 0.95

    def met(self, row: QualityRow) -> bool:
        return row.answers_same_rate >= self.answers_same and row.top1 >= self.top1

    def __str__(self) -> str:
        return (f"keeps quality = greedy answers unchanged >= {self.answers_same:.0%} of the held-out questions "
                f"and top-1 next-token agreement >= {self.top1:.0%}")


THRESHOLD = Threshold()


@dataclass(frozen=True)
class HeldoutQuestion(Probe):
    """A held-out question: a :class:`~qwenlab.evaluation.Probe` with its ``split`` and ``kind``."""

    split: str = "report"
    kind: str = ""


def heldout_questions(split: str | None = "report", lang: str | None = None) -> list[HeldoutQuestion]:
    """The held-out questions of one split (``"report"``: 200, ``"tune"``: 40, None: all 240).

    >>> len(heldout_questions()), len(heldout_questions("tune")), len(heldout_questions(None, "zh"))
    (200, 40, 120)
    """
    if split not in ("report", "tune", None):
        raise ValueError(f"split={split!r}: use 'report', 'tune' or None (both).")
    items = json.loads((HELDOUT / "questions.json").read_text(encoding="utf-8"))
    out = [HeldoutQuestion(q["question"], tuple(q["expected"]), q["lang"], q["split"], q["kind"]) for q in items]
    return [q for q in out if (split is None or q.split == split) and (lang is None or q.lang == lang)]


def heldout_text(lang: str) -> str:
    """The held-out prose in ``"zh"`` or ``"en"`` (about 4,000 tokens each)."""
    if lang not in ("zh", "en"):
        raise ValueError(f"lang={lang!r}: use 'zh' or 'en'.")
    return (HELDOUT / f"text_{lang}.txt").read_text(encoding="utf-8")


def heldout_chunks(tokenizer: PreTrainedTokenizerBase, positions: int = 6000, chunk: int = CHUNK) -> list[list[int]]:
    """Token ids of the held-out text in chunks of ``chunk`` tokens, zh and en in turn, until the chunks
    hold at least ``positions`` next-token positions (a chunk of n tokens holds n - 1)."""
    if positions < 1 or chunk < 2:
        raise ValueError(f"positions={positions}, chunk={chunk}: use positions >= 1 and chunk >= 2.")
    ids = {lang: tokenizer(heldout_text(lang)).input_ids for lang in ("zh", "en")}
    pools = {lang: [ids[lang][i:i + chunk] for i in range(0, len(ids[lang]) - chunk + 1, chunk)] for lang in ids}
    out: list[list[int]] = []
    while sum(len(c) - 1 for c in out) < positions:
        lang = ("zh", "en")[len(out) % 2]
        if not pools[lang]:
            lang = "en" if lang == "zh" else "zh"
        if not pools[lang]:
            have = sum(len(c) - 1 for c in out)
            raise ValueError(f"The held-out text holds {have} positions in chunks of {chunk}; ask for fewer.")
        out.append(pools[lang].pop(0))
    last = positions - sum(len(c) - 1 for c in out[:-1]) + 1
    out[-1] = out[-1][:last]
    return out


def greedy_answers(model: CausalLM, tokenizer: PreTrainedTokenizerBase, questions: Sequence[Probe],
                   max_new_tokens: int = ANSWER_TOKENS, batch_size: int = 16) -> list[str]:
    """Greedy answers (thinking off) to ``questions``, ``batch_size`` at a time (left-padded): on a CPU a
    batch of 16 costs about what one question costs, since decoding is bound by reading the weights."""
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    answers: list[str] = []
    try:
        for start in range(0, len(questions), batch_size):
            texts = [tokenizer.apply_chat_template([{"role": "user", "content": q.question}], tokenize=False,
                                                   add_generation_prompt=True, enable_thinking=False)
                     for q in questions[start:start + batch_size]]
            batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            with torch.inference_mode():
                out = model.generate(**batch, do_sample=False, max_new_tokens=max_new_tokens, top_k=None,
                                     top_p=None, temperature=None, pad_token_id=tokenizer.pad_token_id)
            answers += [a.strip() for a in tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:],
                                                                  skip_special_tokens=True)]
    finally:
        tokenizer.padding_side = side
    return answers


@dataclass
class Reference:
    """fp32's answers and next-token distributions (its top-``k`` log-probabilities at every position),
    what every variant is compared with."""

    answers: list[str]
    chunks: list[list[int]]
    top_ids: Any  # (positions, k) long
    top_logp: Any  # (positions, k) float
    nll: float  # summed negative log-likelihood of the true next tokens
    seconds: float
    plain_token: int  # a token that is a whole character (llama.cpp's rows emit it where a character is split)
    full: list[Any] | None = None  # every chunk's whole log-probabilities, when memory allows keeping them

    @property
    def positions(self) -> int:
        return int(self.top_ids.shape[0])


def _chunk_logp(model: CausalLM, ids: list[int]) -> Any:
    """Log-probabilities of the next token at every position of one chunk but the last: (n - 1, vocab)."""
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids], device=model.device)).logits[0, :-1].float()
    return torch.log_softmax(logits, dim=-1)


def reference(model: CausalLM, tokenizer: PreTrainedTokenizerBase, questions: Sequence[Probe],
              chunks: list[list[int]], k: int = TOP_K) -> Reference:
    """Run the reference (fp32) once: its greedy answers and its top-``k`` next-token log-probabilities."""
    start = time.perf_counter()
    answers = greedy_answers(model, tokenizer, questions)
    tops, nll = [], 0.0
    keep = _room_for(sum(len(c) - 1 for c in chunks) * model.config.vocab_size * 4)
    full: list[Any] | None = [] if keep else None
    for ids in chunks:
        logp = _chunk_logp(model, ids)
        tops.append(torch.topk(logp, k, dim=-1))
        nll -= float(logp.gather(1, torch.tensor(ids[1:])[:, None]).sum())
        if full is not None:
            full.append(logp)
    return Reference(answers, chunks, torch.cat([t.indices for t in tops]), torch.cat([t.values for t in tops]),
                     nll, time.perf_counter() - start, plain_token=tokenizer(",").input_ids[0], full=full)


def _room_for(nbytes: int) -> bool:
    """Whether ``nbytes`` more fit with plenty to spare (3x) in the memory available now."""
    try:
        import psutil
    except ImportError:
        return False
    return psutil.virtual_memory().available > 3 * nbytes


def bucketed_kl(ref_logp: Any, q_logp: Any) -> Any:
    """KL(ref || q) per position on a few tokens (the reference's top-k) + one bucket for all the rest.

    ``ref_logp`` / ``q_logp``: (positions, k) log-probabilities of the same tokens. Merging tokens can only
    lose information, so this is a lower bound of the full KL — the only KL an API that returns top-k
    log-probabilities (llama.cpp's, OpenAI's) allows.

    >>> p = torch.log_softmax(torch.tensor([[3.0, 1.0, 0.0, -1.0]], dtype=torch.float64), -1)
    >>> q = torch.log_softmax(torch.tensor([[2.0, 2.0, -1.0, 0.0]], dtype=torch.float64), -1)
    >>> round(float((p.exp() * (p - q)).sum()), 4), round(float(bucketed_kl(p[:, :2], q[:, :2])), 4)
    (0.3411, 0.315)
    """
    p, q = ref_logp.double().exp(), q_logp.double().exp()
    p_rest = (1 - p.sum(-1)).clamp(min=1e-12)
    q_rest = (1 - q.sum(-1)).clamp(min=1e-12)
    kl = (p * (ref_logp.double() - q_logp.double())).sum(-1) + p_rest * (p_rest.log() - q_rest.log())
    return kl.clamp(min=0)


@dataclass
class _Sums:
    """Running totals over positions."""

    n: int = 0
    agree: int = 0
    nll: float = 0.0
    kl: float = 0.0
    kl_topk: float = 0.0

    def add_bucketed(self, ref_logp: Any, q_logp: Any) -> None:
        self.kl_topk += float(bucketed_kl(ref_logp, q_logp).sum())


def _answers_part(row: QualityRow, answers: list[str], ref: Reference, questions: Sequence[Probe]) -> None:
    row.answers_same = sum(same_answer(a, b) for a, b in zip(answers, ref.answers))
    row.correct = sum(is_correct(a, q) for a, q in zip(answers, questions))
    row.questions = len(questions)
    row.changed = [(q.question, b, a) for q, a, b in zip(questions, answers, ref.answers) if not same_answer(a, b)]


def _finish(row: QualityRow, sums: _Sums, start: float) -> QualityRow:
    row.positions = sums.n
    row.top1 = sums.agree / sums.n
    row.kl = None if math.isnan(sums.kl) else sums.kl / sums.n
    row.kl_topk = sums.kl_topk / sums.n
    row.perplexity = math.exp(sums.nll / sums.n)
    row.seconds = time.perf_counter() - start
    return row


def measure_pytorch(label: str, model: CausalLM, tokenizer: PreTrainedTokenizerBase, ref: Reference,
                    questions: Sequence[Probe], fp32: CausalLM | None = None) -> QualityRow:
    """One PyTorch variant against the reference, the full KL over the whole vocabulary included: from the
    reference's kept log-probabilities, or (when memory did not allow keeping them) recomputed chunk by
    chunk with ``fp32``, the reference model. Without either the KL is left out (``None``)."""
    start = time.perf_counter()
    row = QualityRow(label, "PyTorch", weight_bytes=model_footprint(model).total_bytes)
    _answers_part(row, greedy_answers(model, tokenizer, questions), ref, questions)
    sums, at = _Sums(), 0
    for c, ids in enumerate(ref.chunks):
        q = _chunk_logp(model, ids)
        n = q.shape[0]
        targets = torch.tensor(ids[1:])
        top_ids, top_logp = ref.top_ids[at:at + n], ref.top_logp[at:at + n]
        sums.agree += int((q.argmax(-1) == top_ids[:, 0]).sum())
        sums.nll -= float(q.gather(1, targets[:, None]).sum())
        sums.add_bucketed(top_logp, q.gather(1, top_ids))
        if ref.full is not None or fp32 is not None:
            p = ref.full[c] if ref.full is not None else _chunk_logp(fp32, ids)  # type: ignore[arg-type]
            sums.kl += float((p.exp() * (p - q)).sum())
        else:
            sums.kl = math.nan
        sums.n += n
        at += n
    return _finish(row, sums, start)


def measure_gguf(label: str, llm: LlamaCppModel, ref: Reference, questions: Sequence[Probe],
                 progress: Callable[[str], None] | None = None) -> QualityRow:
    """One llama.cpp GGUF variant against the reference, through llama.cpp's own ``/completion``.

    At every position it sends the text so far (token ids; llama.cpp's prompt cache makes each step one
    new token) and reads the log-probabilities of its top tokens and of the true next token (forced with
    ``logit_bias``: llama.cpp reports the raw log-probability of the token it emits). The KL is the same
    bucketed estimate as the PyTorch rows' ``KL top-k`` column, on the tokens both top lists share.
    """
    say = progress or (lambda msg: None)
    start = time.perf_counter()
    row = QualityRow(label, "llama.cpp", weight_bytes=Path(llm.path).stat().st_size)
    answers = [llm.chat(q.question, do_sample=False, max_new_tokens=ANSWER_TOKENS, enable_thinking=False).text.strip()
               for q in questions]
    _answers_part(row, answers, ref, questions)
    k = int(ref.top_ids.shape[1])
    sums, at = _Sums(kl=math.nan), 0
    for c, ids in enumerate(ref.chunks):
        say(f"{label}: text chunk {c + 1}/{len(ref.chunks)}")
        for t in range(len(ids) - 1):
            target_logp, top = _gguf_position(llm, ids[:t + 1], ids[t + 1], k, ref.plain_token)
            ref_ids = ref.top_ids[at].tolist()
            shared = [j for j, tok in enumerate(ref_ids) if tok in top]
            sums.nll -= target_logp
            sums.agree += int(max(top, key=top.__getitem__) == ref_ids[0])
            sums.add_bucketed(ref.top_logp[at, shared][None],
                              torch.tensor([[top[ref_ids[j]] for j in shared]], dtype=torch.float64))
            sums.n += 1
            at += 1
    return _finish(row, sums, start)


def _gguf_position(llm: LlamaCppModel, prefix: list[int], target: int, k: int, plain: int) -> tuple[float, dict[int, float]]:
    """llama.cpp's log-probability of ``target`` after ``prefix`` and its top-``k`` ``{id: logprob}``."""
    base = {"prompt": prefix, "n_predict": 1, "temperature": 0, "cache_prompt": True}
    got = llm.complete(base | {"n_probs": k, "logit_bias": [[target, 1e9]]})["choices"][0]["logprobs"]
    if got:
        top = {int(x["id"]): float(x["logprob"]) for x in got["content"][0]["top_logprobs"]}
        return float(got["content"][0]["logprob"]), top
    # ``target`` is the first byte(s) of a character: llama.cpp holds back incomplete UTF-8 and its
    # log-probabilities with it. Emit a plain token instead and look ``target`` up in a longer list.
    for n in (4096, 1 << 20):
        got = llm.complete(base | {"n_probs": n, "logit_bias": [[plain, 1e9]]})["choices"][0]["logprobs"]
        listed = {int(x["id"]): float(x["logprob"]) for x in got["content"][0]["top_logprobs"]}
        if target in listed:
            return listed[target], dict(list(listed.items())[:k])
    raise RuntimeError(f"llama.cpp listed no log-probability for token {target}.")


@dataclass
class QualityRow:
    """One variant's quality against fp32 on the held-out data."""

    label: str
    engine: str
    weight_bytes: int = 0
    questions: int = 0
    answers_same: int = 0
    correct: int = 0
    positions: int = 0
    top1: float = 0.0
    kl: float | None = None
    kl_topk: float = 0.0
    perplexity: float = 0.0
    seconds: float = 0.0
    changed: list[tuple[str, str, str]] = field(default_factory=list)
    note: str = ""

    @property
    def answers_same_rate(self) -> float:
        return self.answers_same / self.questions if self.questions else 0.0


@dataclass
class QualityReport(TableView):
    """Every variant's quality against fp32 on held-out data, measured in one run (:func:`quality_report`)."""

    model: str
    rows: list[QualityRow]
    split: str
    threshold: Threshold = field(default_factory=Threshold)
    measured: dict = field(default_factory=dict)

    def row(self, label: str) -> QualityRow:
        return pick(self.rows, "label", label)

    def table(self) -> Table:
        head = ["variant", "engine", "weights MiB", "answers same", "correct", "top-1 agree", "KL", "KL top-40",
                "perplexity", "keeps quality"]
        rows = []
        for r in self.rows:
            is_ref = r.label == self.rows[0].label
            rows.append([r.label, r.engine, f"{r.weight_bytes / 2**20:,.0f}",
                         f"{r.answers_same}/{r.questions} ({r.answers_same_rate:.1%})", f"{r.correct}/{r.questions}",
                         f"{r.top1:.1%}", "—" if r.kl is None else f"{r.kl:.4f}", f"{r.kl_topk:.4f}",
                         f"{r.perplexity:.3f}", "reference" if is_ref else ("yes" if self.threshold.met(r) else "NO")])
        first = self.rows[0] if self.rows else None
        notes = [str(self.threshold) + f" ({self.split} split).",
                 "KL = KL(fp32 || variant) per position, in nats, over the whole vocabulary (PyTorch rows); "
                 "KL top-40 = the same on fp32's 40 likeliest tokens + one bucket for the rest, a lower bound, "
                 "the only KL llama.cpp's API allows (it returns top-n log-probabilities)."]
        if first:
            notes.insert(0, f"{first.questions} held-out questions (zh + en), {first.positions:,} held-out text "
                            f"positions (zh + en); model {self.model}; {self._when()}")
        return Table(head, rows, title=f"Quality on held-out data vs {first.label if first else 'fp32'}",
                     notes=notes, align_right=range(2, len(head) - 1))

    def _when(self) -> str:
        m = self.measured
        return f"measured {m.get('date', '?')} on {m.get('cpu', '?')}"

    def changed(self, label: str) -> Table:
        """The questions whose greedy answer ``label`` changed, with both answers."""
        rows = [[q, a, b] for q, a, b in self.row(label).changed]
        return Table(["question", self.rows[0].label, label], rows, title=f"answers {label} changed")

    def to_json(self) -> str:
        return json.dumps({"model": self.model, "split": self.split, "threshold": asdict(self.threshold),
                           "measured": self.measured, "rows": [asdict(r) for r in self.rows]},
                          ensure_ascii=False, indent=1)

    @classmethod
    def from_json(cls, text: str) -> QualityReport:
        data = json.loads(text)
        rows = [QualityRow(**{**r, "changed": [tuple(c) for c in r.get("changed", [])]}) for r in data["rows"]]
        return cls(data["model"], rows, data["split"], Threshold(**data["threshold"]), data.get("measured", {}))

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
        tmp.write_text(self.to_json() + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path


def recorded_quality() -> QualityReport:
    """The full quality table measured by the maintainers (``qwenlab bench quant --quality``, 200 report
    questions, ≥ 5,000 positions, every variant), shipped with qwenlab. Shown in ``07_quantization.ipynb``."""
    return QualityReport.from_json(RECORD.read_text(encoding="utf-8"))


def standard_variants() -> dict[str, Callable[[Any], Any]]:
    """Every CPU path ``qwenlab bench quant --quality`` measures: the CPU methods of
    :func:`~qwenlab.quant.cpu_variants`, torchao's int8 dynamic, bf16, and the weight-only int8 / int4
    kernels of ``qwenlab bench fastpath`` (:func:`~qwenlab.quant.int4.weight_only`)."""
    from .compare import cpu_variants
    from .int4 import weight_only
    from .methods import quantize

    bf16 = torch.bfloat16
    return {**cpu_variants(), "torchao int8 dynamic (int8 activations)": lambda m: quantize(m, "torchao-int8-dynamic"),
            "bf16": lambda m: quantize(m, "bf16"),
            "int8 weight-only, bf16 activations (torch kernel)": lambda m: weight_only(m, 8, dtype=bf16),
            "int4 g32 + int8 lm_head, bf16 activations": lambda m: weight_only(m, 4, group_size=32, head_bits=8,
                                                                               dtype=bf16),
            "int4 g128, bf16 activations": lambda m: weight_only(m, 4, group_size=128, dtype=bf16)}


def standard_ggufs(gguf: str | os.PathLike) -> dict[str, Path]:
    """The GGUF file itself and its Q8_0 / Q4_0 re-quantizations (written once, next to it)."""
    from .requant import REQUANT_TYPES, requantized_gguf

    source = Path(gguf)
    kind = source.stem.rsplit("-", 1)[-1].upper() if "-" in source.stem else source.stem
    return {f"GGUF {kind} (the file)": source} | {f"GGUF {t} (re-quantized)": requantized_gguf(source, t)
                                                for t in REQUANT_TYPES}


def quality_report(model: CausalLM, tokenizer: PreTrainedTokenizerBase, *,
                   variants: Mapping[str, Callable[[Any], Any]] | None = None,
                   ggufs: Mapping[str, str | os.PathLike] | None = None, questions: Sequence[Probe] | None = None,
                   positions: int = 6000, split: str = "report",
                   progress: Callable[[str], None] | None = None) -> QualityReport:
    """Measure every variant against ``model`` (the fp32 reference) on held-out data, in one run.

    Args:
        variants: ``{label: build(model) -> new model}`` PyTorch variants (default: none).
        ggufs: ``{label: path}`` GGUF files run by llama.cpp (default: none).
        questions: the questions (default: the 200 of the ``split`` split).
        positions: next-token positions of held-out text (default 6,000: ≥ 5,000 as the papers use).

    Taught in ``07_quantization.ipynb`` (a small subset runs live; :func:`recorded_quality` is the full run).
    """
    say = progress or (lambda msg: None)
    items = list(heldout_questions(split) if questions is None else questions)
    chunks = heldout_chunks(tokenizer, positions)
    say(f"reference (fp32): {len(items)} questions, {sum(len(c) - 1 for c in chunks)} positions ...")
    ref = reference(model, tokenizer, items, chunks)
    first = QualityRow("fp32", "PyTorch", weight_bytes=model_footprint(model).total_bytes, positions=ref.positions,
                       top1=1.0, kl=0.0, perplexity=math.exp(ref.nll / ref.positions), seconds=ref.seconds)
    _answers_part(first, ref.answers, ref, items)
    rows = [first]
    for label, build in (variants or {}).items():
        say(f"{label} ...")
        try:
            variant = build(model)
            rows.append(measure_pytorch(label, variant, tokenizer, ref, items, fp32=model))
            del variant
        except Exception as err:  # one broken variant must not lose the table
            rows.append(QualityRow(label, "PyTorch", note=f"{type(err).__name__}: {err}"))
    for label, path in (ggufs or {}).items():
        say(f"{label} (llama.cpp) ...")
        from ..engines import LlamaCppModel

        with LlamaCppModel(path, name=label, context=2 * CHUNK, seed=0) as llm:
            rows.append(measure_gguf(label, llm, ref, items, progress=say))
    measured = machine_info(torch.get_num_threads())
    return QualityReport(facts_of(model).name, rows, split if questions is None else "custom", measured=measured)

