"""Exercises of ``03_tokenizer.ipynb``: counting tokens, special tokens, the chat template, streaming."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from .core import Mistake, exercise

THINK_OPEN, IM_START, IM_END = 151667, 151644, 151645
_PIECES = ["你好", "世界", "囧", "𠮷", "🫠", "🤗", "Hello", " world", "，", "。", "人工智能", " ", "123", "é", "\n"]


def mixed_texts(n: int = 40, seed: int = 0) -> Iterator[str]:
    """Short texts mixing common and rare characters, emoji and English (the same ones every run)."""
    rng = random.Random(seed)
    for _ in range(n):
        yield "".join(rng.choice(_PIECES) for _ in range(rng.randint(1, 8)))


@exercise("03.1", "lookup", hint="用 tokenizer.encode(sentence)，再数一数列表的长度 len(...)。",
          mistakes=[Mistake(lambda a, e: a == len("人工智能正在改变世界。"),
                            "你数的是字符 (characters)。token 是分词器切出来的块：常用词如“人工智能”可能只占一个 token。"),
                    Mistake(lambda a, e: a == len("人工智能正在改变世界。".encode()),
                            "你数的是 UTF-8 字节 (bytes)。BPE 把常见的字节序列合并成一个 token，所以 token 比字节少得多。")])
def _count(tokenizer: Any, sentence: str) -> int:
    return len(tokenizer.encode(sentence))


@exercise("03.2", "lookup", hint="看第 4 节的表：每条消息都以哪个特殊 token 结尾？",
          mistakes=[Mistake(lambda a, e: a == 151643, "151643 是 <|endoftext|>（文档结束，也用作填充）。"
                                                       "对话里每一轮以 <|im_end|> 结束。"),
                    Mistake(lambda a, e: a == IM_START, "151644 是 <|im_start|>，它开始一轮，不结束一轮。"),
                    Mistake(lambda a, e: isinstance(a, str), "要的是 id（整数），不是 token 的写法。")])
def _im_end(tokenizer: Any) -> int:
    return int(tokenizer.convert_tokens_to_ids("<|im_end|>"))


@exercise("03.3", "reason", hint="151667 是 <think>：它是特殊 token (special token) 吗？",
          mistakes=[Mistake(lambda a, e: a == "", "<think> 是后加的 token (added token)，但不是特殊 token，"
                                                  "skip_special_tokens=True 不会删掉它。"),
                    Mistake(lambda a, e: "<|im_start|>" in a or "<|im_end|>" in a,
                            "<|im_start|> 和 <|im_end|> 是特殊 token，skip_special_tokens=True 会把它们删掉。")])
def _skip(qwen3_tok: Any) -> str:
    return str(qwen3_tok.decode([IM_START, THINK_OPEN, IM_END], skip_special_tokens=True))


@exercise("03.4", "reason", hint="用 render_chat 的 .n_tokens，或者数一数 <think>\\n\\n</think>\\n\\n 的 token。",
          mistakes=[Mistake(lambda a, e: a == -e, "方向反了：enable_thinking=False 时模板替模型写好一个空的思考块，"
                                                  "所以关掉思考的那一份更长。"),
                    Mistake(lambda a, e: a == len("<think>\n\n</think>\n\n"),
                            "你数的是字符。<think> 和 </think> 各是一个 token，\\n\\n 也是一个 token。"),
                    Mistake(lambda a, e: a == 0, "Qwen3 的模板会读 enable_thinking：关掉时插入一个空的 <think></think> 块。")])
def _thinking_off_extra(on: Any, off: Any) -> int:
    return int(off.n_tokens - on.n_tokens)


@exercise("03.5", "reason", hint="用 tokenizer.encode('囧') 看长度，再 decode 第一个 id（半个字会是什么？）。",
          mistakes=[Mistake(lambda a, e: a[0] == 1, "“囧”是生僻字，词表里没有整字，只能按字节拆开。"),
                    Mistake(lambda a, e: a[0] == 3, "3 是“囧”的 UTF-8 字节数；字节级 BPE 把其中两个字节合成了一个 token。"),
                    Mistake(lambda a, e: a[1] == "囧", "只有一部分字节，解码不出整个字：会得到替换字符 (replacement character)。")])
def _split_char(tokenizer: Any) -> tuple[int, str]:
    ids = tokenizer.encode("囧")
    return len(ids), str(tokenizer.decode(ids[:1]))


@exercise("03.p1", "predict", hint="先写下预测，再运行揭晓的那一格：比一比两种语言的 token 数。",
          mistakes=[Mistake(lambda a, e: a not in ("zh", "en", "same"), "答案写成 'zh'、'en' 或 'same' 之一。"),
                    Mistake(lambda a, e: a == "en" and e != "en",
                            "英文字母多，但常见英文单词一个词一个 token；中文一个 token 常常是一两个字：两边相差不大。")])
def _cheaper(tokenizer: Any, zh: str, en: str) -> str:
    n_zh, n_en = len(tokenizer.encode(zh)), len(tokenizer.encode(en))
    return "same" if n_zh == n_en else ("zh" if n_zh > n_en else "en")


def _stream_reference(tokenizer: Any) -> Any:
    from ..tokens import decode_steps

    return lambda ids: [step.streamed for step in decode_steps(ids, tokenizer).steps]


def _stream_cases(tokenizer: Any) -> Iterator[tuple[list[int]]]:
    for text in mixed_texts():
        yield (tokenizer.encode(text, add_special_tokens=False),)


@exercise("03.w1", "write", cases=_stream_cases,
          hint="每来一个 id：解码到目前为止的全部 id，只交出新增的那段；末尾是 '�'（半个字）就先交出 ''，等下一个 id。",
          mistakes=[Mistake(lambda got, want: any("\ufffd" in g for g in got),
                            "你的输出里有 '�'：把半个字交了出去。末尾是 '\\ufffd' 时要等下一个 id。"),
                    Mistake(lambda got, want: "".join(got) != "".join(want),
                            "拼起来的文字和一次性 decode 全部 id 的结果不同：是不是有一段被交了两次，或者漏了最后一段？")])
def _stream(tokenizer: Any) -> Any:
    return _stream_reference(tokenizer)
