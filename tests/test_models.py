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
from qwenlab import catalog, env
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


@pytest.mark.parametrize("flags, dtype, why", [
    ({"avx2", "amx_bf16"}, torch.bfloat16, "AMX"),
    ({"avx2", "avx512_bf16"}, torch.bfloat16, "AVX512-BF16"),
    ({"avx2", "avx512f"}, torch.float32, "emulated"),
    (set(), torch.float32, "emulated"),
])
def test_auto_dtype_is_bf16_only_where_the_cpu_computes_it(monkeypatch, flags, dtype, why):
    monkeypatch.setattr(env, "cpu_flags", lambda: flags)
    chosen, reason = choose_dtype("cpu", "auto")
    assert chosen == dtype and why in reason


def test_unknown_dtype_names_the_choices():
    with pytest.raises(ValueError, match="bfloat16"):
        choose_dtype("cpu", "float8_nonsense")


def test_never_existing_model_id_names_closest_valid_ids():
    with pytest.raises(catalog.UnknownModelError) as err:
        qwenlab.load_model("qwen/Qwen-0.5B")
    message = str(err.value)
    assert "Qwen/Qwen1.5-0.5B-Chat" in message and "Qwen/Qwen2.5-0.5B-Instruct" in message


@pytest.mark.parametrize("typo, first", [
    ("qwen/Qwen-0.5B", None),  # seed 001: no such model, org spelled the old ModelScope way
    ("Qwen/Qwen3-0.6b", "Qwen/Qwen3-0.6B"),  # a catalog id in the wrong case
    ("qwen3-0.6B", "Qwen/Qwen3-0.6B"),  # a bare catalog name in the wrong case
])
def test_mistyped_catalog_id_names_the_closest_ids_before_any_download(typo, first, monkeypatch, tmp_path):
    from qwenlab import mirror

    monkeypatch.setenv("QWENLAB_HOME", str(tmp_path / "home"))
    with mirror.MirrorServer({}) as srv:
        monkeypatch.setenv("HF_ENDPOINT", srv.url)
        with pytest.raises(catalog.UnknownModelError) as err:
            qwenlab.load_model(typo)
    assert not srv.log, "a mistyped id must fail before asking any source"
    assert err.value.suggestions and all(s in catalog.CATALOG for s in err.value.suggestions)
    if first:
        assert err.value.suggestions[0] == first and f"lists it as {first!r}" in str(err.value)
    else:
        assert {"Qwen/Qwen1.5-0.5B-Chat", "Qwen/Qwen2.5-0.5B-Instruct"} <= set(err.value.suggestions)


def test_any_hub_repo_id_is_downloaded_and_loaded_with_a_one_line_note(tiny_dir, monkeypatch, tmp_path):
    """A repo outside the catalog (the mirror serves the tiny Qwen3 under a real Qwen id) loads like a catalog one."""
    from qwenlab import mirror
    from qwenlab.paths import models_dir

    repo = "Qwen/Qwen2.5-1.5B-Instruct"
    monkeypatch.setenv("QWENLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with mirror.MirrorServer({repo: tiny_dir}) as srv:
        monkeypatch.setenv("HF_ENDPOINT", srv.url)
        with pytest.warns(catalog.NotInCatalogWarning, match="not in the qwenlab catalog") as said:
            loaded = qwenlab.load_model(repo, device="cpu", dtype="float32")
    assert len(said) == 1 and "\n" not in str(said[0].message)
    assert srv.requests("model.safetensors", "GET")
    s = loaded.summary
    assert (s.name, s.found_in, s.folder) == (repo, "downloaded", str(models_dir() / "Qwen--Qwen2.5-1.5B-Instruct"))
    assert "not in the catalog" in s.catalog_note and "not in the catalog" in str(s)
    assert qwenlab.generate(*loaded, "hi", max_new_tokens=3, do_sample=False).completion_tokens == 3
    # the second time it is on disk: no source is asked
    with mirror.MirrorServer({}) as empty, pytest.warns(catalog.NotInCatalogWarning):
        monkeypatch.setenv("HF_ENDPOINT", empty.url)
        again = qwenlab.resolve(repo)
    assert again.found_in == "qwenlab cache" and again.info is None and not empty.log


def test_repo_outside_the_catalog_not_on_disk_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv("QWENLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms"))
    with pytest.warns(catalog.NotInCatalogWarning), pytest.raises(ModelNotAvailableError) as err:
        qwenlab.load_model("Qwen/Qwen2.5-1.5B-Instruct", download=False)
    assert "qwenlab download Qwen/Qwen2.5-1.5B-Instruct" in str(err.value)


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
    assert loaded.summary.catalog_note.startswith("Qwen/Qwen3-0.6B: 思考模式")  # catalog facts kept


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


@pytest.fixture
def nothing_on_disk(monkeypatch, tmp_path):
    monkeypatch.delenv("QWENLAB_MODEL", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("QWENLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms"))


def test_course_model_falls_back_to_offline_with_a_banner_when_downloads_are_off(nothing_on_disk, monkeypatch,
                                                                                capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert qwenlab.course_model() == "offline"
    banner = capsys.readouterr().err
    assert "using the offline model" in banner and "HF_HUB_OFFLINE=1" in banner


def test_course_model_is_the_default_when_a_source_answers(nothing_on_disk, monkeypatch, capsys):
    from qwenlab import mirror

    with mirror.MirrorServer({}) as classroom:
        monkeypatch.setenv("HF_ENDPOINT", classroom.url)
        assert qwenlab.course_model() == catalog.DEFAULT_MODEL
    assert classroom.requests("/", "HEAD")  # it asked the source
    assert capsys.readouterr().err == ""  # no banner


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



@pytest.mark.real_model
def test_release_memory_hands_a_deleted_models_weights_back_to_the_system(offline_dir):
    """Notebook 00's sequence in a fresh process: load, generate, ``del model`` -> the process still holds most
    of the weights; release_memory() gives them back (so a second process, e.g. run_qwen.py, can use them)."""
    import ctypes.util

    if "libc.so.6" not in (ctypes.util.find_library("c") or ""):
        pytest.skip("malloc_trim is glibc's; other allocators return memory on their own")
    code = f"""
import gc, psutil, torch, qwenlab.models
from transformers import AutoModelForCausalLM, AutoTokenizer
rss = lambda: psutil.Process().memory_info().rss
tok = AutoTokenizer.from_pretrained({str(offline_dir)!r})
model = AutoModelForCausalLM.from_pretrained({str(offline_dir)!r}, dtype=torch.float32)
inputs = tok.apply_chat_template([{{"role": "user", "content": "hi"}}], add_generation_prompt=True,
                                 return_dict=True, return_tensors="pt")
model.generate(**inputs, max_new_tokens=4, do_sample=False)
loaded = rss()
del model
gc.collect()
freed = rss()
released = qwenlab.models.release_memory()
print(loaded, freed, released, rss())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded, freed, released, after = map(int, out.stdout.split())
    print(f"loaded {loaded / 1e9:.2f} GB, after del + gc {freed / 1e9:.2f} GB, released {released / 1e9:.2f} GB")
    assert after < loaded - 2e9  # the fp32 weights (2.5 GB) are really gone
    assert abs(released - (freed - after)) < 5e7  # what it returns is what the process shrank
