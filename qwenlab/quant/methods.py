"""The quantization methods, what each does and where it runs: ``quantize`` (after loading: qwenlab's fast
recipe, torch dynamic int8, torchao, bf16) and ``load_quantized`` (at load: torchao, GGUF, and the GPU-only
bitsandbytes / GPTQ / AWQ, which explain themselves on a CPU).

Taught in ``07_quantization.ipynb`` (sections 5-7).
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from collections.abc import Sequence

import torch

from ..measure import copy_model, dtype_name
from ..modelfacts import ModelFacts, facts_of, remember
from ..catalog import OFFLINE_MODEL, find, quantized_versions
from ..models import GpuRequiredError, LoadedModel, load_model, resolve
from ..offline import assemble
from .recipe import fast_recipe, linear_selector

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from ..modelfacts import CausalLM

__all__ = [
    "Method",
    "METHODS",
    "GPU_METHODS",
    "GpuRequiredError",
    "gpu_available",
    "quantize",
    "load_quantized",
    "gguf_file",
]

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
    for info in quantized_versions(name) if find(name) else []:
        if info.quant_method and info.quant_method.startswith(method):
            return info.name
    return name


def _unknown_method(method: str) -> ValueError:
    names = list(METHODS) + list(GPU_METHODS)
    near = difflib.get_close_matches(method, names, n=2)
    return ValueError(f"Unknown quantization method {method!r}" + (f" (did you mean {' or '.join(near)}?)" if near
                      else "") + f"; choose one of: {', '.join(names)}.")


def _torch_dynamic(model: CausalLM, modules: Sequence[str] | None) -> Any:
    spec: Any = {torch.nn.Linear} if modules is None else {
        name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear) and linear_selector(modules)(name)}
    with warnings.catch_warnings():  # torch.ao.quantization is deprecated in favour of torchao (still here)
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, spec, dtype=torch.qint8, inplace=True)


def _torchao_config(method: str) -> Any:
    try:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig
    except ImportError as err:
        raise ImportError(f"Method {method!r} needs torchao: pip install 'qwenlab[quant]' (or pip install torchao).") from err
    return Int8WeightOnlyConfig() if method == "torchao-int8-weight-only" else Int8DynamicActivationInt8WeightConfig()


def _torchao(model: CausalLM, method: str, modules: Sequence[str] | None) -> Any:
    from torchao.quantization import quantize_

    config = _torchao_config(method)
    select = linear_selector(modules)
    quantize_(model, config, filter_fn=lambda m, name: isinstance(m, torch.nn.Linear) and select(name))
    return model


def quantize(model: CausalLM, method: str = "fast", *, modules: Sequence[str] | None = None,
             inplace: bool = False, tokenizer: PreTrainedTokenizerBase | None = None,
             smooth: bool = True) -> CausalLM:
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
    if method == "fp32":
        return model
    if method == "bf16":
        return model.to(torch.bfloat16) if inplace else copy_model(model, "bfloat16")  # type: ignore[arg-type]
    target = model if inplace else copy_model(model)
    target.eval()
    if method == "fast":
        result = fast_recipe(target, original=model, modules=modules, tokenizer=tokenizer, smooth=smooth)
    elif method in ("dynamic-int8", "dynamic-int8-lm-head"):
        result = _torch_dynamic(target, ["lm_head"] if method == "dynamic-int8-lm-head" else modules)
    else:
        result = _torchao(target, method, modules)
    if not inplace:
        remember(result, facts_of(model).but(dtype_reason=f"{method} quantization of a {dtype_name(model.dtype)} model",
                                             load_seconds=0.0))
    return result


def gpu_available() -> bool:
    """True when a CUDA GPU is visible (the GPU-only methods can run)."""
    return torch.cuda.is_available()


def _require_cuda(method: str) -> None:
    info = GPU_METHODS[method]
    if not gpu_available():
        raise GpuRequiredError(
            f"{method} ({info.summary}) needs a CUDA GPU and none is visible here; on a CPU use "
            "qwenlab.quantize(model, 'fast') or a GGUF file with llama.cpp / Ollama instead.")
    missing = [p for p in info.packages if importlib.util.find_spec(p) is None]
    if missing:
        raise ImportError(f"{method} needs {', '.join(missing)}: pip install {' '.join(missing)}")


def gguf_file(name_or_path: str | os.PathLike) -> Path:
    """The GGUF file ``method="gguf"`` loads: a ``.gguf`` path as given, or the offline model's file (assembled
    on first use); FileNotFoundError for anything else."""
    text = str(name_or_path)
    if text.endswith(".gguf") and Path(text).expanduser().is_file():
        return Path(text).expanduser()
    info = find(text)
    if info is not None and info.name == OFFLINE_MODEL:
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
    if method in GPU_METHODS:
        return _load_on_gpu(name_or_path, method)
    if method not in METHODS:
        raise _unknown_method(method)
    if method == "gguf":
        return load_model(gguf_file(name_or_path), device="cpu", dtype="float32")
    if method.startswith("torchao"):
        from transformers import AutoModelForCausalLM, AutoTokenizer, TorchAoConfig

        start = time.perf_counter()
        where = resolve(name_or_path)
        config = TorchAoConfig(_torchao_config(method))
        ao_model = AutoModelForCausalLM.from_pretrained(where.folder, dtype=torch.float32,
                                                        quantization_config=config, use_safetensors=True)
        ao_tokenizer = AutoTokenizer.from_pretrained(where.folder)
        remember(ao_model, ModelFacts(name=where.name, folder=str(where.folder), found_in=where.found_in,
                                      dtype_reason=f"fp32 + {method}", load_seconds=time.perf_counter() - start))
        return LoadedModel(ao_model.eval(), ao_tokenizer)
    dtype = "bfloat16" if method == "bf16" else "float32"
    model, tokenizer = load_model(name_or_path, device="cpu" if device == "auto" else device, dtype=dtype)
    return LoadedModel(quantize(model, method, inplace=True), tokenizer)


def _load_on_gpu(name_or_path: str | os.PathLike, method: str) -> Any:
    """bitsandbytes / GPTQ / AWQ on CUDA (never reached on a CPU-only machine: GpuRequiredError first)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig


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
