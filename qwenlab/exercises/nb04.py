"""Exercises of ``04_generate.ipynb``: greedy vs sampling, temperature, seeds, top-k / top-p / min-p, truncation."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from .core import Mistake, exercise

_OUTCOMES = ("greedy", "error", "random")


def _kept(scores: Any) -> Any:
    """How many tokens each row keeps (finite scores)."""
    import torch

    return torch.isfinite(torch.as_tensor(scores)).sum(-1)


def _masked_with_zero(got: Any, want: Any) -> bool:
    import torch

    return bool(torch.isinf(want).any()) and not bool(torch.isinf(torch.as_tensor(got)).any())


def _returned_probabilities(got: Any, want: Any) -> bool:
    import torch

    got = torch.as_tensor(got)
    return bool(((got >= 0) & (got <= 1)).all()) and bool(torch.allclose(got.sum(-1), torch.ones(got.shape[0])))


_ZERO_IS_NOT_REMOVED = Mistake(_masked_with_zero, "被删掉的词元要把分数设成 -inf (float('-inf'))：softmax 之后概率才是 0。"
                                                  "设成 0 并不会删掉它，0 分的词元照样可能被抽中。")
_NOT_PROBABILITIES = Mistake(_returned_probabilities, "要返回过滤后的分数 (scores / logits)，不是概率：采样步骤一个接一个地"
                                                      "作用在分数上，最后才做 softmax。")


# ---- predictions ------------------------------------------------------------------------------------------


def _temperature_zero(model: Any, tokenizer: Any) -> str:
    import torch

    inputs = tokenizer("你好", return_tensors="pt").to(model.device)
    try:
        out = model.generate(**inputs, do_sample=True, temperature=0.0, max_new_tokens=1)
    except ValueError:
        return "error"
    greedy = model.generate(**inputs, do_sample=False, max_new_tokens=1)
    return "greedy" if torch.equal(out, greedy) else "random"


@exercise("04.p1", "predict", hint="温度把分数除以 temperature。除以 0 会怎样？",
          mistakes=[Mistake(lambda a, e: a not in _OUTCOMES, "答案写成 'greedy'、'error' 或 'random' 之一。"),
                    Mistake(lambda a, e: a == "greedy" and e == "error",
                            "温度越来越接近 0 时，分布越来越接近贪心 —— 但那是极限。temperature=0 要除以 0，transformers "
                            "直接报错 (ValueError)：想要贪心，就写 do_sample=False。"),
                    Mistake(lambda a, e: a == "random",
                            "方向反了：温度越低，分布越“尖”，越确定；温度很大时才接近均匀分布 (uniform)。")])
def _zero_temperature(model: Any, tokenizer: Any) -> str:
    return _temperature_zero(model, tokenizer)


@exercise("04.p2", "predict", hint="top_k=1 之后还剩几个候选词元？温度会改变分数的先后顺序吗？",
          mistakes=[Mistake(lambda a, e: not isinstance(a, bool), "写 True 或 False。"),
                    Mistake(lambda a, e: a is False and e is True,
                            "top_k=1 只留下分数最高的一个词元，抽样只能抽到它：和贪心一样。温度只把所有分数除以同一个数，"
                            "不改变谁第一 —— 温度再高也没用。"),
                    Mistake(lambda a, e: a is True and e is False,
                            "通常是相同的。这里不同，是因为某一步有两个词元的分数完全相等（bf16 精度下会发生）："
                            "TopK 保留所有等于第 k 名分数的词元 (ties)，抽样就可能选另一个，而贪心总选编号小的那个。")])
def _top_k_one_is_greedy(greedy: Sequence[int], sampled: Sequence[Sequence[int]]) -> bool:
    return all(list(ids) == list(greedy) for ids in sampled)


@exercise("04.p3", "predict", hint="do_sample=False 时，生成过程中还用得到随机数吗？",
          mistakes=[Mistake(lambda a, e: not isinstance(a, int) or isinstance(a, bool), "写一个整数 (1 到 5)。"),
                    Mistake(lambda a, e: a > e,
                            "种子 (seed) 只影响**采样**时抽到哪个词元。贪心 (do_sample=False) 每一步都选分数最高的，"
                            "根本不抽随机数：换多少个种子，回答都一样。")])
def _distinct_greedy(replies: Sequence[str]) -> int:
    return len(set(replies))


# ---- exercises --------------------------------------------------------------------------------------------


@exercise("04.1", "lookup", hint="qwenlab.effective_params(model) 返回一个字典 (dict)：不写 top_k 时 generate 用的值。",
          mistakes=[Mistake(lambda a, e: a == 50 and e != 50,
                            "50 是 transformers 的通用回退值 (generic fallback)。这个模型的 generation_config.json "
                            "自己设了 top_k，它排在回退值前面。"),
                    Mistake(lambda a, e: a in (0, None),
                            "你没写 top_k，不等于没有 top_k：模型的 generation_config 已经替你设了一个值。")])
def _default_top_k(model: Any) -> Any:
    from ..generation import effective_params

    return effective_params(model)["top_k"]


@exercise("04.2", "reason", hint="从最可能的词元开始累加概率，累计和第一次达到 0.8 时停下，数一数用了几个。",
          mistakes=[Mistake(lambda a, e: a == e - 1,
                            "少了一个：top-p 保留到累计概率**达到** p 为止，让总和越过 p 的那个词元也要留下。"),
                    Mistake(lambda a, e: a > e,
                            "多了：累计和一旦达到 0.8 就停下，后面的词元都删掉。top-p 要的是**最少**的那几个。")])
def _top_p_count(scores: Any) -> int:
    from transformers import TopPLogitsWarper

    return int(_kept(TopPLogitsWarper(0.8)(None, scores)).sum())


def _at_least(answer: Any, needed: Any) -> bool:
    return isinstance(answer, int) and not isinstance(answer, bool) and answer >= needed


@exercise("04.3", "reason", hint="先用一个很大的 max_new_tokens 生成一次，数一数 r.token_ids 有几个 —— 最后那个是什么？",
          compare=_at_least,
          mistakes=[Mistake(lambda a, e: not isinstance(a, int), "写一个整数。"),
                    Mistake(lambda a, e: a == e - 1,
                            "只差一个：回答的文字说完之后，模型还要生成结束词元 <|im_end|>。它也占一个 max_new_tokens "
                            "的名额；没生成出来，finish_reason 就是 'length'。"),
                    Mistake(lambda a, e: a < e - 1, "还不够：回答本身都没写完。")])
def _tokens_to_stop(model: Any, tokenizer: Any, question: str) -> int:
    from ..generation import generate

    reply = generate(model, tokenizer, question, do_sample=False, max_new_tokens=64, enable_thinking=False)
    return len(reply.token_ids)


def _min_p_window(scores: Any) -> tuple[float, float]:
    import torch

    probs = torch.softmax(torch.as_tensor(scores, dtype=torch.float64), dim=-1)[0].sort(descending=True).values
    return float(probs[2] / probs[0]), float(probs[1] / probs[0])


def _keeps_two(answer: Any, window: tuple[float, float]) -> bool:
    return isinstance(answer, (int, float)) and window[0] < answer <= window[1]


@exercise("04.4", "reason", hint="门槛 = 最高概率 × min_p：第二名要不低于门槛，第三名要低于门槛。",
          compare=_keeps_two,
          mistakes=[Mistake(lambda a, e: not isinstance(a, (int, float)), "写一个 0 到 1 之间的数。"),
                    Mistake(lambda a, e: a > e[1],
                            "门槛太高，第二名也被删了。注意门槛不是 min_p 本身，而是“最高概率 × min_p”。"),
                    Mistake(lambda a, e: a <= e[0],
                            "门槛太低，第三名也留下了。门槛 = 最高概率 × min_p，要比第三名的概率高。")])
def _min_p_for_two(scores: Any) -> tuple[float, float]:
    return _min_p_window(scores)


# ---- write it ---------------------------------------------------------------------------------------------


def random_scores(n: int = 30, seed: int = 0, ties_from: int = 20) -> Iterator[Any]:
    """Random logits ``(batch, vocab)``, the same every run; from case ``ties_from`` on, whole numbers (ties)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    for i in range(n):
        batch = int(torch.randint(1, 4, (1,), generator=gen))
        vocab = int(torch.randint(4, 40, (1,), generator=gen))
        if i < ties_from:
            scale = float(torch.empty(1).uniform_(0.5, 4.0, generator=gen))
            yield torch.randn(batch, vocab, generator=gen) * scale
        else:
            yield torch.randint(-3, 4, (batch, vocab), generator=gen).float()


def _top_k_cases() -> Iterator[tuple[Any, int]]:
    import torch

    gen = torch.Generator().manual_seed(1)
    for scores in random_scores():
        k = int(torch.randint(1, scores.shape[-1] + 3, (1,), generator=gen))  # sometimes more than the vocab
        yield scores, k


def _dropped_a_tie(got: Any, want: Any) -> bool:
    import torch

    return bool((_kept(got) < _kept(want)).any()) and bool(torch.isfinite(torch.as_tensor(got)).any())


def _kept_the_smallest(got: Any, want: Any) -> bool:
    import torch

    best = want.argmax(-1, keepdim=True)
    return bool(torch.isinf(torch.as_tensor(got).gather(-1, best)).any())


@exercise("04.w1", "write", cases=_top_k_cases,
          hint="torch.topk(scores, k) 给出每行前 k 大的分数；比第 k 大的分数还小的，设成 float('-inf')。"
               "k 比词表还大时全部保留。",
          mistakes=[_NOT_PROBABILITIES, _ZERO_IS_NOT_REMOVED,
                    Mistake(_kept_the_smallest, "分数最高的词元被你删掉了：要保留的是**最大**的 k 个。"),
                    Mistake(_dropped_a_tie,
                            "这一行有几个词元的分数和第 k 名**并列** (ties)。transformers 的规则是“比第 k 大的分数小才删”，"
                            "所以并列的都保留；只按位置留 k 个就会删掉一个并列的。")])
def _top_k(**_: Any) -> Any:
    from transformers import TopKLogitsWarper

    return lambda scores, k: TopKLogitsWarper(k)(None, scores)


def _top_p_cases() -> Iterator[tuple[Any, float]]:
    import torch

    gen = torch.Generator().manual_seed(2)
    for scores in random_scores(ties_from=30):
        top_p = round(float(torch.empty(1).uniform_(0.05, 0.95, generator=gen)), 2)
        yield scores, top_p


def _one_short(got: Any, want: Any) -> bool:
    return bool((_kept(got) == _kept(want) - 1).any())


@exercise("04.w2", "write", cases=_top_p_cases,
          hint="每行：按分数从大到小排序，softmax 得到概率，cumsum 累加；一个词元“之前”的累计和已经 ≥ top_p 就删掉"
               "（所以让累计和越过 top_p 的那个留下）。最后把删除标记放回原来的位置。",
          mistakes=[_NOT_PROBABILITIES, _ZERO_IS_NOT_REMOVED,
                    Mistake(_one_short, "少留了一个：让累计概率越过 top_p 的那个词元也要保留。比较的应该是它**之前**的累计和。"),
                    Mistake(lambda got, want: bool((_kept(got) > _kept(want)).any()),
                            "留多了：累计概率达到 top_p 之后的词元都要删掉。是不是按从小到大排序了，或者比较时用了它自己之后的和？")])
def _top_p(**_: Any) -> Any:
    from transformers import TopPLogitsWarper

    return lambda scores, top_p: TopPLogitsWarper(top_p)(None, scores)
