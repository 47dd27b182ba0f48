"""qwenlab.serve on the llama.cpp engine.

Fast tests: a stand-in llama.cpp (it sends the messages llama.cpp sends: prompt progress, text pieces, usage,
errors) behind the real app, over real HTTP on 127.0.0.1 — thinking, tool calls, stop strings, the 400 for a
too-long prompt. ``real_model`` tests: ``qwenlab serve offline --engine llama.cpp --slots 2`` as a child process,
called by the openai client, against ``load_model("offline", engine="llama.cpp")`` in this process.
"""

from __future__ import annotations

import re
import socket
import threading
import time

import httpx
import pytest

from qwenlab import serve

SLOW = 300.0
HI = [{"role": "user", "content": "hi"}]
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def _until(check, what: str, seconds: float = SLOW) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


# --------------------------------------------------------------------------------- a stand-in llama.cpp


class FakeServer:
    """Answers like xllamacpp's ``Server.handle_chat_completions`` with a callback: progress, pieces, usage."""

    def __init__(self):
        self.pieces: list[str] = ["Hello", " there."]
        self.prompt_tokens = 12
        self.error: dict | None = None
        self.bodies: list[dict] = []
        self.sent = 0

    def handle_chat_completions(self, body: dict, on_chunk) -> None:
        self.bodies.append(body)
        if self.error:
            on_chunk({"error": self.error})
            return
        if on_chunk({"prompt_progress": {"total": self.prompt_tokens, "cache": 0, "processed": 0}}):
            return
        for piece in self.pieces:
            self.sent += 1
            if on_chunk({"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}):
                return
        on_chunk({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        on_chunk({"choices": [], "usage": {"prompt_tokens": self.prompt_tokens,
                                           "completion_tokens": len(self.pieces)}})


class FakeLlm:
    engine = "llama.cpp"

    def __init__(self, tmp_path):
        from qwenlab.engines import LlamaCppModel

        self.path = tmp_path / "fake.gguf"
        self.context, self.slots, self.name = 64, 2, "fake"
        self.recommended: dict = {}
        self.seed = None
        self._server = FakeServer()
        self.request = LlamaCppModel.request.__get__(self)  # the real request builder
        self.handle = LlamaCppModel.handle.__get__(self)    # the real way the server reaches llama.cpp
        self._catalog_sampling = lambda thinking: {}


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    """``(base_url, fake llama.cpp server, engine)`` of an in-process server on the stand-in."""
    import uvicorn

    import qwenlab.serve.llamacpp as engine_module

    template = "{% if enable_thinking %}<think>{% endif %}"
    own = engine_module.gguf_chat_template
    engine_module.gguf_chat_template = lambda path: template  # a thinking model's template
    llm = FakeLlm(tmp_path_factory.mktemp("gguf"))
    try:
        app = serve.build_app(llm, None, "fake")
    finally:
        engine_module.gguf_chat_template = own
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    _until(lambda: server.started, "the server started", 60)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1", llm._server, app.state.engine
    server.should_exit = True
    thread.join(30)


def _say(fake, *pieces: str, prompt_tokens: int = 12, error: dict | None = None) -> None:
    fake[1].pieces, fake[1].prompt_tokens, fake[1].error = list(pieces), prompt_tokens, error


def _client(base: str):
    from openai import OpenAI

    return OpenAI(base_url=base, api_key="x", timeout=SLOW, max_retries=0)


def test_fake_thought_comes_back_under_both_reasoning_names(fake):
    _say(fake, "<think>", "9.9 is bigger", "</think>", "\n\n", "9.9")
    reply = httpx.post(f"{fake[0]}/chat/completions", json={"messages": HI}, timeout=SLOW).json()
    message = reply["choices"][0]["message"]
    assert (message["content"], message["reasoning_content"], message["reasoning"]) == \
        ("9.9", "9.9 is bigger", "9.9 is bigger")
    assert reply["usage"] == {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}


def test_fake_enable_thinking_and_reasoning_effort_reach_the_template(fake):
    _say(fake, "ok")
    client = _client(fake[0])
    client.chat.completions.create(model="m", messages=HI, extra_body={"chat_template_kwargs": {"enable_thinking": False}})
    assert fake[1].bodies[-1]["chat_template_kwargs"] == {"enable_thinking": False}
    client.chat.completions.create(model="m", messages=HI, reasoning_effort="low")
    assert fake[1].bodies[-1]["chat_template_kwargs"] == {"enable_thinking": True}


def test_fake_tool_call_is_parsed_and_stream_has_openai_chunk_shapes(fake):
    _say(fake, "<tool_call>", '\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n', "</tool_call>")
    client = _client(fake[0])
    chunks = list(client.chat.completions.create(model="m", messages=HI, tools=TOOLS, stream=True,
                                                 stream_options={"include_usage": True}))
    calls = [c for ch in chunks if ch.choices for c in (ch.choices[0].delta.tool_calls or [])]
    assert [(c.function.name, c.function.arguments) for c in calls] == [("get_weather", '{"city": "Paris"}')]
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "tool_calls"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3
    assert fake[1].bodies[-1]["tools"] == TOOLS


def test_fake_stop_string_ends_the_reply_and_llama_cpp_stops_on_that_token(fake):
    _say(fake, "one", " two", " END", " three", " four")
    fake[1].sent = 0
    reply = _client(fake[0]).chat.completions.create(model="m", messages=HI, stop=["END"])
    assert reply.choices[0].message.content == "one two "
    assert reply.choices[0].finish_reason == "stop"
    assert fake[1].sent == 3  # the callback said stop on the piece that completed the stop string


@pytest.mark.parametrize("stream", [False, True])
def test_fake_too_long_prompt_is_a_400_with_both_numbers_before_any_stream(fake, stream):
    import openai

    _say(fake, "never sent", prompt_tokens=80)
    with pytest.raises(openai.BadRequestError) as err:
        _client(fake[0]).chat.completions.create(model="m", messages=HI, stream=stream)
    assert "80 tokens" in str(err.value) and "at most 63" in str(err.value)
    assert err.value.body["code"] == "context_length_exceeded"


def test_fake_llama_cpp_context_error_is_a_400_with_its_numbers(fake):
    import openai

    _say(fake, error={"type": "exceed_context_size_error", "message": "too long", "n_prompt_tokens": 700,
                      "n_ctx": 64})
    with pytest.raises(openai.BadRequestError) as err:
        _client(fake[0]).chat.completions.create(model="m", messages=HI)
    assert "700 tokens" in str(err.value) and "63" in str(err.value)


def test_fake_model_card_names_engine_and_slots(fake):
    card = httpx.get(f"{fake[0]}/models", timeout=SLOW).json()["data"][0]
    assert (card["qwenlab"]["engine"], card["qwenlab"]["slots"], card["context_length"]) == ("llama.cpp", 2, 64)


def test_slots_are_for_llama_cpp_only():
    with pytest.raises(ValueError, match="llama.cpp"):
        serve.start("offline", slots=4)


# --------------------------------------------------------------------------------- the real engine

CONTEXT = 1024


@pytest.fixture(scope="module")
def real():
    """``(server, llm)``: ``qwenlab serve offline --engine llama.cpp --slots 2`` and the same GGUF in-process."""
    try:
        import xllamacpp  # noqa: F401
    except ImportError as err:
        print(f"skipped: xllamacpp does not import here ({err})")
        pytest.skip(f"xllamacpp does not import here ({err})")
    import qwenlab

    llm = qwenlab.load_model("offline", engine="llama.cpp", context=CONTEXT)
    server = serve.start("offline", engine="llama.cpp", slots=2, context=CONTEXT, timeout=SLOW)
    yield server, llm
    server.stop()
    llm.close()


def _health(server) -> dict:
    return httpx.get(f"{server.base_url.removesuffix('/v1')}/health", timeout=60).json()


QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]


@pytest.mark.real_model
def test_greedy_reply_equals_the_engine_and_streaming_joins_to_it(real):
    server, llm = real
    expected = llm.chat(QUESTION, do_sample=False, max_new_tokens=40)
    client = server.client(timeout=SLOW, max_retries=0)
    reply = client.chat.completions.create(model="anything", messages=QUESTION, temperature=0, max_tokens=40)
    assert reply.choices[0].message.content == expected.text
    assert "Paris" in expected.text
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == \
        (expected.prompt_tokens, expected.completion_tokens)
    chunks = list(client.chat.completions.create(model="anything", messages=QUESTION, temperature=0, max_tokens=40,
                                                 stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected.text
    assert chunks[-1].usage.completion_tokens == expected.completion_tokens


@pytest.mark.real_model
def test_too_long_prompt_is_a_400_naming_both_numbers(real):
    import openai

    server, _ = real
    long = [{"role": "user", "content": "hello " * 1500}]
    with pytest.raises(openai.BadRequestError) as err:
        server.client(max_retries=0).chat.completions.create(model="m", messages=long, stream=True)
    numbers = [int(n) for n in re.findall(r"(\d+) tokens", str(err.value))]
    assert numbers and numbers[0] > CONTEXT - 1 and f"at most {CONTEXT - 1}" in str(err.value)


@pytest.mark.real_model
def test_client_disconnect_stops_generation_and_the_next_request_is_answered(real):
    server, _ = real
    story = [{"role": "user", "content": "Write a very long story about a dragon, at least 2000 words."}]
    body = {"messages": story, "max_tokens": 900, "stream": True, "temperature": 0}
    with httpx.stream("POST", f"{server.base_url}/chat/completions", json=body, timeout=SLOW) as response:
        lines = response.iter_lines()
        while '"content": "' not in next(lines) or not (_health(server)["running"] == 1):
            pass  # until text arrives and the generation is counted
    # closed after a few tokens: the server stops it (900 tokens would take well over a minute here)
    _until(lambda: _health(server)["running"] == 0, "the generation stopped", 60)
    assert "client went away" in server.logs(50)
    reply = server.client(max_retries=0).chat.completions.create(model="m", messages=HI, max_tokens=8)
    assert reply.choices[0].message.content


@pytest.mark.real_model
def test_two_requests_generate_at_once_with_two_slots(real):
    server, _ = real
    assert _health(server)["slots"] == 2
    count = [{"role": "user", "content": "Count from 1 to 60, separated by commas."}]
    arrivals: dict[int, list[float]] = {0: [], 1: []}

    def read(i: int) -> str:
        stream = server.client(timeout=SLOW, max_retries=0).chat.completions.create(
            model="m", messages=count, max_tokens=48, temperature=0, stream=True)
        text = []
        for c in stream:
            if c.choices and c.choices[0].delta.content:
                arrivals[i].append(time.monotonic())
                text.append(c.choices[0].delta.content)
        return "".join(text)

    results: list[str] = ["", ""]
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, read(i))) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(SLOW)
    assert all(results) and results[0] == results[1]
    first, second = sorted(arrivals.values(), key=lambda a: a[0])
    assert second[0] < first[-1]  # the second reply began before the first ended: served together
