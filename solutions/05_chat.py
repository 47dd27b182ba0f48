# 参考答案 · 05 多轮对话 (Solutions for notebooks/05_chat.ipynb) — teacher edition only.
# Each "# %%" block becomes one code cell appended to the notebook by `qwenlab edition teacher`;
# `make test` runs them with QWENLAB_STRICT_CHECKS=1, so every answer here is proven right.

# %%
prediction1 = False  # no memory: the second call's input does not contain the first one
qwenlab.exercises.check("05.p1", prediction1, reply=second.text)

# %%
prediction2 = "more"  # the prompt may use max_context_tokens - max_new_tokens: reserving more leaves less for history
qwenlab.exercises.check("05.p2", prediction2, conversation=long_chat)


# %%
def to_messages(system, pairs, question):
    messages = [{"role": "system", "content": system}] if system is not None else []
    for user, assistant in pairs:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return messages + [{"role": "user", "content": question}]


qwenlab.exercises.check("05.w1", to_messages, tokenizer=tokenizer)

# %%
long_chat.max_context_tokens = 200
answer2 = len(long_chat.window().dropped)
print(answer2, "messages dropped (always whole turns: an even number)")
qwenlab.exercises.check("05.2", answer2, conversation=long_chat)


# %%
def n_tokens(msgs):
    return len(tokenizer.apply_chat_template(msgs, add_generation_prompt=True)["input_ids"])


question = [{"role": "system", "content": "你好。"}, {"role": "user", "content": "我叫什么名字？"}]
empty_turn = [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}]
answer3 = n_tokens(question[:1] + empty_turn + question[1:]) - n_tokens(question)
print(answer3, "= 2 × (<|im_start|>, role, \\n, <|im_end|>, \\n)")
qwenlab.exercises.check("05.3", answer3, tokenizer=tokenizer)

# %%
answer4 = [piece for piece in chat.reply("说一句鼓励的话。", stream=True, max_new_tokens=16, seed=0)]
qwenlab.exercises.check("05.4", answer4, conversation=chat)


# %%
def fit(messages, budget):
    """Drop whole turns (a user message and its answer) from the oldest until the rendered prompt fits."""
    system, turns = messages[:1], messages[1:]
    while n_tokens(system + turns) > budget and len(turns) > 1:
        turns = turns[2:]
    return system + turns


qwenlab.exercises.check("05.w2", fit, tokenizer=tokenizer)
