"""An agent with real tools: a calculator and a unit converter offered to a local model through OpenAI
``tools=``, and how often the model calls them correctly.

Two tools, written as plain Python functions (:func:`calculator`, :func:`convert_units`) and described to
the model as OpenAI function schemas (:data:`TOOL_SCHEMAS`). Qwen's chat template puts the schemas in the
system prompt inside ``<tools></tools>`` and asks for ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``;
``qwenlab serve`` turns such a block into OpenAI ``tool_calls``. :func:`measure_tool_calls` runs seeded
trials (varied prompts, Chinese and English, :func:`tool_tasks`) with the ``openai`` client, runs each
tool the model calls, sends the result back and reads the final answer; :func:`measure_agent_tool_calls`
does the same through an AutoGen AgentChat ``AssistantAgent(tools=[...])``. Both return a
:class:`ToolCallReport`: the success rate, the time per trial and every failure with the model's text.

A trial succeeds when the first reply is a well-formed call to the right tool with correct arguments
(numbers compared by value, unit names by meaning); whether the final answer then uses the tool's result
is counted separately.

Taught in ``08_serve.ipynb``; measured numbers in ``benchmarks/tool_calls.md``;
``qwenlab bench tools [MODEL]`` runs the measurement.
"""

from __future__ import annotations

import ast
import json
import math
import operator
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Protocol

from .display import Table, TableView

__all__ = [
    "SYSTEM_MESSAGE", "TOOL_SCHEMAS", "TOOLS", "MODEL_INFO", "Endpoint", "ToolTask", "ToolTrial", "ToolCallReport",
    "calculator", "convert_units", "call_tool", "tool_tasks", "check_call", "run_trial", "measure_tool_calls",
    "call_in_text", "agent_client", "tool_agent",
    "measure_agent_tool_calls",
]

SYSTEM_MESSAGE = ("You are a helpful assistant. When one of your tools can answer the question, call it "
                  "instead of working the answer out yourself.")

# AutoGen needs this for a model name it does not know (anything but OpenAI's own models).
MODEL_INFO = {"vision": False, "function_calling": True, "json_output": False, "family": "unknown",
              "structured_output": False}

# ------------------------------------------------------------------------------------------- the tools

_BINARY: dict[type, Callable[[Any, Any], Any]] = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.USub: operator.neg, ast.UAdd: operator.pos}


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 100:
            raise ValueError("exponent too large (at most 100)")
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    raise ValueError(f"only numbers, + - * / // % ** and parentheses are allowed, not {ast.dump(node)[:40]}")


def _number_text(value: float) -> str:
    if isinstance(value, int) or (math.isfinite(value) and value == int(value) and abs(value) < 1e15):
        return str(int(value))
    return f"{value:.6g}"


def _exact(expression: str) -> float:
    """The value of an expression before :func:`calculator` rounds it to text (grading compares values)."""
    text = expression.replace("×", "*").replace("÷", "/").replace("^", "**").replace(",", "").strip()
    try:
        return float(_evaluate(ast.parse(text, mode="eval").body))
    except (SyntaxError, ZeroDivisionError, OverflowError) as err:
        raise ValueError(str(err)) from err


def calculator(expression: Annotated[str, "An arithmetic expression, e.g. '(12 + 3) * 4 / 5'"]) -> str:
    """Evaluate an arithmetic expression exactly (numbers, + - * / // % ** and parentheses) and return the result.

    A real tool, safe to run on a model's text: the expression is parsed, never passed to ``eval``.
    ``×`` and ``÷`` (common in Chinese prompts) are read as ``*`` and ``/``.

    >>> calculator("(12 + 3) * 4 / 5")
    '12'
    """
    text = expression.replace("×", "*").replace("÷", "/").replace("^", "**").replace(",", "").strip()
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as err:
        raise ValueError(f"not an arithmetic expression: {expression!r}") from err
    try:
        return _number_text(_evaluate(tree.body))
    except ZeroDivisionError as err:
        raise ValueError("division by zero") from err


# unit → (quantity, factor to the base unit); temperatures are converted by formula.
_UNITS: dict[str, tuple[str, float]] = {
    "km": ("length", 1000.0), "m": ("length", 1.0), "cm": ("length", 0.01), "mile": ("length", 1609.344),
    "ft": ("length", 0.3048), "inch": ("length", 0.0254),
    "kg": ("mass", 1.0), "g": ("mass", 0.001), "lb": ("mass", 0.45359237),
    "celsius": ("temperature", 1.0), "fahrenheit": ("temperature", 1.0),
}
_ALIASES = {
    "kilometer": "km", "kilometers": "km", "kilometre": "km", "kilometres": "km", "公里": "km", "千米": "km",
    "meter": "m", "meters": "m", "metre": "m", "metres": "m", "米": "m",
    "centimeter": "cm", "centimeters": "cm", "厘米": "cm",
    "miles": "mile", "mi": "mile", "英里": "mile", "feet": "ft", "foot": "ft", "英尺": "ft",
    "inches": "inch", "in": "inch", "英寸": "inch",
    "kilogram": "kg", "kilograms": "kg", "千克": "kg", "公斤": "kg", "gram": "g", "grams": "g", "克": "g",
    "lbs": "lb", "pound": "lb", "pounds": "lb", "磅": "lb",
    "c": "celsius", "°c": "celsius", "degc": "celsius", "摄氏度": "celsius", "摄氏": "celsius",
    "f": "fahrenheit", "°f": "fahrenheit", "degf": "fahrenheit", "华氏度": "fahrenheit", "华氏": "fahrenheit",
}


def _unit(name: str) -> str:
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _UNITS:
        raise ValueError(f"unknown unit {name!r}; known: {', '.join(_UNITS)}")
    return key


def convert_units(value: Annotated[float, "The number to convert"],
                  from_unit: Annotated[str, "The unit of value: km, m, cm, mile, ft, inch, kg, g, lb, celsius or "
                                            "fahrenheit"],
                  to_unit: Annotated[str, "The unit to convert to (same list; length, mass or temperature)"]) -> str:
    """Convert a length, mass or temperature from one unit to another and return ``"<value> <unit>"``.

    >>> convert_units(10, "km", "mile")
    '6.21371 mile'
    >>> convert_units(100, "celsius", "fahrenheit")
    '212 fahrenheit'
    """
    source, target = _unit(from_unit), _unit(to_unit)
    if _UNITS[source][0] != _UNITS[target][0]:
        raise ValueError(f"cannot convert {_UNITS[source][0]} ({source}) to {_UNITS[target][0]} ({target})")
    number = float(value)
    if source == target:
        result = number
    elif source == "celsius":
        result = number * 9 / 5 + 32
    elif source == "fahrenheit":
        result = (number - 32) * 5 / 9
    else:
        result = number * _UNITS[source][1] / _UNITS[target][1]
    return f"{_number_text(round(result, 6))} {target}"


TOOLS: dict[str, Callable[..., str]] = {"calculator": calculator, "convert_units": convert_units}

# The same tools as the model sees them: OpenAI function schemas (what `tools=` sends).
TOOL_SCHEMAS: list[dict] = [
    {"type": "function", "function": {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression exactly and return the result.",
        "parameters": {"type": "object", "properties": {
            "expression": {"type": "string", "description": "An arithmetic expression, e.g. '(12 + 3) * 4 / 5'"}},
            "required": ["expression"]}}},
    {"type": "function", "function": {
        "name": "convert_units",
        "description": "Convert a length, mass or temperature from one unit to another.",
        "parameters": {"type": "object", "properties": {
            "value": {"type": "number", "description": "The number to convert"},
            "from_unit": {"type": "string", "enum": list(_UNITS), "description": "The unit of value"},
            "to_unit": {"type": "string", "enum": list(_UNITS), "description": "The unit to convert to"}},
            "required": ["value", "from_unit", "to_unit"]}}},
]


def call_tool(name: str, arguments: str | dict) -> str:
    """Run the tool a model asked for and return what goes back to it (an error becomes ``"Error: ..."`` text,
    as AutoGen does, so the model can read what went wrong).

    >>> call_tool("calculator", '{"expression": "17 * 23"}')
    '391'
    """
    if name not in TOOLS:
        return f"Error: no tool named {name!r}; the tools are {', '.join(TOOLS)}."
    try:
        args = json.loads(arguments) if isinstance(arguments, str) else dict(arguments)
        if not isinstance(args, dict):
            raise ValueError("arguments must be a JSON object")
        return TOOLS[name](**args)
    except (ValueError, TypeError) as err:
        return f"Error: {err}"


# ------------------------------------------------------------------------------------------- the trials


@dataclass(frozen=True)
class ToolTask:
    """One prompt and the call that answers it.

    Attributes:
        prompt: what the user asks.
        lang: ``"zh"`` or ``"en"``.
        tool: the tool that should be called.
        expected: the correct arguments (for ``calculator``: ``{"value": <the result>}``, since many
            expressions are right).
        answer: the tool's result for the correct call.
    """

    prompt: str
    lang: str
    tool: str
    expected: dict
    answer: str


def _calc_task(template: str, lang: str, expression: str, **numbers: int) -> ToolTask:
    text = expression.format(**numbers)
    return ToolTask(template.format(**numbers), lang, "calculator", {"value": _exact(text)}, calculator(text))


def _convert_task(template: str, lang: str, value: float, source: str, target: str) -> ToolTask:
    expected = {"value": value, "from_unit": source, "to_unit": target}
    return ToolTask(template.format(v=_number_text(value)), lang, "convert_units", expected,
                    convert_units(value, source, target))


def _task_makers(rng: random.Random) -> list[Callable[[], ToolTask]]:
    def n(low: int = 12, high: int = 99) -> int:
        return rng.randint(low, high)

    def calc(template: str, lang: str, expression: str) -> Callable[[], ToolTask]:
        return lambda: _calc_task(template, lang, expression, a=n(), b=n(), c=n(2, 9))

    def conv(template: str, lang: str, source: str, target: str, low: int, high: int) -> Callable[[], ToolTask]:
        return lambda: _convert_task(template, lang, float(rng.randint(low, high)), source, target)

    return [
        calc("What is {a} * {b}?", "en", "{a} * {b}"),
        calc("{a} 乘以 {b} 等于多少？", "zh", "{a} * {b}"),
        conv("Convert {v} km to miles.", "en", "km", "mile", 2, 50),
        conv("{v} 公里是多少英里？", "zh", "km", "mile", 2, 50),
        calc("Please calculate {a} + {b} * {c}.", "en", "{a} + {b} * {c}"),
        calc("请计算 {a} + {b} × {c}。", "zh", "{a} + {b} * {c}"),
        conv("How many pounds is {v} kg?", "en", "kg", "lb", 2, 120),
        conv("{v} 千克等于多少磅？", "zh", "kg", "lb", 2, 120),
        calc("I bought {a} boxes with {b} pens in each. How many pens is that?", "en", "{a} * {b}"),
        calc("我买了 {a} 盒笔，每盒 {b} 支，一共多少支？", "zh", "{a} * {b}"),
        conv("What is {v} degrees Celsius in Fahrenheit?", "en", "celsius", "fahrenheit", -20, 40),
        conv("摄氏 {v} 度是华氏多少度？", "zh", "celsius", "fahrenheit", -20, 40),
        calc("What is ({a} - {b}) / {c}?", "en", "({a} - {b}) / {c}"),
        calc("帮我算一下 ({a} - {b}) ÷ {c}。", "zh", "({a} - {b}) / {c}"),
    ]


def tool_tasks(n: int = 20, seed: int = 0) -> list[ToolTask]:
    """``n`` prompts that each need one tool call: 14 templates (calculator and unit conversion, each in
    Chinese and English) taken in turn, with numbers drawn from ``random.Random(seed)``.

    >>> [t.lang for t in tool_tasks(4)]
    ['en', 'zh', 'en', 'zh']
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}.")
    makers = _task_makers(random.Random(seed))
    return [makers[i % len(makers)]() for i in range(n)]


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


def check_call(task: ToolTask, name: str, arguments: str | dict) -> str:
    """Grade one tool call against ``task``: ``"ok"``, ``"malformed arguments"`` (not a JSON object, or a
    missing or unknown argument), ``"wrong tool"`` or ``"wrong arguments"``. A calculator expression counts when it evaluates to the right value; unit names
    count by meaning (``"kilometers"`` = ``"km"``).

    >>> task = tool_tasks(1)[0]
    >>> check_call(task, "calculator", {"expression": task.prompt[8:-1]})
    'ok'
    """
    try:
        args = json.loads(arguments) if isinstance(arguments, str) else arguments
    except json.JSONDecodeError:
        return "malformed arguments"
    if not isinstance(args, dict):
        return "malformed arguments"
    if name != task.tool:
        return "wrong tool"
    parameters = TOOL_SCHEMAS[list(TOOLS).index(name)]["function"]["parameters"]
    if not set(parameters["required"]) <= set(args) <= set(parameters["properties"]):
        return "malformed arguments"  # a missing or unknown argument: running the tool would fail
    try:
        if name == "calculator":
            right = _close(_exact(str(args["expression"])), task.expected["value"])
        else:
            right = (_close(float(args["value"]), task.expected["value"])
                     and _unit(args["from_unit"]) == task.expected["from_unit"]
                     and _unit(args["to_unit"]) == task.expected["to_unit"])
    except (ValueError, TypeError):
        right = False
    return "ok" if right else "wrong arguments"


_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")


def _uses_result(answer: str | None, result: str) -> bool:
    """The final answer states the tool's number (to 2 decimals at least) and is not one more call written
    as text (small models often answer a tool result with another call)."""
    wanted = _NUMBER.search(result)
    if not answer or wanted is None or call_in_text(answer) is not None:
        return False
    target = float(wanted.group())
    return any(math.isclose(float(m.replace(",", "")), target, rel_tol=0, abs_tol=0.01 + 1e-4 * abs(target))
               for m in _NUMBER.findall(answer))


def call_in_text(text: str) -> tuple[str, str] | None:
    """The first ``{"name": ..., "arguments": {...}}`` object written as plain text (often in a ```json block,
    which small models write instead of ``<tool_call>`` tags), as ``(name, arguments JSON)``; None if none.

    Servers do not read these (``qwenlab serve``, llama.cpp and vLLM only parse the template's format), so
    the client gets text, not ``tool_calls``; a client that wants to rescue them can.

    >>> call_in_text('```json {"name": "calculator", "arguments": {"expression": "2*3"}} ```')
    ('calculator', '{"expression": "2*3"}')
    """
    decoder = json.JSONDecoder()
    for start in (i for i, ch in enumerate(text) if ch == "{"):
        try:
            data, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            continue
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            continue
        arguments = data.get("arguments", data.get("parameters", {}))
        try:
            arguments = json.loads(arguments) if isinstance(arguments, str) else arguments
        except json.JSONDecodeError:
            continue
        if isinstance(arguments, dict):
            return data["name"], json.dumps(arguments, ensure_ascii=False)
    return None


def _no_call(task: ToolTask, text: str, began: float) -> ToolTrial:
    """A reply without ``tool_calls``: the call written as text (graded anyway), or an answer with no call."""
    found = call_in_text(text)
    trial = ToolTrial(task, "call written as text" if found else "answered without a tool", text=text)
    if found:
        trial.text_call = check_call(task, *found)
    trial.seconds = time.perf_counter() - began
    return trial


@dataclass
class ToolTrial:
    """One trial: the task, what the model did and how long it took.

    Attributes:
        outcome: ``"ok"``, ``"answered without a tool"``, ``"call written as text"``, ``"malformed arguments"``,
            ``"wrong tool"`` or ``"wrong arguments"``.
        called: the tool the model called (None: no ``tool_calls``).
        arguments: the call's arguments as JSON text.
        text: the first reply's text (what the model wrote instead, when there is no call).
        text_call: when the call was written as text (:func:`call_in_text`): how that call grades
            (``"ok"``: the right call in the wrong format).
        rescued: the call written as text was run anyway (``rescue=True``) and its result sent back.
        result: what the tool returned (sent back to the model).
        answer: the model's final answer after the tool result (None without a call, or when it called again).
        answer_uses_result: the final answer states the tool's number.
        seconds: wall time of the whole trial (call, tool, answer).
    """

    task: ToolTask
    outcome: str
    called: str | None = None
    arguments: str = ""
    text: str = ""
    text_call: str | None = None
    rescued: bool = False
    result: str | None = None
    answer: str | None = None
    answer_uses_result: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """A well-formed call to the right tool with correct arguments."""
        return self.outcome == "ok"

    @property
    def right_call(self) -> bool:
        """The right call, in the template's format or written as text."""
        return self.ok or self.text_call == "ok"


@dataclass
class ToolCallReport(TableView):
    """The trials of one measurement and what they add up to (``print`` it, or ``to_markdown()``).

    Attributes:
        route: ``"openai"`` (the client, by hand) or ``"autogen"`` (an AgentChat ``AssistantAgent``).
        model: the model id the server reported.
        trials: every :class:`ToolTrial`, in order.
        settings: temperature, top_p, seed, max_tokens.
    """

    route: str
    model: str
    trials: list[ToolTrial]
    settings: dict = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Share of trials with a correct call, in [0, 1]."""
        return sum(t.ok for t in self.trials) / len(self.trials) if self.trials else 0.0

    @property
    def right_call_rate(self) -> float:
        """Share of trials with the right call in any format (``<tool_call>`` or written as text), in [0, 1]."""
        return sum(t.right_call for t in self.trials) / len(self.trials) if self.trials else 0.0

    @property
    def answer_rate(self) -> float:
        """Share of trials whose final answer states the tool's result, in [0, 1]."""
        return sum(t.answer_uses_result for t in self.trials) / len(self.trials) if self.trials else 0.0

    def outcomes(self) -> Counter:
        """How many trials ended each way."""
        return Counter(t.outcome for t in self.trials)

    def rate_by(self, key: Callable[[ToolTrial], str]) -> dict[str, tuple[int, int]]:
        """``{group: (correct calls, trials)}``, e.g. ``rate_by(lambda t: t.task.lang)``."""
        groups: dict[str, tuple[int, int]] = {}
        for t in self.trials:
            ok, total = groups.get(key(t), (0, 0))
            groups[key(t)] = (ok + t.ok, total + 1)
        return groups

    def failures(self) -> list[ToolTrial]:
        """The trials without a correct call."""
        return [t for t in self.trials if not t.ok]

    def table(self) -> Table:
        seconds = sorted(t.seconds for t in self.trials) or [0.0]
        ok = sum(t.ok for t in self.trials)
        by_lang = ", ".join(f"{k} {a}/{b}" for k, (a, b) in sorted(self.rate_by(lambda t: t.task.lang).items()))
        by_tool = ", ".join(f"{k} {a}/{b}" for k, (a, b) in sorted(self.rate_by(lambda t: t.task.tool).items()))
        rows = [
            ["route", self.route], ["model", self.model],
            ["settings", ", ".join(f"{k}={v}" for k, v in self.settings.items())],
            ["correct tool calls", f"{ok}/{len(self.trials)} = {self.rate:.0%}"],
            ["right call, any format", f"{sum(t.right_call for t in self.trials)}/{len(self.trials)} = "
                                       f"{self.right_call_rate:.0%} (also counting calls written as text)"],
            ["answer uses the result", f"{sum(t.answer_uses_result for t in self.trials)}/{len(self.trials)} "
                                       f"= {self.answer_rate:.0%}"],
            ["by language", by_lang], ["by tool", by_tool],
            ["outcomes", ", ".join(f"{k} {v}" for k, v in self.outcomes().most_common())],
            ["seconds per trial", f"median {seconds[len(seconds) // 2]:.1f}, max {seconds[-1]:.1f}, "
                                  f"total {sum(seconds):.0f}"],
        ]
        return Table([], rows, title=f"Tool-call success ({self.route})", min_widths={0: 23})

    def trials_table(self) -> Table:
        """One row per trial: prompt, outcome, the call (or the text written instead), the final answer."""
        rows = [[i + 1, t.task.lang, t.task.prompt, t.outcome + (f" ({t.text_call})" if t.text_call else ""),
                 f"{t.called}({t.arguments})" if t.called else " ".join(t.text.split())[:90],
                 (t.answer or "").replace("\n", " ")[:60], f"{t.seconds:.1f}"] for i, t in enumerate(self.trials)]
        return Table(["#", "lang", "prompt", "outcome", "call (or text instead)", "final answer", "s"], rows,
                     align_right=(0, 6))

    def to_markdown(self) -> str:
        """The summary and the per-trial table in Markdown (for ``benchmarks/tool_calls.md``)."""
        return self.table().to_markdown() + "\n\n" + self.trials_table().to_markdown()

    def to_json(self) -> str:
        """Everything as JSON."""
        return json.dumps({"route": self.route, "model": self.model, "settings": self.settings, "rate": self.rate,
                           "right_call_rate": self.right_call_rate, "answer_rate": self.answer_rate, "trials": [asdict(t) for t in self.trials]},
                          ensure_ascii=False, indent=1)


# ------------------------------------------------------------------------------------------- the openai route


class Endpoint(Protocol):
    """Where a model answers: a :class:`qwenlab.serve.Server`, or anything with these three attributes."""

    base_url: str
    model: str
    api_key: str


def run_trial(client: Any, model: str, task: ToolTask, *, seed: int = 0, temperature: float = 0.7,
              top_p: float = 0.8, max_tokens: int = 128, rescue: bool = False) -> ToolTrial:
    """One trial with an ``openai.OpenAI`` client: ask with ``tools=TOOL_SCHEMAS``; when the reply has
    ``tool_calls``, run the first call, send its result back as a ``"tool"`` message and read the answer.

    With ``rescue=True`` a call the model wrote as text (:func:`call_in_text`) is run the same way (it still
    counts as a failed call; ``trial.rescued`` says so), so the rest of the loop can be seen on a model that
    never writes the template's format.

    Taught in ``08_serve.ipynb``.
    """
    began = time.perf_counter()
    sampling = {"temperature": temperature, "top_p": top_p, "seed": seed, "max_tokens": max_tokens}
    messages: list[dict] = [{"role": "system", "content": SYSTEM_MESSAGE}, {"role": "user", "content": task.prompt}]
    reply = client.chat.completions.create(model=model, messages=messages, tools=TOOL_SCHEMAS, **sampling)
    message = reply.choices[0].message
    if message.tool_calls:
        call = message.tool_calls[0]
        name, arguments, call_id = call.function.name, call.function.arguments, call.id
        trial = ToolTrial(task, check_call(task, name, arguments), called=name, arguments=arguments,
                          text=message.content or "")
    else:
        trial = _no_call(task, message.content or "", began)
        found = call_in_text(trial.text) if rescue else None
        if found is None:
            return trial
        (name, arguments), call_id, trial.rescued = found, "call_from_text", True
    assistant = {"role": "assistant", "content": None, "tool_calls": [
        {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]}
    trial.result = call_tool(name, arguments)
    messages += [assistant, {"role": "tool", "tool_call_id": call_id, "content": trial.result}]
    final = client.chat.completions.create(model=model, messages=messages, tools=TOOL_SCHEMAS, **sampling)
    trial.answer = None if final.choices[0].message.tool_calls else final.choices[0].message.content
    trial.answer_uses_result = _uses_result(trial.answer, trial.result)
    trial.seconds = time.perf_counter() - began
    return trial


def measure_tool_calls(server: Endpoint, n: int = 20, seed: int = 0, *, temperature: float = 0.7,
                       top_p: float = 0.8, max_tokens: int = 128, rescue: bool = False,
                       progress: Callable[[ToolTrial], None] | None = None) -> ToolCallReport:
    """The tool-call success rate of ``server``'s model over ``n`` seeded trials (:func:`tool_tasks`), with
    the plain ``openai`` client. Trial ``i`` sends ``seed + i``, so a rerun on the same model repeats it.

    Args:
        server: a running server (:func:`qwenlab.start_server`) or any ``base_url`` / ``model`` / ``api_key``.
        n: number of trials (20+ for a rate worth quoting).
        seed: picks the prompts' numbers and the sampling seeds.
        temperature, top_p: sampling (defaults: Qwen2.5-Instruct's recommended 0.7 / 0.8).
        max_tokens: cap per reply (a call takes ~30 tokens).
        rescue: also run calls written as text (see :func:`run_trial`); the rate is the same either way.
        progress: called with each finished trial.

    Taught in ``08_serve.ipynb``.
    """
    from openai import OpenAI

    client = OpenAI(base_url=server.base_url, api_key=server.api_key)
    trials = []
    for i, task in enumerate(tool_tasks(n, seed)):
        trials.append(run_trial(client, server.model, task, seed=seed + i, temperature=temperature, top_p=top_p,
                                max_tokens=max_tokens, rescue=rescue))
        if progress:
            progress(trials[-1])
    settings = {"temperature": temperature, "top_p": top_p, "seed": seed, "max_tokens": max_tokens, "rescue": rescue}
    return ToolCallReport("openai", server.model, trials, settings)


# ------------------------------------------------------------------------------------------- the AutoGen route


def agent_client(server: Endpoint, **create_args: Any) -> Any:
    """AutoGen's ``OpenAIChatCompletionClient`` for ``server`` (``model_info`` says the model can call
    functions); ``create_args`` (temperature, seed, max_tokens ...) go into every request."""
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    return OpenAIChatCompletionClient(model=server.model, base_url=server.base_url, api_key=server.api_key,
                                      model_info=MODEL_INFO, **create_args)  # type: ignore[arg-type]


def tool_agent(model_client: Any, name: str = "assistant") -> Any:
    """An AutoGen AgentChat ``AssistantAgent`` with both tools; after a tool runs, the model answers with its
    result (``reflect_on_tool_use=True``).

    Taught in ``08_serve.ipynb``.
    """
    from autogen_agentchat.agents import AssistantAgent

    return AssistantAgent(name, model_client=model_client, tools=[calculator, convert_units],
                          system_message=SYSTEM_MESSAGE, reflect_on_tool_use=True)


async def _agent_trial(server: Endpoint, task: ToolTask, create_args: dict) -> ToolTrial:
    from autogen_agentchat.messages import TextMessage, ToolCallExecutionEvent, ToolCallRequestEvent

    began = time.perf_counter()
    client = agent_client(server, **create_args)
    try:
        result = await tool_agent(client).run(task=task.prompt)
    finally:
        await client.close()
    messages = result.messages[1:]  # [0] is the task
    requests = [m for m in messages if isinstance(m, ToolCallRequestEvent)]
    texts = [m.content for m in messages if isinstance(m, TextMessage)]
    if not requests:
        return _no_call(task, texts[-1] if texts else "", began)
    call = requests[0].content[0]
    trial = ToolTrial(task, check_call(task, call.name, call.arguments), called=call.name, arguments=call.arguments)
    executed = [m for m in messages if isinstance(m, ToolCallExecutionEvent)]
    trial.result = executed[0].content[0].content if executed else None
    trial.answer = texts[-1] if texts else None
    trial.answer_uses_result = bool(trial.result) and _uses_result(trial.answer, str(trial.result))
    trial.seconds = time.perf_counter() - began
    return trial


async def measure_agent_tool_calls(server: Endpoint, n: int = 20, seed: int = 0, *, temperature: float = 0.7,
                                   top_p: float = 0.8, max_tokens: int = 128,
                                   progress: Callable[[ToolTrial], None] | None = None) -> ToolCallReport:
    """:func:`measure_tool_calls` through AutoGen: each trial is a fresh :func:`tool_agent` that runs the task
    (AutoGen sends the tools, runs the call, sends the result back and gets the answer). Same prompts,
    seeds and grading. A coroutine: ``await`` it in a notebook, ``asyncio.run(...)`` in a script.

    Taught in ``08_serve.ipynb``.
    """
    trials = []
    for i, task in enumerate(tool_tasks(n, seed)):
        create_args = {"temperature": temperature, "top_p": top_p, "seed": seed + i, "max_tokens": max_tokens}
        trials.append(await _agent_trial(server, task, create_args))
        if progress:
            progress(trials[-1])
    settings = {"temperature": temperature, "top_p": top_p, "seed": seed, "max_tokens": max_tokens}
    return ToolCallReport("autogen", server.model, trials, settings)
