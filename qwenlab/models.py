"""load_model: a name or path -> a local folder -> (model, tokenizer), with safe defaults.

Taught in ``00_quickstart.ipynb``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, NamedTuple

from ._display import KeyValueTable
from . import catalog
from .env import bf16_native
from .hub import find_local, folder_weights

__all__ = [
    "ModelNotAvailableError",
    "UnsafeWeightsError",
    "Resolved",
    "ModelSummary",
    "LoadedModel",
    "resolve",
    "choose_device",
    "choose_dtype",
    "summarize",
    "load_model",
]


_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?")


class ModelNotAvailableError(FileNotFoundError):
    """A known model is not on this machine (and was not downloaded); the message says how to get it."""


class UnsafeWeightsError(ValueError):
    """The folder only has pickle weights (``.bin``), which can run arbitrary code when loaded."""


@dataclass
class Resolved:
    """Where a name or path points to on disk."""

    name: str
    folder: Path
    gguf_file: str | None
    found_in: str
    info: catalog.ModelInfo | None = None


def _download_hint(name: str) -> str:
    return (
        f"Get it with `qwenlab download {name}` (tries Hugging Face, hf-mirror.com and ModelScope), "
        "or use the offline model: load_model('offline') / `qwenlab offline-model`."
    )


def resolve(name_or_path: str | os.PathLike, download: bool = True) -> Resolved:
    """Find the local folder (or GGUF file) for a catalog name, a folder path or a ``.gguf`` path.

    Looks in this order: an existing path; the offline model; qwenlab's folders, the Hugging Face
    cache and the ModelScope cache; and only then downloads (when ``download`` is True).
    """
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.exists():
        if path.is_file() and path.suffix == ".gguf":
            return Resolved(path.name, path.parent, path.name, "local GGUF file")
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise FileNotFoundError(
                    f"{path} is a folder but has no config.json, so it is not a transformers model folder. "
                    "Point to the folder that holds config.json and the *.safetensors files."
                )
            return Resolved(path.name, path, None, "local folder")
        raise FileNotFoundError(f"{path} is neither a model folder nor a .gguf file.")
    if not _HUB_ID.fullmatch(text):  # looks like a path, not a name such as "Qwen/Qwen3-0.6B"
        raise FileNotFoundError(
            f"{text} does not exist. Check the path (absolute paths are safest), or give a catalog name "
            f"such as {catalog.DEFAULT_MODEL!r}."
        )

    info = catalog.get(text)  # raises UnknownModelError with the closest ids
    if info.name == catalog.OFFLINE_MODEL:
        from .offline import ensure_offline_model

        return Resolved(info.name, ensure_offline_model(), None, "offline model (PyPI)", info)
    if info.requires_cuda:
        _require_cuda_for(info)
    hit = find_local([info.hf_id], [info.modelscope_id], info.gguf_file)
    if hit:
        return Resolved(info.name, hit[0], info.gguf_file, hit[1], info)
    if download:
        try:
            from .hub import download as hub_download  # provided by the download issue
        except ImportError:
            hub_download = None
        if hub_download is not None:
            folder = hub_download(info.name)
            return Resolved(info.name, Path(folder), info.gguf_file, "downloaded", info)
    raise ModelNotAvailableError(f"{info.name} is not on this machine. " + _download_hint(info.name))


class GpuRequiredError(RuntimeError):
    """A model (GPTQ / AWQ) or method (bitsandbytes) that needs a CUDA GPU, asked for on a machine without one."""


def _require_cuda_for(info: catalog.ModelInfo) -> None:
    """Fail before any download when a pre-quantized repo needs CUDA kernels and no GPU is visible."""
    import torch

    if torch.cuda.is_available():
        return
    gguf = [m.name for m in catalog.quantized_versions(info.quantized_of or info.name) if m.gguf_file]
    raise GpuRequiredError(
        f"{info.name} ({info.quant_method}) needs a CUDA GPU: its kernels do not run on a CPU, and none is visible "
        f"here. On this machine load {info.quantized_of!r} and quantize it with qwenlab.quantize(model, 'fast') "
        + (f"or load the GGUF repo {gguf[0]!r} " if gguf else "")
        + "(notebook 07_quantization)."
    )


def choose_device(device: str = "auto") -> str:
    """``"auto"`` -> ``"cuda"`` when a CUDA GPU is present, else ``"cpu"`` (MPS only when asked)."""
    import torch

    if device != "auto":
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError("device='cuda' was asked for but no CUDA GPU is visible; use device='cpu'.")
        if device == "mps" and not torch.backends.mps.is_available():
            raise ValueError("device='mps' was asked for but MPS is not available; use device='cpu'.")
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def choose_dtype(device: str, dtype: Any = "auto") -> tuple[Any, str]:
    """Pick the dtype: bf16 only where the device computes it natively, else fp32, and say why."""
    import torch

    if dtype != "auto":
        if isinstance(dtype, str):
            try:
                dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}.get(
                    dtype, getattr(torch, dtype)
                )
            except AttributeError:
                raise ValueError(
                    f"Unknown dtype {dtype!r}: use 'auto', 'float32', 'bfloat16' or 'float16'."
                ) from None
        return dtype, "asked for explicitly"
    native, why = bf16_native(device)
    return (torch.bfloat16 if native else torch.float32), why


@dataclass
class ModelSummary(KeyValueTable):
    """What a notebook shows after loading: size, dtype, device, memory, where it came from."""

    name: str
    folder: str
    found_in: str
    architecture: str
    params: int
    dtype: str
    dtype_reason: str
    device: str
    memory_bytes: int
    load_seconds: float

    key_width = 24

    def rows(self) -> list[tuple[str, str]]:
        return [
            ("模型 (model)", self.name),
            ("来源 (found in)", f"{self.found_in}: {self.folder}"),
            ("结构 (architecture)", self.architecture),
            ("参数量 (parameters)", f"{self.params / 1e6:,.0f} M"),
            ("精度 (dtype)", f"{self.dtype} — {self.dtype_reason}"),
            ("设备 (device)", self.device),
            ("权重内存 (weights memory)", f"{self.memory_bytes / 2**20:,.0f} MiB"),
            ("加载耗时 (load time)", f"{self.load_seconds:.1f} s"),
        ]



def summarize(model: Any) -> ModelSummary:
    """Summary of a loaded model (parameters and memory computed now; origin from ``load_model``)."""
    meta = getattr(model, "_qwenlab_meta", {})
    params = sum(p.numel() for p in model.parameters())
    memory = sum(p.numel() * p.element_size() for p in model.parameters())
    memory += sum(b.numel() * b.element_size() for b in model.buffers())
    return ModelSummary(
        name=meta.get("name", model.config.name_or_path),
        folder=meta.get("folder", model.config.name_or_path),
        found_in=meta.get("found_in", "?"),
        architecture=(model.config.architectures or [type(model).__name__])[0],
        params=params,
        dtype=str(model.dtype).replace("torch.", ""),
        dtype_reason=meta.get("dtype_reason", ""),
        device=str(model.device),
        memory_bytes=memory,
        load_seconds=meta.get("load_seconds", 0.0),
    )


@contextlib.contextmanager
def _quiet_optional_import_logs() -> Iterator[None]:
    """transformers imports torchao (when installed) while loading; on a CPU that import logs warnings
    about CUDA-only kernels and torch.compile internals that mean nothing to a student. Mute them
    (and only them) while loading; errors still show."""
    loggers = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


class LoadedModel(NamedTuple):
    """``(model, tokenizer)``; unpack it, or use ``.summary`` for a table of what was loaded."""

    model: Any
    tokenizer: Any

    @property
    def summary(self) -> ModelSummary:
        return summarize(self.model)


def load_model(
    name_or_path: str | os.PathLike,
    device: str = "auto",
    dtype: Any = "auto",
    *,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    download: bool = True,
) -> LoadedModel:
    """Load a Qwen chat model and its tokenizer, ready for ``generate``.

    Args:
        name_or_path: a catalog name (``"Qwen/Qwen3-0.6B"``, ``"offline"``), a local transformers
            folder, or a ``.gguf`` file.
        device: ``"auto"`` (CUDA if present, else CPU), ``"cpu"``, ``"cuda"``, ``"mps"``.
        dtype: ``"auto"`` (bf16 only where computed natively, else fp32), or a torch dtype / name.
        trust_remote_code: run Python code shipped with the model. Off by default: Qwen models are
            built into transformers and never need it.
        allow_pickle: allow ``.bin`` pickle weights (they can execute code on load). Off by default.
        download: download a catalog model that is not on disk (when a source is reachable).

    Returns:
        ``LoadedModel(model, tokenizer)``: unpacks into two; ``.summary`` describes what was loaded.

    Example:
        >>> model, tokenizer = qwenlab.load_model(qwenlab.course_model())   # doctest: +SKIP

    Taught in ``00_quickstart.ipynb``.
    """
    start = time.perf_counter()
    where = resolve(name_or_path, download=download)  # fails fast, before importing transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = choose_device(device)
    torch_dtype, reason = choose_dtype(device, dtype)
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if where.gguf_file:
        kwargs["gguf_file"] = where.gguf_file
        reason += " (GGUF weights are de-quantized on load)"
    else:
        weights = folder_weights(where.folder)
        if weights is None:
            raise FileNotFoundError(
                f"{where.folder} has a config.json but no complete weights (*.safetensors). "
                "The download may have been interrupted: run the download again (it resumes)."
            )
        if weights == "pickle" and not allow_pickle:
            raise UnsafeWeightsError(
                f"{where.folder} only has pickle weights (.bin), which can run arbitrary code when loaded. "
                "Prefer a safetensors copy of the model; if you trust the source, pass allow_pickle=True."
            )
        kwargs["use_safetensors"] = weights == "safetensors"
    try:
        with _quiet_optional_import_logs():
            tokenizer = AutoTokenizer.from_pretrained(where.folder, **{k: v for k, v in kwargs.items()
                                                                        if k != "use_safetensors"})
            model = AutoModelForCausalLM.from_pretrained(where.folder, dtype=torch_dtype, **kwargs)
    except (KeyError, ValueError) as err:
        if "model type" in str(err) or "qwen" in str(err).lower() and "recognize" in str(err):
            import transformers

            raise RuntimeError(
                f"transformers {transformers.__version__} does not know this model's architecture "
                f"({err}). Upgrade it: pip install -U 'transformers>=5'."
            ) from err
        raise
    model = model.to(device).eval()
    model._qwenlab_meta = {
        "name": where.name,
        "folder": str(where.folder / where.gguf_file if where.gguf_file else where.folder),
        "found_in": where.found_in,
        "dtype_reason": reason,
        "load_seconds": time.perf_counter() - start,
    }
    return LoadedModel(model, tokenizer)
