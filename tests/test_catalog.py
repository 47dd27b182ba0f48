import pytest

from qwenlab import catalog


@pytest.mark.parametrize("name", ["Qwen/Qwen3-0.6B", "qwen3-0.6b", "Qwen3-0.6B", "QWEN/QWEN3-0.6B"])
def test_find_accepts_ids_case_insensitive_and_without_org(name):
    assert catalog.get(name).name == "Qwen/Qwen3-0.6B"


def test_modelscope_id_resolves_to_same_entry():
    assert catalog.get("qwen/Qwen1.5-0.5B-Chat").name == "Qwen/Qwen1.5-0.5B-Chat"


def test_never_existing_qwen_0_5b_suggests_the_two_half_billion_chat_models():
    with pytest.raises(catalog.UnknownModelError) as err:
        catalog.get("qwen/Qwen-0.5B")
    assert set(err.value.suggestions[:2]) == {"Qwen/Qwen1.5-0.5B-Chat", "Qwen/Qwen2.5-0.5B-Instruct"}
    assert "Qwen/Qwen1.5-0.5B-Chat" in str(err.value)


def test_base_name_without_instruct_suggests_instruct_first():
    with pytest.raises(catalog.UnknownModelError) as err:
        catalog.get("Qwen2.5-0.5B")
    assert err.value.suggestions[0] == "Qwen/Qwen2.5-0.5B-Instruct"


def test_recommended_sampling_per_mode_for_qwen3():
    thinking = catalog.recommended_sampling("Qwen/Qwen3-0.6B", thinking=True)
    plain = catalog.recommended_sampling("Qwen/Qwen3-0.6B", thinking=False)
    assert (thinking["temperature"], thinking["top_p"], thinking["top_k"]) == (0.6, 0.95, 20)
    assert (plain["temperature"], plain["top_p"], plain["top_k"]) == (0.7, 0.8, 20)
    assert thinking["do_sample"] is True  # Qwen: no greedy decoding in thinking mode


def test_recommended_sampling_returns_a_copy():
    a = catalog.recommended_sampling("Qwen/Qwen2.5-0.5B-Instruct")
    a["temperature"] = 99
    assert catalog.recommended_sampling("Qwen/Qwen2.5-0.5B-Instruct")["temperature"] == 0.7


def test_only_models_with_qwen3s_template_have_thinking():
    """Qwen3, Qwen3.5 and the mini thinker (the offline model driven by Qwen3's tokenizer and template)."""
    assert {m.name for m in catalog.CATALOG.values() if m.thinking} == {"Qwen/Qwen3-0.6B", "Qwen/Qwen3.5-0.8B",
                                                                        catalog.THINKER_MODEL}


def test_qwen35_small_is_listed_with_its_own_thinking_rules_and_marked_untested():
    info = catalog.get("Qwen3.5-0.8B")
    assert info.name == "Qwen/Qwen3.5-0.8B" and catalog.lookup("Qwen/Qwen3.5-0.8B") is info
    assert info.thinking and not info.thinks_by_default and not info.has_soft_switch
    assert info.opens_thinking_in_prompt and "qwen3_5" in info.transformers_needed
    assert info.tested_here is False and "not run on this machine" in info.notes
    # its default mode is off, so the default recommendation is the non-thinking one; Qwen3 stays thinking
    assert catalog.recommended_sampling("Qwen/Qwen3.5-0.8B") == catalog.recommended_sampling(
        "Qwen/Qwen3.5-0.8B", thinking=False) != catalog.recommended_sampling("Qwen/Qwen3.5-0.8B", thinking=True)
    assert catalog.recommended_sampling("Qwen/Qwen3-0.6B")["temperature"] == 0.6
    q3 = catalog.get("Qwen/Qwen3-0.6B")
    assert q3.thinks_by_default and q3.has_soft_switch and q3.tested_here and not q3.opens_thinking_in_prompt
    assert all(m.tested_here for m in catalog.CATALOG.values() if m.name != info.name)
    with __import__("pytest").raises(catalog.UnknownModelError) as err:
        catalog.lookup("Qwen/Qwen3.5-0.8b")
    assert err.value.suggestions == ["Qwen/Qwen3.5-0.8B"]


@pytest.mark.parametrize("name, expected", [
    ("Qwen/Qwen3-0.6B", "Qwen/Qwen3-0.6B"),
    ("qwen/Qwen1.5-0.5B-Chat", "Qwen/Qwen1.5-0.5B-Chat"),  # ModelScope's spelling, listed in the catalog
    ("Qwen3-0.6B", "Qwen/Qwen3-0.6B"),  # a bare name, exactly as listed
    ("offline", "offline"),
    ("Qwen/Qwen2.5-1.5B-Instruct", None),  # a real repo outside the catalog
    ("someone/tiny-model", None),
])
def test_lookup_accepts_listed_ids_and_any_other_repo(name, expected):
    info = catalog.lookup(name)
    assert (info.name if info else None) == expected


@pytest.mark.parametrize("name, first", [
    ("Qwen/Qwen3-0.6b", "Qwen/Qwen3-0.6B"),  # case: ids are copied exactly
    ("QWEN/QWEN3-0.6B", "Qwen/Qwen3-0.6B"),
    ("Qwen/Qwen2.5_0.5B_Instruct", "Qwen/Qwen2.5-0.5B-Instruct"),  # _ for -
    ("qwen/Qwen-0.5B", None),  # seed 001: lowercase org, no such model
    ("qwen/Qwen1.5-0.5B", None),  # seed 000: the base model, with the old ModelScope org spelling
    ("Qwen3-1.7B", None),  # a bare name that is not listed: a hub id needs its org
])
def test_lookup_refuses_near_misses_with_the_closest_ids(name, first):
    with pytest.raises(catalog.UnknownModelError) as err:
        catalog.lookup(name)
    suggestions = err.value.suggestions
    assert suggestions and all(s in catalog.CATALOG for s in suggestions)
    if first:
        assert suggestions == [first]
    if name.startswith("qwen/"):
        assert "Hugging Face" in str(err.value) and "'Qwen/<name>'" in str(err.value)


def test_prequantized_repos_belong_to_a_course_model_and_keep_its_chat_settings():
    assert catalog.PREQUANTIZED, "the official pre-quantized repos are listed"
    for info in catalog.PREQUANTIZED.values():
        base = catalog.CATALOG[info.quantized_of]
        assert info.name.startswith(base.name + "-") and (info.thinking, info.sampling) == (base.thinking, base.sampling)
        assert info.requires_cuda == info.quant_method.startswith(("gptq", "awq"))
        assert (info.gguf_file is not None) == info.quant_method.startswith("gguf")
        assert info.disk_bytes < base.disk_bytes  # smaller than the bf16 original, or why download it
    assert catalog.get("qwen2.5-0.5b-instruct-gguf").gguf_file.endswith("q4_k_m.gguf")


def test_quantized_versions_of_each_model():
    assert [m.quant_method for m in catalog.quantized_versions("Qwen/Qwen3-0.6B")] == ["gptq-int8", "gguf-q8_0"]
    assert {m.quant_method for m in catalog.quantized_versions("Qwen2.5-0.5B-Instruct")} >= {"gptq-int4", "awq-int4",
                                                                                          "gguf-q4_k_m"}
    assert catalog.quantized_versions("Qwen/Qwen1.5-0.5B-Chat") == []


def test_prequantized_repos_are_not_suggested_for_a_typo():
    assert all("GPTQ" not in s and "GGUF" not in s for s in catalog.closest("Qwen2.5-0.5B-GPTQ", n=5))
