"""What qwenlab knows about a loaded model (its name, folder, where it was found, why this dtype), kept
in a typed record beside the model instead of an attribute hidden on it.

``load_model`` records the facts; any later function that receives the bare model reads them with
:func:`facts_of`. The registry holds the model weakly, so it never keeps a model alive.

Also names the model type for type checkers (``CausalLM``, under ``TYPE_CHECKING``).

Taught in ``00_quickstart.ipynb`` (``LoadedModel.summary``).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import GenerationMixin, PreTrainedModel

    class CausalLM(PreTrainedModel, GenerationMixin):
        """The type of what ``load_model`` returns: a transformers model that can ``generate``
        (in transformers 5, ``PreTrainedModel`` alone has no ``generate``). For type checkers only;
        import it under ``if TYPE_CHECKING:``."""

__all__ = ["ModelFacts", "remember", "facts_of", "model_name"]


@dataclass(frozen=True)
class ModelFacts:
    """Where a loaded model came from.

    Args:
        name: the name the student asked for (a catalog name, repo id, or path).
        folder: the folder (or ``.gguf`` file) the weights were read from.
        found_in: which place had it (``qwenlab``, ``huggingface cache``, ``modelscope cache``, ``path`` …).
        dtype_reason: why this dtype was chosen, in words.
        load_seconds: how long loading took.
    """

    name: str
    folder: str
    found_in: str = "?"
    dtype_reason: str = ""
    load_seconds: float = 0.0

    def but(self, **changes: Any) -> ModelFacts:
        """A copy with some fields changed (a quantized copy keeps its origin but not its load time)."""
        return replace(self, **changes)


_FACTS: weakref.WeakKeyDictionary[Any, ModelFacts] = weakref.WeakKeyDictionary()


def remember(model: PreTrainedModel, facts: ModelFacts) -> None:
    """Record ``facts`` for ``model`` (done by ``load_model``; call it for a model you built yourself)."""
    _FACTS[model] = facts


def facts_of(model: PreTrainedModel) -> ModelFacts:
    """The recorded facts of ``model``; for a model qwenlab did not load, what its config says."""
    try:
        found = _FACTS.get(model)
    except TypeError:  # None, or an object that cannot be weakly referenced: nothing was recorded
        found = None
    if found is not None:
        return found
    config = getattr(model, "config", None)
    origin = str(getattr(config, "name_or_path", "") or type(model).__name__)
    return ModelFacts(name=origin, folder=origin)


def model_name(model_or_name: Any) -> str:
    """A display name: the string itself, or the recorded name of a model."""
    return model_or_name if isinstance(model_or_name, str) else facts_of(model_or_name).name
