"""The course's choice of model and the first cell of every notebook.

Taught in ``00_quickstart.ipynb``.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import catalog
from .hub import offline_mode
from .models import OPTIONAL_IMPORT_LOGGERS, choose_device, resolve
from .ondisk import find_local
from .sources import probe_sources

__all__ = ["course_model", "setup_notebook", "CourseSetup", "in_notebook", "check", "ExerciseError"]


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where HTML output is shown)."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
        return shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell"
    except ImportError:
        return False


def _banner(title: str, body: str) -> None:
    if in_notebook():
        import html

        from IPython.display import HTML, display

        display(HTML(
            "<div style='border:2px solid #d4a72c;background:#fff8c5;padding:8px 12px;border-radius:6px'>"
            f"<b>{html.escape(title)}</b><br>{html.escape(body)}</div>"
        ))
    else:
        print(f"*** {title}\n    {body}", file=sys.stderr)


def _default_available(probe_timeout: float) -> tuple[bool, str]:
    info = catalog.get(catalog.DEFAULT_MODEL)
    if find_local([info.hf_id], [info.modelscope_id]):
        return True, "on disk"
    if offline_mode():
        return False, "not on disk and downloads are off (HF_HUB_OFFLINE=1)"
    reachable = [name for name, ok in probe_sources(timeout=probe_timeout).items() if ok]
    if reachable:
        return True, f"downloadable from {reachable[0]}"
    return False, "not on disk and no model hub is reachable"


def course_model(announce: bool = True, probe_timeout: float = 3.0) -> str:
    """The model the notebooks use: ``$QWENLAB_MODEL``, else Qwen3-0.6B if available, else the offline model.

    "Available" means on disk or downloadable right now (a source answers and ``HF_HUB_OFFLINE`` is not
    set). Falling back to the offline model is always
    announced in a visible banner (never silently).
    """
    chosen = os.environ.get("QWENLAB_MODEL")
    if chosen:
        return chosen
    ok, why = _default_available(probe_timeout)
    if ok:
        return catalog.DEFAULT_MODEL
    if announce:
        _banner(
            "使用离线模型 (using the offline model)",
            f"{catalog.DEFAULT_MODEL} is {why}, so this notebook uses the offline model: "
            "Qwen2.5-Coder-0.5B-Instruct (Q4_K_M, from PyPI, SHA-256 checked). Answers are real; it has no "
            "thinking mode. To choose a model: set QWENLAB_MODEL or run `qwenlab download Qwen/Qwen3-0.6B`.",
        )
    return catalog.OFFLINE_MODEL


@dataclass
class CourseSetup:
    """What ``setup_notebook`` decided: the model name, the device, and the versions in use."""

    model: str
    device: str
    versions: dict

    def __str__(self) -> str:
        vers = "  ".join(f"{k} {v}" for k, v in self.versions.items())
        return f"{vers}\nmodel: {self.model}   device: {self.device}"


def setup_notebook(seed: int = 0, announce: bool = True) -> CourseSetup:
    """First cell of every notebook: versions, chosen model and device, printed once; RNG seeded.

    Also mutes the import-time warnings torchao logs on a CPU (CUDA-only kernels it cannot load), so a
    plain ``AutoModelForCausalLM.from_pretrained`` cell shows only what matters; errors still show.

    Example:
        >>> import qwenlab
        >>> course = qwenlab.setup_notebook()     # doctest: +SKIP
    """
    import torch
    import transformers

    from .version import __version__

    torch.manual_seed(seed)
    for name in OPTIONAL_IMPORT_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    setup = CourseSetup(
        model=course_model(announce=announce),
        device=choose_device("auto"),
        versions={
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "qwenlab": __version__,
        },
    )
    if announce:
        print(setup)
    return setup


last_check: bool | None = None


class ExerciseError(AssertionError):
    """An exercise check failed while ``QWENLAB_STRICT_CHECKS=1`` (set by ``make test``)."""


def check(label: str, answer: Any, test: Callable[[Any], bool] | bool, hint: str = "") -> None:
    """Check a student's answer to an exercise and show ✅ / ❌ (with a hint) / ⏳ (not answered yet).

    Args:
        label: e.g. ``"练习 1"``.
        answer: the student's answer; ``None`` or ``...`` means "not answered yet" (never an error).
        test: a function ``answer -> bool``, or an already computed bool.
        hint: shown when the answer is wrong.

    Returns None (so a notebook cell shows only the verdict line); the last verdict is kept in
    ``qwenlab.course.last_check`` (True / False / None). Never raises in class, so a notebook always
    runs top to bottom. Under ``make test``
    (``QWENLAB_STRICT_CHECKS=1``) a wrong answer raises :class:`ExerciseError`, so the reference
    solutions at the end of each notebook are proven to pass.
    """
    global last_check
    last_check = None
    if answer is None or answer is Ellipsis:
        _show(f"⏳ {label}: 尚未作答 (not answered yet)")
        return None
    try:
        passed = bool(test(answer) if callable(test) else test)
    except Exception as err:  # a student's half-written answer must not crash the check
        passed, hint = False, f"{hint} (check raised {type(err).__name__}: {err})".strip()
    last_check = passed
    if passed:
        _show(f"✅ {label}: 正确 (correct)")
    else:
        _show(f"❌ {label}: 还不对 (not yet). {hint}".rstrip())
        if os.environ.get("QWENLAB_STRICT_CHECKS") == "1":
            raise ExerciseError(f"{label}: {hint}")
    return None


def _show(line: str) -> None:
    print(line)


def _prepare() -> int:
    """``python -m qwenlab.course --prepare`` (used by the Makefile): make the course model ready on disk."""
    name = course_model()
    where = resolve(name)
    print(f"course model: {name} ({where.found_in}: {where.folder})")
    return 0


if __name__ == "__main__":
    raise SystemExit(_prepare() if "--prepare" in sys.argv else 2)
