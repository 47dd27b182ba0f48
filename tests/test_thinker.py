"""The mini thinker: its training data (Qwen3 template, loss mask, right answers, disjoint splits), a training
step on the tiny Qwen3, the adapter's save/apply round trip, and the shipped thinker on the offline model."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from qwenlab.evaluation import probes
from qwenlab.thinker.data import (
    CHAT_QUESTIONS, EVAL_SEED, IGNORE, KINDS, MODES, TRAIN_SEED, eval_problems, final_number, is_right, make_problems,
    render_chat, render_problem, train_problems,
)
from qwenlab.thinking import split_thinking, thinking_mode

_EQUATION = re.compile(r"(\d+(?:\.\d+)?) ([-+×÷]) (\d+(?:\.\d+)?) = (\d+(?:\.\d+)?)(?: ([-+]) (\d+) = (\d+))?")
_OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "×": lambda a, b: a * b, "÷": lambda a, b: a / b}


@pytest.fixture(scope="module")
def problems():
    return make_problems(140, TRAIN_SEED)


def test_every_equation_in_every_trace_is_true_and_the_answer_is_the_value(problems):
    checked = 0
    for p in problems:
        for m in _EQUATION.finditer(p.thought + "\n" + p.answer):
            a, op, b, c = Decimal(m[1]), m[2], Decimal(m[3]), Decimal(m[4])
            if m[5]:  # "65 ÷ 5 = 10 + 3 = 13"
                assert _OPS[m[5]](c, Decimal(m[6])) == Decimal(m[7]), f"{p.question}: {m[0]}"
                c = Decimal(m[7])
            assert _OPS[op](a, b) == c, f"{p.question}: {m[0]}"
            checked += 1
        assert is_right(p.answer, p) and p.value in p.thought, p
    assert checked > 300
    assert {p.kind for p in problems} == set(KINDS) and {p.lang for p in problems} == {"en", "zh"}


def test_the_decimal_trap_is_answered_by_value_not_by_length():
    traps = [p for p in make_problems(400, 7) if p.kind == "compare" and "do not make" in p.thought]
    assert traps
    for p in traps:
        a, b = re.findall(r"\d+\.\d+", p.question)
        assert Decimal(p.value) == max(Decimal(a), Decimal(b))


def test_final_number_reads_the_last_number_of_an_answer():
    assert final_number("347 × 28 = 9,716.") == "9716"
    assert final_number("The larger number is 9.9.") == "9.9"
    assert final_number("2.50 km = 2500.0 m") == "2500"
    assert final_number("我不知道") is None


def test_eval_questions_are_never_in_the_training_set():
    held_out = eval_problems()
    train = train_problems(600)
    assert len(held_out) >= 50 and len(train) == 600
    assert not {p.question for p in held_out} & {p.question for p in train}
    assert not {p.question for p in probes()} & {p.question for p in train}
    assert not {p.question for p in probes()} & {q for _, q in CHAT_QUESTIONS}  # probes measure forgetting
    with pytest.raises(ValueError, match="differ"):
        train_problems(10, seed=EVAL_SEED)


def test_the_splits_are_reproducible():
    assert [p.question for p in eval_problems()] == [p.question for p in eval_problems()]
    assert [p.question for p in train_problems(50)] == [p.question for p in train_problems(50)]


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_renders_as_qwen3s_template_and_the_loss_covers_only_the_reply(qwen3_tok, problems, mode):
    p = problems[3]
    s = render_problem(qwen3_tok, p, mode)
    # the labels: -100 on the prompt, the ids themselves on the reply, nothing else
    n_prompt = len(qwen3_tok(s.prompt, add_special_tokens=False).input_ids)
    assert s.labels[:n_prompt] == [IGNORE] * n_prompt
    assert s.labels[n_prompt:] == s.input_ids[n_prompt:] and s.reply_tokens == len(s.input_ids) - n_prompt
    assert qwen3_tok.decode(s.input_ids[n_prompt:]) == s.target and s.target.endswith("<|im_end|>")
    # the prompt is exactly what generation sends in this mode
    user = p.question + {"soft_think": " /think", "soft_off": " /no_think"}.get(mode, "")
    messages = [{"role": "user", "content": user}]
    assert s.prompt == qwen3_tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                     enable_thinking=mode != "hard_off")
    # what the reply looks like in each mode (Qwen3's convention)
    split = split_thinking(s.target.removesuffix("<|im_end|>"))
    expected_state = {"think": "complete", "soft_think": "complete", "soft_off": "empty", "hard_off": "none"}[mode]
    assert split.state == expected_state and split.content == p.answer
    if mode == "hard_off":
        assert s.prompt.endswith("<think>\n\n</think>\n\n")
    if split.state == "complete":
        assert split.thinking == p.thought
    assert thinking_mode(messages, enable_thinking=mode != "hard_off") == (split.state == "complete")


def test_chat_samples_keep_the_base_answer_and_only_think_in_thinking_modes(qwen3_tok):
    off = render_chat(qwen3_tok, "en", "Say hi.", "Hi there!", "soft_off")
    on = render_chat(qwen3_tok, "zh", "你好", "你好！", "think")
    assert off.target == "<think>\n\n</think>\n\nHi there!<|im_end|>"
    assert on.target.startswith("<think>\n") and on.target.endswith("</think>\n\n你好！<|im_end|>")


def test_training_samples_are_short(qwen3_tok, problems):
    lengths = [len(render_problem(qwen3_tok, p, "think")) for p in problems]
    assert max(lengths) <= 170


# ---- training on the tiny Qwen3 ------------------------------------------------------------------

@pytest.fixture
def fresh_tiny(tiny_dir, one_thread):
    """A tiny Qwen3 of its own (training changes it; the shared `tiny` fixture must stay as it is)."""
    import qwenlab

    return qwenlab.load_model(tiny_dir, device="cpu", dtype="float32")


def test_a_few_lora_steps_lower_the_loss_and_the_saved_adapter_reproduces_the_trained_model(
        fresh_tiny, tiny_dir, qwen3_tok, problems, tmp_path):
    import torch

    import qwenlab
    from qwenlab.adapters import apply_adapter
    from qwenlab.thinker.train import TokenRows, TrainConfig, lora_model, sample_loss, save, train

    model, tokenizer = fresh_tiny
    samples = [render_problem(tokenizer, p, m) for p, m in zip(problems[:4], MODES)]
    config = TrainConfig(rank=4, alpha=8, lr=2e-2, rows_lr=2e-2, accumulate=1, warmup=1, threads=1)
    peft_model = lora_model(model, config)
    rows = TokenRows.for_tags(model, tokenizer)
    think_row = rows.embed.detach().clone()
    embed_before = model.get_input_embeddings().weight.detach().clone()
    with torch.no_grad():
        before = [float(sample_loss(peft_model, s)) for s in samples]
    result = train(peft_model, rows, samples * 5, config, progress=False)
    with torch.no_grad():
        after = [float(sample_loss(peft_model, s)) for s in samples]
    assert result.steps == 20 and len(result.losses) == 20
    # a random-weight model starts at ~ln(151936) = 11.9 nats per token; every sample's loss falls
    assert all(a < b - 0.2 for a, b in zip(after, before)), (before, after)
    assert not torch.equal(rows.embed, think_row)  # the think rows trained ...
    assert torch.equal(model.get_input_embeddings().weight, embed_before)  # ... the base embeddings did not

    ids = torch.tensor([samples[0].input_ids])
    with torch.no_grad():
        trained_logits = peft_model(input_ids=ids).logits
    rows.remove()
    save(peft_model, rows, tmp_path, {"eos_token_id": [151645, 151643], "do_sample": True, "temperature": 0.6})
    fresh, _ = qwenlab.load_model(tiny_dir, device="cpu", dtype="float32")
    merged = apply_adapter(fresh, tmp_path)
    with torch.no_grad():
        merged_logits = merged(input_ids=ids).logits
    assert torch.allclose(merged_logits, trained_logits, atol=2e-2)  # the adapter is stored in float16
    assert type(merged).__name__ == "Qwen3ForCausalLM" and merged.generation_config.temperature == 0.6


def test_apply_adapter_names_a_folder_without_an_adapter(fresh_tiny, tmp_path):
    from qwenlab.adapters import apply_adapter

    with pytest.raises(FileNotFoundError, match="train-thinker"):
        apply_adapter(fresh_tiny[0], tmp_path)


# ---- the shipped thinker on the offline model ---------------------------------------------------

@pytest.fixture(scope="module")
def thinker(offline_dir):
    import qwenlab

    return qwenlab.load_model("offline-thinker", device="cpu", dtype="float32")


@pytest.mark.real_model
def test_offline_thinker_thinks_when_on_and_answers_directly_when_off(thinker):
    from qwenlab.thinker.evaluate import ask
    from qwenlab.thinking import supports_thinking

    model, tokenizer = thinker
    assert tokenizer.convert_tokens_to_ids("</think>") == 151668 and supports_thinking(tokenizer)
    for problem in [eval_problems()[i] for i in (0, 4, 13)]:  # add (en), compare (en), word (zh)
        on = ask(model, tokenizer, problem, "think")
        assert on.state == "complete" and on.thinking and on.answer and on.finish_reason == "stop", on
        hard = ask(model, tokenizer, problem, "hard_off")
        assert hard.state == "none" and hard.answer, hard
    soft = ask(model, tokenizer, eval_problems()[4], "soft_off")
    assert soft.state == "empty" and soft.answer, soft


@pytest.mark.real_model
def test_offline_thinker_is_a_catalog_thinking_model_with_qwen3_sampling(thinker):
    from qwenlab import catalog
    from qwenlab.modelfacts import facts_of
    from qwenlab.thinking import mode_settings

    model, _ = thinker
    assert facts_of(model).name == catalog.THINKER_MODEL and catalog.get("offline-thinker").thinking
    assert mode_settings(model, thinking=True).params["temperature"] == 0.6
    assert model.generation_config.temperature == 0.6 and model.generation_config.top_p == 0.95
