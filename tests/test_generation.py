"""qwenlab.generate / stream: finish_reason and its hint, token counts, effective parameters, streaming."""

from __future__ import annotations

import types

import pytest
from transformers import GenerationConfig

import qwenlab
from qwenlab.generation import build_inputs, effective_params, transformers_fallbacks
from tests.conftest import PROBE

LONG_QUESTION = ("Explain in detail, step by step, how a large language model turns a prompt into an answer: "
                 "tokenization, embeddings, attention, the KV cache, sampling and detokenization.")


def test_result_counts_tokens_and_reports_a_cut_answer(tiny):
    model, tok = tiny
    r = qwenlab.generate(model, tok, "Tell me a story.", max_new_tokens=5, do_sample=False)
    assert r.prompt_tokens == build_inputs(tok, "Tell me a story.")["input_ids"].shape[1]
    assert r.completion_tokens == len(r.token_ids) == 5
    assert r.finish_reason == "length"
    assert "max_new_tokens=5" in r.hint and "回答被截断" in r.hint
    assert r.tokens_per_second > 0 and r.hint in str(r)
    assert r.text == tok.decode(r.token_ids, skip_special_tokens=True)


def test_max_length_still_works_as_a_total_length(tiny):
    model, tok = tiny
    n = build_inputs(tok, "hi")["input_ids"].shape[1]
    r = qwenlab.generate(model, tok, "hi", max_length=n + 3, do_sample=False)
    assert r.completion_tokens == 3


def test_seed_makes_sampling_reproducible(tiny):
    model, tok = tiny
    a = qwenlab.generate(model, tok, "hi", max_new_tokens=8, seed=7, temperature=1.5)
    b = qwenlab.generate(model, tok, "hi", max_new_tokens=8, seed=7, temperature=1.5)
    c = qwenlab.generate(model, tok, "hi", max_new_tokens=8, seed=8, temperature=1.5)
    assert a.token_ids == b.token_ids != c.token_ids


def test_invalid_settings_raise_errors_that_say_what_to_do(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match="do_sample=False"):
        qwenlab.generate(model, tok, "hi", max_new_tokens=2, do_sample=True, temperature=0.0)
    with pytest.raises(ValueError, match=r"top_p must be a number in \[0, 1\]"):
        qwenlab.generate(model, tok, "hi", max_new_tokens=2, top_p=2.0)
    with pytest.raises(TypeError, match="Unknown generation parameter"):
        qwenlab.generate(model, tok, "hi", max_new_tokens=2, temprature=0.5)
    # greedy ignores temperature, so 0 is fine there
    assert qwenlab.generate(model, tok, "hi", max_new_tokens=2, do_sample=False, temperature=0.0).completion_tokens


def test_effective_params_layer_yours_over_the_models_over_transformers_fallbacks(tiny):
    model, _ = tiny  # its generation_config: do_sample, T=0.6, top_k=20, top_p=0.95
    p = effective_params(model)
    assert (p["do_sample"], p["temperature"], p["top_k"], p["top_p"]) == (True, 0.6, 20, 0.95)
    assert p["repetition_penalty"] == 1.0 and p["max_new_tokens"] == 256  # fallback / qwenlab default
    assert effective_params(model, top_k=3, max_new_tokens=9)["top_k"] == 3
    greedy = effective_params(model, do_sample=False)
    assert greedy["temperature"] is greedy["top_k"] is greedy["top_p"] is None


def test_transformers_fallbacks_apply_when_the_model_sets_nothing(tiny):
    fallbacks = transformers_fallbacks()
    assert fallbacks["max_length"] == 20 and fallbacks["top_k"] == 50 and fallbacks["do_sample"] is False
    bare = types.SimpleNamespace(generation_config=GenerationConfig())  # a model whose config sets nothing
    p = effective_params(bare, do_sample=True)
    assert (p["temperature"], p["top_k"], p["top_p"]) == (1.0, 50, 1.0)


def test_raw_generate_without_any_length_makes_20_new_tokens(tiny):
    """The generic max_length=20 is read as 20 *new* tokens in transformers 5 (with a warning)."""
    model, tok = tiny
    inputs = build_inputs(tok, "Tell me a story.")
    with pytest.warns(UserWarning, match="max_length"):
        out = model.generate(**inputs, do_sample=False)
    new = out[0, inputs["input_ids"].shape[1]:].tolist()
    assert len(new) == 20 or new[-1] in (151645, 151643)


def test_stream_yields_the_same_text_as_the_result_in_pieces(tiny):
    model, tok = tiny
    s = qwenlab.stream(model, tok, "写一首关于春天的短诗", max_new_tokens=12, seed=3, temperature=1.2)
    pieces = list(s)
    assert "".join(pieces) == s.result.text == s.text
    assert len(pieces) > 1 and all(p for p in pieces)
    assert not any("\ufffd" in p for p in pieces) or "\ufffd" in s.result.text
    assert s.result.token_ids == qwenlab.generate(model, tok, "写一首关于春天的短诗", max_new_tokens=12, seed=3,
                                                  temperature=1.2).token_ids


def test_stream_stop_ends_early(tiny):
    model, tok = tiny
    s = qwenlab.stream(model, tok, "hi", max_new_tokens=200, do_sample=False)
    for i, _ in enumerate(s):
        if i == 2:
            s.stop()
    assert s.result.finish_reason == "stopped" and s.result.completion_tokens < 200


@pytest.mark.real_model
def test_offline_model_reports_what_its_generation_config_sets_silently(offline):
    model, _ = offline
    p = effective_params(model)
    assert p["do_sample"] is True and p["temperature"] == 0.7
    assert (p["top_k"], p["top_p"], p["repetition_penalty"]) == (20, 0.8, 1.05)


@pytest.mark.real_model
def test_offline_model_long_question_is_cut_and_says_so(offline):
    model, tok = offline
    r = qwenlab.generate(model, tok, LONG_QUESTION, max_new_tokens=5)
    assert r.finish_reason == "length" and r.completion_tokens == 5
    assert "max_new_tokens=5" in r.hint and "Raise max_new_tokens" in r.hint
    short = qwenlab.generate(model, tok, PROBE, max_new_tokens=16, do_sample=False)
    assert short.finish_reason == "stop" and short.hint is None and "Paris" in short.text


def test_parameter_table_shows_fallback_model_value_and_what_is_used(tiny):
    model, _ = tiny
    rows = {r[0]: r[1:] for r in qwenlab.parameter_sources(model, top_k=5).rows}
    assert rows["top_k"] == (50, 20, 5)  # fallback, the model's generation_config, yours
    assert rows["temperature"] == (1.0, 0.6, 0.6)
    assert rows["max_new_tokens / max_length"][0].startswith("max_length=20")
    greedy = {r[0]: r[1:] for r in qwenlab.parameter_sources(model, do_sample=False).rows}
    assert greedy["top_p"][2] == "(ignored: greedy)" and greedy["do_sample"][2] is False
    assert "qwenlab.generate uses" in str(qwenlab.parameter_sources(model))
