"""Exercises of ``10_learn_to_think.ipynb``: the loss mask, the modes, LoRA's size, the causal LM loss."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .core import Mistake, exercise

_MODES = ("think", "soft_think", "hard_off", "soft_off")


@exercise("10.p1", "predict", hint="模板只写到 <|im_start|>assistant\\n<think>\\n 了吗？看第 1 节 think 模式的提示结尾，再想想：谁来写 </think>？",
          mistakes=[Mistake(lambda a, e: a == "complete" and e != "complete",
                            "离线模型从没见过 <think> / </think>（它们的嵌入行几乎一样，从没训练过）：它不会自己写出一段完整的思考。"),
                    Mistake(lambda a, e: a not in ("complete", "unfinished", "none", "empty"),
                            "答案写成 'complete'、'unfinished'、'none' 或 'empty' 之一。")])
def _before(before: Any) -> str:
    return str(before.state)


@exercise("10.1", "reason", hint="数一数 s.labels 里不等于 -100 的个数。",
          mistakes=[Mistake(lambda a, e: a > e * 2, "你数的是全部 token：提示部分的标签是 -100，不算损失。"),
                    Mistake(lambda a, e: a == e - 1, "差一个：结尾的 <|im_end|> 也算损失——模型要学会什么时候停下。")])
def _scored(s: Any) -> int:
    return int(s.reply_tokens)


@exercise("10.2", "reason", hint="对比第 1 节四种模式的“提示结尾”和“回复”：空思考块出现在哪一边？",
          mistakes=[Mistake(lambda a, e: a == "hard_off", "hard_off 的空思考块是**模板**写进提示的，在提示里，不算损失。"),
                    Mistake(lambda a, e: a in ("think", "soft_think"), "这两种模式的思考块里有真正的思考，不是空的。"),
                    Mistake(lambda a, e: a not in _MODES, "写 'think'、'soft_think'、'hard_off' 或 'soft_off' 之一。")])
def _model_writes_empty(tok: Any, p: Any) -> str:
    from ..thinker.data import render_problem

    return next(m for m in _MODES if render_problem(tok, p, m).target.startswith("<think>\n\n</think>"))


@exercise("10.3", "lookup", hint="TrainConfig().rank",
          mistakes=[Mistake(lambda a, e: a == 2 * e, "那是 alpha（缩放系数），不是秩 r。")])
def _rank() -> int:
    from ..thinker.train import TrainConfig

    return int(TrainConfig().rank)


@exercise("10.4", "reason", hint="LoRA 给一个 d_out × d_in 的矩阵加上 B (d_out × r) 和 A (r × d_in)：两个矩阵的元素个数相加。",
          mistakes=[Mistake(lambda a, e: a == 896 * 896, "那是原来的权重 W 的大小；LoRA 冻结 W，只训练两个小矩阵。"),
                    Mistake(lambda a, e: a == e // 2, "只算了一个矩阵：A 和 B 都要训练。"),
                    Mistake(lambda a, e: a == 8 * 8, "r × r 不对：A 是 r × 896，B 是 896 × r。")])
def _lora_params() -> int:
    from ..thinker.train import TrainConfig

    r, d = TrainConfig().rank, 896
    return r * d + d * r


@exercise("10.5", "reason", hint="print(render_problem(tok, p, 'hard_off').target)",
          mistakes=[Mistake(lambda a, e: a is True and e is False,
                            "hard_off 时模板已经把 <think>\\n\\n</think>\\n\\n 写进提示：回复里没有思考标签，模型直接回答。"),
                    Mistake(lambda a, e: not isinstance(a, bool), "写 True 或 False。")])
def _hard_off_reply_has_close(tok: Any, p: Any) -> bool:
    from ..thinker.data import render_problem

    return "</think>" in render_problem(tok, p, "hard_off").target


def _loss_reference() -> Any:
    import torch
    from transformers.loss.loss_utils import ForCausalLMLoss

    def reference(logits: Any, labels: Any) -> float:
        with torch.no_grad():
            return float(ForCausalLMLoss(logits[None], labels[None], vocab_size=logits.shape[-1]))
    return reference


def _loss_cases() -> Iterator[tuple[Any, Any]]:
    import torch

    g = torch.Generator().manual_seed(10)
    for n in range(24):
        length, vocab = 4 + n % 9, 11 + 7 * (n % 5)
        logits = torch.randn(length, vocab, generator=g) * (1 + n % 3)
        labels = torch.randint(0, vocab, (length,), generator=g)
        prompt = int(torch.randint(1, length - 1, (1,), generator=g))
        labels[:prompt] = -100            # the prompt is not scored
        yield logits, labels


def _loss_close(got: Any, want: Any) -> bool:
    try:
        return abs(float(got) - float(want)) <= 1e-4 * max(1.0, abs(float(want)))
    except (TypeError, ValueError):
        return False


@exercise("10.w1", "write", cases=_loss_cases, compare=_loss_close,
          hint="位置 t 的 logits 预测的是第 t+1 个 token（移一位 shift）：用 logits[:-1] 对 labels[1:]，"
               "跳过标签为 -100 的位置，只对算损失的位置取交叉熵的平均。")
def _loss() -> Any:
    return _loss_reference()
