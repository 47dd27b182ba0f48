"""SamplingLab driven headless: set widget values / click buttons and check what the panel shows."""

from __future__ import annotations

import pytest

from qwenlab.widgets import SamplingLab


@pytest.fixture
def lab(tiny):
    model, tok = tiny
    return SamplingLab(model, tok, prompt="Tell me a story.", max_new_tokens=6, draw=False)


def test_starts_from_the_models_effective_settings(lab):
    # the tiny model's generation_config: do_sample, T=0.6, top_k=20, top_p=0.95
    assert (lab.do_sample.value, lab.temperature.value, lab.top_k.value, lab.top_p.value) == (True, 0.6, 20, 0.95)
    assert lab.last is not None and lab.last.final.n_kept <= 20 and lab.forward_passes == 1


def test_moving_a_slider_recomputes_the_distribution_without_running_the_model_again(lab):
    before = lab.last
    lab.top_k.value = 3
    assert lab.last is not before and lab.last.stage("top_k").n_kept == 3 and lab.last.final.n_kept <= 3
    lab.temperature.value = 1.8
    assert lab.last.stage("temperature").label == "temperature=1.8"
    assert lab.forward_passes == 1, "sliders only re-apply the steps to the cached logits"
    lab.prompt.value = "Another prompt"
    assert lab.forward_passes == 2


def test_greedy_keeps_one_token_and_disables_the_sampling_sliders(lab):
    lab.do_sample.value = False
    assert lab.last.final.n_kept == 1 and lab.temperature.disabled and lab.top_p.disabled
    lab.temperature.value = 0.0  # ignored by greedy: no complaint
    assert "⚠️" not in lab.message.value


def test_invalid_combination_shows_a_message_not_a_traceback(lab):
    good = lab.last
    lab.temperature.value = 0.0
    assert "do_sample=False" in lab.message.value and lab.last is good
    assert lab.on_generate() is None and "do_sample=False" in lab.message.value and lab.output.value == ""
    assert lab.on_generate_many() is None
    lab.temperature.value = 0.7
    assert "⚠️" not in lab.message.value
    lab.prompt.value = "   "
    assert "prompt" in lab.message.value


def test_generate_button_fills_the_output(lab):
    lab.generate_button.click()
    r = lab.last_result
    assert r is not None and r.completion_tokens <= 6
    assert "finish_reason=" in lab.output.value and "tokens" in lab.output.value
    if r.finish_reason == "length":
        assert "max_new_tokens=6" in lab.output.value


def test_generate_x5_counts_distinct_answers(lab):
    lab.do_sample.value = False
    lab.generate5_button.click()
    assert lab.distinct == 1 and len(lab.last_batch) == 5 and "1 distinct answer(s) of 5" in lab.diversity.value
    lab.do_sample.value = True
    lab.temperature.value, lab.top_k.value, lab.top_p.value = 2.0, 0, 1.0
    lab.generate5_button.click()
    assert lab.distinct > 1  # near-uniform over 150k tokens: five seeds give different answers


def test_draws_the_chart_and_redraws_it_when_a_slider_moves(tiny):
    import matplotlib

    matplotlib.use("Agg")
    model, tok = tiny
    lab = SamplingLab(model, tok, draw=True)
    first = bytes(lab.chart.value)
    assert first.startswith(b"\x89PNG\r\n\x1a\n"), "the panel shows a PNG of the stage charts"
    lab.top_k.value = 2
    assert lab.last.final.n_kept <= 2
    redrawn = bytes(lab.chart.value)
    assert redrawn.startswith(b"\x89PNG") and redrawn != first, "moving a slider redraws"
    lab.temperature.value = 0.0  # invalid while sampling: a message, and the last good chart stays
    assert "⚠️" in lab.message.value and bytes(lab.chart.value) == redrawn
