# 参考答案 · 03 分词器 (Solutions for notebooks/03_tokenizer.ipynb) — teacher edition only.
# Each "# %%" block becomes one code cell appended to the notebook by `qwenlab edition teacher`;
# `make test` runs them with QWENLAB_STRICT_CHECKS=1, so every answer here is proven right.

# %%
prediction1 = "en"  # 6 vs 7 tokens: common English words are one token each, Chinese ones one or two characters
qwenlab.exercises.check("03.p1", prediction1, tokenizer=tokenizer, zh=zh, en=en)

# %%
answer1 = len(tokenizer.encode(sentence))
qwenlab.exercises.check("03.1", answer1, tokenizer=tokenizer, sentence=sentence)

# %%
answer2 = 151645  # <|im_end|>
qwenlab.exercises.check("03.2", answer2, tokenizer=tokenizer)

# %%
answer3 = "<think>"  # <think> is an added token but not a special one: skip_special_tokens keeps it
qwenlab.exercises.check("03.3", answer3, qwen3_tok=qwen3_tok)

# %%
answer4 = 4  # <think>, "\n\n", </think>, "\n\n"
qwenlab.exercises.check("03.4", answer4, on=on, off=off)

# %%
answer5 = (2, "\ufffd")  # 囧 = 3 UTF-8 bytes in 2 tokens; half a character decodes to "�"
qwenlab.exercises.check("03.5", answer5, tokenizer=tokenizer)


# %%
def stream_pieces(ids):
    """Decode everything so far, hand out only what is new; wait while the end is half a character."""
    pieces, shown = [], ""
    for n in range(1, len(ids) + 1):
        text = tokenizer.decode(ids[:n])
        if text.endswith("\ufffd"):
            pieces.append("")
            continue
        pieces.append(text[len(shown):])
        shown = text
    return pieces


qwenlab.exercises.check("03.w1", stream_pieces, tokenizer=tokenizer)
