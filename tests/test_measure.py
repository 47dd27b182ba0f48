"""qwenlab.measure: model copies, byte counting, step timing, peak memory, machine info — never speed."""

from __future__ import annotations

import os

import pytest
import torch

from qwenlab import measure
from qwenlab.generation import build_inputs
from qwenlab.modelfacts import facts_of


def test_a_copy_shares_the_weights_and_never_changes_the_original(tiny):
    model, _ = tiny
    twin = measure.copy_model(model)
    up, twin_up = model.model.layers[0].mlp.up_proj, twin.model.layers[0].mlp.up_proj
    assert twin_up.weight.data_ptr() == up.weight.data_ptr()  # no second copy in memory
    before = up.weight.clone()
    twin_up.weight = torch.nn.Parameter(torch.zeros_like(before), requires_grad=False)
    twin.model.layers[0].mlp.down_proj = torch.nn.Identity()
    assert torch.equal(up.weight, before) and isinstance(model.model.layers[0].mlp.down_proj, torch.nn.Linear)
    assert facts_of(twin) == facts_of(model)


def test_a_bf16_copy_converts_the_copy_only(tiny):
    model, _ = tiny
    before = model.model.layers[0].mlp.up_proj.weight.clone()
    half = measure.copy_model(model, "bfloat16")
    assert half.dtype == torch.bfloat16 and model.dtype == torch.float32
    assert torch.equal(model.model.layers[0].mlp.up_proj.weight, before)
    assert facts_of(half).name == facts_of(model).name and "bfloat16" in facts_of(half).dtype_reason


def test_weight_tensors_count_a_tied_weight_once(tiny):
    model, _ = tiny
    weights = measure.weight_tensors(model)
    assert len({id(w) for w in weights}) == len(weights) == len(list(model.parameters()))
    assert sum(measure.tensor_bytes(w) for w in weights) == sum(p.numel() * 4 for p in model.parameters())


def test_packed_int8_layers_show_their_weights_and_scales():
    import warnings

    lin = torch.nn.Sequential(torch.nn.Linear(32, 16))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        packed = torch.ao.quantization.quantize_dynamic(lin, {torch.nn.Linear}, dtype=torch.qint8)
    (weight, nbytes, is_weight), (bias, bias_bytes, _) = measure.packed_tensors(packed[0])
    assert is_weight and weight.dtype == torch.qint8 and nbytes == 32 * 16 + 4  # one per-tensor scale
    assert bias_bytes == 16 * 4
    assert measure.packed_tensors(torch.nn.Linear(4, 4)) == []


def test_time_generate_sees_every_new_token(tiny):
    model, tokenizer = tiny
    run = measure.time_generate(model, build_inputs(tokenizer, "hi"), 6)
    assert len(run.step_seconds) == 5  # 6 tokens: the first after prefill, then 5 decode steps
    assert run.seconds >= run.prefill_seconds + sum(run.step_seconds) > 0


def test_time_decode_steps_times_each_step(tiny):
    from transformers import DynamicCache

    model, tokenizer = tiny
    ids = tokenizer("hello", return_tensors="pt").input_ids
    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        logits = model(input_ids=ids, past_key_values=cache, use_cache=True).logits[:, -1]
    steps = measure.time_decode_steps(model, cache, logits, 4)
    assert len(steps) == 4 and cache.get_seq_length() == ids.shape[1] + 4


def test_torch_threads_sets_and_restores():
    before = torch.get_num_threads()
    with measure.torch_threads(1) as used:
        assert used == torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_peak_rss_sees_memory_allocated_inside_the_block():
    with measure.PeakRss() as rss:
        block = torch.ones(64 * 2**20 // 4)  # 64 MiB, written so the pages are resident
    assert rss.peak - rss.start > 32 * 2**20
    del block


def test_machine_info_names_the_machine_and_the_versions():
    info = measure.machine_info(threads=3)
    assert info["threads"] == 3 and info["cores"] >= 1 and info["torch"] == torch.__version__
    assert info["cpu"] and info["date"] and info["python"] and isinstance(info["bf16_native"], bool)


def test_load_average_is_none_where_the_os_has_none(monkeypatch):
    if hasattr(os, "getloadavg"):
        assert len(measure.load_average()) == 3
        monkeypatch.delattr(os, "getloadavg")  # as on Windows
    assert measure.load_average() is None
    assert measure.machine_info(threads=1)["load_average"] == "?"


@pytest.mark.parametrize("dtype, name", [(torch.float32, "float32"), (torch.bfloat16, "bfloat16")])
def test_dtype_name(dtype, name):
    assert measure.dtype_name(dtype) == name
