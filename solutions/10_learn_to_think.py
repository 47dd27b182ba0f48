# 参考答案 · 10 学会思考 (Solutions for notebooks/10_learn_to_think.ipynb) — teacher edition only.
# Each "# %%" block becomes one code cell appended to the notebook by `qwenlab edition teacher`;
# `make test` runs them with QWENLAB_STRICT_CHECKS=1, so every answer here is proven right.

# %%
prediction1 = "none"  # it never learned <think>: it answers straight away, no think tags at all
qwenlab.exercises.check("10.p1", prediction1, before=before)

# %%
answer1 = s.reply_tokens  # the reply up to and including <|im_end|>; the prompt's labels are -100
qwenlab.exercises.check("10.1", answer1, s=s)

# %%
answer2 = "soft_off"  # with /no_think the model itself writes the empty block; hard_off has it in the prompt
qwenlab.exercises.check("10.2", answer2, tok=tok, p=p)

# %%
answer3 = TrainConfig().rank
qwenlab.exercises.check("10.3", answer3)

# %%
answer4 = 896 * answer3 + answer3 * 896  # A is r x 896, B is 896 x r
qwenlab.exercises.check("10.4", answer4)

# %%
answer5 = False  # the template wrote <think>\n\n</think>\n\n into the prompt; the reply is the answer only
qwenlab.exercises.check("10.5", answer5, tok=tok, p=p)


# %%
def causal_lm_loss(logits, labels):
    """Mean cross-entropy of position t's logits against token t+1, over the scored (not -100) labels."""
    return float(F.cross_entropy(logits[:-1].float(), labels[1:], ignore_index=-100))


qwenlab.exercises.check("10.w1", causal_lm_loss)
