"""qwenlab.sampling: each from-scratch step equals its transformers processor; the stages and their plot.

Pure logits math: no model runs here (``test_sampleloop.py`` runs one).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from transformers import (
    LogitsProcessorList,
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from qwenlab.sampling import (
    STEP_ORDER,
    MinP,
    RepetitionPenalty,
    Temperature,
    TopK,
    TopP,
    apply_steps,
    distribution_from_logits,
    plot_distribution,
    sampling_steps,
)

# ---- each step == the transformers processor, on random logits ------------------------------------

VOCAB = st.integers(min_value=1, max_value=64)


@st.composite
def logits_and_ids(draw):
    batch = draw(st.integers(1, 3))
    vocab = draw(VOCAB)
    scores = draw(arrays(np.float32, (batch, vocab), elements=st.floats(-30, 30, width=32)))
    length = draw(st.integers(1, 12))
    ids = draw(arrays(np.int64, (batch, length), elements=st.integers(0, vocab - 1)))
    return torch.from_numpy(ids), torch.from_numpy(scores)


def same_and_untouched(ours, theirs, input_ids, scores):
    """Both give identical scores (−inf in the same places) and neither edits its inputs."""
    ids_before, scores_before = input_ids.clone(), scores.clone()
    a = ours(input_ids, scores)
    assert torch.equal(scores, scores_before) and torch.equal(input_ids, ids_before), "our step edited its input"
    b = theirs(input_ids, scores)
    assert torch.equal(scores, scores_before), "the transformers processor edited its input"
    assert a.shape == b.shape and a.dtype == b.dtype
    assert torch.equal(a, b), f"max difference {(a - b).abs().max()}"


@settings(max_examples=80, deadline=None)
@given(logits_and_ids(), st.floats(0.05, 5.0))
def test_repetition_penalty_equals_transformers(data, penalty):
    ids, scores = data
    same_and_untouched(RepetitionPenalty(penalty), RepetitionPenaltyLogitsProcessor(penalty), ids, scores)


@settings(max_examples=80, deadline=None)
@given(logits_and_ids(), st.floats(0.01, 10.0))
def test_temperature_equals_transformers(data, temperature):
    ids, scores = data
    same_and_untouched(Temperature(temperature), TemperatureLogitsWarper(temperature), ids, scores)


@settings(max_examples=80, deadline=None)
@given(logits_and_ids(), st.integers(1, 80), st.integers(1, 4))
def test_top_k_equals_transformers(data, top_k, keep):
    ids, scores = data
    same_and_untouched(TopK(top_k, min_tokens_to_keep=keep), TopKLogitsWarper(top_k, min_tokens_to_keep=keep),
                       ids, scores)


@settings(max_examples=100, deadline=None)
@given(logits_and_ids(), st.floats(0.0, 1.0), st.integers(1, 4))
def test_top_p_equals_transformers(data, top_p, keep):
    ids, scores = data
    same_and_untouched(TopP(top_p, min_tokens_to_keep=keep), TopPLogitsWarper(top_p, min_tokens_to_keep=keep),
                       ids, scores)


@settings(max_examples=100, deadline=None)
@given(logits_and_ids(), st.floats(0.0, 1.0), st.integers(1, 4))
def test_min_p_equals_transformers(data, min_p, keep):
    ids, scores = data
    same_and_untouched(MinP(min_p, min_tokens_to_keep=keep), MinPLogitsWarper(min_p, min_tokens_to_keep=keep),
                       ids, scores)


@settings(max_examples=80, deadline=None)
@given(logits_and_ids(), st.floats(0.5, 2.0), st.floats(0.1, 3.0), st.integers(0, 40), st.floats(0.0, 1.0),
       st.floats(0.0, 0.5))
def test_the_whole_chain_equals_transformers_in_its_order(data, penalty, temperature, top_k, top_p, min_p):
    """Later steps see the −inf of earlier ones: the chain, in transformers' order, still agrees."""
    ids, scores = data
    ours = sampling_steps(do_sample=True, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                          repetition_penalty=penalty)
    theirs = LogitsProcessorList([RepetitionPenaltyLogitsProcessor(penalty), TemperatureLogitsWarper(temperature)]
                                 + ([TopKLogitsWarper(top_k)] if top_k else [])
                                 + ([TopPLogitsWarper(top_p)] if top_p < 1 else [])
                                 + [MinPLogitsWarper(min_p)])
    same_and_untouched(lambda i, s: apply_steps(ours, i, s), theirs, ids, scores)


def test_steps_come_in_transformers_order_and_greedy_keeps_only_the_penalty():
    steps = sampling_steps(do_sample=True, temperature=0.7, top_k=20, top_p=0.8, min_p=0.05, repetition_penalty=1.05)
    assert [s.name for s in steps] == list(STEP_ORDER)
    assert [s.name for s in sampling_steps(do_sample=False, temperature=0.0, top_k=20, repetition_penalty=1.1)] == [
        "repetition_penalty"]
    # "off" values add no step, as in generate
    assert sampling_steps(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0) == []


@pytest.mark.parametrize("make, pattern", [
    (lambda: Temperature(0.0), r"temperature must be a number > 0.*do_sample=False"),
    (lambda: Temperature(-1), r"temperature must be a number > 0"),
    (lambda: TopK(0), r"top_k must be an integer >= 1"),
    (lambda: TopK(2.5), r"top_k must be an integer >= 1"),
    (lambda: TopP(1.5), r"top_p must be a number in \[0, 1\]"),
    (lambda: MinP(-0.1), r"min_p must be a number in \[0, 1\]"),
    (lambda: RepetitionPenalty(0), r"repetition_penalty must be a number > 0"),
    (lambda: TopP(0.9, min_tokens_to_keep=0), r"min_tokens_to_keep must be an integer >= 1"),
    (lambda: sampling_steps(do_sample=True, temperature=0.0), r"do_sample=False"),
    (lambda: sampling_steps(do_sample=True, top_p=1.2), r"top_p must be a number in \[0, 1\]"),
])
def test_bad_arguments_name_the_argument_and_its_range(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()


# ---- the stages of a distribution, and their plot (random logits, the real Qwen3 tokenizer) ------------


def _random_logits(seed: int = 0, vocab: int = 2000):
    generator = torch.Generator().manual_seed(seed)
    return torch.tensor([[1, 2, 3]]), torch.randn(1, vocab, generator=generator) * 3


def test_stages_record_each_step_and_greedy_keeps_one_token(qwen3_tok):
    ids, logits = _random_logits()
    d = distribution_from_logits(qwen3_tok, ids, logits, top=8, temperature=0.6, top_k=5)
    assert [s.name for s in d.stages] == ["logits", *STEP_ORDER]
    assert d.stage("top_k").n_kept == 5 and d.final.n_kept == 5 and d.stage("top_k").kept == [True] * 5 + [False] * 3
    assert not d.stage("top_p").active and not d.stage("repetition_penalty").active
    assert d.stage("temperature").probs[0] > d.stage("logits").probs[0], "T < 1 sharpens the distribution"
    assert sum(d.stage("top_k").probs) == pytest.approx(1.0, abs=1e-5), "the top 5 shown hold all the mass"
    greedy = distribution_from_logits(qwen3_tok, ids, logits, top=5, do_sample=False)
    assert greedy.final.n_kept == 1 and greedy.final.probs == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert greedy.token_ids == d.token_ids[:5], "the same tokens shown, in the same order"


def test_repetition_penalty_lowers_the_tokens_already_seen(qwen3_tok):
    _, logits = _random_logits(1)
    best = logits[0].topk(3).indices.tolist()
    seen = torch.tensor([[best[0]]])  # the most likely token already appeared
    d = distribution_from_logits(qwen3_tok, seen, logits, top=3, do_sample=False, repetition_penalty=3.0)
    stage = d.stage("repetition_penalty")
    raw = d.stage("logits")
    assert d.token_ids[0] != best[0], "after the penalty another token ranks first"
    after = dict(zip(d.token_ids, stage.probs))
    before = dict(zip(d.token_ids, raw.probs))
    assert all(after[t] > before[t] for t in d.token_ids if t != best[0])


def test_plot_draws_one_panel_per_stage_with_removed_tokens_grey(qwen3_tok):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ids, logits = _random_logits(2)
    d = distribution_from_logits(qwen3_tok, ids, logits, top=6, temperature=1.0, top_k=2, top_p=1.0)
    fig = plot_distribution(d)
    try:
        assert len(fig.axes) == len(d.stages)
        bars = [b for b in fig.axes[3].patches if b.get_width() > 0]  # the top_k panel
        grey = [b for b in bars if matplotlib.colors.to_hex(b.get_facecolor()) == "#d0d0d0"]
        assert len(bars) == 6 and len(grey) == 4, "2 kept (blue), 4 removed (grey, at their earlier probability)"
        assert {round(b.get_width(), 6) for b in grey} <= {round(p, 6) for p in d.stage("temperature").probs}
        assert "top_k=2" in fig.axes[3].get_title()
    finally:
        plt.close(fig)
