"""Where qwenlab keeps its files (``$QWENLAB_HOME``, default ``~/.cache/qwenlab``).

Taught in ``02_download.ipynb`` (where files land and how to find them).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["API_KEY_ENV", "qwenlab_home", "models_dir", "offline_dir"]

# The key of `qwenlab serve` and the class code of `qwenlab mirror` travel in this environment variable, never in
# argv (every user of the machine sees argv in `ps`).
API_KEY_ENV = "QWENLAB_API_KEY"


def qwenlab_home() -> Path:
    """Root of qwenlab's cache: ``$QWENLAB_HOME`` or ``~/.cache/qwenlab``."""
    env = os.environ.get("QWENLAB_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "qwenlab"


def models_dir() -> Path:
    """Folder where ``qwenlab.download`` puts full model folders (``<org>--<name>``)."""
    return qwenlab_home() / "models"


def offline_dir() -> Path:
    """Folder of the offline model: the assembled GGUF and its converted transformers folder."""
    return qwenlab_home() / "offline"
