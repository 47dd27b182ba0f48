"""The course's version (one place: the package, ``qwenlab --version`` and pyproject read it)."""

__version__ = "0.1.0"
