"""Notebooks 00–02's exercises: typical wrong answers get the misconception, right ones pass (#14)."""

from __future__ import annotations

from types import SimpleNamespace
from urllib.parse import quote

import pytest
import torch

from qwenlab.exercises import EXERCISES
from qwenlab.exercises.core import judge


def _wrong(key: str, answer, **context) -> str:
    passed, message = judge(EXERCISES[key], answer, context)
    assert not passed
    return message


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    import qwenlab

    return AutoTokenizer.from_pretrained(qwenlab.ensure_offline_model())


def test_chat_tokens_written_by_hand_agree_with_the_template_and_forgetting_the_generation_prompt_is_named(tokenizer):
    def chatml(messages, tail="<|im_start|>assistant\n"):
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages) + tail
        return len(tokenizer.encode(text))

    assert judge(EXERCISES["00.w1"], chatml, {"tokenizer": tokenizer}) == (True, "")
    assert "add_generation_prompt" in _wrong("00.w1", lambda m: chatml(m, tail=""), tokenizer=tokenizer)
    assert "content" in _wrong("00.w1", lambda m: sum(len(tokenizer.encode(x["content"])) for x in m),
                               tokenizer=tokenizer)


def test_max_new_tokens_predictions(tokenizer):
    short = SimpleNamespace(completion_tokens=5, finish_reason="length")
    assert judge(EXERCISES["00.p2"], (5, "length"), {"short": short}) == (True, "")
    assert "不包括提示" in _wrong("00.p2", (40, "length"), short=short)
    assert "'stop'" in _wrong("00.p2", (5, "stop"), short=short)
    assert "贪心" in _wrong("00.p1", "different", plain=[1, 2], helper=[1, 2])
    assert "BOS" in _wrong("00.2", 1, tokenizer=tokenizer, question="人工智能未来会取代人类吗？")
    assert "解码了整个序列" in _wrong("00.3", "What is the capital of France? Paris")


def test_bytes_for_is_checked_against_dtype_sizes_and_bits_or_one_size_for_all_are_named():
    ctx = {"n_params": 494_032_768}
    assert judge(EXERCISES["01.w1"], lambda n, dt: n * dt.itemsize, ctx) == (True, "")
    assert "比特" in _wrong("01.w1", lambda n, dt: n * dt.itemsize * 8, **ctx)
    assert "字节数不同" in _wrong("01.w1", lambda n, dt: n * 4, **ctx)
    assert "GB" in _wrong("01.w1", lambda n, dt: n * dt.itemsize / 1e9, **ctx)
    assert torch.float16.itemsize == 2


def test_environment_predictions_name_the_misconception():
    assert "CPU" in _wrong("01.p1", "faster", speed={"float32": 1.0, "float16": 80.0})
    assert "import" in _wrong("01.p2", "https://hf-mirror.com", endpoint="https://huggingface.co")
    assert "重定向" in _wrong("01.p3", [], files=["=4.37.0"])
    assert judge(EXERCISES["01.p3"], "=4.37.0", {"files": ["=4.37.0"]}) == (True, "")
    assert "1.2" in _wrong("01.1", 3.0)                       # weights only, no runtime margin
    assert "bf16" in _wrong("01.2", "Qwen/Qwen2.5-0.5B-Instruct")


def test_hub_url_and_cache_folder_agree_with_huggingface_hub_and_an_unquoted_revision_is_named():
    def url(repo_id, filename, revision, endpoint):
        return f"{endpoint}/{repo_id}/resolve/{quote(revision, safe='')}/{filename}"

    assert judge(EXERCISES["02.w1"], url, {}) == (True, "")
    assert "%2F" in _wrong("02.w1", lambda r, f, rev, ep: f"{ep}/{r}/resolve/{rev}/{f}")
    assert "blob" in _wrong("02.w1", lambda r, f, rev, ep: f"{ep}/{r}/blob/{quote(rev, safe='')}/{f}")
    assert judge(EXERCISES["02.w2"], lambda r: "models--" + r.replace("/", "--"), {}) == (True, "")
    assert "models--" in _wrong("02.w2", lambda r: r.replace("/", "--"))


def test_download_predictions_name_the_misconception():
    gets = [object()] * 4
    assert "Range" in _wrong("02.p1", 1, requests=gets)
    assert "最后剩下" in _wrong("02.p1", 3, requests=gets)
    assert "SHA-256" in _wrong("02.p2", 1_260_367_448, again=SimpleNamespace(bytes_fetched=0))
    assert "unreachable" in _wrong("02.1", "huggingface", report=SimpleNamespace(source="mirror"))
    message = _wrong("02.2", "model.safetensors")
    assert "from_pretrained" in message and "config.json" not in message   # names the idea, not the answer
