"""qwenlab.quant: from-scratch quantizers, footprint, CPU methods, the fast recipe, compare().

Speed is never asserted here (``qwenlab bench quant`` measures it); what a user would notice is:
the error ordering of the schemes, honest byte counts, answers that do not change, clear errors.
"""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import qwenlab
from qwenlab import quant
from qwenlab.measure import copy_model
from qwenlab.modelfacts import facts_of


# ------------------------------------------------------------------------------------ from scratch


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("bits", [8, 4])
def test_error_grows_from_group_to_channel_to_tensor_on_an_outlier_channel(seed, bits):
    w = quant.with_outlier_channel(rows=128, cols=256, factor=30.0, channel=seed * 7, seed=seed)
    tensor = quant.quant_error(w, bits, "per-tensor").rel_error
    channel = quant.quant_error(w, bits, "per-channel").rel_error
    group = quant.quant_error(w, bits, "group", 32).rel_error
    assert tensor >= channel >= group
    assert tensor > 2 * channel  # the outlier row ruins one shared scale


def test_smaller_groups_cost_more_bits_and_err_less():
    w = quant.with_outlier_channel(seed=3)
    table = quant.error_table(w, [(4, "group", 128), (4, "group", 64), (4, "group", 32)])
    assert [round(e.bits_per_weight, 3) for e in table] == [4.25, 4.5, 5.0]
    assert table[0].rel_error >= table[1].rel_error >= table[2].rel_error


def test_int4_groups_beat_int8_per_tensor_when_one_channel_is_an_outlier():
    w = quant.with_outlier_channel(factor=30.0)
    assert quant.quant_error(w, 4, "group", 32).rel_error < quant.quant_error(w, 8, "per-tensor").rel_error


def test_quantize_tensor_docstring_example():
    qt = quant.quantize_tensor(torch.tensor([[0.5, -1.0, 0.25]]), bits=8, scheme="per-tensor")
    assert qt.values.tolist() == [[64, -127, 32]]
    assert qt.values.dtype == torch.int8


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 6), groups=st.integers(1, 4), bits=st.sampled_from([8, 4]),
       scheme=st.sampled_from(["per-tensor", "per-channel", "group-8"]), seed=st.integers(0, 10_000))
def test_round_trip_error_is_at_most_half_a_step(rows, groups, bits, scheme, seed):
    w = torch.randn(rows, 8 * groups, generator=torch.Generator().manual_seed(seed))
    qt = quant.quantize_tensor(w, bits, scheme)
    err = (w - qt.dequantize()).abs()
    ranges = {"per-tensor": w.reshape(1, 1, -1), "per-channel": w.reshape(rows, 1, -1),
              "group-8": w.reshape(rows, groups, 8)}[scheme]  # the weights that share one scale
    step = (ranges.abs().amax(dim=-1, keepdim=True) / (2 ** (bits - 1) - 1)).expand_as(ranges).reshape(w.shape)
    assert bool((err <= step / 2 + 1e-6).all())
    assert int(qt.values.abs().max()) <= 2 ** (bits - 1) - 1


def test_bad_settings_say_what_to_choose():
    with pytest.raises(ValueError, match="does not divide"):
        quant.quantize_tensor(torch.ones(2, 10), 4, "group", 64)
    with pytest.raises(ValueError, match="bits=5"):
        quant.quantize_tensor(torch.ones(2, 8), 5)
    with pytest.raises(ValueError, match="per-channel"):
        quant.quantize_tensor(torch.ones(2, 8), 8, "per-row")


def test_outlier_channels_finds_the_planted_row():
    (row, ratio), *_ = quant.outlier_channels(quant.with_outlier_channel(channel=11, factor=30.0))
    assert row == 11 and ratio > 10


def test_plot_weight_error_draws_three_panels():
    import matplotlib

    matplotlib.use("Agg")
    fig = quant.plot_weight_error(quant.with_outlier_channel(), name="demo")
    assert len(fig.axes) == 3
    assert "demo" in fig.axes[0].get_title()


# ------------------------------------------------------------------------------------------ footprint


def test_footprint_equals_the_sum_of_parameter_bytes(tiny):
    model, _ = tiny
    fp = qwenlab.model_footprint(model)
    assert fp.total_bytes == sum(p.numel() * p.element_size() for p in model.parameters())
    assert fp.params == sum(p.numel() for p in model.parameters())
    assert sum(fp.by_dtype.values()) == fp.total_bytes == sum(fp.by_module.values())
    assert fp.expected["fp32"] == 4 * fp.params
    assert "float32" in str(fp) and "<table>" in fp._repr_html_()


def test_memory_math_is_params_times_bytes():
    mm = quant.memory_math(494_032_768)
    assert mm["fp32"] == 4 * 494_032_768 and mm["bf16 / fp16"] == 2 * 494_032_768
    assert mm["int8 (per-channel)"] == 494_032_768


# ----------------------------------------------------------------------------- methods on the tiny model


@pytest.fixture(scope="module")
def untied_tiny(tiny):
    """The tiny model with its own lm_head weight (like the offline model; the tiny one ties it to the
    embedding, so quantizing lm_head alone would add a copy instead of shrinking one)."""
    model, tokenizer = tiny
    untied = copy_model(model)
    untied.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone(), requires_grad=False)
    return untied, tokenizer


@pytest.fixture(scope="module")
def fast_tiny(tiny):
    return quant.quantize(tiny.model, "fast")


def test_fast_recipe_stores_weights_in_int8_and_leaves_the_original_alone(tiny, fast_tiny):
    model, _ = tiny
    before = qwenlab.model_footprint(model)
    after = qwenlab.model_footprint(fast_tiny)
    assert type(model.lm_head).__name__ == "Linear" and type(model.model.embed_tokens).__name__ == "Embedding"
    assert {type(m).__name__ for m in fast_tiny.modules()} >= {"Int8Linear", "Int8Embedding"}
    assert not any(isinstance(m, torch.nn.Linear) for m in fast_tiny.modules())
    # the tiny model ties lm_head to the embedding: int8 needs two copies, still ~half of one fp32 copy
    assert after.total_bytes < 0.6 * before.total_bytes
    assert after.by_dtype.get("qint8", 0) + after.by_dtype.get("int8", 0) > 0.9 * after.total_bytes


def test_footprint_of_a_quantized_model_counts_every_weight_once(untied_tiny):
    model, _ = untied_tiny
    fast = quant.quantize(model, "fast")
    fp = qwenlab.model_footprint(fast)
    assert fp.params == sum(p.numel() for p in model.parameters())  # every weight is still there, as int8
    linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    # 1 byte per Linear weight + one fp32 scale per output channel
    assert fp.by_dtype["qint8"] == sum(m.weight.numel() + 4 * m.out_features for m in linear)
    assert fp.by_dtype["int8"] == model.get_input_embeddings().weight.numel()


def test_fast_recipe_logits_stay_close_to_fp32(tiny, fast_tiny):
    model, tokenizer = tiny
    ids = tokenizer("量化 quantization keeps the answer", return_tensors="pt").input_ids
    with torch.inference_mode():
        ref, got = model(ids).logits, fast_tiny(ids).logits
    assert float((got - ref).norm() / ref.norm()) < 0.05


@pytest.mark.parametrize("scale", [1.0, 40.0])
def test_int8_linear_is_accurate_with_outlier_channels(scale):
    """Weights in [-63, 63] keep fbgemm's AVX2 int16 pair sums from saturating at full 8-bit activations
    (with weights up to 127 this input comes out several percent wrong)."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(256, 96)
    layer = quant.Int8Linear(lin)
    x = torch.randn(5, 256)
    x[:, :4] *= scale  # a few outlier channels, as real activations have
    with torch.inference_mode():
        rows = torch.cat([layer(x[i:i + 1]) for i in range(5)])  # decode: one token at a time
        together = layer(x)  # prefill: all tokens in one call
        exact = lin(x)
    assert float((rows - exact).norm() / exact.norm()) < 0.03
    assert float((together - exact).norm() / exact.norm()) < 0.03
    assert int(layer.weight().int_repr().abs().max()) <= quant.WEIGHT_QMAX


def test_an_outlier_token_does_not_spoil_the_other_tokens_of_a_prompt():
    torch.manual_seed(1)
    lin = torch.nn.Linear(128, 64, bias=False)
    layer = quant.Int8Linear(lin)
    x = torch.randn(6, 128)
    x[0] *= 1000  # like the first token of a prompt in many LLMs
    with torch.inference_mode():
        got, exact = layer(x), lin(x)
    for i in range(6):
        assert float((got[i] - exact[i]).norm() / exact[i].norm()) < 0.03


@pytest.mark.parametrize("method", ["dynamic-int8", "dynamic-int8-lm-head", "torchao-int8-weight-only",
                                    "torchao-int8-dynamic", "bf16"])
def test_every_cpu_method_builds_a_smaller_model_that_generates(untied_tiny, method):
    model, tokenizer = untied_tiny
    variant = quant.quantize(model, method)
    out = qwenlab.generate(variant, tokenizer, "hi", max_new_tokens=3, do_sample=False)
    assert out.completion_tokens == 3
    assert qwenlab.model_footprint(variant).total_bytes < qwenlab.model_footprint(model).total_bytes
    assert type(model.lm_head).__name__ == "Linear" and model.lm_head.weight.dtype == torch.float32


def test_modules_limits_the_fast_recipe_to_the_named_layers(tiny):
    model, _ = tiny
    only_down = quant.quantize(model, "fast", modules=["mlp.down_proj"])
    kinds = {name: type(m).__name__ for name, m in only_down.named_modules()}
    assert kinds["model.layers.0.mlp.down_proj"] == "Int8Linear"
    assert kinds["model.layers.0.mlp.up_proj"] == "Linear" and kinds["model.embed_tokens"] == "Embedding"
    with pytest.raises(ValueError, match="No nn.Linear layer matched"):
        quant.quantize(model, "fast", modules=["no_such_layer"])


def test_a_quantized_copy_keeps_the_name_of_its_model(tiny, fast_tiny):
    model, _ = tiny
    original, copy = facts_of(model), facts_of(fast_tiny)
    assert (copy.name, copy.folder, copy.found_in) == (original.name, original.folder, original.found_in)
    assert "fast" in copy.dtype_reason and copy.dtype_reason != original.dtype_reason


def test_fp32_is_the_model_itself_even_in_place(tiny):
    model, _ = tiny
    assert quant.quantize(model, "fp32") is model
    assert quant.quantize(model, "fp32", inplace=True) is model
    assert isinstance(model.lm_head, torch.nn.Linear) and model.lm_head.weight.dtype == torch.float32


def test_gguf_needs_a_gguf_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a .gguf file"):
        quant.gguf_file(tmp_path)
    with pytest.raises(ValueError, match="load_quantized"):
        quant.quantize(torch.nn.Linear(2, 2), "gguf")


def test_wrong_method_names_are_explained(tiny):
    model, _ = tiny
    with pytest.raises(ValueError, match="did you mean dynamic-int8"):
        quant.quantize(model, "dynamic_int8")
    with pytest.raises(ValueError, match="load_quantized"):
        quant.quantize(model, "gguf")
    with pytest.raises(ValueError, match="load_quantized"):
        quant.quantize(model, "bnb-4bit")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the GPU methods can run")
@pytest.mark.parametrize("method", sorted(quant.GPU_METHODS))
def test_gpu_methods_on_a_cpu_say_what_to_use_instead(method):
    with pytest.raises(quant.GpuRequiredError, match="needs a CUDA GPU.*quantize\\(model, 'fast'\\)"):
        quant.load_quantized("offline", method)


def test_cpu_variants_leave_the_model_they_get_unchanged(tiny):
    model, tokenizer = tiny
    ids = tokenizer("abc", return_tensors="pt").input_ids
    with torch.inference_mode():
        before = model(ids).logits.clone()
    for build in quant.cpu_variants().values():
        build(model)
    with torch.inference_mode():
        assert torch.equal(model(ids).logits, before)
    assert {"qwenlab fast CPU (int8 per-channel)", "dynamic int8, torch defaults (all Linear)"} <= set(
        quant.cpu_variants())


# ------------------------------------------------------------------------------- probes and compare


def test_compare_measures_every_variant_in_one_table(tiny, one_thread):
    model, tokenizer = tiny
    cmp = qwenlab.compare({"fp32": model, "fast": lambda: quant.quantize(model, "fast")}, tokenizer,
                          questions=quant.probes()[:2], max_new_tokens=3, decode_tokens=3, repeats=1,
                          perplexity_tokens=32, label="test")
    ref, fast = cmp.rows
    assert (ref.name, fast.name) == ("fp32", "fast") and cmp.reference == "fp32"
    assert ref.speedup == 1.0 and ref.kept == ref.total == 2
    assert ref.load_seconds is None and fast.load_seconds > 0 and fast.peak_rss_bytes is not None
    assert fast.weight_bytes < ref.weight_bytes
    assert ref.decode_tokens_per_second > 0 and fast.prefill_tokens_per_second > 0 and ref.perplexity > 1
    assert "decode tok/s" in str(cmp) and "fp32" in cmp._repr_html_() and "test" in cmp.header()
    again = quant.Comparison.from_json(cmp.to_json())
    assert again.rows[1].answers == fast.answers and again.measured == json.loads(cmp.to_json())["measured"]
    assert len(str(cmp.answers()).splitlines()) == 3


def test_compare_rejects_an_unknown_reference(tiny):
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="reference='int4'"):
        qwenlab.compare({"fp32": model}, tokenizer, reference="int4")


def test_answer_table_marks_the_answers_that_changed():
    rows = [quant.VariantResult("fp32", 4000, 10.0, 100.0, 9.7, ["Paris", "4"], 2, 2),
            quant.VariantResult("int4", 1000, 25.0, 90.0, 12.0, ["Paris", "5"], 1, 1)]
    answers = quant.Comparison(rows, "fp32", ["capital of France?", "2 + 2?"]).answers()
    text = str(answers)
    assert "✗ 5" in text and "✗ Paris" not in text and len(text.splitlines()) == 3
    assert "<td style='color:#c44e52'>✗ 5</td>" in answers._repr_html_()


def test_recipe_benchmark_says_whether_the_goal_was_met():
    def result(speedup, kept):
        return quant.RecipeBenchmark("m", 8, 3, 10.0, 10.0 * speedup, speedup, [speedup] * 3, kept, 14, [],
                                     4000, 1000, {"cpu": "x", "threads": 2, "load_average": None})

    assert str(result(2.5, 14)).endswith("met)") and "NOT met" not in str(result(2.5, 14))
    assert "NOT met" in str(result(2.5, 13)) and "NOT met" in str(result(1.5, 14))


def test_plots_of_a_comparison(tiny):
    import matplotlib

    matplotlib.use("Agg")
    rows = [quant.VariantResult("fp32", 4000, 10.0, 100.0, 9.7, ["Paris"], 1, 1),
            quant.VariantResult("fast", 1000, 25.0, 90.0, 9.8, ["Paris"], 1, 1, speedup=2.5)]
    cmp = quant.Comparison(rows, "fp32", ["q"], {"when": "now", "cpu": "x", "threads": 2})
    assert len(quant.plot_comparison(cmp).axes) == 4
    assert quant.plot_speed_quality(cmp).axes[0].get_xlabel().startswith("decode speed-up")


# ------------------------------------------------------------------------------------- real model


@pytest.mark.real_model
def test_fast_recipe_keeps_every_probe_answer_of_the_fp32_model(offline):
    model, tokenizer = offline
    fast = quant.quantize(model, "fast")
    ref = quant.probe_answers(model, tokenizer)
    got = quant.probe_answers(fast, tokenizer)
    changed = [(p.question, a, b) for p, a, b in zip(quant.probes(), ref, got) if not quant.same_answer(a, b)]
    assert changed == []
    assert sum(quant.is_correct(a, p) for a, p in zip(got, quant.probes())) == len(got)
    assert qwenlab.model_footprint(fast).total_bytes < 0.3 * qwenlab.model_footprint(model).total_bytes
    text = quant.perplexity_text("zh")  # the Chinese half is enough to see a broken model (and is quick)
    assert quant.perplexity(fast, tokenizer, text) < 1.03 * quant.perplexity(model, tokenizer, text)


# ------------------------------------------------------------------------------------------ smoothing


@pytest.fixture(scope="module")
def outlier_tiny(tiny):
    """The tiny model with channel 5 of every input_layernorm 50x larger: an activation outlier channel."""
    model, tokenizer = tiny
    planted = copy_model(model)
    for layer in planted.model.layers:
        w = layer.input_layernorm.weight.detach().clone()
        w[5] *= 50
        layer.input_layernorm.weight = torch.nn.Parameter(w, requires_grad=False)
    return planted, tokenizer


def test_activation_ranges_show_the_outlier_channel(outlier_tiny):
    model, tokenizer = outlier_tiny
    ranges = quant.activation_ranges(model, tokenizer)
    q_in = ranges["model.layers.0.self_attn.q_proj"]
    assert int(q_in.argmax()) == 5 and float(q_in.max() / q_in.median()) > 20


def test_smoothing_changes_nothing_in_fp32_but_flattens_the_outlier(outlier_tiny):
    model, tokenizer = outlier_tiny
    scales = quant.smoothing_scales(model, quant.activation_ranges(model, tokenizer))
    assert len(scales) == 2 * len(model.model.layers)  # attention and MLP input of every layer
    smoothed = quant.apply_smoothing(model, scales)
    ids = tokenizer("平滑 smoothing", return_tensors="pt").input_ids
    with torch.inference_mode():
        assert torch.allclose(smoothed(ids).logits, model(ids).logits, rtol=1e-4, atol=1e-4)
    before = quant.activation_ranges(model, tokenizer)["model.layers.0.self_attn.q_proj"]
    after = quant.activation_ranges(smoothed, tokenizer)["model.layers.0.self_attn.q_proj"]
    assert float(after.max() / after.median()) < 0.5 * float(before.max() / before.median())


def test_smoothing_makes_the_fast_recipe_more_accurate_on_outlier_activations(outlier_tiny):
    model, tokenizer = outlier_tiny
    ids = tokenizer("量化 quantization keeps the answer", return_tensors="pt").input_ids
    with torch.inference_mode():
        ref = model(ids).logits
        errors = {smooth: float((quant.quantize(model, "fast", smooth=smooth)(ids).logits - ref).norm() / ref.norm())
                  for smooth in (False, True)}
    assert errors[True] < errors[False]
