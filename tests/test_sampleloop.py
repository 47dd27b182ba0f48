"""qwenlab.sampleloop: the next-token distribution of a prompt, and sample_loop == model.generate."""

from __future__ import annotations

import pytest
import torch

import qwenlab
from qwenlab.generation import build_inputs
from qwenlab.sampleloop import next_token_distribution, sample_loop
from qwenlab.sampling import STEP_ORDER, distribution_from_logits
from tests.conftest import PROBE

# ---- the next-token distribution of a prompt ------------------------------------------------------


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
    with pytest.raises(TypeError, match="Unknown sampling parameter.*temprature"):
        next_token_distribution(model, tok, "hi", temprature=0.5)


def test_new_settings_need_no_second_forward_pass_and_greedy_keeps_one_token(tiny):
    model, tok = tiny
    d = next_token_distribution(model, tok, "hi", top=5)
    hot = distribution_from_logits(tok, d.input_ids, d.logits, top=5, temperature=3.0)
    greedy = distribution_from_logits(tok, d.input_ids, d.logits, top=5, do_sample=False)
    assert hot.token_ids == d.token_ids
    assert hot.final.probs[0] < d.stage("logits").probs[0], "temperature 3 flattens the distribution"
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
    reference = qwenlab.generate(model, tok, prompt, seed=seed, max_new_tokens=16, **params)
    assert (got.text, got.finish_reason, got.hint, got.params) == (reference.text, reference.finish_reason,
                                                                   reference.hint, reference.params)


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
