"""load_model: name/path resolution, safe defaults, dtype choice, summary."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import torch

import qwenlab
from qwenlab import catalog
from qwenlab.env import bf16_native
from qwenlab.models import ModelNotAvailableError, UnsafeWeightsError, choose_dtype

from .conftest import PROBE


def test_tiny_folder_loads_with_summary(tiny):
    model, tokenizer = tiny
    s = tiny.summary
    assert s.params == sum(p.numel() for p in model.parameters())
    assert s.dtype == "float32" and s.device == "cpu"
    assert s.memory_bytes == sum(p.numel() * p.element_size() for p in model.parameters()) + sum(
        b.numel() * b.element_size() for b in model.buffers())
    assert s.found_in == "local folder"
    assert "Qwen3ForCausalLM" in s._repr_html_() and "参数量" in str(s)


def test_auto_dtype_is_bf16_only_where_native():
    dtype, reason = choose_dtype("cpu", "auto")
    native, _ = bf16_native("cpu")
    assert dtype == (torch.bfloat16 if native else torch.float32)
    assert reason  # the choice is explained


def test_unknown_dtype_names_the_choices():
    with pytest.raises(ValueError, match="bfloat16"):
        choose_dtype("cpu", "float8_nonsense")


def test_never_existing_model_id_names_closest_valid_ids():
    with pytest.raises(catalog.UnknownModelError) as err:
        qwenlab.load_model("qwen/Qwen-0.5B")
    message = str(err.value)
    assert "Qwen/Qwen1.5-0.5B-Chat" in message and "Qwen/Qwen2.5-0.5B-Instruct" in message


def test_missing_catalog_model_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv("QWENLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms"))
    with pytest.raises(ModelNotAvailableError) as err:
        qwenlab.load_model("Qwen/Qwen2.5-0.5B-Instruct", download=False)
    assert "qwenlab download Qwen/Qwen2.5-0.5B-Instruct" in str(err.value)
    assert "offline" in str(err.value)


def test_pickle_weights_are_refused_unless_allowed(tiny, tmp_path):
    model, tokenizer = tiny
    folder = tmp_path / "pickled"
    model.config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(UnsafeWeightsError, match="allow_pickle=True"):
        qwenlab.load_model(folder)
    loaded, _ = qwenlab.load_model(folder, allow_pickle=True, dtype="float32")
    assert torch.equal(loaded.model.embed_tokens.weight, model.model.embed_tokens.weight)


def test_folder_without_weights_is_reported_as_incomplete(tiny_dir, tmp_path):
    folder = tmp_path / "half"
    shutil.copytree(tiny_dir, folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="interrupted"):
        qwenlab.load_model(folder)


def test_folder_without_config_is_not_a_model_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        qwenlab.load_model(tmp_path)


def test_catalog_name_found_in_modelscope_cache_before_any_download(tiny_dir, tmp_path, monkeypatch):
    ms = tmp_path / "modelscope"
    shutil.copytree(tiny_dir, ms / "models" / "Qwen" / "Qwen3-0.6B")
    monkeypatch.setenv("MODELSCOPE_CACHE", str(ms))
    monkeypatch.setenv("QWENLAB_HOME", str(tmp_path / "home"))
    loaded = qwenlab.load_model("Qwen/Qwen3-0.6B", download=False)
    assert loaded.summary.found_in == "ModelScope cache"
    assert loaded.summary.name == "Qwen/Qwen3-0.6B"


def test_catalog_name_found_in_huggingface_cache(tiny_dir, tmp_path):
    """A snapshot laid out like huggingface_hub's cache is found (HF_HUB_CACHE is read at import: subprocess)."""
    repo = tmp_path / "hub" / "models--Qwen--Qwen2.5-0.5B-Instruct"
    snapshot = repo / "snapshots" / ("a" * 40)
    shutil.copytree(tiny_dir, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    code = ("import qwenlab; r = qwenlab.resolve('Qwen/Qwen2.5-0.5B-Instruct', download=False); "
            "print(r.found_in, '|', r.folder)")
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "QWENLAB_HOME": str(tmp_path / "home"),
           "MODELSCOPE_CACHE": str(tmp_path / "ms")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"Hugging Face cache | {snapshot}"


def test_load_model_never_trusts_remote_code_by_default(tiny_dir, tmp_path):
    folder = tmp_path / "remote"
    shutil.copytree(tiny_dir, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForCausalLM": "evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "evil.py").write_text("raise SystemExit('remote code ran')\n")
    model, _ = qwenlab.load_model(folder)  # the built-in Qwen3 class is used; evil.py never runs
    assert type(model).__name__ == "Qwen3ForCausalLM"


def test_course_model_prefers_environment_variable(monkeypatch):
    monkeypatch.setenv("QWENLAB_MODEL", "Qwen/Qwen2.5-0.5B-Instruct")
    assert qwenlab.course_model() == "Qwen/Qwen2.5-0.5B-Instruct"


def test_course_model_falls_back_to_offline_with_a_banner(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("QWENLAB_MODEL", raising=False)
    monkeypatch.setenv("QWENLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms"))
    # no hub is reachable on CI; if one is, the default model is the right answer
    chosen = qwenlab.course_model(probe_timeout=2.0)
    if chosen == "offline":
        assert "offline" in capsys.readouterr().err
    else:
        assert chosen == catalog.DEFAULT_MODEL


@pytest.mark.real_model
def test_offline_model_answers_the_probe(offline):
    model, tokenizer = offline
    result = qwenlab.generate(model, tokenizer, PROBE, do_sample=False, max_new_tokens=8)
    assert "Paris" in result.text
    assert result.finish_reason == "stop"


@pytest.mark.real_model
def test_course_model_one_liner_from_the_readme_works(offline_dir):
    code = "import qwenlab; m, t = qwenlab.load_model(qwenlab.course_model()); print(type(m).__name__)"
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ForCausalLM")
    print(f"one-liner took {time.perf_counter() - start:.1f} s")
