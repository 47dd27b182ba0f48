"""qwenlab's fast CPU recipe: int8 Linear and Embedding layers with one scale per output channel (or row),
8-bit per-token activations on fbgemm's int8 kernel, and SmoothQuant to move activation outliers into the
weights first. ``qwenlab.quant.quantize(model, "fast")`` applies it.

Taught in ``07_quantization.ipynb`` (sections 4-5); ``qwenlab bench quant`` measures it against fp32.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any
from collections.abc import Callable, Mapping, Sequence

import torch

from ..evaluation import calibration_text
from ..measure import copy_model
from ..modelfacts import facts_of
from .scratch import quantize_tensor

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from ..modelfacts import CausalLM

__all__ = [
    "WEIGHT_QMAX",
    "Int8Linear",
    "Int8Embedding",
    "linear_selector",
    "replace_linears",
    "SMOOTH_ALPHA",
    "activation_ranges",
    "smoothing_scales",
    "apply_smoothing",
    "fast_recipe",
]

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
        scale = (torch.maximum(w.amax(dim=1), w.amin(dim=1).neg()) / WEIGHT_QMAX).clamp(min=1e-12).double()
        zeros = torch.zeros(w.shape[0], dtype=torch.long)
        bias = None if linear.bias is None else linear.bias.detach().float().clone()
        with warnings.catch_warnings():  # quantized tensors are deprecated in favour of torchao (still here)
            warnings.simplefilter("ignore")
            qweight = torch.quantize_per_channel(w, scale, zeros, 0, torch.qint8)
            self._packed_params = torch.ops.quantized.linear_prepack(qweight, bias)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self._bias = bias
        # W @ ones, for the prefill path; a slice of rows at a time (lm_head de-quantized whole is 0.5 GB)
        self._row_sums = torch.cat([qweight[i:i + 4096].dequantize().sum(dim=1) for i in range(0, w.shape[0], 4096)])

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

    scale: torch.Tensor  # one fp32 scale per row (a buffer)

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


# ------------------------------------------------------------------------------------ layer selection


def linear_selector(modules: Sequence[str] | None) -> Callable[[str], bool]:
    """A test on a layer's name: ``None`` -> every Linear; else names ending with one of ``modules``
    (``"lm_head"``, ``"mlp.down_proj"``)."""
    if modules is None:
        return lambda name: True
    wanted = tuple(modules)
    return lambda name: name.endswith(wanted)


def replace_linears(model: CausalLM, select: Callable[[str], bool], make: Callable[[Any, str], Any]) -> int:
    """Replace (in place) each ``nn.Linear`` whose full name passes ``select`` by ``make(linear, name)``;
    returns how many were replaced."""
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


def activation_ranges(model: CausalLM, tokenizer: PreTrainedTokenizerBase, text: str | None = None) -> dict[str, Any]:
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


def smoothing_scales(model: CausalLM, ranges: Mapping[str, Any], alpha: float = SMOOTH_ALPHA,
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
            if norm is None or getattr(norm, "weight", None) is None or any(lin is None for lin in linears):
                continue
            if not all(isinstance(lin, torch.nn.Linear) and select(n) for lin, n in zip(linears, names)):
                continue
            if names[0] not in ranges:
                continue
            w_max = torch.stack([lin.weight.detach().abs().amax(dim=0).float() for lin in linears]).amax(dim=0)
            s = ranges[names[0]].clamp(min=1e-5) ** alpha / w_max.clamp(min=1e-5) ** (1 - alpha)
            out[f"{prefix}.{norm_name}"] = s.clamp(min=1e-2, max=1e3)
    return out


def _decoder_layers(model: CausalLM) -> list[tuple[str, Any]]:
    return [(name, m) for name, m in model.named_modules()
            if _get(m, "input_layernorm") is not None and _get(m, "self_attn") is not None]


def _get(module: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


def _smooth_model_type(model: CausalLM) -> bool:
    """Smoothing folds into ``RMSNorm.weight`` (output = weight * x / rms): true for these families."""
    return getattr(model.config, "model_type", "") in ("qwen2", "qwen3", "llama", "mistral")


def _tokenizer_for(model: CausalLM) -> Any:
    from transformers import AutoTokenizer

    folder = facts_of(model).folder or model.config.name_or_path
    try:
        return AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as err:
        raise ValueError(f"The fast recipe measures activation ranges on a short text, and no tokenizer was found "
                         f"at {folder!r}: pass tokenizer=... to quantize(), or smooth=False.") from err


def _column_scales(scales: Mapping[str, Any]) -> dict[str, Any]:
    """``{norm name: s}`` -> ``{name of each Linear that reads that norm's output: s}``."""
    column: dict[str, Any] = {}
    for norm_name, s in scales.items():
        prefix = norm_name.rsplit(".", 1)[0]
        for group_norm, linear_names in _SMOOTH_GROUPS:
            if norm_name.endswith(group_norm):
                column.update({f"{prefix}.{n}": s for n in linear_names})
    return column


def _divide_norms(model: CausalLM, scales: Mapping[str, Any]) -> None:
    for norm_name, s in scales.items():
        norm = _get(model, norm_name)
        norm.weight = torch.nn.Parameter((norm.weight.detach().float() / s).to(norm.weight.dtype),
                                         requires_grad=False)


def apply_smoothing(model: CausalLM, scales: Mapping[str, Any]) -> Any:
    """SmoothQuant without quantization: a copy of ``model`` whose norms are divided by ``s`` and whose next
    Linear layers' weight columns are multiplied by ``s`` (``scales`` from :func:`smoothing_scales`).

    The copy computes the same outputs (up to float rounding) with flatter activations: what the fast
    recipe does before it quantizes. The original model is left as it was. Taught in ``07_quantization.ipynb``.
    """
    smoothed = copy_model(model)
    _divide_norms(smoothed, scales)
    for name, s in _column_scales(scales).items():
        linear = _get(smoothed, name)
        linear.weight = torch.nn.Parameter((linear.weight.detach().float() * s[None, :]).to(linear.weight.dtype),
                                           requires_grad=False)
    return smoothed


def fast_recipe(model: CausalLM, *, original: CausalLM | None = None,
                modules: Sequence[str] | None = None, tokenizer: PreTrainedTokenizerBase | None = None,
                smooth: bool = True) -> CausalLM:
    """Apply the fast CPU recipe to ``model`` in place (pass a copy to keep the original) and return it.

    Args:
        model: the model whose layers are replaced by :class:`Int8Linear` / :class:`Int8Embedding`.
        original: the unchanged model whose activation ranges are measured (default ``model``).
        modules: only the Linear layers whose names end with one of these; default every Linear and the
            input embedding.
        tokenizer: reads the calibration text (default: loaded from the model's folder).
        smooth: SmoothQuant the layers after each RMSNorm first (Qwen2/Qwen3/Llama/Mistral).

    ``qwenlab.quant.quantize(model, "fast")`` calls it on a copy. Taught in ``07_quantization.ipynb``.
    """
    original = model if original is None else original
    select = linear_selector(modules)
    column: dict[str, Any] = {}
    if smooth and _smooth_model_type(model):
        ranges = activation_ranges(original, tokenizer if tokenizer is not None else _tokenizer_for(original))
        scales = smoothing_scales(model, ranges, select=select)
        _divide_norms(model, scales)
        column = _column_scales(scales)
    n = replace_linears(model, select, lambda lin, name: Int8Linear(lin, column.get(name)))
    if n == 0:
        raise ValueError(f"No nn.Linear layer matched modules={modules!r}; names look like "
                         "'model.layers.0.mlp.down_proj' or 'lm_head'.")
    emb = model.get_input_embeddings()
    if modules is None and type(emb).__name__ == "Embedding":
        model.set_input_embeddings(Int8Embedding(emb))
    return model
