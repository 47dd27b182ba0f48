"""Sampling with a model: the next-token distribution of a prompt, and generation as a plain loop.

``qwenlab.sampling`` has the steps (temperature, top-k, top-p, min-p, repetition penalty) as pure math
on logits; this module runs the model and applies them:

- :func:`next_token_logits` — one forward pass: the logits of the token that would come next;
- :func:`next_token_distribution` — those logits through each step, with the model's own
  generation_config merged in (what ``generate`` would really draw from);
- :func:`sample_loop` — ``generate`` written out as a for-loop with a KV cache, giving the same tokens as
  ``model.generate`` (greedy, and seeded sampling).

The settings, stop tokens and result come from ``qwenlab.generation``'s public helpers, so the loop and
``generate`` agree on every parameter and report alike.

Taught in ``04_generate.ipynb``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .generation import (
    SAMPLING_KEYS,
    GenerationResult,
    build_inputs,
    check_context,
    effective_params,
    end_of_turn_ids,
    generation_config,
    make_result,
    new_token_limit,
)
from .sampling import STEP_ORDER, NextTokenDistribution, apply_steps, distribution_from_logits, sampling_steps

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from .modelfacts import CausalLM

__all__ = ["next_token_logits", "next_token_distribution", "sample_loop"]


def next_token_logits(model: CausalLM, tokenizer: PreTrainedTokenizerBase, prompt_or_messages: Any,
                      enable_thinking: bool | None = None) -> tuple[Any, Any]:
    """One forward pass: ``(input_ids, logits)`` — the prompt's token ids ``(1, L)`` and the raw float32
    logits ``(1, vocab)`` for the token that would come next (chat template applied).

    >>> input_ids, logits = next_token_logits(model, tokenizer, "你好")
    >>> logits.shape[-1] == model.config.vocab_size
    True

    Taught in ``04_generate.ipynb`` (the sampling lab runs it once per prompt).
    """
    import torch

    inputs = {k: v.to(model.device) for k, v in build_inputs(tokenizer, prompt_or_messages, enable_thinking).items()}
    with torch.inference_mode():
        out = model(**inputs, logits_to_keep=1)
    return inputs["input_ids"].cpu(), out.logits[:, -1].float().cpu()


def next_token_distribution(
    model: CausalLM,
    tokenizer: PreTrainedTokenizerBase,
    prompt_or_messages: Any,
    *,
    top: int = 10,
    enable_thinking: bool | None = None,
    **params: Any,
) -> NextTokenDistribution:
    """Run the model once and show how each sampling step reshapes the next-token distribution.

    Parameters you do not pass come from the model's generation_config (as in ``generate``), so with
    no parameters you see what generation really does.

    Args:
        prompt_or_messages: a user prompt or chat messages (the chat template is applied).
        top: how many of the most likely tokens to follow through the stages.
        **params: ``do_sample``, ``temperature``, ``top_k``, ``top_p``, ``min_p``, ``repetition_penalty``.

    Example:
        >>> d = next_token_distribution(model, tokenizer, "中国的首都是", temperature=1.5, top_k=5)
        >>> d.stage("top_k").n_kept
        5
        >>> fig = qwenlab.plot_distribution(d)                                        # doctest: +SKIP

    Taught in ``04_generate.ipynb``.
    """
    unknown = set(params) - set(SAMPLING_KEYS)
    if unknown:
        raise TypeError(f"Unknown sampling parameter(s) {sorted(unknown)}; known: {list(SAMPLING_KEYS)}.")
    merged = {k: v for k, v in effective_params(model, **params).items() if k in SAMPLING_KEYS}
    input_ids, logits = next_token_logits(model, tokenizer, prompt_or_messages, enable_thinking)
    return distribution_from_logits(tokenizer, input_ids, logits, top=top, **merged)


# GenerationConfig fields that make ``generate`` do more than sample_loop does (value that means "off")
_NOT_IN_LOOP = {
    "num_beams": (None, 1),
    "no_repeat_ngram_size": (None, 0),
    "min_new_tokens": (None, 0),
    "min_length": (None, 0),
    "bad_words_ids": (None,),
    "sequence_bias": (None,),
    "suppress_tokens": (None,),
    "begin_suppress_tokens": (None,),
    "forced_bos_token_id": (None,),
    "forced_eos_token_id": (None,),
    "typical_p": (None, 1.0),
    "epsilon_cutoff": (None, 0.0),
    "eta_cutoff": (None, 0.0),
    "top_h": (None,),
    "guidance_scale": (None, 1.0),
    "renormalize_logits": (None, False),
    "remove_invalid_values": (None, False),
    "exponential_decay_length_penalty": (None,),
    "stop_strings": (None,),
    "watermarking_config": (None,),
}


def _check_loop_supports(gc: Any) -> None:
    for name, off in _NOT_IN_LOOP.items():
        value = getattr(gc, name, None)
        if value not in off:
            raise ValueError(
                f"sample_loop only implements {', '.join(STEP_ORDER)} and max_new_tokens, but {name}={value!r} "
                "is set (by you or the model's generation_config); use qwenlab.generate for that."
            )


def sample_loop(
    model: CausalLM,
    tokenizer: PreTrainedTokenizerBase,
    prompt_or_messages: Any,
    *,
    enable_thinking: bool | None = None,
    seed: int | None = None,
    skip_special_tokens: bool = True,
    **params: Any,
) -> GenerationResult:
    """Generation written out as a plain loop — the same tokens as ``model.generate``.

    Each turn: run the model on the newest token (the KV cache remembers the rest), take the logits of
    the last position, apply the sampling steps, then pick a token — the most likely one (greedy) or a
    draw from ``softmax(scores)`` with ``torch.multinomial`` (the same RNG calls as transformers, so the
    same seed gives the same tokens). Stop at an end-of-turn token or after ``max_new_tokens``.

    Args: as :func:`qwenlab.generate` (parameters you do not pass come from the model's generation_config).

    Returns a :class:`qwenlab.generation.GenerationResult`.

    Example:
        >>> r = sample_loop(model, tokenizer, "你好", max_new_tokens=20, seed=0)
        >>> r.token_ids == qwenlab.generate(model, tokenizer, "你好", max_new_tokens=20, seed=0).token_ids
        True

    Taught in ``04_generate.ipynb``.
    """
    import torch
    from transformers import DynamicCache

    gc = generation_config(model, tokenizer, params)  # your parameters over the model's generation_config
    _check_loop_supports(gc)
    used = effective_params(model, **params)
    steps = sampling_steps(**{k: used[k] for k in SAMPLING_KEYS})
    end_ids = end_of_turn_ids(gc, tokenizer)
    inputs = {k: v.to(model.device) for k, v in build_inputs(tokenizer, prompt_or_messages, enable_thinking).items()}
    input_ids, attention_mask = inputs["input_ids"], inputs["attention_mask"]
    prompt_len = input_ids.shape[1]
    check_context(model, prompt_len)  # same refusal as generate(), before any compute

    if seed is not None:
        torch.manual_seed(seed)
    start = time.perf_counter()
    cache = DynamicCache(config=model.config)
    new_ids: list[int] = []
    feed = input_ids  # first turn: the whole prompt; later turns: only the newest token
    with torch.inference_mode():
        for _ in range(new_token_limit(gc, prompt_len)):
            out = model(input_ids=feed, attention_mask=attention_mask, past_key_values=cache, use_cache=True,
                        logits_to_keep=1)
            scores = out.logits[:, -1].float()
            scores = apply_steps(steps, input_ids, scores)
            if gc.do_sample:
                token = torch.multinomial(scores.softmax(dim=-1), num_samples=1)
            else:
                token = scores.argmax(dim=-1, keepdim=True)
            input_ids = torch.cat([input_ids, token], dim=-1)
            new_ids.append(int(token))
            if new_ids[-1] in end_ids:
                break
            feed = token
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones(1, 1)], dim=-1)
    seconds = time.perf_counter() - start
    return make_result(tokenizer, gc, new_ids, prompt_len, seconds, skip_special_tokens, used)
