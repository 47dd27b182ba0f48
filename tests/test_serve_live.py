"""qwenlab.serve over real HTTP on 127.0.0.1, in this process: the tiny Qwen3 behind the app, run by
uvicorn in a thread, called by the openai SDK, httpx and AutoGen.

The tiny model writes noise, so a :class:`Script` makes it write a chosen reply (it overrides the logits
of each step) and can hold generation at a chosen token, so a test knows exactly where generation is when
its client goes away.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import httpx
import pytest

from qwenlab import serve

SLOW = 300.0  # seconds a client waits at most (a busy shared machine)
HI = [{"role": "user", "content": "hi"}]
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
TOOL_REPLY = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


class Script:
    """Make the model write ``reply`` (then end its turn), or noise when ``reply`` is None; optionally
    hold the forward pass that produces token number ``pause_at`` until :meth:`resume`."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer
        self.own_forward = model.forward
        self.end_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.ids: list[int] | None = None
        self.step = -1  # the generated token the last forward pass produced
        self.prefills = 0
        self.pause_at: int | None = None
        self.paused, self._resume = threading.Event(), threading.Event()
        model.forward = self._forward

    def say(self, reply: str | None) -> None:
        self.ids = None if reply is None else self.tokenizer.encode(reply) + [self.end_id]
        self.pause_at = None
        self.paused.clear()
        self._resume.clear()

    def hold_at(self, step: int) -> None:
        self.pause_at = step

    def resume(self) -> None:
        self.pause_at = None
        self._resume.set()

    def _forward(self, *args, **kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None and ids.shape[-1] > 1:
            self.prefills += 1
            self.step = 0
        else:
            self.step += 1
        if self.pause_at is not None and self.step == self.pause_at:
            self.paused.set()
            self._resume.wait(SLOW)
        out = self.own_forward(*args, **kwargs)
        if self.ids is not None:
            forced = self.ids[min(self.step, len(self.ids) - 1)]
            out.logits[:, -1, :] = -1e4
            out.logits[:, -1, forced] = 1e4
        return out


def _until(check, what: str, seconds: float = SLOW) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


@pytest.fixture(scope="module")
def live(tiny_dir):
    """``(base_url, script, engine)`` of an in-process server for the tiny model."""
    import torch
    import uvicorn

    import qwenlab

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model, tokenizer = qwenlab.load_model(tiny_dir, device="cpu", dtype="float32")
    script = Script(model, tokenizer)
    app = serve.build_app(model, tokenizer, "tiny", reasoning="off")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    _until(lambda: server.started, "the server started", 60)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1", script, app.state.engine
    script.resume()
    server.should_exit = True
    thread.join(30)
    torch.set_num_threads(threads)


@pytest.fixture
def script(live):
    base, script, engine = live
    _until(lambda: engine.current is None, "the model is idle", 60)
    script.say("Hello there, friend.")
    yield script
    script.resume()


@pytest.fixture
def limits(live, monkeypatch):
    """Set the live server's limits for one test."""
    engine = live[2]

    def set_limits(**kwargs) -> serve.Limits:
        monkeypatch.setattr(engine, "limits", serve.Limits(**kwargs))
        return engine.limits

    return set_limits


def _client(live, **kwargs):
    from openai import OpenAI

    return OpenAI(base_url=live[0], api_key="anything", timeout=SLOW, max_retries=0, **kwargs)


def _post(live, body: dict, **kwargs) -> httpx.Response:
    return httpx.post(f"{live[0]}/chat/completions", json=body, timeout=SLOW, **kwargs)


# --------------------------------------------------------------------------------- OpenAI shapes


def test_non_streaming_reply_has_openai_shape(live, script):
    reply = _client(live).chat.completions.create(model="gpt-4o", messages=HI)
    assert reply.object == "chat.completion" and reply.model == "tiny"
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == "Hello there, friend."
    assert choice.finish_reason == "stop" and choice.message.tool_calls is None
    assert reply.usage.completion_tokens == len(script.ids)
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_stream_without_usage_ends_with_finish_reason_then_done(live, script):
    with httpx.stream("POST", f"{live[0]}/chat/completions", timeout=SLOW,
                      json={"model": "tiny", "messages": HI, "stream": True}) as response:
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and len(c["choices"]) == 1 for c in chunks)
    assert all("usage" not in c for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * (len(chunks) - 1) + ["stop"]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "Hello there, friend."


def test_stream_with_include_usage_sends_usage_in_its_own_last_chunk(live, script):
    stream = _client(live).chat.completions.create(model="tiny", messages=HI, stream=True,
                                                   stream_options={"include_usage": True})
    chunks = list(stream)
    *choice_chunks, last = chunks
    assert last.choices == [] and last.usage.completion_tokens == len(script.ids)
    assert all(c.usage is None and len(c.choices) == 1 for c in choice_chunks)
    assert choice_chunks[-1].choices[0].finish_reason == "stop"
    assert "".join(c.choices[0].delta.content or "" for c in choice_chunks) == "Hello there, friend."


def test_max_tokens_cuts_with_finish_reason_length(live, script):
    reply = _client(live).chat.completions.create(model="tiny", messages=HI, max_tokens=2)
    assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 2
    chunks = list(_client(live).chat.completions.create(model="tiny", messages=HI, max_tokens=2, stream=True))
    assert chunks[-1].choices[0].finish_reason == "length"


@pytest.mark.parametrize("stream", [False, True])
def test_stop_string_is_not_in_the_content_and_finishes_with_stop(live, script, stream):
    script.say("One, two, three, four")
    kwargs = dict(model="tiny", messages=HI, stop=[", three", "nothing"])
    if stream:
        chunks = list(_client(live).chat.completions.create(stream=True, **kwargs))
        text = "".join(c.choices[0].delta.content or "" for c in chunks)
        finish = chunks[-1].choices[0].finish_reason
    else:
        reply = _client(live).chat.completions.create(**kwargs)
        text, finish = reply.choices[0].message.content, reply.choices[0].finish_reason
    assert text == "One, two" and finish == "stop"


def _thought(message) -> str | None:
    """What a client that knows either name reads (llama.cpp / LM Studio vs vLLM / Ollama / OpenRouter)."""
    return getattr(message, "reasoning", None) or getattr(message, "reasoning_content", None)


def test_thinking_goes_to_reasoning_content_and_reasoning(live, script):
    script.say("<think>\nThe capital... Paris.\n</think>\n\nParis")
    reply = _client(live).chat.completions.create(
        model="tiny", messages=HI, extra_body={"chat_template_kwargs": {"enable_thinking": True}})
    message = reply.choices[0].message
    assert message.content == "Paris" and message.model_extra["reasoning_content"].strip() == "The capital... Paris."
    assert message.model_extra["reasoning"] == message.model_extra["reasoning_content"] == _thought(message)


def test_streamed_thought_arrives_in_both_fields_and_never_in_content(live, script):
    script.say("<think>\nThe capital... Paris.\n</think>\n\nParis")
    chunks = list(_client(live).chat.completions.create(
        model="tiny", messages=HI, stream=True, extra_body={"reasoning_effort": "medium"}))
    deltas = [c.choices[0].delta for c in chunks]
    thought = "".join(_thought(d) or "" for d in deltas)
    assert thought.strip() == "The capital... Paris."
    assert all((d.model_extra or {}).get("reasoning") == (d.model_extra or {}).get("reasoning_content") for d in deltas)
    assert "".join(d.content or "" for d in deltas) == "Paris"


@pytest.mark.parametrize("switch", [{"chat_template_kwargs": {"enable_thinking": False}},
                                    {"reasoning_effort": "none"}], ids=["enable_thinking", "reasoning_effort"])
def test_thinking_switched_off_per_request_renders_the_empty_thought(live, script, switch):
    """The server runs with thinking "off"; a request turns it on, then off again with either convention:
    the prompt the model reads is the template's, with its empty <think></think> block exactly when off."""
    tokenizer = script.tokenizer

    def rendered(thinking: bool) -> int:
        text = tokenizer.apply_chat_template(HI, tokenize=False, add_generation_prompt=True, enable_thinking=thinking)
        return len(tokenizer(text)["input_ids"])

    client = _client(live)
    on = client.chat.completions.create(model="tiny", messages=HI, extra_body={"reasoning_effort": "high"})
    off = client.chat.completions.create(model="tiny", messages=HI, extra_body=switch)
    assert on.usage.prompt_tokens == rendered(True) and off.usage.prompt_tokens == rendered(False)
    assert off.usage.prompt_tokens > on.usage.prompt_tokens  # "<think>\n\n</think>\n\n" written by the template


# --------------------------------------------------------------------------------- tool calls


def test_tool_call_becomes_tool_calls(live, script):
    script.say(TOOL_REPLY)
    reply = _client(live).chat.completions.create(model="tiny", messages=HI, tools=TOOLS)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather" and call.id.startswith("call_")
    assert json.loads(call.function.arguments) == {"city": "Paris"}


def test_tool_call_streams_as_tool_calls_deltas(live, script):
    script.say("Checking." + TOOL_REPLY)
    chunks = list(_client(live).chat.completions.create(model="tiny", messages=HI, tools=TOOLS, stream=True))
    deltas = [d for c in chunks for d in (c.choices[0].delta.tool_calls or [])]
    assert [(d.index, d.function.name, json.loads(d.function.arguments)) for d in deltas] == [
        (0, "get_weather", {"city": "Paris"})]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Checking."
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_tool_result_goes_back_through_the_template(live, script):
    """The second turn of a tool call: the assistant's call (arguments as JSON text) and the tool's result."""
    messages = HI + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
    ]
    reply = _client(live).chat.completions.create(model="tiny", messages=messages, tools=TOOLS)
    assert reply.choices[0].message.content == "Hello there, friend."
    rendered = script.tokenizer.apply_chat_template(
        serve.validate_chat_request({"messages": messages}).messages, tools=TOOLS, tokenize=False,
        add_generation_prompt=True, enable_thinking=False)  # the server's reasoning="off"
    assert '{"name": "get_weather", "arguments": {"city": "Paris"}}' in rendered and "sunny, 21 C" in rendered
    assert reply.usage.prompt_tokens == len(script.tokenizer(rendered)["input_ids"])


# --------------------------------------------------------------------------------- model names, errors


def test_any_model_name_is_answered_and_models_says_so(live, script):
    client = _client(live)
    reply = client.chat.completions.create(model="qwen/Qwen1.5-0.5B-Chat-GGUF", messages=HI)
    assert reply.choices[0].message.content == "Hello there, friend." and reply.model == "tiny"
    (card,) = client.models.list().data
    assert card.id == "tiny" and card.model_extra["qwenlab"]["answers_any_model_name"] is True
    assert card.model_extra["context_length"] == 4096
    assert client.models.retrieve("qwen/Qwen1.5-0.5B-Chat-GGUF").id == "tiny"


@pytest.mark.parametrize("body, words", [
    ({"messages": [{"role": "user", "content": [1, 2, 3]}]}, "must be a text part"),
    ({"messages": HI, "logprobs": True}, "logprobs"),
    ({"messages": HI, "response_format": {"type": "json_schema"}}, "response_format"),
    ({"messages": HI, "frequency_penalty": 1.0}, "frequency_penalty"),
    ({"messages": HI, "n": 2}, "one answer"),
])
def test_unsupported_requests_get_400_in_openai_error_shape(live, script, body, words):
    import openai

    reply = _post(live, {"model": "tiny", **body})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert words in error["message"] and error["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError, match=words):
        _client(live).chat.completions.create(model="tiny", **body)


def test_malformed_json_and_unknown_routes_are_json_errors(live, script):
    bad = httpx.post(f"{live[0]}/chat/completions", content=b'{"messages": [', timeout=SLOW,
                     headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]["message"]
    missing = httpx.get(f"{live[0]}/nothing-here", timeout=SLOW)
    assert missing.status_code == 404 and "error" in missing.json()


# --------------------------------------------------------------------------------- limits


def test_prompt_over_the_limit_gets_400_with_the_numbers(live, script, limits):
    limits(max_prompt_tokens=20)
    reply = _post(live, {"messages": [{"role": "user", "content": "word " * 50}]})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert "at most 20" in error["message"] and "has 6" in error["message"]  # 60-odd tokens


def test_prompt_over_the_context_gets_400_before_any_compute(live, script):
    before = script.prefills
    reply = _post(live, {"messages": [{"role": "user", "content": "hello " * 5000}]})
    assert reply.status_code == 400 and "at most 4095" in reply.json()["error"]["message"]
    assert "context is 4096" in reply.json()["error"]["message"] and script.prefills == before


def test_max_tokens_is_capped_by_the_server(live, script, limits):
    limits(max_tokens=3)
    script.say(None)
    for asked in (None, 1000):
        body = {"messages": HI} if asked is None else {"messages": HI, "max_tokens": asked}
        reply = _post(live, body).json()
        assert reply["usage"]["completion_tokens"] == 3 and reply["choices"][0]["finish_reason"] == "length"


def _prompt_tokens(tokenizer, messages: list[dict]) -> int:
    """The prompt's length as the server renders it (reasoning="off": the empty thought block included)."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_with_no_cap_set_a_huge_max_tokens_gets_what_the_context_leaves(live, script):
    """The default cap (issue #19, item 1): the model's context minus the prompt, whatever the client asks."""
    context = live[2].context
    low, high = 1, context  # the most words whose prompt leaves at least one token: binary search
    while low < high:
        mid = (low + high + 1) // 2
        fits = _prompt_tokens(script.tokenizer, [{"role": "user", "content": "hi " * mid}]) < context
        low, high = (mid, high) if fits else (low, mid - 1)
    words = low
    messages = [{"role": "user", "content": "hi " * words}]
    prompt = _prompt_tokens(script.tokenizer, messages)
    script.say("word " * 50)  # a reply longer than what is left, with no end of turn in reach
    reply = _client(live).chat.completions.create(model="tiny", messages=messages, max_tokens=10**9)
    assert reply.usage.prompt_tokens == prompt and 1 <= context - prompt <= 6  # "hi " is one or two tokens
    assert reply.usage.completion_tokens == context - prompt and reply.choices[0].finish_reason == "length"


def test_time_limit_ends_a_long_generation_with_length(live, script, limits):
    limits(time_limit=0.5)
    script.say(None)  # noise, no end of turn: it would run to the context's end (~4000 tokens)
    reply = _post(live, {"messages": HI, "max_tokens": 4000}).json()
    assert reply["choices"][0]["finish_reason"] == "length"
    assert 1 <= reply["usage"]["completion_tokens"] < 4000


# --------------------------------------------------------------------------------- clients that leave


def _raw_request(live, body: dict) -> socket.socket:
    """Send a chat request on a plain socket (so the test decides exactly when the connection closes)."""
    host, port = live[0].removeprefix("http://").removesuffix("/v1").split(":")
    data = json.dumps(body).encode()
    sock = socket.create_connection((host, int(port)))
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(data), data))
    return sock


@pytest.mark.parametrize("stream", [False, True])
def test_generation_stops_within_one_token_when_the_client_leaves(live, script, stream):
    engine = live[2]
    script.say(None)
    script.hold_at(5)  # generation waits inside the pass that makes token 5
    sock = _raw_request(live, {"messages": HI, "max_tokens": 4000, "stream": stream})
    assert script.paused.wait(SLOW), "generation did not start"
    job = engine.current
    sock.close()  # the client goes away mid-generation
    _until(lambda: job.cancel.is_set(), "the server noticed the client left")
    script.resume()
    _until(lambda: engine.current is None, "generation ended")
    assert script.step == 5  # not one forward pass more
    assert job.result is None or job.result.finish_reason == "cancelled"
    script.say("Still here.")
    assert _post(live, {"messages": HI}).json()["choices"][0]["message"]["content"] == "Still here."


def test_request_whose_client_left_while_waiting_never_starts(live, script):
    engine = live[2]
    script.say(None)
    script.hold_at(2)
    first = _raw_request(live, {"messages": HI, "max_tokens": 50})
    assert script.paused.wait(SLOW)
    prefills = script.prefills
    waiting = _raw_request(live, {"messages": HI, "max_tokens": 4000})
    _until(lambda: engine.status()["waiting"] == 1, "the second request waits in line")
    waiting.close()
    _until(lambda: all(j.cancel.is_set() for j in engine.pending if j is not engine.current),
           "the server noticed the waiting client left")
    script.resume()
    _until(lambda: engine.status() == {"generating": False, "waiting": 0, "running": 0, "slots": 1}, "the line is empty")
    first.close()
    assert script.prefills == prefills  # the abandoned request never reached the model


# --------------------------------------------------------------------------------- AutoGen


# AutoGen warns that the reply names another model ("tiny"): that is the server telling the truth.
@pytest.mark.filterwarnings("ignore:Resolved model mismatch")
def test_autogen_records_finish_reason_stop_and_length(live, script):
    from autogen_core.models import UserMessage
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    async def run() -> list[tuple[str, str]]:
        results = []
        for max_tokens, include_usage in ((None, False), (2, False), (None, True), (2, True)):
            extra = {} if max_tokens is None else {"max_tokens": max_tokens}
            client = OpenAIChatCompletionClient(
                model="qwen/Qwen1.5-0.5B-Chat-GGUF", base_url=live[0], api_key="lm-studio",
                model_info={"vision": False, "function_calling": True, "json_output": False, "family": "unknown",
                            "structured_output": False}, **extra)
            try:
                messages = [UserMessage(content="hi", source="user")]
                plain = await client.create(messages)
                streamed = [item async for item in client.create_stream(messages, include_usage=include_usage)][-1]
            finally:
                await client.close()
            results += [(plain.finish_reason, plain.content), (streamed.finish_reason, streamed.content)]
            if include_usage:
                assert streamed.usage.completion_tokens == (max_tokens or len(script.ids))
        return results

    results = asyncio.run(run())
    assert [r[0] for r in results] == ["stop", "stop", "length", "length"] * 2
    assert results[0][1] == results[1][1] == "Hello there, friend."


def test_autogen_receives_tool_calls(live, script):
    from autogen_core import FunctionCall
    from autogen_core.models import UserMessage
    from autogen_core.tools import FunctionTool
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    def get_weather(city: str) -> str:
        """Current weather in a city."""
        return "sunny"

    script.say(TOOL_REPLY)

    async def run():
        client = OpenAIChatCompletionClient(
            model="tiny", base_url=live[0], api_key="x",
            model_info={"vision": False, "function_calling": True, "json_output": False, "family": "unknown",
                        "structured_output": False})
        try:
            tools = [FunctionTool(get_weather, description="Current weather in a city")]
            plain = await client.create([UserMessage(content="hi", source="user")], tools=tools)
            streamed = [i async for i in client.create_stream([UserMessage(content="hi", source="user")],
                                                               tools=tools)][-1]
        finally:
            await client.close()
        return plain, streamed

    for result in asyncio.run(run()):
        assert result.finish_reason == "function_calls"
        (call,) = result.content
        assert isinstance(call, FunctionCall) and call.name == "get_weather"
        assert json.loads(call.arguments) == {"city": "Paris"}
