"""Quantization from scratch: symmetric absmax int8 / int4 with one scale per tensor, per output channel or
per group of weights; the round-trip error of each scheme; weights with an outlier channel; plots.

Taught in ``07_quantization.ipynb`` (sections 2-3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from collections.abc import Sequence

import torch

__all__ = [
    "QuantizedTensor",
    "QuantError",
    "STANDARD_SCHEMES",
    "quantize_tensor",
    "dequantize",
    "quant_error",
    "error_table",
    "with_outlier_channel",
    "outlier_channels",
    "plot_weight_error",
]


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


#: Rows quantized together: a 151,936-row embedding table is done in slices, so quantizing it needs a few
#: MiB of temporaries instead of three fp32 copies of the table (notebook 07 must fit an 8 GB laptop).
_ROWS_AT_ONCE = 4096


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
    scheme, group_size = _check_scheme(bits, scheme, group_size)
    qmax = 2 ** (bits - 1) - 1
    view = w.detach().float()
    view = _scheme_view(view, scheme, group_size)
    amax = torch.maximum(view.amax(dim=-1, keepdim=True), view.amin(dim=-1, keepdim=True).neg())  # = |w| max
    scale = (amax / qmax).clamp(min=torch.finfo(torch.float32).tiny)
    values = torch.empty(view.shape, dtype=torch.int8, device=view.device)
    for start in range(0, view.shape[0], _ROWS_AT_ONCE):  # a few MiB of float temporaries, not 3 x the tensor
        rows = slice(start, start + _ROWS_AT_ONCE)
        values[rows] = torch.round(view[rows] / scale[rows]).clamp(-qmax, qmax).to(torch.int8)
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

