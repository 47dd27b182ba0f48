# 参考答案 · 01 环境检查 (Solutions for notebooks/01_environment.ipynb) — teacher edition only.
# Each "# %%" block becomes one code cell appended to the notebook by `qwenlab edition teacher`;
# `make test` runs them with QWENLAB_STRICT_CHECKS=1, so every answer here is proven right.

# %%
# On most laptop CPUs fp16 is far slower than fp32 (no fp16 multiply-add instructions: a slow generic path);
# CPUs with AVX512-FP16 / AMX-FP16 are the exception, so the answer is read off this machine's timing.
prediction1 = "faster" if speed["float16"] < speed["float32"] else "slower"
qwenlab.exercises.check("01.p1", prediction1, speed=speed)

# %%
prediction2 = "https://huggingface.co"  # read at import time; setting os.environ afterwards changes nothing
if os.environ.get("HF_ENDPOINT"):         # unless the kernel was started with HF_ENDPOINT already set
    prediction2 = hf_constants.ENDPOINT
qwenlab.exercises.check("01.p2", prediction2, endpoint=hf_constants.ENDPOINT)

# %%
prediction3 = ["=4.37.0"]  # the shell redirects the output into a file named "=4.37.0"
qwenlab.exercises.check("01.p3", prediction3, files=files)

# %%
answer1 = (qwenlab.get_model_info("Qwen/Qwen3-0.6B").params * 4 * 1.2 + 0.5e9) / 1e9  # about 4.1 GB
qwenlab.exercises.check("01.1", answer1)

# %%
answer2 = "Qwen/Qwen3-0.6B"  # bf16 halves it: 0.75e9 × 2 × 1.2 + 0.5 GB ≈ 2.3 GB < 3.5 GB, and the default is tried first
qwenlab.exercises.check("01.2", answer2)

# %%
answer3 = "HF_HUB_OFFLINE"
qwenlab.exercises.check("01.3", answer3)


# %%
def bytes_for(n_params, dtype):
    """Bytes of n_params numbers of this dtype: dtype.itemsize is 4 for float32, 2 for bf16/fp16, 1 for int8."""
    return n_params * dtype.itemsize


qwenlab.exercises.check("01.w1", bytes_for, n_params=n)
