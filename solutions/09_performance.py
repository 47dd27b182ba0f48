# 参考答案 · 09 性能 (Solutions for notebooks/09_performance.ipynb) — teacher edition only.
# Each "# %%" block becomes one code cell appended to the notebook by `qwenlab edition teacher`;
# `make test` runs them with QWENLAB_STRICT_CHECKS=1, so every answer here is proven right.

# %%
prediction1 = traffic.intensity < speeds["float32"].flops_per_second / bw.read_bytes_per_second
# True on a laptop: decoding does ~0.5 FLOP per byte read, the CPU can do several
qwenlab.exercises.check("09.p1", prediction1, traffic=traffic, bw=bw, matmul=speeds["float32"])

# %%
prediction2 = report.row("batch_8").tokens_per_second >= 7 * report.row("batch_1").tokens_per_second
# False on a 2-core CPU: 8 sequences cost 8x the compute per step, and the CPU's compute runs out
qwenlab.exercises.check("09.p2", prediction2, report=report)


# %%
def roofline(bandwidth, weight_bytes, kv_bytes_per_token, context, batch):
    """Weights are read once per step for all sequences; each sequence reads its own KV cache."""
    bytes_per_token = (weight_bytes + batch * context * kv_bytes_per_token) / batch
    return bandwidth / bytes_per_token


qwenlab.exercises.check("09.w1", roofline, traffic=traffic, bw=bw)

# %%
answer1 = bw.read_bytes_per_second / (traffic.weight_bytes / 4)  # int8: a quarter of fp32's bytes
qwenlab.exercises.check("09.1", answer1, bw=bw, traffic=traffic)

# %%
answer2 = "prefill"  # one weight read serves every prompt token; decoding reads all weights per token
qwenlab.exercises.check("09.2", answer2, raw=raw)

# %%
answer3 = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * describe(model).head_dim * 4 * 4096
qwenlab.exercises.check("09.3", answer3, model=model)

# %%
answer4 = max((r for r in report.rows if r.group == "batch" and r.ok), key=lambda r: r.tokens_per_second).batch
qwenlab.exercises.check("09.4", answer4, report=report)

# %%
answer5 = False  # 200 tok/s x the fp32 weight bytes is hundreds of GB/s, ten times what the machine has
qwenlab.exercises.check("09.5", answer5, traffic=traffic)
