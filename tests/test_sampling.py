"""qwenlab.sampling: each from-scratch step equals its transformers processor; sample_loop == model.generate."""

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

from tests.conftest import PROBE
from qwenlab.generation import build_inputs
from qwenlab.sampling import (
    STEP_ORDER,
    MinP,
    RepetitionPenalty,
    Temperature,
    TopK,
    TopP,
    apply_steps,
    distribution_from_logits,
    next_token_distribution,
    plot_distribution,
    sample_loop,
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


# ---- the next-token distribution -----------------------------------------------------------------


def test_distribution_stages_follow_the_steps(tiny):
    model, tok = tiny
    d = next_token_distribution(model, tok, "Tell me a story.", top=8, temperature=0.6, top_k=5, top_p=1.0,
                                min_p=None, repetition_penalty=1.0)
    assert [s.name for s in d.stages] == ["logits", *STEP_ORDER]
    assert len(d.token_ids) == len(d.tokens) == 8
    assert d.stage("top_k").n_kept == 5 and d.final.n_kept == 5
    assert sum(d.stage("top_k").kept) == 5 and d.stage("top_k").kept[:5] == [True] * 5
    assert not d.stage("top_p").active and not d.stage("repetition_penalty").active
    raw, cooled = d.stage("logits").probs, d.stage("temperature").probs
    assert cooled[0] > raw[0], "temperature < 1 makes the most likely token more likely"
    assert sum(d.stage("top_k").probs) == pytest.approx(1.0, abs=1e-5), "top-5 shown: they hold all the mass"


def test_distribution_merges_the_models_generation_config(tiny):
    model, tok = tiny  # the tiny model's generation_config: T=0.6, top_k=20, top_p=0.95
    d = next_token_distribution(model, tok, "hi")
    assert d.params["temperature"] == 0.6 and d.params["top_k"] == 20 and d.params["top_p"] == 0.95
    assert d.stage("top_k").n_kept == 20


def test_new_settings_need_no_second_forward_pass_and_greedy_keeps_one_token(tiny):
    model, tok = tiny
    d = next_token_distribution(model, tok, "hi", top=5)
    hot = distribution_from_logits(tok, d.input_ids, d.logits, top=5, temperature=3.0)
    greedy = distribution_from_logits(tok, d.input_ids, d.logits, top=5, do_sample=False)
    assert hot.token_ids == d.token_ids
    assert hot.final.probs[0] < d.stage("logits").probs[0] * 1.001 or hot.final.probs[0] < 0.5
    assert greedy.final.n_kept == 1 and greedy.final.probs[0] == 1.0 and greedy.final.kept == [True] + [False] * 4


def test_repetition_penalty_lowers_tokens_of_the_prompt(tiny):
    model, tok = tiny
    d = next_token_distribution(model, tok, "hi", top=50, do_sample=False, repetition_penalty=1.0)
    prompt = set(d.input_ids[0].tolist())
    penalized = distribution_from_logits(tok, d.input_ids, d.logits, top=50, do_sample=False, repetition_penalty=3.0)
    stage = penalized.stage("repetition_penalty")
    raw = dict(zip(d.token_ids, d.stage("logits").probs))
    after = dict(zip(penalized.token_ids, stage.probs))
    seen = [t for t in after if t in prompt and t in raw]
    unseen = [t for t in after if t not in prompt and t in raw]
    assert all(after[t] < raw[t] for t in seen) and all(after[t] >= raw[t] for t in unseen)


def test_plot_draws_one_panel_per_stage_with_removed_tokens_grey(tiny):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model, tok = tiny
    d = next_token_distribution(model, tok, "hi", top=6, temperature=1.0, top_k=2, top_p=1.0)
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


# ---- sample_loop == model.generate -----------------------------------------------------------------

SAMPLING_CONFIGS = [
    dict(do_sample=True),  # the model's own generation_config
    dict(do_sample=True, temperature=1.3, top_k=0, top_p=1.0),
    dict(do_sample=True, temperature=0.8, top_k=5, top_p=0.9, min_p=0.05, repetition_penalty=1.2),
    dict(do_sample=True, temperature=1.5, top_k=50, top_p=0.95, min_p=0.1, repetition_penalty=0.95),
    dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, min_p=0.02),
    dict(do_sample=True, temperature=0.5, top_k=10, top_p=0.6, repetition_penalty=1.5),
]
GREEDY_CONFIGS = [dict(do_sample=False), dict(do_sample=False, repetition_penalty=1.3)]


def raw_generate(model, tok, prompt, seed, max_new_tokens, **params):
    """Plain transformers: model.generate on the chat-templated prompt, seeded the usual way."""
    inputs = build_inputs(tok, prompt)
    torch.manual_seed(seed)
    out = model.generate(**inputs, max_new_tokens=max_new_tokens, **params)
    return out[0, inputs["input_ids"].shape[1]:].tolist()


@pytest.mark.parametrize("params", GREEDY_CONFIGS + SAMPLING_CONFIGS, ids=str)
def test_sample_loop_equals_model_generate_on_the_tiny_model(tiny, params):
    model, tok = tiny
    prompt = "Write a long story about a cat."
    seed = len(str(params))  # a different seed for each configuration
    expected = raw_generate(model, tok, prompt, seed, 16, **params)
    got = sample_loop(model, tok, prompt, seed=seed, max_new_tokens=16, **params)
    assert got.token_ids == expected
    assert got.finish_reason == ("stop" if expected[-1] in (151645, 151643) else "length")


def test_sample_loop_refuses_what_it_does_not_implement(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match="no_repeat_ngram_size=2.*use qwenlab.generate"):
        sample_loop(model, tok, "hi", max_new_tokens=2, no_repeat_ngram_size=2)


@pytest.mark.real_model
def test_sample_loop_equals_model_generate_on_the_offline_model(offline):
    model, tok = offline
    greedy = sample_loop(model, tok, PROBE, do_sample=False, max_new_tokens=8)
    assert greedy.token_ids == raw_generate(model, tok, PROBE, 0, 8, do_sample=False)
    assert "Paris" in greedy.text and greedy.finish_reason == "stop"  # stopped at <|im_end|> like generate
    prompt = "Write a short poem about the sea."
    for i, params in enumerate(SAMPLING_CONFIGS[:5]):
        got = sample_loop(model, tok, prompt, seed=i, max_new_tokens=5, **params)
        assert got.token_ids == raw_generate(model, tok, prompt, i, 5, **params), params
