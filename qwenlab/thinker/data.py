"""Training data for the mini thinker: reasoning traces that code writes, with answers that are right.

Every problem (zh + en: multi-digit arithmetic, decimal comparison such as 9.11 vs 9.9, unit conversion,
short word problems) comes with a short step-by-step thought and a final answer sentence whose last
number is the answer. :func:`render` puts one through the real Qwen3 chat template in one of four modes:

- ``think``: thinking on (Qwen3's default): the reply is ``<think>\\nsteps\\n</think>\\n\\nanswer``;
- ``soft_think``: the same, with ``/think`` appended to the user message;
- ``hard_off``: ``enable_thinking=False``: the template itself writes the empty think block into the
  prompt, the reply is the answer alone;
- ``soft_off``: ``/no_think`` appended: the reply is ``<think>\\n\\n</think>\\n\\nanswer`` (Qwen3 writes the
  empty block itself).

The loss covers only the reply (the assistant tokens, up to and including ``<|im_end|>``); every prompt
token has the label -100. Plain chat questions (:data:`CHAT_QUESTIONS`) whose answers are the base model's
own greedy replies are mixed in so it does not forget how to chat; the 14 probes of
``qwenlab/data/probes.json`` are never trained on (they measure forgetting).

Taught in ``10_learn_to_think.ipynb``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..evaluation import probes
from ..thinking import with_soft_switch

__all__ = [
    "TRAIN_SEED",
    "EVAL_SEED",
    "KINDS",
    "MODES",
    "Problem",
    "Sample",
    "make_problem",
    "make_problems",
    "eval_problems",
    "train_problems",
    "final_number",
    "is_right",
    "prompt_messages",
    "render",
    "render_problem",
    "render_chat",
    "CHAT_QUESTIONS",
    "chat_thought",
]

TRAIN_SEED = 1234
EVAL_SEED = 20261129  # a different seed: the measurement questions are never trained on
KINDS = ("add", "sub", "mul", "div", "compare", "convert", "word")
MODES = ("think", "soft_think", "hard_off", "soft_off")
IGNORE = -100  # the label of a token the loss skips


@dataclass(frozen=True)
class Problem:
    """One generated question with its reasoning trace and answer.

    Attributes:
        kind: one of :data:`KINDS`.
        lang: ``"en"`` or ``"zh"``.
        question: the user's question (no soft switch).
        thought: the step-by-step reasoning (what goes between ``<think>`` and ``</think>``).
        answer: the final answer sentence; its last number is the answer.
        value: the right answer as text (``"9716"``, ``"9.9"``).
    """

    kind: str
    lang: str
    question: str
    thought: str
    answer: str
    value: str


@dataclass
class Sample:
    """One training sequence: the prompt and the reply, as text and as ids, with labels.

    ``labels[i]`` is ``input_ids[i]`` on the reply's tokens and ``-100`` on the prompt's, so the loss
    learns only what the assistant writes.
    """

    source: str  # "math" or "chat"
    kind: str
    lang: str
    mode: str
    prompt: str  # the rendered prompt (chat template, generation prompt included)
    target: str  # the rendered reply, ending with <|im_end|>
    input_ids: list[int] = field(repr=False)
    labels: list[int] = field(repr=False)

    @property
    def reply_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE)

    def __len__(self) -> int:
        return len(self.input_ids)


# ---- numbers -------------------------------------------------------------------------------------

def _fmt(x: Decimal | int) -> str:
    """A number as a person writes it: no trailing zeros, no exponent (``Decimal("3500.0")`` -> ``"3500"``)."""
    d = Decimal(x)
    text = format(d.normalize(), "f") if d != d.to_integral() else str(int(d))
    return text


def _places(n: int) -> list[int]:
    """``4827`` -> ``[4000, 800, 20, 7]`` (zero parts dropped)."""
    digits = str(n)
    parts = [int(ch) * 10 ** (len(digits) - i - 1) for i, ch in enumerate(digits)]
    return [p for p in parts if p]


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def final_number(text: str) -> str | None:
    """The last number in an answer (thousands separators dropped), or None.

    >>> final_number("347 × 28 = 9,716."), final_number("较大的数是 9.9。"), final_number("no idea")
    ('9716', '9.9', None)
    """
    found = _NUMBER.findall(re.sub(r"(?<=\d),(?=\d{3}\b)", "", text))
    return _fmt(Decimal(found[-1])) if found else None


def is_right(answer: str, problem: Problem) -> bool:
    """True when the answer's last number equals the problem's value (``9.90`` counts as ``9.9``)."""
    got = final_number(answer)
    return got is not None and Decimal(got) == Decimal(problem.value)


# ---- the problem generators -----------------------------------------------------------------------

_EN_NAMES = [("Tom", "he"), ("Anna", "she"), ("Li Wei", "he"), ("Sara", "she"), ("Ben", "he"), ("Mia", "she")]
_ZH_NAMES = ["小明", "小红", "小刚", "王阿姨", "李老师", "小丽"]


def _add(rng: random.Random, lang: str) -> Problem:
    # The model adds two numbers directly far more reliably than it splits them by place value (measured:
    # a place-value trace got 2/8 right, a direct answer 7/8), so the thought computes, then checks.
    a, b = rng.randint(100, 9999), rng.randint(100, 9999)
    total = a + b
    if lang == "en":
        q = rng.choice(["What is {a} + {b}?", "Calculate {a} + {b}.", "Add {a} and {b}."])
        thought = (f"Add the two numbers: {a} + {b} = {total}.\nCheck by subtracting: {total} - {b} = {a}.\n"
                   f"So {a} + {b} = {total}.")
        answer = f"{a} + {b} = {total}."
    else:
        q = rng.choice(["{a} + {b} 等于多少？", "计算 {a} + {b}。", "{a} 加 {b} 是多少？"])
        thought = f"两数相加：{a} + {b} = {total}。\n用减法验算：{total} - {b} = {a}。\n所以 {a} + {b} = {total}。"
        answer = f"{a} + {b} = {total}。"
    return Problem("add", lang, q.format(a=a, b=b), thought, answer, str(total))


def _sub(rng: random.Random, lang: str) -> Problem:
    a = rng.randint(300, 9999)
    b = rng.randint(100, a - 100)
    rest = a - b
    if lang == "en":
        q = rng.choice(["What is {a} - {b}?", "Calculate {a} - {b}.", "Subtract {b} from {a}."])
        thought = (f"Subtract: {a} - {b} = {rest}.\nCheck by adding: {rest} + {b} = {a}.\n"
                   f"So {a} - {b} = {rest}.")
        answer = f"{a} - {b} = {rest}."
    else:
        q = rng.choice(["{a} - {b} 等于多少？", "计算 {a} - {b}。", "{a} 减 {b} 是多少？"])
        thought = f"相减：{a} - {b} = {rest}。\n用加法验算：{rest} + {b} = {a}。\n所以 {a} - {b} = {rest}。"
        answer = f"{a} - {b} = {rest}。"
    return Problem("sub", lang, q.format(a=a, b=b), thought, answer, str(rest))


def _sum_steps(parts: list[int]) -> list[str]:
    """``[2100, 280, 35]`` -> ``["2100 + 280 = 2380", "2380 + 35 = 2415"]``."""
    steps, total = [], parts[0]
    for p in parts[1:]:
        steps.append(f"{total} + {p} = {total + p}")
        total += p
    return steps


def _mul(rng: random.Random, lang: str) -> Problem:
    while True:
        if rng.random() < 0.5:
            a, b = rng.randint(23, 999), rng.randint(3, 9)
        else:
            a, b = rng.randint(13, 99), rng.randint(13, 99)
        if {a, b} not in ({12}, {10}):  # 12 × 12 and 10 × 10 are probes (never trained on)
            break
    product = a * b
    split = b if b >= 10 else a  # the number with several digits that gets split by place value
    parts = _places(split)
    head = (f"Split {split} by place value: {split} = {' + '.join(map(str, parts))}." if lang == "en"
            else f"把 {split} 按数位拆开：{split} = {' + '.join(map(str, parts))}。")
    heads = [head] if len(parts) > 1 else []  # 40 needs no split
    if b < 10:  # 526 × 8: each part times 8
        lines = [f"{p} × {b} = {p * b}" for p in parts]
        products = [p * b for p in parts]
    else:  # 46 × 95: 46 × 9 = 414, so 46 × 90 = 4140; 46 × 5 = 230
        lines, products = [], []
        for p in parts:
            digit, zeros = int(str(p)[0]), len(str(p)) - 1
            shift = (", so " if lang == "en" else "，所以 ") + f"{a} × {p} = {a * p}" if zeros else ""
            lines.append(f"{a} × {digit} = {a * digit}{shift}")
            products.append(a * p)
    if lang == "en":
        q = rng.choice(["What is {a} × {b}?", "Calculate {a} × {b}.", "Multiply {a} by {b}."])
        tail, answer = f"So {a} × {b} = {product}.", f"{a} × {b} = {product}."
    else:
        q = rng.choice(["{a} × {b} 等于多少？", "计算 {a} × {b}。", "{a} 乘以 {b} 是多少？"])
        tail, answer = f"所以 {a} × {b} = {product}。", f"{a} × {b} = {product}。"
    thought = "\n".join([*heads, *lines, *_sum_steps(products), tail])
    return Problem("mul", lang, q.format(a=a, b=b), thought, answer, str(product))


def _long_division(n: int, d: int, lang: str) -> list[str]:
    """School long division, one line per quotient digit: ``52: 6 × 8 = 48, 52 - 48 = 4`` …"""
    digits = str(n)
    lines, cur, i = [], 0, 0
    while i < len(digits) and cur * 10 + int(digits[i]) < d:  # leading digits smaller than d
        cur = cur * 10 + int(digits[i])
        i += 1
    sep = ", " if lang == "en" else "，"
    for j in range(i, len(digits)):
        cur = cur * 10 + int(digits[j])
        if j > i:
            lines.append(f"Bring down {digits[j]}: {cur}" if lang == "en" else f"落下 {digits[j]}：{cur}")
        k = cur // d
        lines.append(f"{cur}{': ' if lang == 'en' else '：'}{d} × {k} = {d * k}{sep}{cur} - {d * k} = {cur - d * k}")
        cur -= d * k
    return lines


def _div(rng: random.Random, lang: str) -> Problem:
    d = rng.randint(2, 12)
    q_ = rng.randint(11, min(99, 999 // d)) if rng.random() < 0.75 else rng.randint(3, 9)
    n = d * q_
    lines = _long_division(n, d, lang)
    if lang == "en":
        q = rng.choice(["What is {n} ÷ {d}?", "Divide {n} by {d}.", "Calculate {n} ÷ {d}."])
        head = f"Long division of {n} by {d}, one digit at a time."
        tail, answer = f"So {n} ÷ {d} = {q_}.", f"{n} ÷ {d} = {q_}."
    else:
        q = rng.choice(["{n} ÷ {d} 等于多少？", "{n} 除以 {d} 是多少？", "计算 {n} ÷ {d}。"])
        head = f"用长除法逐位计算 {n} ÷ {d}。"
        tail, answer = f"所以 {n} ÷ {d} = {q_}。", f"{n} ÷ {d} = {q_}。"
    return Problem("div", lang, q.format(n=n, d=d), "\n".join([head, *lines, tail]), answer, str(q_))


def _compare(rng: random.Random, lang: str) -> Problem:
    i = rng.randint(0, 20)
    case = rng.random()
    if case < 0.2:  # different whole-number parts
        j = rng.choice([k for k in range(0, 25) if k != i])
        x, y = f"{i}.{rng.randint(1, 99):02d}".rstrip("0"), f"{j}.{rng.randint(1, 9)}"
        big = x if i > j else y
        lines_en = [f"Whole-number parts: {i} and {j}.", f"{max(i, j)} > {min(i, j)}, so {big} is larger."]
        lines_zh = [f"整数部分：{i} 和 {j}。", f"{max(i, j)} > {min(i, j)}，所以 {big} 更大。"]
    elif case < 0.4:  # same tenths: look at the hundredths (7.45 vs 7.4)
        t, h = rng.randint(1, 9), rng.randint(1, 9)
        x, y = f"{i}.{t}{h}", f"{i}.{t}"
        big = x
        lines_en = [f"Whole-number parts: both {i}.", f"Tenths: both {t}.",
                    f"Hundredths: {x} has {h}, {y} = {y}0 has 0.", f"{h} > 0, so {x} is larger."]
        lines_zh = [f"整数部分：都是 {i}。", f"十分位：都是 {t}。",
                    f"百分位：{x} 是 {h}，{y} = {y}0 是 0。", f"{h} > 0，所以 {x} 更大。"]
    else:  # the 9.11 vs 9.9 trap: more digits, smaller tenths
        t1, t2 = rng.sample(range(1, 10), 2)
        x, y = f"{i}.{t1}{rng.randint(1, 9)}", f"{i}.{t2}"
        big = x if t1 > t2 else y
        lines_en = [f"Whole-number parts: both {i}.", f"Tenths: {x} has {t1}, {y} has {t2}.",
                    f"{max(t1, t2)} > {min(t1, t2)}, so {big} is larger.",
                    "More digits after the point do not make a number larger."]
        lines_zh = [f"整数部分：都是 {i}。", f"十分位：{x} 是 {t1}，{y} 是 {t2}。",
                    f"{max(t1, t2)} > {min(t1, t2)}，所以 {big} 更大。", "小数位数多，不代表数更大。"]
    if rng.random() < 0.5:
        x, y = y, x
    if lang == "en":
        q = rng.choice(["Which is larger, {x} or {y}?", "Which number is bigger: {x} or {y}?"])
        thought = "\n".join([f"Compare {x} and {y} digit by digit.", *lines_en])
        answer = f"The larger number is {big}."
    else:
        q = rng.choice(["{x} 和 {y} 哪个大？", "{x} 与 {y} 相比，哪个更大？"])
        thought = "\n".join([f"逐位比较 {x} 和 {y}。", *lines_zh])
        answer = f"较大的数是 {big}。"
    return Problem("compare", lang, q.format(x=x, y=y), thought, answer, big)


# unit conversions: (en from, en to, zh from, zh to, factor); a factor < 1 divides
_UNITS = [
    ("km", "m", "千米", "米", Decimal(1000)),
    ("m", "cm", "米", "厘米", Decimal(100)),
    ("cm", "m", "厘米", "米", Decimal("0.01")),
    ("kg", "g", "千克", "克", Decimal(1000)),
    ("g", "kg", "克", "千克", Decimal("0.001")),
    ("yuan", "jiao", "元", "角", Decimal(10)),
    ("yuan", "fen", "元", "分", Decimal(100)),
]


def _convert(rng: random.Random, lang: str) -> Problem:
    if rng.random() < 0.25:  # hours and minutes -> minutes
        h, m = rng.randint(1, 9), rng.randint(1, 59)
        total = h * 60 + m
        if lang == "en":
            q = rng.choice(["How many minutes are {h} h {m} min?", "Convert {h} h {m} min to minutes."])
            thought = f"1 h = 60 min.\n{h} × 60 = {h * 60}\n{h * 60} + {m} = {total}"
            answer = f"{h} h {m} min = {total} min."
        else:
            q = rng.choice(["{h} 小时 {m} 分钟是多少分钟？", "把 {h} 小时 {m} 分钟换算成分钟。"])
            thought = f"1 小时 = 60 分钟。\n{h} × 60 = {h * 60}\n{h * 60} + {m} = {total}"
            answer = f"{h} 小时 {m} 分钟 = {total} 分钟。"
        return Problem("convert", lang, q.format(h=h, m=m), thought, answer, str(total))
    en_from, en_to, zh_from, zh_to, factor = rng.choice(_UNITS)
    if factor >= 1:
        x = Decimal(rng.randint(1, 40)) if rng.random() < 0.5 else Decimal(rng.randint(1, 199)) / 10
        y, op, k = x * factor, "×", _fmt(factor)
    else:
        per = int(1 / factor)
        x = Decimal(rng.randint(per // 10 + 1, per * 9) * (per // 100 or 1))
        y, op, k = x * factor, "÷", str(per)
    xs, ys = _fmt(x), _fmt(y)
    if lang == "en":
        q = rng.choice(["How many {to} are in {x} {fr}?", "Convert {x} {fr} to {to}."])
        rule = f"1 {en_from} = {_fmt(factor)} {en_to}" if factor >= 1 else f"{k} {en_from} = 1 {en_to}"
        places = f"{len(k) - 1} place{'s' if len(k) > 2 else ''}"
        move = f"the decimal point moves {places} {'right' if op == '×' else 'left'}"
        thought = f"{rule}, so I {'multiply' if op == '×' else 'divide'} by {k}: {move}.\n{xs} {op} {k} = {ys}"
        answer = f"{xs} {en_from} = {ys} {en_to}."
        question = q.format(x=xs, fr=en_from, to=en_to)
    else:
        q = rng.choice(["{x} {fr}等于多少{to}？", "把 {x} {fr}换算成{to}。"])
        rule = f"1 {zh_from} = {_fmt(factor)} {zh_to}" if factor >= 1 else f"{k} {zh_from} = 1 {zh_to}"
        move = f"小数点向{'右' if op == '×' else '左'}移动 {len(k) - 1} 位"
        thought = f"{rule}，所以{'乘以' if op == '×' else '除以'} {k}：{move}。\n{xs} {op} {k} = {ys}"
        answer = f"{xs} {zh_from} = {ys} {zh_to}。"
        question = q.format(x=xs, fr=zh_from, to=zh_to)
    return Problem("convert", lang, question, thought, answer, ys)


def _word(rng: random.Random, lang: str) -> Problem:
    story = rng.randrange(4)
    name, pron = rng.choice(_EN_NAMES)
    zname = rng.choice(_ZH_NAMES)
    if story == 0:  # apples bought in bags
        a, b, c = rng.randint(3, 60), rng.randint(2, 9), rng.randint(4, 25)
        total = a + b * c
        en = (f"{name} has {a} apples and buys {b} bags with {c} apples in each. How many apples does {pron} "
              f"have now?", f"{b} bags × {c} apples = {b * c} apples.\n{a} + {b * c} = {total}",
              f"{name} has {total} apples now.")
        zh = (f"{zname}有 {a} 个苹果，又买了 {b} 袋，每袋 {c} 个。{zname}现在一共有多少个苹果？",
              f"{b} 袋 × {c} 个 = {b * c} 个。\n{a} + {b * c} = {total}", f"{zname}现在一共有 {total} 个苹果。")
    elif story == 1:  # apples given away
        b, c = rng.randint(2, 9), rng.randint(2, 8)
        a = b * c + rng.randint(1, 40)
        total = a - b * c
        en = (f"{name} has {a} apples and gives {b} apples to each of {c} friends. How many apples are left?",
              f"{c} friends × {b} apples = {b * c} apples given away.\n{a} - {b * c} = {total}",
              f"{total} apples are left.")
        zh = (f"{zname}有 {a} 个苹果，分给 {c} 个朋友，每人 {b} 个。还剩多少个苹果？",
              f"{c} 人 × {b} 个 = {b * c} 个。\n{a} - {b * c} = {total}", f"还剩 {total} 个苹果。")
    elif story == 2:  # trains: distance or speed
        v, t = rng.randint(6, 35) * 10, rng.randint(2, 6)
        if rng.random() < 0.5:
            total = v * t
            en = (f"A train travels at {v} km/h for {t} hours. How many kilometers does it go?",
                  f"Distance = speed × time.\n{v} × {t} = {total}", f"The train goes {total} km.")
            zh = (f"一列火车以每小时 {v} 千米的速度行驶了 {t} 小时，一共行驶了多少千米？",
                  f"路程 = 速度 × 时间。\n{v} × {t} = {total}", f"火车一共行驶了 {total} 千米。")
        else:
            total, d = v, v * t
            en = (f"A train goes {d} km in {t} hours at a steady speed. What is its speed in km/h?",
                  f"Speed = distance ÷ time.\n{d} ÷ {t} = {v}\nCheck: {v} × {t} = {d}", f"Its speed is {v} km/h.")
            zh = (f"一列火车 {t} 小时匀速行驶了 {d} 千米，它每小时行驶多少千米？",
                  f"速度 = 路程 ÷ 时间。\n{d} ÷ {t} = {v}\n验算：{v} × {t} = {d}", f"火车每小时行驶 {v} 千米。")
    else:  # prices: the change from a note
        p, n = rng.randint(2, 19), rng.randint(2, 6)
        m = 50 if p * n < 50 else 100 if p * n < 100 else 200
        total = m - p * n
        en = (f"A notebook costs {p} yuan. {name} buys {n} notebooks and pays with {m} yuan. How much change "
              f"does {pron} get?", f"Cost: {p} × {n} = {p * n} yuan.\nChange: {m} - {p * n} = {total} yuan.",
              f"The change is {total} yuan.")
        zh = (f"一个笔记本 {p} 元，{zname}买了 {n} 个，付了 {m} 元，应该找回多少元？",
              f"花费：{p} × {n} = {p * n} 元。\n找回：{m} - {p * n} = {total} 元。", f"应找回 {total} 元。")
    q, thought, answer = en if lang == "en" else zh
    return Problem("word", lang, q, thought, answer, str(total))


_MAKERS: dict[str, Callable[[random.Random, str], Problem]] = {
    "add": _add, "sub": _sub, "mul": _mul, "div": _div, "compare": _compare, "convert": _convert, "word": _word,
}


def make_problem(rng: random.Random, kind: str, lang: str) -> Problem:
    """One problem of ``kind`` (see :data:`KINDS`) in ``lang`` (``"en"``/``"zh"``), drawn from ``rng``."""
    if kind not in _MAKERS or lang not in ("en", "zh"):
        raise ValueError(f"kind={kind!r}, lang={lang!r}: use a kind from {KINDS} and lang 'en' or 'zh'.")
    return _MAKERS[kind](rng, lang)


def make_problems(n: int, seed: int) -> list[Problem]:
    """``n`` problems, the kinds and both languages taken in turn, with distinct question texts."""
    rng = random.Random(seed)
    out: list[Problem] = []
    seen: set[str] = set()
    i = 0
    while len(out) < n:
        kind, lang = KINDS[i % len(KINDS)], ("en", "zh")[(i // len(KINDS)) % 2]
        p = make_problem(rng, kind, lang)
        i += 1
        if p.question not in seen:
            seen.add(p.question)
            out.append(p)
    return out


def eval_problems(n: int = 56, seed: int = EVAL_SEED) -> list[Problem]:
    """The measurement questions: drawn with :data:`EVAL_SEED`, never trained on (see :func:`train_problems`)."""
    return make_problems(n, seed)


def train_problems(n: int, seed: int = TRAIN_SEED, held_out: Sequence[Problem] | None = None) -> list[Problem]:
    """``n`` training problems drawn with ``seed``; any question that is also a held-out (eval) question
    is dropped and replaced, and the function checks that none is left."""
    if held_out is None:
        held_out = eval_problems()
    if seed == EVAL_SEED:
        raise ValueError("the training seed must differ from the evaluation seed (EVAL_SEED)")
    banned = {p.question for p in held_out} | {p.question for p in probes()}
    out = [p for p in make_problems(n + len(banned), seed) if p.question not in banned][:n]
    assert not banned & {p.question for p in out}, "an eval or probe question leaked into the training set"
    return out


# ---- the chat template --------------------------------------------------------------------------

def prompt_messages(question: str, mode: str) -> tuple[list[dict], bool]:
    """The user message for ``mode`` (soft switch appended where the mode has one) and ``enable_thinking``."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: use one of {MODES}.")
    content = with_soft_switch(question, mode == "soft_think") if mode.startswith("soft") else question
    return [{"role": "user", "content": content}], mode != "hard_off"


def render(tokenizer: Any, question: str, thought: str, answer: str, mode: str, *,
           source: str = "math", kind: str = "", lang: str = "") -> Sample:
    """Render one question + reply through the tokenizer's (Qwen3) chat template, with loss labels.

    The prompt is ``apply_chat_template([user], add_generation_prompt=True, enable_thinking=…)``; the whole
    conversation is rendered by the same template with the assistant message (``reasoning_content`` =
    the thought in the thinking modes, nothing in the others), and the reply is what the whole adds to
    the prompt, up to and including ``<|im_end|>``. Only the reply's tokens get labels.
    """
    messages, thinking = prompt_messages(question, mode)
    reasoning = thought if mode in ("think", "soft_think") else ""
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                           enable_thinking=thinking)
    whole = tokenizer.apply_chat_template(
        [*messages, {"role": "assistant", "content": answer, "reasoning_content": reasoning}],
        tokenize=False, enable_thinking=thinking)
    end = tokenizer.eos_token  # <|im_end|> for Qwen3's chat tokenizer
    if not whole.startswith(prompt) or end not in whole[len(prompt):]:
        raise ValueError(f"the chat template does not extend the prompt with the reply for mode {mode!r}")
    target = whole[len(prompt):whole.index(end, len(prompt)) + len(end)]
    prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
    target_ids = tokenizer(target, add_special_tokens=False).input_ids
    if prompt_ids + target_ids != tokenizer(prompt + target, add_special_tokens=False).input_ids:
        raise ValueError(f"the reply's tokens merge with the prompt's in {question!r} ({mode})")
    return Sample(source, kind, lang, mode, prompt, target, prompt_ids + target_ids,
                  [IGNORE] * len(prompt_ids) + target_ids)


def render_problem(tokenizer: Any, problem: Problem, mode: str) -> Sample:
    """:func:`render` for a generated problem."""
    return render(tokenizer, problem.question, problem.thought, problem.answer, mode,
                  source="math", kind=problem.kind, lang=problem.lang)


# ---- plain chat (self-distillation) -------------------------------------------------------------

#: General questions (none of them a probe) whose targets are the base model's own greedy answers.
CHAT_QUESTIONS: list[tuple[str, str]] = [
    ("en", "Say hello to a new student in one sentence."),
    ("en", "What is a large language model? Answer in one sentence."),
    ("en", "Give one tip for learning a new language. One sentence."),
    ("en", "What does CPU stand for? Answer briefly."),
    ("en", "Write a Python one-liner that reverses a string s."),
    ("en", "What is the opposite of 'hot'? Answer in one word."),
    ("en", "Name a primary color. Answer in one word."),
    ("en", "Translate 'good morning' into Chinese."),
    ("en", "What is the largest planet in the solar system? Answer in one word."),
    ("en", "In Python, how do you get the length of a list called items? Answer with code only."),
    ("en", "What is JSON? Answer in one sentence."),
    ("en", "Suggest a name for a pet cat. One word."),
    ("en", "What does HTML stand for? Answer briefly."),
    ("en", "Explain what a variable is in programming, in one sentence."),
    ("en", "What is the boiling point of water at sea level in Celsius? Answer with a number only."),
    ("en", "Which language is mainly spoken in Brazil? Answer in one word."),
    ("en", "Write a short greeting for an email to a teacher."),
    ("en", "What is the main ingredient of bread? Answer in one word."),
    ("en", "Give a synonym for 'happy'. One word."),
    ("en", "What is Git used for? Answer in one sentence."),
    ("en", "How do you print 'hi' in Python? Answer with code only."),
    ("en", "Which animal is known as the king of the jungle? Answer in one word."),
    ("en", "What is the freezing point of water in Celsius? Answer with a number only."),
    ("en", "Describe the color of the sky on a clear day in one word."),
    ("en", "What does RAM stand for? Answer briefly."),
    ("en", "Tell me one benefit of regular exercise, in one sentence."),
    ("en", "What is a function in Python? One sentence."),
    ("en", "Name one ocean. Answer in one word."),
    ("en", "Thank the user for their question in one sentence."),
    ("en", "What file extension do Python files use? Answer briefly."),
    ("zh", "用一句话向新同学问好。"),
    ("zh", "什么是大语言模型？用一句话回答。"),
    ("zh", "给出一个学习外语的建议，一句话。"),
    ("zh", "CPU 是什么的缩写？简短回答。"),
    ("zh", "写一行 Python 代码，把字符串 s 反转。"),
    ("zh", "“热”的反义词是什么？只回答一个字。"),
    ("zh", "太阳系中最大的行星是哪一颗？只回答名字。"),
    ("zh", "把“谢谢”翻译成英文。"),
    ("zh", "在 Python 中，怎样得到列表 items 的长度？只回答代码。"),
    ("zh", "什么是 JSON？用一句话回答。"),
    ("zh", "给一只小猫起个名字，只回答名字。"),
    ("zh", "用一句话解释编程中的变量是什么。"),
    ("zh", "在标准大气压下，水的沸点是多少摄氏度？只回答数字。"),
    ("zh", "长城在哪个国家？只回答国家名。"),
    ("zh", "写一句给老师的邮件问候语。"),
    ("zh", "面包的主要原料是什么？只回答一个词。"),
    ("zh", "“高兴”的近义词是什么？只回答一个词。"),
    ("zh", "Git 是用来做什么的？用一句话回答。"),
    ("zh", "在 Python 中怎样打印 hi？只回答代码。"),
    ("zh", "哪种动物被称为“森林之王”？只回答名字。"),
    ("zh", "水在多少摄氏度结冰？只回答数字。"),
    ("zh", "晴天时天空是什么颜色？只回答一个词。"),
    ("zh", "RAM 是什么的缩写？简短回答。"),
    ("zh", "说出经常锻炼的一个好处，一句话。"),
    ("zh", "Python 中的函数是什么？一句话回答。"),
    ("zh", "说出一个大洋的名字，只回答名字。"),
    ("zh", "用一句话感谢用户的提问。"),
    ("zh", "Python 文件的扩展名是什么？简短回答。"),
    ("zh", "春节一般在哪个季节？只回答季节。"),
    ("zh", "一天中太阳从哪个方向升起？只回答方向。"),
    ("en", "What is the capital of Italy? Answer in one word."),
    ("en", "What is the capital of Canada? Answer in one word."),
    ("en", "How many legs does a spider have? Answer with a number only."),
    ("en", "How many continents are there on Earth? Answer with a number only."),
    ("en", "How many sides does a triangle have? Answer with a number only."),
    ("en", "How many minutes are there in an hour? Answer with a number only."),
    ("en", "What gas do plants take in from the air? Answer in one word."),
    ("en", "What is the chemical symbol for gold? Answer with the symbol only."),
    ("en", "In Python, which keyword starts a loop over a list? Answer in one word."),
    ("en", "In Python, which keyword sends a value back from a function? Answer in one word."),
    ("en", "In Python, which keyword brings in a module? Answer in one word."),
    ("en", "Which planet is known as the Red Planet? Answer in one word."),
    ("en", "What color do you get by mixing blue and yellow? Answer in one word."),
    ("en", "Who wrote 'Romeo and Juliet'? Answer with the name only."),
    ("en", "What is the longest river in Africa? Answer in one word."),
    ("en", "What do bees make? Answer in one word."),
    ("en", "What is the plural of 'mouse'? Answer in one word."),
    ("en", "What does SQL stand for? Answer briefly."),
    ("en", "Which data structure works first-in, first-out? Answer in one word."),
    ("en", "What is the past tense of 'go'? Answer in one word."),
    ("en", "Write a one-sentence description of a cat."),
    ("en", "Give an example of a fruit that is yellow. One word."),
    ("en", "What does a compiler do? Answer in one sentence."),
    ("en", "Name a programming language other than Python. One word."),
    ("en", "What is the smallest prime number? Answer with a number only."),
    ("en", "What season comes after winter? Answer in one word."),
    ("en", "Which organ pumps blood through the body? Answer in one word."),
    ("en", "Say goodbye politely in one sentence."),
    ("en", "What is an API? Answer in one sentence."),
    ("en", "In which country are the pyramids of Giza? Answer in one word."),
    ("zh", "意大利的首都是哪座城市？只回答城市名。"),
    ("zh", "加拿大的首都是哪座城市？只回答城市名。"),
    ("zh", "蜘蛛有几条腿？只回答数字。"),
    ("zh", "地球上有几大洲？只回答数字。"),
    ("zh", "三角形有几条边？只回答数字。"),
    ("zh", "一小时有多少分钟？只回答数字。"),
    ("zh", "植物从空气中吸收什么气体？只回答名称。"),
    ("zh", "金的化学符号是什么？只回答符号。"),
    ("zh", "在 Python 中，遍历列表的循环用哪个关键字？只回答关键字。"),
    ("zh", "在 Python 中，从函数返回值用哪个关键字？只回答关键字。"),
    ("zh", "在 Python 中，导入模块用哪个关键字？只回答关键字。"),
    ("zh", "哪颗行星被称为“红色星球”？只回答名字。"),
    ("zh", "蓝色和黄色混合得到什么颜色？只回答颜色。"),
    ("zh", "《静夜思》的作者是谁？只回答名字。"),
    ("zh", "中国最长的河流是哪条？只回答名字。"),
    ("zh", "蜜蜂会酿造什么？只回答一个词。"),
    ("zh", "“快”的反义词是什么？只回答一个字。"),
    ("zh", "SQL 是什么的缩写？简短回答。"),
    ("zh", "先进先出的数据结构叫什么？只回答名称。"),
    ("zh", "用一句话描述一只猫。"),
    ("zh", "举一个黄色水果的例子，只回答名字。"),
    ("zh", "编译器是做什么的？用一句话回答。"),
    ("zh", "除了 Python，再说出一种编程语言，只回答名字。"),
    ("zh", "最小的质数是几？只回答数字。"),
    ("zh", "冬天之后是什么季节？只回答季节。"),
    ("zh", "人体中负责泵血的器官是什么？只回答器官名。"),
    ("zh", "用一句话礼貌地道别。"),
    ("zh", "什么是 API？用一句话回答。"),
    ("zh", "熊猫主要吃什么？只回答一个词。"),
    ("zh", "中国的国宝动物是什么？只回答名字。"),
]


def chat_thought(question: str, lang: str) -> str:
    """The short thought of a plain chat question in thinking mode (it needs no steps)."""
    if lang == "zh":
        return f"用户问：“{question}” 这不需要计算，我直接简要回答。"
    return f"The user asks: \"{question}\" This needs no calculation, so I answer directly and briefly."


def render_chat(tokenizer: Any, lang: str, question: str, answer: str, mode: str) -> Sample:
    """:func:`render` for a plain chat question whose answer is the base model's own reply."""
    return render(tokenizer, question, chat_thought(question, lang), answer, mode, source="chat", kind="chat",
                  lang=lang)
