"""How fast can *this* machine run a Qwen model, and why: bandwidth, matmul, prefill/decode tok/s, roofline.

Decoding one token reads every weight once (plus the KV cache), so on a CPU

    decode tokens/s  <=  memory bandwidth (bytes/s)  /  bytes read per decoded token

— the *roofline*. Prefill processes many prompt tokens per weight read, so it is limited by compute
(FLOP/s) instead. This module measures both limits on the machine it runs on, times the real paths
(raw ``model.generate`` in fp32 and bf16, ``qwenlab.generate``, KV cache on/off, context length,
batch size, quantized variants, llama.cpp when installed) and returns everything as data
(:class:`BenchReport`); ``plot_*`` functions draw it.

Taught in ``09_performance.ipynb``; ``qwenlab bench [MODEL] [--json]`` prints the same table.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import gc
import importlib.util
import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

__all__ = [
    "Bandwidth",
    "MatmulSpeed",
    "DecodeTraffic",
    "Timing",
    "BenchPlan",
    "BenchReport",
    "memory_bandwidth",
    "matmul_speed",
    "decode_traffic",
    "roofline_tokens_per_second",
    "cast_copy",
    "time_generate",
    "time_decode_steps",
    "run_bench",
    "what_if",
    "plot_roofline",
    "plot_cache",
    "plot_context",
    "plot_batch",
    "cli",
]

PROMPT = "用三句话介绍一下你自己。"
# A text to cut long prompts from (decode speed vs context length); its content does not matter.
_FILLER = (
    "The quick brown fox jumps over the lazy dog while the model reads its whole context again. "
    "大语言模型在生成每一个新的词元时，都要把全部权重从内存中读一遍。 "
    "def add(a, b):\n    return a + b\n"
)
GB = 1e9


# ---------------------------------------------------------------------------------------------- data


@dataclass
class Bandwidth:
    """Memory bandwidth measured with a large array (much larger than the CPU caches).

    Attributes:
        read_bytes_per_second: ``array.sum()`` reads every byte once — what decoding does with weights.
        copy_bytes_per_second: ``b.copy_(a)`` counted as read + write (2 x array bytes), as STREAM does.
        array_bytes: size of one array; repeats: runs per figure (the fastest is kept).
    """

    read_bytes_per_second: float
    copy_bytes_per_second: float
    array_bytes: int
    repeats: int
    threads: int
    device: str = "cpu"


@dataclass
class MatmulSpeed:
    """Throughput of one square matrix multiply ``size x size`` in ``dtype`` (median of repeats)."""

    dtype: str
    size: int
    flops_per_second: float
    seconds: float
    repeats: int


@dataclass
class DecodeTraffic:
    """Bytes a model reads from memory for one decoded token (the denominator of the roofline).

    Attributes:
        weight_bytes: every weight matrix read per token. The input embedding table is *not* read
            (one row is looked up) unless it is tied to ``lm_head``, which reads all of it.
        embedding_bytes: the untied input embedding table left out of ``weight_bytes`` (0 when tied).
        kv_bytes_per_token: KV cache bytes per token of context (2 x layers x kv_heads x head_dim x dtype).
        context: tokens already in the KV cache; batch: sequences decoded together (weights read once).
        flops_per_token: multiply-adds x 2 of one decoded token (matmuls + attention over the context).
    """

    weight_bytes: int
    embedding_bytes: int
    kv_bytes_per_token: int
    context: int = 0
    batch: int = 1
    flops_per_token: float = 0.0

    @property
    def kv_bytes(self) -> int:
        """KV cache bytes read for one step of one sequence at this context length."""
        return self.kv_bytes_per_token * self.context

    @property
    def bytes_per_token(self) -> float:
        """Bytes read per generated token: (weights + batch x KV cache) / batch."""
        return (self.weight_bytes + self.batch * self.kv_bytes) / self.batch

    @property
    def intensity(self) -> float:
        """Arithmetic intensity: FLOPs per byte read (decode ~0.5 in fp32; grows with batch)."""
        return self.flops_per_token / self.bytes_per_token if self.bytes_per_token else 0.0


@dataclass
class Timing:
    """One row of the bench table: a path measured on this machine.

    Attributes:
        key: stable id (``raw_fp32``, ``qwenlab_generate``, ``cache_off``, ``context_512``, ``batch_4``,
            ``quant_<name>``, ``llama_cpp``); label: what a person reads; group: the question it answers.
        status: ``"ok"``, ``"not installed"``, ``"not available"`` or ``"error"`` (see ``note``).
        tokens_per_second: steady decode speed = batch / median seconds per decode step.
        prefill_tokens_per_second: prompt tokens processed per second before the first new token.
        seconds: median wall time of one whole run (what a user waits).
        ratio / baseline: tokens_per_second (or, for ``qwenlab_generate``, wall time) vs another row.
        roofline_tokens_per_second: the bandwidth limit for this row (bandwidth / bytes per token).
        step_seconds: the seconds of each decode step of the median run (for plots).
        keeps_answers: quantized rows: whether greedy answers to a sample of the probe questions are
            those of raw fp32 (None where not checked); a row that changes them is never the "best path".
    """

    key: str
    label: str
    group: str
    status: str = "ok"
    tokens_per_second: float | None = None
    prefill_tokens_per_second: float | None = None
    seconds: float | None = None
    repeats: int = 0
    dtype: str = ""
    batch: int = 1
    prompt_tokens: int = 0
    new_tokens: int = 0
    context: int = 0
    bytes_per_token: float | None = None
    flops_per_token: float | None = None
    roofline_tokens_per_second: float | None = None
    ratio: float | None = None
    baseline: str | None = None
    step_seconds: list[float] = field(default_factory=list)
    note: str = ""
    keeps_answers: bool | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def roofline_percent(self) -> float | None:
        """Measured decode speed as a percentage of this row's bandwidth limit."""
        if not (self.tokens_per_second and self.roofline_tokens_per_second):
            return None
        return 100.0 * self.tokens_per_second / self.roofline_tokens_per_second


@dataclass
class BenchPlan:
    """How much to measure: token counts and repeats. ``full()`` fits 5 min, ``quick()`` ~1 min (2 cores).

    Pass your own (``dataclasses.replace(BenchPlan.quick(), contexts=(128, 256))``) to trade time for
    precision.
    """

    new_tokens: int = 24
    repeats: int = 3
    bf16_new_tokens: int = 16
    bf16_repeats: int = 2
    cache_off_new_tokens: int = 12
    contexts: tuple[int, ...] = (128, 512, 1024, 2048)
    context_steps: int = 6
    batches: tuple[int, ...] = (1, 2, 4, 8)
    batch_steps: int = 6
    quant: bool = True
    quant_new_tokens: int = 12
    quant_repeats: int = 2
    quant_probes: int = 4
    llama_cpp: bool = True
    bandwidth_mib: int = 256
    bandwidth_repeats: int = 5
    matmul_size: int = 512
    matmul_repeats: int = 3
    name: str = "full"

    @classmethod
    def full(cls) -> "BenchPlan":
        """Every row of the table, quantized variants and llama.cpp included: about 4.5 min for the 0.5B
        offline model on 2 quiet cores (measured 2026-11-22, benchmarks/README.md)."""
        return cls()

    @classmethod
    def quick(cls) -> "BenchPlan":
        """Fewer tokens and repeats, contexts up to 256, no quantized variants: under a minute (notebook 09)."""
        return cls(new_tokens=8, repeats=2, bf16_new_tokens=4, bf16_repeats=1, cache_off_new_tokens=6,
                   contexts=(128, 256), context_steps=4, batch_steps=4, quant=False,
                   bandwidth_mib=128, bandwidth_repeats=3, matmul_repeats=2, name="quick")


@dataclass
class BenchReport:
    """Everything one bench run measured, on one machine, in one process.

    ``str(report)`` is the terminal table, ``report`` in Jupyter shows it as HTML, ``to_json()`` for
    machines, ``to_markdown()`` for ``benchmarks/README.md``; ``row(key)`` finds one row.
    """

    machine: dict
    model: dict
    plan: dict
    bandwidth: Bandwidth
    matmul: list[MatmulSpeed]
    traffic: DecodeTraffic
    rows: list[Timing]
    figures: dict
    seconds: float

    def row(self, key: str) -> Timing:
        for r in self.rows:
            if r.key == key:
                return r
        raise KeyError(f"no row {key!r} in this report; rows: {[r.key for r in self.rows]}")

    @property
    def roofline_tokens_per_second(self) -> float:
        """This model's bandwidth limit at an empty context: read bandwidth / weight bytes."""
        return roofline_tokens_per_second(self.bandwidth, self.traffic)

    def to_dict(self) -> dict:
        out = asdict(self)
        for r, d in zip(self.rows, out["rows"]):
            d["roofline_percent"] = r.roofline_percent
        out["roofline_tokens_per_second"] = self.roofline_tokens_per_second
        out["traffic"]["bytes_per_token"] = self.traffic.bytes_per_token
        return out

    def to_json(self, steps: bool = False) -> str:
        """JSON text; ``steps=False`` leaves out the per-step timings (long lists)."""
        data = self.to_dict()
        if not steps:
            for r in data["rows"]:
                r.pop("step_seconds", None)
        return json.dumps(data, ensure_ascii=False, indent=2)

    def table(self) -> list[list[str]]:
        """The table as strings: header row first."""
        head = ["path", "decode tok/s", "prefill tok/s", "s/run", "ratio", "roofline %", "note"]
        rows = [head]
        for r in self.rows:
            if not r.ok:
                rows.append([r.label, "-", "-", "-", "-", "-", f"{r.status}: {r.note}".rstrip(": ")])
                continue
            ratio = f"{r.ratio:.2f} vs {r.baseline}" if r.ratio is not None else ""
            pct = r.roofline_percent
            rows.append([r.label, _fmt(r.tokens_per_second), _fmt(r.prefill_tokens_per_second),
                         _fmt(r.seconds, 2), ratio, "" if pct is None else f"{pct:.0f}%", r.note])
        return rows

    def header_lines(self) -> list[str]:
        m, b = self.machine, self.bandwidth
        mm = ", ".join(f"{x.dtype} {x.flops_per_second / GB:.1f}" for x in self.matmul)
        return [
            f"{m['date']}  {m['cpu']} ({m['cores']} cores, torch threads {m['threads']}, "
            f"load average before {m['load_average']})",
            f"python {m['python']}  torch {m['torch']}  transformers {m['transformers']}  qwenlab {m['qwenlab']}",
            f"model {_model_title(self.model)}: {self.model['params'] / 1e6:,.0f} M params, "
            f"{self.traffic.weight_bytes / GB:.2f} GB read per token in {self.model['dtype']}, "
            f"KV cache {self.traffic.kv_bytes_per_token / 1024:.1f} KiB/token",
            f"memory bandwidth: read {b.read_bytes_per_second / GB:.1f} GB/s, copy "
            f"{b.copy_bytes_per_second / GB:.1f} GB/s  |  matmul GFLOP/s: {mm}",
            f"roofline ({self.model['dtype']}, empty context): {self.roofline_tokens_per_second:.1f} tok/s"
            f"  |  plan {self.plan['name']}, {self.seconds:.0f} s in all",
        ]

    def summary_lines(self) -> list[str]:
        f = self.figures
        lines = []
        if f.get("overhead_ratio") is not None:
            lines.append(f"qwenlab.generate / raw generate: {f['overhead_ratio']:.3f} (goal >= 0.97)")
        if f.get("best_path"):
            lines.append(f"best PyTorch CPU path (answers kept): {f['best_path']} = "
                         f"{f['best_vs_raw_fp32']:.2f} x raw fp32, {f['best_vs_roofline_percent']:.0f}% of its roofline")
        lines.append("llama.cpp vs best: " + (f"{f['llama_cpp_vs_best']:.2f}" if f.get("llama_cpp_vs_best")
                                              else "not measured (llama-cpp-python not installed)"))
        over = [r.key for r in self.rows if (r.roofline_percent or 0) > 100]
        if over:
            lines.append(f"note: {', '.join(over)} above 100% of the roofline: the machine was busier while "
                         "bandwidth was measured than during those rows; re-run on a quiet machine.")
        return lines

    def __str__(self) -> str:
        rows = self.table()
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
        lines = self.header_lines() + [""]
        for r in rows:
            lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
        return "\n".join(lines + [""] + self.summary_lines())

    def to_markdown(self) -> str:
        rows = self.table()
        out = [f"- {line}" for line in self.header_lines()] + [""]
        out.append("| " + " | ".join(rows[0]) + " |")
        out.append("|" + "---|" * len(rows[0]))
        out += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows[1:]]
        return "\n".join(out + [""] + [f"- {line}" for line in self.summary_lines()])

    def _repr_html_(self) -> str:
        import html

        rows = self.table()
        head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
        info = "<br>".join(html.escape(x) for x in self.header_lines() + self.summary_lines())
        return f"<p style='font-family:monospace'>{info}</p><table><tr>{head}</tr>{body}</table>"


def _model_title(model: dict) -> str:
    name, folder = str(model["name"]), str(model.get("folder") or "")
    return name if not folder or folder in name else f"{name} ({folder})"


def _fmt(x: float | None, digits: int = 1) -> str:
    return "" if x is None else f"{x:,.{digits}f}"


# ---------------------------------------------------------------------------------------------- helpers


def _sync(device: Any) -> None:
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _median_seconds(fn: Callable[[], Any], repeats: int, device: Any = "cpu") -> float:
    return statistics.median(_seconds(fn, repeats, device))


def _seconds(fn: Callable[[], Any], repeats: int, device: Any = "cpu") -> list[float]:
    times = []
    for _ in range(max(1, repeats)):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[int]:
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def _tensor_bytes(t: Any) -> int:
    """Bytes of a tensor, looking inside tensor subclasses (quantized weights keep int data inside)."""
    import torch

    if type(t) in (torch.Tensor, torch.nn.Parameter) or not hasattr(t, "__tensor_flatten__"):
        return t.numel() * t.element_size()
    names, _ = t.__tensor_flatten__()
    return sum(_tensor_bytes(getattr(t, name)) for name in names)


def _dtype_name(dtype: Any) -> str:
    return str(dtype).replace("torch.", "")


# ---------------------------------------------------------------------------------------------- machine


def memory_bandwidth(size_mib: int = 256, repeats: int = 5, device: str = "cpu",
                     threads: int | None = None) -> Bandwidth:
    """Measure memory bandwidth with a ``size_mib`` float32 array: ``sum()`` (read) and ``copy_`` (read+write).

    Use an array far larger than the last-level cache (a few MiB to tens of MiB), otherwise you measure
    the cache. The fastest of ``repeats`` runs is kept (as STREAM does): a limit is the best the memory
    can do, and a busy machine only ever makes a run slower.

    Example:
        >>> bw = memory_bandwidth(size_mib=64, repeats=3)
        >>> bw.read_bytes_per_second > 0
        True

    Taught in ``09_performance.ipynb``.
    """
    import torch

    if size_mib < 1:
        raise ValueError(f"size_mib must be >= 1 (got {size_mib}); use 128 or more to get past the caches.")
    n = size_mib * 2**20 // 4
    with _threads(threads) as used:
        a = torch.ones(n, dtype=torch.float32, device=device)
        b = torch.empty_like(a)
        b.copy_(a)  # touch every page once before timing
        read = min(_seconds(lambda: a.sum(), repeats, device))
        copy_s = min(_seconds(lambda: b.copy_(a), repeats, device))
    del a, b
    nbytes = n * 4
    return Bandwidth(read_bytes_per_second=nbytes / read, copy_bytes_per_second=2 * nbytes / copy_s,
                     array_bytes=nbytes, repeats=max(1, repeats), threads=used, device=str(device))


def matmul_speed(dtype: Any = "float32", size: int = 512, repeats: int = 3, device: str = "cpu",
                 threads: int | None = None) -> MatmulSpeed:
    """FLOP/s of one ``size x size`` matrix multiply (2 x size^3 FLOPs) in ``dtype``; median of repeats.

    On a CPU without AVX512-BF16 / AMX, bfloat16 is emulated and much slower than float32.

    Taught in ``09_performance.ipynb``.
    """
    import torch

    torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    with _threads(threads):
        x = torch.randn(size, size, device=device).to(torch_dtype)
        y = torch.randn(size, size, device=device).to(torch_dtype)
        x @ y  # warm-up (kernel selection)
        seconds = _median_seconds(lambda: x @ y, repeats, device)
    return MatmulSpeed(_dtype_name(torch_dtype), size, 2 * size**3 / seconds, seconds, max(1, repeats))


# ---------------------------------------------------------------------------------------------- model traffic


def _compute_dtype(model: Any) -> Any:
    import torch

    dtype = model.get_input_embeddings().weight.dtype
    return dtype if dtype.is_floating_point else torch.float32


def _weights(model: Any) -> list[Any]:
    """Every weight tensor once: parameters (a tied weight is listed once) and the packed int8 weights of
    ``torch.ao`` dynamic-quantized Linear layers, which are not parameters."""
    out = list(model.parameters())
    for module in model.modules():
        if hasattr(module, "_packed_params") and callable(getattr(module, "weight", None)):
            out.append(module.weight())
            bias = module.bias() if callable(getattr(module, "bias", None)) else None
            if bias is not None:
                out.append(bias)
    return out


def decode_traffic(model: Any, context: int = 0, batch: int = 1) -> DecodeTraffic:
    """Bytes (and FLOPs) one decoded token costs: weights + KV cache of ``context`` tokens.

    Example (Qwen2.5-Coder-0.5B in fp32: ~2 GB of weights and 24 KiB of KV cache per token of context)::

        >>> t = decode_traffic(model, context=1024)          # doctest: +SKIP
        >>> t.weight_bytes / 1e9, t.kv_bytes_per_token        # doctest: +SKIP

    Taught in ``09_performance.ipynb``.
    """
    weights = _weights(model)
    total = sum(_tensor_bytes(w) for w in weights)
    emb = model.get_input_embeddings().weight
    out = model.get_output_embeddings()
    tied = out is not None and out.weight is emb
    emb_bytes = 0 if tied else _tensor_bytes(emb)
    row = _tensor_bytes(emb) // max(1, emb.shape[0])
    cfg = model.config.get_text_config()
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    itemsize = _compute_dtype(model).itemsize
    kv_per_token = 2 * cfg.num_hidden_layers * kv_heads * head_dim * itemsize
    matmul_params = sum(w.numel() for w in weights) - (0 if tied else emb.numel())
    attention = 4 * cfg.num_hidden_layers * heads * head_dim * context  # QK^T and AV
    return DecodeTraffic(weight_bytes=total - emb_bytes + (row if not tied else 0), embedding_bytes=emb_bytes,
                         kv_bytes_per_token=kv_per_token, context=context, batch=batch,
                         flops_per_token=2.0 * matmul_params + attention)


def roofline_tokens_per_second(bandwidth: Bandwidth | float, traffic: DecodeTraffic) -> float:
    """The bandwidth limit: bytes/s ÷ bytes read per token (for a batch: tokens of all sequences).

    Taught in ``09_performance.ipynb``.
    """
    bps = bandwidth.read_bytes_per_second if isinstance(bandwidth, Bandwidth) else float(bandwidth)
    return bps / traffic.bytes_per_token


def cast_copy(model: Any, dtype: Any) -> Any:
    """A copy of ``model`` in ``dtype`` without a second full-precision copy in memory; the original is untouched.

    Each parameter is converted once into the new copy (``deepcopy`` with a memo), so converting a
    2.5 GB fp32 model to bf16 needs ~1.25 GB more, not 2.5 GB.
    """
    import torch

    torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    memo: dict[int, Any] = {}
    for p in model.parameters():
        memo[id(p)] = torch.nn.Parameter(p.detach().to(torch_dtype), requires_grad=False)
    clone = copy.deepcopy(model, memo)
    return clone.to(torch_dtype)


# ---------------------------------------------------------------------------------------------- timing


class _Clock:
    """A StoppingCriteria that never stops, it only records when each new token is ready."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        _sync(input_ids.device)
        self.times.append(time.perf_counter())
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


@dataclass
class _Run:
    seconds: float
    prefill_seconds: float
    step_seconds: list[float]

    @property
    def step_median(self) -> float:
        return statistics.median(self.step_seconds) if self.step_seconds else self.seconds


def time_generate(model: Any, inputs: dict, new_tokens: int, *, use_cache: bool = True) -> _Run:
    """One greedy ``model.generate`` of exactly ``new_tokens`` tokens, with the time of every step.

    ``min_new_tokens = max_new_tokens`` so every run does the same work; the prefill time is the wait
    for the first token, the decode steps are the gaps between later tokens.
    """
    import torch
    from transformers import StoppingCriteriaList

    clock = _Clock()
    _sync(model.device)
    start = time.perf_counter()
    with torch.inference_mode():
        model.generate(**inputs, do_sample=False, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                       use_cache=use_cache, stopping_criteria=StoppingCriteriaList([clock]))
    seconds = time.perf_counter() - start
    steps = [b - a for a, b in zip(clock.times, clock.times[1:])]
    return _Run(seconds, clock.times[0] - start if clock.times else seconds, steps)


def time_decode_steps(model: Any, cache: Any, last_logits: Any, steps: int) -> list[float]:
    """Greedy decode ``steps`` tokens by hand on an existing KV cache; seconds of each step.

    ``last_logits`` is ``(batch, vocab)``: the logits the next token is chosen from.
    """
    import torch

    times = []
    logits = last_logits
    with torch.inference_mode():
        for _ in range(steps):
            token = logits.argmax(-1, keepdim=True)
            _sync(model.device)
            start = time.perf_counter()
            out = model(input_ids=token, past_key_values=cache, use_cache=True)
            _sync(model.device)
            times.append(time.perf_counter() - start)
            logits = out.logits[:, -1]
    return times


def _prefill(model: Any, ids: Any, cache: Any) -> tuple[Any, float]:
    import torch

    _sync(model.device)
    start = time.perf_counter()
    with torch.inference_mode():
        out = model(input_ids=ids, past_key_values=cache, use_cache=True)
    _sync(model.device)
    return out.logits[:, -1], time.perf_counter() - start


def _warm_up(model: Any, inputs: dict) -> None:
    short = {k: v[:, -4:] for k, v in inputs.items()}
    time_generate(model, short, 2)


def _context_ids(tokenizer: Any, length: int, device: Any) -> Any:
    import torch

    ids: list[int] = []
    while len(ids) < length:
        ids += tokenizer(_FILLER * 8, add_special_tokens=False)["input_ids"]
    return torch.tensor([ids[:length]], device=device)


# ---------------------------------------------------------------------------------------------- rows


@dataclass
class _Ctx:
    """What every row needs: the fp32 model, the tokenizer, the prompt, the limits, the plan."""

    model: Any
    tokenizer: Any
    inputs: dict
    bandwidth: Bandwidth
    plan: BenchPlan
    say: Callable[[str], None]
    variants: Any = None

    def roofline(self, model: Any, context: int, batch: int = 1) -> tuple[float, float, float]:
        t = decode_traffic(model, context=context, batch=batch)
        return t.bytes_per_token, t.flops_per_token, roofline_tokens_per_second(self.bandwidth, t)

    @property
    def prompt_tokens(self) -> int:
        return int(self.inputs["input_ids"].shape[1])


def _generate_row(ctx: _Ctx, model: Any, key: str, label: str, group: str, new_tokens: int,
                  repeats: int, use_cache: bool = True) -> Timing:
    runs = [time_generate(model, ctx.inputs, new_tokens, use_cache=use_cache) for _ in range(max(1, repeats))]
    return _row_from_runs(ctx, model, key, label, group, runs, new_tokens)


def _row_from_runs(ctx: _Ctx, model: Any, key: str, label: str, group: str, runs: list[_Run],
                   new_tokens: int) -> Timing:
    mid = sorted(runs, key=lambda r: r.seconds)[len(runs) // 2]
    step = statistics.median([r.step_median for r in runs])
    prefill = statistics.median([r.prefill_seconds for r in runs])
    context = ctx.prompt_tokens + new_tokens // 2
    bpt, fpt, limit = ctx.roofline(model, context)
    return Timing(key=key, label=label, group=group, tokens_per_second=1.0 / step,
                  prefill_tokens_per_second=ctx.prompt_tokens / prefill,
                  seconds=statistics.median([r.seconds for r in runs]), repeats=len(runs),
                  dtype=_dtype_name(_compute_dtype(model)), prompt_tokens=ctx.prompt_tokens,
                  new_tokens=new_tokens, context=context, bytes_per_token=bpt, flops_per_token=fpt,
                  roofline_tokens_per_second=limit, step_seconds=mid.step_seconds)


def _raw_and_qwenlab_rows(ctx: _Ctx) -> list[Timing]:
    """Raw ``model.generate`` vs ``qwenlab.generate`` on the same prompt, runs interleaved (drift cancels)."""
    from .generation import generate

    plan, model = ctx.plan, ctx.model
    raw_runs: list[_Run] = []
    ours: list[float] = []
    kwargs = dict(do_sample=False, max_new_tokens=plan.new_tokens, min_new_tokens=plan.new_tokens)
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
    dtype = _dtype_name(_compute_dtype(model))
    raw = _row_from_runs(ctx, model, "raw_fp32", f"raw model.generate {dtype}", "dtype", raw_runs,
                         plan.new_tokens)
    ours_s = statistics.median(ours)
    # each raw run is paired with the qwenlab run next to it (same load on the machine): median of ratios
    paired = statistics.median(r.seconds / o for r, o in zip(raw_runs, ours))
    qw = replace(raw, key="qwenlab_generate", label=f"qwenlab.generate {dtype}", group="overhead",
                 tokens_per_second=raw.tokens_per_second * raw.seconds / ours_s, seconds=ours_s,
                 prefill_tokens_per_second=None, ratio=paired, baseline="raw_fp32 (time)", step_seconds=[],
                 note="whole call: chat template + generate + decode text; ratio = median of paired runs")
    return [raw, qw]


def _bf16_row(ctx: _Ctx, raw: Timing) -> Timing:
    import torch

    from .env import bf16_native

    native, why = bf16_native(str(ctx.model.device))
    copy_ = cast_copy(ctx.model, torch.bfloat16)
    try:
        _warm_up(copy_, ctx.inputs)
        row = _generate_row(ctx, copy_, "raw_bf16", "raw model.generate bfloat16", "dtype",
                            ctx.plan.bf16_new_tokens, ctx.plan.bf16_repeats)
    finally:
        del copy_
        gc.collect()
    row.ratio, row.baseline = row.tokens_per_second / raw.tokens_per_second, "raw_fp32"
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
    row.ratio, row.baseline = row.tokens_per_second / raw.tokens_per_second, "raw_fp32"
    # without a cache every step re-reads the whole sequence: count those bytes for the limit
    if row.step_seconds:
        first, last = row.step_seconds[0], row.step_seconds[-1]
        row.note = (f"each step re-runs the whole sequence: step {first * 1e3:.0f} ms -> {last * 1e3:.0f} ms "
                    f"over {n} tokens")
    row.bytes_per_token = row.roofline_tokens_per_second = None
    return row


def _context_rows(ctx: _Ctx) -> list[Timing]:
    """Decode speed as the KV cache grows: prefill up to each length in turn, then decode a few steps."""
    from transformers import DynamicCache

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
                           dtype=_dtype_name(_compute_dtype(model)), prompt_tokens=prefilled,
                           new_tokens=len(steps), context=length, bytes_per_token=bpt, flops_per_token=fpt,
                           roofline_tokens_per_second=roof, step_seconds=steps,
                           note=f"prefill of {prefilled} more tokens"))
    base = rows[0].tokens_per_second if rows else None
    for r in rows:
        r.ratio, r.baseline = r.tokens_per_second / base, rows[0].key
    return rows


def _batch_rows(ctx: _Ctx) -> list[Timing]:
    """Decode throughput of B sequences at once: the weights are read once per step for all of them."""
    from transformers import DynamicCache

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
                           seconds=sum(steps), repeats=len(steps), dtype=_dtype_name(_compute_dtype(model)),
                           batch=b, prompt_tokens=ctx.prompt_tokens, new_tokens=len(steps), context=context,
                           bytes_per_token=bpt, flops_per_token=fpt, roofline_tokens_per_second=roof,
                           step_seconds=steps, note=f"{tps / b:.1f} tok/s per sequence"))
        ctx.say(f"batch {b}: {tps:.1f} tok/s")
    for r in rows:
        r.ratio, r.baseline = r.tokens_per_second / rows[0].tokens_per_second, rows[0].key
    return rows


def _quant_rows(ctx: _Ctx, raw: Timing, variants: Any = None) -> list[Timing]:
    """Quantized variants — yours, or those of ``qwenlab.quant.cpu_variants()`` — timed like raw fp32."""
    if variants is None:
        try:
            from . import quant

            variants = getattr(quant, "cpu_variants")()
        except (ImportError, AttributeError):
            return [Timing(key="quant", label="quantized variants", group="quant", status="not available",
                           note="qwenlab.quant offers no cpu_variants() in this version")]
    rows = []
    before = decode_traffic(ctx.model).weight_bytes
    questions, expected = _answer_check(ctx)
    for name, build in _variant_items(variants):
        key = "quant_" + "".join(ch if ch.isalnum() else "_" for ch in name.lower())
        try:
            model = build(ctx.model)
            if model is ctx.model or decode_traffic(ctx.model).weight_bytes != before:
                raise RuntimeError(f"variant {name!r} changed the fp32 model in place; its build function "
                                   "must return a new model (copy first, e.g. with qwenlab.bench.cast_copy)")
            _warm_up(model, ctx.inputs)
            row = _generate_row(ctx, model, key, name, "quant", ctx.plan.quant_new_tokens,
                                ctx.plan.quant_repeats)
            row.ratio, row.baseline = row.tokens_per_second / raw.tokens_per_second, "raw_fp32"
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
    from .quant import probe_answers, probes

    items = probes()
    questions = items[::max(1, len(items) // ctx.plan.quant_probes)][:ctx.plan.quant_probes]  # zh and en
    return questions, probe_answers(ctx.model, ctx.tokenizer, questions, max_new_tokens=8)


def _check_answers(row: Timing, model: Any, tokenizer: Any, questions: list, expected: list[str]) -> None:
    from .quant import probe_answers, same_answer

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
            items.append((getattr(v, "name"), getattr(v, "build", None) or getattr(v, "apply")))
    return items


def _find_gguf(model: Any) -> Path | None:
    meta = getattr(model, "_qwenlab_meta", {})
    folder = Path(meta.get("folder", model.config.name_or_path or "."))
    if folder.suffix == ".gguf" and folder.is_file():
        return folder
    from . import catalog

    if meta.get("name") == catalog.OFFLINE_MODEL:
        from .offline import status

        st = status()
        return st.gguf_path if st.gguf_present else None
    hits = sorted(folder.glob("*.gguf")) if folder.is_dir() else []
    return hits[0] if hits else None


def _llama_cpp_row(ctx: _Ctx, best: Timing | None) -> Timing:
    """llama.cpp on the model's GGUF file (when ``llama-cpp-python`` is installed)."""
    row = Timing(key="llama_cpp", label="llama.cpp (GGUF)", group="llama.cpp")
    if importlib.util.find_spec("llama_cpp") is None:
        row.status = "not installed"
        row.note = ("pip install llama-cpp-python (source build, ~10 min on 2 cores; on AMX CPUs disable "
                    "the AMX buffer type or its quantized matmul crashes)")
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


def _time_llama_cpp(ctx: _Ctx, gguf: Path, row: Timing, best: Timing | None) -> Timing:
    import torch
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf), n_ctx=512, n_threads=torch.get_num_threads(), verbose=False)
    prompt = ctx.tokenizer.decode(ctx.inputs["input_ids"][0])
    no_eos = {int(llm.token_eos()): -1e9}
    n = ctx.plan.quant_new_tokens

    def once(tokens: int) -> float:
        start = time.perf_counter()
        llm.create_completion(prompt, max_tokens=tokens, temperature=0.0, logit_bias=no_eos)
        return time.perf_counter() - start

    once(2)  # warm-up
    short = statistics.median(once(1) for _ in range(max(1, ctx.plan.quant_repeats)))
    full = statistics.median(once(n) for _ in range(max(1, ctx.plan.quant_repeats)))
    row.tokens_per_second = (n - 1) / max(full - short, 1e-9)
    row.prefill_tokens_per_second = ctx.prompt_tokens / short
    row.seconds, row.repeats, row.new_tokens, row.prompt_tokens = full, ctx.plan.quant_repeats, n, ctx.prompt_tokens
    row.bytes_per_token = float(gguf.stat().st_size)  # upper bound: the whole file per token
    row.roofline_tokens_per_second = ctx.bandwidth.read_bytes_per_second / row.bytes_per_token
    row.dtype, row.note = "gguf", f"{gguf.name}; decode = (n-1) / (t(n) - t(1))"
    if best is not None and best.tokens_per_second:
        row.ratio, row.baseline = row.tokens_per_second / best.tokens_per_second, best.key
    return row


# ---------------------------------------------------------------------------------------------- run


def _machine(threads: int) -> dict:
    import torch
    import transformers

    from . import __version__
    from .env import bf16_native, cpu_name

    try:
        load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    except (OSError, AttributeError):
        load = "?"
    return {
        "date": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "threads": threads,
        "load_average": load,
        "bf16_native": bf16_native("cpu")[0],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "qwenlab": __version__,
        "llama_cpp_python": _installed("llama-cpp-python"),
    }


def _installed(dist: str) -> str | None:
    from .env import package_version

    return package_version(dist)


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
                   best_vs_raw_fp32=best.tokens_per_second / raw.tokens_per_second,
                   best_vs_roofline_percent=best.roofline_percent)
    if "llama_cpp" in by:
        out["llama_cpp_vs_best"] = by["llama_cpp"].ratio
    return out


def _load(model: Any, tokenizer: Any) -> tuple[Any, Any]:
    if tokenizer is not None:
        return model, tokenizer
    if isinstance(model, (tuple, list)):
        return model[0], model[1]
    from .models import load_model

    return tuple(load_model(model, device="cpu", dtype="float32"))  # type: ignore[return-value]


def run_bench(model: Any = "offline", tokenizer: Any = None, *, quick: bool = False,
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
    import torch

    plan = plan or (BenchPlan.quick() if quick else BenchPlan.full())
    say = progress or (lambda line: None)
    start = time.perf_counter()
    model, tokenizer = _load(model, tokenizer)
    with _threads(threads) as used:
        machine = _machine(used)
        device = str(model.device)
        bandwidth = memory_bandwidth(plan.bandwidth_mib, plan.bandwidth_repeats, device=device)
        say(f"memory bandwidth: read {bandwidth.read_bytes_per_second / GB:.1f} GB/s")
        matmul = [matmul_speed(dt, plan.matmul_size, plan.matmul_repeats, device=device)
                  for dt in ("float32", "bfloat16")]
        say("matmul GFLOP/s: " + ", ".join(f"{m.dtype} {m.flops_per_second / GB:.1f}" for m in matmul))
        base = model if model.dtype == torch.float32 else cast_copy(model, torch.float32)
        from .generation import build_inputs

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


def _model_info(model: Any) -> dict:
    meta = getattr(model, "_qwenlab_meta", {})
    folder = Path(str(meta.get("folder", model.config.name_or_path or "")))
    return {
        "name": meta.get("name", model.config.name_or_path),
        "folder": folder.name,
        "architecture": (model.config.architectures or [type(model).__name__])[0],
        "params": sum(p.numel() for p in model.parameters()),
        "dtype": _dtype_name(model.dtype),
        "device": str(model.device),
    }


def what_if(report: BenchReport, bandwidths: dict[str, float] | None = None,
            bytes_per_weight: dict[str, float] | None = None) -> list[dict]:
    """Roofline limits for this model on other hardware / precisions (an upper bound, not a promise).

    ``bandwidths``: name -> bytes/s (default: this machine plus typical published figures);
    ``bytes_per_weight``: name -> bytes per parameter (fp32 4, bf16 2, int8 1, Q4_K_M ~0.61: about 4.85 bits).

    Taught in ``09_performance.ipynb``.
    """
    bandwidths = bandwidths or {
        "this machine (measured)": report.bandwidth.read_bytes_per_second,
        "laptop DDR5 dual-channel (~80 GB/s)": 80 * GB,
        "Apple M2 (~100 GB/s)": 100 * GB,
        "laptop GPU RTX 4060 (~256 GB/s)": 256 * GB,
        "H100 SXM (~3350 GB/s)": 3350 * GB,
    }
    bytes_per_weight = bytes_per_weight or {"fp32": 4.0, "bf16": 2.0, "int8": 1.0, "Q4_K_M": 4.85 / 8}
    itemsize = report.traffic.weight_bytes / max(1, _weights_read(report))
    out = []
    for hw, bps in bandwidths.items():
        for prec, size in bytes_per_weight.items():
            weight_bytes = report.traffic.weight_bytes * size / itemsize
            out.append({"hardware": hw, "precision": prec, "bytes_per_token": weight_bytes,
                        "roofline_tokens_per_second": bps / weight_bytes})
    return out


def _weights_read(report: BenchReport) -> float:
    """Number of weights read per token (bytes / itemsize of the report's dtype)."""
    import torch

    return report.traffic.weight_bytes / getattr(torch, report.model["dtype"]).itemsize


# ---------------------------------------------------------------------------------------------- plots


def _axes(ax: Any, ncols: int = 1, size: tuple[float, float] = (6.0, 3.6)) -> tuple[Any, Any]:
    import matplotlib.pyplot as plt

    if ax is not None:
        return ax.figure, ax
    fig, axes = plt.subplots(1, ncols, figsize=(size[0] * ncols, size[1]))
    return fig, axes


def plot_roofline(report: BenchReport, ax: Any = None) -> Any:
    """Two pictures of the roofline: measured decode tok/s vs each path's bandwidth limit (left), and
    the classic roofline — FLOP/s against FLOPs per byte — with decode, batches and prefill on it (right).

    Returns the matplotlib Figure. Taught in ``09_performance.ipynb``.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.2))
    else:
        fig, left, right = ax.figure, ax, None
    _plot_limits(report, left)
    if right is not None:
        _plot_classic_roofline(report, right)
    fig.tight_layout()
    return fig


def _plot_limits(report: BenchReport, ax: Any) -> None:
    rows = [r for r in report.rows if r.ok and r.batch == 1 and r.roofline_tokens_per_second
            and r.group in ("dtype", "overhead", "quant", "llama.cpp")]
    names = [r.label for r in rows]
    y = range(len(rows))
    ax.barh(y, [r.tokens_per_second for r in rows], color="#4c72b0", label="measured decode")
    ax.scatter([r.roofline_tokens_per_second for r in rows], y, marker="|", s=400, color="#c44e52",
               label="bandwidth limit", zorder=3)
    for i, r in zip(y, rows):
        ax.text(r.tokens_per_second, i, f" {r.roofline_percent:.0f}%", va="center", fontsize=8)
    ax.set_yticks(list(y), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("tokens / second (batch 1)")
    ax.set_title(f"decode vs roofline ({report.bandwidth.read_bytes_per_second / GB:.1f} GB/s read)")
    ax.legend(fontsize=8, loc="lower right")


def _plot_classic_roofline(report: BenchReport, ax: Any) -> None:
    import numpy as np

    bw = report.bandwidth.read_bytes_per_second
    peak = max(m.flops_per_second for m in report.matmul if m.dtype == "float32")
    x = np.logspace(-2, 3, 200)
    ax.loglog(x, np.minimum(bw * x, peak) / GB, color="k", lw=1.5, label="min(bandwidth x I, matmul peak)")
    points = [(r, r.flops_per_token / r.bytes_per_token, r.tokens_per_second * r.flops_per_token)
              for r in report.rows if r.ok and r.bytes_per_token and r.flops_per_token
              and r.group in ("dtype", "batch", "quant") and r.key != "batch_1"]  # batch_1 = raw_fp32
    for r, intensity, flops in points:
        ax.scatter(intensity, flops / GB, s=25, zorder=3)
        ax.annotate(r.key, (intensity, flops / GB), fontsize=7, xytext=(3, 3), textcoords="offset points")
    prefill = [r for r in report.rows  # prefill: the weights are read once for many tokens
               if r.ok and r.group == "context" and r.prefill_tokens_per_second and r.flops_per_token]
    for r in prefill:
        read = report.traffic.weight_bytes + report.traffic.kv_bytes_per_token * r.context
        xy = (r.flops_per_token * r.prompt_tokens / read, r.prefill_tokens_per_second * r.flops_per_token / GB)
        ax.scatter(*xy, marker="^", s=30, color="#55a868", zorder=3)
        if r is prefill[-1]:
            ax.annotate("prefill", xy, fontsize=7, xytext=(3, -9), textcoords="offset points")
    ax.set_xlabel("arithmetic intensity (FLOPs per byte read)")
    ax.set_ylabel("GFLOP/s")
    ax.set_title("roofline: decode is memory-bound, prefill compute-bound")
    ax.legend(fontsize=8, loc="lower right")


def plot_cache(report: BenchReport, ax: Any = None) -> Any:
    """Milliseconds per decode step along the answer, KV cache on (raw fp32) vs off. Taught in notebook 09."""
    fig, ax = _axes(ax)
    for key, label in (("raw_fp32", "use_cache=True"), ("cache_off", "use_cache=False")):
        r = report.row(key)
        if r.ok and r.step_seconds:
            ax.plot(range(2, len(r.step_seconds) + 2), [s * 1e3 for s in r.step_seconds], marker=".", label=label)
    ax.set_xlabel("new token number")
    ax.set_ylabel("ms per token")
    ax.set_title("KV cache: without it, every step re-reads the whole sequence")
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_context(report: BenchReport, ax: Any = None) -> Any:
    """Decode tok/s (and its bandwidth limit) against context length. Taught in ``09_performance.ipynb``."""
    fig, ax = _axes(ax)
    rows = [r for r in report.rows if r.ok and r.group == "context"]
    xs = [r.context for r in rows]
    ax.plot(xs, [r.tokens_per_second for r in rows], marker="o", label="measured decode")
    ax.plot(xs, [r.roofline_tokens_per_second for r in rows], ls="--", color="#c44e52", label="bandwidth limit")
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel("tokens in the KV cache (context)")
    ax.set_ylabel("tokens / second")
    ax.set_title("decode speed vs context length")
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_batch(report: BenchReport, ax: Any = None) -> Any:
    """Total decode throughput and per-sequence speed against batch size. Taught in notebook 09."""
    fig, ax = _axes(ax)
    rows = [r for r in report.rows if r.ok and r.group == "batch"]
    xs = [r.batch for r in rows]
    ax.plot(xs, [r.tokens_per_second for r in rows], marker="o", label="all sequences")
    ax.plot(xs, [r.tokens_per_second / r.batch for r in rows], marker="s", label="per sequence")
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel("batch size")
    ax.set_ylabel("tokens / second")
    ax.set_title("batching: one weight read serves B tokens")
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------- CLI


def cli(argv: list[str], prog: str = "qwenlab bench", command: str = "bench") -> int:
    """``qwenlab bench [MODEL] [--json] [--quick] [--threads N]``; ``qwenlab bench quant ...`` -> qwenlab.quant."""
    import sys

    if argv and argv[0] == "quant":
        try:
            from .quant import cli as quant_cli
        except ImportError:
            print(f"{prog} quant: qwenlab.quant is not in this version yet; run `{prog}` for the speed table.",
                  file=sys.stderr)
            return 2
        return int(quant_cli(argv[1:], prog=f"{prog} quant", command=f"{command} quant") or 0)
    from .cli import make_parser

    parser = make_parser(prog, "Measure memory bandwidth, matmul FLOP/s, prefill/decode tokens/s, KV cache, "
                               "context, batch and quantized paths of one model on this machine, with the "
                               "roofline (bandwidth / bytes per token). `qwenlab bench quant` compares "
                               "quantized variants.")
    parser.add_argument("model", nargs="?", default=None,
                        help="catalog name, folder or .gguf (default: the course model)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--quick", action="store_true", help="fewer tokens and repeats (about a minute)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--steps", action="store_true", help="with --json: include per-step seconds")
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be >= 1")
    from .course import course_model

    name = args.model or course_model()
    say = (lambda line: print(f"[bench] {line}", file=sys.stderr, flush=True))
    say(f"model {name}; plan {'quick' if args.quick else 'full'}")
    report = run_bench(name, quick=args.quick, threads=args.threads, progress=say)
    print(report.to_json(steps=args.steps) if args.json else report)
    return 0
