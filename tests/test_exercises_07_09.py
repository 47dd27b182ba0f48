"""Notebooks 07 and 09's checked items (#14): the write-it items accept a right function and name the mistake
in a wrong one; the estimates and predictions explain the likely misconception, never the expected value."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from qwenlab.exercises import EXERCISES
from qwenlab.exercises.core import judge


def quantize_int8(w):
    scale = (w.abs().amax(dim=1, keepdim=True) / 127).clamp(min=torch.finfo(torch.float32).tiny)
    return torch.round(w / scale).clamp(-127, 127).to(torch.int8), scale


def _with(**changes):
    def wrong(w):
        scale = changes.get("scale", lambda w: w.abs().amax(dim=1, keepdim=True) / 127)(w).clamp(min=1e-30)
        return changes.get("codes", lambda w, s: torch.round(w / s))(w, scale), scale
    return wrong


@pytest.mark.parametrize(("student", "says"), [
    (_with(codes=lambda w, s: (w / s).int()), "截断"),
    (_with(scale=lambda w: w.abs().max() / 127), "per-tensor"),
    (_with(scale=lambda w: w.abs().amax(dim=0, keepdim=True) / 127), "按列"),
    (_with(scale=lambda w: w.abs().amax(dim=1, keepdim=True) / 255), "/ 255"),
    (lambda w: (torch.round(w / (w.abs().amax(dim=1, keepdim=True) / 127)), w.abs().amax(dim=1) / 127), "全是 0"),
    (lambda w: torch.round(w), "return q, scale"),
], ids=["truncates", "per-tensor", "per-column", "255", "zero-row", "no-scale"])
def test_int8_by_hand_passes_when_right_and_names_the_mistake(student, says):
    ex = EXERCISES["07.w1"]
    assert judge(ex, quantize_int8, {}) == (True, "")
    passed, message = judge(ex, student, {})
    assert not passed and says in message, message


def test_the_int8_check_holds_every_channel_to_half_a_step():
    """A function one code off everywhere stays within 1 of qwenlab's codes but breaks the error bound."""
    def off_by_one(w):
        q, scale = quantize_int8(w)
        return (q.int() + 1).clamp(-127, 127), scale
    passed, message = judge(EXERCISES["07.w1"], off_by_one, {})
    assert not passed and "半个步长" in message


TRAFFIC = SimpleNamespace(weight_bytes=1_976_000_000, kv_bytes_per_token=24_576)
BW = SimpleNamespace(read_bytes_per_second=18.3e9)


@pytest.mark.parametrize(("student", "says"), [
    (lambda bw, w, kv, c, b: bw / (w + kv * c), "偏小"),               # batching forgotten
    (lambda bw, w, kv, c, b: bw * b / w, "KV 缓存"),                    # KV cache forgotten
    (lambda bw, w, kv, c, b: bw / ((w + b * kv * c) / b) / 1e9, "单位"),  # GB/s
])
def test_roofline_by_hand_is_compared_with_bench_on_many_inputs(student, says):
    ex = EXERCISES["09.w1"]
    right = lambda bw, w, kv, c, b: bw / ((w + b * kv * c) / b)  # noqa: E731
    assert judge(ex, right, {"traffic": TRAFFIC, "bw": BW}) == (True, "")
    assert len(list(ex.cases(traffic=TRAFFIC, bw=BW))) >= 20
    passed, message = judge(ex, student, {"traffic": TRAFFIC, "bw": BW})
    assert not passed and says in message, message


@pytest.mark.parametrize(("key", "answer", "context", "says"), [
    ("07.1", 751_632_384 * 0.5, {"params": 751_632_384}, "忘了 scale"),
    ("07.1", 751_632_384 * (0.5 + 2 / 64) * 8, {"params": 751_632_384}, "比特"),
    ("07.2", [25, -63, 127], {"w": torch.tensor([[0.2, -0.5, 1.0]])}, "截断"),
    ("07.p1", False, {"fp32_answer": "Paris", "int8_answer": "1.2"}, "几乎无损"),
    ("07.p2", 0.25, {"int8": SimpleNamespace(total_bytes=1382), "fp32": SimpleNamespace(total_bytes=2404)}, "lm_head"),
    ("09.1", 18.3e9 / 1_976_000_000, {"bw": BW, "traffic": TRAFFIC}, "fp32 的上限"),
    ("09.5", True, {"traffic": TRAFFIC}, "几百 GB/s"),
])
def test_a_wrong_answer_names_the_misconception_not_the_value(key, answer, context, says):
    ex = EXERCISES[key]
    passed, message = judge(ex, answer, context)
    assert not passed and says in message, message
    expected = ex.expected(**context)
    assert repr(expected) not in message and str(expected) not in message
