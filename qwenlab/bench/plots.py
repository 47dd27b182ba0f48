"""Pictures of a :class:`~qwenlab.bench.BenchReport`: the roofline, the KV cache, context length, batch size.

Taught in ``09_performance.ipynb``.
"""

from __future__ import annotations

from typing import Any

from .limits import GB
from .report import BenchReport

__all__ = ["plot_roofline", "plot_cache", "plot_context", "plot_batch"]


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
    points = [(r, r.flops_per_token / r.bytes_per_token, (r.tokens_per_second or 0.0) * r.flops_per_token)
              for r in report.rows if r.ok and r.bytes_per_token and r.flops_per_token
              and r.group in ("dtype", "batch", "quant") and r.key != "batch_1"]  # batch_1 = raw_fp32
    for r, intensity, flops in points:
        ax.scatter(intensity, flops / GB, s=25, zorder=3)
        ax.annotate(r.key, (intensity, flops / GB), fontsize=7, xytext=(3, 3), textcoords="offset points")
    prefill = [r for r in report.rows  # prefill: the weights are read once for many tokens
               if r.ok and r.group == "context" and r.prefill_tokens_per_second and r.flops_per_token]
    for r in prefill:
        read = report.traffic.weight_bytes + report.traffic.kv_bytes_per_token * r.context
        flops = r.flops_per_token or 0.0
        xy = (flops * r.prompt_tokens / read, (r.prefill_tokens_per_second or 0.0) * flops / GB)
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
    ax.plot(xs, [(r.tokens_per_second or 0.0) / r.batch for r in rows], marker="s", label="per sequence")
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel("batch size")
    ax.set_ylabel("tokens / second")
    ax.set_title("batching: one weight read serves B tokens")
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.tight_layout()
    return fig
