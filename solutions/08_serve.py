# 参考答案 · 08 服务 (Solutions for notebooks/08_serve.ipynb) — teacher edition only.
# Each "# %%" block becomes one code cell appended to the notebook by `qwenlab edition teacher`;
# `make test` runs them with QWENLAB_STRICT_CHECKS=1, so every answer here is proven right.

# %%
prediction1 = 8 + 3  # the role chunk, one chunk per token (all 8 used: finish_reason "length"), the finish chunk, [DONE]
qwenlab.exercises.check("08.p1", prediction1, lines=lines)

# %%
prediction2 = 401  # Unauthorized: the key is checked before the request reaches the model
qwenlab.exercises.check("08.p2", prediction2, status=status)

# %%
prediction3 = "answered"  # one model is served; any model name gets it, and reply.model says which
qwenlab.exercises.check("08.p3", prediction3, answered=answered)

# %%
answer1 = "http://localhost:11434/v1"
qwenlab.exercises.check("08.1", answer1)

# %%
answer2 = ("length", "")  # max_tokens counts the thought's tokens; cut inside <think> there is no answer yet
qwenlab.exercises.check("08.2", answer2, reply=cut)

# %%
answer3 = {"Model Name": server.model, "API Key": server.api_key, "Base URL": server.base_url}
qwenlab.exercises.check("08.3", answer3, server=server)


# %%
def chat_body(model, question, max_tokens, temperature, stream):
    """An OpenAI chat-completions body: messages is a list of role/content dicts; temperature 0 is sent, not left out."""
    return {"model": model, "messages": [{"role": "user", "content": question}],
            "max_tokens": max_tokens, "temperature": temperature, "stream": stream}


qwenlab.exercises.check("08.w1", chat_body, model=server.model, base_url=server.base_url)


# %%
def sse_content(lines):
    """Join delta.content of every `data:` JSON chunk; stop at [DONE]; skip comments, blanks and usage chunks."""
    text = []
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[len("data:"):].strip()
        if data == "[DONE]":
            break
        choices = json.loads(data).get("choices") or []
        if choices and choices[0]["delta"].get("content"):
            text.append(choices[0]["delta"]["content"])
    return "".join(text)


qwenlab.exercises.check("08.w2", sse_content, lines=lines)
