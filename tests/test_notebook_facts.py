"""Model facts in the notebooks' prose are computed from the model in use (issue #13, item 6).

The cells that state such facts carry the notebook tag ``model-facts``; they are run here, as written in the
notebooks, on the tiny Qwen3, on a model shaped like Qwen3-0.6B (weights on the ``meta`` device, so nothing
is allocated) and on the offline model, and what they print is checked against the model's own config.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch

from qwenlab.models import describe, head_dim

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def fact_cells() -> dict[str, list[str]]:
    """Notebook name -> sources of its code cells tagged ``model-facts``."""
    out: dict[str, list[str]] = {}
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        tagged = ["".join(c["source"]) for c in cells
                  if c["cell_type"] == "code" and "model-facts" in c.get("metadata", {}).get("tags", [])]
        if tagged:
            out[path.stem] = tagged
    return out


def run_cells(model) -> dict[str, str]:
    """Run every fact cell with ``model`` in its namespace; return each notebook's printed text."""
    printed = {}
    for name, sources in fact_cells().items():
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            for source in sources:
                exec(compile(source, f"<{name} model-facts>", "exec"), {"model": model})  # noqa: S102
        printed[name] = buffer.getvalue()
    return printed


@pytest.fixture(scope="module")
def qwen3_0_6b_shape():
    """Qwen3-0.6B's real config (head_dim 128 while hidden_size / heads = 64), built on the meta device."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(vocab_size=151_936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                         num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=40_960,
                         tie_word_embeddings=True, dtype="bfloat16")
    with torch.device("meta"):
        model = Qwen3ForCausalLM(config).to(torch.bfloat16)
    return model


def test_the_fact_cells_are_in_the_notebooks_that_state_facts():
    assert {"00_quickstart", "07_quantization", "09_performance"} <= set(fact_cells())


def test_no_notebook_hard_codes_the_facts_the_cells_compute():
    text = {p.stem: p.read_text(encoding="utf-8") for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")}
    assert "169 个 Linear" not in text["07_quantization"] and "6.3 亿" not in text["07_quantization"]
    assert "hidden_size // cfg.num_attention_heads\\n" not in text["09_performance"]  # wrong for Qwen3
    assert "约 630M" not in text["00_quickstart"]


def test_head_dim_comes_from_the_config_when_it_has_one(qwen3_0_6b_shape):
    assert head_dim(qwen3_0_6b_shape.config) == 128 != 1024 // 16
    shape = describe(qwen3_0_6b_shape)
    assert (shape.layers, shape.kv_heads, shape.head_dim) == (28, 8, 128)
    assert shape.kv_bytes_per_token == 2 * 28 * 8 * 128 * 2  # 112 KiB per token in bf16 (seed errata E30)
    assert shape.tied_embeddings and shape.lm_head_params == 0
    assert shape.linear_layers == 28 * 7 + 1  # q, k, v, o, gate, up, down per layer + lm_head


def test_fact_cells_print_the_facts_of_a_qwen3_shaped_model(qwen3_0_6b_shape):
    printed = run_cells(qwen3_0_6b_shape)
    assert "28 层 × 8 个 KV 头 × 每头 128 维" in printed["09_performance"]
    assert "每个 token 112 KiB (bfloat16)" in printed["09_performance"]
    assert "lm_head" not in printed["00_quickstart"]  # tied: nothing extra to report
    assert f"{sum(p.numel() for p in qwen3_0_6b_shape.parameters()) / 1e8:.2f} 亿" in printed["07_quantization"]


def test_fact_cells_run_on_the_tiny_qwen3(tiny):
    model, _ = tiny
    cfg = model.config
    printed = run_cells(model)
    assert f"{cfg.num_hidden_layers} 层 × {cfg.num_key_value_heads} 个 KV 头 × 每头 {cfg.head_dim} 维" \
        in printed["09_performance"]
    assert "亿" in printed["00_quickstart"] and "亿" in printed["07_quantization"]


def test_the_linear_layer_count_is_what_the_fast_recipe_packs(tiny, one_thread):
    """Notebook 07 says the fast recipe packs describe(model).linear_layers Linear layers into int8."""
    from qwenlab import quant
    from qwenlab.quant.recipe import Int8Linear

    model, tokenizer = tiny
    fast = quant.quantize(model, "fast", tokenizer=tokenizer)
    assert sum(isinstance(m, Int8Linear) for m in fast.modules()) == describe(model).linear_layers


@pytest.mark.real_model
def test_fact_cells_on_the_offline_model(offline):
    model, _ = offline
    shape = describe(model)
    assert (shape.layers, shape.kv_heads, shape.head_dim, shape.linear_layers) == (24, 2, 64, 169)
    assert not shape.tied_embeddings and shape.lm_head_params == 151_936 * 896
    printed = run_cells(model)
    assert "24 层 × 2 个 KV 头 × 每头 64 维" in printed["09_performance"]
    assert "多了 136 M 参数" in printed["00_quickstart"]
    assert "其中 1.36 亿在没有共享 (untied) 的 lm_head 里" in printed["07_quantization"]
