"""qwenlab.bench.fastpath and qwenlab.quant.int4: the own greedy loop decodes what generate() decodes, the
weight-only int8/int4 layers compute what the fp32 layer computes (up to rounding), a compiled decode step
compiles once, and the fast-path table has its rows — never speed (tests/benchmarks/ and
``qwenlab bench fastpath`` measure speed)."""

from __future__ import annotations

from copy import deepcopy

import pytest
import torch

from qwenlab.bench import fastpath as fp
from qwenlab.commands.bench_fastpath import fastpath_main
from qwenlab.generation import build_inputs
from qwenlab.measure import copy_model
from qwenlab.quant.int4 import Int4Linear, Int8WeightOnlyLinear, int4_kernel_error, weight_only


@pytest.fixture(scope="module")
def varied(tiny):
    """The tiny model with seeded noise on its weights: its greedy tokens change from step to step (the
    random-weight original repeats one token, which would make "same tokens" trivially true)."""
    model, tokenizer = tiny
    copy = deepcopy(model)  # its own tensors: the session's tiny model must stay as it is for later tests
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in copy.parameters():
            if p.dim() == 2:
                p.add_(torch.randn(p.shape, generator=gen) * 0.2)
    ids = build_inputs(tokenizer, "Write a haiku about the sea.")["input_ids"]
    with torch.inference_mode():
        out = copy.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=10,
                            min_new_tokens=10)
    expected = out[0, ids.shape[1]:].tolist()
    assert len(set(expected)) > 2, "the noisy tiny model should not repeat one token"
    return copy, ids, expected


@pytest.mark.parametrize("static", [False, True])
def test_own_greedy_loop_decodes_the_tokens_of_generate(varied, static):
    model, ids, expected = varied
    got = fp.greedy_decode(model, ids, len(expected), static=static)
    assert got.tokens == expected
    assert len(got.step_seconds) == len(expected) - 1 and got.prefill_seconds > 0


def test_compiled_step_gives_the_same_tokens_and_never_recompiles_after_warm_up(varied):
    model, ids, expected = varied
    torch._dynamo.reset()
    with torch._inductor.config.patch(fp.INDUCTOR_OPTIONS | {"force_disable_caches": False}):
        step = fp.compiled_step(model)
        cache = fp._new_cache(model, True, ids.shape[1] + len(expected))
        before = fp.graphs_compiled()
        first = fp.greedy_decode(model, ids, len(expected), static=True, step=step, cache=cache)
        compiled = fp.graphs_compiled()
        again = fp.greedy_decode(model, ids, len(expected), static=True, step=step, cache=cache)
    torch._dynamo.reset()
    assert first.tokens == expected and again.tokens == expected
    assert compiled - before == 1, "one graph for every decode step (static shapes)"
    assert fp.graphs_compiled() == compiled, "a second decode on the same cache must not recompile"


def _linear(in_features: int, out_features: int) -> torch.nn.Linear:
    torch.manual_seed(0)
    return torch.nn.Linear(in_features, out_features)


@pytest.mark.skipif(int4_kernel_error() is not None, reason=f"no int4 CPU kernel: {int4_kernel_error()}")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_int4_layer_is_close_to_the_fp32_layer_and_its_weights_are_the_group_grid(dtype):
    lin = _linear(256, 48)
    q = Int4Linear(lin, group_size=32, dtype=dtype)
    x = torch.randn(3, 256)
    with torch.no_grad():
        ref = lin(x)
        err = float((q(x) - ref).norm() / ref.norm())
    assert err < 0.1  # 4 bits, groups of 32: a few percent
    # the kernel's weights are, group by group, 16 evenly spaced levels from the group's min to its max
    w, deq = lin.weight.detach(), q.weight()
    groups = w.reshape(48, 8, 32)
    lo, hi = groups.amin(dim=2, keepdim=True), groups.amax(dim=2, keepdim=True)
    level = (deq.reshape(48, 8, 32) - lo) / ((hi - lo) / 15)
    tol = 0.05 if dtype == torch.float32 else 0.6  # bf16 scales round the levels a little
    assert (level - level.round()).abs().max() < tol
    assert (deq - w).abs().max() <= ((hi - lo) / 15).max() * 0.6


def test_int8_weight_only_layer_is_within_int8_rounding_of_the_fp32_layer():
    lin = _linear(128, 40)
    q = Int8WeightOnlyLinear(lin, dtype=torch.float32)
    x = torch.randn(2, 5, 128)
    with torch.no_grad():
        ref = lin(x)
        got = q(x)
    assert got.shape == ref.shape
    assert float((got - ref).norm() / ref.norm()) < 0.01
    assert sum(b for _, b, _ in q.quantized_tensors()) < 128 * 40 * 4 / 3  # int8 codes, not fp32


def test_int4_refuses_a_layer_whose_width_is_not_a_multiple_of_the_group():
    with pytest.raises(ValueError, match="group_size"):
        Int4Linear(_linear(96, 8), group_size=64)


def test_weight_only_copy_leaves_the_original_model_alone(varied):
    model, ids, expected = varied
    before = model.lm_head.weight.detach().clone()
    copy = weight_only(model, 8)
    assert isinstance(copy.lm_head, Int8WeightOnlyLinear)
    assert isinstance(model.lm_head, torch.nn.Linear) and torch.equal(model.lm_head.weight, before)
    assert fp.greedy_decode(copy, ids, 4).tokens[:1] == expected[:1]  # int8 weights: the same first token


def test_fastpath_measures_each_step_with_speed_bytes_and_quality(tiny):
    model, tokenizer = tiny
    report = fp.fastpath(model, tokenizer, quick=True, new_tokens=6, llama_cpp=False,
                         steps=["fp32_generate", "fp32_loop", "int8_static"])
    assert [r.key for r in report.rows] == ["fp32_generate", "fp32_loop", "int8_static"]
    base, loop, int8 = report.rows
    assert all(r.ok and r.tokens_per_second and r.tokens_per_second > 0 for r in report.rows), report
    assert base.vs_fp32 == pytest.approx(1.0)
    assert loop.probes_kept == loop.probes_total == 4 and loop.perplexity == base.perplexity  # same weights
    assert int8.bytes_per_token < base.bytes_per_token / 2  # int8 codes (the tiny model's KV cache is small)
    assert int8.probes_total == 4 and int8.perplexity is not None
    assert "fp32, model.generate" in report.to_markdown()


def test_bench_fastpath_command_rejects_an_unknown_step(capsys):
    with pytest.raises(SystemExit):
        fastpath_main(["--steps", "warp_drive"], prog="qwenlab bench fastpath")
    assert "unknown steps" in capsys.readouterr().err
