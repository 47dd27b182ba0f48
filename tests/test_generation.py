"""qwenlab.generate / stream: finish_reason and its hint, token counts, effective parameters, streaming."""

from __future__ import annotations

import types
from html.parser import HTMLParser

import pytest
import torch
from transformers import GenerationConfig

import qwenlab
from qwenlab.generation import (
    ContextTooLongError,
    PieceStreamer,
    build_inputs,
    effective_params,
    transformers_fallbacks,
)
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
    assert list(s) == [] and s.finish() is s.result, "once read, the stream is over"
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
    unread = qwenlab.stream(model, tok, "hi", max_new_tokens=5, do_sample=False)
    assert unread.finish().completion_tokens == 5 and unread.text == unread.result.text


class _Collect(PieceStreamer):
    """A streamer that keeps its pieces: the extension point other code uses instead of a private class."""

    def __init__(self, tokenizer):
        super().__init__(tokenizer)
        self.pieces: list[str] = []
        self.ended = 0

    def on_text(self, piece: str) -> None:
        self.pieces.append(piece)

    def on_end(self) -> None:
        self.ended += 1


def test_piece_streamer_plugs_into_model_generate_and_hands_on_whole_characters(tiny):
    model, tok = tiny
    inputs = build_inputs(tok, "写一首关于春天的短诗")
    streamer = _Collect(tok)
    torch.manual_seed(3)
    out = model.generate(**inputs, max_new_tokens=12, do_sample=True, temperature=1.2, streamer=streamer)
    new_ids = out[0, inputs["input_ids"].shape[1]:].tolist()
    assert streamer.ids == new_ids, "the prompt is skipped, every new token is seen"
    assert "".join(streamer.pieces) == streamer.text == tok.decode(new_ids, skip_special_tokens=True)
    assert streamer.ended == 1 and all(streamer.pieces)

    by_hand = PieceStreamer(tok)  # fed token ids directly: no tensors needed
    halves = tok.encode("囧")
    assert len(halves) == 2 and [by_hand.add([i]) for i in halves] == ["", "囧"]
    assert by_hand.flush() == "" and by_hand.text == "囧"
    cut = PieceStreamer(tok)
    assert cut.add(halves[:1]) == "" and cut.flush() == "\ufffd", "at the end, half a character is shown as is"


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
    table = qwenlab.parameter_sources(model, top_k=5)
    lines = str(table).splitlines()
    assert lines[0].split("  ")[0] == "parameter" and "qwenlab.generate uses" in lines[0]
    assert any(line.split() == ["top_k", "50", "20", "5"] for line in lines)
    cells = _cells(table._repr_html_())
    assert ["top_k", "50", "20", "5"] in cells and cells[0][-1] == "qwenlab.generate uses"


def _cells(markup: str) -> list[list[str]]:
    """The text of each table row's cells."""
    rows: list[list[str]] = []

    class Rows(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag == "tr":
                rows.append([])
            elif tag in ("td", "th"):
                rows[-1].append("")

        def handle_data(self, data):
            if rows and rows[-1]:
                rows[-1][-1] += data

    Rows().feed(markup)
    return rows


# ---- stopping, refusing: nothing runs behind the student's back, nothing wrong is accepted silently ----


def _stream_threads() -> list:
    import threading

    return [t for t in threading.enumerate() if t.name == "qwenlab.stream" and t.is_alive()]


def test_break_out_of_a_stream_stops_generation_and_joins_its_thread(tiny, one_thread):
    model, tok = tiny
    s = qwenlab.stream(model, tok, "tell me a long story", max_new_tokens=3000, do_sample=False)
    for _ in s:
        break
    assert not s.running and _stream_threads() == []
    result = s.finish()  # the pieces made before it stopped are still there
    assert result.finish_reason == "stopped" and 0 < result.completion_tokens < 3000
    with qwenlab.stream(model, tok, "again", max_new_tokens=3000, do_sample=False) as s2:
        next(iter(s2))
    assert not s2.running and s2.result.finish_reason == "stopped"


BREAK_AND_EXIT = """
import sys
import qwenlab
model, tok = qwenlab.load_model(sys.argv[1], device="cpu", dtype="float32")
for piece in qwenlab.stream(model, tok, "tell me a long story", max_new_tokens=3000, do_sample=False):
    break
never_read = qwenlab.stream(model, tok, "and another", max_new_tokens=3000, do_sample=False)
print("exiting", flush=True)
"""


def test_interpreter_exits_cleanly_after_a_break_and_with_an_unread_stream(tiny_dir, tmp_path):
    """Before the fix a generation thread still running at exit made torch abort the interpreter (rc 134)."""
    import os
    import subprocess
    import sys

    script = tmp_path / "break_and_exit.py"
    script.write_text(BREAK_AND_EXIT, encoding="utf-8")
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    done = subprocess.run([sys.executable, str(script), str(tiny_dir)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "exiting" in done.stdout and "terminate called" not in done.stderr


def test_a_prompt_longer_than_the_context_is_refused_before_any_compute(tiny, monkeypatch):
    model, tok = tiny
    prompt = "上下文 " * 3000
    n = build_inputs(tok, prompt)["input_ids"].shape[1]
    assert n > model.config.max_position_embeddings == 4096

    def no_compute(*args, **kwargs):
        raise AssertionError("model.generate must not run for a prompt that cannot fit")

    monkeypatch.setattr(model, "generate", no_compute)
    with pytest.raises(ContextTooLongError) as caught:
        qwenlab.generate(model, tok, prompt, max_new_tokens=4)
    assert (caught.value.prompt_tokens, caught.value.limit) == (n, 4096)
    assert f"{n:,} tokens" in str(caught.value) and "4,096" in str(caught.value)
    with pytest.raises(ContextTooLongError):
        qwenlab.stream(model, tok, prompt, max_new_tokens=4)  # refused at the call, no thread started
    assert _stream_threads() == []


@pytest.mark.parametrize(("params", "error", "match"), [
    ({"max_new_tokens": 1.5}, ValueError, r"max_new_tokens must be a whole number >= 1, got 1\.5"),
    ({"max_new_tokens": "64"}, ValueError, "max_new_tokens must be a whole number"),
    ({"max_new_tokens": 0}, ValueError, "max_new_tokens must be a whole number >= 1"),
    ({"do_sample": "yes"}, ValueError, "do_sample must be True or False"),
    ({"num_return_sequences": 3}, ValueError, "num_return_sequences=3: .* one answer per call"),
])
def test_parameters_of_the_wrong_kind_are_refused_by_name(tiny, params, error, match):
    model, tok = tiny
    with pytest.raises(error, match=match):
        qwenlab.generate(model, tok, "hi", **params)
    with pytest.raises(error, match=match):
        qwenlab.stream(model, tok, "hi", **params)


def test_stream_refuses_beam_search_that_generate_can_do(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match="num_beams=2: beam search cannot stream"):
        qwenlab.stream(model, tok, "hi", num_beams=2, max_new_tokens=2)
    assert qwenlab.generate(model, tok, "hi", num_beams=2, do_sample=False, max_new_tokens=2).completion_tokens


@pytest.mark.parametrize(("messages", "error", "match"), [
    ([{"role": "robot", "content": "hi"}], ValueError, "role 'robot'.*system, user, assistant, tool"),
    ([{"role": "user", "content": None}], TypeError, "content None of type NoneType; the content must be text"),
    ([{"role": "user", "content": [1, 2, 3]}], TypeError, "must be text"),
    ([{"role": "user"}], ValueError, "needs both 'role' and 'content'"),
    (["hi"], TypeError, "message 0 must be a dict"),
    ([], TypeError, "non-empty list"),
])
def test_messages_with_unknown_roles_or_non_text_content_are_refused(tiny, messages, error, match):
    model, tok = tiny
    with pytest.raises(error, match=match):
        qwenlab.generate(model, tok, messages, max_new_tokens=2)
