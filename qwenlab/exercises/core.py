"""Exercises whose right answers live here, not in the student's notebook.

Every checked item of the course is one :class:`Exercise` registered under a key ``"NN.x"`` (notebook
``NN``, item ``x``: ``"03.2"`` is 练习 2 of ``03_tokenizer``, ``"04.p1"`` is 预测 1 of ``04_generate``, ``"04.w1"`` its 动手写 1).
The notebook passes what the answer depends on (a tokenizer, a model, a text) and the check computes the
expected value itself, so "Run All" answers nothing. A wrong answer is matched against the item's known
misconceptions (:class:`Mistake`) and the student sees the matching explanation, not the right value.

"Write it" items take a function from the student and compare it with a reference (usually the library or
transformers itself) on many generated inputs; a mismatch shows the first input where they differ.

Taught from ``00_quickstart.ipynb`` on; the teacher's solutions are in ``solutions/`` (``qwenlab edition``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .. import course

Kind = Literal["predict", "write", "reason", "lookup"]
KINDS: tuple[str, ...] = ("predict", "write", "reason", "lookup")


@dataclass(frozen=True)
class Mistake:
    """A likely misconception: when ``when(answer, expected)`` is true, the student reads ``says``.

    For "write it" items ``answer`` / ``expected`` are the two outputs on the first input where they differ.
    """

    when: Callable[[Any, Any], bool]
    says: str


def same(answer: Any, expected: Any, rel: float = 1e-6, abs_: float = 1e-9) -> bool:
    """Equality that forgives float rounding and compares tensors / arrays element-wise.

    >>> same(0.1 + 0.2, 0.3), same([1, 2.0000000001], (1, 2)), same("a", "b")
    (True, True, False)
    """
    if hasattr(answer, "shape") or hasattr(expected, "shape"):
        import torch

        a, e = torch.as_tensor(answer), torch.as_tensor(expected)
        return a.shape == e.shape and bool(torch.allclose(a.double(), e.double(), rtol=rel, atol=abs_,
                                                          equal_nan=True))
    if isinstance(answer, bool) or isinstance(expected, bool):
        return answer is expected or answer == expected
    if isinstance(answer, (int, float)) and isinstance(expected, (int, float)):
        return math.isclose(answer, expected, rel_tol=rel, abs_tol=abs_)
    if isinstance(answer, (list, tuple)) and isinstance(expected, (list, tuple)):
        return len(answer) == len(expected) and all(same(a, e, rel, abs_) for a, e in zip(answer, expected))
    if isinstance(answer, dict) and isinstance(expected, dict):
        return answer.keys() == expected.keys() and all(same(answer[k], expected[k], rel, abs_) for k in answer)
    return bool(answer == expected)


def within(rel: float) -> Callable[[Any, Any], bool]:
    """A comparison for estimates: right when within ``rel`` (0.1 = 10 %) of the expected number."""
    def close(answer: Any, expected: Any) -> bool:
        return same(answer, expected, rel=rel, abs_=0.0)
    return close


@dataclass(frozen=True)
class Exercise:
    """One checked item. ``expected(**context)`` computes the right answer (for "write" items: the
    reference function); ``cases(**context)`` yields the argument tuples a written function is tried on."""

    key: str
    kind: Kind
    expected: Callable[..., Any]
    hint: str
    mistakes: tuple[Mistake, ...] = ()
    compare: Callable[[Any, Any], bool] = same
    cases: Callable[..., Iterable[tuple[Any, ...]]] | None = None

    @property
    def notebook(self) -> str:
        """The notebook number, e.g. ``"03"``."""
        return self.key.split(".", 1)[0]

    @property
    def label(self) -> str:
        """What the student sees: ``练习 2`` or ``预测 1``."""
        item = self.key.split(".", 1)[1]
        if item[0] in _LABELS and item[1:].isdigit():
            return f"{_LABELS[item[0]]} {item[1:]}"
        return f"练习 {item}"


EXERCISES: dict[str, Exercise] = {}
_LABELS = {"p": "预测", "w": "动手写"}  # "04.p1" = 预测 1 (predict, then run), "04.w1" = 动手写 1 (write it)


def exercise(key: str, kind: Kind, hint: str, mistakes: Sequence[Mistake] = (),
             compare: Callable[[Any, Any], bool] = same,
             cases: Callable[..., Iterable[tuple[Any, ...]]] | None = None,
             ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function as the expected answer of exercise ``key``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    if (kind == "write") != (cases is not None):
        raise ValueError(f"{key}: a 'write' item needs cases=..., other kinds must not have them")

    def register(expected: Callable[..., Any]) -> Callable[..., Any]:
        if key in EXERCISES:
            raise ValueError(f"exercise {key} is registered twice")
        EXERCISES[key] = Exercise(key, kind, expected, hint, tuple(mistakes), compare, cases)
        return expected
    return register


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _misconception(ex: Exercise, answer: Any, expected: Any) -> str | None:
    for mistake in ex.mistakes:
        try:
            if mistake.when(answer, expected):
                return mistake.says
        except Exception:  # a mistake test that does not apply to this answer's type
            continue
    return None


def judge(ex: Exercise, answer: Any, context: dict[str, Any]) -> tuple[bool, str]:
    """``(passed, message)`` for ``answer``; the message names the misconception when one matches."""
    if ex.kind == "write":
        return _judge_function(ex, answer, context)
    expected = ex.expected(**context)
    if ex.compare(answer, expected):
        return True, ""
    return False, _misconception(ex, answer, expected) or ex.hint


def _judge_function(ex: Exercise, student: Any, context: dict[str, Any]) -> tuple[bool, str]:
    if not callable(student):
        return False, f"这里要交一个函数 (a function), 不是 {type(student).__name__}。{ex.hint}"
    reference = ex.expected(**context)
    assert ex.cases is not None
    tried = 0
    for args in ex.cases(**context):
        tried += 1
        want = reference(*args)
        try:
            got = student(*args)
        except Exception as err:
            return False, (f"输入 {_short(args)} 时你的函数出错 ({type(err).__name__}: {err})。{ex.hint}")
        if not ex.compare(got, want):
            why = _misconception(ex, got, want) or ex.hint
            return False, (f"第 {tried} 个输入 {_short(args)}：你的函数返回 {_short(got)}，"
                           f"参考实现 (reference) 返回 {_short(want)}。{why}")
    return True, ""


def check(key: str, answer: Any, **context: Any) -> None:
    """Check a student's answer to exercise ``key`` and show ✅ / ❌ + why / ⏳ (not answered yet).

    ``context`` is what the answer depends on (``tokenizer=tokenizer``, ``model=model``...). Like
    :func:`qwenlab.check`, it never raises in class; under ``make test`` a wrong answer raises.

    >>> check("demo.1", None)
    ⏳ 练习 1: 尚未作答 (not answered yet)
    >>> check("demo.1", 5, text="hello")
    ✅ 练习 1: 正确 (correct)
    >>> check("demo.1", 5, text="hello ")            # doctest: +SKIP
    ❌ 练习 1: 还不对 (not yet). 空格也是字符：数一数 len(text)。
    """
    if key not in EXERCISES:
        known = ", ".join(k for k in sorted(EXERCISES) if k.startswith(key.split(".")[0] + ".")) or "none"
        raise KeyError(f"no exercise {key!r}; this notebook's are: {known}. Update qwenlab (`make install`)?")
    ex = EXERCISES[key]
    if answer is None or answer is Ellipsis:
        course.check(ex.label, answer, True)
        return None
    try:
        passed, message = judge(ex, answer, context)
    except Exception as err:  # a half-written answer must not crash the notebook
        passed, message = False, f"{ex.hint} (检查时出错 {type(err).__name__}: {err})"
    course.check(ex.label, answer, passed, hint=message)
    return None


@exercise("demo.1", "lookup", hint="数一数 len(text)。",
          mistakes=[Mistake(lambda a, e: a == e - 1, "空格也是字符：数一数 len(text)。")])
def _demo(text: str) -> int:
    """The example in :func:`check`'s docstring (not used by any notebook)."""
    return len(text)
