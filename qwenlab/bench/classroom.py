"""A classroom against one laptop's server: N simulated students send short chat questions at once to a
``qwenlab serve`` on 127.0.0.1 and read the streamed replies; how fast does each one read, and how long does
each wait for the first word?

:func:`classroom_load` returns the numbers (:class:`ClassroomReport`); ``qwenlab bench serve`` starts the
server and prints them. Loopback only, bounded: one reply of ``max_tokens`` per student per round.

Taught in ``08_serve.ipynb`` (the teacher's guide quotes the recorded table, benchmarks/README.md).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from types import SimpleNamespace
from typing import Any

from ..display import Table, TableView

__all__ = ["CLASS_QUESTIONS", "READING_SPEED", "MAX_FIRST_TOKEN_SECONDS", "StudentRun", "ClassroomRow",
           "ClassroomReport", "classroom_load", "llama_cpp_alone", "overhead_table", "compare_with_llama_cpp_alone"]

# What students type in a first lesson: short, mixed Chinese and English.
CLASS_QUESTIONS = (
    "用一句话解释什么是大语言模型。",
    "What is the capital of France?",
    "Python 里 list 和 tuple 有什么区别？",
    "Write a haiku about autumn.",
    "帮我把这句话翻译成英文：今天天气很好。",
    "Explain recursion to a ten-year-old.",
    "给我三个学习编程的小建议。",
    "How do I reverse a string in Python?",
)
READING_SPEED = 5.0  # tokens/s each student must get to read along
MAX_FIRST_TOKEN_SECONDS = 5.0  # p95 wait for the first token


@dataclass
class StudentRun:
    """One student's request: seconds to the first token, tokens, tok/s while streaming, or the error."""

    first_token_seconds: float | None = None
    tokens: int = 0
    seconds: float = 0.0
    error: str = ""

    @property
    def tokens_per_second(self) -> float:
        stream = self.seconds - (self.first_token_seconds or 0.0)
        return self.tokens / stream if self.tokens > 1 and stream > 0 else 0.0


@dataclass
class ClassroomRow:
    """One round: ``students`` requests sent together."""

    students: int
    seconds: float
    runs: list[StudentRun] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(bool(r.error) for r in self.runs)

    @property
    def aggregate_tokens_per_second(self) -> float:
        return sum(r.tokens for r in self.runs) / self.seconds if self.seconds > 0 else 0.0

    @property
    def per_student_tokens_per_second(self) -> float:
        """The median student's reading speed (tokens/s after the first token)."""
        speeds = [r.tokens_per_second for r in self.runs if not r.error]
        return statistics.median(speeds) if speeds else 0.0

    def first_token(self, q: float) -> float | None:
        """The ``q`` quantile (0.5, 0.95) of the seconds to the first token."""
        waits = sorted(r.first_token_seconds for r in self.runs if r.first_token_seconds is not None)
        if not waits:
            return None
        return waits[min(len(waits) - 1, max(0, round(q * len(waits) + 0.5) - 1))]

    @property
    def at_reading_speed(self) -> bool:
        p95 = self.first_token(0.95)
        return (not self.errors and self.per_student_tokens_per_second >= READING_SPEED and p95 is not None
                and p95 <= MAX_FIRST_TOKEN_SECONDS)


@dataclass
class ClassroomReport(TableView):
    """Every round of :func:`classroom_load`; ``students_served`` is the largest class served at reading speed."""

    label: str
    max_tokens: int
    rows: list[ClassroomRow]

    @property
    def students_served(self) -> int:
        return max((r.students for r in self.rows if r.at_reading_speed), default=0)

    def table(self) -> Table:
        head = ["students", "aggregate tok/s", "tok/s per student", "TTFT p50 s", "TTFT p95 s", "errors",
                "reading speed"]
        rows = [[r.students, f"{r.aggregate_tokens_per_second:.1f}", f"{r.per_student_tokens_per_second:.1f}",
                 _s(r.first_token(0.5)), _s(r.first_token(0.95)), r.errors, "yes" if r.at_reading_speed else "no"]
                for r in self.rows]
        notes = [f"{self.max_tokens}-token replies; reading speed = >= {READING_SPEED:.0f} tok/s each and p95 time to "
                 f"first token <= {MAX_FIRST_TOKEN_SECONDS:.0f} s: {self.students_served} students served"]
        return Table(head, rows, title=self.label, notes=notes)

    def to_dict(self) -> dict:
        return asdict(self) | {"students_served": self.students_served}


_GO = threading.Event()
_GO.set()


def _s(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _student(client: Any, model: str, question: str, max_tokens: int, seed: int, start: threading.Event) -> StudentRun:
    run = StudentRun()
    start.wait()
    began = time.perf_counter()
    try:
        stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}],
                                                max_tokens=max_tokens, temperature=0.7, seed=seed, stream=True,
                                                stream_options={"include_usage": True})
        pieces = 0
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces += 1
                if run.first_token_seconds is None:
                    run.first_token_seconds = time.perf_counter() - began
            if chunk.usage is not None:
                run.tokens = chunk.usage.completion_tokens
        run.tokens = run.tokens or pieces
    except Exception as err:  # a refused or broken request is counted, not raised
        run.error = f"{type(err).__name__}: {err}"
    run.seconds = time.perf_counter() - began
    return run


def classroom_load(server: Any, students: Sequence[int] = (1, 4, 8), *, max_tokens: int = 48,
                   questions: Sequence[str] = CLASS_QUESTIONS, label: str = "", timeout: float = 300.0
                   ) -> ClassroomReport:
    """Send ``n`` streamed chat requests at once for each ``n`` in ``students``; measure every student.

    Args:
        server: a :class:`qwenlab.serve.Server` (from :func:`qwenlab.start_server`), or anything with
            ``base_url``, ``model`` and ``api_key``.
        students: class sizes, one round each, in order.
        max_tokens: reply length per student (48: a short answer).
        questions: the prompts, handed round-robin.
        timeout: seconds one request may take.

    Returns:
        :class:`ClassroomReport`: aggregate tok/s, the median student's tok/s, p50/p95 time to first token,
        errors, and how many students get reading speed.

    Example:
        >>> with qwenlab.start_server("offline", engine="llama.cpp", slots=8) as server:   # doctest: +SKIP
        ...     print(qwenlab.bench.classroom_load(server))

    Taught in ``08_serve.ipynb``.
    """
    from openai import OpenAI

    client = OpenAI(base_url=server.base_url, api_key=server.api_key, timeout=timeout, max_retries=0)
    _student(client, server.model, questions[0], 2, 0, _GO)  # warm-up, not counted (first request's setup)
    rows = [_round(client, server.model, n, questions, max_tokens, timeout) for n in students]
    return ClassroomReport(label or f"{server.model} at {server.base_url}", max_tokens, rows)


def _round(client: Any, model: str, n: int, questions: Sequence[str], max_tokens: int, timeout: float) -> ClassroomRow:
    """``n`` students released together (one event), each in its own thread."""
    start = threading.Event()
    results: list[StudentRun] = [StudentRun() for _ in range(n)]

    def work(i: int) -> None:
        results[i] = _student(client, model, questions[i % len(questions)], max_tokens, i, start)

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    began = time.perf_counter()
    start.set()
    for t in threads:
        t.join(timeout + 10)
    return ClassroomRow(n, time.perf_counter() - began, results)


# The child that holds llama.cpp alone: the same load_model(..., engine="llama.cpp", slots=N) that
# `qwenlab serve --engine llama.cpp` runs, reached through llama.cpp's own HTTP server instead of qwenlab's.
_ALONE = r"""
import json, sys
import qwenlab
a = json.loads(sys.argv[1])
llm = qwenlab.load_model(a["model"], engine="llama.cpp", slots=a["slots"])
url, key = llm.http_endpoint
print(json.dumps({"base_url": url, "api_key": key}), flush=True)
sys.stdin.read()  # until the parent closes our stdin
"""


@contextmanager
def llama_cpp_alone(model: str, slots: int, timeout: float = 300.0) -> Iterator[Any]:
    """llama.cpp with ``slots`` slots for ``model``, in a child process, behind its own HTTP server only
    (127.0.0.1, a random key): the baseline ``qwenlab serve --engine llama.cpp`` is compared with.

    Yields an object with ``base_url``, ``api_key`` and ``model`` for :func:`classroom_load`.
    """
    proc = subprocess.Popen([sys.executable, "-c", _ALONE, json.dumps({"model": str(model), "slots": slots})],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""  # the child prints one line when loaded
        if not line:
            raise RuntimeError(f"llama.cpp alone did not start for {model} (exit code {proc.wait(timeout)}).")
        yield SimpleNamespace(**json.loads(line), model=str(model))
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def overhead_table(alone: ClassroomReport, served: ClassroomReport, tolerance: float = 0.10) -> Table:
    """``qwenlab serve`` vs llama.cpp alone, class size by class size: median aggregate tok/s of each, the
    median of the per-round ratios (rounds alternate between the two, so a change in the machine's load hits
    both alike), p95 time to first token, and whether qwenlab comes within ``tolerance`` (10 %)."""
    rows = []
    for n in dict.fromkeys(r.students for r in alone.rows):
        a = [r for r in alone.rows if r.students == n]
        b = [r for r in served.rows if r.students == n]
        ratios = [y.aggregate_tokens_per_second / x.aggregate_tokens_per_second
                  for x, y in zip(a, b) if x.aggregate_tokens_per_second]
        ratio = statistics.median(ratios) if ratios else 0.0
        rows.append([n, len(ratios), f"{statistics.median(x.aggregate_tokens_per_second for x in a):.1f}",
                     f"{statistics.median(y.aggregate_tokens_per_second for y in b):.1f}", f"{ratio:.2f}",
                     " ".join(f"{x:.2f}" for x in ratios), _s(_p95(a)), _s(_p95(b)),
                     "yes" if ratio >= 1 - tolerance else "no"])
    head = ["students", "rounds", "llama.cpp alone tok/s", "qwenlab serve tok/s", "ratio (median)", "ratios",
            "TTFT p95 alone s", "TTFT p95 qwenlab s", f"within {tolerance:.0%}"]
    return Table(head, rows, title="qwenlab serve vs llama.cpp alone (same engine, slots and requests; rounds "
                                   "alternate between the two, one run)")


def _p95(rows: Sequence[ClassroomRow]) -> float | None:
    """p95 time to first token over every student of several rounds."""
    return ClassroomRow(0, 0.0, [run for r in rows for run in r.runs]).first_token(0.95)


def compare_with_llama_cpp_alone(bare: Any, server: Any, students: Sequence[int], *, rounds: int = 3,
                                 max_tokens: int = 48) -> tuple[ClassroomReport, ClassroomReport]:
    """The same class sizes against llama.cpp alone (``bare``, from :func:`llama_cpp_alone`) and against
    ``qwenlab serve`` (``server``), ``rounds`` rounds each, alternating which goes first."""
    alone: list[ClassroomRow] = []
    served: list[ClassroomRow] = []
    for n in students:
        for i in range(rounds):
            pair = [(bare, alone), (server, served)]
            for target, rows in (pair if i % 2 == 0 else pair[::-1]):
                rows += classroom_load(target, (n,), max_tokens=max_tokens).rows
    return (ClassroomReport("llama.cpp alone (its own HTTP server)", max_tokens, alone),
            ClassroomReport("qwenlab serve --engine llama.cpp", max_tokens, served))
