"""qwenlab.serve with a model that really thinks (the mini thinker: the offline model + its LoRA adapter),
called over HTTP on 127.0.0.1 by the openai SDK and AutoGen: the thought comes back apart from the answer,
under both field names, streamed or not, and both thinking switches turn it off.
"""

from __future__ import annotations

import asyncio

import pytest

from qwenlab import catalog, serve

pytestmark = pytest.mark.real_model

SLOW = 1800.0  # seconds a client waits: a busy 2-core machine
QUESTION = [{"role": "user", "content": "Add 483 and 7061."}]
TAGS = ("<think>", "</think>")


def _thought(message) -> str | None:
    """What a client that knows either name reads (llama.cpp / LM Studio vs vLLM / Ollama / OpenRouter)."""
    return getattr(message, "reasoning", None) or getattr(message, "reasoning_content", None)


@pytest.fixture(scope="module")
def thinker(offline_dir):
    srv = serve.start(catalog.THINKER_MODEL, timeout=SLOW)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(thinker):
    return thinker.client(timeout=SLOW, max_retries=0)


def _ask(client, model: str, **kwargs):
    return client.chat.completions.create(model=model, messages=QUESTION, max_tokens=160, temperature=0, **kwargs)


def test_the_thinker_is_served_with_its_adapter_and_thinks(thinker, client):
    reply = _ask(client, thinker.model)
    message = reply.choices[0].message
    extra = message.model_extra
    assert reply.choices[0].finish_reason == "stop"
    assert extra["reasoning"] == extra["reasoning_content"] == _thought(message)
    assert "7544" in _thought(message) and "7544" in message.content  # the plain offline model never thinks
    assert not any(tag in message.content or tag in _thought(message) for tag in TAGS)


@pytest.mark.parametrize("switch", [{"chat_template_kwargs": {"enable_thinking": False}},
                                    {"reasoning_effort": "none"}], ids=["enable_thinking", "reasoning_effort"])
def test_either_switch_turns_the_thought_off(thinker, client, switch):
    message = _ask(client, thinker.model, extra_body=switch).choices[0].message
    assert _thought(message) is None and "reasoning" not in message.model_extra
    assert "7544" in message.content and not any(tag in message.content for tag in TAGS)


def test_the_stream_sends_the_same_thought_and_answer_in_deltas(thinker, client):
    whole = _ask(client, thinker.model).choices[0].message
    deltas = [c.choices[0].delta for c in _ask(client, thinker.model, stream=True) if c.choices]
    streamed = [d for d in deltas if _thought(d)]
    assert streamed and all(d.model_extra["reasoning"] == d.model_extra["reasoning_content"] for d in streamed)
    assert "".join(_thought(d) for d in streamed) == _thought(whole)
    assert "".join(d.content or "" for d in deltas) == whole.content


@pytest.mark.filterwarnings("ignore:Resolved model mismatch")
@pytest.mark.parametrize("stream", [False, True], ids=["create", "create_stream"])
def test_an_autogen_agent_on_the_thinker_gets_no_think_tags_in_its_messages(thinker, stream):
    from autogen_agentchat.agents import AssistantAgent
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    async def run():
        model_client = OpenAIChatCompletionClient(
            model=thinker.model, api_key=thinker.api_key, base_url=thinker.base_url, temperature=0, max_tokens=160,
            model_info={"vision": False, "function_calling": False, "json_output": False, "family": "unknown",
                        "structured_output": False})
        try:
            agent = AssistantAgent("calc", model_client=model_client, model_client_stream=stream)
            return await agent.run(task=QUESTION[0]["content"])
        finally:
            await model_client.close()

    messages = asyncio.run(run()).messages
    answer = messages[-1]
    assert type(answer).__name__ == "TextMessage" and "7544" in answer.content
    assert not any(tag in str(m.content) for m in messages for tag in TAGS), [m.content for m in messages]
    thoughts = [m for m in messages if type(m).__name__ == "ThoughtEvent"]
    assert thoughts and "7544" in thoughts[0].content  # the thought is kept, as a thought
