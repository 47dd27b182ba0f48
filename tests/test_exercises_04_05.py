"""The checked items of 04_generate and 05_chat: a right answer passes, a typical wrong one names its mistake."""

from __future__ import annotations

import pytest
import torch

import qwenlab
from qwenlab.exercises import EXERCISES
from qwenlab.exercises.core import judge


def _top_k(scores, k):
    kth = torch.topk(scores, min(k, scores.shape[-1])).values[..., -1:]
    return scores.masked_fill(scores < kth, float("-inf"))


def _top_k_by_position(scores, k):  # keeps exactly k per row: loses a token tied with the k-th
    values, index = torch.topk(scores, min(k, scores.shape[-1]))
    return torch.full_like(scores, float("-inf")).scatter(-1, index, values)


def _top_p(scores, top_p, inclusive=False):
    ordered, order = torch.sort(scores, descending=True)
    probs = ordered.softmax(-1)
    cumulative = probs.cumsum(-1)
    remove = cumulative > top_p if inclusive else (cumulative - probs) >= top_p
    return scores.masked_fill(remove.scatter(-1, order, remove), float("-inf"))


def test_top_k_and_top_p_filters_are_checked_against_transformers():
    assert judge(EXERCISES["04.w1"], _top_k, {}) == (True, "")
    passed, message = judge(EXERCISES["04.w1"], _top_k_by_position, {})
    assert not passed and "并列" in message
    passed, message = judge(EXERCISES["04.w1"], lambda s, k: _top_k(s, k).nan_to_num(neginf=0.0), {})
    assert not passed and "-inf" in message
    assert judge(EXERCISES["04.w2"], _top_p, {}) == (True, "")
    passed, message = judge(EXERCISES["04.w2"], lambda s, p: _top_p(s, p, inclusive=True), {})
    assert not passed and "少留了一个" in message


def test_number_answers_name_the_mistake():
    scores = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    assert judge(EXERCISES["04.2"], 2, {"scores": scores})[0]
    assert "越过" in judge(EXERCISES["04.2"], 1, {"scores": scores})[1]
    three = torch.tensor([[3.0, 2.0, 0.0]])
    assert judge(EXERCISES["04.4"], 0.2, {"scores": three})[0]
    assert "最高概率 × min_p" in judge(EXERCISES["04.4"], 0.5, {"scores": three})[1]
    assert judge(EXERCISES["04.p3"], 1, {"replies": ["小花"] * 5})[0]
    assert "种子" in judge(EXERCISES["04.p3"], 5, {"replies": ["小花"] * 5})[1]


def test_temperature_zero_is_an_error_not_greedy(tiny):
    model, tokenizer = tiny
    assert judge(EXERCISES["04.p1"], "error", {"model": model, "tokenizer": tokenizer})[0]
    passed, message = judge(EXERCISES["04.p1"], "greedy", {"model": model, "tokenizer": tokenizer})
    assert not passed and "do_sample=False" in message


def _n_tokens(tokenizer, messages):
    return len(tokenizer.apply_chat_template(messages, add_generation_prompt=True)["input_ids"])


def _fit(tokenizer, step=2, count=_n_tokens):
    def fit(messages, budget):
        system, turns = messages[:1], messages[1:]
        while count(tokenizer, system + turns) > budget and len(turns) > 1:
            turns = turns[step:]
        return system + turns
    return fit


def _count_each(tokenizer, messages):
    return sum(_n_tokens(tokenizer, [m]) for m in messages)


def test_trimming_to_a_budget_matches_conversation_window(qwen3_tok):
    ctx = {"tokenizer": qwen3_tok}
    assert judge(EXERCISES["05.w2"], _fit(qwen3_tok), ctx) == (True, "")
    passed, message = judge(EXERCISES["05.w2"], _fit(qwen3_tok, step=1), ctx)
    assert not passed and "一起丢" in message
    passed, message = judge(EXERCISES["05.w2"], _fit(qwen3_tok, count=_count_each), ctx)
    assert not passed and "丢多了" in message


def test_pairs_become_the_messages_conversation_keeps(qwen3_tok):
    def to_messages(system, pairs, question):
        head = [{"role": "system", "content": system}] if system is not None else []
        body = [{"role": r, "content": c} for pair in pairs for r, c in zip(("user", "assistant"), pair)]
        return head + body + [{"role": "user", "content": question}]

    assert judge(EXERCISES["05.w1"], to_messages, {"tokenizer": qwen3_tok}) == (True, "")
    passed, message = judge(EXERCISES["05.w1"], lambda s, p, q: to_messages(None, p, q), {"tokenizer": qwen3_tok})
    assert not passed and "系统提示" in message


@pytest.fixture
def long_chat(qwen3_tok):
    chat = qwenlab.Conversation(None, qwen3_tok, system="你是一个历史老师。", max_context_tokens=300, max_new_tokens=64)
    for i in range(1, 13):
        chat.add_user(f"第 {i} 个问题：请介绍一个中国古代的发明。")
        chat.add_assistant(f"第 {i} 个回答：造纸术、印刷术、火药和指南针是著名的四大发明。")
    chat.add_user("最后一个问题：你最喜欢哪一个？")
    return chat


def test_budget_items_follow_the_conversation(long_chat, qwen3_tok):
    assert judge(EXERCISES["05.p2"], "more", {"conversation": long_chat})[0]
    assert "一起" in judge(EXERCISES["05.p2"], "same", {"conversation": long_chat})[1]
    dropped = len(long_chat.window().dropped)
    long_chat.max_context_tokens = 200
    at_200 = len(long_chat.window().dropped)
    assert at_200 > dropped
    assert judge(EXERCISES["05.2"], at_200, {"conversation": long_chat})[0]
    assert "偶数" in judge(EXERCISES["05.2"], at_200 - 1, {"conversation": long_chat})[1]
    assert "300" in judge(EXERCISES["05.2"], dropped, {"conversation": long_chat})[1]
    overhead = EXERCISES["05.3"].expected(tokenizer=qwen3_tok)
    assert overhead == 10  # <|im_start|> role \n … <|im_end|> \n, for the user and the assistant message
    assert "一条" in judge(EXERCISES["05.3"], overhead // 2, {"tokenizer": qwen3_tok})[1]
