"""Weight-only int8 and int4 Linear layers on torch's own CPU kernels: the weights are stored small, the
activations stay floating point, and a fused kernel de-quantizes each weight block as it multiplies.

- :class:`Int8WeightOnlyLinear`: int8 codes, one scale per output channel, ``torch.ops.aten._weight_int8pack_mm``
  (a quarter of fp32's bytes per token, no activation quantization at all);
- :class:`Int4Linear`: 4-bit codes in groups of ``group_size`` input channels, each group with its own scale
  and zero (asymmetric), packed by ``_convert_weight_to_int4pack_for_cpu`` and multiplied by
  ``_weight_int4pack_mm_for_cpu`` (an eighth of fp32's bytes, plus the group scales).

Both keep their tensors as buffers, so ``torch.compile`` sees them as the module's state, and expose
``quantized_tensors()`` so :func:`qwenlab.measure.weight_tensors` (and the roofline) count their bytes.
:func:`weight_only` swaps them into a copy of a model. Measured in ``qwenlab bench fastpath``
(:func:`qwenlab.bench.fastpath.fastpath`, notebook ``09_performance.ipynb``); the hand-made int4 of
``07_quantization.ipynb`` is the same arithmetic without the packed kernel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from collections.abc import Sequence

import torch

from ..measure import copy_model
from .recipe import linear_selector, replace_linears

if TYPE_CHECKING:
    from ..modelfacts import CausalLM

__all__ = ["INT4_GROUP_SIZE", "Int8WeightOnlyLinear", "Int4Linear", "int4_kernel_error", "weight_only"]

#: Input channels that share one int4 scale and zero (llama.cpp's Q4_K uses blocks of 32 inside 256).
INT4_GROUP_SIZE = 128


class Int8WeightOnlyLinear(torch.nn.Module):
    """A Linear layer with int8 weights (one scale per output channel, codes in ``[-127, 127]``) and
    floating-point activations: ``y = (x @ codes.T) * scale + bias`` in one kernel,
    ``torch.ops.aten._weight_int8pack_mm``.

    ``dtype`` is the activation dtype the kernel computes in (fp32 or bf16); the scales are kept in it.
    """

    codes: torch.Tensor
    scales: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, linear: Any, dtype: Any = torch.float32):
        super().__init__()
        w = linear.weight.detach().float()
        scale = (w.abs().amax(dim=1) / 127).clamp(min=1e-12)
        self.register_buffer("codes", torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8).contiguous())
        self.register_buffer("scales", scale.to(dtype))
        bias = None if linear.bias is None else linear.bias.detach().to(dtype).clone()
        self.register_buffer("bias", bias)
        self.in_features, self.out_features, self.dtype = linear.in_features, linear.out_features, dtype

    def forward(self, x: Any) -> Any:
        rows = x.reshape(-1, self.in_features).to(self.dtype)
        y = torch.ops.aten._weight_int8pack_mm(rows, self.codes, self.scales)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def weight(self) -> Any:
        """The de-quantized fp32 weight (``out_features x in_features``)."""
        return self.codes.float() * self.scales.float()[:, None]

    def quantized_tensors(self) -> list[tuple[Any, int, bool]]:
        return [(t, t.numel() * t.element_size(), True) for t in (self.codes, self.scales, self.bias) if t is not None]

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weight-only, {self.dtype}"


def _int4_codes(w: Any, group_size: int) -> tuple[Any, Any]:
    """Asymmetric 4-bit codes of ``w`` (``N x K``) per group of ``group_size`` input channels, in the layout of
    torch's int4 CPU kernel: codes ``N x K`` int32 in ``[0, 15]``; scales and zeros ``K/group x N x 2`` with
    ``w ~= (code - 8) * scale + zero``."""
    n, k = w.shape
    groups = w.reshape(n, k // group_size, group_size)
    lo, hi = groups.amin(dim=2, keepdim=True), groups.amax(dim=2, keepdim=True)
    scale = (hi - lo).clamp(min=1e-6) / 15
    codes = ((groups - lo) / scale).round().clamp(0, 15).to(torch.int32).reshape(n, k)
    zero = lo + 8 * scale
    scales_and_zeros = torch.cat([scale, zero], dim=2).transpose(0, 1).contiguous()  # K/group x N x 2
    return codes, scales_and_zeros


class Int4Linear(torch.nn.Module):
    """A Linear layer with 4-bit weights in groups of ``group_size`` input channels (a scale and a zero per
    group, as llama.cpp's Q4 formats do) on torch's packed CPU kernel ``_weight_int4pack_mm_for_cpu``.

    ``dtype`` is the activation dtype of the kernel (fp32 or bf16). ``in_features`` must be a multiple of
    ``group_size``: :func:`weight_only` leaves other layers in fp32.
    """

    packed: torch.Tensor
    scales_and_zeros: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, linear: Any, group_size: int = INT4_GROUP_SIZE, dtype: Any = torch.float32):
        super().__init__()
        if linear.in_features % group_size:
            raise ValueError(f"in_features={linear.in_features} is not a multiple of group_size={group_size}")
        codes, scales_and_zeros = _int4_codes(linear.weight.detach().float(), group_size)
        self.register_buffer("packed", torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes, 1))
        self.register_buffer("scales_and_zeros", scales_and_zeros.to(dtype))
        bias = None if linear.bias is None else linear.bias.detach().to(dtype).clone()
        self.register_buffer("bias", bias)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.group_size, self.dtype = group_size, dtype

    def forward(self, x: Any) -> Any:
        rows = x.reshape(-1, self.in_features).to(self.dtype).contiguous()  # the kernel refuses strided input
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(rows, self.packed, self.group_size, self.scales_and_zeros)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def weight(self) -> Any:
        """The de-quantized fp32 weight (``out_features x in_features``), computed by the kernel itself."""
        eye = torch.eye(self.in_features, dtype=self.dtype)
        out = torch.ops.aten._weight_int4pack_mm_for_cpu(eye, self.packed, self.group_size, self.scales_and_zeros)
        return out.t().float()

    def quantized_tensors(self) -> list[tuple[Any, int, bool]]:
        return [(t, t.numel() * t.element_size(), True) for t in (self.packed, self.scales_and_zeros, self.bias)
                if t is not None]

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, int4 groups of "
                f"{self.group_size}, {self.dtype}")


def int4_kernel_error() -> str | None:
    """None when this torch build runs the int4 CPU kernel; else why not (``"RuntimeError: ..."``)."""
    try:
        Int4Linear(torch.nn.Linear(128, 16), group_size=128)(torch.ones(1, 128))
    except Exception as err:  # a build without the kernel raises NotImplementedError or RuntimeError
        return f"{type(err).__name__}: {err}"
    return None


def weight_only(model: CausalLM, bits: int, *, group_size: int = INT4_GROUP_SIZE, dtype: Any = torch.float32,
                modules: Sequence[str] | None = None, head_bits: int | None = None) -> Any:
    """A copy of ``model`` whose Linear layers (``lm_head`` included) are weight-only ``bits``-bit (8 or 4);
    the input embedding stays as it is (one row of it is read per token). The original is untouched.

    ``head_bits=8`` keeps the output layer (``lm_head``) at int8 while the rest is int4 — as llama.cpp's
    Q4_K_M keeps its output layer at 6 bits: it is the layer whose rounding moves the logits most.
    With ``bits=4`` a layer whose ``in_features`` is not a multiple of ``group_size`` stays fp32.
    """
    if bits not in (4, 8) or head_bits not in (None, 4, 8):
        raise ValueError(f"bits={bits}, head_bits={head_bits}: use 8 or 4")
    copy = copy_model(model)
    select = linear_selector(modules)

    def make(linear: Any, name: str) -> Any:
        if bits == 8 or (head_bits == 8 and name.endswith("lm_head")):
            return Int8WeightOnlyLinear(linear, dtype)
        if linear.in_features % group_size:
            return linear
        return Int4Linear(linear, group_size, dtype)

    replace_linears(copy, select, make)
    if dtype != torch.float32:  # norms, embedding and KV cache in the activation dtype too
        for m in copy.modules():
            if not isinstance(m, (Int8WeightOnlyLinear, Int4Linear)):
                for name, p in list(m.named_parameters(recurse=False)):
                    setattr(m, name, torch.nn.Parameter(p.detach().to(dtype), requires_grad=False))
        copy.config.dtype = dtype
    return copy
