"""qwenlab: run small Qwen chat models on your own machine — the library behind the course notebooks.

Everything a notebook needs is importable from here; submodules are imported on first use, so
``import qwenlab`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .version import __version__

# public name -> submodule that defines it
_EXPORTS = {
    # foundation
    "load_model": "models",
    "resolve": "models",
    "summarize": "models",
    "course_model": "course",
    "setup_notebook": "course",
    "check": "course",
    "exercises": ("exercises", None),  # the subpackage itself: qwenlab.exercises.check("03.1", ...)
    "CATALOG": "catalog",
    "get_model_info": ("catalog", "get"),
    "recommended_sampling": "catalog",
    "UnknownModelError": "catalog",
    "ModelNotAvailableError": "catalog",
    "ensure_offline_model": "offline",
    "qwen3_tokenizer": "offline",
    # generation
    "generate": "generation",
    "stream": "generation",
    "GenerationResult": "generation",
    "ContextTooLongError": "generation",
    "effective_params": "generation",
    "next_token_distribution": "sampleloop",
    "sample_loop": "sampleloop",
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
    "prompt_opens_thinking": "thinking",
    "template_opens_thinking": "thinking",
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

__all__ = [
    "__version__",
    "exercises",
    "CATALOG",
    "ContextTooLongError",
    "Conversation",
    "GenerationResult",
    "ModelNotAvailableError",
    "SamplingLab",
    "ThinkingStream",
    "UnknownModelError",
    "check",
    "compare",
    "course_model",
    "delete_model",
    "download",
    "effective_params",
    "ensure_offline_model",
    "fetch",
    "generate",
    "get_model_info",
    "list_models",
    "load_model",
    "model_footprint",
    "next_token_distribution",
    "parameter_sources",
    "plot_distribution",
    "plot_roofline",
    "prompt_opens_thinking",
    "quantize",
    "qwen3_tokenizer",
    "recommended_sampling",
    "render_chat",
    "report",
    "resolve",
    "run_bench",
    "sample_loop",
    "setup_notebook",
    "show_tokens",
    "special_tokens",
    "split_thinking",
    "start_mirror",
    "start_server",
    "stream",
    "summarize",
    "template_opens_thinking",
    "token_stats",
]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time the names load on first use
    from .bench import plot_roofline, run_bench
    from .catalog import CATALOG, ModelNotAvailableError, UnknownModelError, get as get_model_info, recommended_sampling
    from .chat import Conversation
    from . import exercises
    from .course import check, course_model, setup_notebook
    from .env import report
    from .generation import ContextTooLongError, GenerationResult, effective_params, generate, parameter_sources, stream
    from .hub import delete_model, download, fetch, list_models
    from .mirror import start as start_mirror
    from .models import load_model, resolve, summarize
    from .offline import ensure_offline_model, qwen3_tokenizer
    from .quant import compare, model_footprint, quantize  # type: ignore[no-redef]  # also a submodule name
    from .sampleloop import next_token_distribution, sample_loop
    from .sampling import plot_distribution
    from .serve import start as start_server
    from .thinking import ThinkingStream, prompt_opens_thinking, split_thinking, template_opens_thinking
    from .tokens import render_chat, show_tokens, special_tokens, token_stats
    from .widgets import SamplingLab


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'qwenlab' has no attribute {name!r}")
    module_name, attr = target if isinstance(target, tuple) else (target, name)
    module = importlib.import_module(f".{module_name}", __name__)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
