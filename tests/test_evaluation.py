"""qwenlab.evaluation: the probe set, answer checks and perplexity (shipped data, tiny model)."""

from __future__ import annotations

import math

import pytest

from qwenlab import evaluation


def test_probe_set_is_bilingual_with_expected_answers():
    items = evaluation.probes()
    assert len(items) >= 10
    assert {p.lang for p in items} == {"zh", "en"} and len(evaluation.probes("zh")) >= 5
    assert all(p.expected and p.question for p in items)
    text = evaluation.perplexity_text()
    assert "水循环" in text and "water cycle" in text
    assert evaluation.calibration_text().strip() and evaluation.calibration_text() not in text


def test_perplexity_text_rejects_an_unknown_language():
    with pytest.raises(ValueError, match="'en', 'zh' or 'both'"):
        evaluation.perplexity_text("fr")


def test_answer_checks_ignore_case_and_final_stop():
    paris = evaluation.probes()[0]
    assert evaluation.is_correct("Paris.", paris) and not evaluation.is_correct("Lyon", paris)
    assert evaluation.same_answer("Paris.", "paris") and not evaluation.same_answer("Paris", "Paris is the capital")


def test_probe_answers_are_greedy_so_the_same_model_answers_the_same(tiny, one_thread):
    model, tokenizer = tiny
    items = evaluation.probes()[:2]
    first = evaluation.probe_answers(model, tokenizer, items, max_new_tokens=3)
    assert len(first) == 2 and first == evaluation.probe_answers(model, tokenizer, items, max_new_tokens=3)


def test_perplexity_of_a_random_model_is_near_its_vocabulary_size(tiny):
    model, tokenizer = tiny
    ppl = evaluation.perplexity(model, tokenizer, max_tokens=64)
    assert 1 < ppl and math.log(ppl) == pytest.approx(math.log(model.config.vocab_size), rel=0.2)
    with pytest.raises(ValueError, match="fewer than 2 tokens"):
        evaluation.perplexity(model, tokenizer, "a", max_tokens=1)
