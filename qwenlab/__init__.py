"""qwenlab: run small Qwen chat models on your own machine — the library behind the course notebooks.

Everything a notebook needs is importable from here; submodules are imported on first use, so
``import qwenlab`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> submodule that defines it
_EXPORTS = {
    # foundation
    "load_model": "models",
    "resolve": "models",
    "summarize": "models",
    "course_model": "course",
    "setup_notebook": "course",
    "check": "course",
    "CATALOG": "catalog",
    "get_model_info": ("catalog", "get"),
    "recommended_sampling": "catalog",
    "UnknownModelError": "catalog",
    "ModelNotAvailableError": "models",
    "ensure_offline_model": "offline",
    "qwen3_tokenizer": "offline",
    # generation
    "generate": "generation",
    "stream": "generation",
    "GenerationResult": "generation",
    "effective_params": "generation",
    "next_token_distribution": "sampling",
    "sample_loop": "sampling",
    "plot_distribution": "sampling",
    "parameter_sources": "generation",
    "SamplingLab": "widgets",
    # tokens
    "show_tokens": "tokens",
    "token_stats": "tokens",
    "render_chat": "tokens",
    "special_tokens": "tokens",
    # chat and thinking
    "Conversation": "chat",
    "split_thinking": "thinking",
    "ThinkingStream": "thinking",
    # environment and download
    "report": "env",
    "download": "hub",
    "list_models": "hub",
    "delete_model": "hub",
    "fetch": "hub",
    "start_mirror": ("mirror", "start"),
    # quantization, performance, serving
    "quantize": "quant",
    "compare": "quant",
    "model_footprint": "quant",
    "run_bench": "bench",
    "plot_roofline": "bench",
    "start_server": ("serve", "start"),
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'qwenlab' has no attribute {name!r}")
    module_name, attr = target if isinstance(target, tuple) else (target, name)
    module = importlib.import_module(f".{module_name}", __name__)
    value = getattr(module, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
