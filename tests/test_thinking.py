"""split_thinking, ThinkingStream, the mode helpers and ThinkingView, on the real Qwen3 tokenizer."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import qwenlab
from qwenlab.thinking import (
    STATES,
    ThinkingStream,
    history_content,
    mode_settings,
    prompt_opens_thinking,
    soft_switch,
    split_thinking,
    supports_thinking,
    template_opens_thinking,
    thinking_mode,
    with_soft_switch,
)

OPEN, CLOSE, IM_END, EOT = 151667, 151668, 151645, 151643
TOOL_CALL_ID = 151657  # <tool_call>, not a special token
HALF_A, HALF_B = 82912, 246  # the two byte-halves of "龘": decoded alone, each is "\ufffd"

HYPO = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def text_ids(qwen3_tok):
    ids = []
    for word in ["Hello", " world", "\n", "\n\n", "答案", "是", " 42", "。", "Let", " me", " think"]:
        ids += qwen3_tok.encode(word)
    return sorted(set(ids)) + [HALF_A, HALF_B]


@st.composite
def replies(draw, text_ids):
    """A reply with zero, one or several think blocks, sometimes text first, cut anywhere."""
    text = st.lists(st.sampled_from(text_ids), max_size=5)
    blocks = draw(st.lists(st.tuples(text, text), max_size=3))
    seq = draw(text) if draw(st.booleans()) else []
    for thought, answer in blocks:
        seq += [OPEN, *thought, CLOSE, *answer]
    seq += draw(text) + ([IM_END] if draw(st.booleans()) else [])
    return seq[: draw(st.integers(0, len(seq)))]


def any_order(text_ids):
    """Tags, special tokens and text in any order."""
    return st.lists(st.sampled_from(text_ids + [OPEN, OPEN, CLOSE, CLOSE, IM_END, EOT]), max_size=20)


def reply_strategy(text_ids):
    return st.one_of(replies(text_ids), any_order(text_ids))


def replay(events) -> tuple[str, str]:
    """What a two-pane view shows after these events."""
    thinking = answer = ""
    for ev in events:
        if ev.channel == "thinking":
            thinking += ev.text
        elif ev.channel == "answer":
            answer += ev.text
        else:
            assert ev.channel == "retract" and ev.text == answer
            answer = ""
    return thinking, answer


# ---- split_thinking: properties ------------------------------------------------------------------

def test_properties_hold_on_random_replies(qwen3_tok, text_ids):
    @HYPO
    @given(reply_strategy(text_ids))
    def check(ids):
        decoded = qwen3_tok.decode(ids, skip_special_tokens=True)
        s = split_thinking(ids, qwen3_tok)
        # thinking + content + tags rebuild the decoded reply: nothing lost, nothing duplicated
        assert s.text == decoded
        assert s.thinking == s.raw_thinking.strip() and s.content == s.raw_content.strip()
        leading_specials = next((i for i, t in enumerate(ids) if t not in (IM_END, EOT)), len(ids))
        counted = len(ids) - (leading_specials if s.opened else 0)
        assert s.thinking_tokens + s.content_tokens + s.opened + s.closed == counted
        # the last </think> decides; an opened thought without it is unfinished and has no answer
        assert s.closed == (CLOSE in ids)
        if s.state == "unfinished":
            assert s.opened and not s.closed and s.content == ""
        if not s.closed and not s.opened:
            assert s.state == "none" and s.thinking == "" and s.content == decoded.strip()
        if s.closed:
            assert s.state in ("complete", "empty") and s.raw_content == decoded.rsplit("</think>", 1)[1]
        # splitting the text gives the same parts as splitting the ids
        t = split_thinking(decoded)
        assert (t.state, t.raw_thinking, t.raw_content, t.opened, t.closed) == \
            (s.state, s.raw_thinking, s.raw_content, s.opened, s.closed)

    check()


def test_stream_fed_token_by_token_agrees_with_split_thinking(qwen3_tok, text_ids):
    @HYPO
    @given(reply_strategy(text_ids))
    def check(ids):
        ts = ThinkingStream(qwen3_tok)
        events = []
        for i, token_id in enumerate(ids):
            events += ts.feed(token_id)
            # live: what is shown so far never contradicts the split of what has arrived
            now = split_thinking(ids[: i + 1], qwen3_tok)
            shown_thinking, shown_answer = replay(events)
            assert now.raw_thinking.startswith(shown_thinking)
            assert now.raw_content.startswith(shown_answer)
        events += ts.close()
        whole = split_thinking(ids, qwen3_tok)
        assert replay(events) == (whole.raw_thinking, whole.raw_content)
        assert (ts.raw_thinking, ts.raw_answer) == (whole.raw_thinking, whole.raw_content)
        assert ts.result == whole

    check()


def test_stream_fed_text_in_random_pieces_agrees_with_split_thinking(qwen3_tok, text_ids):
    @HYPO
    @given(reply_strategy(text_ids), st.lists(st.integers(0, 200), max_size=8))
    def check(ids, cuts):
        text = qwen3_tok.decode(ids, skip_special_tokens=True)
        bounds = sorted({0, len(text), *(c for c in cuts if c < len(text))})
        ts = ThinkingStream()
        events = []
        for a, b in zip(bounds, bounds[1:]):
            events += ts.feed_text(text[a:b])
            now = split_thinking(text[:b])
            shown_thinking, shown_answer = replay(events)
            assert now.raw_thinking.startswith(shown_thinking) and now.raw_content.startswith(shown_answer)
        events += ts.close()
        whole = split_thinking(text)
        assert replay(events) == (whole.raw_thinking, whole.raw_content)

    check()


# ---- split_thinking: the cases a student meets ---------------------------------------------------

def qwen3_reply(tok, thought: str | None, answer: str, cut: int | None = None) -> list[int]:
    """Token ids of a Qwen3-style reply, built with the real tokenizer (and cut after ``cut`` tokens)."""
    ids = [] if thought is None else [OPEN, *tok.encode(thought), CLOSE]
    ids += tok.encode(answer) + [IM_END]
    return ids if cut is None else ids[:cut]


def test_complete_thought(qwen3_tok):
    ids = qwen3_reply(qwen3_tok, "\n用户问 2+3。2+3=5。\n", "\n\n2+3=5。")
    s = split_thinking(ids, qwen3_tok)
    assert (s.state, s.thinking, s.content) == ("complete", "用户问 2+3。2+3=5。", "2+3=5。")
    assert s.hint is None


def test_cut_thought_is_unfinished_not_an_answer(qwen3_tok):
    """The seed-code bug: without </think> the common snippet returns the half thought as the answer."""
    ids = qwen3_reply(qwen3_tok, "\n用户问 2+3。先想一想，2 加 3 等于", "\n\n5", cut=8)
    try:  # the common snippet
        index = len(ids) - ids[::-1].index(CLOSE)
    except ValueError:
        index = 0
    seed_answer = qwen3_tok.decode(ids[index:], skip_special_tokens=True).strip("\n")
    assert "<think>" in seed_answer  # the half thought came out as "the answer"

    s = split_thinking(ids, qwen3_tok)
    assert s.state == "unfinished" and s.content == ""
    assert s.thinking.startswith("用户问") and "max_new_tokens" in s.hint
    assert "unfinished" in str(s)


def test_empty_thought_and_no_thought(qwen3_tok):
    empty = split_thinking(qwen3_reply(qwen3_tok, "\n\n", "\n\n你好！"), qwen3_tok)
    assert (empty.state, empty.thinking, empty.content) == ("empty", "", "你好！")
    none = split_thinking(qwen3_reply(qwen3_tok, None, "你好！"), qwen3_tok)
    assert (none.state, none.thinking, none.content) == ("none", "", "你好！")
    assert set(STATES) == {"complete", "none", "empty", "unfinished"}


def test_last_close_tag_decides_and_prompt_side_open_tag(qwen3_tok):
    s = split_thinking("<think>a</think>b</think>\n\nanswer")
    assert (s.thinking, s.content) == ("a</think>b", "answer")
    s = split_thinking("thought only closed</think>\n\nanswer")  # <think> was in the prompt
    assert (s.state, s.thinking, s.content, s.opened) == ("complete", "thought only closed", "answer", False)


def test_accepts_tensors_and_generation_results_and_needs_a_tokenizer_for_ids(qwen3_tok, tiny, one_thread):
    import torch

    ids = qwen3_reply(qwen3_tok, "x", "y")
    assert split_thinking(torch.tensor(ids), qwen3_tok) == split_thinking(ids, qwen3_tok)
    model, tokenizer = tiny
    result = qwenlab.generate(model, tokenizer, "hi", max_new_tokens=3, seed=0)
    assert split_thinking(result, tokenizer) == split_thinking(result.token_ids, tokenizer)
    with pytest.raises(ValueError, match="pass the tokenizer"):
        split_thinking(ids)
    assert split_thinking([], None).state == "none"


def test_history_content_keeps_only_the_answer():
    assert history_content("<think>\nlong thought\n</think>\n\nParis") == "Paris"
    assert history_content("<think>\ncut thought") == ""
    assert history_content("Paris<think>again") == "Paris"
    assert history_content("Paris") == "Paris"


# ---- modes ---------------------------------------------------------------------------------------

def test_soft_switches_and_the_order_of_the_rules(qwen3_tok, offline_tok):
    assert soft_switch("解释一下 /no_think") is False
    assert soft_switch("/no_think 然后 /think") is True
    assert soft_switch("路径 /thinking/x 和 a/think") is None
    assert with_soft_switch("你好 ", False) == "你好 /no_think"

    turns = [{"role": "user", "content": "a /no_think"}, {"role": "assistant", "content": "b"},
             {"role": "user", "content": "c"}]
    assert thinking_mode(turns, None, qwen3_tok) is False          # the latest soft switch holds
    assert thinking_mode(turns + [{"role": "assistant", "content": "d"},
                                  {"role": "user", "content": "e /think"}], None, qwen3_tok) is True
    assert thinking_mode([{"role": "user", "content": "e /think"}], False, qwen3_tok) is False  # hard switch wins
    assert thinking_mode([{"role": "user", "content": "hi"}], None, qwen3_tok) is True        # Qwen3 default
    assert supports_thinking(qwen3_tok) and not supports_thinking(offline_tok)
    assert thinking_mode([{"role": "user", "content": "hi /think"}], True, offline_tok) is False


def test_mode_settings_apply_the_recommendation_unless_overridden(tiny):
    on = mode_settings("Qwen/Qwen3-0.6B", True)
    off = mode_settings("Qwen/Qwen3-0.6B", False, temperature=0.3, max_new_tokens=64)
    assert on.params == {"do_sample": True, "temperature": 0.6, "top_p": 0.95, "top_k": 20, "min_p": 0.0}
    assert off.params["temperature"] == 0.3 and off.params["top_p"] == 0.8 and off.params["max_new_tokens"] == 64
    assert off.recommended["temperature"] == 0.7
    greedy = mode_settings("Qwen/Qwen3-0.6B", True, do_sample=False)
    assert greedy.warnings and "greedy" in greedy.warnings[0]
    assert greedy.params == {"do_sample": False}  # sampling values mean nothing to greedy decoding
    assert not mode_settings("Qwen/Qwen3-0.6B", False, do_sample=False).warnings
    model, _ = tiny  # a local folder: its own generation_config applies
    local = mode_settings(model, True)
    assert local.params == {} and "generation_config" in local.source


# ---- ThinkingView --------------------------------------------------------------------------------

def test_thinking_view_shows_thought_and_answer_apart(qwen3_tok):
    from qwenlab.widgets import ThinkingView

    view = ThinkingView(collapse_when_answering=True)
    split = view.play(qwen3_reply(qwen3_tok, "\n先算 6×7。\n", "\n\n42"), qwen3_tok)
    assert (view.thinking.strip(), view.answer.strip()) == ("先算 6×7。", "42") == (split.thinking, split.content)
    assert "先算" in view.thinking_html.value and "42" in view.answer_html.value
    assert view.accordion.selected_index is None  # the thought folded away once the answer came
    assert "complete" in view.state_html.value

    view.play(qwen3_reply(qwen3_tok, "\n想了很久很久很久", "42", cut=6), qwen3_tok)
    assert view.answer == "" and "unfinished" in view.state_html.value and "max_new_tokens" in view.state_html.value
    assert view.accordion.selected_index == 0


def test_thinking_view_runs_a_model_live(tiny, one_thread):
    from qwenlab.widgets import ThinkingView

    model, tokenizer = tiny
    view = ThinkingView()
    split = view.run(model, tokenizer, "hi", max_new_tokens=6, seed=1,
                     sequence_bias={(OPEN,): 2.5, (CLOSE,): 2.5})
    assert (view.thinking, view.answer) == (split.raw_thinking, split.raw_content)
    assert split.state in STATES and view.state_html.value


@pytest.fixture(scope="module")
def offline_tok():
    """The offline model's tokenizer (Qwen2.5 template: no thinking mode); no weights loaded."""
    from transformers import AutoTokenizer

    from qwenlab.offline import ensure_offline_model

    return AutoTokenizer.from_pretrained(ensure_offline_model())


# ---- templates that open <think> in the prompt (Qwen3-2507 Thinking, Qwen3.5) -----------------------

QWEN3_GEN_PROMPT = """    {{- '<|im_start|>assistant\\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\\n\\n</think>\\n\\n' }}
    {%- endif %}"""
THINKING_2507_GEN_PROMPT = """    {{- '<|im_start|>assistant\\n<think>\\n' }}"""
QWEN35_GEN_PROMPT = """    {{- '<|im_start|>assistant\\n' }}
    {%- if enable_thinking is defined and enable_thinking is true %}
        {{- '<think>\\n' }}
    {%- else %}
        {{- '<think>\\n\\n</think>\\n\\n' }}
    {%- endif %}"""


def _retemplated(generation_prompt: str):
    """The real Qwen3 tokenizer with its template's generation prompt replaced."""
    from qwenlab.offline import qwen3_tokenizer

    tok = qwen3_tokenizer()
    assert QWEN3_GEN_PROMPT in tok.chat_template, "the Qwen3 template changed: update QWEN3_GEN_PROMPT"
    tok.chat_template = tok.chat_template.replace(QWEN3_GEN_PROMPT, generation_prompt)
    return tok


@pytest.fixture(scope="module")
def thinking_2507_tok():
    """A Qwen3-2507-Thinking-style tokenizer: the generation prompt always ends with ``<think>\\n``."""
    return _retemplated(THINKING_2507_GEN_PROMPT)


@pytest.fixture(scope="module")
def qwen35_tok():
    """A Qwen3.5-style template: thinking off by default, ``enable_thinking=True`` opens ``<think>``."""
    return _retemplated(QWEN35_GEN_PROMPT)


Q = [{"role": "user", "content": "2+3=?"}]


def render(tok, **kw) -> str:
    return tok.apply_chat_template(Q, tokenize=False, add_generation_prompt=True, **kw)


def test_prompt_opens_thinking_reads_the_rendered_prompt(qwen3_tok, thinking_2507_tok, qwen35_tok):
    assert render(thinking_2507_tok).endswith("<|im_start|>assistant\n<think>\n")
    assert prompt_opens_thinking(render(thinking_2507_tok))
    assert prompt_opens_thinking(thinking_2507_tok.apply_chat_template(Q, add_generation_prompt=True),
                                 thinking_2507_tok)  # ids work too
    assert not prompt_opens_thinking(render(qwen3_tok))  # Qwen3-0.6B: the model writes <think> itself
    assert not prompt_opens_thinking(render(qwen3_tok, enable_thinking=False))  # closed empty thought
    assert prompt_opens_thinking(render(qwen35_tok, enable_thinking=True))
    assert not prompt_opens_thinking(render(qwen35_tok))
    typed = [{"role": "user", "content": "what does <think> do?"}]
    assert not prompt_opens_thinking(qwen3_tok.apply_chat_template(typed, tokenize=False, add_generation_prompt=True))
    with pytest.raises(ValueError, match="tokenizer"):
        prompt_opens_thinking([1, 2, 3])

    assert template_opens_thinking(thinking_2507_tok) and not template_opens_thinking(qwen3_tok)
    assert template_opens_thinking(qwen35_tok, enable_thinking=True) and not template_opens_thinking(qwen35_tok)


def test_reply_that_starts_inside_the_thought(qwen3_tok, thinking_2507_tok):
    thought, answer = qwen3_tok.encode("用户问 2+3。2+3=5。\n"), qwen3_tok.encode("\n\n5")
    prompt = render(thinking_2507_tok)
    done = split_thinking([*thought, CLOSE, *answer, IM_END], thinking_2507_tok, prompt=prompt)
    assert (done.state, done.thinking, done.content, done.opened, done.prompt_opened) == \
        ("complete", "用户问 2+3。2+3=5。", "5", False, True)
    cut = split_thinking(thought[:4], thinking_2507_tok, prompt=prompt)
    assert cut.state == "unfinished" and cut.content == "" and cut.thinking and "max_new_tokens" in cut.hint
    # the same ids, split as if the prompt had not opened the thought: the half thought is "the answer"
    assert split_thinking(thought[:4], qwen3_tok).state == "none"
    # no prompt given: the tokenizer's template says the prompt opens the thought
    assert split_thinking(thought[:4], thinking_2507_tok) == cut
    assert split_thinking(qwen3_tok.decode(thought[:4]), prompt=prompt).state == "unfinished"
    assert split_thinking([], thinking_2507_tok).state == "unfinished"
    # a reply that still writes its own <think> is split as before
    own = split_thinking([OPEN, *thought, CLOSE, *answer], thinking_2507_tok, prompt=prompt)
    assert (own.state, own.thinking, own.content, own.opened) == ("complete", "用户问 2+3。2+3=5。", "5", True)
    assert history_content(cut) == "" and history_content(done) == "5"


def test_a_tool_call_before_any_close_tag_ends_the_thought(qwen3_tok, thinking_2507_tok):
    call = qwen3_tok.encode('\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>')
    thought = qwen3_tok.encode("I should call add.\n")
    s = split_thinking([*thought, TOOL_CALL_ID, *call, IM_END], thinking_2507_tok, prompt=render(thinking_2507_tok))
    assert (s.state, s.thinking, s.tool_call, s.closed) == ("complete", "I should call add.", True, False)
    assert s.content.startswith("<tool_call>") and '"name": "add"' in s.content
    assert s.text == qwen3_tok.decode([*thought, TOOL_CALL_ID, *call], skip_special_tokens=True)
    text = split_thinking(s.text, prompt_opened=True)
    assert (text.state, text.raw_thinking, text.raw_content, text.tool_call) == \
        (s.state, s.raw_thinking, s.raw_content, True)
    # after </think> a tool call is part of the answer, as always
    after = split_thinking([*thought, CLOSE, TOOL_CALL_ID, *call], thinking_2507_tok)
    assert after.closed and not after.tool_call and after.content.startswith("<tool_call>")
    # with no open thought a tool call is just answer, even if a stray </think> follows it
    plain = split_thinking([TOOL_CALL_ID, *call, CLOSE, *thought], qwen3_tok)
    assert plain.state == "none" and plain.thinking == ""


def test_mode_rules_read_the_template(thinking_2507_tok, qwen35_tok):
    hi = [{"role": "user", "content": "hi"}]
    assert supports_thinking(thinking_2507_tok) and thinking_mode(hi, None, thinking_2507_tok) is True
    assert thinking_mode(hi, None, qwen35_tok) is False  # Qwen3.5 small: off by default
    assert thinking_mode(hi, True, qwen35_tok) is True
    assert thinking_mode(hi, False, qwen35_tok) is False


def prompt_opened_replies(text_ids):
    """Replies that start inside the thought: text, </think>, tool calls and special tokens in any order."""
    return st.one_of(
        replies(text_ids).map(lambda ids: [t for t in ids if t != OPEN]),
        st.lists(st.sampled_from(text_ids + [OPEN, CLOSE, CLOSE, TOOL_CALL_ID, IM_END]), max_size=20),
    )


def test_prompt_opened_split_properties(thinking_2507_tok, text_ids):
    tok = thinking_2507_tok

    @HYPO
    @given(prompt_opened_replies(text_ids))
    def check(ids):
        decoded = tok.decode(ids, skip_special_tokens=True)
        s = split_thinking(ids, tok, prompt=render(tok))
        assert s.prompt_opened and s.text == decoded
        body = ids[1:] if s.opened else ids
        closes = [i for i, t in enumerate(body) if t == CLOSE]
        before_close = body[: closes[0]] if closes else body
        if TOOL_CALL_ID in before_close:  # the call ends the thought
            assert s.tool_call and not s.closed and s.raw_content.startswith("<tool_call>")
        elif not closes:  # never an answer without </think>
            assert s.state == "unfinished" and s.content == "" and s.raw_thinking == decoded.removeprefix("<think>")
        else:
            assert s.closed and s.raw_content == decoded.rsplit("</think>", 1)[1]
        t = split_thinking(decoded, prompt_opened=True)
        assert (t.state, t.raw_thinking, t.raw_content, t.tool_call) == (s.state, s.raw_thinking, s.raw_content,
                                                                          s.tool_call)

    check()


def test_prompt_opened_stream_agrees_with_split_at_every_step(thinking_2507_tok, text_ids):
    tok = thinking_2507_tok
    prompt = render(tok)

    @HYPO
    @given(prompt_opened_replies(text_ids), st.lists(st.integers(0, 200), max_size=8))
    def check(ids, cuts):
        ts = ThinkingStream(tok, prompt=prompt)
        assert ts.state == "unfinished"  # before the first token the thought is already open
        events = []
        for i, token_id in enumerate(ids):
            events += ts.feed(token_id)
            now = split_thinking(ids[: i + 1], tok, prompt=prompt)
            shown_thinking, shown_answer = replay(events)
            assert now.raw_thinking.startswith(shown_thinking) and now.raw_content.startswith(shown_answer)
            assert ts.state == now.state
        events += ts.close()
        whole = split_thinking(ids, tok, prompt=prompt)
        assert replay(events) == (whole.raw_thinking, whole.raw_content) and ts.result == whole

        text = tok.decode(ids, skip_special_tokens=True)
        bounds = sorted({0, len(text), *(c for c in cuts if c < len(text))})
        tt, events = ThinkingStream(prompt=prompt), []
        for a, b in zip(bounds, bounds[1:]):
            events += tt.feed_text(text[a:b])
            now = split_thinking(text[:b], prompt=prompt)
            shown_thinking, shown_answer = replay(events)
            assert now.raw_thinking.startswith(shown_thinking) and now.raw_content.startswith(shown_answer)
        events += tt.close()
        whole = split_thinking(text, prompt=prompt)
        assert replay(events) == (whole.raw_thinking, whole.raw_content)

    check()
