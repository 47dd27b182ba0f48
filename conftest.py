"""Doctests of the ``qwenlab`` package (``pytest --doctest-modules qwenlab``).

Docstring examples run against the tiny random-weight Qwen3 (``model``, ``tokenizer``) and with
``qwenlab`` imported; examples that need a real model, a network or a server say ``# doctest: +SKIP``.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def _doctest_tiny(tmp_path_factory):
    import qwenlab
    from qwenlab.offline import build_tiny_qwen3

    folder = build_tiny_qwen3(tmp_path_factory.mktemp("doctest-tiny-qwen3"))
    return qwenlab.load_model(folder, device="cpu", dtype="float32")


@pytest.fixture(autouse=True)
def _doctest_names(request, doctest_namespace):
    """Give every docstring example ``qwenlab``, ``torch`` and (lazily built) ``model``/``tokenizer``."""
    if not isinstance(request.node, pytest.DoctestItem):
        return
    import torch

    import qwenlab

    doctest_namespace.update(qwenlab=qwenlab, torch=torch)
    source = request.node.dtest.docstring or ""
    if "model" in source or "tokenizer" in source:
        model, tokenizer = request.getfixturevalue("_doctest_tiny")
        doctest_namespace.update(model=model, tokenizer=tokenizer)
