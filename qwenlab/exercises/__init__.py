"""Every checked exercise of the course, by notebook (``nb03`` = ``03_tokenizer.ipynb``).

A notebook calls ``qwenlab.exercises.check("03.2", answer2, tokenizer=tokenizer)``; see :mod:`.core`.
"""

from __future__ import annotations

from . import core
from .core import EXERCISES, Exercise, Mistake, check, same, within

__all__ = ["EXERCISES", "Exercise", "Mistake", "check", "same", "within", "core", "load_all"]


def load_all() -> dict[str, Exercise]:
    """Import every notebook's exercise module and return the whole registry (for counts and tests)."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("nb"):
            importlib.import_module(f"{__name__}.{info.name}")
    return EXERCISES


load_all()
