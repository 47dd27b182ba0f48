# 参考答案 · 06 思考模式 (Solutions for notebooks/06_thinking.ipynb) — teacher edition only.
# Each "# %%" block becomes one code cell appended to the notebook by `qwenlab edition teacher`;
# `make test` runs them with QWENLAB_STRICT_CHECKS=1, so every answer here is proven right.

# %%
prediction1 = "unfinished"  # <think> and 11 tokens of thought, no </think>: the thought was cut, there is no answer
qwenlab.exercises.check("06.p1", prediction1, ids=cut_ids, tokenizer=tokenizer)

# %%
prediction2 = False  # the hard switch wins: the template already wrote the empty thought into the prompt
qwenlab.exercises.check("06.p2", prediction2, ids=hard.token_ids, tokenizer=tokenizer)

# %%
print("</think> in the first 20 ids:", 151668 in output_ids[:20])
answer1 = "unfinished"
qwenlab.exercises.check("06.1", answer1, ids=output_ids[:20], tokenizer=tokenizer)

# %%
answer2 = "9.11 和 9.9 哪个大？ /no_think"
qwenlab.exercises.check("06.2", answer2, tokenizer=tokenizer)

# %%
answer3 = mode_settings("Qwen/Qwen3-0.6B", True).params["temperature"]  # 0.6
qwenlab.exercises.check("06.3", answer3)

# %%
mean_on = sum(a.tokens for a in attempts["think"]) / len(attempts["think"])
mean_off = sum(a.tokens for a in attempts["hard_off"]) / len(attempts["hard_off"])
answer4 = mean_on / mean_off
print(f"{mean_on:.0f} / {mean_off:.0f} = {answer4:.1f}x")
qwenlab.exercises.check("06.4", answer4, attempts=attempts)

# %%
answer5 = "first"  # cut at the first </think> and the rest of the thought (with the second </think>) lands in the answer
qwenlab.exercises.check("06.5", answer5)

# %%
answer6 = "content"  # the history keeps only the final answer
qwenlab.exercises.check("06.6", answer6, chat=chat, reply=reply)


# %%
def parse_reply(ids):
    """(state, thinking, content) of a reply, by token ids, cut at the LAST </think>."""
    ids = list(ids)
    if not ids or ids[0] != 151667:                       # no <think>: all answer
        return "none", "", tokenizer.decode(ids, skip_special_tokens=True).strip()
    if 151668 not in ids:                                 # <think> but no </think>: cut in the middle of thinking
        return "unfinished", tokenizer.decode(ids[1:], skip_special_tokens=True).strip(), ""
    last = len(ids) - 1 - ids[::-1].index(151668)
    thinking = tokenizer.decode(ids[1:last], skip_special_tokens=True).strip()
    content = tokenizer.decode(ids[last + 1:], skip_special_tokens=True).strip()
    return ("complete" if thinking else "empty"), thinking, content


qwenlab.exercises.check("06.w1", parse_reply, tokenizer=tokenizer, replies=[output_ids, soft.token_ids, hard.token_ids])
