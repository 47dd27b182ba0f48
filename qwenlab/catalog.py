"""Known small Qwen chat models: ids on each source, size, thinking support, recommended sampling.

Taught in ``notebooks/00_quickstart.ipynb`` (which model to pick) and ``02_download.ipynb`` (ids on
Hugging Face vs ModelScope).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "ModelInfo",
    "CATALOG",
    "PREQUANTIZED",
    "DEFAULT_MODEL",
    "OFFLINE_MODEL",
    "THINKER_MODEL",
    "UnknownModelError",
    "NotInCatalogWarning",
    "ModelNotAvailableError",
    "REPO_ID",
    "is_repo_id",
    "get",
    "find",
    "exact",
    "lookup",
    "closest",
    "recommended_sampling",
    "quantized_versions",
]

DEFAULT_MODEL = "Qwen/Qwen3-0.6B"
OFFLINE_MODEL = "offline"
THINKER_MODEL = "offline-thinker"  # the offline model + the shipped LoRA adapter (qwenlab/data/thinker)


@dataclass(frozen=True)
class ModelInfo:
    """One catalog entry.

    Args:
        name: canonical id (the Hugging Face repo id).
        hf_id: repo id on huggingface.co (and hf-mirror.com).
        modelscope_id: repo id on modelscope.cn.
        params: parameter count (embeddings included).
        disk_bytes: approximate size of the weights as downloaded.
        thinking: True when the chat template knows ``enable_thinking`` (Qwen3).
        sampling: recommended sampling per mode: ``{"thinking": {...}, "non_thinking": {...}}`` or
            ``{"default": {...}}`` for models without thinking mode.
        notes: one line for the student.
        quantized_of: for pre-quantized repos, the name of the full-precision model.
        quant_method: "gptq-int4", "awq", "gguf", ... (pre-quantized repos only).
        requires_cuda: True when the weights need a CUDA GPU to load (GPTQ / AWQ kernels).
        gguf_file: for GGUF repos, the one file qwenlab downloads and loads (a GGUF repo holds one
            file per quantization level; the others are not needed).
        thinking_default: whether the template thinks when ``enable_thinking`` is not given (None: same
            as ``thinking`` — Qwen3 thinks by default; Qwen3.5 small does not).
        soft_switch: whether ``/think`` / ``/no_think`` in a message work (None: same as ``thinking``;
            Qwen3.5 has none).
        opens_thinking_in_prompt: the chat template writes ``<think>`` into the generation prompt when
            thinking is on, so the reply starts inside the thought (see ``qwenlab.prompt_opens_thinking``).
        transformers_needed: which transformers release loads it ("" for the course's pinned version).
        tested_here: False for entries whose facts were written from the model card and never run on
            this course's machines (shown in ``notes``).
        built_locally: built on this machine from the offline model's PyPI packages (the offline model, and
            the mini thinker on top of it), never downloaded from a hub.
    """

    name: str
    hf_id: str
    modelscope_id: str
    params: int
    disk_bytes: int
    thinking: bool
    sampling: Mapping[str, Mapping[str, float | int | bool]]
    notes: str = ""
    aliases: tuple[str, ...] = field(default=())
    quantized_of: str | None = None
    quant_method: str | None = None
    requires_cuda: bool = False
    gguf_file: str | None = None
    thinking_default: bool | None = None
    soft_switch: bool | None = None
    opens_thinking_in_prompt: bool = False
    transformers_needed: str = ""
    tested_here: bool = True
    built_locally: bool = False

    @property
    def size_gb(self) -> float:
        return self.disk_bytes / 1e9

    @property
    def thinks_by_default(self) -> bool:
        """Thinks when ``enable_thinking`` is not given."""
        return self.thinking if self.thinking_default is None else self.thinking_default

    @property
    def has_soft_switch(self) -> bool:
        """``/think`` and ``/no_think`` in a message switch thinking."""
        return self.thinking if self.soft_switch is None else self.soft_switch


_QWEN3_SAMPLING = {
    # Qwen3 model card, "Best Practices": no greedy decoding in thinking mode.
    "thinking": {"do_sample": True, "temperature": 0.6, "top_p": 0.95, "top_k": 20, "min_p": 0.0},
    "non_thinking": {"do_sample": True, "temperature": 0.7, "top_p": 0.8, "top_k": 20, "min_p": 0.0},
}
_QWEN25_SAMPLING = {
    # What Qwen2.5-0.5B-Instruct's generation_config.json sets (silently, if you pass nothing).
    "default": {"do_sample": True, "temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.05},
}
_QWEN35_SAMPLING = _QWEN3_SAMPLING  # Qwen3's per-mode values, not re-checked here against the Qwen3.5 model card
_QWEN15_SAMPLING = {
    "default": {"do_sample": True, "temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.1},
}

CATALOG: dict[str, ModelInfo] = {
    m.name: m
    for m in [
        ModelInfo(
            name="Qwen/Qwen3-0.6B",
            hf_id="Qwen/Qwen3-0.6B",
            modelscope_id="Qwen/Qwen3-0.6B",
            params=751_632_384,
            disk_bytes=1_503_300_328,
            thinking=True,
            sampling=_QWEN3_SAMPLING,
            notes="课程默认模型 (default): 支持思考模式 (thinking mode), bf16 权重约 1.5 GB",
        ),
        ModelInfo(
            name="Qwen/Qwen2.5-0.5B-Instruct",
            hf_id="Qwen/Qwen2.5-0.5B-Instruct",
            modelscope_id="Qwen/Qwen2.5-0.5B-Instruct",
            params=494_032_768,
            disk_bytes=988_097_824,
            thinking=False,
            sampling=_QWEN25_SAMPLING,
            notes="最小最快 (smallest): 无思考模式, bf16 权重约 1.0 GB",
        ),
        ModelInfo(
            name="Qwen/Qwen1.5-0.5B-Chat",
            hf_id="Qwen/Qwen1.5-0.5B-Chat",
            modelscope_id="qwen/Qwen1.5-0.5B-Chat",
            params=619_570_176,
            disk_bytes=1_239_173_352,
            thinking=False,
            sampling=_QWEN15_SAMPLING,
            notes="老一代 (older generation), 出现在很多旧教程里; bf16 权重约 1.2 GB",
        ),
        ModelInfo(
            name=OFFLINE_MODEL,
            hf_id="Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
            modelscope_id="Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
            # 494,032,768 with the embedding shared by the output layer (Qwen's count); the GGUF stores the
            # output layer separately, so the converted folder holds 136,134,656 more (its memory is what counts)
            params=630_167_424,
            disk_bytes=491_400_064,
            thinking=False,
            sampling=_QWEN25_SAMPLING,
            notes=(
                "离线模型 (offline model): Qwen2.5-Coder-0.5B-Instruct Q4_K_M, 由 PyPI 包分发, "
                "SHA-256 校验后转换为 transformers 文件夹"
            ),
            aliases=("qwenlab/offline", "Qwen2.5-Coder-0.5B-Instruct-Q4_K_M"),
            built_locally=True,
        ),
        ModelInfo(
            name=THINKER_MODEL,
            hf_id="Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
            modelscope_id="Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
            # 494,032,768 with the embedding shared by the output layer (Qwen's count); the GGUF stores the
            # output layer separately, so the converted folder holds 136,134,656 more (its memory is what counts)
            params=630_167_424,
            disk_bytes=491_400_064,
            thinking=True,
            sampling=_QWEN3_SAMPLING,
            notes=(
                "迷你思考模型 (mini thinker): 离线模型 + 在 CPU 上用 LoRA 训练的演示适配器 (随 qwenlab 分发), "
                "用 Qwen3 分词器与模板; 只会简单算术/单位换算的思考, 不是真正的 Qwen3 — a LoRA-trained demo"
            ),
            aliases=("qwenlab/offline-thinker", "thinker"),
            built_locally=True,
        ),
        ModelInfo(
            name="Qwen/Qwen3.5-0.8B",
            hf_id="Qwen/Qwen3.5-0.8B",
            modelscope_id="Qwen/Qwen3.5-0.8B",
            params=800_000_000,  # approximate (the name's 0.8B); not checked here
            disk_bytes=1_800_000_000,  # approximate bf16 size incl. the vision part; not checked here
            thinking=True,
            sampling=_QWEN35_SAMPLING,
            notes=(
                "最新小模型 (newest small line), 未在本机运行 (not run on this machine): 多模态 (multimodal), "
                "思考默认关闭 (thinking off by default; enable_thinking=True 打开, 模板在提示里写 <think>), "
                "无 /think 软开关 (no soft switch), 新词表约 248K (new ~248K vocabulary), "
                "CPU 上走较慢的纯 PyTorch 路径 (slow pure-PyTorch path on CPU)"
            ),
            thinking_default=False,
            soft_switch=False,
            opens_thinking_in_prompt=True,
            transformers_needed="a transformers release that knows the qwen3_5 architecture — not checked on "
                                "this machine",
            tested_here=False,
        ),
    ]
}


def _quantized(base: ModelInfo, suffix: str, method: str, disk_bytes: int, notes: str, *,
               requires_cuda: bool = False, gguf_file: str | None = None) -> ModelInfo:
    """A pre-quantized repo published by Qwen next to ``base`` (same architecture and chat template)."""
    return ModelInfo(
        name=f"{base.name}-{suffix}", hf_id=f"{base.hf_id}-{suffix}", modelscope_id=f"{base.modelscope_id}-{suffix}",
        params=base.params, disk_bytes=disk_bytes, thinking=base.thinking, sampling=base.sampling, notes=notes,
        quantized_of=base.name, quant_method=method, requires_cuda=requires_cuda, gguf_file=gguf_file)


_Q25 = CATALOG["Qwen/Qwen2.5-0.5B-Instruct"]
_Q3 = CATALOG["Qwen/Qwen3-0.6B"]

#: The official pre-quantized repos of the course models (sizes approximate). GPTQ / AWQ need a CUDA GPU
#: (their kernels come from gptqmodel); the GGUF files run on any CPU in llama.cpp / Ollama / LM Studio, and
#: transformers can load one by de-quantizing it to float. Taught in ``07_quantization.ipynb``.
PREQUANTIZED: dict[str, ModelInfo] = {
    m.name: m
    for m in [
        _quantized(_Q25, "GPTQ-Int4", "gptq-int4", 460_000_000, "GPTQ 4-bit, 仅限 CUDA GPU (needs CUDA)",
                   requires_cuda=True),
        _quantized(_Q25, "GPTQ-Int8", "gptq-int8", 650_000_000, "GPTQ 8-bit, 仅限 CUDA GPU (needs CUDA)",
                   requires_cuda=True),
        _quantized(_Q25, "AWQ", "awq-int4", 460_000_000, "AWQ 4-bit, 仅限 CUDA GPU (needs CUDA)", requires_cuda=True),
        _quantized(_Q25, "GGUF", "gguf-q4_k_m", 491_000_000, "GGUF Q4_K_M: llama.cpp / Ollama / LM Studio 的格式",
                   gguf_file="qwen2.5-0.5b-instruct-q4_k_m.gguf"),
        _quantized(_Q3, "GPTQ-Int8", "gptq-int8", 760_000_000, "GPTQ 8-bit, 仅限 CUDA GPU (needs CUDA)",
                   requires_cuda=True),
        _quantized(_Q3, "GGUF", "gguf-q8_0", 640_000_000, "GGUF Q8_0: llama.cpp / Ollama / LM Studio 的格式",
                   gguf_file="Qwen3-0.6B-Q8_0.gguf"),
    ]
}


def quantized_versions(name: str) -> list[ModelInfo]:
    """The official pre-quantized repos of a catalog model (``[]`` when Qwen published none here).

    Example:
        >>> [m.quant_method for m in quantized_versions("Qwen/Qwen3-0.6B")]
        ['gptq-int8', 'gguf-q8_0']
    """
    base = get(name).name
    return [m for m in PREQUANTIZED.values() if m.quantized_of == base]


class UnknownModelError(ValueError):
    """A model name that is neither in the catalog nor a local path, or a mistyped catalog id.

    ``suggestions`` holds the closest valid ids, best first; ``reason`` (when given) says what looks
    mistyped.
    """

    def __init__(self, name: str, suggestions: list[str], reason: str = ""):
        self.name = name
        self.suggestions = suggestions
        hint = ", ".join(suggestions) if suggestions else ", ".join(CATALOG)
        why = reason or "it is not in the qwenlab catalog and not a local folder or .gguf file"
        super().__init__(
            f"Unknown model {name!r}: {why}. "
            f"Did you mean: {hint}? (see qwenlab.catalog.CATALOG, or pass a local folder path)"
        )


class NotInCatalogWarning(UserWarning):
    """A repo id outside the catalog: it is found or downloaded like a catalog model, but no catalog facts
    (recommended sampling, thinking support, sizes) apply. Taught in ``00_quickstart.ipynb``."""


class ModelNotAvailableError(FileNotFoundError):
    """A known model is not on this machine (and was not downloaded); the message says how to get it.

    Raised by ``qwenlab.load_model`` and ``qwenlab.download`` (``HF_HUB_OFFLINE=1``, no source reachable).
    Taught in ``02_download.ipynb``.
    """


#: A model name as the hubs write it: ``org/name`` (or a bare ``name``), letters, digits, ``_ . -``.
REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?")


def is_repo_id(text: str, org_required: bool = True) -> bool:
    """Whether ``text`` is written like a repo id (``"Qwen/Qwen3-0.6B"``), not like a path or a sentence.

    With ``org_required=False`` a bare name (``"offline"``, ``"Qwen3-0.6B"``) counts too.

    >>> is_repo_id("Qwen/Qwen3-0.6B"), is_repo_id("qwen3-tiny"), is_repo_id("./models/qwen")
    (True, False, False)
    >>> is_repo_id("qwen3-tiny", org_required=False)
    True
    """
    return REPO_ID.fullmatch(text) is not None and ("/" in text or not org_required)


def _norm(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def _size_tag(name: str) -> str | None:
    m = re.search(r"(\d+(?:\.\d+)?)\s*b\b", _norm(name))
    return m.group(1) if m else None


def find(name: str) -> ModelInfo | None:
    """Return the catalog entry for ``name`` (case-insensitive; HF id, ModelScope id, bare name or alias)."""
    key = _norm(name)
    for info in (*CATALOG.values(), *PREQUANTIZED.values()):
        candidates = {info.name, info.hf_id, info.modelscope_id, *info.aliases}
        candidates |= {c.split("/", 1)[-1] for c in candidates}
        if key in {_norm(c) for c in candidates}:
            return info
    return None


def closest(name: str, n: int = 3) -> list[str]:
    """The catalog ids closest to a mistyped ``name``, best first.

    Scores string similarity and gives a bonus to entries of the same size (``0.5B``), so
    ``qwen/Qwen-0.5B`` suggests the two 0.5B chat models first.
    """
    key = _norm(name).split("/", 1)[-1]
    tag = _size_tag(name)
    scored = []
    for info in CATALOG.values():
        if info.built_locally or info.quantized_of:
            continue
        bare = _norm(info.name).split("/", 1)[-1]
        score = difflib.SequenceMatcher(None, key, bare).ratio()
        if tag and _size_tag(info.name) == tag:
            score += 0.5
        if bare.startswith(key):  # "Qwen2.5-0.5B" is the start of "Qwen2.5-0.5B-Instruct"
            score += 0.3
        scored.append((score, info.name))
    scored.sort(key=lambda s: -s[0])
    return [name for _, name in scored[:n]]


def exact(name: str) -> ModelInfo | None:
    """The entry whose name, Hugging Face id, ModelScope id or alias is ``name`` exactly (case included);
    a bare name (``"Qwen3-0.6B"``) matches the part after the org.

    >>> exact("Qwen/Qwen3-0.6B").name, exact("qwen/Qwen1.5-0.5B-Chat").name, exact("Qwen/Qwen3-0.6b")
    ('Qwen/Qwen3-0.6B', 'Qwen/Qwen1.5-0.5B-Chat', None)
    """
    text = name.strip()
    for info in (*CATALOG.values(), *PREQUANTIZED.values()):
        ids = {info.name, info.hf_id, info.modelscope_id, *info.aliases}
        if text in ids | {i.split("/", 1)[-1] for i in ids}:
            return info
    return None


def lookup(name: str) -> ModelInfo | None:
    """What ``load_model`` makes of a model id: the catalog entry, ``None`` for a repo outside the catalog,
    or :class:`UnknownModelError` for a mistyped catalog id.

    The rule ("unknown" means "not a near miss of a catalog id"):

    1. written exactly as the catalog lists it (see :func:`exact`) -> that entry;
    2. the same letters in another case, or ``_`` for ``-`` (``Qwen/Qwen3-0.6b``) -> UnknownModelError
       naming the catalog id: ids are copied exactly, qwenlab does not guess;
    3. an ``org/name`` id whose org is ``qwen`` in another case than ``Qwen`` (the seeds' ``qwen/Qwen-0.5B``)
       and that is not listed -> UnknownModelError with the closest catalog ids: Qwen's org on Hugging Face
       is ``Qwen``;
    4. a bare name that is not listed (``Qwen3-1.7B``) -> UnknownModelError: a hub id needs its org;
    5. any other ``org/name`` (``Qwen/Qwen2.5-1.5B-Instruct``) -> ``None``: a repo outside the catalog,
       found locally or downloaded like a catalog model, without catalog facts (:class:`NotInCatalogWarning`).

    >>> lookup("Qwen/Qwen3-0.6B").name, lookup("Qwen/Qwen2.5-1.5B-Instruct")
    ('Qwen/Qwen3-0.6B', None)
    >>> lookup("Qwen/Qwen3-0.6b")
    Traceback (most recent call last):
    ...
    qwenlab.catalog.UnknownModelError: Unknown model 'Qwen/Qwen3-0.6b': the catalog lists it as 'Qwen/Qwen3-0.6B' (ids are copied exactly, case included). Did you mean: Qwen/Qwen3-0.6B? (see qwenlab.catalog.CATALOG, or pass a local folder path)
    """
    info = exact(name)
    if info is not None:
        return info
    near = find(name)
    if near is not None:
        raise UnknownModelError(name, [near.name],
                                f"the catalog lists it as {near.name!r} (ids are copied exactly, case included)")
    org, _, rest = name.strip().partition("/")
    if rest and org.lower() == "qwen" and org != "Qwen":
        raise UnknownModelError(name, closest(name), f"{org!r} is not how Hugging Face writes Qwen's org, and the "
                                "catalog has no such model (write a Qwen repo outside the catalog as 'Qwen/<name>')")
    if not rest:
        raise UnknownModelError(name, closest(name), "it is not in the qwenlab catalog, not a local folder or "
                                ".gguf file, and not a hub id (write a repo outside the catalog as 'org/name')")
    return None


def get(name: str) -> ModelInfo:
    """Return the catalog entry for ``name`` or raise :class:`UnknownModelError` naming the closest ids."""
    info = find(name)
    if info is None:
        raise UnknownModelError(name, closest(name))
    return info


def recommended_sampling(name: str, thinking: bool | None = None) -> dict:
    """Qwen's recommended sampling parameters for a model and mode.

    Args:
        name: catalog id.
        thinking: for thinking models, which mode (default: the model's own default — on for Qwen3,
            off for Qwen3.5 small).

    Taught in ``04_generate.ipynb`` and ``06_thinking.ipynb``.
    """
    info = get(name)
    if "default" in info.sampling:
        return dict(info.sampling["default"])
    if thinking is None:
        thinking = info.thinks_by_default
    return dict(info.sampling["thinking" if thinking else "non_thinking"])
