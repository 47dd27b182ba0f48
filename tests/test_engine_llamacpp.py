"""The llama.cpp engine (qwenlab.engines, xllamacpp): the same answers, streaming and thinking parse as the
PyTorch engine, on the offline model's own GGUF file; clear errors for a missing package or a non-GGUF file."""

from __future__ import annotations

import os
import sys

import pexpect
import pytest

import qwenlab
from qwenlab.engines import EngineNotInstalledError, NotGGUFError, is_gguf
from qwenlab.evaluation import probes, same_answer
from qwenlab.generation import ContextTooLongError, generate

try:
    import xllamacpp  # noqa: F401

    WHY_NOT = None
except ImportError as err:  # the course installs it (extra "engine"); a platform without a wheel skips these
    WHY_NOT = f"xllamacpp is not importable ({err}): pip install xllamacpp"
    print(f"test_engine_llamacpp: real-model tests skipped: {WHY_NOT}", file=sys.stderr)

needs_engine = pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")
QUESTION = "Explain in two sentences what a Python list is."


@pytest.fixture(scope="module")
def llm():
    model = qwenlab.load_model("offline", engine="llama.cpp", context=1024)
    yield model
    model.close()


# ---- errors a student can act on (no model needed) ------------------------------------------------------------

def test_a_file_that_is_not_gguf_is_refused_with_one_clear_line(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(NotGGUFError, match=r"is not a GGUF file.*\.gguf files only"):
        qwenlab.load_model(fake, engine="llama.cpp")
    assert not is_gguf(fake) and not is_gguf(tmp_path)


def test_a_transformers_folder_is_refused_and_points_to_the_pytorch_engine(tiny_dir):
    with pytest.raises(NotGGUFError, match="engine='pytorch'"):
        qwenlab.load_model(tiny_dir, engine="llama.cpp")


def test_an_unknown_engine_or_a_pytorch_only_option_is_refused(tiny_dir):
    with pytest.raises(ValueError, match="'pytorch', 'llama.cpp'"):
        qwenlab.load_model(tiny_dir, engine="vllm")
    with pytest.raises(TypeError, match="threads"):
        qwenlab.load_model(tiny_dir, threads=2)
    with pytest.raises(ValueError, match="trust_remote_code"):
        qwenlab.load_model(tiny_dir, engine="llama.cpp", trust_remote_code=True)


def test_without_xllamacpp_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF" + bytes(60))
    monkeypatch.setitem(sys.modules, "xllamacpp", None)  # import xllamacpp now raises ImportError
    with pytest.raises(EngineNotInstalledError, match="pip install xllamacpp.*make install"):
        qwenlab.load_model(gguf, engine="llama.cpp")


def test_chat_command_says_in_one_line_when_the_file_is_not_gguf(tmp_path, capsys):
    from qwenlab.commands.chat import main

    (tmp_path / "notes.gguf").write_text("hello")
    assert main([str(tmp_path / "notes.gguf"), "--engine", "llama.cpp", "--no-autosave"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "is not a GGUF file" in err[-1]


# ---- the offline model's GGUF on llama.cpp --------------------------------------------------------------------

@pytest.mark.real_model
@needs_engine
def test_greedy_answers_match_the_pytorch_engine_on_every_probe(llm, offline):
    model, tokenizer = offline
    for probe in probes():
        ours = llm.chat(probe.question, do_sample=False, max_new_tokens=16, enable_thinking=False)
        torch_answer = generate(model, tokenizer, probe.question, do_sample=False, max_new_tokens=16,
                                enable_thinking=False)
        assert ours.prompt_tokens == torch_answer.prompt_tokens, "the same chat template gives the same prompt"
        assert same_answer(ours.text, torch_answer.text), (probe.question, ours.text, torch_answer.text)
        assert ours.finish_reason == "stop" and "<|im_end|>" not in ours.text


@pytest.mark.real_model
@needs_engine
def test_streamed_pieces_join_to_the_whole_reply(llm):
    whole = llm.chat(QUESTION, do_sample=False, max_new_tokens=40)
    stream = llm.chat_stream(QUESTION, do_sample=False, max_new_tokens=40)
    pieces = list(stream)
    assert len(pieces) > 5 and "".join(pieces) == whole.text == stream.reply.text
    assert stream.reply.completion_tokens == whole.completion_tokens
    assert stream.reply.tokens_per_second > 0


@pytest.mark.real_model
@needs_engine
def test_a_reply_cut_by_max_new_tokens_says_length(llm):
    reply = llm.chat("Tell me a long story about a cat.", max_new_tokens=5, seed=0)
    assert reply.finish_reason == "length" and reply.completion_tokens == 5
    stream = llm.chat_stream("Tell me a long story about a cat.", max_new_tokens=5, seed=0)
    assert stream.finish().finish_reason == "length" and stream.reply.text == reply.text  # same seed, same text


@pytest.mark.real_model
@needs_engine
def test_stop_keeps_what_was_written_and_says_stopped(llm):
    stream = llm.chat_stream("Count from 1 to 100, one number per line.", max_new_tokens=300)
    seen = []
    for piece in stream:
        seen.append(piece)
        if len(seen) == 3:
            stream.stop()
    reply = stream.reply
    assert reply.finish_reason == "stopped" and reply.text == "".join(seen) and len(seen) < 10
    assert llm.chat("Say hi.", max_new_tokens=4).completion_tokens > 0  # the engine is free again


@pytest.mark.real_model
@needs_engine
def test_think_tags_stay_in_the_text_and_split_the_same_way(llm):
    reply = llm.chat("Output the string <think>2+2</think>4 and nothing else.", do_sample=False, max_new_tokens=20)
    assert "<think>" in reply.text and "</think>" in reply.text  # llama.cpp did not take the thought out
    split = reply.split
    assert split.state == "complete" and split.thinking.strip() == "2+2" and split.content.strip().startswith("4")
    assert qwenlab.split_thinking(reply.text).content == split.content


@pytest.mark.real_model
@needs_engine
def test_a_prompt_longer_than_the_context_is_refused_before_generating(llm):
    with pytest.raises(ContextTooLongError, match="context"):
        llm.chat("word " * 1500, max_new_tokens=4)
    assert llm.chat("Say hi.", max_new_tokens=4).completion_tokens > 0


@pytest.mark.real_model
@needs_engine
def test_chat_command_on_llama_cpp_streams_keeps_history_and_refuses_params(tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    child = pexpect.spawn(sys.executable, ["-m", "qwenlab.cli", "chat", "offline", "--engine", "llama.cpp",
                                           "--no-autosave", "--max-new-tokens", "12", "--seed", "0"],
                          cwd=str(tmp_path), env=env, encoding="utf-8", timeout=120, dimensions=(40, 200))
    child.expect(r"qwenlab chat — offline on llama\.cpp, \d+ threads")
    child.expect_exact("你> ")
    child.sendline("What is the capital of France? Answer in one word.")
    child.expect(r"Paris.*\[\d+ tokens, [\d.]+ tok/s \(llama\.cpp\)\]")
    child.expect_exact("你> ")
    child.sendline("/history")
    child.expect_exact("[2 messages]")
    child.sendline("/params temperature=0.5")
    child.expect_exact("not with --engine llama.cpp")
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


@pytest.mark.real_model
@needs_engine
def test_llama_cpps_own_http_server_is_loopback_only_and_locked_with_a_key(llm):
    """xllamacpp starts llama.cpp's HTTP server with every model; nobody without the key may use it."""
    import json
    import urllib.error
    import urllib.request

    url, key = llm.http_endpoint
    assert url.startswith("http://127.0.0.1:")
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}).encode()

    def post(headers: dict) -> int:
        request = urllib.request.Request(f"{url}/chat/completions", data=body,
                                         headers={"Content-Type": "application/json"} | headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as reply:
                return reply.status
        except urllib.error.HTTPError as err:
            return err.code

    assert post({}) == 401
    assert post({"Authorization": "Bearer wrong"}) == 401
    assert post({"Authorization": f"Bearer {key}"}) == 200


@pytest.mark.real_model
@needs_engine
def test_llama_cpp_alone_serves_the_classroom_bench_and_the_overhead_table_compares(llm):
    from qwenlab.bench.classroom import compare_with_llama_cpp_alone, llama_cpp_alone, overhead_table

    url, key = llm.http_endpoint  # the module's model stands in for qwenlab's server: same engine, other door
    other = type("S", (), {"base_url": url, "api_key": key, "model": "offline"})()
    with llama_cpp_alone("offline", slots=2) as bare:
        alone, served = compare_with_llama_cpp_alone(bare, other, (1, 2), rounds=2, max_tokens=6)
    assert [r.students for r in alone.rows] == [r.students for r in served.rows] == [1, 1, 2, 2]
    assert all(r.errors == 0 and all(run.tokens > 0 for run in r.runs) for r in alone.rows + served.rows)
    table = overhead_table(alone, served)
    assert [row[0] for row in table.rows] == [1, 2] and [row[1] for row in table.rows] == [2, 2]
    ratio = float(table.rows[0][4])
    assert ratio > 0 and table.rows[0][8] == ("yes" if ratio >= 0.9 else "no")
