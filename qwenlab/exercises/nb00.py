"""Exercises of ``00_quickstart.ipynb``: greedy decoding, what ``max_new_tokens`` caps, slicing the new tokens,
the chat template as the model sees it."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from .core import Mistake, exercise

_WORDS = ["你好", "长城", "人工智能", "Paris", " the", "天气", "？", "。", "Python", " 123", "😀", "\n", "模型"]
_SYSTEMS = ["你是一个乐于助人的助手。", "You are a helpful assistant.", "回答要简洁。"]


@exercise("00.p1", "predict", hint="先写下预测（'same' 或 'different'），再运行揭晓的那一格。",
          mistakes=[Mistake(lambda a, e: a not in ("same", "different"), "答案写成 'same' 或 'different'。"),
                    Mistake(lambda a, e: a == "different" and e == "same",
                            "贪心解码 (greedy, do_sample=False) 每一步都选概率最高的 token，没有随机数：同样的权重、"
                            "同样的输入 → 同样的输出。qwenlab.generate 里面调用的就是同一个 model.generate。")])
def _same_tokens(plain: Any, helper: Any) -> str:
    return "same" if list(plain) == list(helper) else "different"


@exercise("00.p2", "predict", hint="答案写成 (新 token 数, finish_reason)，例如 (7, 'stop')。",
          mistakes=[Mistake(lambda a, e: a[0] > e[0] + 5,
                            "max_new_tokens 只数**新生成**的 token，不包括提示 (prompt)。"),
                    Mistake(lambda a, e: a[0] != e[0] and a[1] == e[1],
                            "max_new_tokens 数的是 token，不是汉字或单词；模型没说完就停时正好用满。"),
                    Mistake(lambda a, e: a[1] == "stop" and e[1] == "length",
                            "'stop' 表示模型自己输出了结束符 <|im_end|>。5 个 token 说得完一句话吗？被截断时 finish_reason 是另一个值。")])
def _capped(short: Any) -> tuple[int, str]:
    return int(short.completion_tokens), str(short.finish_reason)


@exercise("00.1", "reason", hint="generate 返回的是“提示 + 回答”：提示有多少个 token？（inputs['input_ids'].shape[1]）",
          mistakes=[Mistake(lambda a, e: a == 0, "generate 返回的序列以整个提示开头：不切片，解码出来的就有你的问题。"),
                    Mistake(lambda a, e: a < e,
                            "提示不只是你的问题：还有系统消息和模板加的 <|im_start|>、角色名、<|im_end|> 等 token。")])
def _prompt_len(inputs: Any) -> int:
    return int(inputs["input_ids"].shape[1])


@exercise("00.2", "reason", hint="用 tokenizer(question)['input_ids'] 得到 id，再看其中哪些在 tokenizer.all_special_ids 里。",
          mistakes=[Mistake(lambda a, e: a > e,
                            "裸提示 (raw prompt) 没有经过聊天模板：Qwen 的分词器不自动加开头的 BOS，"
                            "所以也没有 <|im_start|> / <|im_end|>——模型看不到“轮到助手回答”的标记。")])
def _special_in_raw(tokenizer: Any, question: str) -> int:
    special = set(tokenizer.all_special_ids)
    return sum(1 for i in tokenizer(question)["input_ids"] if i in special)


def _has_paris(answer: Any, expected: Any) -> bool:
    return isinstance(answer, str) and "paris" in answer.lower() and "capital of france" not in answer.lower()


@exercise("00.3", "lookup", compare=_has_paris,
          hint="用 qwenlab.generate(model, tokenizer, 问题, do_sample=False, max_new_tokens=8).text，问题用英文。",
          mistakes=[Mistake(lambda a, e: "capital of france" in a.lower(),
                            "回答里有你的问题：你解码了整个序列。先切掉前 prompt_len 个 token（第 5 节）。"),
                    Mistake(lambda a, e: "巴黎" in a, "题目要英文回答：用英文提问，模型就用英文答。"),
                    Mistake(lambda a, e: not isinstance(a, str), "要交回答的文字 (str)，例如 result.text。")])
def _paris() -> str:
    return "Paris"


def _chats(n: int = 24, seed: int = 0) -> Iterator[list[dict[str, str]]]:
    rng = random.Random(seed)
    for _ in range(n):
        chat = [{"role": "system", "content": rng.choice(_SYSTEMS)}]
        turns = rng.randint(1, 3)
        for turn in range(turns):
            chat.append({"role": "user", "content": "".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 6)))})
            if turn < turns - 1:
                chat.append({"role": "assistant", "content": "".join(rng.choice(_WORDS) for _ in range(3))})
        yield chat


def _chat_cases(tokenizer: Any) -> Iterator[tuple[list[dict[str, str]]]]:
    for chat in _chats():
        yield (chat,)


@exercise("00.w1", "write", cases=_chat_cases,
          hint="每条消息写成 <|im_start|>角色\\n内容<|im_end|>\\n，最后加 <|im_start|>assistant\\n，再 tokenizer.encode(...) 数一数。",
          mistakes=[Mistake(lambda got, want: got == want - 3,
                            "少了 3 个：add_generation_prompt=True 在末尾加的 <|im_start|>assistant\\n 也是模型要读的。"),
                    Mistake(lambda got, want: got == want - 1,
                            "差 1 个：是不是少了某个换行 \\n？每条消息的 <|im_end|> 后面都有一个。"),
                    Mistake(lambda got, want: got < want / 2,
                            "你好像只数了消息内容 (content)；模板还给每条消息加了 <|im_start|>角色\\n … <|im_end|>\\n。"),
                    Mistake(lambda got, want: got > want * 1.5,
                            "数的是字符 (characters) 吗？要数 token：tokenizer.encode(text)。")])
def _chat_len(tokenizer: Any) -> Any:
    def chat_tokens(messages: list[dict[str, str]]) -> int:
        out = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)
        return len(out["input_ids"])
    return chat_tokens
