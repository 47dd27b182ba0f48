"""How fast can *this* machine run a Qwen model, and why: bandwidth, matmul, prefill/decode tok/s, roofline.

Decoding one token reads every weight once (plus the KV cache), so on a CPU

    decode tokens/s  <=  memory bandwidth (bytes/s)  /  bytes read per decoded token

— the *roofline*. Prefill processes many prompt tokens per weight read, so it is limited by compute
(FLOP/s) instead. This module measures both limits on the machine it runs on, times the real paths
(raw ``model.generate`` in fp32 and bf16, ``qwenlab.generate``, KV cache on/off, context length,
batch size, quantized variants, llama.cpp when installed) and returns everything as data
(:class:`BenchReport`); ``plot_*`` functions draw it.

The subpackage: ``limits`` (bandwidth, matmul, bytes per token, roofline), ``report`` (the table and its
rows), ``run`` (:func:`run_bench`: every row measured), ``plots``. Timing and byte-counting helpers are in
:mod:`qwenlab.measure`; every name below is importable as ``qwenlab.bench.<name>``.

Taught in ``09_performance.ipynb``; ``qwenlab bench [MODEL] [--json]`` prints the same table.
"""

from __future__ import annotations

from .classroom import ClassroomReport, classroom_load
from .limits import (
    GB,
    Bandwidth,
    DecodeTraffic,
    MatmulSpeed,
    compute_dtype,
    decode_traffic,
    matmul_speed,
    memory_bandwidth,
    roofline_tokens_per_second,
)
from .plots import plot_batch, plot_cache, plot_context, plot_roofline
from .report import BenchPlan, BenchReport, Timing, what_if
from .run import PROMPT, run_bench

__all__ = [
    "PROMPT",
    "GB",
    "Bandwidth",
    "MatmulSpeed",
    "DecodeTraffic",
    "Timing",
    "BenchPlan",
    "BenchReport",
    "memory_bandwidth",
    "matmul_speed",
    "compute_dtype",
    "decode_traffic",
    "roofline_tokens_per_second",
    "run_bench",
    "what_if",
    "plot_roofline",
    "plot_cache",
    "plot_context",
    "plot_batch",
    "classroom_load",
    "ClassroomReport",
]
