"""LoRA adapters on a loaded model: save one (peft, safetensors) and apply one (merged into the weights).

An adapter folder holds peft's ``adapter_config.json`` + ``adapter_model.safetensors`` and, optionally,
``token_rows.safetensors``: new embedding / output rows for a few token ids (the mini thinker's
``<think>`` and ``</think>``, untrained in the base model), and a ``generation_config.json``.
:func:`apply_adapter` merges the LoRA weights into the model (in float32, so the small update is not
rounded away), writes the rows, and returns a plain transformers model: ``generate``, ``stream`` and
``Conversation`` work on it unchanged.

The mini thinker's adapter is shipped in :data:`THINKER_DIR`; ``load_model("offline-thinker")`` applies it.
Taught in ``10_learn_to_think.ipynb``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from .modelfacts import CausalLM

__all__ = ["THINKER_DIR", "ROWS_FILE", "embedding_weights", "read_rows", "write_rows", "save_adapter", "apply_adapter"]

#: The mini thinker's adapter, shipped with the package (trained by ``qwenlab train-thinker``).
THINKER_DIR = Path(__file__).with_name("data") / "thinker"
ROWS_FILE = "token_rows.safetensors"
ADAPTER_FILE = "adapter_model.safetensors"


def embedding_weights(model: CausalLM) -> tuple[torch.Tensor, torch.Tensor]:
    """The input embedding matrix and the output (``lm_head``) matrix: one tensor when they are tied."""
    embed: torch.Tensor = model.get_input_embeddings().weight  # type: ignore[assignment]  # stubs: Tensor | Module
    head: torch.Tensor = model.get_output_embeddings().weight
    return embed, head


def read_rows(folder: Path | str) -> dict[str, Any] | None:
    """The token rows of an adapter folder: ``{"token_ids", "embed", "lm_head"?}`` tensors, or None."""
    from safetensors.torch import load_file

    path = Path(folder) / ROWS_FILE
    return load_file(path) if path.is_file() else None


def write_rows(model: CausalLM, rows: dict[str, Any]) -> None:
    """Write embedding (and, for an untied output layer, output) rows into the model's weights, in place."""
    import torch

    ids = rows["token_ids"].long()
    embed, head = embedding_weights(model)
    with torch.no_grad():
        embed[ids] = rows["embed"].to(embed)
        if head.data_ptr() != embed.data_ptr():
            head[ids] = rows.get("lm_head", rows["embed"]).to(head)


def save_adapter(peft_model: Any, folder: Path | str, rows: dict[str, Any] | None = None,
                 base_name: str = "", half: bool = True) -> list[Path]:
    """Save a peft LoRA model's adapter (float16 when ``half``: half the bytes) and token rows to ``folder``.

    Returns the files written. The ``README.md`` peft writes is removed (the caller writes its own card).
    """
    import torch
    from safetensors.torch import load_file, save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(folder, safe_serialization=True)
    (folder / "README.md").unlink(missing_ok=True)
    weights = folder / ADAPTER_FILE
    if half:
        save_file({k: v.to(torch.float16).contiguous() for k, v in load_file(weights).items()}, weights)
    config_path = folder / "adapter_config.json"
    if base_name:
        config = json.loads(config_path.read_text())
        config["base_model_name_or_path"] = base_name
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True))
    written = [config_path, weights]
    if rows is not None:
        save_file({k: v.detach().float().contiguous() for k, v in rows.items()}, folder / ROWS_FILE)
        written.append(folder / ROWS_FILE)
    return written


def apply_adapter(model: CausalLM, folder: Path | str) -> CausalLM:
    """Merge the LoRA adapter in ``folder`` into ``model`` and write its token rows; returns the merged model.

    The merge happens in float32 (a bf16 model is upcast first, losslessly, and cast back after), so
    the adapter's small update is not rounded away. A ``generation_config.json`` in the folder becomes the
    model's generation config.
    """
    from peft import PeftModel
    from transformers import GenerationConfig

    folder = Path(folder)
    if not (folder / ADAPTER_FILE).is_file():
        raise FileNotFoundError(f"{folder} has no {ADAPTER_FILE}: it is not a LoRA adapter folder "
                                "(train one with `qwenlab train-thinker`, or reinstall qwenlab).")
    dtype = model.dtype
    with warnings.catch_warnings():  # peft calls a transformers method deprecated in 5.x; nothing to act on
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        merged = PeftModel.from_pretrained(model.float(), folder).merge_and_unload()
    rows = read_rows(folder)
    if rows is not None:
        write_rows(merged, rows)
    if (folder / "generation_config.json").is_file():
        merged.generation_config = GenerationConfig.from_pretrained(folder)
    return merged.to(dtype).eval()
