"""Conversation: history, context budget, thinking kept out of the history, streaming, stop, save/load."""

from __future__ import annotations

import _thread  # noqa: PLC2701  (the stdlib way to send the main thread a Ctrl-C)
import json

import pytest

from qwenlab.chat import ContextTooLongError, Conversation, read_saved
from qwenlab.modelfacts import facts_of, remember
from qwenlab.widgets import ChatBox

from tests.conftest import PROBE

OPEN, CLOSE = 151667, 151668
# Makes the tiny random model write think tags often, so the history rule is really exercised.
TAGGY = {"sequence_bias": {(OPEN,): 2.5, (CLOSE,): 2.5}}
SYSTEM = "You are a terse assistant."


@pytest.fixture
def conv(tiny, one_thread):
    model, tokenizer = tiny
    return Conversation(model, tokenizer, system=SYSTEM, max_context_tokens=160, max_new_tokens=8)


def test_twenty_turns_fit_a_small_budget_and_keep_the_system_prompt(conv):
    replies = [conv.reply(f"第 {i} 轮: tell me something new", seed=i, **TAGGY) for i in range(20)]
    assert any(r.thinking or r.state != "none" for r in replies)  # tags were really generated
    window = conv.window()
    assert window.prompt_tokens + 8 <= 160 and window.budget == 152
    prompt = conv.render()
    assert prompt.startswith(f"<|im_start|>system\n{SYSTEM}<|im_end|>")
    assert conv.count_tokens(window.messages) == window.prompt_tokens
    # the oldest turns were dropped, whole, and reported; the full history is kept
    assert len(conv.history) == 40 and replies[-1].dropped and conv.dropped == replies[-1].dropped
    assert window.messages[1]["role"] == "user" and window.dropped + window.messages[1:] == conv.history
    assert "第 0 轮" not in prompt and "第 19 轮" in prompt
    assert [len(r.dropped) for r in replies] == sorted(len(r.dropped) for r in replies)
    # assistant history never holds a thought (Qwen's multi-turn rule)
    for m in conv.history:
        if m["role"] == "assistant":
            assert "<think>" not in m["content"] and "</think>" not in m["content"]
    assert [m["content"] for m in conv.history[1::2]] == [r.content for r in replies]


def test_a_message_that_cannot_fit_is_refused_and_the_history_stays(conv):
    conv.reply("hello", seed=0)
    before = list(conv.history)
    with pytest.raises(ContextTooLongError, match="raise max_context_tokens"):
        conv.reply("很长的消息 " * 200)
    assert conv.history == before
    with pytest.raises(TypeError, match="Unknown generation parameter"):
        conv.reply("hello", temprature=0.5)
    assert conv.history == before
    conv.reply("short again", seed=1)  # and the chat goes on
    assert len(conv.history) == len(before) + 2


def test_thinking_is_stripped_from_assistant_turns_and_switches_apply(tiny, qwen3_tok):
    model, tokenizer = tiny
    conv = Conversation(model, tokenizer)
    conv.add_user("2+3=?")
    conv.add_assistant("<think>\n2 加 3 等于 5\n</think>\n\n5")
    conv.add_user("再加 1 /no_think")
    assert conv.history[1]["content"] == "5" and "2 加 3" not in conv.render()
    assert conv.next_thinking_mode() is False                       # the soft switch
    conv.thinking = False
    assert conv.render().endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")  # the hard switch
    with pytest.raises(ValueError, match="reply"):
        conv.add_user("two user messages in a row")


def test_catalog_recommendation_per_mode_unless_overridden(offline_like_qwen3):
    conv = offline_like_qwen3
    conv.add_user("hi")
    assert conv.settings().params["temperature"] == 0.6 and conv.settings().params["top_p"] == 0.95
    conv.history[-1]["content"] = "hi /no_think"
    assert conv.settings().params["top_p"] == 0.8
    conv.params["temperature"] = 0.2
    assert conv.settings().params["temperature"] == 0.2 and conv.settings(temperature=0.9).params["temperature"] == 0.9


@pytest.fixture
def offline_like_qwen3(tiny):
    """The tiny model, known to qwenlab as Qwen3-0.6B (as load_model names a catalog model)."""
    model, tokenizer = tiny
    saved = facts_of(model)
    remember(model, saved.but(name="Qwen/Qwen3-0.6B"))
    yield Conversation(model, tokenizer)
    remember(model, saved)


def test_streaming_gives_the_reply_piece_by_piece_then_records_it(conv):
    chat_stream = conv.reply("hello", stream=True, seed=3, **TAGGY)
    pieces = list(chat_stream)
    reply = chat_stream.reply
    assert "".join(pieces) == reply.text and len(pieces) > 1
    assert conv.history[-1] == {"role": "assistant", "content": reply.content}
    events = list(conv.reply("again", stream=True, seed=4, **TAGGY).events())
    assert {e.channel for e in events} <= {"thinking", "answer", "retract"}
    assert conv.history[-1]["role"] == "assistant" and len(conv.history) == 4


def test_stop_break_and_ctrl_c_end_the_reply_and_keep_the_conversation(conv):
    conv.params["max_new_tokens"] = 2000
    conv.max_context_tokens = 4096
    chat_stream = conv.reply("tell me a long story", stream=True, seed=0)
    for _ in chat_stream:
        chat_stream.stop()
    assert chat_stream.reply.finish_reason == "stopped" and chat_stream.reply.completion_tokens < 2000
    assert len(conv.history) == 2

    for _ in conv.reply("another", stream=True, seed=1):
        break  # leaving the loop stops the reply too
    assert len(conv.history) == 4 and conv.history[-1]["role"] == "assistant"

    chat_stream = conv.reply("and another", stream=True, seed=2)
    with pytest.raises(KeyboardInterrupt):
        for _ in chat_stream:
            _thread.interrupt_main()  # what Ctrl-C / Jupyter's stop button does
    assert chat_stream.reply.finish_reason == "stopped"
    assert len(conv.history) == 6 and conv.history[-1]["content"] == chat_stream.reply.content


def test_save_and_load_round_trip(conv, tmp_path):
    conv.reply("hello", seed=0)
    conv.reply("again", seed=1)
    path = conv.save(tmp_path / "chat.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["system"] == SYSTEM and len(data["messages"]) == 4 and data["params"] == {"max_new_tokens": 8}
    assert data["model"] == facts_of(conv.model).name  # the name load_model recorded
    again = Conversation.load(path, conv.model, conv.tokenizer)
    assert again.messages == conv.messages and again.render() == conv.render()
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(ValueError, match="not a saved qwenlab conversation"):
        Conversation.load(tmp_path / "other.json", conv.model, conv.tokenizer)


def test_chat_box_streams_stops_and_resets(conv):
    box = ChatBox(conv, seed=0)
    box.input.value = "hello"  # Enter in the text box sends it (in a background thread)
    reply = box.wait(timeout=120)
    assert box.input.value == "" and reply is conv_last(conv, box)
    assert "hello" in box.history_html.value and "tokens" in box.status_html.value
    assert box.send_button.disabled is False and box.stop_button.disabled is True

    conv.params["max_new_tokens"] = 2000
    conv.max_context_tokens = 4096
    box.input.value = "a long one"
    box.send_button.click()
    box.stop_button.click()
    reply = box.wait(timeout=120)
    assert reply.finish_reason == "stopped" and "stopped" in box.status_html.value
    assert len(conv.history) == 4

    box.reset_button.click()
    assert conv.history == [] and "hello" not in box.history_html.value and SYSTEM in box.history_html.value


def conv_last(conv, box):
    assert conv.history[-1] == {"role": "assistant", "content": box.last_reply.content}
    return box.last_reply


@pytest.mark.real_model
def test_two_turn_chat_with_the_offline_model(offline):
    model, tokenizer = offline
    conv = Conversation(model, tokenizer, system="Answer in one word.", do_sample=False, max_new_tokens=8)
    first = conv.reply(PROBE)
    assert "paris" in first.content.lower() and first.state == "none" and first.finish_reason == "stop"
    second = conv.reply("And of Germany?")
    assert "berlin" in second.content.lower()
    assert [m["role"] for m in conv.messages] == ["system", "user", "assistant", "user", "assistant"]
    assert "Paris" in conv.render()  # the first answer is part of the second prompt: that is the "memory"


def test_wrong_messages_and_parameters_are_refused_and_change_nothing(conv):
    conv.reply("hello", seed=0)
    before = list(conv.history)
    with pytest.raises(TypeError, match="add_user needs the message text as a str, got None"):
        conv.add_user(None)
    with pytest.raises(TypeError, match="add_assistant"):
        conv.add_assistant(42)
    with pytest.raises(TypeError, match="got 7"):
        conv.reply(7)
    with pytest.raises(ValueError, match="max_new_tokens must be a whole number"):
        conv.reply("hi", max_new_tokens=1.5)
    assert conv.history == before and "None" not in conv.render()

    with pytest.raises(ValueError, match="max_new_tokens must be a whole number"):
        conv.set_params(max_new_tokens="abc")
    with pytest.raises(TypeError, match="Unknown generation parameter"):
        conv.set_params(temprature=0.5)
    assert conv.params == {"max_new_tokens": 8}
    conv.set_params(temperature=0.5)
    assert conv.params == {"max_new_tokens": 8, "temperature": 0.5}
    conv.set_params(temperature=None)  # back to the recommended / the model's value
    assert conv.params == {"max_new_tokens": 8}


def test_a_reply_that_fails_while_generating_leaves_the_history_as_it_was(conv, monkeypatch):
    conv.reply("hello", seed=0)
    before = list(conv.history)

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(conv.model, "generate", broken)
    with pytest.raises(RuntimeError, match="simulated"):
        conv.reply("this one fails")
    with pytest.raises(RuntimeError, match="simulated"):
        list(conv.reply("this one fails while streaming", stream=True))
    assert conv.history == before
    monkeypatch.undo()
    conv.reply("and the chat goes on", seed=1)
    assert len(conv.history) == len(before) + 2


@pytest.mark.parametrize(("content", "match"), [
    (None, "Cannot read a conversation from .*missing.json"),
    ("{not json", "Cannot read a conversation from .*chat.json"),
    ('{"format": "something-else"}', "not a saved qwenlab conversation"),
    ('{"format": "qwenlab-conversation", "messages": {"role": "user"}}', '"messages" is not a list'),
    ('{"format": "qwenlab-conversation", "messages": [{"role": "robot", "content": "x"}]}', "role 'robot'"),
    ('{"format": "qwenlab-conversation", "messages": [{"role": "user", "content": 5}]}', "must be text"),
    ('{"format": "qwenlab-conversation", "messages": [], "params": [1]}', '"params" should be dict'),
])
def test_reading_a_saved_conversation_names_what_is_wrong_without_a_model(tmp_path, content, match):
    path = tmp_path / ("missing.json" if content is None else "chat.json")
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=match):
        read_saved(path)
