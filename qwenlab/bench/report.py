"""What one bench run measured: the rows of the table (:class:`Timing`), how much to measure
(:class:`BenchPlan`), the whole report as text, HTML, JSON and Markdown (:class:`BenchReport`), and the
roofline on other hardware (:func:`what_if`).

Taught in ``09_performance.ipynb``.
"""

from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass, field, replace

import torch

from ..display import Table, TableView, pick
from .limits import GB, Bandwidth, DecodeTraffic, MatmulSpeed, roofline_tokens_per_second

__all__ = ["Timing", "BenchPlan", "BenchReport", "what_if"]


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
    def full(cls) -> BenchPlan:
        """Every row of the table, quantized variants and llama.cpp included: about 4.5 min for the 0.5B
        offline model on 2 quiet cores (measured 2026-11-22, benchmarks/README.md)."""
        return cls()

    @classmethod
    def quick(cls) -> BenchPlan:
        """Fewer tokens and repeats, contexts up to 256, no quantized variants: under a minute (notebook 09)."""
        return cls(new_tokens=8, repeats=2, bf16_new_tokens=4, bf16_repeats=1, cache_off_new_tokens=6,
                   contexts=(128, 256), context_steps=4, batch_steps=4, quant=False,
                   bandwidth_mib=128, bandwidth_repeats=3, matmul_repeats=2, name="quick")


@dataclass
class BenchReport(TableView):
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
        return pick(self.rows, "key", key)

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

    def table(self) -> Table:
        """The table: one row per path, the machine above it, the figures that matter below it."""
        head = ["path", "decode tok/s", "prefill tok/s", "s/run", "ratio", "roofline %", "note"]
        rows = []
        for r in self.rows:
            if not r.ok:
                rows.append([r.label, "-", "-", "-", "-", "-", f"{r.status}: {r.note}".rstrip(": ")])
                continue
            ratio = f"{r.ratio:.2f} vs {r.baseline}" if r.ratio is not None else ""
            pct = r.roofline_percent
            rows.append([r.label, _fmt(r.tokens_per_second), _fmt(r.prefill_tokens_per_second),
                         _fmt(r.seconds, 2), ratio, "" if pct is None else f"{pct:.0f}%", r.note])
        return Table(head, rows, title="\n".join(self.header_lines()), notes=self.summary_lines())

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
                                              else "not measured (xllamacpp not installed)"))
        over = [r.key for r in self.rows if (r.roofline_percent or 0) > 100]
        if over:
            lines.append(f"note: {', '.join(over)} above 100% of the roofline: the machine was busier while "
                         "bandwidth was measured than during those rows; re-run on a quiet machine.")
        return lines

    def to_markdown(self) -> str:
        """The report for ``benchmarks/README.md``: the machine as a list, then the table and the figures."""
        table = self.table()
        return "\n".join([f"- {line}" for line in self.header_lines()] + [""]) + "\n" + \
            replace(table, title="").to_markdown()

    def _repr_html_(self) -> str:
        info = "<br>".join(html.escape(x) for x in self.header_lines())
        return f"<p style='font-family:monospace'>{info}</p>" + replace(self.table(), title="")._repr_html_()


def _model_title(model: dict) -> str:
    name, folder = str(model["name"]), str(model.get("folder") or "")
    return name if not folder or folder in name else f"{name} ({folder})"


def _fmt(x: float | None, digits: int = 1) -> str:
    return "" if x is None else f"{x:,.{digits}f}"


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
    return report.traffic.weight_bytes / getattr(torch, report.model["dtype"]).itemsize

