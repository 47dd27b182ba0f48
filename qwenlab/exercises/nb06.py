"""Exercises of ``06_thinking.ipynb``: states, switches, the cost of thinking, parsing a reply by ids."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from .core import Mistake, exercise, within

THINK_OPEN, THINK_CLOSE = 151667, 151668
_STATES = ("complete", "unfinished", "none", "empty")


def _state(ids: Sequence[int], tokenizer: Any) -> str:
    from ..thinking import split_thinking

    return split_thinking(list(ids), tokenizer).state


def _not_a_state(a: Any, e: Any) -> bool:
    return a not in _STATES


_STATE_NAMES = Mistake(_not_a_state, "答案写成 'complete'、'unfinished'、'none' 或 'empty' 之一。")


@exercise("06.p1", "predict", hint="思考没写完就被截断了：有 <think> 却没有 </think>，那叫什么状态？",
          mistakes=[_STATE_NAMES,
                    Mistake(lambda a, e: a == "none", "回复以 <think> 开头，模型已经开始思考了：只是还没写到 </think>。"),
                    Mistake(lambda a, e: a == "complete", "12 个 token 写不完一段思考：没有 </think>，思考就没有结束，"
                                                          "也就还没有回答。")])
def _cut_state(ids: Sequence[int], tokenizer: Any) -> str:
    return _state(ids, tokenizer)


@exercise("06.p2", "predict", hint="规则第 2 条：硬开关关掉时，软开关还有用吗？",
          mistakes=[Mistake(lambda a, e: a is True and e is False,
                            "硬开关优先：enable_thinking=False 时模板已经把空的思考块写进提示，消息里的 /think 不再起作用。"),
                    Mistake(lambda a, e: not isinstance(a, bool), "写 True 或 False。")])
def _hard_wins(ids: Sequence[int], tokenizer: Any) -> bool:
    return _state(ids, tokenizer) in ("complete", "unfinished")


@exercise("06.1", "reason", hint="先看 </think> (151668) 在不在前 20 个 id 里：THINK_CLOSE_ID in output_ids[:20]。",
          mistakes=[_STATE_NAMES,
                    Mistake(lambda a, e: a == "complete" and e == "unfinished",
                            "前 20 个 token 里没有 </think>：思考还没结束，不能当成完整的回复。"),
                    Mistake(lambda a, e: a == "none", "回复的第一个 token 就是 <think>：截短了它也还是在思考。")])
def _prefix_state(ids: Sequence[int], tokenizer: Any) -> str:
    return _state(ids, tokenizer)


@exercise("06.2", "reason", hint="在消息末尾加上软开关。",
          compare=lambda a, e: e == a,
          mistakes=[Mistake(lambda a, e: isinstance(a, str) and "/think" in a and "/no_think" not in a,
                            "/think 是打开思考；这一轮要关掉，用 /no_think。"),
                    Mistake(lambda a, e: isinstance(a, str) and "/no_think" in a,
                            "/no_think 要写在消息的**末尾**：模板只看消息最后的软开关。"),
                    Mistake(lambda a, e: isinstance(a, str) and ("/nothink" in a or "no-think" in a),
                            "拼写要一字不差：/no_think（下划线）。")])
def _soft_off(tokenizer: Any) -> Any:
    """Equal to any message that turns thinking off for this one turn by the soft switch."""
    from ..thinking import thinking_mode

    class ObeysSoftOff:
        def __eq__(self, message: object) -> bool:
            return isinstance(message, str) and thinking_mode(
                [{"role": "user", "content": message}], None, tokenizer) is False

        __hash__ = None  # type: ignore[assignment]

    return ObeysSoftOff()


@exercise("06.3", "lookup", hint="mode_settings('Qwen/Qwen3-0.6B', True).params",
          mistakes=[Mistake(lambda a, e: abs(a - 0.7) < 1e-9, "0.7 是**非思考**模式的推荐温度；思考模式要更低一点。"),
                    Mistake(lambda a, e: a == 0, "温度 0 就是贪心解码：Qwen 明确说思考模式不要贪心，容易无限重复。")])
def _think_temperature() -> float:
    from ..thinking import mode_settings

    return float(mode_settings("Qwen/Qwen3-0.6B", True).params["temperature"])


def _token_ratio(attempts: dict[str, list[Any]]) -> float:
    on = sum(a.tokens for a in attempts["think"]) / len(attempts["think"])
    off = sum(a.tokens for a in attempts["hard_off"]) / len(attempts["hard_off"])
    return on / off


@exercise("06.4", "reason", hint="平均 token 数 = 所有回复的 tokens 之和 / 回复数；再用“开”除以“关”。",
          compare=within(0.1),
          mistakes=[Mistake(lambda a, e: a < 1 <= e, "倒过来了：思考开的回复更长，比值应该大于 1。"),
                    Mistake(lambda a, e: abs(a - e) / e > 0.1 and a > 1,
                            "用的是 attempts 里的 tokens（生成的 token 数），不是秒数，也不是字符数。")])
def _ratio(attempts: dict[str, list[Any]]) -> float:
    return _token_ratio(attempts)


@exercise("06.5", "reason", hint="如果思考里出现了 </think>，第一个 </think> 之后还有什么？",
          mistakes=[Mistake(lambda a, e: a == "last", "在最后一个 </think> 处切：之前的全部（包括思考里提到的那个）都算思考，"
                                                     "回答是干净的。题目问的是哪一种会把半截思考混进回答。"),
                    Mistake(lambda a, e: a not in ("first", "last"), "写 'first' 或 'last'。")])
def _first_is_wrong() -> str:
    return "first"


@exercise("06.6", "reason", hint="print(chat.render())：上一轮的助手消息里有没有 <think>？",
          mistakes=[Mistake(lambda a, e: a in ("thinking", "both"),
                            "Qwen 的规则：历史里只放最终回答。思考很长，会挤占上下文，模型也没被训练去读旧的思考。"),
                    Mistake(lambda a, e: a not in ("thinking", "content", "both"), "写 'thinking'、'content' 或 'both'。")])
def _history_keeps(chat: Any, reply: Any) -> str:
    prompt = chat.render()
    has_thought = bool(reply.thinking) and reply.thinking in prompt
    has_answer = reply.content in prompt
    return "both" if has_thought and has_answer else ("thinking" if has_thought else "content")


def _parse_reference(tokenizer: Any, replies: Sequence[Sequence[int]]) -> Any:
    from ..thinking import split_thinking

    def reference(ids: list[int]) -> tuple[str, str, str]:
        s = split_thinking(list(ids), tokenizer)
        return s.state, s.thinking, s.content
    return reference


def _parse_cases(tokenizer: Any, replies: Sequence[Sequence[int]]) -> Iterator[tuple[list[int]]]:
    for reply in replies:
        ids = [int(i) for i in reply]
        yield (ids,)
        for n in sorted({1, 2, 3, 5, 8, 13, 21, 34, 55, len(ids) // 2, len(ids) - 3, len(ids) - 1}):
            if 0 < n < len(ids):
                yield (ids[:n],)
    words = tokenizer.encode("先想一想。", add_special_tokens=False)
    answer = tokenizer.encode("\n\n答案是 42。", add_special_tokens=False)
    yield ([THINK_OPEN, *words, THINK_CLOSE, *words, THINK_CLOSE, *answer],)   # two </think>: cut at the last
    yield ([THINK_OPEN, THINK_CLOSE, *answer],)
    yield (answer,)


@exercise("06.w1", "write", cases=_parse_cases,
          hint="先判断第一个 id 是不是 151667；再找最后一个 151668 的位置（列表倒过来 index）；decode 后 .strip()。",
          mistakes=[Mistake(lambda got, want: want[0] == "unfinished" and got[0] != "unfinished",
                            "没有 </think> 的思考是 unfinished：不要像模型卡那样把它当成回答。"),
                    Mistake(lambda got, want: got[0] == want[0] and got[2] != want[2] and "</think>" in str(got[2]),
                            "回答里还有 </think>：要在**最后一个** </think> 处切。"),
                    Mistake(lambda got, want: got[0] == want[0] and got[1].strip() != got[1],
                            "thinking 和 content 要 .strip()。")])
def _parse(tokenizer: Any, replies: Sequence[Sequence[int]]) -> Any:
    return _parse_reference(tokenizer, replies)
