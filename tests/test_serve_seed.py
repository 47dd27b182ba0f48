"""The seed's AutoGen Studio setup, exactly as its section says (model ``qwen/Qwen1.5-0.5B-Chat-GGUF``,
key ``lm-studio``, base URL ``http://localhost:1234/v1``), against ``qwenlab serve offline --port 1234``
started with no other flag: one model is served, so it answers whatever model a client names."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest



from .conftest import PROBE, stop_with_ctrl_c

SEED_MODEL = "qwen/Qwen1.5-0.5B-Chat-GGUF"
SEED_KEY = "lm-studio"
SEED_URL = "http://localhost:1234/v1"
SLOW = 1800.0


def _port_taken(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def seed_server(offline_dir, tmp_path):
    if _port_taken(1234):
        pytest.skip("port 1234 is in use (LM Studio?)")
    log_path = tmp_path / "serve.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "qwenlab.cli", "serve", "offline", "--port", "1234"],
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + SLOW
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                if httpx.get("http://127.0.0.1:1234/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.5)
        yield log_path
    finally:
        stop_with_ctrl_c(proc)


@pytest.mark.real_model
@pytest.mark.filterwarnings("ignore:Resolved model mismatch")  # AutoGen noting the reply names "offline"
def test_seed_autogen_studio_setup_gets_answers(seed_server):
    from autogen_agentchat.agents import AssistantAgent
    from autogen_core.models import UserMessage
    from autogen_ext.models.openai import OpenAIChatCompletionClient
    from openai import OpenAI

    async def run() -> tuple[str, object]:
        model_client = OpenAIChatCompletionClient(
            model=SEED_MODEL, api_key=SEED_KEY, base_url=SEED_URL, temperature=0, max_tokens=8,
            model_info={"vision": False, "function_calling": False, "json_output": False,
                        "family": "unknown", "structured_output": False})
        agent = AssistantAgent("assistant", model_client=model_client,
                               system_message="You are a helpful assistant. Answer briefly.")
        try:
            result = await agent.run(task=PROBE)
            streamed = [item async for item in model_client.create_stream(
                [UserMessage(content=PROBE, source="user")], include_usage=True)][-1]
        finally:
            await model_client.close()
        return result.messages[-1].content, streamed

    answer, streamed = asyncio.run(run())
    assert "Paris" in answer
    assert "Paris" in streamed.content and streamed.finish_reason == "stop" and streamed.usage.prompt_tokens > 10
    (card,) = OpenAI(base_url=SEED_URL, api_key=SEED_KEY).models.list().data
    assert card.id == "offline" and card.model_extra["qwenlab"]["answers_any_model_name"] is True
    log = seed_server.read_text()
    assert f"A client asked for model '{SEED_MODEL}': answered by 'offline'" in log
    assert "naming any model gets offline" in log
