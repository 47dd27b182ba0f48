"""qwenlab.bench: structure and units of the measurements (bytes, seconds, tok/s > 0) — never speed.

Speed goals are benchmarks (``qwenlab bench``, tests/benchmarks/), not asserts: the machine running
the tests may be busy.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from qwenlab import bench
from qwenlab.measure import copy_model

# Small enough for a busy 2-core machine, large enough that every row is measured for real.
TINY_PLAN = bench.BenchPlan(new_tokens=5, repeats=2, bf16_new_tokens=3, bf16_repeats=1, cache_off_new_tokens=4,
                            contexts=(16, 48), context_steps=3, batches=(1, 2, 4), batch_steps=3,
                            quant_new_tokens=3, quant_repeats=1, bandwidth_mib=16, bandwidth_repeats=2,
                            matmul_size=64, matmul_repeats=2, name="test")


def _int8_dynamic(model):
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated in favour of torchao
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def _broken(model):
    raise ValueError("this variant cannot be built here")


def _scrambled(model):
    """A copy whose output layer is shifted by one row: fast to build, and its answers change."""
    import torch

    copy = copy_model(model, "float32")
    head = copy.get_output_embeddings()
    head.weight = torch.nn.Parameter(head.weight.detach().roll(1, dims=0), requires_grad=False)
    return copy


VARIANTS = {"int8 dynamic": _int8_dynamic, "broken": _broken, "scrambled": _scrambled}


@pytest.fixture(scope="module")
def report(tiny):
    model, tokenizer = tiny
    return bench.run_bench(model, tokenizer, plan=TINY_PLAN, threads=1, variants=VARIANTS)


def test_memory_bandwidth_reports_bytes_per_second_of_the_array_it_used():
    bw = bench.memory_bandwidth(size_mib=16, repeats=2, threads=1)
    assert bw.array_bytes == 16 * 2**20
    assert bw.read_bytes_per_second > 0 and bw.copy_bytes_per_second > 0
    assert bw.threads == 1 and bw.device == "cpu"


def test_memory_bandwidth_rejects_an_empty_array():
    with pytest.raises(ValueError, match="size_mib"):
        bench.memory_bandwidth(size_mib=0)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_matmul_speed_is_two_n_cubed_flops_per_median_second(dtype):
    m = bench.matmul_speed(dtype, size=64, repeats=2, threads=1)
    assert m.dtype == dtype and m.size == 64 and m.seconds > 0
    assert m.flops_per_second == pytest.approx(2 * 64**3 / m.seconds)


def test_decode_traffic_of_a_tied_model_counts_every_weight_once(tiny):
    model, _ = tiny
    cfg = model.config
    t = bench.decode_traffic(model)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # tiny Qwen3 ties them
    assert t.embedding_bytes == 0  # lm_head reads the whole (shared) table every token
    assert t.weight_bytes == sum(p.numel() * 4 for p in model.parameters())
    assert t.kv_bytes_per_token == 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim * 4
    assert t.bytes_per_token == t.weight_bytes  # empty context


def test_decode_traffic_grows_with_context_and_shares_weights_across_a_batch(tiny):
    model, _ = tiny
    one = bench.decode_traffic(model, context=1000)
    assert one.bytes_per_token == one.weight_bytes + 1000 * one.kv_bytes_per_token
    four = bench.decode_traffic(model, context=1000, batch=4)
    assert four.bytes_per_token == pytest.approx(one.weight_bytes / 4 + 1000 * one.kv_bytes_per_token)
    assert four.intensity > one.intensity > 0
    assert bench.decode_traffic(model, context=1000).flops_per_token > bench.decode_traffic(model).flops_per_token


def test_roofline_is_bandwidth_divided_by_bytes_per_token(tiny):
    t = bench.decode_traffic(tiny[0])
    assert bench.roofline_tokens_per_second(10e9, t) == pytest.approx(10e9 / t.weight_bytes)


def test_a_bf16_copy_reads_half_the_bytes_per_token(tiny):
    import torch

    model, tokenizer = tiny
    half = copy_model(model, torch.bfloat16)
    assert bench.decode_traffic(half).weight_bytes * 2 == bench.decode_traffic(model).weight_bytes
    assert bench.decode_traffic(half).kv_bytes_per_token * 2 == bench.decode_traffic(model).kv_bytes_per_token


def test_report_has_every_row_of_the_table_in_order(report):
    keys = [r.key for r in report.rows]
    expected = ["raw_fp32", "qwenlab_generate", "raw_bf16", "cache_off", "context_16", "context_48",
                "batch_1", "batch_2", "batch_4"]
    assert keys[: len(expected)] == expected
    assert keys[len(expected):] == ["quant_int8_dynamic", "quant_broken", "quant_scrambled",
                                       "llama_cpp"]


def test_measured_rows_have_positive_units(report):
    for r in report.rows:
        if not r.ok:
            continue
        assert r.tokens_per_second > 0 and r.seconds > 0, r.key
        if r.group != "overhead":
            assert r.step_seconds and all(s > 0 for s in r.step_seconds), r.key
    for key in ("raw_fp32", "raw_bf16", "cache_off", "context_16", "context_48"):
        assert report.row(key).prefill_tokens_per_second > 0
    for key in ("raw_fp32", "raw_bf16", "context_48", "batch_4"):
        r = report.row(key)
        assert r.bytes_per_token > 0 and r.flops_per_token > 0 and r.roofline_tokens_per_second > 0
        assert r.roofline_percent == pytest.approx(100 * r.tokens_per_second / r.roofline_tokens_per_second)


def test_rows_describe_what_was_measured(report):
    assert report.row("raw_fp32").dtype == "float32" and report.row("raw_bf16").dtype == "bfloat16"
    assert report.row("raw_bf16").bytes_per_token < report.row("raw_fp32").bytes_per_token
    assert len(report.row("raw_fp32").step_seconds) == TINY_PLAN.new_tokens - 1
    assert len(report.row("cache_off").step_seconds) == TINY_PLAN.cache_off_new_tokens - 1
    assert [report.row(f"context_{c}").context for c in (16, 48)] == [16, 48]
    assert [report.row(f"batch_{b}").batch for b in (1, 2, 4)] == [1, 2, 4]
    assert report.row("batch_1").ratio == 1.0 and report.row("context_16").ratio == 1.0
    r = report.row("qwenlab_generate")
    assert r.baseline == "raw_fp32 (time)" and r.ratio > 0 and r.seconds > 0


def test_llama_cpp_row_says_what_is_missing(report):
    row = report.row("llama_cpp")
    if importlib.util.find_spec("xllamacpp") is None:
        assert row.status == "not installed" and "pip install xllamacpp" in row.note
    else:  # installed, but the tiny model has no GGUF file to run
        assert row.status == "not available" and row.note == "no GGUF file for this model"
    assert row.tokens_per_second is None and "llama.cpp vs best: not measured" in str(report)


def test_a_quantized_variant_is_timed_with_its_own_smaller_weights(report):
    row = report.row("quant_int8_dynamic")
    assert row.ok and row.group == "quant" and row.tokens_per_second > 0 and row.step_seconds
    # int8 Linear weights (packed, not parameters) are counted at 1 byte: far less than fp32
    assert row.bytes_per_token < report.row("raw_fp32").bytes_per_token / 2
    assert row.ratio == pytest.approx(row.tokens_per_second / report.row("raw_fp32").tokens_per_second)


def test_a_variant_that_changes_answers_is_flagged_and_never_the_best_path(report):
    row = report.row("quant_scrambled")
    assert row.ok and row.keeps_answers is False and "same as fp32" in row.note
    assert report.figures["best_path"] != "quant_scrambled"
    assert report.row("raw_fp32").keeps_answers is None  # only quantized rows are checked


def test_a_variant_that_fails_becomes_an_error_row_not_a_crash(report):
    row = report.row("quant_broken")
    assert row.status == "error" and "cannot be built here" in row.note and row.tokens_per_second is None
    assert "error" in str(report)


def test_machine_model_and_figures_are_filled_in(report, tiny):
    m = report.machine
    assert m["cores"] >= 1 and m["threads"] == 1 and m["torch"] and m["date"]
    assert report.model["params"] == sum(p.numel() for p in tiny[0].parameters())
    assert report.bandwidth.array_bytes == 16 * 2**20
    assert {x.dtype for x in report.matmul} == {"float32", "bfloat16"}
    f = report.figures
    assert f["overhead_ratio"] == report.row("qwenlab_generate").ratio
    best = report.row(f["best_path"])
    assert best.ok and best.group in ("dtype", "quant") and best.keeps_answers is not False
    assert f["best_vs_raw_fp32"] == pytest.approx(best.tokens_per_second / report.row("raw_fp32").tokens_per_second)
    assert report.seconds > 0


def test_the_model_is_left_as_it_was(report, tiny):
    import torch

    model, _ = tiny
    assert model.dtype == torch.float32 and not model.training
    assert bench.decode_traffic(model).weight_bytes == report.traffic.weight_bytes  # no variant touched it
    assert isinstance(model.model.layers[0].mlp.up_proj, torch.nn.Linear)


def test_report_serializes_to_json_table_and_markdown(report):
    data = json.loads(report.to_json())
    assert [r["key"] for r in data["rows"]] == [r.key for r in report.rows]
    assert "step_seconds" not in data["rows"][0]
    assert json.loads(report.to_json(steps=True))["rows"][0]["step_seconds"]
    assert data["roofline_tokens_per_second"] > 0 and data["bandwidth"]["read_bytes_per_second"] > 0
    text = str(report)
    for r in report.rows:
        assert r.label in text
    assert "goal >= 0.97" in text
    md = report.to_markdown()
    assert "| path | decode tok/s |" in md and md.count("\n|") >= len(report.rows) + 1
    assert "<table>" in report._repr_html_()


def test_what_if_scales_the_limit_with_bytes_per_weight_and_bandwidth(report):
    rows = bench.what_if(report, bandwidths={"a": 10e9, "b": 20e9})
    by = {(r["hardware"], r["precision"]): r["roofline_tokens_per_second"] for r in rows}
    assert by[("a", "fp32")] == pytest.approx(10e9 / report.traffic.weight_bytes)
    assert by[("a", "bf16")] == pytest.approx(2 * by[("a", "fp32")])
    assert by[("a", "int8")] == pytest.approx(4 * by[("a", "fp32")])
    assert by[("b", "fp32")] == pytest.approx(2 * by[("a", "fp32")])


def test_plots_draw_the_measured_rows(report):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = bench.plot_roofline(report)
    left, right = fig.axes
    single = [r for r in report.rows if r.ok and r.group in ("dtype", "overhead", "quant", "llama.cpp")]
    assert len(left.patches) == len(single)
    assert right.get_xscale() == "log" and len(right.collections) >= 5
    assert len(bench.plot_cache(report).axes[0].lines) == 2
    assert len(bench.plot_context(report).axes[0].lines[0].get_xdata()) == 2
    assert list(bench.plot_batch(report).axes[0].lines[0].get_xdata()) == [1, 2, 4]
    plt.close("all")


def test_cli_prints_json_for_a_model_folder(tiny_dir, capsys):
    from qwenlab.cli import main

    assert main(["bench", str(tiny_dir), "--json", "--quick", "--threads", "1"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["plan"]["name"] == "quick" and data["machine"]["threads"] == 1
    assert {"raw_fp32", "qwenlab_generate", "raw_bf16", "cache_off", "batch_8", "llama_cpp"} <= {
        r["key"] for r in data["rows"]}


def test_cli_rejects_zero_threads(capsys):
    from qwenlab.cli import main

    with pytest.raises(SystemExit) as err:
        main(["bench", "--threads", "0"])
    assert err.value.code == 2 and "--threads" in capsys.readouterr().err


def test_cli_bench_quant_has_its_own_options(capsys):
    from qwenlab.cli import main

    with pytest.raises(SystemExit) as err:
        main(["bench", "quant", "--help"])
    out = capsys.readouterr().out
    assert err.value.code == 0 and "qwenlab bench quant" in out and "--rounds" in out


def test_cli_bench_quant_rejects_too_few_tokens(capsys):
    from qwenlab.cli import main

    with pytest.raises(SystemExit) as err:
        main(["bench", "quant", "--tokens", "1"])
    assert err.value.code == 2 and "--tokens" in capsys.readouterr().err


@pytest.mark.real_model
def test_offline_model_reads_its_matrices_but_not_its_untied_embedding(offline):
    model, _ = offline
    t = bench.decode_traffic(model, context=2048)
    emb = model.get_input_embeddings().weight
    assert model.get_output_embeddings().weight is not emb  # Qwen2.5-Coder-0.5B here: untied lm_head
    total = sum(p.numel() * 4 for p in model.parameters())
    assert t.embedding_bytes == emb.numel() * 4
    assert t.weight_bytes == total - emb.numel() * 4 + emb.shape[1] * 4
    assert 1.9e9 < t.weight_bytes < 2.1e9  # ~494 M weights read per token, fp32
    assert t.kv_bytes_per_token == 2 * 24 * 2 * 64 * 4  # 24 layers, 2 KV heads of 64, fp32


@pytest.mark.real_model
def test_llama_cpp_row_measures_uncached_prefill_and_fixed_length_decode_in_its_own_process(offline):
    """The row the issue found wrong (prefill 1,340 tok/s from the prompt cache): now a fresh prompt each run,
    the cache off and 0 cached tokens checked, exactly N new tokens, the roofline from the GGUF's bytes."""
    from pathlib import Path

    from qwenlab.bench import run
    from qwenlab.generation import build_inputs

    model, tokenizer = offline
    plan = bench.BenchPlan(new_tokens=6, quant_repeats=2, name="test")
    bandwidth = bench.memory_bandwidth(16, 2)
    ctx = run._Ctx(model, tokenizer, build_inputs(tokenizer, run.PROMPT), bandwidth, plan, lambda line: None)
    row = run._llama_cpp_row(ctx, None)
    assert row.ok, row.note
    assert row.new_tokens == 6 and row.repeats == 2 and row.prompt_tokens > 10
    assert row.tokens_per_second > 0 and row.prefill_tokens_per_second > 0
    assert "0 cached tokens" in row.note and "own process" in row.note
    gguf = run._find_gguf(model)
    assert row.bytes_per_token < Path(gguf).stat().st_size  # the untied input embedding is not read whole
    assert row.roofline_percent == pytest.approx(100 * row.tokens_per_second / row.roofline_tokens_per_second)


def test_classroom_load_measures_every_student_of_each_round(tiny_dir, capsys):
    from qwenlab import serve

    with serve.start(tiny_dir, reasoning="off") as server:
        report = bench.classroom_load(server, (1, 3), max_tokens=6)
    assert [r.students for r in report.rows] == [1, 3] and [len(r.runs) for r in report.rows] == [1, 3]
    for row in report.rows:
        assert row.errors == 0 and row.aggregate_tokens_per_second > 0
        assert all(0 < run.tokens <= 6 and run.first_token_seconds is not None for run in row.runs)
        assert row.first_token(0.5) <= row.first_token(0.95)
    assert "TTFT p95 s" in str(report) and report.to_dict()["students_served"] == report.students_served


def test_cli_bench_serve_rejects_a_bad_class_size(capsys):
    from qwenlab.cli import main

    with pytest.raises(SystemExit) as err:
        main(["bench", "serve", "--students", "1,x"])
    assert err.value.code == 2 and "class sizes" in capsys.readouterr().err
