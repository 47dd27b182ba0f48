# 参考答案 · 00 快速上手 (Solutions for notebooks/00_quickstart.ipynb) — teacher edition only.
# Each "# %%" block becomes one code cell appended to the notebook by `qwenlab edition teacher`;
# `make test` runs them with QWENLAB_STRICT_CHECKS=1, so every answer here is proven right.

# %%
prediction1 = "same"  # greedy decoding has no randomness; qwenlab.generate calls the same model.generate
qwenlab.exercises.check("00.p1", prediction1, plain=new_ids.tolist(), helper=result.token_ids)

# %%
prediction2 = (5, "length")  # max_new_tokens counts new tokens only; 5 are too few to finish, so it is cut
qwenlab.exercises.check("00.p2", prediction2, short=short)

# %%
answer1 = inputs["input_ids"].shape[1]  # generate returns prompt + answer: the prompt's tokens come first
qwenlab.exercises.check("00.1", answer1, inputs=inputs)

# %%
raw_ids = tokenizer(QUESTIONS[0])["input_ids"]
answer2 = sum(i in tokenizer.all_special_ids for i in raw_ids)  # 0: no template, and Qwen adds no BOS
qwenlab.exercises.check("00.2", answer2, tokenizer=tokenizer, question=QUESTIONS[0])

# %%
answer3 = qwenlab.generate(model, tokenizer, "What is the capital of France? Answer in one word.",
                           do_sample=False, max_new_tokens=8).text
qwenlab.exercises.check("00.3", answer3)


# %%
def chat_tokens(messages):
    """ChatML by hand: <|im_start|>role\\ncontent<|im_end|>\\n per message, then the generation prompt."""
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    text += "<|im_start|>assistant\n"
    return len(tokenizer.encode(text))


qwenlab.exercises.check("00.w1", chat_tokens, tokenizer=tokenizer)
