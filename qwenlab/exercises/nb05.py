"""Exercises of ``05_chat.ipynb``: no memory, history as messages, the template's cost, the context budget, streaming."""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator, Sequence
from typing import Any

from .core import Mistake, exercise

_CHOICES = ("more", "fewer", "same")
_QUESTIONS = ["长城有多长？", "什么是大语言模型？", "推荐一本书。", "今天适合爬山吗？", "1+1=?", "用一个词形容秋天。",
              "Python 和 C 有什么不同？", "解释一下 KV 缓存。", "hi", "再说一遍。"]
_ANSWERS = ["好的。", "长城全长两万多公里，是古代的军事防御工程。", "大语言模型是根据前文预测下一个词元的神经网络。",
            "《三体》。", "适合，天气晴朗。", "2", "金黄。", "Python 是解释型语言，C 要先编译。", "它把前面算过的键和值存起来。",
            "Hello! How can I help you today?"]


def _conversation(tokenizer: Any, messages: Sequence[dict], max_context_tokens: int | None = None) -> Any:
    """A model-less :class:`qwenlab.Conversation` holding ``messages`` (the first may be the system prompt)."""
    from ..chat import Conversation

    system = messages[0]["content"] if messages and messages[0]["role"] == "system" else None
    conversation = Conversation(None, tokenizer, system=system, max_context_tokens=max_context_tokens,  # type: ignore[arg-type]
                                max_new_tokens=0)
    conversation.history = [dict(m) for m in messages[1 if system else 0:]]
    return conversation


# ---- predictions ------------------------------------------------------------------------------------------


@exercise("05.p1", "predict", hint="两次 generate 之间，有什么东西被保存下来吗？",
          mistakes=[Mistake(lambda a, e: not isinstance(a, bool), "写 True 或 False。"),
                    Mistake(lambda a, e: a is True and e is False,
                            "模型没有记忆 (stateless)：每次调用只看这一次传进去的文字。第一次说过的名字不在第二次的输入里，"
                            "它就无从知道。网页上的“记得”，是程序每轮都把整段对话重新发一遍。"),
                    Mistake(lambda a, e: a is False and e is True,
                            "这次它碰巧说出了这个名字：那是猜的，不是记得 —— 第二次的输入里根本没有第一次的内容。")])
def _remembers(reply: str, name: str = "小明") -> bool:
    return name in reply


def _dropped(conversation: Any, max_new_tokens: int | None = None, max_context_tokens: int | None = None) -> int:
    c = copy.copy(conversation)
    if max_context_tokens is not None:
        c.max_context_tokens = max_context_tokens
    return len(c.window(max_new_tokens).dropped)


@exercise("05.p2", "predict", hint="预算 = max_context_tokens − max_new_tokens：留给回答的多了，留给提示的呢？",
          mistakes=[Mistake(lambda a, e: a not in _CHOICES, "答案写成 'more'、'fewer' 或 'same' 之一。"),
                    Mistake(lambda a, e: a == "same",
                            "max_new_tokens 也占预算：上下文长度是提示和回答**一起**用的。给回答预留得越多，提示能用的就越少。"),
                    Mistake(lambda a, e: a == "fewer",
                            "方向反了：max_new_tokens 是给回答**预留**的位置，预留得越多，留给历史的越少，丢掉的就越多。")])
def _more_reserved(conversation: Any) -> str:
    before, after = _dropped(conversation, 64), _dropped(conversation, 128)
    return "same" if after == before else ("more" if after > before else "fewer")


# ---- exercises --------------------------------------------------------------------------------------------


@exercise("05.2", "reason", hint="先改 long_chat.max_context_tokens = 200，再数 long_chat.window().dropped。",
          mistakes=[Mistake(lambda a, e: not isinstance(a, int), "写一个整数（丢掉的消息条数）。"),
                    Mistake(lambda a, e: a % 2 == 1,
                            "丢的条数一定是偶数：用户消息和它的回答是一轮，总是一起丢（不然提示会以一条没头没尾的回答开始）。"),
                    Mistake(lambda a, e: a < e,
                            "还不够：预算小了 100 个 token，要丢更多轮。是不是还在用 300 的预算？"),
                    Mistake(lambda a, e: a > e, "丢多了：是不是数成了留下的消息？dropped 是没放进提示的那些。")])
def _dropped_at_200(conversation: Any) -> int:
    return _dropped(conversation, max_context_tokens=200)


@exercise("05.3", "reason", hint="看第 2 节打印出的模板：一条消息除了内容，还有哪些东西？一轮有几条消息？",
          mistakes=[Mistake(lambda a, e: not isinstance(a, int), "写一个整数。"),
                    Mistake(lambda a, e: a * 2 == e,
                            "这是**一条**消息的开销。一轮是用户的一条加上助手的一条。"),
                    Mistake(lambda a, e: a < e and a % 2 == 0,
                            "不只 <|im_start|> 和 <|im_end|>：角色名 (role) 和每条消息后的换行 \\n 也各是 token。"),
                    Mistake(lambda a, e: a > e, "多了：只算模板加上的 token，不算消息内容。")])
def _turn_overhead(tokenizer: Any) -> int:
    system = [{"role": "system", "content": "你是一个友好的助手。"}]
    question = [{"role": "user", "content": "我叫什么名字？"}]
    empty_turn = [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}]
    count = _conversation(tokenizer, system).count_tokens
    return int(count(system + empty_turn + question) - count(system + question))


def _joined(pieces: Any) -> str:
    from ..thinking import split_thinking

    return str(split_thinking("".join(pieces)).content)


@exercise("05.4", "reason", hint="for piece in chat.reply(..., stream=True, max_new_tokens=16): answer4.append(piece)",
          compare=lambda a, e: isinstance(a, list) and _joined(a) == e,
          mistakes=[Mistake(lambda a, e: isinstance(a, str), "要的是片段的**列表** (list of pieces)，不是拼好的字符串。"),
                    Mistake(lambda a, e: not isinstance(a, list),
                            "chat.reply(stream=True) 返回的是一个流 (stream)：要用 for 循环（或 list(...)）把片段取出来。"),
                    Mistake(lambda a, e: _joined(a) != e,
                            "拼起来的文字和历史里最后一条回答不同：这些片段是这次 reply 的吗？收集完之后不要再调用 reply。")])
def _streamed_reply(conversation: Any) -> str:
    return str(conversation.history[-1]["content"])


# ---- write it ---------------------------------------------------------------------------------------------


def _pairs_cases(**_: Any) -> Iterator[tuple[str | None, list[tuple[str, str]], str]]:
    rng = random.Random(5)
    for i in range(24):
        system = None if i % 4 == 3 else rng.choice(["你是一个友好的助手。", "你是数学老师", "Answer briefly."])
        pairs = [(rng.choice(_QUESTIONS), rng.choice(_ANSWERS)) for _ in range(rng.randint(0, 4))]
        yield system, pairs, rng.choice(_QUESTIONS)


def _pairs_reference(tokenizer: Any) -> Any:
    from ..chat import Conversation

    def to_messages(system: str | None, pairs: list[tuple[str, str]], question: str) -> list[dict]:
        conversation = Conversation(None, tokenizer, system=system)  # type: ignore[arg-type]
        for user, assistant in pairs:
            conversation.add_user(user)
            conversation.add_assistant(assistant)
        conversation.add_user(question)
        return conversation.messages
    return to_messages


def _roles(messages: Any) -> list[str]:
    return [m["role"] for m in messages]


@exercise("05.w1", "write", cases=_pairs_cases,
          hint="先放系统提示（system 是 None 时不放），再依次放每一对的 user 和 assistant，最后是新的问题 (user)。"
               "每条消息是 {\"role\": ..., \"content\": ...}。",
          mistakes=[Mistake(lambda got, want: not all(isinstance(m, dict) for m in got),
                            "每条消息要是一个字典 {\"role\": ..., \"content\": ...}，不是元组或字符串。"),
                    Mistake(lambda got, want: _roles(want)[:1] == ["system"] and _roles(got)[:1] != ["system"],
                            "系统提示 (system) 要放在最前面。"),
                    Mistake(lambda got, want: _roles(got)[:1] == ["system"] and _roles(want)[:1] != ["system"],
                            "system 是 None 时不要放系统消息（也不要放内容为 None 的消息）。"),
                    Mistake(lambda got, want: _roles(got)[-1:] != ["user"], "最后一条必须是新的问题 (user)：轮到助手回答。"),
                    Mistake(lambda got, want: _roles(got) == _roles(want),
                            "角色顺序对了，但内容放错了：每一对是 (用户说的, 助手答的)。")])
def _to_messages(tokenizer: Any) -> Any:
    return _pairs_reference(tokenizer)


def _budget_cases(tokenizer: Any) -> Iterator[tuple[list[dict], int]]:
    rng = random.Random(7)
    for _ in range(24):
        messages = [{"role": "system", "content": rng.choice(["你是一个历史老师。", "你是一个友好的助手，回答简短。"])}]
        for _ in range(rng.randint(0, 6)):
            messages += [{"role": "user", "content": rng.choice(_QUESTIONS)},
                         {"role": "assistant", "content": rng.choice(_ANSWERS)}]
        messages.append({"role": "user", "content": rng.choice(_QUESTIONS)})
        count = _conversation(tokenizer, messages).count_tokens
        smallest, everything = count(messages[:1] + messages[-1:]), count(messages)
        yield messages, rng.randint(smallest, everything + 10)


def _budget_reference(tokenizer: Any) -> Any:
    def fit(messages: list[dict], budget: int) -> list[dict]:
        return list(_conversation(tokenizer, messages, max_context_tokens=budget).window(0).messages)
    return fit


@exercise("05.w2", "write", cases=_budget_cases,
          hint="从最旧的一轮开始，一次丢一轮（用户消息 + 它的回答），直到 len(tokenizer.apply_chat_template(kept, "
               "add_generation_prompt=True)[\"input_ids\"]) ≤ budget；系统提示和最后一条用户消息永远保留。",
          mistakes=[Mistake(lambda got, want: _roles(got)[:1] != ["system"], "系统提示永远不丢：它定义了助手是谁。"),
                    Mistake(lambda got, want: _roles(got)[1:2] == ["assistant"],
                            "一轮是用户消息 + 它的回答，要一起丢：现在系统提示后面紧跟着一条没头没尾的回答。"),
                    Mistake(lambda got, want: len(got) < len(want),
                            "丢多了：这个预算放得下更多轮。是不是把每条消息单独套模板再相加？那样每条都多算了生成提示 "
                            "(<|im_start|>assistant)，有的模板还会多算一个默认系统提示。要数整个列表套模板之后的长度。"),
                    Mistake(lambda got, want: len(got) > len(want),
                            "留多了：提示超出了预算。是不是只数了每条消息 content 的 token？模板加上的 <|im_start|>、角色名、"
                            "<|im_end|> 和换行也占预算，add_generation_prompt=True 加的那几个也算。")])
def _fit_budget(tokenizer: Any) -> Any:
    return _budget_reference(tokenizer)
