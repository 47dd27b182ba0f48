"""qwenlab.serve without a model: request checks (every unsupported field is a 400 that names it) and the
reply parser (stop strings, Qwen3 thinking, Qwen's <tool_call> blocks), fed piece by piece as a stream is."""

from __future__ import annotations

import json

import pytest

from qwenlab import serve
from qwenlab.serve.replies import ReplyParser, parse_tool_call

HI = [{"role": "user", "content": "hi"}]


# --------------------------------------------------------------------------------- request checks


@pytest.mark.parametrize("body, words", [
    ({"messages": HI, "max_tokens": -5}, "max_tokens"),
    ({"messages": HI, "max_tokens": 0}, "max_tokens"),
    ({"messages": HI, "max_tokens": 1.5}, "max_tokens"),
    ({"messages": []}, "non-empty list"),
    ({"model": "m"}, "messages"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "role"),
    ({"messages": [{"role": "user"}]}, "content"),
    ({"messages": [{"role": "user", "content": [1, 2, 3]}]}, "messages[0].content[0] must be a text part"),
    ({"messages": [{"role": "user", "content": 42}]}, "must be a string or a list of text parts"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     "reads text only"),
    ({"messages": HI, "temperature": 3}, "temperature"),
    ({"messages": HI, "n": 3}, "one answer per request"),
    ({"messages": HI, "logprobs": True}, "logprobs=True is not supported"),
    ({"messages": HI, "top_logprobs": 5}, "top_logprobs"),
    ({"messages": HI, "response_format": {"type": "json_object"}}, "response_format"),
    ({"messages": HI, "frequency_penalty": 0.5}, "frequency_penalty=0.5 is not supported"),
    ({"messages": HI, "presence_penalty": -1}, "presence_penalty"),
    ({"messages": HI, "top_k": 20}, "Unsupported field(s) top_k"),
    ({"messages": HI, "logit_bias": {"1": 5}, "functions": []}, "functions, logit_bias"),
    ({"messages": HI, "stop": ""}, "stop must be"),
    ({"messages": HI, "stop": ["a"] * 17}, "stop must be"),
    ({"messages": HI, "stream": "yes"}, "stream must be true or false"),
    ({"messages": HI, "stream_options": {"include_usage": True}}, "only allowed with stream=true"),
    ({"messages": HI, "stream": True, "stream_options": {"chunk_size": 3}}, "include_usage"),
    ({"messages": HI, "tool_choice": "required"}, "tool_choice='required' is not supported"),
    ({"messages": HI, "tools": [{"name": "f"}]}, "tools must be a list"),
    ({"messages": HI, "chat_template_kwargs": "thinking"}, "chat_template_kwargs"),
    ({"messages": HI, "reasoning_effort": "off"}, "reasoning_effort must be one of none,"),
    ({"messages": HI, "reasoning_effort": "none", "chat_template_kwargs": {"enable_thinking": True}},
     "contradict each other"),
    ({"messages": [{"role": "assistant", "content": None, "tool_calls": [
        {"type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]}, "not valid JSON"),
    (["not", "an", "object"], "JSON object"),
])
def test_invalid_requests_are_refused_with_a_reason_naming_the_field(body, words):
    with pytest.raises(serve.RequestError) as err:
        serve.validate_chat_request(body)
    payload = err.value.payload()["error"]
    assert err.value.status == 400 and payload["type"] == "invalid_request_error"
    assert words in payload["message"]
    assert "Traceback" not in payload["message"] and "object has no attribute" not in payload["message"]


def test_any_model_name_and_neutral_values_are_accepted():
    body = {"model": "qwen/Qwen1.5-0.5B-Chat-GGUF", "messages": HI, "n": 1, "logprobs": False,
            "frequency_penalty": 0, "presence_penalty": 0.0, "response_format": {"type": "text"}, "user": "u1",
            "max_tokens": 4, "stop": "END", "seed": 7}
    chat = serve.validate_chat_request(body)
    assert chat.model == "qwen/Qwen1.5-0.5B-Chat-GGUF" and chat.max_tokens == 4 and chat.stop == ["END"]
    assert chat.seed == 7 and not chat.stream and not chat.include_usage


@pytest.mark.parametrize("extra, thinking", [
    ({}, None),                                                  # the server's default applies
    ({"chat_template_kwargs": {"enable_thinking": False}}, False),  # vLLM / SGLang / llama.cpp
    ({"reasoning_effort": "none"}, False),                       # OpenAI / Ollama / llama.cpp
    ({"reasoning_effort": "low"}, True),                         # Qwen has no effort levels: any effort thinks
    ({"reasoning_effort": "high", "chat_template_kwargs": {"enable_thinking": True}}, True),
])
def test_thinking_switches_become_the_templates_enable_thinking(extra, thinking):
    chat = serve.validate_chat_request({"messages": HI, **extra})
    assert chat.template_kwargs.get("enable_thinking") is thinking


def test_a_thought_is_sent_under_both_field_names():
    from qwenlab.serve.protocol import completion

    message = completion("c", "m", "Paris", "The capital... Paris.", [], "stop", 3, 5)["choices"][0]["message"]
    assert message["reasoning_content"] == message["reasoning"] == "The capital... Paris."
    assert message["content"] == "Paris"
    no_thought = completion("c", "m", "Paris", "", [], "stop", 3, 1)["choices"][0]["message"]
    assert "reasoning" not in no_thought and "reasoning_content" not in no_thought


def test_messages_become_what_a_chat_template_expects():
    chat = serve.validate_chat_request({"messages": [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Weather"}, {"type": "text", "text": "in Paris?"}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ], "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}],
        "stream": True, "stream_options": {"include_usage": True}, "max_completion_tokens": 9})
    assert chat.messages[0] == {"role": "system", "content": "Be brief."}
    assert chat.messages[1]["content"] == "Weather\nin Paris?"
    assert chat.messages[2]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}  # not JSON text
    assert chat.messages[3] == {"role": "tool", "content": "sunny", "tool_call_id": "c1"}
    assert chat.tools and chat.stream and chat.include_usage and chat.max_tokens == 9


def test_tool_choice_none_hides_the_tools():
    tools = [{"type": "function", "function": {"name": "f"}}]
    assert serve.validate_chat_request({"messages": HI, "tools": tools, "tool_choice": "none"}).tools is None
    assert serve.validate_chat_request({"messages": HI, "tools": tools, "tool_choice": "auto"}).tools == tools


def test_limits_are_checked():
    with pytest.raises(ValueError, match="max_tokens"):
        serve.Limits(max_tokens=0)
    with pytest.raises(ValueError, match="time_limit"):
        serve.Limits(time_limit=-1)
    with pytest.raises(ValueError, match="port"):
        serve.check_port(99999)


# --------------------------------------------------------------------------------- the reply parser


def _run(parser: ReplyParser, pieces: list[str]) -> list:
    events = []
    for piece in pieces:
        events += parser.feed(piece)
    return events + parser.close()


def _text(events: list, kind: str = "content") -> str:
    return "".join(e.text for e in events if e.kind == kind)


def _pieces(text: str, size: int) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


@pytest.mark.parametrize("size", [1, 2, 3, 100])
def test_stop_string_ends_the_reply_before_it_even_when_split_across_pieces(size):
    parser = ReplyParser(stop=["END", "\n\n"])
    events = _run(parser, _pieces("Hello world. EN and END more", size))
    assert _text(events) == "Hello world. EN and " and parser.stopped
    assert all("END" not in e.text for e in events)


def test_text_that_only_looks_like_a_stop_string_start_is_released_at_the_end():
    parser = ReplyParser(stop=["STOP"])
    events = _run(parser, ["Go ST", "O"])
    assert _text(events) == "Go STO" and not parser.stopped


@pytest.mark.parametrize("size", [1, 4, 1000])
def test_thinking_becomes_reasoning_and_the_answer_content(size):
    parser = ReplyParser(thinking=True)
    events = _run(parser, _pieces("<think>\nFrance... Paris.\n</think>\n\nParis", size))
    assert _text(events, "reasoning").strip() == "France... Paris."
    assert _text(events) == "Paris"


def test_reply_that_starts_inside_an_opened_thought():
    events = _run(ReplyParser(opened_thinking=True), ["Hmm, Paris.", "</think>", "\n\nParis"])
    assert _text(events, "reasoning") == "Hmm, Paris." and _text(events) == "Paris"


TOOL_TEXT = ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
             '<tool_call>\n{"name": "get_time", "arguments": {"zone": "CET"}}\n</tool_call>')


@pytest.mark.parametrize("size", [1, 5, 1000])
def test_qwen_tool_calls_become_tool_call_events_in_a_stream(size):
    parser = ReplyParser(tools=True)
    events = _run(parser, _pieces(TOOL_TEXT, size))
    calls = [e.call for e in events if e.kind == "tool_call"]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather", {"city": "Paris"}),
                                                                  ("get_time", {"zone": "CET"})]
    assert _text(events) == "" and parser.tool_calls == calls
    assert len({c.id for c in calls}) == 2


def test_text_before_a_tool_call_stays_content():
    text, calls = serve.parse_tool_calls("Let me check.\n" + TOOL_TEXT)
    assert text == "Let me check." and [c.name for c in calls] == ["get_weather", "get_time"]


def test_only_the_first_call_when_parallel_calls_are_off():
    assert [c.name for c in serve.parse_tool_calls(TOOL_TEXT, parallel=False)[1]] == ["get_weather"]


@pytest.mark.parametrize("reply", [
    "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\"",  # cut by max_tokens
    "<tool_call>\nnot json at all\n</tool_call>",
    "<tool_call>{\"arguments\": {}}</tool_call>",  # no name
])
def test_a_broken_tool_call_comes_back_as_the_text_the_model_wrote(reply):
    text, calls = serve.parse_tool_calls(reply)
    assert calls == [] and text == reply


def test_tool_call_parser_accepts_json_text_arguments_and_keeps_unicode():
    call = parse_tool_call('{"name": "search", "arguments": "{\\"q\\": \\"长城\\"}"}')
    assert call.name == "search" and json.loads(call.arguments) == {"q": "长城"}
    assert json.loads(parse_tool_call('{"name": "f", "arguments": {"q": "长城"}}').arguments) == {"q": "长城"}
    assert parse_tool_call('{"name": "f", "arguments": [1]}') is None


def test_tags_are_plain_text_without_tools():
    events = _run(ReplyParser(), ["<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>"])
    assert _text(events) == "<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>"
