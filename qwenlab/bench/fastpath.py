"""How close can PyTorch get to llama.cpp on a CPU? The decode path pushed one step at a time, each step
measured in the same run and on top of the previous one:

1. ``model.generate`` in fp32 (the baseline of ``qwenlab bench``);
2. a tight greedy loop of our own (``model(...)`` + ``argmax`` per token, no ``generate`` machinery);
3. a static KV cache (fixed shapes) and ``torch.compile`` of the one-token decode step, checked for
   recompiles (a recompile per token is what a naive compile of ``generate`` does);
4. bf16 weights (half the bytes; native on CPUs with AVX512-BF16 / AMX);
5. int8 weight-only kernel (``_weight_int8pack_mm``), eager then compiled;
6. int4 weight-only kernel (``_weight_int4pack_mm_for_cpu``, groups of 128), eager then compiled; then
   int4 in groups of 32 with the output layer at int8 (closer to Q4_K_M's choices), compiled;

then llama.cpp on the Q4_K_M GGUF of the same weights, in its own torch-free process (the helper of
:mod:`qwenlab.bench.run`). Every row gets its decode tok/s, ratio to fp32 and to llama.cpp, compile seconds,
recompiles, bytes read per token and % of the roofline, and the quality of its weights: greedy probe answers
unchanged vs fp32 and perplexity (:mod:`qwenlab.evaluation`).

:func:`fastpath` runs it and returns a :class:`FastpathReport`; ``qwenlab bench fastpath`` prints it.
:func:`greedy_decode` is the loop itself. Taught in ``09_performance.ipynb`` (why llama.cpp is faster).
"""

from __future__ import annotations

import gc
import json
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any
from collections.abc import Callable, Sequence

import torch

from ..display import Table, TableView, pick
from ..evaluation import perplexity, probe_answers, probes, same_answer
from ..generation import build_inputs
from ..measure import copy_model, machine_info, time_generate, torch_threads
from ..modelfacts import facts_of
from ..quant.int4 import INT4_GROUP_SIZE, int4_kernel_error, weight_only
from .limits import GB, Bandwidth, decode_traffic, memory_bandwidth
from .report import BenchPlan
from .run import PROMPT, _Ctx, _llama_cpp_row, _load

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from ..modelfacts import CausalLM

__all__ = ["Decode", "FastpathRow", "FastpathReport", "greedy_decode", "compiled_step", "graphs_compiled",
           "fastpath"]


# ------------------------------------------------------------------------------------------ the loop


@dataclass
class Decode:
    """One greedy decode: the new token ids, the prefill seconds and the seconds of each later step."""

    tokens: list[int]
    prefill_seconds: float
    step_seconds: list[float]


Step = Callable[[Any, Any, Any], Any]  # (cache, token (1, 1), position (1,)) -> next token (1, 1)


def _eager_step(model: CausalLM) -> Step:
    def step(cache: Any, token: Any, pos: Any) -> Any:
        out = model(input_ids=token, cache=cache, cache_position=pos, position_ids=pos.view(1, 1),
                     use_cache=True)
        return out.logits[:, -1].argmax(-1, keepdim=True)
    return step


def compiled_step(model: CausalLM, **options: Any) -> Step:
    """The one-token decode step of ``model`` under ``torch.compile`` (whole graph, static shapes).

    Use it with a static KV cache (:func:`greedy_decode` ``static=True``): every call then has the same
    shapes, so it compiles once. ``options`` go to ``torch.compile`` (e.g. ``mode=``).
    """
    return torch.compile(_eager_step(model), fullgraph=True, dynamic=False, **options)


def graphs_compiled() -> int:
    """How many graphs ``torch.compile`` has compiled in this process so far (a recompile adds one)."""
    from torch._dynamo.utils import counters  # noqa: PLC2701  # torch's own counter of compiled graphs

    return int(counters["stats"]["unique_graphs"])


def _new_cache(model: CausalLM, static: bool, length: int) -> Any:
    from transformers import DynamicCache, StaticCache

    if static:
        return StaticCache(config=model.config, max_cache_len=length)
    return DynamicCache(config=model.config)


def greedy_decode(model: CausalLM, input_ids: Any, new_tokens: int, *, static: bool = False,
                  step: Step | None = None, cache: Any = None) -> Decode:
    """Greedy-decode exactly ``new_tokens`` tokens (no stop at end of turn) with a loop of our own: one
    ``model(...)`` call and one ``argmax`` per token, the KV cache kept here, nothing else.

    Args:
        input_ids: the prompt, ``(1, n)``.
        static: a :class:`transformers.StaticCache` of ``n + new_tokens`` positions (fixed shapes) instead of a
            growing ``DynamicCache``.
        step: the decode step (default: eager; :func:`compiled_step` for a compiled one, which needs ``static``).
        cache: a cache to reuse (it is reset first); a compiled step keeps one cache across runs.

    The same tokens as ``model.generate(do_sample=False)`` — ``tests/test_fastpath.py`` checks it.
    """
    n = int(input_ids.shape[1])
    step = step or _eager_step(model)
    times: list[float] = []
    with torch.inference_mode():
        if cache is None:
            cache = _new_cache(model, static, n + new_tokens)
        else:
            cache.reset()
        start = time.perf_counter()
        out = model(input_ids=input_ids, cache=cache, cache_position=torch.arange(n), use_cache=True,
                    logits_to_keep=1)
        token = out.logits[:, -1].argmax(-1, keepdim=True)
        prefill = time.perf_counter() - start
        tokens = [token]
        for i in range(new_tokens - 1):
            pos = torch.tensor([n + i])
            start = time.perf_counter()
            token = step(cache, token, pos).clone()  # clone: a compiled step may reuse its output buffer
            times.append(time.perf_counter() - start)
            tokens.append(token)
    return Decode([int(t) for t in torch.cat(tokens, dim=1)[0]], prefill, times)


# ------------------------------------------------------------------------------------------ the table


@dataclass
class FastpathRow:
    """One step of the fast path (or llama.cpp), measured.

    Attributes:
        key / label: stable id and what a person reads; status ``"ok"`` or why not (``note``).
        tokens_per_second: decode speed = 1 / median seconds per step over every timed run.
        vs_fp32 / vs_llama_cpp: tokens_per_second / the ``fp32_generate`` row's / the llama.cpp row's.
        compile_seconds: extra seconds the first decode steps took (compiling); None when not compiled.
        recompiles: graphs compiled during the timed runs (0 = static shapes held); None when not compiled.
        bytes_per_token: weights + KV cache read per decoded token; roofline_percent: tok/s vs bandwidth / that.
        probes_kept / probes_total: greedy probe answers equal to fp32's; perplexity: on the shipped text.
        note: ``first k/K answer tokens as fp32`` when the greedy answer departs from fp32's (eager loop) at
            token k of K (its end of turn); nothing when it is the same.
    """

    key: str
    label: str
    status: str = "ok"
    tokens_per_second: float | None = None
    vs_fp32: float | None = None
    vs_llama_cpp: float | None = None
    compile_seconds: float | None = None
    recompiles: int | None = None
    bytes_per_token: float | None = None
    roofline_tokens_per_second: float | None = None
    probes_kept: int | None = None
    probes_total: int | None = None
    perplexity: float | None = None
    note: str = ""
    step_seconds: list[float] = field(default_factory=list)

    @property
    def roofline_percent(self) -> float | None:
        if not (self.tokens_per_second and self.roofline_tokens_per_second):
            return None
        return 100 * self.tokens_per_second / self.roofline_tokens_per_second

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class FastpathReport(TableView):
    """Every step of :func:`fastpath`, one machine, one process (llama.cpp in a child). ``str()`` is the table,
    ``to_markdown()`` for ``benchmarks/README.md``, ``to_json()``; ``row(key)`` finds a row."""

    machine: dict
    model: str
    bandwidth: Bandwidth
    prompt_tokens: int
    new_tokens: int
    repeats: int
    rows: list[FastpathRow]
    seconds: float

    def row(self, key: str) -> FastpathRow:
        return pick(self.rows, "key", key)

    def to_dict(self) -> dict:
        out = asdict(self)
        for r, d in zip(self.rows, out["rows"]):
            d["roofline_percent"] = r.roofline_percent
            d.pop("step_seconds")
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=1)

    def header_lines(self) -> list[str]:
        m = self.machine
        return [f"{m['date']}  {m['cpu']} ({m['cores']} cores, torch threads {m['threads']}, load average before "
                f"{m['load_average']})  torch {m['torch']}  transformers {m['transformers']}",
                f"model {self.model}; prompt {self.prompt_tokens} tokens, decode {self.new_tokens} tokens x "
                f"{self.repeats} runs per row; memory read bandwidth {self.bandwidth.read_bytes_per_second / GB:.1f}"
                f" GB/s; {self.seconds:.0f} s in all"]

    def table(self) -> Table:
        head = ["step", "decode tok/s", "x fp32", "x llama.cpp", "compile s", "recompiles", "MB/token",
                "roofline %", "probes kept", "perplexity", "note"]
        rows: list[list[object]] = []
        for r in self.rows:
            if not r.ok:
                rows.append([r.label, *["-"] * 9, f"{r.status}: {r.note}"])
                continue
            pct = r.roofline_percent
            rows.append([r.label, _f(r.tokens_per_second), _f(r.vs_fp32, 2), _f(r.vs_llama_cpp, 2),
                         _f(r.compile_seconds, 0), r.recompiles, _f(r.bytes_per_token and r.bytes_per_token / 1e6, 0),
                         None if pct is None else f"{pct:.0f}%",
                         None if r.probes_kept is None else f"{r.probes_kept}/{r.probes_total}",
                         _f(r.perplexity, 2), r.note])
        return Table(head, rows, title="\n".join(self.header_lines()), align_right=range(1, 10))

    def to_markdown(self) -> str:
        return "\n".join(f"- {line}" for line in self.header_lines()) + "\n\n" + \
            replace(self.table(), title="").to_markdown()


def _f(x: float | None, digits: int = 1) -> str | None:
    return None if x is None else f"{x:,.{digits}f}"


# ------------------------------------------------------------------------------------------ the steps


@dataclass
class _Step:
    key: str
    label: str
    weights: str  # key of a weight variant: the same weights share their quality figures
    loop: str  # "generate", "dynamic", "static" or "compiled"


#: Each step is measured on top of the previous one (weights, then loop).
STEPS = (
    _Step("fp32_generate", "fp32, model.generate", "fp32", "generate"),
    _Step("fp32_loop", "fp32, own greedy loop (DynamicCache)", "fp32", "dynamic"),
    _Step("fp32_static", "fp32, own loop + StaticCache", "fp32", "static"),
    _Step("fp32_compiled", "fp32, StaticCache + compiled step", "fp32", "compiled"),
    _Step("bf16_compiled", "bf16 weights, compiled step", "bf16", "compiled"),
    _Step("int8_static", "int8 weight-only kernel (bf16 act.), eager", "int8", "static"),
    _Step("int8_compiled", "int8 weight-only kernel, compiled step", "int8", "compiled"),
    _Step("int4_static", f"int4 kernel g{INT4_GROUP_SIZE} (bf16 act.), eager", "int4", "static"),
    _Step("int4_compiled", f"int4 kernel g{INT4_GROUP_SIZE}, compiled step", "int4", "compiled"),
    _Step("int4_mixed_compiled", "int4 g32 + int8 lm_head, compiled step", "int4_mixed", "compiled"),
)


def _build(weights: str, model: CausalLM) -> Any:
    if weights == "fp32":
        return model
    if weights == "bf16":
        return copy_model(model, torch.bfloat16)
    if weights.startswith("int4"):
        err = int4_kernel_error()
        if err:
            raise RuntimeError(f"int4 kernel not available in this torch build: {err}")
    if weights == "int4_mixed":  # closer to Q4_K_M: smaller groups, the output layer at 8 bits
        return weight_only(model, 4, group_size=32, head_bits=8, dtype=torch.bfloat16)
    return weight_only(model, 8 if weights == "int8" else 4, dtype=torch.bfloat16)


@dataclass
class _Run:
    """What every step needs: the fp32 model, tokenizer, prompt, plan and what earlier steps found."""

    model: CausalLM
    tokenizer: PreTrainedTokenizerBase
    input_ids: Any
    new_tokens: int
    repeats: int
    questions: list
    say: Callable[[str], None]
    reference: list[int] = field(default_factory=list)  # fp32's greedy answer (own loop, up to end of turn)
    expected: list[str] = field(default_factory=list)  # fp32 probe answers
    quality: dict = field(default_factory=dict)  # weights -> (kept, total, perplexity)


def _time_loop(run: _Run, model: Any, loop: str, row: FastpathRow) -> list[int]:
    """Warm up, then time ``run.repeats`` decodes; fills speed, compile seconds and recompiles."""
    n = run.new_tokens
    if loop == "generate":
        inputs = {"input_ids": run.input_ids, "attention_mask": torch.ones_like(run.input_ids)}
        time_generate(model, inputs, 3)
        timings = [time_generate(model, inputs, n) for _ in range(run.repeats)]
        row.step_seconds = [s for t in timings for s in t.step_seconds]
        with torch.inference_mode():
            out = model.generate(**inputs, do_sample=False, max_new_tokens=n, min_new_tokens=n)
        return [int(t) for t in out[0, run.input_ids.shape[1]:]]
    static = loop in ("static", "compiled")
    cache = _new_cache(model, static, run.input_ids.shape[1] + n) if static else None
    step = None
    if loop == "compiled":
        step = compiled_step(model)
    before = graphs_compiled()
    warm = greedy_decode(model, run.input_ids, 4, static=static, step=step, cache=cache)
    after_warm_up = graphs_compiled()
    decodes = [greedy_decode(model, run.input_ids, n, static=static, step=step, cache=cache)
               for _ in range(run.repeats)]
    row.step_seconds = [s for d in decodes for s in d.step_seconds]
    if loop == "compiled":
        steady = statistics.median(row.step_seconds)
        row.compile_seconds = sum(warm.step_seconds) - steady * len(warm.step_seconds)
        row.recompiles = graphs_compiled() - after_warm_up
        row.note = f"{after_warm_up - before} graph(s) compiled at warm-up"
    return decodes[-1].tokens


def _answer(model: CausalLM, tokens: list[int]) -> list[int]:
    """fp32's greedy answer up to its end of turn: the timed decodes run past it (a fixed length), and there
    ``generate(min_new_tokens=n)`` picks the runner-up token while a plain loop goes on after end of turn."""
    eos = model.generation_config.eos_token_id
    stops = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
    end = next((i for i, t in enumerate(tokens) if t in stops), len(tokens))
    return tokens[:end]


def _quality(run: _Run, weights: str, model: Any) -> tuple[int, int, float]:
    if weights not in run.quality:
        got = probe_answers(model, run.tokenizer, run.questions, max_new_tokens=16)
        if weights == "fp32":
            run.expected = got
        kept = sum(same_answer(a, b) for a, b in zip(run.expected, got))
        run.quality[weights] = (kept, len(got), perplexity(model, run.tokenizer))
    return run.quality[weights]


def _measure(run: _Run, step: _Step, model: Any, bandwidth: Bandwidth) -> FastpathRow:
    row = FastpathRow(step.key, step.label)
    tokens = _time_loop(run, model, step.loop, row)
    row.tokens_per_second = 1 / statistics.median(row.step_seconds)
    context = int(run.input_ids.shape[1]) + run.new_tokens // 2
    row.bytes_per_token = decode_traffic(model, context=context).bytes_per_token
    row.roofline_tokens_per_second = bandwidth.read_bytes_per_second / row.bytes_per_token
    if not run.reference:
        run.reference = _answer(run.model, greedy_decode(run.model, run.input_ids, run.new_tokens).tokens)
    same = next((i for i, (a, b) in enumerate(zip(tokens, run.reference)) if a != b), len(run.reference))
    if same < len(run.reference):
        row.note = "; ".join(x for x in (row.note, f"first {same}/{len(run.reference)} answer tokens as fp32") if x)
    row.probes_kept, row.probes_total, row.perplexity = _quality(run, step.weights, model)
    return row


def _llama_cpp(model: CausalLM, tokenizer: Any, inputs: dict, bandwidth: Bandwidth, new_tokens: int,
               repeats: int, say: Callable[[str], None]) -> FastpathRow:
    """llama.cpp's decode on the model's GGUF, timed by :mod:`qwenlab.bench.run`'s torch-free child process."""
    plan = BenchPlan(new_tokens=new_tokens, quant_repeats=repeats, name="fastpath")
    timing = _llama_cpp_row(_Ctx(model, tokenizer, inputs, bandwidth, plan, say), None)
    row = FastpathRow("llama_cpp", "llama.cpp Q4_K_M (xllamacpp, own process)", status=timing.status,
                      note=timing.note)
    if timing.ok:
        row.tokens_per_second = timing.tokens_per_second
        row.bytes_per_token = timing.bytes_per_token
        row.roofline_tokens_per_second = timing.roofline_tokens_per_second
        row.note = timing.note.split(";")[0]
    return row


#: Inductor settings of the compiled rows. ``cpp.threads=1``: inductor's OpenMP kernels (norms, rotary,
#: softmax: tiny at one token) otherwise spin-wait between calls on the cores the matmul kernels need — on 2
#: cores a compiled Linear + SiLU took 7.8 ms instead of 0.4 ms. ``freezing``: weights become constants, so
#: inductor may pre-pack them and fuse the int4 matmuls that share an input (q/k/v, gate/up).
#: ``force_disable_caches``: compile seconds are a first compile's, as a student's first run sees them.
INDUCTOR_OPTIONS = {"cpp.threads": 1, "freezing": True, "force_disable_caches": True}


def fastpath(model: CausalLM | str = "offline", tokenizer: PreTrainedTokenizerBase | None = None, *,
             new_tokens: int = 64, repeats: int = 3, quick: bool = False, steps: Sequence[str] | None = None,
             threads: int | None = None, llama_cpp: bool = True,
             progress: Callable[[str], None] | None = None) -> FastpathReport:
    """Measure every step of the PyTorch decode fast path, cumulatively, and llama.cpp, in one run.

    Args:
        model: a loaded fp32 model (then pass ``tokenizer``), or a name for :func:`qwenlab.load_model`.
        new_tokens / repeats: tokens per timed decode and timed decodes per row.
        quick: 16 tokens, 1 run, 4 probe questions (a smoke run; the numbers are noisier).
        steps: only these step keys (default all, see :data:`STEPS`).
        llama_cpp: also time llama.cpp on the model's GGUF (when the ``xllamacpp`` wheel and the file exist).
        progress: called with a short line after each step.

    A step that fails (a kernel missing from this torch build, a compile error) becomes a row with its
    reason; the others are still measured. The model you pass is left as it was.
    """
    if quick:
        new_tokens, repeats = min(new_tokens, 16), 1
    say = progress or (lambda line: None)
    start = time.perf_counter()
    model, tokenizer = _load(model, tokenizer)
    chosen = [s for s in STEPS if steps is None or s.key in steps]
    items = probes()
    questions = items[::max(1, len(items) // 4)][:4] if quick else items
    with torch_threads(threads) as used, torch._inductor.config.patch(INDUCTOR_OPTIONS):
        machine = machine_info(used)
        bandwidth = memory_bandwidth(256, 5)
        say(f"memory bandwidth: read {bandwidth.read_bytes_per_second / GB:.1f} GB/s")
        inputs = build_inputs(tokenizer, PROMPT)
        run = _Run(model, tokenizer, inputs["input_ids"], new_tokens, repeats, questions, say)
        rows = _measure_steps(run, chosen, bandwidth)
        if llama_cpp:
            rows.append(_llama_cpp(model, tokenizer, inputs, bandwidth, new_tokens, repeats, say))
            say(f"llama.cpp: {rows[-1].status} {_f(rows[-1].tokens_per_second) or ''}")
        again = memory_bandwidth(256, 5)
        if again.read_bytes_per_second > bandwidth.read_bytes_per_second:
            bandwidth = again  # a limit is the best the memory did
    _ratios(rows, bandwidth)
    return FastpathReport(machine=machine, model=facts_of(model).name, bandwidth=bandwidth,
                          prompt_tokens=int(inputs["input_ids"].shape[1]), new_tokens=new_tokens, repeats=repeats,
                          rows=rows, seconds=time.perf_counter() - start)


def _measure_steps(run: _Run, chosen: Sequence[_Step], bandwidth: Bandwidth) -> list[FastpathRow]:
    rows: list[FastpathRow] = []
    built: dict[str, Any] = {}
    for step in chosen:
        try:
            if step.weights not in built:
                built.clear()  # one quantized copy in memory at a time
                gc.collect()
                built[step.weights] = _build(step.weights, run.model)
            rows.append(_measure(run, step, built[step.weights], bandwidth))
        except Exception as err:  # one failed step must not lose the table
            rows.append(FastpathRow(step.key, step.label, status="error", note=f"{type(err).__name__}: {err}"))
        torch._dynamo.reset()  # the next step compiles from scratch (compile seconds are its own)
        r = rows[-1]
        run.say(f"{step.key}: " + (f"{r.tokens_per_second:.1f} tok/s" if r.ok else f"{r.status}: {r.note}"))
    return rows


def _ratios(rows: list[FastpathRow], bandwidth: Bandwidth) -> None:
    by = {r.key: r for r in rows if r.ok}
    base, llama = by.get("fp32_generate"), by.get("llama_cpp")
    for r in rows:
        if not r.ok or not r.tokens_per_second:
            continue
        if r.bytes_per_token:
            r.roofline_tokens_per_second = bandwidth.read_bytes_per_second / r.bytes_per_token
        if base and base.tokens_per_second:
            r.vs_fp32 = r.tokens_per_second / base.tokens_per_second
        if llama and llama.tokens_per_second:
            r.vs_llama_cpp = r.tokens_per_second / llama.tokens_per_second
