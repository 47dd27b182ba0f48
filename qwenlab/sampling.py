"""Sampling from scratch: repetition penalty, temperature, top-k, top-p and min-p as small steps.

Every step has the call shape of a transformers ``LogitsProcessor`` — ``step(input_ids, scores) ->
new_scores`` — never edits its input, and gives the same numbers as the transformers class of the same
job (``tests/test_sampling.py`` proves it on random logits). Applied in transformers' order
(repetition penalty → temperature → top-k → top-p → min-p) they are the whole of "sampling".

- :func:`sampling_steps` turns parameters into that list of steps;
- :func:`distribution_from_logits` records the top tokens' probabilities before and after each step;
  :func:`plot_distribution` draws the stages side by side.

This module is pure math on logits: it never runs a model. ``qwenlab.sampleloop`` runs one —
``next_token_distribution`` (one forward pass, then these steps) and ``sample_loop`` (generation as a
plain for-loop with these steps, the same tokens as ``model.generate``).

Taught in ``04_generate.ipynb``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .display import cjk_fonts, pick

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "SamplingStep",
    "RepetitionPenalty",
    "Temperature",
    "TopK",
    "TopP",
    "MinP",
    "STEP_ORDER",
    "sampling_steps",
    "apply_steps",
    "Stage",
    "NextTokenDistribution",
    "distribution_from_logits",
    "plot_distribution",
]

# transformers' order (GenerationMixin._get_logits_processor): the penalty always, the rest only when sampling
STEP_ORDER = ("repetition_penalty", "temperature", "top_k", "top_p", "min_p")

NEG_INF = -math.inf


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_min_tokens_to_keep(min_tokens_to_keep: Any) -> int:
    if not isinstance(min_tokens_to_keep, int) or isinstance(min_tokens_to_keep, bool) or min_tokens_to_keep < 1:
        raise ValueError(f"min_tokens_to_keep must be an integer >= 1, got {min_tokens_to_keep!r}.")
    return min_tokens_to_keep


class SamplingStep:
    """One step of sampling: ``step(input_ids, scores) -> new scores`` (a new tensor; the input is untouched).

    ``input_ids`` is the ``(batch, length)`` tensor of tokens so far (prompt + generated), ``scores`` the
    ``(batch, vocab)`` logits for the next token. Removed tokens get the score ``-inf`` (probability 0).
    """

    name: str = ""

    def __call__(self, input_ids: Any, scores: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def value(self) -> float | int:
        return getattr(self, self.name)

    @property
    def label(self) -> str:
        return f"{self.name}={self.value:g}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name}={self.value!r})"


class RepetitionPenalty(SamplingStep):
    """Make tokens that already appeared (prompt included) less likely: divide a positive score by
    ``repetition_penalty``, multiply a negative one (so both move down). Applied once per token, however
    often it appeared. Same as transformers' ``RepetitionPenaltyLogitsProcessor``.

    Args:
        repetition_penalty (float): > 0. 1.0 = no change; > 1 discourages repeats (Qwen2.5 uses 1.05);
            < 1 encourages them.

    Example:
        >>> import torch
        >>> RepetitionPenalty(2.0)(torch.tensor([[0]]), torch.tensor([[4.0, -1.0, 1.0]]))
        tensor([[ 2., -1.,  1.]])
    """

    name = "repetition_penalty"

    def __init__(self, repetition_penalty: float):
        if not _is_number(repetition_penalty) or not repetition_penalty > 0:
            raise ValueError(
                f"repetition_penalty must be a number > 0 (1.0 = off, >1 discourages repeats), got {repetition_penalty!r}."
            )
        self.repetition_penalty = float(repetition_penalty)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        seen = torch.zeros_like(scores, dtype=torch.bool)
        seen[torch.arange(scores.shape[0]).unsqueeze(1), input_ids] = True  # every token that appeared
        penalized = torch.where(scores < 0, scores * self.repetition_penalty, scores / self.repetition_penalty)
        return torch.where(seen, penalized, scores)


class Temperature(SamplingStep):
    """Divide the logits by ``temperature``: < 1 sharpens the distribution, > 1 flattens it.
    Same as transformers' ``TemperatureLogitsWarper``.

    Args:
        temperature (float): > 0. For "always the most likely token" use ``do_sample=False`` (greedy).

    Example:
        >>> import torch
        >>> Temperature(0.5)(None, torch.tensor([[1.0, 2.0]]))
        tensor([[2., 4.]])
    """

    name = "temperature"

    def __init__(self, temperature: float):
        if not _is_number(temperature) or not temperature > 0:
            hint = " For greedy decoding (always the most likely token) set do_sample=False instead." \
                if _is_number(temperature) and temperature == 0 else ""
            raise ValueError(f"temperature must be a number > 0 when sampling, got {temperature!r}.{hint}")
        self.temperature = float(temperature)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        return scores / self.temperature


class TopK(SamplingStep):
    """Keep only the ``top_k`` highest-scoring tokens (ties with the k-th are kept too).
    Same as transformers' ``TopKLogitsWarper``.

    Args:
        top_k (int): >= 1 (in ``generate``, 0 or None means "off").
        min_tokens_to_keep (int): default 1.

    Example:
        >>> import torch
        >>> TopK(2)(None, torch.tensor([[1.0, 3.0, 2.0]]))
        tensor([[-inf, 3., 2.]])
    """

    name = "top_k"

    def __init__(self, top_k: int, min_tokens_to_keep: int = 1):
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
            raise ValueError(f"top_k must be an integer >= 1 (0 or None turns it off in generate), got {top_k!r}.")
        self.top_k = top_k
        self.min_tokens_to_keep = _check_min_tokens_to_keep(min_tokens_to_keep)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        k = min(max(self.top_k, self.min_tokens_to_keep), scores.shape[-1])
        kth_best = torch.topk(scores, k).values[..., -1:]  # the k-th highest score of each row
        return scores.masked_fill(scores < kth_best, NEG_INF)


class TopP(SamplingStep):
    """Nucleus sampling: keep the most likely tokens whose probabilities add up to ``top_p``.

    Written as transformers does it: sort from least to most likely and drop the low tail while its total
    probability is still <= ``1 - top_p``. Same as transformers' ``TopPLogitsWarper``.

    Args:
        top_p (float): in [0, 1]. 1.0 = off; 0.8 keeps the smallest set of tokens holding >= 80 %.
        min_tokens_to_keep (int): default 1.

    Example:
        >>> import torch
        >>> TopP(0.5)(None, torch.tensor([[0.0, 2.0, 1.0]]))
        tensor([[-inf, 2., -inf]])
    """

    name = "top_p"

    def __init__(self, top_p: float, min_tokens_to_keep: int = 1):
        if not _is_number(top_p) or not 0 <= top_p <= 1:
            raise ValueError(f"top_p must be a number in [0, 1] (1.0 = off), got {top_p!r}.")
        self.top_p = float(top_p)
        self.min_tokens_to_keep = _check_min_tokens_to_keep(min_tokens_to_keep)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        ascending, order = torch.sort(scores, descending=False)
        tail_mass = ascending.softmax(dim=-1).cumsum(dim=-1)  # probability of this token and all less likely ones
        drop_sorted = tail_mass <= (1 - self.top_p)
        drop_sorted[..., -self.min_tokens_to_keep:] = False  # never drop the most likely tokens
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)  # back to vocabulary order
        return scores.masked_fill(drop, NEG_INF)


class MinP(SamplingStep):
    """Keep tokens whose probability is at least ``min_p`` times the top token's probability.
    Same as transformers' ``MinPLogitsWarper``.

    Args:
        min_p (float): in [0, 1]. 0 = off; 0.05–0.1 are typical.
        min_tokens_to_keep (int): default 1.

    Example:
        >>> import torch
        >>> MinP(0.5)(None, torch.tensor([[0.0, 2.0, 1.7]]))
        tensor([[  -inf, 2.0000, 1.7000]])
    """

    name = "min_p"

    def __init__(self, min_p: float, min_tokens_to_keep: int = 1):
        if not _is_number(min_p) or not 0 <= min_p <= 1:
            raise ValueError(f"min_p must be a number in [0, 1] (0 = off), got {min_p!r}.")
        self.min_p = float(min_p)
        self.min_tokens_to_keep = _check_min_tokens_to_keep(min_tokens_to_keep)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        probs = scores.softmax(dim=-1)
        threshold = self.min_p * probs.amax(dim=-1, keepdim=True)
        drop = probs < threshold
        k = min(self.min_tokens_to_keep, probs.shape[-1])
        drop = drop.scatter(-1, torch.topk(probs, k).indices, False)  # always keep the best k
        return scores.masked_fill(drop, NEG_INF)


def sampling_steps(
    do_sample: bool = True,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    repetition_penalty: float | None = None,
) -> list[SamplingStep]:
    """The steps ``model.generate`` applies for these parameters, in its order, each checked.

    Mirrors transformers' rules: the repetition penalty applies unless None or 1.0; the others only
    when ``do_sample`` — temperature unless 1.0, top-k unless 0, top-p unless 1.0, min-p when set.
    Values that greedy decoding ignores are not checked.

    Example:
        >>> sampling_steps(temperature=0.7, top_k=20, top_p=0.8, repetition_penalty=1.05)
        [RepetitionPenalty(repetition_penalty=1.05), Temperature(temperature=0.7), TopK(top_k=20), TopP(top_p=0.8)]

    Taught in ``04_generate.ipynb``.
    """
    steps: list[SamplingStep] = []
    if repetition_penalty is not None and repetition_penalty != 1.0:
        steps.append(RepetitionPenalty(repetition_penalty))
    if not do_sample:
        return steps
    if temperature is not None and temperature != 1.0:
        steps.append(Temperature(temperature))
    if top_k is not None and top_k != 0:
        steps.append(TopK(top_k))
    if top_p is not None and top_p != 1.0:
        steps.append(TopP(top_p))
    if min_p is not None:
        steps.append(MinP(min_p))
    return steps


def apply_steps(steps: Sequence[SamplingStep], input_ids: Any, scores: Any) -> Any:
    """Apply the steps in order: ``scores = step(input_ids, scores)`` for each."""
    for step in steps:
        scores = step(input_ids, scores)
    return scores


# ---- the next-token distribution, stage by stage --------------------------------------------------


@dataclass
class Stage:
    """The shown tokens' probabilities after one step.

    Attributes:
        name: ``"logits"`` (the model's raw distribution) or a step name from :data:`STEP_ORDER`.
        label: e.g. ``"top_k=20"``, ``"top_p (off)"``.
        active: False when the step is off for these parameters (its probabilities equal the previous stage).
        probs: probability of each shown token (same order as ``NextTokenDistribution.token_ids``).
        kept: whether each shown token can still be chosen.
        n_kept: how many tokens of the whole vocabulary can still be chosen.
    """

    name: str
    label: str
    active: bool
    probs: list[float]
    kept: list[bool]
    n_kept: int


@dataclass
class NextTokenDistribution:
    """The next-token distribution for one prompt, before and after each sampling step.

    ``input_ids`` and ``logits`` (the raw model output) are kept so that other parameters can be tried
    without running the model again: ``distribution_from_logits(tokenizer, d.input_ids, d.logits, ...)``.
    """

    token_ids: list[int]
    tokens: list[str]
    stages: list[Stage]
    params: dict
    input_ids: Any = field(repr=False, default=None)
    logits: Any = field(repr=False, default=None)

    @property
    def final(self) -> Stage:
        """The last stage: what sampling really draws from (greedy: the most likely token)."""
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        return pick(self.stages, "name", name, "stage")

    def table(self) -> list[dict]:
        """One row per shown token: its text and its probability at each stage (0 where removed)."""
        return [
            {"token": tok, **{s.name: s.probs[i] for s in self.stages}}
            for i, tok in enumerate(self.tokens)
        ]


def _token_label(tokenizer: PreTrainedTokenizerBase, token_id: int) -> str:
    text = str(tokenizer.decode([token_id]))
    if text.strip() == "" or text != text.strip():
        text = text.replace(" ", "␣").replace("\n", "\\n").replace("\t", "\\t")
    return text if "\ufffd" not in text else f"<{token_id}>"


def distribution_from_logits(
    tokenizer: PreTrainedTokenizerBase,
    input_ids: Any,
    logits: Any,
    top: int = 10,
    do_sample: bool = True,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    repetition_penalty: float | None = None,
) -> NextTokenDistribution:
    """Apply the steps to already computed logits, recording each stage (no model call).

    Parameters are taken as given (None = off); ``qwenlab.next_token_distribution`` merges the model's
    generation_config first. Raises ``ValueError`` for invalid values, like :func:`sampling_steps`.
    """
    import torch

    params = dict(do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                  repetition_penalty=repetition_penalty)
    steps = sampling_steps(do_sample, temperature, top_k, top_p, min_p, repetition_penalty)
    active = {step.name: step for step in steps}
    if not isinstance(top, int) or top < 1:
        raise ValueError(f"top must be an integer >= 1 (how many tokens to show), got {top!r}.")
    scores = logits.reshape(1, -1).float()
    ids = input_ids.reshape(1, -1)
    raw = scores
    history = [("logits", "logits (raw)", True, scores)]
    for name in STEP_ORDER:
        step = active.get(name)
        if step is not None:
            scores = step(ids, scores)
            history.append((name, step.label, True, scores))
        else:
            off = "greedy: ignored" if (not do_sample and name != "repetition_penalty") else "off"
            history.append((name, f"{name} ({off})", False, scores))
    # show the tokens that rank highest once the penalty has been applied (later steps keep the order)
    ranking = history[1][3] if "repetition_penalty" in active else raw
    shown = torch.topk(ranking[0], min(top, ranking.shape[-1])).indices
    stages = []
    for name, label, is_active, s in history:
        probs = s[0].softmax(-1)
        finite = torch.isfinite(s[0])
        stages.append(Stage(name=name, label=label, active=is_active, probs=probs[shown].tolist(),
                            kept=finite[shown].tolist(), n_kept=int(finite.sum())))
    if not do_sample:  # greedy keeps exactly one token: the most likely after the penalty
        best = int(scores[0].argmax())
        last = stages[-1]
        stages[-1] = Stage(name=last.name, label="greedy (argmax)", active=True,
                           probs=[1.0 if int(t) == best else 0.0 for t in shown],
                           kept=[int(t) == best for t in shown], n_kept=1)
    shown_ids = [int(t) for t in shown]
    return NextTokenDistribution(
        token_ids=shown_ids,
        tokens=[_token_label(tokenizer, t) for t in shown_ids],
        stages=stages,
        params=params,
        input_ids=ids,
        logits=raw,
    )


_KEPT, _REMOVED = "#4878cf", "#d0d0d0"


def _font_family() -> list[str]:
    """DejaVu Sans plus the first installed CJK font, so Chinese tokens are drawn (not empty boxes)."""
    return ["DejaVu Sans"] + cjk_fonts()[:1]


def _drawable_labels(dist: NextTokenDistribution, family: list[str]) -> list[str]:
    """Token texts, or ``id 1234`` for those no installed font can draw (no CJK font: no empty boxes)."""
    from matplotlib import font_manager

    fonts = [font_manager.get_font(font_manager.findfont(name)) for name in family]
    labels = []
    for token_id, text in zip(dist.token_ids, dist.tokens):
        ok = all(any(f.get_char_index(ord(ch)) for f in fonts) for ch in text)
        labels.append(text if ok else f"id {token_id}")
    return labels


def plot_distribution(dist: NextTokenDistribution, axes: Any = None, show_off: bool = True) -> Any:
    """Bar charts of the shown tokens' probabilities, one panel per stage, removed tokens greyed out.

    A removed token keeps a grey bar at the probability it had before it was removed, so you see what
    each step cut; the blue bars are what can still be chosen (renormalized).

    Args:
        dist: from ``qwenlab.next_token_distribution`` or :func:`distribution_from_logits`.
        axes: a sequence of matplotlib axes, one per stage (default: a new figure).
        show_off: also draw stages that are off (their bars equal the previous panel).

    Returns the matplotlib Figure.

    Taught in ``04_generate.ipynb``.
    """
    import matplotlib.pyplot as plt

    stages = [s for s in dist.stages if show_off or s.active or s.name == "logits"]
    if axes is None:
        fig, axes = plt.subplots(1, len(stages), figsize=(2.3 * len(stages) + 1, 0.32 * len(dist.tokens) + 1.4),
                                 sharey=True, squeeze=False)
        axes = axes[0]
    else:
        fig = axes[0].figure
    top = max(max(s.probs) for s in stages) or 1.0
    y = list(range(len(dist.tokens)))
    before = list(stages[0].probs)  # each token's probability when it was last kept
    for ax, stage in zip(axes, stages):
        ax.barh(y, [0.0 if keep else b for b, keep in zip(before, stage.kept)], color=_REMOVED)
        ax.barh(y, [p if keep else 0.0 for p, keep in zip(stage.probs, stage.kept)], color=_KEPT)
        before = [p if keep else b for p, b, keep in zip(stage.probs, before, stage.kept)]
        ax.set_xlim(0, top * 1.15)
        ax.set_title(f"{stage.label}\n{stage.n_kept:,} kept", fontsize=9,
                     color="black" if stage.active else "#909090")
        ax.tick_params(labelsize=8)
        for i, (p, keep) in enumerate(zip(stage.probs, stage.kept)):
            if keep and p >= 0.005:
                ax.text(p, i, f" {p:.2f}", va="center", fontsize=7)
    axes[0].set_yticks(y)
    family = _font_family()
    labels = _drawable_labels(dist, family)
    axes[0].set_yticklabels(labels, fontfamily=family)
    axes[0].invert_yaxis()
    note = "probability (blue = can be chosen, grey = removed)"
    if labels != dist.tokens:
        note += "\n'id N': no Chinese (CJK) font installed to draw that token; its text is in dist.tokens"
    fig.supxlabel(note, fontsize=9)
    fig.tight_layout()
    return fig
