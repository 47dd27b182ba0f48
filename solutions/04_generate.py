# 参考答案 · 04 生成参数 (Solutions for notebooks/04_generate.ipynb) — teacher edition only.
# Each "# %%" block becomes one code cell appended to the notebook by `qwenlab edition teacher`;
# `make test` runs them with QWENLAB_STRICT_CHECKS=1, so every answer here is proven right.

# %%
prediction1 = "error"  # temperature=0 would divide by zero: transformers raises ValueError (use do_sample=False)
qwenlab.exercises.check("04.p1", prediction1, model=model, tokenizer=tokenizer)

# %%
prediction2 = True  # top_k=1 leaves one candidate; temperature divides every score alike, so the order stays
qwenlab.exercises.check("04.p2", prediction2, greedy=[greedy_id], sampled=[[t] for t in draws])

# %%
prediction3 = 1  # greedy decoding draws no random numbers: the seed changes nothing
qwenlab.exercises.check("04.p3", prediction3, replies=replies)

# %%
answer1 = qwenlab.effective_params(model)["top_k"]  # from generation_config.json (20 for Qwen), not the fallback 50
qwenlab.exercises.check("04.1", answer1, model=model)

# %%
answer2 = 2  # 0.64 < 0.8, 0.64 + 0.24 = 0.88 ≥ 0.8: two tokens
qwenlab.exercises.check("04.2", answer2, scores=scores)

# %%
answer3 = len(qwenlab.generate(model, tokenizer, SHORT, do_sample=False, max_new_tokens=64, **NO_THINK).token_ids)
print(answer3, "= the answer's tokens + the end token <|im_end|>")
qwenlab.exercises.check("04.3", answer3, model=model, tokenizer=tokenizer, question=SHORT)

# %%
answer4 = 0.2  # threshold 0.71 × 0.2 ≈ 0.14: 0.26 stays, 0.04 goes
qwenlab.exercises.check("04.4", answer4, scores=scores_4)


# %%
def top_k_filter(scores, k):
    """Keep every score at least as large as the k-th largest of its row (ties stay), -inf for the rest."""
    k = min(k, scores.shape[-1])
    kth = torch.topk(scores, k).values[..., -1:]
    return scores.masked_fill(scores < kth, float("-inf"))


qwenlab.exercises.check("04.w1", top_k_filter)


# %%
def top_p_filter(scores, top_p):
    """Keep the fewest most likely tokens whose probabilities add up to top_p (the one that crosses it stays)."""
    sorted_scores, order = torch.sort(scores, descending=True)
    cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
    before = cumulative - sorted_scores.softmax(dim=-1)  # the sum of the tokens ranked above this one
    remove_sorted = before >= top_p
    remove = remove_sorted.scatter(-1, order, remove_sorted)
    return scores.masked_fill(remove, float("-inf"))


qwenlab.exercises.check("04.w2", top_p_filter)
