"""The two limits of this machine and what one decoded token costs: memory bandwidth, matmul FLOP/s, the
bytes (and FLOPs) read per token, and the roofline ``bandwidth / bytes per token``.

Taught in ``09_performance.ipynb`` (sections 1-3).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ..measure import dtype_name, seconds_of, tensor_bytes, torch_threads, weight_tensors

if TYPE_CHECKING:
    from ..modelfacts import CausalLM

__all__ = [
    "GB",
    "Bandwidth",
    "MatmulSpeed",
    "DecodeTraffic",
    "memory_bandwidth",
    "matmul_speed",
    "compute_dtype",
    "decode_traffic",
    "roofline_tokens_per_second",
]

GB = 1e9


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
    if size_mib < 1:
        raise ValueError(f"size_mib must be >= 1 (got {size_mib}); use 128 or more to get past the caches.")
    n = size_mib * 2**20 // 4
    with torch_threads(threads) as used:
        a = torch.ones(n, dtype=torch.float32, device=device)
        b = torch.empty_like(a)
        b.copy_(a)  # touch every page once before timing
        read = min(seconds_of(lambda: a.sum(), repeats, device))
        copy_s = min(seconds_of(lambda: b.copy_(a), repeats, device))
    nbytes = n * 4
    return Bandwidth(read_bytes_per_second=nbytes / read, copy_bytes_per_second=2 * nbytes / copy_s,
                     array_bytes=nbytes, repeats=max(1, repeats), threads=used, device=str(device))


def matmul_speed(dtype: Any = "float32", size: int = 512, repeats: int = 3, device: str = "cpu",
                 threads: int | None = None) -> MatmulSpeed:
    """FLOP/s of one ``size x size`` matrix multiply (2 x size^3 FLOPs) in ``dtype``; median of repeats.

    On a CPU without AVX512-BF16 / AMX, bfloat16 is emulated and much slower than float32.

    Taught in ``09_performance.ipynb``.
    """
    torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    with torch_threads(threads):
        x = torch.randn(size, size, device=device).to(torch_dtype)
        y = torch.randn(size, size, device=device).to(torch_dtype)
        x @ y  # warm-up (kernel selection)
        seconds = statistics.median(seconds_of(lambda: x @ y, repeats, device))
    return MatmulSpeed(dtype_name(torch_dtype), size, 2 * size**3 / seconds, seconds, max(1, repeats))


# ---------------------------------------------------------------------------------------------- model traffic


def compute_dtype(model: CausalLM) -> Any:
    """The float dtype a model computes (and keeps its KV cache) in: its embedding's, fp32 when that is int8."""
    dtype = model.get_input_embeddings().weight.dtype
    return dtype if dtype.is_floating_point else torch.float32


def decode_traffic(model: CausalLM, context: int = 0, batch: int = 1) -> DecodeTraffic:
    """Bytes (and FLOPs) one decoded token costs: weights + KV cache of ``context`` tokens.

    Example (Qwen2.5-Coder-0.5B in fp32: ~2 GB of weights and 24 KiB of KV cache per token of context)::

        >>> t = decode_traffic(model, context=1024)          # doctest: +SKIP
        >>> t.weight_bytes / 1e9, t.kv_bytes_per_token        # doctest: +SKIP

    Taught in ``09_performance.ipynb``.
    """
    weights = weight_tensors(model)
    total = sum(tensor_bytes(w) for w in weights)
    emb: torch.Tensor = model.get_input_embeddings().weight  # type: ignore[assignment]  # stubs: Tensor | Module
    out = model.get_output_embeddings()
    tied = out is not None and out.weight is emb
    emb_bytes = 0 if tied else tensor_bytes(emb)
    row = tensor_bytes(emb) // max(1, emb.shape[0])
    cfg = model.config.get_text_config()
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    itemsize = compute_dtype(model).itemsize
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

