"""Time every path of the performance table on this machine: raw ``model.generate`` in fp32 and bf16,
``qwenlab.generate``, KV cache off, context length, batch size, quantized variants (answers checked) and
llama.cpp when installed — in one run, as :func:`run_bench`.

Taught in ``09_performance.ipynb``; ``qwenlab bench`` prints the same table.
"""

from __future__ import annotations

import copy
import gc
import importlib.util
import statistics
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from collections.abc import Callable

import torch
from transformers import DynamicCache

from .. import catalog
from ..env import bf16_native
from ..evaluation import probe_answers, probes, same_answer
from ..generation import build_inputs, generate
from ..measure import (
    GenerateTiming,
    copy_model,
    dtype_name,
    machine_info,
    time_decode_steps,
    sync,
    time_generate,
    torch_threads,
)
from ..modelfacts import facts_of
from ..models import load_model
from ..offline import status as offline_status
from ..quant import cpu_variants
from .limits import GB, Bandwidth, compute_dtype, decode_traffic, matmul_speed, memory_bandwidth, \
    roofline_tokens_per_second
from .report import BenchPlan, BenchReport, Timing

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from ..modelfacts import CausalLM

__all__ = ["PROMPT", "run_bench"]

PROMPT = "用三句话介绍一下你自己。"
# A text to cut long prompts from (decode speed vs context length); its content does not matter.
_FILLER = (
    "The quick brown fox jumps over the lazy dog while the model reads its whole context again. "
    "大语言模型在生成每一个新的词元时，都要把全部权重从内存中读一遍。 "
    "def add(a, b):\n    return a + b\n"
)


def _prefill(model: CausalLM, ids: Any, cache: Any) -> tuple[Any, float]:
    sync(model.device)
    start = time.perf_counter()
    with torch.inference_mode():
        out = model(input_ids=ids, past_key_values=cache, use_cache=True)
    sync(model.device)
    return out.logits[:, -1], time.perf_counter() - start


def _warm_up(model: CausalLM, inputs: dict) -> None:
    short = {k: v[:, -4:] for k, v in inputs.items()}
    time_generate(model, short, 2)


def _context_ids(tokenizer: PreTrainedTokenizerBase, length: int, device: Any) -> Any:
    ids: list[int] = []
    while len(ids) < length:
        ids += tokenizer(_FILLER * 8, add_special_tokens=False)["input_ids"]
    return torch.tensor([ids[:length]], device=device)


# ---------------------------------------------------------------------------------------------- rows


@dataclass
class _Ctx:
    """What every row needs: the fp32 model, the tokenizer, the prompt, the limits, the plan."""

    model: CausalLM
    tokenizer: PreTrainedTokenizerBase
    inputs: dict
    bandwidth: Bandwidth
    plan: BenchPlan
    say: Callable[[str], None]
    variants: Any = None

    def roofline(self, model: CausalLM, context: int, batch: int = 1) -> tuple[float, float, float]:
        t = decode_traffic(model, context=context, batch=batch)
        return t.bytes_per_token, t.flops_per_token, roofline_tokens_per_second(self.bandwidth, t)

    @property
    def prompt_tokens(self) -> int:
        return int(self.inputs["input_ids"].shape[1])


def _speed(row: Timing) -> float:
    """Decode tok/s of a row measured here (every measured row has one)."""
    assert row.tokens_per_second is not None, f"row {row.key} was not measured"
    return row.tokens_per_second


def _generate_row(ctx: _Ctx, model: CausalLM, key: str, label: str, group: str, new_tokens: int,
                  repeats: int, use_cache: bool = True) -> Timing:
    runs = [time_generate(model, ctx.inputs, new_tokens, use_cache=use_cache) for _ in range(max(1, repeats))]
    return _row_from_runs(ctx, model, key, label, group, runs, new_tokens)


def _row_from_runs(ctx: _Ctx, model: CausalLM, key: str, label: str, group: str, runs: list[GenerateTiming],
                   new_tokens: int) -> Timing:
    mid = sorted(runs, key=lambda r: r.seconds)[len(runs) // 2]
    step = statistics.median([r.step_median for r in runs])
    prefill = statistics.median([r.prefill_seconds for r in runs])
    context = ctx.prompt_tokens + new_tokens // 2
    bpt, fpt, limit = ctx.roofline(model, context)
    return Timing(key=key, label=label, group=group, tokens_per_second=1.0 / step,
                  prefill_tokens_per_second=ctx.prompt_tokens / prefill,
                  seconds=statistics.median([r.seconds for r in runs]), repeats=len(runs),
                  dtype=dtype_name(compute_dtype(model)), prompt_tokens=ctx.prompt_tokens,
                  new_tokens=new_tokens, context=context, bytes_per_token=bpt, flops_per_token=fpt,
                  roofline_tokens_per_second=limit, step_seconds=mid.step_seconds)


def _raw_and_qwenlab_rows(ctx: _Ctx) -> list[Timing]:
    """Raw ``model.generate`` vs ``qwenlab.generate`` on the same prompt, runs interleaved (drift cancels)."""
    plan, model = ctx.plan, ctx.model
    raw_runs: list[GenerateTiming] = []
    ours: list[float] = []
    kwargs: dict[str, Any] = dict(do_sample=False, max_new_tokens=plan.new_tokens, min_new_tokens=plan.new_tokens)
    for i in range(max(1, plan.repeats)):
        for which in (("raw", "ours") if i % 2 == 0 else ("ours", "raw")):
            if which == "raw":
                raw_runs.append(time_generate(model, ctx.inputs, plan.new_tokens))
            else:
                start = time.perf_counter()
                result = generate(model, ctx.tokenizer, PROMPT, **kwargs)
                ours.append(time.perf_counter() - start)
                if result.completion_tokens != plan.new_tokens:
                    raise RuntimeError(f"qwenlab.generate made {result.completion_tokens} tokens, "
                                       f"expected {plan.new_tokens}; the comparison would be unfair.")
    dtype = dtype_name(compute_dtype(model))
    raw = _row_from_runs(ctx, model, "raw_fp32", f"raw model.generate {dtype}", "dtype", raw_runs,
                         plan.new_tokens)
    ours_s = statistics.median(ours)
    # each raw run is paired with the qwenlab run next to it (same load on the machine): median of ratios
    paired = statistics.median(r.seconds / o for r, o in zip(raw_runs, ours))
    qw = replace(raw, key="qwenlab_generate", label=f"qwenlab.generate {dtype}", group="overhead",
                 tokens_per_second=_speed(raw) * (raw.seconds or 0.0) / ours_s, seconds=ours_s,
                 prefill_tokens_per_second=None, ratio=paired, baseline="raw_fp32 (time)", step_seconds=[],
                 note="whole call: chat template + generate + decode text; ratio = median of paired runs")
    return [raw, qw]


def _bf16_row(ctx: _Ctx, raw: Timing) -> Timing:
    native, why = bf16_native(str(ctx.model.device))
    copy_ = copy_model(ctx.model, torch.bfloat16)
    try:
        _warm_up(copy_, ctx.inputs)
        row = _generate_row(ctx, copy_, "raw_bf16", "raw model.generate bfloat16", "dtype",
                            ctx.plan.bf16_new_tokens, ctx.plan.bf16_repeats)
    finally:
        del copy_
        gc.collect()
    row.ratio, row.baseline = _speed(row) / _speed(raw), "raw_fp32"
    row.note = ("native" if native else "emulated") + f" bf16: {why}" + _bf16_measured(row, raw)
    return row


def _bf16_measured(row: Timing, raw: Timing) -> str:
    """What this run showed: decode reads half the bytes; prefill is compute and pays for emulation."""
    if not (row.prefill_tokens_per_second and raw.prefill_tokens_per_second and row.ratio):
        return ""
    decode = "faster" if row.ratio > 1 else "slower"
    prefill = row.prefill_tokens_per_second / raw.prefill_tokens_per_second
    return (f"; measured: decode {decode} than fp32 (half the bytes per token), "
            f"prefill {prefill:.2f}x fp32's (compute-bound)")


def _cache_off_row(ctx: _Ctx, raw: Timing) -> Timing:
    n = ctx.plan.cache_off_new_tokens
    row = _generate_row(ctx, ctx.model, "cache_off", "use_cache=False", "kv cache", n, 1, use_cache=False)
    row.ratio, row.baseline = _speed(row) / _speed(raw), "raw_fp32"
    # without a cache every step re-reads the whole sequence: count those bytes for the limit
    if row.step_seconds:
        first, last = row.step_seconds[0], row.step_seconds[-1]
        row.note = (f"each step re-runs the whole sequence: step {first * 1e3:.0f} ms -> {last * 1e3:.0f} ms "
                    f"over {n} tokens")
    row.bytes_per_token = row.roofline_tokens_per_second = None
    return row


def _context_rows(ctx: _Ctx) -> list[Timing]:
    """Decode speed as the KV cache grows: prefill up to each length in turn, then decode a few steps."""
    model, plan = ctx.model, ctx.plan
    limit = getattr(model.config.get_text_config(), "max_position_embeddings", None) or 10**9
    contexts = [c for c in plan.contexts if c + plan.context_steps <= limit]
    ids = _context_ids(ctx.tokenizer, max(contexts), model.device)
    cache = DynamicCache(config=model.config)
    rows, done = [], 0
    for length in contexts:
        if length <= done:
            continue
        logits, seconds = _prefill(model, ids[:, done:length], cache)
        prefilled = length - done
        steps = time_decode_steps(model, cache, logits, plan.context_steps)
        done = cache.get_seq_length()
        ctx.say(f"context {length}: decode {1 / statistics.median(steps):.1f} tok/s")
        bpt, fpt, roof = ctx.roofline(model, length)
        rows.append(Timing(key=f"context_{length}", label=f"decode at context {length}", group="context",
                           tokens_per_second=1 / statistics.median(steps),
                           prefill_tokens_per_second=prefilled / seconds,
                           seconds=seconds + sum(steps), repeats=len(steps),
                           dtype=dtype_name(compute_dtype(model)), prompt_tokens=prefilled,
                           new_tokens=len(steps), context=length, bytes_per_token=bpt, flops_per_token=fpt,
                           roofline_tokens_per_second=roof, step_seconds=steps,
                           note=f"prefill of {prefilled} more tokens"))
    for r in rows:
        r.ratio, r.baseline = _speed(r) / _speed(rows[0]), rows[0].key
    return rows


def _batch_rows(ctx: _Ctx) -> list[Timing]:
    """Decode throughput of B sequences at once: the weights are read once per step for all of them."""
    model, plan = ctx.model, ctx.plan
    prompt_cache = DynamicCache(config=model.config)
    logits, _ = _prefill(model, ctx.inputs["input_ids"], prompt_cache)  # once: every batch copies it
    rows = []
    for b in plan.batches:
        cache = copy.deepcopy(prompt_cache)
        cache.batch_repeat_interleave(b)
        steps = time_decode_steps(model, cache, logits.repeat(b, 1), plan.batch_steps)
        tps = b / statistics.median(steps)
        context = ctx.prompt_tokens + plan.batch_steps // 2
        bpt, fpt, roof = ctx.roofline(model, context, batch=b)
        rows.append(Timing(key=f"batch_{b}", label=f"batch {b} decode", group="batch", tokens_per_second=tps,
                           seconds=sum(steps), repeats=len(steps), dtype=dtype_name(compute_dtype(model)),
                           batch=b, prompt_tokens=ctx.prompt_tokens, new_tokens=len(steps), context=context,
                           bytes_per_token=bpt, flops_per_token=fpt, roofline_tokens_per_second=roof,
                           step_seconds=steps, note=f"{tps / b:.1f} tok/s per sequence"))
        ctx.say(f"batch {b}: {tps:.1f} tok/s")
    for r in rows:
        r.ratio, r.baseline = _speed(r) / _speed(rows[0]), rows[0].key
    return rows


def _quant_rows(ctx: _Ctx, raw: Timing, variants: Any = None) -> list[Timing]:
    """Quantized variants — yours, or those of ``qwenlab.quant.cpu_variants()`` — timed like raw fp32."""
    if variants is None:
        variants = cpu_variants()
    rows = []
    before = decode_traffic(ctx.model).weight_bytes
    questions, expected = _answer_check(ctx)
    for name, build in _variant_items(variants):
        key = "quant_" + "".join(ch if ch.isalnum() else "_" for ch in name.lower())
        try:
            model = build(ctx.model)
            if model is ctx.model or decode_traffic(ctx.model).weight_bytes != before:
                raise RuntimeError(f"variant {name!r} changed the fp32 model in place; its build function "
                                   "must return a new model (copy first, e.g. with qwenlab.measure.copy_model)")
            _warm_up(model, ctx.inputs)
            row = _generate_row(ctx, model, key, name, "quant", ctx.plan.quant_new_tokens,
                                ctx.plan.quant_repeats)
            row.ratio, row.baseline = _speed(row) / _speed(raw), "raw_fp32"
            if questions:
                _check_answers(row, model, ctx.tokenizer, questions, expected)
            del model
        except Exception as err:  # one broken variant must not lose the whole table
            row = Timing(key=key, label=name, group="quant", status="error", note=f"{type(err).__name__}: {err}")
        gc.collect()
        ctx.say(f"{name}: {row.status}")
        rows.append(row)
    return rows


def _answer_check(ctx: _Ctx) -> tuple[list, list[str]]:
    """A sample of the probe questions and raw fp32's greedy answers to them (``[], []`` when off)."""
    if ctx.plan.quant_probes <= 0:
        return [], []
    items = probes()
    questions = items[::max(1, len(items) // ctx.plan.quant_probes)][:ctx.plan.quant_probes]  # zh and en
    return questions, probe_answers(ctx.model, ctx.tokenizer, questions, max_new_tokens=8)


def _check_answers(row: Timing, model: CausalLM, tokenizer: PreTrainedTokenizerBase, questions: list, expected: list[str]) -> None:
    got = probe_answers(model, tokenizer, questions, max_new_tokens=8)
    changed = [(a, b) for a, b in zip(expected, got) if not same_answer(a, b)]
    row.keeps_answers = not changed
    row.note = (f"answers {len(got) - len(changed)}/{len(got)} same as fp32"
                + (f"; e.g. {changed[0][0]!r} -> {changed[0][1]!r}" if changed else "")
                + (f"; {row.note}" if row.note else ""))


def _variant_items(variants: Any) -> list[tuple[str, Callable[[Any], Any]]]:
    """Accept ``{name: build}`` or ``[(name, build)]`` or objects with ``.name`` and ``.build``/``.apply``."""
    if isinstance(variants, dict):
        return list(variants.items())
    items = []
    for v in variants:
        if isinstance(v, tuple):
            items.append(v)
        else:
            items.append((v.name, getattr(v, "build", None) or v.apply))
    return items


def _find_gguf(model: CausalLM) -> Path | None:
    facts = facts_of(model)
    folder = Path(facts.folder or ".")
    if folder.suffix == ".gguf" and folder.is_file():
        return folder
    if facts.name == catalog.OFFLINE_MODEL:
        st = offline_status()
        return st.gguf_path if st.gguf_present else None
    hits = sorted(folder.glob("*.gguf")) if folder.is_dir() else []
    return hits[0] if hits else None


# The llama.cpp row runs in a child process: torch's thread pool (started by the PyTorch rows) competes with
# llama.cpp's threads in the same process and slows it by about a third. The child imports qwenlab.engines only.
_LLAMA_CPP_TIMER = r"""
import json, statistics, sys, time
from qwenlab.engines import LlamaCppModel
a = json.loads(sys.argv[1])
llm = LlamaCppModel(a["gguf"], name=a["name"], context=a["context"], threads=a["threads"])
def once(i, n):
    # a fresh prompt each time and cache_prompt off: the prefill is computed, never taken from llama.cpp's cache
    body = llm.request([{"role": "user", "content": f"({i}) " + a["prompt"]}], do_sample=False, max_new_tokens=n)
    body.update(cache_prompt=False, ignore_eos=True)  # ignore_eos: exactly n new tokens (decode at a fixed length)
    start = time.perf_counter()
    out = llm.handle(body)
    if "error" in out:
        raise SystemExit(f"llama.cpp: {out['error']}")
    usage, timings = out["usage"], out["timings"]
    return {"prompt_tokens": usage["prompt_tokens"], "new_tokens": usage["completion_tokens"],
            "cached": (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0),
            "prefill": timings["prompt_n"] / (timings["prompt_ms"] / 1000),
            "decode": timings["predicted_n"] / (timings["predicted_ms"] / 1000), "seconds": time.perf_counter() - start}
once(0, 2)  # warm-up
runs = [once(i + 1, a["new_tokens"]) for i in range(a["repeats"])]
print(json.dumps({"runs": runs, "threads": llm.threads}))
"""


def gguf_bytes_per_token(gguf: Path) -> float:
    """Bytes one decoded token reads from a GGUF file: every tensor once, except the input embedding table
    when the model has its own output layer (only one row of it is read per token)."""
    size = float(gguf.stat().st_size)
    try:
        from gguf import GGUFReader
    except ImportError:
        return size
    tensors = {t.name: t for t in GGUFReader(str(gguf)).tensors}
    emb = tensors.get("token_embd.weight")
    if emb is None or "output.weight" not in tensors:
        return size  # tied: the output layer reads the whole embedding table
    rows = int(emb.shape[-1]) if len(emb.shape) > 1 else 1
    return size - float(emb.n_bytes) * (1 - 1 / max(rows, 1))


def _llama_cpp_row(ctx: _Ctx, best: Timing | None) -> Timing:
    """llama.cpp (the ``xllamacpp`` wheel, the engine of ``load_model(..., engine="llama.cpp")``) on the model's
    GGUF file, timed in its own process: uncached prefill (a fresh prompt each time, the prompt cache off and
    checked), decode at a fixed length (end-of-turn ignored), llama.cpp's own timings."""
    row = Timing(key="llama_cpp", label="llama.cpp (GGUF, xllamacpp)", group="llama.cpp")
    if importlib.util.find_spec("xllamacpp") is None:
        row.status = "not installed"
        row.note = "pip install xllamacpp (prebuilt CPU wheels; the course installs it)"
        return row
    gguf = _find_gguf(ctx.model)
    if gguf is None:
        row.status, row.note = "not available", "no GGUF file for this model"
        return row
    try:
        return _time_llama_cpp(ctx, gguf, row, best)
    except Exception as err:
        row.status, row.note = "error", f"{type(err).__name__}: {err}"
        return row


def _run_llama_cpp_timer(args: dict) -> dict:
    """Run :data:`_LLAMA_CPP_TIMER` in a child Python (no torch in it) and return what it printed."""
    import json
    import subprocess
    import sys

    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, "-c", _LLAMA_CPP_TIMER, json.dumps(args)], capture_output=True,
                          text=True, env=env, timeout=600)
    if done.returncode != 0:
        tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise RuntimeError(f"the llama.cpp timing process failed (exit {done.returncode}): {tail}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _time_llama_cpp(ctx: _Ctx, gguf: Path, row: Timing, best: Timing | None) -> Timing:
    n, repeats = ctx.plan.new_tokens, max(1, ctx.plan.quant_repeats)
    facts = facts_of(ctx.model)
    out = _run_llama_cpp_timer({"gguf": str(gguf), "name": facts.name, "context": 1024, "prompt": PROMPT,
                                "threads": torch.get_num_threads(), "new_tokens": n, "repeats": repeats})
    runs = out["runs"]
    cached = sum(r["cached"] for r in runs)
    if cached:
        raise RuntimeError(f"llama.cpp reused {cached} cached prompt tokens: the prefill would not be measured")
    row.tokens_per_second = statistics.median(r["decode"] for r in runs)
    row.prefill_tokens_per_second = statistics.median(r["prefill"] for r in runs)
    row.seconds = statistics.median(r["seconds"] for r in runs)
    row.repeats, row.new_tokens = len(runs), n
    row.prompt_tokens = runs[0]["prompt_tokens"]
    row.context = row.prompt_tokens + n // 2
    row.bytes_per_token = gguf_bytes_per_token(gguf)
    row.roofline_tokens_per_second = ctx.bandwidth.read_bytes_per_second / row.bytes_per_token
    row.dtype = "gguf"
    row.note = (f"{gguf.name}; own process, {out['threads']} threads; llama.cpp's timings; prefill uncached "
                f"(fresh prompt, cache_prompt off, 0 cached tokens); decode exactly {n} tokens")
    if best is not None and best.tokens_per_second:
        row.ratio, row.baseline = row.tokens_per_second / best.tokens_per_second, best.key
    return row


# ---------------------------------------------------------------------------------------------- run


def _best_pytorch_row(rows: list[Timing]) -> Timing | None:
    """The fastest single-sequence PyTorch path that keeps fp32's answers (llama.cpp is its peer, not a candidate)."""
    candidates = [r for r in rows if r.ok and r.group in ("dtype", "quant") and r.batch == 1
                  and r.keeps_answers is not False]
    return max(candidates, key=lambda r: r.tokens_per_second or 0.0, default=None)


def _figures(rows: list[Timing]) -> dict:
    by = {r.key: r for r in rows if r.ok}
    raw = by.get("raw_fp32")
    best = _best_pytorch_row(rows)
    out: dict[str, Any] = {"overhead_ratio": by["qwenlab_generate"].ratio if "qwenlab_generate" in by else None,
                           "best_path": None, "best_vs_raw_fp32": None, "best_vs_roofline_percent": None,
                           "llama_cpp_vs_best": None}
    if best is not None and raw is not None:
        out.update(best_path=best.key, best_tokens_per_second=best.tokens_per_second,
                   best_vs_raw_fp32=_speed(best) / _speed(raw),
                   best_vs_roofline_percent=best.roofline_percent)
    if "llama_cpp" in by:
        out["llama_cpp_vs_best"] = by["llama_cpp"].ratio
    return out


def _load(model: CausalLM | str | tuple | list, tokenizer: PreTrainedTokenizerBase | None
          ) -> tuple[CausalLM, PreTrainedTokenizerBase]:
    if isinstance(model, (tuple, list)):
        return model[0], model[1]
    if not isinstance(model, (str, os.PathLike)):
        if tokenizer is None:
            raise TypeError("run_bench: pass a model name/path, or both a model and its tokenizer.")
        return model, tokenizer
    loaded = load_model(model, device="cpu", dtype="float32")
    return loaded.model, loaded.tokenizer


def run_bench(model: CausalLM | str = "offline", tokenizer: PreTrainedTokenizerBase | None = None, *, quick: bool = False,
              plan: BenchPlan | None = None, threads: int | None = None,
              variants: dict[str, Callable[[Any], Any]] | None = None,
              progress: Callable[[str], None] | None = None) -> BenchReport:
    """Measure this machine and one model: every row of the performance table, in one run.

    Args:
        model: a loaded model (then pass ``tokenizer``), a ``(model, tokenizer)`` pair, or a name / path
            for :func:`qwenlab.load_model` (loaded in float32 on the CPU).
        quick: use :meth:`BenchPlan.quick` (about a minute; notebook 09) instead of :meth:`BenchPlan.full`.
        plan: your own :class:`BenchPlan` (overrides ``quick``).
        threads: torch threads during the bench (default: torch's current setting).
        variants: ``{name: build}`` where ``build(fp32_model)`` returns a new (e.g. quantized) model to time
            like raw fp32; default: ``qwenlab.quant.cpu_variants()`` when the plan includes quantization.
        progress: called with a short line after each step (the CLI prints them); None is silent.

    Returns:
        :class:`BenchReport`. The model you pass stays as it was (bf16 and quantized rows use copies).

    Example:
        >>> report = qwenlab.bench.run_bench(model, tokenizer, quick=True)   # doctest: +SKIP
        >>> print(report); qwenlab.bench.plot_roofline(report)               # doctest: +SKIP

    Taught in ``09_performance.ipynb``.
    """
    plan = plan or (BenchPlan.quick() if quick else BenchPlan.full())
    say = progress or (lambda line: None)
    start = time.perf_counter()
    model, tokenizer = _load(model, tokenizer)  # a name or path is loaded here
    with torch_threads(threads) as used:
        machine = machine_info(used)
        device = str(model.device)
        bandwidth = memory_bandwidth(plan.bandwidth_mib, plan.bandwidth_repeats, device=device)
        say(f"memory bandwidth: read {bandwidth.read_bytes_per_second / GB:.1f} GB/s")
        matmul = [matmul_speed(dt, plan.matmul_size, plan.matmul_repeats, device=device)
                  for dt in ("float32", "bfloat16")]
        say("matmul GFLOP/s: " + ", ".join(f"{m.dtype} {m.flops_per_second / GB:.1f}" for m in matmul))
        base = model if model.dtype == torch.float32 else copy_model(model, torch.float32)
        inputs = {k: v.to(base.device) for k, v in build_inputs(tokenizer, PROMPT).items()}
        ctx = _Ctx(base, tokenizer, inputs, bandwidth, plan, say, variants)
        rows = _measure_rows(ctx)
        bandwidth = _best(bandwidth, memory_bandwidth(plan.bandwidth_mib, plan.bandwidth_repeats, device=device))
        _set_limits(rows, bandwidth)
    return BenchReport(machine=machine, model=_model_info(base), plan=asdict(plan), bandwidth=bandwidth,
                       matmul=matmul, traffic=decode_traffic(base), rows=rows, figures=_figures(rows),
                       seconds=time.perf_counter() - start)


def _best(a: Bandwidth, b: Bandwidth) -> Bandwidth:
    """Bandwidth measured before and after the rows: keep the better figure of each (a limit is a best)."""
    return replace(a, read_bytes_per_second=max(a.read_bytes_per_second, b.read_bytes_per_second),
                   copy_bytes_per_second=max(a.copy_bytes_per_second, b.copy_bytes_per_second),
                   repeats=a.repeats + b.repeats)


def _set_limits(rows: list[Timing], bandwidth: Bandwidth) -> None:
    for r in rows:
        if r.bytes_per_token:
            r.roofline_tokens_per_second = bandwidth.read_bytes_per_second / r.bytes_per_token


def _measure_rows(ctx: _Ctx) -> list[Timing]:
    _warm_up(ctx.model, ctx.inputs)
    rows = _raw_and_qwenlab_rows(ctx)
    raw = rows[0]
    ctx.say(f"raw fp32: {raw.tokens_per_second:.1f} tok/s; qwenlab.generate ratio {rows[1].ratio:.3f}")
    rows.append(_bf16_row(ctx, raw))
    ctx.say(f"raw bf16: {rows[-1].tokens_per_second:.1f} tok/s")
    rows.append(_cache_off_row(ctx, raw))
    ctx.say(f"use_cache=False: {rows[-1].tokens_per_second:.1f} tok/s")
    rows += _context_rows(ctx)
    rows += _batch_rows(ctx)
    if ctx.variants is not None or ctx.plan.quant:
        rows += _quant_rows(ctx, raw, ctx.variants)
    else:
        rows.append(Timing(key="quant", label="quantized variants", group="quant", status="not available",
                           note=f"skipped by the {ctx.plan.name} plan (run `qwenlab bench`)"))
    if ctx.plan.llama_cpp:
        best = _best_pytorch_row(rows)
        rows.append(_llama_cpp_row(ctx, best))
    return rows


def _model_info(model: CausalLM) -> dict:
    facts = facts_of(model)
    return {
        "name": facts.name,
        "folder": Path(facts.folder).name,
        "architecture": (model.config.architectures or [type(model).__name__])[0],
        "params": sum(p.numel() for p in model.parameters()),
        "dtype": dtype_name(model.dtype),
        "device": str(model.device),
    }

