"""qwenlab.serve: a real OpenAI-compatible server on 127.0.0.1, called by the openai SDK, httpx and AutoGen.

The offline-model server starts once for this module (``server``); lifecycle tests (stop, API key,
parent death) use the tiny Qwen3, which loads in seconds. Timeouts are generous: CI machines are slow.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from qwenlab import catalog, serve
from qwenlab.cli import main

from .conftest import PROBE

SLOW = 1800.0  # seconds a client waits: requests queue behind each other on a busy 2-core machine


def _port_is_free(host: str, port: int) -> bool:
    """Nobody listens there and a new server can take the port (as servers do, with SO_REUSEADDR)."""
    with socket.socket() as probe:
        if probe.connect_ex((host, port)) == 0:
            return False
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen()
        except OSError:
            return False
    return True


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _ask(client, model: str, max_tokens: int = 8, **kwargs):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": PROBE}],
                                          max_tokens=max_tokens, temperature=0, **kwargs)


@pytest.fixture(scope="module")
def server(offline_dir):
    srv = serve.start(offline_dir, timeout=SLOW)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    # max_retries=0: a lost request must show up as an error, not be retried silently
    return server.client(timeout=SLOW, max_retries=0)


# --------------------------------------------------------------------------------- no server needed


def test_listening_beyond_loopback_needs_an_api_key():
    with pytest.raises(ValueError, match="API key"):
        serve.check_host("0.0.0.0", None)
    serve.check_host("0.0.0.0", "a-long-secret")
    serve.check_host("127.0.0.1", None)
    with pytest.raises(ValueError, match="API key"):
        serve.start("offline", host="0.0.0.0")  # refused before any process starts


def test_cli_refuses_lan_without_key(capsys, monkeypatch):
    monkeypatch.delenv("QWENLAB_API_KEY", raising=False)
    assert main(["serve", "offline", "--host", "0.0.0.0"]) == 2
    assert "qwenlab serve: " in (err := capsys.readouterr().err) and "API key" in err


def test_unknown_model_fails_before_starting_a_process():
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with pytest.raises(catalog.UnknownModelError):
        serve.start("qwen/Qwen-0.5B")
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= before


def test_pickle_only_folder_is_refused_before_starting(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(serve.ServeError, match="safetensors"):
        serve.start(tmp_path)


def test_served_names():
    assert serve.served_name("offline") == "offline"
    assert serve.served_name("/somewhere/Qwen2.5-Coder-0.5B-Instruct") == "Qwen2.5-Coder-0.5B-Instruct"


# --------------------------------------------------------------------------------- tiny-model servers


def test_api_key_reasoning_default_and_stop(tiny_dir):
    srv = serve.start(tiny_dir, api_key="s3cret-key", reasoning="off", timeout=SLOW)
    try:
        assert srv.running and srv.base_url.startswith("http://127.0.0.1:")
        denied = httpx.get(f"{srv.base_url}/models", timeout=60)
        assert denied.status_code == 401 and "API key" in denied.json()["error"]["message"]
        wrong = httpx.get(f"{srv.base_url}/models", headers={"Authorization": "Bearer nope"}, timeout=60)
        assert wrong.status_code == 401
        client = srv.client(timeout=SLOW, max_retries=0)
        assert [m.id for m in client.models.list()] == [srv.model]

        def prompt_tokens(**extra) -> int:
            reply = client.chat.completions.create(model=srv.model, max_tokens=1,
                                                   messages=[{"role": "user", "content": "hi"}], **extra)
            return reply.usage.prompt_tokens

        # Qwen3's template adds an empty <think></think> block when thinking is off: the server default
        # (reasoning="off") and a request's chat_template_kwargs both reach the template.
        default = prompt_tokens()
        assert default == prompt_tokens(extra_body={"chat_template_kwargs": {"enable_thinking": False}})
        assert default > prompt_tokens(extra_body={"chat_template_kwargs": {"enable_thinking": True}})
    finally:
        srv.stop()
    assert not srv.running and _gone(srv.pid)
    assert srv.pid not in {p.pid for p in psutil.Process().children(recursive=True)}
    assert _port_is_free("127.0.0.1", srv.port)
    assert srv not in serve.running_servers()
    assert not srv.log_path.exists()  # its temporary folder is cleaned up
    srv.stop()  # twice is fine


def test_server_exits_when_its_parent_is_killed(tiny_dir, tmp_path):
    """A notebook kernel that is restarted (killed) must not leave its server behind."""
    script = ("import sys, time, json; from qwenlab import serve\n"
              f"s = serve.start({str(tiny_dir)!r}, timeout={SLOW})\n"
              "print(json.dumps({'pid': s.pid, 'port': s.port, 'log': str(s.log_path)}), flush=True)\n"
              "time.sleep(3600)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        line = parent.stdout.readline()
        assert line, "the parent process died before its server started"
        child = json.loads(line)
        assert httpx.get(f"http://127.0.0.1:{child['port']}/health", timeout=60).status_code == 200
        parent.send_signal(signal.SIGKILL)  # no atexit, no cleanup: like a kernel restart
        parent.wait(30)
        deadline = time.monotonic() + 60
        while not _gone(child["pid"]) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _gone(child["pid"]), "the server outlived its parent"
        assert _port_is_free("127.0.0.1", child["port"])
        assert not os.path.exists(child["log"])  # the orphaned server cleaned up its temporary folder
    finally:
        parent.kill()
        if "child" in locals() and not _gone(child["pid"]):
            os.kill(child["pid"], signal.SIGKILL)


# --------------------------------------------------------------------------------- the offline model


@pytest.mark.real_model
def test_models_endpoint_lists_the_served_model(server, client):
    assert [m.id for m in client.models.list()] == [server.model]
    assert client.models.retrieve(server.model).id == server.model


@pytest.mark.real_model
def test_chat_completion_answers_the_probe(server, client):
    reply = _ask(client, server.model)
    assert "Paris" in reply.choices[0].message.content
    assert reply.choices[0].finish_reason == "stop"
    assert reply.model == server.model
    assert reply.usage.prompt_tokens > 10 and 1 <= reply.usage.completion_tokens <= 8


@pytest.mark.real_model
def test_streaming_chunks_join_to_the_same_answer(server, client):
    pieces, finish = [], None
    for chunk in _ask(client, server.model, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    assert pieces, "no content chunks arrived"
    assert "".join(pieces).strip() == _ask(client, server.model).choices[0].message.content.strip()
    assert "Paris" in "".join(pieces) and finish == "stop"


BAD_REQUESTS = {
    "malformed JSON": (b'{"model": "x", "messages": [', "not valid JSON"),
    "numbers as content": ({"messages": [{"role": "user", "content": [1, 2, 3]}]}, "must be a text part"),
    "logprobs": ({"messages": [{"role": "user", "content": "hi"}], "logprobs": True}, "logprobs"),
    "negative max_tokens": ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": -1}, "max_tokens"),
    "empty messages": ({"messages": []}, "messages"),
    "unknown field": ({"messages": [{"role": "user", "content": "hi"}], "top_k": 5}, "top_k"),
}


@pytest.mark.real_model
@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_request_gets_4xx_with_a_message_then_the_server_goes_on(server, client, case):
    body, words = BAD_REQUESTS[case]
    if isinstance(body, dict):
        body = json.dumps({"model": server.model, **body}).encode()
    reply = httpx.post(f"{server.base_url}/chat/completions", content=body, timeout=SLOW,
                       headers={"Content-Type": "application/json"})
    assert 400 <= reply.status_code < 500
    assert words in reply.json()["error"]["message"]
    assert "Paris" in _ask(client, server.model, max_tokens=3).choices[0].message.content


@pytest.mark.real_model
def test_openai_client_shows_the_reason(server, client):
    import openai

    with pytest.raises(openai.BadRequestError, match="response_format"):
        _ask(client, server.model, response_format={"type": "json_object"})
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        _ask(client, server.model, max_tokens=-3)


@pytest.mark.real_model
def test_autogen_assistant_agent_runs_against_the_local_server(server):
    from autogen_agentchat.agents import AssistantAgent
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    async def run() -> str:
        model_client = OpenAIChatCompletionClient(
            model=server.model, base_url=server.base_url, api_key=server.api_key, temperature=0, max_tokens=8,
            model_info={"vision": False, "function_calling": False, "json_output": False,
                        "family": "unknown", "structured_output": False},
        )
        agent = AssistantAgent("assistant", model_client=model_client,
                               system_message="You are a helpful assistant. Answer briefly.")
        try:
            result = await agent.run(task=PROBE)
        finally:
            await model_client.close()
        return result.messages[-1].content

    assert "Paris" in asyncio.run(run())
