"""OpenAI's chat-completions protocol, as this server speaks it: check a request (every field is either
implemented or refused with a 400 that names it — never silently ignored) and build the response
shapes (a completion, stream chunks, the usage chunk, errors).

Taught in ``08_serve.ipynb``.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from .replies import ToolCall

__all__ = [
    "ROLES",
    "SUPPORTED_FIELDS",
    "REASONING_EFFORTS",
    "REASONING_FIELDS",
    "RequestError",
    "ChatRequest",
    "validate_chat_request",
    "decode_json",
    "completion_id",
    "completion",
    "reasoning_delta",
    "chunk",
    "usage",
    "usage_chunk",
    "sse",
    "SSE_DONE",
]

ROLES = ("system", "developer", "user", "assistant", "tool")
SSE_DONE = "data: [DONE]\n\n"

# Every top-level field this server understands; anything else gets a 400 naming it.
SUPPORTED_FIELDS = (
    "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "temperature",
    "top_p", "seed", "stop", "tools", "tool_choice", "parallel_tool_calls", "chat_template_kwargs",
    "reasoning_effort",
    # accepted only with their neutral value (anything else is refused, see _NEUTRAL)
    "n", "frequency_penalty", "presence_penalty", "logprobs", "top_logprobs", "response_format", "store",
    # bookkeeping that does not change the answer
    "user",
)
_NEUTRAL = {  # field: (allowed values, why another value is refused)
    "n": ((1,), "this server writes one answer per request; send several requests instead"),
    "frequency_penalty": ((0, 0.0), "penalties are not implemented; leave it out (the model's own "
                                    "repetition_penalty from generation_config.json applies)"),
    "presence_penalty": ((0, 0.0), "penalties are not implemented; leave it out"),
    "logprobs": ((False,), "token log-probabilities are not implemented (qwenlab.sampling shows them in a notebook)"),
    "top_logprobs": ((0,), "token log-probabilities are not implemented"),
    "store": ((False,), "this server stores nothing"),
}
_MAX_STOP = 16
# OpenAI's reasoning_effort values. Qwen's thinking is on or off (no effort levels): "none" turns it off
# (as in llama.cpp and Ollama), every other value turns it on.
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
# The thought goes out under both names: llama.cpp, LM Studio and DeepSeek's API use the first; vLLM (which
# renamed it in 0.11 and later dropped the old name), Ollama's /v1 and OpenRouter use the second.
REASONING_FIELDS = ("reasoning_content", "reasoning")


class RequestError(ValueError):
    """A request this server will not run; becomes an HTTP error in OpenAI's ``{"error": {...}}`` shape."""

    def __init__(self, message: str, status: int = 400, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.param, self.code = status, param, code

    def payload(self) -> dict:
        """OpenAI's error body: ``{"error": {"message", "type", "param", "code"}}``."""
        kind = {401: "authentication_error", 404: "not_found_error", 429: "rate_limit_error",
                503: "server_error", 500: "server_error"}.get(self.status, "invalid_request_error")
        return {"error": {"message": str(self), "type": kind, "param": self.param, "code": self.code}}


@dataclass
class ChatRequest:
    """A checked ``/v1/chat/completions`` request, ready for the chat template and ``generate``.

    Attributes:
        messages: the conversation in the form chat templates expect (text parts joined, tool-call
            arguments as objects, ``developer`` as ``system``).
        model: the name the client sent (any name is answered by the one model served).
        max_tokens: the reply's token limit the client asked for (None: as many as the server allows).
        temperature / top_p / seed: sampling (None: the model's generation_config).
        stop: stop strings (the reply ends before the first one).
        tools: function definitions for the template (None: no tools offered).
        parallel_tool_calls: keep every call the model writes (False: only the first).
        template_kwargs: extra chat-template variables (``enable_thinking``, from ``chat_template_kwargs``
            or ``reasoning_effort``).
    """

    messages: list[dict]
    model: str | None = None
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    tools: list[dict] | None = None
    parallel_tool_calls: bool = True
    template_kwargs: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------- checks


def _bad(message: str, param: str | None = None, code: str = "invalid_value") -> RequestError:
    return RequestError(message, param=param, code=code)


def _whole(body: dict, key: str, low: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise _bad(f"{key} must be a whole number >= {low}, got {value!r}; leave it out for the default.", key)
    return value


def _number(body: dict, key: str, low: float, high: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise _bad(f"{key} must be a number between {low} and {high}, got {value!r}.", key)
    return float(value)


def _check_known_fields(body: dict) -> None:
    unknown = sorted(k for k in body if k not in SUPPORTED_FIELDS)
    if unknown:
        raise _bad(f"Unsupported field(s) {', '.join(unknown)}: this server does not implement "
                   f"{'them' if len(unknown) > 1 else 'it'}, so the answer would not do what you asked; remove "
                   f"{'them' if len(unknown) > 1 else 'it'}. Supported: {', '.join(SUPPORTED_FIELDS)}.",
                   unknown[0], "unsupported_parameter")
    for key, (allowed, why) in _NEUTRAL.items():
        value = body.get(key)
        if value is not None and (isinstance(value, bool) != isinstance(allowed[0], bool) or value not in allowed):
            raise _bad(f"{key}={value!r} is not supported: {why}.", key, "unsupported_parameter")
    response_format = body.get("response_format")
    if response_format is not None and response_format != {"type": "text"}:
        raise _bad(f"response_format={response_format!r} is not supported: the server cannot force JSON output; "
                   "ask for JSON in the prompt and parse the text, or leave response_format out.",
                   "response_format", "unsupported_parameter")


def _text_of(content: Any, where: str) -> str:
    """A message's content as text: a string, or OpenAI's list of ``{"type": "text", "text": ...}`` parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad(f"{where} must be a string or a list of text parts, got {content!r}.", where)
    texts = []
    for i, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
            kind = part.get("type") if isinstance(part, dict) else None
            extra = f" (a {kind!r} part: this model reads text only)" if kind and kind != "text" else ""
            raise _bad(f"{where}[{i}] must be a text part such as {{\"type\": \"text\", \"text\": \"Hello\"}}, "
                       f"got {part!r}{extra}.", f"{where}[{i}]")
        texts.append(part["text"])
    return "\n".join(texts)


def _template_tool_calls(calls: Any, where: str) -> list[dict]:
    """An assistant message's ``tool_calls`` with JSON-text arguments turned into objects (Qwen's templates
    write ``arguments | tojson``: a string would be quoted twice)."""
    if not isinstance(calls, list):
        raise _bad(f"{where} must be a list of tool calls, got {calls!r}.", where)
    out = []
    for i, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise _bad(f"{where}[{i}] must look like {{\"type\": \"function\", \"function\": {{\"name\": ..., "
                       f"\"arguments\": \"{{...}}\"}}}}, got {call!r}.", f"{where}[{i}]")
        arguments = function.get("arguments") or "{}"
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError:
                raise _bad(f"{where}[{i}].function.arguments is not valid JSON: {arguments!r}.",
                           f"{where}[{i}]") from None
        out.append({**call, "function": {"name": function["name"], "arguments": arguments}})
    return out


def _check_message(i: int, message: Any) -> dict:
    where = f"messages[{i}]"
    if not isinstance(message, dict) or message.get("role") not in ROLES:
        raise _bad(f"{where} must be an object with a role in {list(ROLES)}, got {message!r}.", where)
    role = message["role"]
    content = message.get("content")
    if content is None and not (role == "assistant" and message.get("tool_calls")):
        raise _bad(f"{where} has no content; give it a text (it may be \"\").", f"{where}.content")
    out: dict = {"role": "system" if role == "developer" else role,
                 "content": "" if content is None else _text_of(content, f"{where}.content")}
    if message.get("tool_calls"):
        out["tool_calls"] = _template_tool_calls(message["tool_calls"], f"{where}.tool_calls")
    if role == "tool" and isinstance(message.get("tool_call_id"), str):
        out["tool_call_id"] = message["tool_call_id"]
    return out


def _check_messages(messages: Any) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise _bad("messages must be a non-empty list such as [{\"role\": \"user\", \"content\": \"Hello\"}], "
                   f"got {messages!r}.", "messages")
    return [_check_message(i, m) for i, m in enumerate(messages)]


def _check_stop(stop: Any) -> list[str]:
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else stop
    if (not isinstance(stops, list) or not 1 <= len(stops) <= _MAX_STOP
            or not all(isinstance(s, str) and s for s in stops)):
        raise _bad(f"stop must be a non-empty string or a list of 1 to {_MAX_STOP} non-empty strings, got {stop!r}.",
                   "stop")
    return stops


def _check_tools(body: dict) -> list[dict] | None:
    tools, choice = body.get("tools"), body.get("tool_choice")
    if tools is not None:
        if not isinstance(tools, list) or not all(
                isinstance(t, dict) and t.get("type") == "function" and isinstance(t.get("function"), dict)
                and isinstance(t["function"].get("name"), str) for t in tools):
            raise _bad("tools must be a list of {\"type\": \"function\", \"function\": {\"name\": ..., "
                       "\"parameters\": {...}}} objects.", "tools")
    if choice not in (None, "auto", "none"):
        raise _bad(f"tool_choice={choice!r} is not supported: the model decides by itself whether to call a tool "
                   "(\"auto\"), or \"none\" hides the tools; it cannot be forced to call one.",
                   "tool_choice", "unsupported_parameter")
    if "parallel_tool_calls" in body and not isinstance(body["parallel_tool_calls"], bool):
        raise _bad(f"parallel_tool_calls must be true or false, got {body['parallel_tool_calls']!r}.",
                   "parallel_tool_calls")
    return tools if tools and choice != "none" else None


def _template_kwargs(body: dict) -> dict:
    """``chat_template_kwargs`` (vLLM / SGLang / llama.cpp) plus what ``reasoning_effort`` (OpenAI, Ollama)
    means for Qwen: ``"none"`` is ``enable_thinking=False``, any other effort ``enable_thinking=True``."""
    kwargs = body.get("chat_template_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise _bad(f"chat_template_kwargs must be an object such as {{\"enable_thinking\": false}}, got {kwargs!r}.",
                   "chat_template_kwargs")
    effort = body.get("reasoning_effort")
    if effort is None:
        return dict(kwargs)
    if effort not in REASONING_EFFORTS:
        raise _bad(f"reasoning_effort must be one of {', '.join(REASONING_EFFORTS)}, got {effort!r}; "
                   "\"none\" turns thinking off, any other value turns it on.", "reasoning_effort")
    thinking = effort != "none"
    if "enable_thinking" in kwargs and bool(kwargs["enable_thinking"]) != thinking:
        raise _bad(f"reasoning_effort={effort!r} and chat_template_kwargs.enable_thinking="
                   f"{kwargs['enable_thinking']!r} contradict each other; send only one of them.", "reasoning_effort")
    return {**kwargs, "enable_thinking": thinking}


def _check_streaming(body: dict) -> tuple[bool, bool]:
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise _bad(f"stream must be true or false, got {stream!r}.", "stream")
    options = body.get("stream_options")
    if options is None:
        return stream, False
    if not stream:
        raise _bad("stream_options is only allowed with stream=true.", "stream_options")
    if not isinstance(options, dict) or set(options) - {"include_usage"} or not isinstance(
            options.get("include_usage", False), bool):
        raise _bad(f"stream_options supports only {{\"include_usage\": true/false}}, got {options!r}.",
                   "stream_options", "unsupported_parameter")
    return stream, options.get("include_usage", False)


def validate_chat_request(body: Any) -> ChatRequest:
    """Check a ``/v1/chat/completions`` body before it reaches the model.

    Any model name is accepted (one model is served; it answers them all, as LM Studio does).

    Returns:
        The :class:`ChatRequest` to run.

    Raises:
        RequestError: status 400 with one sentence naming the field and what to do.

    Example:
        >>> validate_chat_request({"messages": [{"role": "user", "content": "hi"}], "stop": "END"}).stop
        ['END']

    Taught in ``08_serve.ipynb``.
    """
    if not isinstance(body, dict):
        raise RequestError(f"The request body must be a JSON object, got {type(body).__name__}.")
    _check_known_fields(body)
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise _bad(f"model must be a string, got {model!r}.", "model")
    messages = _check_messages(body.get("messages"))
    limits = [_whole(body, k, 1) for k in ("max_completion_tokens", "max_tokens")]
    kwargs = _template_kwargs(body)
    stream, include_usage = _check_streaming(body)
    seed = _whole(body, "seed", -(2**63))
    return ChatRequest(
        messages=messages, model=model, stream=stream, include_usage=include_usage,
        max_tokens=next((n for n in limits if n is not None), None),
        temperature=_number(body, "temperature", 0.0, 2.0), top_p=_number(body, "top_p", 0.0, 1.0),
        seed=None if seed is None else seed % 2**32, stop=_check_stop(body.get("stop")), tools=_check_tools(body),
        parallel_tool_calls=body.get("parallel_tool_calls", True), template_kwargs=kwargs,
    )


def decode_json(raw: bytes) -> Any:
    """The request body as JSON, or a 400 that says it is not JSON."""
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RequestError(f"The request body is not valid JSON ({err}); send a JSON object such as "
                           "{\"model\": ..., \"messages\": [...]}.", code="invalid_json") from None


# --------------------------------------------------------------------------------------- responses


def completion_id() -> str:
    """A new id for one completion (``chatcmpl-…``, as OpenAI's)."""
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    """OpenAI's ``usage`` object."""
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def completion(cid: str, model: str, content: str, reasoning: str, calls: list[ToolCall], finish_reason: str,
               prompt_tokens: int, completion_tokens: int) -> dict:
    """A non-streaming ``chat.completion`` body; a thought goes in both :data:`REASONING_FIELDS`."""
    message: dict = {"role": "assistant", "content": content if content or not calls else None}
    if reasoning:
        message.update(reasoning_delta(reasoning))
    if calls:
        message["tool_calls"] = [c.to_openai() for c in calls]
    return {"id": cid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
            "usage": usage(prompt_tokens, completion_tokens)}


def reasoning_delta(text: str) -> dict:
    """A piece of the thought under both names a client may read: ``{"reasoning_content": …, "reasoning": …}``.

    >>> reasoning_delta("9.9 > 9.11")
    {'reasoning_content': '9.9 > 9.11', 'reasoning': '9.9 > 9.11'}
    """
    return dict.fromkeys(REASONING_FIELDS, text)


def chunk(cid: str, model: str, delta: dict | None = None, finish_reason: str | None = None,
          with_usage_field: bool = False) -> dict:
    """One ``chat.completion.chunk`` with one choice. With ``stream_options.include_usage`` every such chunk
    carries ``"usage": null`` (the usage comes in its own last chunk, :func:`usage_chunk`)."""
    body: dict = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
                  "choices": [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish_reason}]}
    if with_usage_field:
        body["usage"] = None
    return body


def usage_chunk(cid: str, model: str, prompt_tokens: int, completion_tokens: int) -> dict:
    """The last chunk when the client asked for usage: no choices, only ``usage``."""
    return {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [], "usage": usage(prompt_tokens, completion_tokens)}


def sse(data: dict) -> str:
    """One Server-Sent Event line: ``data: {...}`` and a blank line."""
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"
