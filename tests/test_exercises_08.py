"""Notebook 08's exercises judge the way a student meets them: right answers pass, common wrong ones name the
misconception (checked without a server: the request-body item then uses the server's own checks only)."""

from __future__ import annotations

import json

from qwenlab.exercises import EXERCISES
from qwenlab.exercises.core import judge
from qwenlab.exercises.nb08 import openai_sse_content
from qwenlab.serve.protocol import chunk, reasoning_delta, sse

CTX = {"model": "offline", "base_url": None}


def _body(model, question, max_tokens, temperature, stream):
    return {"model": model, "messages": [{"role": "user", "content": question}], "max_tokens": max_tokens,
            "temperature": temperature, "stream": stream}


def test_a_request_body_is_judged_by_what_the_server_understands():
    ex = EXERCISES["08.w1"]
    assert judge(ex, _body, CTX) == (True, "")
    # the same meaning in another spelling passes: max_completion_tokens, content as text parts
    def spelled_otherwise(model, question, max_tokens, temperature, stream):
        return {"model": model, "messages": [{"role": "user", "content": [{"type": "text", "text": question}]}],
                "max_completion_tokens": max_tokens, "temperature": temperature, "stream": stream}
    assert judge(ex, spelled_otherwise, CTX)[0]

    def transformers_names(model, question, max_tokens, temperature, stream):
        return {**_body(model, question, max_tokens, temperature, stream), "max_new_tokens": max_tokens}
    passed, message = judge(ex, transformers_names, CTX)
    assert not passed and "max_new_tokens 是 transformers" in message

    def greedy_left_out(model, question, max_tokens, temperature, stream):
        body = _body(model, question, max_tokens, temperature, stream)
        return body if temperature else {k: v for k, v in body.items() if k != "temperature"}
    passed, message = judge(ex, greedy_left_out, CTX)
    assert not passed and "temperature=0 和不写不一样" in message


def _lines(*events: dict) -> list[str]:
    return "".join(sse(e) for e in events).split("\n") + ["data: [DONE]", ""]


def test_the_sse_reference_is_the_openai_packages_own_parsing():
    lines = _lines(chunk("c", "m", {"role": "assistant", "content": ""}), chunk("c", "m", reasoning_delta("hmm")),
                   chunk("c", "m", {"content": 'data: "x"\n'}), chunk("c", "m", {}, "stop"))
    assert openai_sse_content(lines) == 'data: "x"\n'


def test_joining_the_thought_too_is_named_as_the_mistake():
    def with_thought(lines):
        text = ""
        for line in lines:
            if line.startswith("data: {"):
                delta = json.loads(line[6:])["choices"][0]["delta"] if json.loads(line[6:])["choices"] else {}
                text += (delta.get("reasoning") or "") + (delta.get("content") or "")
        return text

    real = _lines(chunk("c", "m", {"role": "assistant", "content": ""}), chunk("c", "m", {"content": "Paris"}),
                  chunk("c", "m", {}, "stop"))
    passed, message = judge(EXERCISES["08.w2"], with_thought, {"lines": real})
    assert not passed and "思考" in message


def test_predicting_one_line_per_token_names_the_missing_chunks():
    lines = ["data: {}", ""] * 11 + ["data: [DONE]", ""]  # 12 data lines
    passed, message = judge(EXERCISES["08.p1"], 9, {"lines": lines})
    assert not passed and "role" in message and "[DONE]" in message
    assert judge(EXERCISES["08.p1"], 12, {"lines": lines}) == (True, "")
