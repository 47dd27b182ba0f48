"""Engines: what runs the model. ``pytorch`` (transformers, the default: every lesson's internals) or
``llama.cpp`` (a GGUF file run by llama.cpp's own server code through the prebuilt wheel ``xllamacpp``: the
engine behind LM Studio and Ollama, several times faster on a CPU).

``qwenlab.load_model("offline", engine="llama.cpp")`` (or a ``.gguf`` path) returns a
:class:`~qwenlab.engines.llamacpp.LlamaCppModel`: ``chat(messages, **params)`` for a whole reply,
``chat_stream(messages, **params)`` for its text pieces as they come. The reply text is what the model wrote,
``<think>`` tags included, so :func:`qwenlab.split_thinking` parses it the same way as the PyTorch engine's.

Taught in ``08_serve.ipynb`` (serving a GGUF) and ``09_performance.ipynb`` (why it is faster).
"""

from __future__ import annotations

from .llamacpp import (
    ENGINES,
    EngineError,
    EngineNotInstalledError,
    EngineReply,
    LlamaCppModel,
    LlamaCppStream,
    NotGGUFError,
    check_engine,
    is_gguf,
    physical_cores,
)

__all__ = [
    "ENGINES",
    "EngineError",
    "EngineNotInstalledError",
    "EngineReply",
    "LlamaCppModel",
    "LlamaCppStream",
    "NotGGUFError",
    "check_engine",
    "is_gguf",
    "physical_cores",
]
