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

The subpackage by job: ``scratch`` (int8/int4 by hand), ``footprint`` (bytes), ``recipe`` (the int8 layers
and SmoothQuant), ``methods`` (``quantize``, ``load_quantized``, the method registry), ``compare`` (variants side
by side, the recipe benchmark, plots). The probes and perplexity live in :mod:`qwenlab.evaluation` and are
re-exported here; every name below is importable as ``qwenlab.quant.<name>``.

Taught in ``07_quantization.ipynb``; ``qwenlab bench quant`` measures the recipe against fp32.
"""

from __future__ import annotations

from ..evaluation import (
    Probe,
    calibration_text,
    is_correct,
    perplexity,
    perplexity_text,
    probe_answers,
    probes,
    same_answer,
)
from .compare import (
    COMPARE_PROMPT,
    AnswerTable,
    Comparison,
    RecipeBenchmark,
    VariantResult,
    benchmark_fast_recipe,
    compare,
    cpu_variants,
    full_variants,
    plot_comparison,
    plot_speed_quality,
)
from .footprint import BYTES_PER_WEIGHT, Footprint, memory_math, model_footprint
from .methods import (
    GPU_METHODS,
    METHODS,
    GpuRequiredError,
    Method,
    gguf_file,
    gpu_available,
    load_quantized,
    quantize,
)
from .recipe import (
    SMOOTH_ALPHA,
    WEIGHT_QMAX,
    Int8Embedding,
    Int8Linear,
    activation_ranges,
    apply_smoothing,
    fast_recipe,
    linear_selector,
    replace_linears,
    smoothing_scales,
)
from .scratch import (
    STANDARD_SCHEMES,
    QuantError,
    QuantizedTensor,
    dequantize,
    error_table,
    outlier_channels,
    plot_weight_error,
    quant_error,
    quantize_tensor,
    with_outlier_channel,
)

__all__ = [
    # from scratch
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
    # footprint
    "BYTES_PER_WEIGHT",
    "Footprint",
    "model_footprint",
    "memory_math",
    # probes and perplexity (qwenlab.evaluation)
    "Probe",
    "probes",
    "perplexity_text",
    "calibration_text",
    "probe_answers",
    "is_correct",
    "same_answer",
    "perplexity",
    # the fast CPU recipe
    "Int8Linear",
    "WEIGHT_QMAX",
    "Int8Embedding",
    "SMOOTH_ALPHA",
    "activation_ranges",
    "smoothing_scales",
    "apply_smoothing",
    "fast_recipe",
    "linear_selector",
    "replace_linears",
    # methods
    "METHODS",
    "GPU_METHODS",
    "GpuRequiredError",
    "gpu_available",
    "Method",
    "quantize",
    "load_quantized",
    "gguf_file",
    # comparison and benchmark
    "COMPARE_PROMPT",
    "cpu_variants",
    "full_variants",
    "VariantResult",
    "Comparison",
    "AnswerTable",
    "compare",
    "plot_comparison",
    "plot_speed_quality",
    "RecipeBenchmark",
    "benchmark_fast_recipe",
]
