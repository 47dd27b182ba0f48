"""Quantization lab: int8 / int4 from scratch, the quantization methods that really run on a CPU, and a
side-by-side comparison of memory, speed and answer quality on *this* machine.

Storing a weight in 8 or 4 bits instead of 32 makes a model 4-8x smaller. Whether it also gets faster, and
whether it still answers correctly, depends on *how* the numbers are rounded (one scale per tensor, per
output channel or per group of weights) and on which kernels the CPU can run. This module lets a student

- quantize tensors by hand (:func:`quantize_tensor`, :func:`quant_error`, :func:`plot_weight_error`);
- count what a model's weights take (:func:`model_footprint`);
- apply real methods (:func:`quantize`, :func:`load_quantized`): torch dynamic int8, torchao configs,
  transformers' GGUF path, and qwenlab's **fast CPU recipe** (``method="fast"``);
- measure everything in one run (:func:`compare`) against a fixed probe set and perplexity text shipped in
  ``qwenlab/data``;
- see how the GPU-only methods (bitsandbytes, GPTQ, AWQ) are used (:data:`GPU_METHODS`).

The fast CPU recipe (found by measurement on a 2-core AVX2 CPU, see ``qwenlab bench quant``):

1. every ``nn.Linear`` (lm_head included) gets int8 weights with **one scale per output channel**, codes in
   ``[-63, 63]`` so fbgemm's AVX2 kernel never saturates (:data:`WEIGHT_QMAX`);
2. each token's activations are quantized on the fly to **8 bits with that token's own range** and
   multiplied by fbgemm's int8 kernel (a quarter of fp32's memory traffic per decoded token);
3. **SmoothQuant** first moves the activation outlier channels (a few channels 10-100x larger than the
   rest, after every RMSNorm) into the weights: exact in fp32, measured on a short shipped text;
4. the embedding table is stored int8 per row too (only one row is read per token).

``torch.ao.quantization.quantize_dynamic``'s defaults miss exactly what a small model needs: one scale
per *tensor* for the weights, 7-bit activations (``reduce_range``), no smoothing, and one activation
scale for all the tokens of a prompt — its answers break.

Taught in ``07_quantization.ipynb``; ``qwenlab bench quant`` measures the recipe against fp32.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import json
import math
import os
import platform
import statistics
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch

from ._display import KeyValueTable
from .models import GpuRequiredError

__all__ = [
    "QuantizedTensor",
    "QuantError",
    "quantize_tensor",
    "dequantize",
    "quant_error",
    "error_table",
    "with_outlier_channel",
    "outlier_channels",
    "plot_weight_error",
    "Footprint",
    "model_footprint",
    "memory_math",
    "Probe",
    "probes",
    "perplexity_text",
    "probe_answers",
    "is_correct",
    "same_answer",
    "perplexity",
    "Int8Linear",
    "WEIGHT_QMAX",
    "Int8Embedding",
    "SMOOTH_ALPHA",
    "calibration_text",
    "activation_ranges",
    "smoothing_scales",
    "METHODS",
    "GPU_METHODS",
    "GpuRequiredError",
    "gpu_available",
    "Method",
    "quantize",
    "load_quantized",
    "cpu_variants",
    "VariantResult",
    "Comparison",
    "compare",
    "plot_comparison",
    "plot_speed_quality",
    "cli",
]

DATA = Path(__file__).with_name("data")
# ------------------------------------------------------------------------------------ from scratch


@dataclass
class QuantizedTensor:
    """Integer codes + scales: everything needed to rebuild (approximately) a float tensor.

    ``values`` holds the signed integer codes (int8 storage, range ``[-qmax, qmax]``); ``scale`` is
    broadcast against them after reshaping to ``(rows, groups, group_size)``: one scale for the whole
    tensor (``per-tensor``), one per output row (``per-channel``), or one per group of ``group_size``
    inputs of a row (``group``).

    Taught in ``07_quantization.ipynb``.
    """

    values: Any
    scale: Any
    bits: int
    scheme: str
    shape: tuple[int, ...]
    group_size: int | None = None

    def dequantize(self) -> Any:
        """The float tensor these codes stand for: ``values * scale``."""
        return dequantize(self)

    @property
    def nbytes(self) -> int:
        """Bytes as stored packed: ``bits`` per code (two int4 codes share a byte) + fp32 scales."""
        return math.ceil(self.values.numel() * self.bits / 8) + self.scale.numel() * 4

    @property
    def bits_per_weight(self) -> float:
        """Average bits per weight, scales included (int4 group 64 -> 4.5)."""
        return 8 * self.nbytes / self.values.numel()


def _scheme_view(w: Any, scheme: str, group_size: int | None) -> Any:
    """``w`` reshaped so that ``amax`` over the last dimension gives one range per scale."""
    if scheme == "per-tensor":
        return w.reshape(1, 1, -1)
    rows = w.reshape(w.shape[0], -1)
    if scheme == "per-channel":
        return rows.unsqueeze(1)
    if rows.shape[1] % group_size:
        raise ValueError(
            f"group_size={group_size} does not divide the {rows.shape[1]} inputs of each row; "
            "choose a divisor such as 32, 64 or 128."
        )
    return rows.reshape(rows.shape[0], -1, group_size)


def _check_scheme(bits: int, scheme: str, group_size: int | None) -> tuple[str, int | None]:
    if bits not in (2, 3, 4, 8):
        raise ValueError(f"bits={bits} is not supported: use 8 (int8) or 4 (int4) (2 and 3 for experiments).")
    if scheme.startswith("group"):
        if "-" in scheme:  # "group-64"
            group_size = int(scheme.split("-", 1)[1])
        group_size = group_size or 64
        if group_size < 1:
            raise ValueError(f"group_size={group_size} must be a positive number of weights, e.g. 64.")
        return "group", group_size
    if scheme not in ("per-tensor", "per-channel"):
        raise ValueError(f"Unknown scheme {scheme!r}: use 'per-tensor', 'per-channel' or 'group' (with group_size).")
    return scheme, None


def quantize_tensor(w: Any, bits: int = 8, scheme: str = "per-channel", group_size: int | None = None) -> QuantizedTensor:
    """Symmetric absmax quantization: ``scale = max|w| / qmax``, ``q = round(w / scale)``.

    Args:
        w: a float tensor; a Linear weight is ``(out_features, in_features)``.
        bits: 8 (``qmax = 127``) or 4 (``qmax = 7``).
        scheme: ``"per-tensor"`` (one scale), ``"per-channel"`` (one per output row) or ``"group"``
            (one per ``group_size`` consecutive inputs of a row; ``"group-32"`` also works).
        group_size: weights per group for ``scheme="group"`` (default 64).

    Example:
        >>> import torch
        >>> qt = quantize_tensor(torch.tensor([[0.5, -1.0, 0.25]]), bits=8, scheme="per-tensor")
        >>> qt.values.tolist(), round(float(qt.scale), 5)
        ([[64, -127, 32]], 0.00787)

    Taught in ``07_quantization.ipynb``.
    """
    import torch

    scheme, group_size = _check_scheme(bits, scheme, group_size)
    qmax = 2 ** (bits - 1) - 1
    view = w.detach().float()
    view = _scheme_view(view, scheme, group_size)
    scale = (view.abs().amax(dim=-1, keepdim=True) / qmax).clamp(min=torch.finfo(torch.float32).tiny)
    values = torch.round(view / scale).clamp(-qmax, qmax).to(torch.int8)
    return QuantizedTensor(values.reshape(w.shape), scale, bits, scheme, tuple(w.shape), group_size)


def dequantize(qt: QuantizedTensor) -> Any:
    """Rebuild the float tensor from a :class:`QuantizedTensor` (``codes * scale``)."""
    values = _scheme_view(qt.values.float(), qt.scheme, qt.group_size)
    return (values * qt.scale).reshape(qt.shape)


@dataclass
class QuantError:
    """How far the round trip ``dequantize(quantize(w))`` lands from ``w``.

    Attributes:
        label: e.g. ``"int8 per-channel"``; bits, scheme, group_size: the settings.
        rel_error: ``||w - w_hat|| / ||w||`` (0.01 = 1 % of the weight's size).
        max_abs_error: the worst single weight.
        sqnr_db: signal-to-quantization-noise ratio in dB (higher is better; +6 dB per extra bit).
        bits_per_weight: storage cost with scales included.
    """

    label: str
    bits: int
    scheme: str
    group_size: int | None
    rel_error: float
    max_abs_error: float
    sqnr_db: float
    bits_per_weight: float


def quant_error(w: Any, bits: int = 8, scheme: str = "per-channel", group_size: int | None = None) -> QuantError:
    """Quantize ``w``, dequantize it and measure the error (see :class:`QuantError`).

    Taught in ``07_quantization.ipynb``.
    """
    qt = quantize_tensor(w, bits, scheme, group_size)
    w = w.detach().float()
    err = w - qt.dequantize()
    rel = float(err.norm() / w.norm().clamp(min=1e-30))
    label = f"int{bits} {qt.scheme}" + (f" {qt.group_size}" if qt.group_size else "")
    return QuantError(
        label=label,
        bits=bits,
        scheme=qt.scheme,
        group_size=qt.group_size,
        rel_error=rel,
        max_abs_error=float(err.abs().max()),
        sqnr_db=-20 * math.log10(max(rel, 1e-30)),
        bits_per_weight=qt.bits_per_weight,
    )


STANDARD_SCHEMES: tuple[tuple[int, str, int | None], ...] = (
    (8, "per-tensor", None),
    (8, "per-channel", None),
    (4, "per-tensor", None),
    (4, "per-channel", None),
    (4, "group", 128),
    (4, "group", 64),
    (4, "group", 32),
)


def error_table(w: Any, schemes: Sequence[tuple[int, str, int | None]] = STANDARD_SCHEMES) -> list[QuantError]:
    """:func:`quant_error` for each ``(bits, scheme, group_size)`` — the table the notebook plots."""
    return [quant_error(w, b, s, g) for b, s, g in schemes]


def with_outlier_channel(rows: int = 256, cols: int = 512, factor: float = 30.0, channel: int = 7,
                         seed: int = 0) -> Any:
    """A Gaussian weight matrix with one *outlier channel*: row ``channel`` is ``factor`` times larger.

    Real LLM weights have a few such rows and columns; one of them is enough to ruin a per-tensor
    scale (every other weight is rounded with a step sized for the outlier).
    """
    import torch

    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g) * 0.02
    w[channel] *= factor
    return w


def outlier_channels(w: Any, k: int = 5) -> list[tuple[int, float]]:
    """The ``k`` output channels (rows) with the largest ``max|w|``, as ``(row, max|w| / median row max)``."""
    amax = w.detach().float().reshape(w.shape[0], -1).abs().amax(dim=1)
    median = float(amax.median().clamp(min=1e-30))
    top = amax.topk(min(k, amax.numel()))
    return [(int(i), float(v) / median) for v, i in zip(top.values, top.indices)]


def plot_weight_error(w: Any, name: str = "", schemes: Sequence[tuple[int, str, int | None]] = STANDARD_SCHEMES,
                      top: int = 3) -> Any:
    """Three pictures of one weight matrix: its histogram with the int8/int4 per-tensor step, the largest
    ``|w|`` of each output channel (outliers in red), and the round-trip error of each scheme.

    Returns the matplotlib Figure. Taught in ``07_quantization.ipynb``.
    """
    import matplotlib.pyplot as plt

    w = w.detach().float()
    fig, (hist, chans, bars) = plt.subplots(1, 3, figsize=(15, 3.8))
    absmax = float(w.abs().max())
    hist.hist(w.flatten().numpy(), bins=200, color="#4c72b0", log=True)
    for bits, color in ((8, "#55a868"), (4, "#c44e52")):
        step = absmax / (2 ** (bits - 1) - 1)
        hist.axvspan(-step / 2, step / 2, color=color, alpha=0.25,
                     label=f"int{bits} per-tensor: |w| < {step / 2:.2g} -> 0")
    hist.set_title(f"{name} weights (max |w| = {absmax:.3g})".strip())
    hist.set_xlabel("weight value")
    hist.set_ylabel("count (log)")
    hist.legend(fontsize=8)

    rows = w.reshape(w.shape[0], -1).abs().amax(dim=1)
    chans.plot(rows.numpy(), lw=0.8, color="#4c72b0")
    for row, ratio in outlier_channels(w, top):
        chans.scatter([row], [float(rows[row])], color="#c44e52", zorder=3)
        chans.annotate(f"#{row} ({ratio:.0f}x median)", (row, float(rows[row])), fontsize=8,
                       xytext=(4, -10), textcoords="offset points")
    chans.set_title("max |w| of each output channel")
    chans.set_xlabel("output channel (row)")

    table = error_table(w, schemes)
    labels = [e.label.replace(" ", "\n", 1) for e in table]
    colors = ["#55a868" if e.bits == 8 else "#c44e52" for e in table]
    bars.bar(range(len(table)), [100 * e.rel_error for e in table], color=colors)
    bars.set_xticks(range(len(table)), labels, fontsize=7)
    bars.set_yscale("log")
    bars.set_ylabel("relative error ||w - w_hat|| / ||w|| (%)")
    bars.set_title("round-trip error by scheme")
    for i, e in enumerate(table):
        bars.annotate(f"{e.bits_per_weight:.2g} b", (i, 100 * e.rel_error), ha="center", fontsize=7,
                      xytext=(0, 2), textcoords="offset points")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------ footprint

#: Bytes per weight of each storage format, scales included where a format needs them.
BYTES_PER_WEIGHT: dict[str, float] = {
    "fp32": 4.0,
    "bf16 / fp16": 2.0,
    "int8 (per-channel)": 1.0,
    "int4 (group 64)": 0.5 + 2 / 64,  # two int4 codes per byte + one fp16 scale per 64 weights
}


def memory_math(params: int) -> dict[str, int]:
    """Memory the weights need in each format: ``params x bytes per weight`` (see :data:`BYTES_PER_WEIGHT`).

    Example:
        >>> memory_math(500_000_000)["fp32"] / 1e9
        2.0

    Taught in ``07_quantization.ipynb``.
    """
    return {fmt: int(params * b) for fmt, b in BYTES_PER_WEIGHT.items()}


@dataclass
class Footprint(KeyValueTable):
    """What a model's weights take in memory, counted tensor by tensor.

    Attributes:
        total_bytes: parameters + quantized weights held outside parameters (packed int8 of
            :class:`Int8Linear` / torch.ao dynamic layers). A weight shared by two modules counts once.
        params: number of weights.
        by_dtype: bytes per storage dtype (``float32``, ``int8`` ...).
        by_module: bytes per module type (``Linear``, ``Embedding``, ``Int8Linear`` ...).
        buffer_bytes: other buffers (rotary tables ...), not counted in ``total_bytes``.
    """

    total_bytes: int
    params: int
    by_dtype: dict[str, int]
    by_module: dict[str, int]
    buffer_bytes: int = 0

    @property
    def expected(self) -> dict[str, int]:
        """``params x bytes per weight`` for each format: the memory math to compare with ``total_bytes``."""
        return memory_math(self.params)

    @property
    def bits_per_weight(self) -> float:
        return 8 * self.total_bytes / max(1, self.params)

    key_width = 28

    def rows(self) -> list[tuple[str, str]]:
        out = [("weights", f"{self.params / 1e6:,.1f} M"),
               ("measured bytes", f"{self.total_bytes / 2**20:,.1f} MiB ({self.bits_per_weight:.2f} bits/weight)")]
        out += [(f"  dtype {k}", f"{v / 2**20:,.1f} MiB") for k, v in self.by_dtype.items()]
        out += [(f"  module {k}", f"{v / 2**20:,.1f} MiB") for k, v in self.by_module.items()]
        out += [(f"expected if {k}", f"{v / 2**20:,.1f} MiB") for k, v in self.expected.items()]
        return out



def _quantized_tensors(module: Any) -> list[tuple[Any, int, bool]]:
    """``(tensor, bytes, is_weight)`` a module keeps outside ``parameters()``: torch.ao-style packed int8
    (``_packed_params`` + ``weight()``, as :class:`Int8Linear` has) and :class:`Int8Embedding`'s buffers."""
    from .bench import _tensor_bytes

    if hasattr(module, "quantized_tensors"):
        return list(module.quantized_tensors())
    if not (hasattr(module, "_packed_params") and callable(getattr(module, "weight", None))):
        return []
    w = module.weight()
    out = [(w, w.numel() * w.element_size() + _scale_bytes(w), True)]
    bias = module.bias() if callable(getattr(module, "bias", None)) else None
    if bias is not None:
        out.append((bias, _tensor_bytes(bias), True))
    return out


def _scale_bytes(q: Any) -> int:
    """fp32 bytes of the scales of a quantized (qint8) tensor: one per channel, or one for the tensor."""
    import torch

    if q.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        return 4 * q.q_per_channel_scales().numel()
    return 4


def model_footprint(model: Any) -> Footprint:
    """Bytes of every weight of ``model``, by dtype and by module type (see :class:`Footprint`).

    For an ordinary model ``total_bytes`` is exactly the sum of ``p.numel() * p.element_size()`` over
    ``model.parameters()`` (a tied weight once); quantized layers add the int8 weights (and their scales)
    that they keep packed for their kernels.

    Taught in ``07_quantization.ipynb``.
    """
    from .bench import _tensor_bytes

    seen: set[int] = set()
    alive: list[Any] = []  # unpacked int8 weights are new tensors: keep them so their ids are not reused
    by_dtype: dict[str, int] = {}
    by_module: dict[str, int] = {}
    total = params = 0
    for module in model.modules():
        kind = type(module).__name__
        items = [(p, _tensor_bytes(p), True) for p in module.parameters(recurse=False)]
        for t, nbytes, is_weight in items + _quantized_tensors(module):
            if id(t) in seen:
                continue
            seen.add(id(t))
            alive.append(t)
            dtype = str(t.dtype).replace("torch.", "") if type(t) in (torch.Tensor, torch.nn.Parameter) \
                else type(t).__name__  # a torchao tensor subclass reports its logical dtype (float32)
            total += nbytes
            params += t.numel() if is_weight else 0
            by_dtype[dtype] = by_dtype.get(dtype, 0) + nbytes
            by_module[kind] = by_module.get(kind, 0) + nbytes
    buffers = sum(b.numel() * b.element_size() for b in model.buffers() if id(b) not in seen)
    return Footprint(total, params, dict(sorted(by_dtype.items(), key=lambda kv: -kv[1])),
                     dict(sorted(by_module.items(), key=lambda kv: -kv[1])), buffers)


# ------------------------------------------------------------------------------- probes and perplexity


@dataclass(frozen=True)
class Probe:
    """One short factual question with its accepted answers (any of ``expected`` found = correct)."""

    question: str
    expected: tuple[str, ...]
    lang: str


def probes(lang: str | None = None) -> list[Probe]:
    """The fixed probe set shipped in ``qwenlab/data/probes.json`` (14 questions, 7 zh + 7 en).

    The questions are ones the fp32 offline model answers correctly *and* confidently (its top token
    leads the runner-up by more than one logit at every step). A question the model is guessing at
    flips under any change of arithmetic — even bf16 — and would measure noise, not quantization.
    """
    items = json.loads((DATA / "probes.json").read_text(encoding="utf-8"))
    out = [Probe(p["question"], tuple(p["expected"]), p["lang"]) for p in items]
    return [p for p in out if lang is None or p.lang == lang]


def perplexity_text(lang: str = "both") -> str:
    """The fixed perplexity text (``"en"``, ``"zh"`` or ``"both"``), written for qwenlab (no copyright)."""
    if lang not in ("en", "zh", "both"):
        raise ValueError(f"lang={lang!r}: use 'en', 'zh' or 'both'.")
    parts = ["en", "zh"] if lang == "both" else [lang]
    return "\n\n".join((DATA / f"perplexity_{p}.txt").read_text(encoding="utf-8").strip() for p in parts)


def _norm(text: str) -> str:
    return " ".join(text.strip().lower().replace("₂", "2").split()).strip(" .。!！")


def is_correct(answer: str, probe: Probe) -> bool:
    """True when the answer contains one of the probe's accepted answers (case-insensitive)."""
    return any(_norm(e) in _norm(answer) for e in probe.expected)


def same_answer(a: str, b: str) -> bool:
    """True when two answers are the same text, ignoring case, spacing and a final full stop."""
    return _norm(a) == _norm(b)


def probe_answers(model: Any, tokenizer: Any, items: Sequence[Probe] | None = None,
                  max_new_tokens: int = 16) -> list[str]:
    """Greedy answers (thinking off) of ``model`` to each probe question.

    Greedy decoding makes the answer a function of the weights only, so two variants of one model can
    be compared answer by answer.
    """
    from .generation import generate

    items = probes() if items is None else items
    return [generate(model, tokenizer, p.question, enable_thinking=False, do_sample=False,
                     max_new_tokens=max_new_tokens).text.strip() for p in items]


def perplexity(model: Any, tokenizer: Any, text: str | None = None, max_tokens: int = 512) -> float:
    """Perplexity of ``model`` on ``text`` (default :func:`perplexity_text`): ``exp(mean negative log-likelihood)``.

    Lower is better; a quantized model should stay within a few percent of its fp32 original.
    """
    import torch

    text = perplexity_text() if text is None else text
    ids = tokenizer(text, return_tensors="pt").input_ids[:, :max_tokens].to(model.device)
    if ids.shape[1] < 2:
        raise ValueError("The text has fewer than 2 tokens; perplexity needs a longer text.")
    with torch.inference_mode():
        loss = model(input_ids=ids, labels=ids).loss
    return float(torch.exp(loss.float()))


# ------------------------------------------------------------------------------------ int8 modules


#: Largest weight code of :class:`Int8Linear`. fbgemm's AVX2 kernel adds pairs of uint8 x int8 products in
#: int16: with 8-bit activations (up to 255) and weights up to 127 a pair can reach 64,770 and saturate at
#: 32,767 — silently wrong sums. With weights in [-63, 63] a pair stays below 32,130, so the kernel is exact.
#: (torch's ``quantize_dynamic`` avoids the same overflow the other way round: 7-bit activations,
#: ``reduce_range=True`` — but the activations are where a small model's outliers live.)
WEIGHT_QMAX = 63


class Int8Linear(torch.nn.Module):
    """A Linear layer with int8 weights, one scale per output channel — the fast CPU recipe's layer.

    Weights are stored int8 in ``[-63, 63]`` (see :data:`WEIGHT_QMAX`), one scale per output channel.

    - One token (decoding): its activations are quantized to 8 bits on the fly (full range, the
      token's own min and max) and fbgemm's int8 kernel computes ``x @ W.T`` — a quarter of fp32's
      weight traffic.
    - Several tokens (prefill, perplexity): the kernel quantizes all rows with one shared grid, so each
      row is first mapped onto ``[-1, 1]`` (``x = center + half * u``) and the output mapped back
      (``W x = half * W u + center * W 1``): every token gets its own 8-bit grid, as in decoding, and a
      token with huge activations (the first one often has them) cannot flatten the others to zero.

    Like ``torch.ao``'s dynamic Linear, it exposes ``weight()`` / ``bias()`` (the qint8 weight).
    Taught in ``07_quantization.ipynb``.
    """

    def __init__(self, linear: Any, column_scale: Any = None):
        super().__init__()
        w = linear.weight.detach().float()
        if column_scale is not None:  # SmoothQuant: the norm before this layer was divided by it
            w = w * column_scale.float()[None, :]
        scale = (w.abs().amax(dim=1) / WEIGHT_QMAX).clamp(min=1e-12).double()
        zeros = torch.zeros(w.shape[0], dtype=torch.long)
        bias = None if linear.bias is None else linear.bias.detach().float().clone()
        with warnings.catch_warnings():  # quantized tensors are deprecated in favour of torchao (still here)
            warnings.simplefilter("ignore")
            qweight = torch.quantize_per_channel(w, scale, zeros, 0, torch.qint8)
            self._packed_params = torch.ops.quantized.linear_prepack(qweight, bias)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self._bias = bias
        self._row_sums = qweight.dequantize().sum(dim=1)  # W @ ones, for the prefill path

    def weight(self) -> Any:
        """The qint8 weight (per-channel scales inside)."""
        return torch.ops.quantized.linear_unpack(self._packed_params)[0]

    def bias(self) -> Any:
        return torch.ops.quantized.linear_unpack(self._packed_params)[1]

    def forward(self, x: Any) -> Any:
        rows = x.reshape(-1, self.in_features).float()
        if rows.shape[0] == 1:
            y = torch.ops.quantized.linear_dynamic(rows, self._packed_params, False)
        else:  # map every row onto [-1, 1]: x = center + half * u, so W x = half * (W u) + center * W 1
            lo, hi = rows.amin(dim=1, keepdim=True), rows.amax(dim=1, keepdim=True)
            center, half = (hi + lo) / 2, ((hi - lo) / 2).clamp(min=1e-30)
            y = torch.ops.quantized.linear_dynamic((rows - center) / half, self._packed_params, False)
            if self._bias is not None:
                y = y - self._bias
            y = y * half + center * self._row_sums
            if self._bias is not None:
                y = y + self._bias
        return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per-channel"


class Int8Embedding(torch.nn.Module):
    """An embedding table stored int8, one scale per row (token); a lookup de-quantizes only the rows used.

    ``weight`` holds the int8 codes (a non-trainable parameter, so size counters see it).
    """

    def __init__(self, embedding: Any):
        super().__init__()
        qt = quantize_tensor(embedding.weight, bits=8, scheme="per-channel")
        self.weight = torch.nn.Parameter(qt.values, requires_grad=False)
        self.register_buffer("scale", qt.scale.reshape(-1, 1).float())
        self.padding_idx = embedding.padding_idx
        self.dtype = embedding.weight.dtype

    def forward(self, ids: Any) -> Any:
        rows = torch.nn.functional.embedding(ids, self.weight)
        return (rows.float() * torch.nn.functional.embedding(ids, self.scale)).to(self.dtype)

    def quantized_tensors(self) -> list[tuple[Any, int, bool]]:
        return [(self.scale, self.scale.numel() * self.scale.element_size(), False)]

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, {self.weight.shape[1]}, int8 per-row"


# ------------------------------------------------------------------------------------------ methods


@dataclass(frozen=True)
class Method:
    """One quantization method: what it does, where it runs, how to call it."""

    name: str
    summary: str
    runs_on: str  # "cpu" or "cuda"
    when: str  # "after load" (quantize) or "at load" (load_quantized)
    packages: tuple[str, ...] = ()
    code: str = ""


METHODS: dict[str, Method] = {m.name: m for m in [
    Method("fp32", "no quantization: the reference (4 bytes per weight)", "cpu", "after load"),
    Method("bf16", "bfloat16 weights (2 bytes); fast only where the CPU computes bf16 natively", "cpu",
           "after load"),
    Method("fast", "qwenlab's fast CPU recipe: SmoothQuant + int8 per-channel weights everywhere (lm_head and "
           "embedding too) + 8-bit per-token activations, fbgemm int8 kernel", "cpu", "after load"),
    Method("dynamic-int8", "torch.ao quantize_dynamic on every Linear with its defaults (the common tutorial): "
           "one scale per tensor, 7-bit activations", "cpu", "after load"),
    Method("dynamic-int8-lm-head", "torch.ao quantize_dynamic on lm_head only", "cpu", "after load"),
    Method("torchao-int8-weight-only", "torchao Int8WeightOnlyConfig (int8 weights, float activations)",
           "cpu", "after load / at load", ("torchao",)),
    Method("torchao-int8-dynamic", "torchao Int8DynamicActivationInt8WeightConfig (int8 weights and activations)",
           "cpu", "after load / at load", ("torchao",)),
    Method("gguf", "transformers' GGUF path: from_pretrained(folder, gguf_file=...) de-quantizes Q4_K_M to "
           "float on load, so it runs at float speed (llama.cpp / Ollama / LM Studio run GGUF packed)",
           "cpu", "at load", ("gguf",)),
]}

GPU_METHODS: dict[str, Method] = {m.name: m for m in [
    Method("bnb-4bit", "bitsandbytes NF4 4-bit weights, bf16 compute (QLoRA's format)", "cuda", "at load",
           ("bitsandbytes", "accelerate"),
           "BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type='nf4', bnb_4bit_compute_dtype=torch.bfloat16)"),
    Method("bnb-8bit", "bitsandbytes LLM.int8(): int8 weights, outlier features kept in fp16", "cuda", "at load",
           ("bitsandbytes", "accelerate"), "BitsAndBytesConfig(load_in_8bit=True)"),
    Method("gptq", "a pre-quantized GPTQ repo (e.g. Qwen/Qwen2.5-0.5B-Instruct-GPTQ-Int4), kernels from "
           "gptqmodel (AutoGPTQ is archived)", "cuda", "at load", ("gptqmodel", "optimum"),
           "AutoModelForCausalLM.from_pretrained('Qwen/Qwen2.5-0.5B-Instruct-GPTQ-Int4', device_map='cuda')"),
    Method("awq", "a pre-quantized AWQ repo (e.g. Qwen/Qwen2.5-0.5B-Instruct-AWQ), kernels from gptqmodel "
           "(AutoAWQ is archived)", "cuda", "at load", ("gptqmodel", "accelerate"),
           "AutoModelForCausalLM.from_pretrained('Qwen/Qwen2.5-0.5B-Instruct-AWQ', device_map='cuda', "
           "dtype=torch.float16)"),
]}

def _prequantized(method: str, name: str) -> str:
    """The official pre-quantized repo a GPU method loads for a catalog model (``name`` when there is none)."""
    from .catalog import find, quantized_versions

    for info in quantized_versions(name) if find(name) else []:
        if info.quant_method and info.quant_method.startswith(method):
            return info.name
    return name


def _unknown_method(method: str) -> ValueError:
    import difflib

    names = list(METHODS) + list(GPU_METHODS)
    near = difflib.get_close_matches(method, names, n=2)
    return ValueError(f"Unknown quantization method {method!r}" + (f" (did you mean {' or '.join(near)}?)" if near
                      else "") + f"; choose one of: {', '.join(names)}.")


def _sharing_copy(model: Any) -> Any:
    """A structural copy of ``model`` whose tensors share memory with the original (no second 2.5 GB).

    Quantizing the copy replaces its modules with new ones; the original model is left as it was.
    Every parameter gets a new Parameter object over the same storage, so assigning ``.data`` on the
    copy never reaches the original.
    """
    memo: dict[int, Any] = {}
    for p in model.parameters():
        memo[id(p)] = torch.nn.Parameter(p.detach(), requires_grad=False)
    for b in model.buffers():
        memo[id(b)] = b
    return copy.deepcopy(model, memo)


def _selector(modules: Sequence[str] | None) -> Callable[[str], bool]:
    """``None`` -> every Linear; else names ending with one of ``modules`` (``"lm_head"``, ``"mlp.down_proj"``)."""
    if modules is None:
        return lambda name: True
    wanted = tuple(modules)
    return lambda name: name.endswith(wanted)


def _replace_linears(model: Any, select: Callable[[str], bool], make: Callable[[Any, str], Any]) -> int:
    count = 0
    for parent_name, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            full = f"{parent_name}.{name}" if parent_name else name
            if isinstance(child, torch.nn.Linear) and select(full):
                setattr(parent, name, make(child, full))
                count += 1
    return count


# ------------------------------------------------------------------------------------------ smoothing

#: SmoothQuant's migration strength: 0 leaves activation outliers alone, 1 moves them all into the weights.
SMOOTH_ALPHA = 0.5

#: (norm, the Linear layers that read its output) inside each decoder layer of Qwen2/Qwen3/Llama models.
_SMOOTH_GROUPS = (
    ("input_layernorm", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
    ("post_attention_layernorm", ("mlp.gate_proj", "mlp.up_proj")),
)


def calibration_text() -> str:
    """A short zh + en text (different from the perplexity text) used to measure activation ranges."""
    return (DATA / "calibration.txt").read_text(encoding="utf-8")


def activation_ranges(model: Any, tokenizer: Any, text: str | None = None) -> dict[str, Any]:
    """``{linear name: max |x| of each input channel}`` seen while the model reads ``text`` (default
    :func:`calibration_text`, about 200 tokens of plain zh + en text: one forward pass).

    Plain text measured better ranges than the same text inside the chat template (perplexity 9.65 vs
    9.76 for the offline model, fp32 9.64): the template's first tokens carry extreme activations that
    would set every scale.

    This is where the *outlier channels* of activations show up: a few channels are 10-100x larger
    than the rest in every token. Taught in ``07_quantization.ipynb``.
    """
    text = calibration_text() if text is None else text
    ids = tokenizer(text, return_tensors="pt").input_ids
    ranges: dict[str, Any] = {}

    def hook(name: str) -> Callable[..., None]:
        def record(module: Any, args: tuple, output: Any) -> None:
            seen = args[0].detach().reshape(-1, args[0].shape[-1]).abs().amax(dim=0).float()
            ranges[name] = torch.maximum(ranges[name], seen) if name in ranges else seen
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    try:
        with torch.inference_mode():
            model(input_ids=ids.to(model.device))
    finally:
        for h in handles:
            h.remove()
    return ranges


def smoothing_scales(model: Any, ranges: Mapping[str, Any], alpha: float = SMOOTH_ALPHA,
                     select: Callable[[str], bool] = lambda name: True) -> dict[str, Any]:
    """SmoothQuant scales ``s = max|x|^alpha / max|w|^(1-alpha)`` per input channel, for each RMSNorm whose
    output feeds Linear layers: ``{norm name: s}`` (the same ``s`` multiplies those layers' weight columns).

    Dividing the norm's weight by ``s`` and multiplying the next layers' columns by ``s`` changes nothing
    in exact arithmetic, but moves the activation outliers into the weights, where a per-channel scale
    absorbs them. Only groups whose every Linear is selected are smoothed.
    """
    out: dict[str, Any] = {}
    for prefix, layer in _decoder_layers(model):
        for norm_name, linear_names in _SMOOTH_GROUPS:
            norm = _get(layer, norm_name)
            linears = [_get(layer, n) for n in linear_names]
            names = [f"{prefix}.{n}" for n in linear_names]
            if norm is None or getattr(norm, "weight", None) is None or any(l is None for l in linears):
                continue
            if not all(isinstance(l, torch.nn.Linear) and select(n) for l, n in zip(linears, names)):
                continue
            if names[0] not in ranges:
                continue
            w_max = torch.stack([l.weight.detach().abs().amax(dim=0).float() for l in linears]).amax(dim=0)
            s = ranges[names[0]].clamp(min=1e-5) ** alpha / w_max.clamp(min=1e-5) ** (1 - alpha)
            out[f"{prefix}.{norm_name}"] = s.clamp(min=1e-2, max=1e3)
    return out


def _decoder_layers(model: Any) -> list[tuple[str, Any]]:
    return [(name, m) for name, m in model.named_modules()
            if _get(m, "input_layernorm") is not None and _get(m, "self_attn") is not None]


def _get(module: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


def _smooth_model_type(model: Any) -> bool:
    """Smoothing folds into ``RMSNorm.weight`` (output = weight * x / rms): true for these families."""
    return getattr(model.config, "model_type", "") in ("qwen2", "qwen3", "llama", "mistral")


def _tokenizer_for(model: Any) -> Any:
    from transformers import AutoTokenizer

    folder = getattr(model, "_qwenlab_meta", {}).get("folder") or model.config.name_or_path
    try:
        return AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as err:
        raise ValueError(f"The fast recipe measures activation ranges on a short text, and no tokenizer was found "
                         f"at {folder!r}: pass tokenizer=... to quantize(), or smooth=False.") from err


def _fast(model: Any, original: Any, modules: Sequence[str] | None, tokenizer: Any, smooth: bool) -> Any:
    select = _selector(modules)
    column: dict[str, Any] = {}
    if smooth and _smooth_model_type(model):
        ranges = activation_ranges(original, tokenizer if tokenizer is not None else _tokenizer_for(original))
        for norm_name, s in smoothing_scales(model, ranges, select=select).items():
            norm = _get(model, norm_name)
            norm.weight = torch.nn.Parameter((norm.weight.detach().float() / s).to(norm.weight.dtype),
                                             requires_grad=False)
            prefix = norm_name.rsplit(".", 1)[0]
            for group_norm, linear_names in _SMOOTH_GROUPS:
                if norm_name.endswith(group_norm):
                    column.update({f"{prefix}.{n}": s for n in linear_names})
    n = _replace_linears(model, select, lambda lin, name: Int8Linear(lin, column.get(name)))
    if n == 0:
        raise ValueError(f"No nn.Linear layer matched modules={modules!r}; names look like "
                         "'model.layers.0.mlp.down_proj' or 'lm_head'.")
    emb = model.get_input_embeddings()
    if modules is None and type(emb).__name__ == "Embedding":
        model.set_input_embeddings(Int8Embedding(emb))
    return model


def _torch_dynamic(model: Any, modules: Sequence[str] | None) -> Any:
    spec: Any = {torch.nn.Linear} if modules is None else {
        name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear) and _selector(modules)(name)}
    with warnings.catch_warnings():  # torch.ao.quantization is deprecated in favour of torchao (still here)
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, spec, dtype=torch.qint8, inplace=True)


def _torchao_config(method: str) -> Any:
    try:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig
    except ImportError as err:
        raise ImportError(f"Method {method!r} needs torchao: pip install 'qwenlab[quant]' (or pip install torchao).") from err
    return Int8WeightOnlyConfig() if method == "torchao-int8-weight-only" else Int8DynamicActivationInt8WeightConfig()


def _torchao(model: Any, method: str, modules: Sequence[str] | None) -> Any:
    from torchao.quantization import quantize_

    config = _torchao_config(method)
    select = _selector(modules)
    quantize_(model, config, filter_fn=lambda m, name: isinstance(m, torch.nn.Linear) and select(name))
    return model


def quantize(model: Any, method: str = "fast", *, modules: Sequence[str] | None = None,
             inplace: bool = False, tokenizer: Any = None, smooth: bool = True) -> Any:
    """Quantize a loaded model with a method that runs on this CPU; returns the quantized model.

    Args:
        model: a causal LM (e.g. from :func:`qwenlab.load_model`), fp32 or bf16.
        method: ``"fast"`` (qwenlab's CPU recipe), ``"dynamic-int8"``, ``"dynamic-int8-lm-head"``,
            ``"torchao-int8-weight-only"``, ``"torchao-int8-dynamic"``, ``"bf16"``, ``"fp32"``.
            GGUF and the GPU methods quantize while loading: use :func:`load_quantized`.
        modules: only the Linear layers whose names end with one of these (``["lm_head"]``,
            ``["mlp.down_proj"]``); default every Linear.
        inplace: change ``model`` itself (saves memory); by default a copy is quantized and ``model`` is
            left as it was (the copy shares the weights it does not replace, so it costs only the new
            int8 weights).
        tokenizer: for ``"fast"``: reads the calibration text (default: loaded from the model's folder).
        smooth: for ``"fast"``: SmoothQuant the layers after each RMSNorm (default True; False shows
            what it is worth).

    Example:
        >>> fast = qwenlab.quantize(model, "fast")                        # doctest: +SKIP
        >>> qwenlab.model_footprint(fast).total_bytes / 2**20              # doctest: +SKIP

    Taught in ``07_quantization.ipynb``.
    """
    if method in GPU_METHODS or method == "gguf":
        raise ValueError(f"Method {method!r} quantizes while loading: use "
                         f"qwenlab.quant.load_quantized(name, {method!r}) instead of quantize(model, ...).")
    if method not in METHODS:
        raise _unknown_method(method)
    if method == "fp32" and not inplace:
        return model
    if method == "bf16":
        from .bench import cast_copy

        return model.to(torch.bfloat16) if inplace else cast_copy(model, "bfloat16")
    target = model if inplace else _sharing_copy(model)
    target.eval()
    if method == "fast":
        return _fast(target, model, modules, tokenizer, smooth)
    if method == "dynamic-int8":
        return _torch_dynamic(target, modules)
    if method == "dynamic-int8-lm-head":
        return _torch_dynamic(target, ["lm_head"])
    return _torchao(target, method, modules)


def gpu_available() -> bool:
    """True when a CUDA GPU is visible (the GPU-only methods can run)."""
    return torch.cuda.is_available()


def _require_cuda(method: str) -> None:
    import importlib.util

    info = GPU_METHODS[method]
    if not gpu_available():
        raise GpuRequiredError(
            f"{method} ({info.summary}) needs a CUDA GPU and none is visible here; on a CPU use "
            "qwenlab.quantize(model, 'fast') or a GGUF file with llama.cpp / Ollama instead.")
    missing = [p for p in info.packages if importlib.util.find_spec(p) is None]
    if missing:
        raise ImportError(f"{method} needs {', '.join(missing)}: pip install {' '.join(missing)}")


def _gguf_file(name_or_path: str | os.PathLike) -> Path:
    text = str(name_or_path)
    if text.endswith(".gguf") and Path(text).expanduser().is_file():
        return Path(text).expanduser()
    from .catalog import OFFLINE_MODEL, find

    info = find(text)
    if info is not None and info.name == OFFLINE_MODEL:
        from .offline import assemble

        return assemble()
    raise FileNotFoundError(
        f"{text} is not a .gguf file: method='gguf' needs one, e.g. load_quantized('offline', 'gguf') or the "
        "path of a file downloaded from a *-GGUF repo such as Qwen/Qwen2.5-0.5B-Instruct-GGUF.")


def load_quantized(name_or_path: str | os.PathLike, method: str = "fast", device: str = "auto") -> Any:
    """Load a model already quantized: the at-load methods (torchao via ``TorchAoConfig``, GGUF via
    ``gguf_file=``, GPU-only bitsandbytes / GPTQ / AWQ) or load + :func:`quantize` for the others.

    Returns ``LoadedModel(model, tokenizer)`` like :func:`qwenlab.load_model`.

    Raises:
        GpuRequiredError: a GPU-only method (:data:`GPU_METHODS`) on a machine without CUDA.

    Taught in ``07_quantization.ipynb``.
    """
    from .models import LoadedModel, load_model, resolve

    if method in GPU_METHODS:
        return _load_on_gpu(name_or_path, method)
    if method not in METHODS:
        raise _unknown_method(method)
    if method == "gguf":
        return load_model(_gguf_file(name_or_path), device="cpu", dtype="float32")
    if method.startswith("torchao"):
        from transformers import AutoModelForCausalLM, AutoTokenizer, TorchAoConfig

        start = time.perf_counter()
        where = resolve(name_or_path)
        config = TorchAoConfig(_torchao_config(method))
        model = AutoModelForCausalLM.from_pretrained(where.folder, dtype=torch.float32, quantization_config=config,
                                                     use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(where.folder)
        model._qwenlab_meta = {"name": where.name, "folder": str(where.folder), "found_in": where.found_in,
                               "dtype_reason": f"fp32 + {method}", "load_seconds": time.perf_counter() - start}
        return LoadedModel(model.eval(), tokenizer)
    dtype = "bfloat16" if method == "bf16" else "float32"
    model, tokenizer = load_model(name_or_path, device="cpu" if device == "auto" else device, dtype=dtype)
    return LoadedModel(quantize(model, method, inplace=True), tokenizer)


def _load_on_gpu(name_or_path: str | os.PathLike, method: str) -> Any:
    """bitsandbytes / GPTQ / AWQ on CUDA (never reached on a CPU-only machine: GpuRequiredError first)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    from .models import LoadedModel, resolve

    _require_cuda(method)
    folder = resolve(_prequantized(method, str(name_or_path))).folder
    kwargs: dict[str, Any] = {"device_map": "cuda", "use_safetensors": True}
    if method == "bnb-4bit":
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                           bnb_4bit_compute_dtype=torch.bfloat16)
    elif method == "bnb-8bit":
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    else:
        kwargs["dtype"] = torch.float16  # GPTQ / AWQ kernels compute in fp16
    model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    return LoadedModel(model.eval(), AutoTokenizer.from_pretrained(folder))


def cpu_variants() -> dict[str, Callable[[Any], Any]]:
    """The CPU methods as ``{label: build(model) -> quantized copy}``, ready for :func:`compare` and
    ``qwenlab bench`` (each build leaves the model it gets unchanged)."""
    return {
        "dynamic int8, torch defaults (all Linear)": lambda m: quantize(m, "dynamic-int8"),
        "dynamic int8 (lm_head only)": lambda m: quantize(m, "dynamic-int8-lm-head"),
        "torchao int8 weight-only": lambda m: quantize(m, "torchao-int8-weight-only"),
        "qwenlab fast CPU (int8 per-channel)": lambda m: quantize(m, "fast"),
    }


# ------------------------------------------------------------------------------------------ compare

COMPARE_PROMPT = "用三句话介绍一下长城。Then say one sentence about it in English."


@dataclass
class VariantResult:
    """One row of :class:`Comparison` (times in seconds, sizes in bytes, speeds in tokens/s)."""

    name: str
    weight_bytes: int
    decode_tokens_per_second: float
    prefill_tokens_per_second: float
    perplexity: float
    answers: list[str]
    correct: int
    kept: int
    load_seconds: float | None = None
    peak_rss_bytes: int | None = None
    speedup: float = 1.0
    note: str = ""

    @property
    def total(self) -> int:
        return len(self.answers)


@dataclass
class Comparison:
    """Memory, speed and quality of model variants measured in one run on one machine (:func:`compare`).

    ``kept`` counts answers identical to the reference's (greedy); ``correct`` counts answers that
    contain an accepted answer. ``measured`` says when/where, ``load_average`` how busy the machine was.
    """

    rows: list[VariantResult]
    reference: str
    questions: list[str]
    measured: dict = field(default_factory=dict)

    def row(self, name: str) -> VariantResult:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"No variant {name!r} in this comparison; it has: {', '.join(r.name for r in self.rows)}.")

    def table(self) -> list[list[str]]:
        head = ["variant", "weights MiB", "load s", "peak RSS MiB", "prefill tok/s", "decode tok/s", "vs ref",
                "perplexity", "correct", "same as ref"]
        out = [head]
        for r in self.rows:
            out.append([r.name, f"{r.weight_bytes / 2**20:,.0f}", _opt(r.load_seconds, 1),
                        _opt(None if r.peak_rss_bytes is None else r.peak_rss_bytes / 2**20, 0),
                        f"{r.prefill_tokens_per_second:,.0f}", f"{r.decode_tokens_per_second:.1f}",
                        f"{r.speedup:.2f}x", f"{r.perplexity:.3f}", f"{r.correct}/{r.total}",
                        f"{r.kept}/{r.total}"])
        return out

    def header(self) -> str:
        m = self.measured
        parts = [f"measured {m.get('when', '?')} on {m.get('cpu', '?')} ({m.get('threads', '?')} threads)"]
        if m.get("load_average") is not None:
            parts.append(f"load average {m['load_average'][0]:.1f} -> {m['load_average'][1]:.1f}")
        if m.get("label"):
            parts.append(str(m["label"]))
        return "; ".join(parts)

    def __str__(self) -> str:
        rows = self.table()
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = [self.header(), ""] + ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                                                 enumerate(zip(r, widths))) for r in rows]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        import html

        rows = self.table()
        head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
        return (f"<p style='font-size:90%'>{html.escape(self.header())}</p>"
                f"<table><tr>{head}</tr>{body}</table>")

    def answers(self) -> "AnswerTable":
        """Every variant's answer to every probe, with the ones that differ from the reference marked."""
        return AnswerTable(self)

    def to_json(self) -> str:
        return json.dumps({"reference": self.reference, "questions": self.questions, "measured": self.measured,
                           "rows": [asdict(r) for r in self.rows]}, ensure_ascii=False, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "Comparison":
        data = json.loads(text)
        return cls([VariantResult(**r) for r in data["rows"]], data["reference"], data["questions"],
                    data.get("measured", {}))

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Comparison":
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


@dataclass
class AnswerTable:
    """Answers per probe (rows) and variant (columns); ``✗`` marks an answer that changed."""

    comparison: Comparison

    def _cells(self) -> list[list[str]]:
        cmp = self.comparison
        ref = cmp.row(cmp.reference).answers
        out = [["question"] + [r.name for r in cmp.rows]]
        for i, q in enumerate(cmp.questions):
            cells = [q]
            for r in cmp.rows:
                a = r.answers[i] if i < len(r.answers) else ""
                cells.append(a if same_answer(a, ref[i]) else f"✗ {a}")
            out.append(cells)
        return out

    def __str__(self) -> str:
        return "\n".join(" | ".join(c.replace("\n", " ")[:40] for c in row) for row in self._cells())

    def _repr_html_(self) -> str:
        import html

        cells = self._cells()
        head = "".join(f"<th>{html.escape(c)}</th>" for c in cells[0])
        body = ""
        for row in cells[1:]:
            body += "<tr>" + "".join(
                f"<td style='color:{'#c44e52' if c.startswith('✗') else 'inherit'}'>{html.escape(c[:60])}</td>"
                for c in row) + "</tr>"
        return f"<table><tr>{head}</tr>{body}</table>"


def _opt(x: float | None, digits: int) -> str:
    return "—" if x is None else f"{x:,.{digits}f}"


class _PeakRss:
    """Samples this process's resident memory every 20 ms in a thread; ``peak`` is the highest seen."""

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        self.start = self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __enter__(self) -> "_PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def _decode_and_prefill(model: Any, inputs: dict, new_tokens: int, repeats: int) -> tuple[float, float]:
    """(decode tok/s, prefill tok/s): greedy ``generate`` of exactly ``new_tokens``; medians of ``repeats``."""
    from .bench import time_generate

    time_generate(model, {k: v[:, -4:] for k, v in inputs.items()}, 2)  # warm-up
    runs = [time_generate(model, inputs, new_tokens) for _ in range(max(1, repeats))]
    step = statistics.median(r.step_median for r in runs)
    prefill = statistics.median(r.prefill_seconds for r in runs)
    return 1.0 / step, inputs["input_ids"].shape[1] / prefill


def _machine_info(threads: int) -> dict:
    from .env import cpu_name

    return {"when": time.strftime("%Y-%m-%d %H:%M"), "cpu": cpu_name(), "threads": threads,
            "torch": torch.__version__, "python": platform.python_version()}


def compare(variants: Mapping[str, Any], tokenizer: Any, *, reference: str | None = None,
            questions: Sequence[Probe] | None = None, max_new_tokens: int = 16, decode_tokens: int = 24,
            repeats: int = 2, perplexity_tokens: int = 512, label: str = "",
            progress: Callable[[str], None] | None = None) -> Comparison:
    """Measure model variants side by side in one run: weight bytes, load time, peak RSS, prefill and
    decode tok/s, perplexity on the shipped zh + en text, and greedy answers to the probe set.

    Args:
        variants: ``{name: model}`` or ``{name: callable() -> model}``. A callable is built when its turn
            comes (its load time and peak RSS are measured) and released afterwards, so only one extra
            variant is in memory at a time. The first entry is the reference unless ``reference`` is given.
        tokenizer: the tokenizer all variants share.
        questions: probe subset (default :func:`probes`, all 14); ``max_new_tokens`` bounds each answer.
        decode_tokens, repeats: the speed measurement (greedy ``generate`` of exactly that many tokens).
        label: a note stored with the result (e.g. "quick run for the notebook").

    Returns:
        :class:`Comparison` — prints as a table, renders as HTML, ``.answers()`` shows every answer.

    Example:
        >>> cmp = qwenlab.compare({"fp32": model, "fast": lambda: qwenlab.quantize(model, "fast")},
        ...                       tokenizer)                                    # doctest: +SKIP

    Taught in ``07_quantization.ipynb``.
    """
    from .generation import build_inputs

    if not variants:
        raise ValueError("variants is empty: pass e.g. {'fp32': model, 'fast': lambda: quantize(model, 'fast')}.")
    say = progress or (lambda msg: None)
    items = list(questions) if questions is not None else probes()
    reference = reference or next(iter(variants))
    if reference not in variants:
        raise ValueError(f"reference={reference!r} is not one of the variants: {', '.join(variants)}.")
    inputs = build_inputs(tokenizer, COMPARE_PROMPT, enable_thinking=False)
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    rows = []
    order = [reference] + [n for n in variants if n != reference]
    for name in order:
        say(f"measuring {name} ...")
        rows.append(_measure_variant(name, variants[name], tokenizer, inputs, items, max_new_tokens,
                                     decode_tokens, repeats, perplexity_tokens))
    ref = rows[0]
    for r in rows:
        r.speedup = r.decode_tokens_per_second / ref.decode_tokens_per_second
        r.kept = sum(same_answer(a, b) for a, b in zip(r.answers, ref.answers))
    measured = _machine_info(torch.get_num_threads())
    if load_before is not None:
        measured["load_average"] = [load_before, os.getloadavg()[0]]
    measured["label"] = label
    by_name = {r.name: r for r in rows}
    return Comparison([by_name[n] for n in variants], reference, [p.question for p in items], measured)


def _measure_variant(name: str, variant: Any, tokenizer: Any, inputs: dict, items: Sequence[Probe],
                     max_new_tokens: int, decode_tokens: int, repeats: int, perplexity_tokens: int) -> VariantResult:
    built = callable(variant) and not isinstance(variant, torch.nn.Module)
    with _PeakRss() as rss:
        start = time.perf_counter()
        model = variant() if built else variant
        if isinstance(model, tuple):  # a loader that returns (model, tokenizer)
            model = model[0]
        load_seconds = time.perf_counter() - start if built else None
        decode, prefill = _decode_and_prefill(model, inputs, decode_tokens, repeats)
        ppl = perplexity(model, tokenizer, max_tokens=perplexity_tokens)
        answers = probe_answers(model, tokenizer, items, max_new_tokens)
        weight_bytes = model_footprint(model).total_bytes
    result = VariantResult(name=name, weight_bytes=weight_bytes, decode_tokens_per_second=decode,
                           prefill_tokens_per_second=prefill, perplexity=ppl, answers=answers,
                           correct=sum(is_correct(a, p) for a, p in zip(answers, items)), kept=0,
                           load_seconds=load_seconds, peak_rss_bytes=(rss.peak - rss.start) if built else None)
    if built:
        del model
        gc.collect()
    return result


def plot_comparison(cmp: Comparison) -> Any:
    """Four bar charts of a :class:`Comparison`: weight memory, decode speed, perplexity, answers kept.

    Returns the matplotlib Figure. Taught in ``07_quantization.ipynb``.
    """
    import matplotlib.pyplot as plt

    names = [r.name for r in cmp.rows]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    panels = [
        ("weights (MiB)", [r.weight_bytes / 2**20 for r in cmp.rows]),
        ("decode (tokens/s)", [r.decode_tokens_per_second for r in cmp.rows]),
        ("perplexity (lower is better)", [r.perplexity for r in cmp.rows]),
        ("answers same as reference", [r.kept for r in cmp.rows]),
    ]
    colors = ["#8c8c8c" if n == cmp.reference else ("#55a868" if r.kept == r.total else "#c44e52")
              for n, r in zip(names, cmp.rows)]
    for ax, (title, values) in zip(axes, panels):
        ax.barh(range(len(names)), values, color=colors)
        ax.set_yticks(range(len(names)), names if ax is axes[0] else [""] * len(names), fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=10)
        for i, v in enumerate(values):
            ax.annotate(f"{v:,.3g}", (v, i), fontsize=7, va="center", xytext=(2, 0), textcoords="offset points")
    axes[3].set_xlim(0, max(r.total for r in cmp.rows) * 1.2)
    fig.suptitle(cmp.header(), fontsize=8)
    fig.tight_layout()
    return fig


def plot_speed_quality(cmp: Comparison, ax: Any = None) -> Any:
    """Speed vs quality: decode speed-up over the reference (x) against the perplexity change (y), one
    point per variant; green when every probe answer is kept, red when some changed.

    Returns the matplotlib Figure. Taught in ``07_quantization.ipynb``.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4.5))
    else:
        fig = ax.figure
    ref = cmp.row(cmp.reference)
    for r in cmp.rows:
        change = 100 * (r.perplexity / ref.perplexity - 1)
        good = r.kept == r.total
        ax.scatter(r.speedup, change, s=30 + r.weight_bytes / 2**20 / 4, alpha=0.7,
                   color="#55a868" if good else "#c44e52", edgecolor="black")
        ax.annotate(f"{r.name}\n{r.kept}/{r.total} kept", (r.speedup, change), fontsize=7,
                    xytext=(6, 4), textcoords="offset points")
    ax.axhline(0, color="gray", lw=0.8)
    ax.axvline(1, color="gray", lw=0.8)
    ax.set_xlabel(f"decode speed-up vs {cmp.reference} (x)")
    ax.set_ylabel("perplexity change (%)")
    ax.set_title("faster (right) and better (down); dot size = weight memory", fontsize=10)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------- benchmark and CLI


@dataclass
class RecipeBenchmark:
    """``qwenlab bench quant``: decode speed of the fast CPU recipe vs fp32, answers checked, one run.

    Timing rounds alternate fp32 and fast, so a change in the machine's load hits both alike;
    ``speedup`` is the median of the per-round ratios.
    """

    model: str
    new_tokens: int
    rounds: int
    fp32_tokens_per_second: float
    fast_tokens_per_second: float
    speedup: float
    round_ratios: list[float]
    kept: int
    total: int
    changed: list[tuple[str, str, str]]
    fp32_bytes: int
    fast_bytes: int
    machine: dict

    GOAL = 2.0

    def lines(self) -> list[str]:
        m = self.machine
        out = [f"model {self.model}; {m.get('cpu')} ({m.get('threads')} threads); "
               f"load average {m['load_average'][0]:.1f} -> {m['load_average'][1]:.1f} "
               "(a busy machine slows both alike; the ratio is what counts)",
               f"weights: fp32 {self.fp32_bytes / 2**20:,.0f} MiB -> fast {self.fast_bytes / 2**20:,.0f} MiB",
               f"decode fp32 {self.fp32_tokens_per_second:.2f} tok/s, fast {self.fast_tokens_per_second:.2f} tok/s "
               f"({self.new_tokens} tokens x {self.rounds} rounds, ratios "
               + ", ".join(f"{r:.2f}" for r in self.round_ratios) + ")",
               f"probe answers unchanged: {self.kept}/{self.total}"]
        out += [f"  changed: {q} | fp32 {a!r} -> fast {b!r}" for q, a, b in self.changed]
        ok = self.speedup >= self.GOAL and self.kept == self.total
        out.append(f"decode speed-up of the fast CPU recipe vs fp32: {self.speedup:.2f}x "
                   f"(goal >= {self.GOAL:.1f}x with every answer kept: {'met' if ok else 'NOT met'})")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())


def benchmark_fast_recipe(model: Any, tokenizer: Any, *, name: str = "", new_tokens: int = 32, rounds: int = 3,
                          questions: Sequence[Probe] | None = None,
                          progress: Callable[[str], None] | None = None) -> RecipeBenchmark:
    """Fast CPU recipe vs fp32 on one model, in one run: probe answers (greedy) and decode speed.

    Taught in ``07_quantization.ipynb``; ``qwenlab bench quant`` prints it.
    """
    from .bench import time_generate
    from .generation import build_inputs

    say = progress or (lambda msg: None)
    load_before = os.getloadavg()[0]
    items = probes() if questions is None else list(questions)
    fast = quantize(model, "fast")
    say("probe answers (fp32, then fast) ...")
    ref = probe_answers(model, tokenizer, items)
    got = probe_answers(fast, tokenizer, items)
    changed = [(p.question, a, b) for p, a, b in zip(items, ref, got) if not same_answer(a, b)]
    inputs = build_inputs(tokenizer, COMPARE_PROMPT, enable_thinking=False)
    for m in (model, fast):
        time_generate(m, {k: v[:, -4:] for k, v in inputs.items()}, 2)
    steps: dict[str, list[float]] = {"fp32": [], "fast": []}
    for i in range(max(1, rounds)):
        say(f"timing round {i + 1}/{rounds} ...")
        for which in (("fp32", "fast") if i % 2 == 0 else ("fast", "fp32")):
            steps[which].append(time_generate(model if which == "fp32" else fast, inputs, new_tokens).step_median)
    ratios = [a / b for a, b in zip(steps["fp32"], steps["fast"])]
    machine = _machine_info(torch.get_num_threads())
    machine["load_average"] = [load_before, os.getloadavg()[0]]
    return RecipeBenchmark(
        model=name or getattr(model, "_qwenlab_meta", {}).get("name", model.config.name_or_path),
        new_tokens=new_tokens, rounds=max(1, rounds),
        fp32_tokens_per_second=1 / statistics.median(steps["fp32"]),
        fast_tokens_per_second=1 / statistics.median(steps["fast"]),
        speedup=statistics.median(ratios), round_ratios=ratios, kept=len(items) - len(changed), total=len(items),
        changed=changed, fp32_bytes=model_footprint(model).total_bytes, fast_bytes=model_footprint(fast).total_bytes,
        machine=machine)


def full_variants(model: Any, name: str) -> dict[str, Any]:
    """fp32 + every CPU method as lazily built variants for :func:`compare` (GGUF when a file is known)."""
    variants: dict[str, Any] = {"fp32": model}
    for label, build in cpu_variants().items():
        variants[label] = (lambda b=build: b(model))
    variants["bf16"] = lambda: quantize(model, "bf16")
    try:
        gguf = _gguf_file(name)
    except FileNotFoundError:
        gguf = None
    if gguf is not None:
        variants["GGUF Q4_K_M via transformers"] = lambda: load_quantized(str(gguf), "gguf").model
    return variants


def cli(argv: list[str], prog: str = "qwenlab bench quant", command: str = "bench quant") -> int:
    """``qwenlab bench quant [MODEL] [--tokens N] [--rounds R] [--threads T] [--all] [--save FILE] [--json]``."""
    from .cli import make_parser

    parser = make_parser(prog, "Decode speed of qwenlab's fast CPU quantization recipe vs fp32, with the probe "
                               "answers checked (goal: >= 2.0x, every answer kept). --all measures every CPU "
                               "method side by side (memory, speed, perplexity, answers).")
    parser.add_argument("model", nargs="?", default="offline", help="catalog name or folder (default: offline)")
    parser.add_argument("--tokens", type=int, default=32, help="tokens decoded per timing run (default 32)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating fp32/fast timing rounds (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--all", action="store_true", help="compare every CPU method (several minutes)")
    parser.add_argument("--save", default=None, help="with --all: write the comparison as JSON to this file")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args(argv)
    if args.tokens < 2 or args.rounds < 1:
        parser.error("--tokens must be >= 2 and --rounds >= 1")
    from .models import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    say = (lambda msg: None) if args.json else (lambda msg: print(f"[{prog}] {msg}", flush=True))
    say(f"loading {args.model} (fp32) ...")
    model, tokenizer = load_model(args.model, device="cpu", dtype="float32")
    if args.all:
        cmp = compare(full_variants(model, args.model), tokenizer, decode_tokens=args.tokens, repeats=args.rounds,
                      label=f"`{prog} --all`", progress=say)
        if args.save:
            say(f"saved {cmp.save(args.save)}")
        print(cmp.to_json() if args.json else f"{cmp}\n\n{cmp.answers()}")
        return 0
    result = benchmark_fast_recipe(model, tokenizer, name=args.model, new_tokens=args.tokens, rounds=args.rounds,
                                   progress=say)
    print(json.dumps(asdict(result), ensure_ascii=False, indent=1) if args.json else result)
    return 0
