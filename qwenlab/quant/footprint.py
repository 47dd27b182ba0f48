"""What a model's weights take in memory: the memory math (``params x bytes per weight``) and the bytes
counted tensor by tensor, quantized layers included.

Taught in ``07_quantization.ipynb`` (section 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ..display import KeyValueTable
from ..measure import packed_tensors, tensor_bytes

if TYPE_CHECKING:
    from ..modelfacts import CausalLM

__all__ = ["BYTES_PER_WEIGHT", "memory_math", "Footprint", "model_footprint"]


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
            :class:`~qwenlab.quant.Int8Linear` / torch.ao dynamic layers). A weight shared by two modules counts once.
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


def model_footprint(model: CausalLM) -> Footprint:
    """Bytes of every weight of ``model``, by dtype and by module type (see :class:`Footprint`).

    For an ordinary model ``total_bytes`` is exactly the sum of ``p.numel() * p.element_size()`` over
    ``model.parameters()`` (a tied weight once); quantized layers add the int8 weights (and their scales)
    that they keep packed for their kernels.

    Taught in ``07_quantization.ipynb``.
    """
    seen: set[int] = set()
    alive: list[Any] = []  # unpacked int8 weights are new tensors: keep them so their ids are not reused
    by_dtype: dict[str, int] = {}
    by_module: dict[str, int] = {}
    total = params = 0
    for module in model.modules():
        kind = type(module).__name__
        items = [(p, tensor_bytes(p), True) for p in module.parameters(recurse=False)]
        for t, nbytes, is_weight in items + packed_tensors(module):
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

