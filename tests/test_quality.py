"""Quality on held-out data (``qwenlab.quant.quality``, ``qwenlab bench quant --quality``, notebook 07 §11):
the question set and its split, the measures (agreement, KL and its top-k lower bound, perplexity) on the
tiny model, llama.cpp's rows on the offline GGUF, GGUF re-quantization, and the recorded full table."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from qwenlab.evaluation import probes
from qwenlab.measure import copy_model
from qwenlab.quant import quality
from qwenlab.quant.quality import (
    THRESHOLD, QualityReport, QualityRow, bucketed_kl, heldout_chunks, heldout_questions, measure_pytorch,
    recorded_quality, reference,
)

ROOT = Path(__file__).resolve().parents[1]


def test_the_split_is_fixed_documented_and_disjoint():
    report, tune = heldout_questions("report"), heldout_questions("tune")
    assert len(report) == 200 and len(tune) == 40
    assert {q.lang for q in report} == {q.lang for q in tune} == {"zh", "en"}
    assert len({q.question for q in report + tune}) == 240
    assert not {q.question for q in report + tune} & {p.question for p in probes()}  # the tuning probes are apart
    everything = heldout_questions(None)
    assert [q.split for q in everything] == ["tune" if i % 6 == 0 else "report" for i in range(240)]  # the rule


def test_the_shipped_questions_are_what_the_generator_writes():
    spec = importlib.util.spec_from_file_location("make_heldout", ROOT / "tools" / "make_heldout.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    shipped = json.loads((quality.HELDOUT / "questions.json").read_text(encoding="utf-8"))
    assert tool.questions() == shipped


def test_bad_splits_and_languages_are_refused():
    with pytest.raises(ValueError, match="split='test'"):
        heldout_questions("test")
    with pytest.raises(ValueError, match="lang='fr'"):
        quality.heldout_text("fr")


def test_chunks_alternate_languages_and_hold_exactly_the_positions_asked(qwen3_tok):
    chunks = heldout_chunks(qwen3_tok, 1000, chunk=256)
    assert sum(len(c) - 1 for c in chunks) == 1000
    zh = qwen3_tok(quality.heldout_text("zh")).input_ids
    en = qwen3_tok(quality.heldout_text("en")).input_ids
    assert chunks[0] == zh[:256] and chunks[1] == en[:256] and chunks[2] == zh[256:512]
    with pytest.raises(ValueError, match="ask for fewer"):
        heldout_chunks(qwen3_tok, 10**6)


def test_the_top_k_kl_is_a_lower_bound_of_the_full_kl():
    torch.manual_seed(0)
    p = torch.log_softmax(torch.randn(50, 300) * 3, -1)
    q = torch.log_softmax(torch.randn(50, 300) * 3, -1)
    full = float((p.exp() * (p - q)).sum())
    top = torch.topk(p, 10, -1)
    per_position = bucketed_kl(top.values, q.gather(1, top.indices))
    full_per_position = (p.exp() * (p - q)).sum(-1)
    assert bool((per_position <= full_per_position + 1e-9).all()) and 0 < float(per_position.sum()) <= full
    assert float(bucketed_kl(top.values, top.values).sum()) == pytest.approx(0, abs=1e-9)


def _noisy_copy(model, scale: float):
    noisy = copy_model(model)
    with torch.no_grad():
        noisy.lm_head.weight = torch.nn.Parameter(model.lm_head.weight + scale * torch.randn_like(model.lm_head.weight))
    return noisy


def test_a_copy_keeps_everything_and_noise_shows_in_every_measure(tiny, one_thread):
    model, tok = tiny
    items = heldout_questions("tune")[:4]
    chunks = heldout_chunks(tok, 120, chunk=64)
    ref = reference(model, tok, items, chunks, k=8)
    assert ref.positions == 120
    same = measure_pytorch("copy", copy_model(model), tok, ref, items, fp32=model)
    assert same.answers_same == 4 and same.top1 == 1.0
    assert same.kl == pytest.approx(0, abs=1e-6) and same.kl_topk == pytest.approx(0, abs=1e-6)
    assert same.perplexity == pytest.approx(math.exp(ref.nll / ref.positions), rel=1e-5)
    torch.manual_seed(1)
    noisy = measure_pytorch("noisy", _noisy_copy(model, 0.5), tok, ref, items, fp32=model)
    assert noisy.top1 < 1.0 and noisy.kl > 0.01
    assert noisy.kl_topk <= noisy.kl  # the bound the llama.cpp rows report is never above the truth
    assert noisy.perplexity != pytest.approx(same.perplexity)


def test_the_threshold_decides_keeps_quality():
    row = QualityRow("x", "PyTorch", questions=200, answers_same=194, top1=0.96)
    assert THRESHOLD.met(row)  # 97 % and 96 %
    row.answers_same = 193
    assert not THRESHOLD.met(row)


def test_the_recorded_full_table_covers_every_path_on_enough_data():
    rec = recorded_quality()
    assert rec.split == "report"
    assert all(r.questions >= 200 and r.positions >= 5000 for r in rec.rows if not r.note)
    engines = {r.engine for r in rec.rows}
    assert engines == {"PyTorch", "llama.cpp"}
    labels = " | ".join(r.label for r in rec.rows)
    for path in ("fast", "bf16", "dynamic int8", "torchao", "Q4_K_M", "Q8_0", "Q4_0"):
        assert path in labels
    text = str(rec)
    assert "keeps quality" in text and "97%" in text
    again = QualityReport.from_json(rec.to_json())
    assert [r.label for r in again.rows] == [r.label for r in rec.rows]


@pytest.mark.real_model
def test_llama_cpp_rows_read_the_gguf_through_its_own_api(offline):
    """Q4_K_M holds the very weights the fp32 offline model was converted from: llama.cpp agrees with it on
    nearly every next token. The zh chunk includes characters split over tokens (the held-back UTF-8 path)."""
    from qwenlab.engines import LlamaCppModel
    from qwenlab.offline import status

    model, tok = offline
    items = heldout_questions("tune")[:2]
    chunks = heldout_chunks(tok, 80, chunk=81)  # zh only
    ref = reference(model, tok, items, chunks)
    with LlamaCppModel(status().gguf_path, context=256, seed=0) as llm:
        row = quality.measure_gguf("Q4_K_M", llm, ref, items)
    assert row.positions == 80 and row.questions == 2
    assert row.top1 >= 0.9
    fp32_ppl = math.exp(ref.nll / ref.positions)
    assert abs(row.perplexity / fp32_ppl - 1) < 0.1
    assert row.kl is None and 0 <= row.kl_topk < 0.05


@pytest.mark.real_model
def test_requantized_gguf_is_written_whole_and_runs(tmp_path):
    from qwenlab.engines import LlamaCppModel
    from qwenlab.offline import status
    from qwenlab.quant.requant import requantized_gguf

    source = status().gguf_path
    out = requantized_gguf(source, "Q8_0", tmp_path)
    assert out.name.endswith(".Q8_0.gguf") and [p.name for p in tmp_path.iterdir()] == [out.name]  # no partial
    assert requantized_gguf(source, "Q8_0", tmp_path) == out  # written once
    import gguf

    kinds = {t.tensor_type.name for t in gguf.GGUFReader(out).tensors}
    assert kinds == {"Q8_0", "F32"}
    with LlamaCppModel(out, context=256, seed=0) as llm:
        assert "Paris" in llm.chat(probes()[0].question, do_sample=False, max_new_tokens=8).text
    with pytest.raises(ValueError, match="Q8_0, Q4_0"):
        requantized_gguf(source, "Q2_K", tmp_path)
