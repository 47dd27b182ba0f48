# 参考答案 · 07 量化 (Solutions for notebooks/07_quantization.ipynb) — teacher edition only.
# Each "# %%" block becomes one code cell appended to the notebook by `qwenlab edition teacher`;
# `make test` runs them with QWENLAB_STRICT_CHECKS=1, so every answer here is proven right.

# %%
prediction1 = not qwenlab.evaluation.same_answer(fp32_answer, int8_answer)  # True here
# with torch's defaults (per-tensor weights, 7-bit activations shared by the whole prompt) the 0.5B model answers wrong
qwenlab.exercises.check("07.p1", prediction1, fp32_answer=fp32_answer, int8_answer=int8_answer)

# %%
prediction2 = ao_fp.total_bytes / fp.total_bytes  # ~0.6: TorchAoConfig leaves embed_tokens and lm_head in fp32
qwenlab.exercises.check("07.p2", prediction2, int8=ao_fp, fp32=fp)


# %%
def quantize_int8(w):
    """Symmetric per-channel int8: one scale per output row; a row of zeros keeps a tiny positive scale."""
    scale = (w.abs().amax(dim=1, keepdim=True) / 127).clamp(min=torch.finfo(torch.float32).tiny)
    q = torch.round(w / scale).clamp(-127, 127).to(torch.int8)
    return q, scale


qwenlab.exercises.check("07.w1", quantize_int8)

# %%
answer1 = params * (0.5 + 2 / 64)  # half a byte per weight + a 2-byte scale per 64 weights
qwenlab.exercises.check("07.1", answer1, params=params)

# %%
answer2 = torch.round(w2[0] / (w2.abs().max() / 127)).int().tolist()  # [25, -64, 127]: -63.5 rounds to even
qwenlab.exercises.check("07.2", answer2, w=w2)

# %%
answer3 = quant.quant_error(w_out, 4, "group", 32).rel_error < quant.quant_error(w_out, 4, "per-channel").rel_error
qwenlab.exercises.check("07.3", answer3, w_out=w_out)

# %%
answer4 = max((r for r in cmp.rows if r.name != cmp.reference and r.kept == r.total),
              key=lambda r: r.decode_tokens_per_second).name
qwenlab.exercises.check("07.4", answer4, cmp=cmp)

# %%
answer5 = cmp.row("torchao int8 weight-only").speedup > 1.0  # weight-only int8 de-quantizes every step: slower on a CPU
qwenlab.exercises.check("07.5", answer5, cmp=cmp)

# %%
answer6 = 0.95 ** 14  # about 0.49: a coin toss, so "14/14 probes kept" says little about a 5 % change rate
qwenlab.exercises.check("07.6", answer6)
