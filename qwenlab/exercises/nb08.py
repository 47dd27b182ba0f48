"""Exercises of ``08_serve.ipynb``: base URLs, the SSE stream, API keys, model names, a thought cut by
``max_tokens``, AutoGen Studio's three fields, and two functions to write (a request body the course server
accepts, a stream parser that agrees with the ``openai`` package's own)."""

from __future__ import annotations

import functools
import json
import random
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..serve.protocol import RequestError, chunk, reasoning_delta, usage_chunk, validate_chat_request
from .core import Mistake, exercise

_DATA = "data: "
_QUESTIONS = ["What is the capital of France?", "用一句话介绍长城。", "Say hi.", "1+1=?", "翻译成英文：我喜欢读书。",
              "Name a color.", "写一个“春”字开头的词。", 'Quote "hello" back.', "Line one\nline two?", "🙂 or 🙃?"]
_PIECES = ["Paris", " is", " the", " capital", "。", "长城", "是", "中国", "🙂", "\n", "\n\n", " ", '"', "\\", "data: ",
           "[DONE]", "{", "}", "é", "OK"]


# ---------------------------------------------------------------------------------------- 08.1 .. 08.3


def _url(answer: Any) -> str:
    return str(answer).strip().rstrip("/").replace("127.0.0.1", "localhost")


@exercise("08.1", "lookup", hint="Ollama 的端口是多少？OpenAI 兼容的路径以什么结尾？看第 1 节的表。",
          compare=lambda a, e: isinstance(a, str) and _url(a) == _url(e),
          mistakes=[Mistake(lambda a, e: ":1234" in a, "1234 是 LM Studio 的端口，不是 Ollama 的。"),
                    Mistake(lambda a, e: ":8000" in a, "8000 是 `qwenlab serve` 的默认端口，不是 Ollama 的。"),
                    Mistake(lambda a, e: ":11434" in a and not _url(a).endswith("/v1"),
                            "端口对了，但 openai 客户端只在 base_url 后面接 /chat/completions：OpenAI 兼容的接口在 /v1 下面。"),
                    Mistake(lambda a, e: "/chat/completions" in a,
                            "base_url 只到 /v1：/chat/completions 是客户端自己接上的。")])
def _ollama() -> str:
    return "http://localhost:11434/v1"


@exercise("08.2", "reason", hint="max_tokens 数的是全部生成的 token：思考也算。思考没写完时，回答 (content) 里有什么？",
          mistakes=[Mistake(lambda a, e: a[0] == "stop", "max_tokens 也数思考的 token：思考用完了全部预算，"
                                                        "模型没有机会说完，所以不是 stop。"),
                    Mistake(lambda a, e: bool(a[1]), "回答在 </think> 之后才开始；思考被截断时还没有回答，"
                                                     "服务端不会把半截思考当成回答放进 content。"),
                    Mistake(lambda a, e: a[1] is None, "没有工具调用时 content 是字符串：什么都没说就是空字符串。")])
def _cut_thought(reply: Any) -> tuple[str, Any]:
    choice = reply.choices[0]
    return choice.finish_reason, choice.message.content


@exercise("08.3", "lookup", hint="三个值都在 server 对象上（model、api_key、base_url），和第 6 节的表对照。",
          mistakes=[Mistake(lambda a, e: set(a) != set(e), "字典的三个键要照抄：\"Model Name\"、\"API Key\"、\"Base URL\"。"),
                    Mistake(lambda a, e: not str(a["Base URL"]).rstrip("/").endswith("/v1"),
                            "Base URL 要带 /v1：AutoGen 和 openai 客户端只在它后面接 /chat/completions。"),
                    Mistake(lambda a, e: not a["API Key"], "API Key 不能为空：本地服务不检查它，但客户端要求有一个值。"),
                    Mistake(lambda a, e: "1234" in str(a["Base URL"]),
                            "那是种子里 LM Studio 的地址；这里要填本课服务的地址 (server.base_url)。")])
def _studio(server: Any) -> dict:
    return {"Model Name": server.model, "API Key": server.api_key, "Base URL": server.base_url}


# ---------------------------------------------------------------------------------------- predictions


@exercise("08.p1", "predict", hint="数一数：流的第一块、每段文字一块、带 finish_reason 的一块、结束标记。",
          mistakes=[Mistake(lambda a, e: a == e - 3, "你只数了带文字的块。流还以一个只有 role 的块开始，"
                                                    "以一个带 finish_reason 的空块和一行 data: [DONE] 结束。"),
                    Mistake(lambda a, e: a in (e - 1, e - 2), "差一点：别忘了开头只有 role 的块、结尾带 finish_reason "
                                                              "的块，以及 data: [DONE]。"),
                    Mistake(lambda a, e: a <= 2, "流式不是一次发完：每生成一个 token，服务端就发一块。")])
def _data_lines(lines: list[str]) -> int:
    return sum(1 for line in lines if line.startswith("data:"))


@exercise("08.p2", "predict", hint="密钥不对，说明“你是谁”有问题，不是请求的内容有问题：是哪个 4xx？",
          mistakes=[Mistake(lambda a, e: a == 403, "403 Forbidden 表示“认出了你，但你没有权限”。没带或带错密钥是 "
                                                   "401 Unauthorized（OpenAI 的 authentication_error）。"),
                    Mistake(lambda a, e: a == 400, "400 表示请求本身写错了；这个请求的 JSON 没问题，错的是身份。"),
                    Mistake(lambda a, e: a == 200, "设了 API Key 的服务端在碰模型之前先检查密钥：错的密钥拿不到回答。"),
                    Mistake(lambda a, e: a == 500, "5xx 是服务端自己出错；这里是客户端的密钥不对。")])
def _wrong_key(status: int) -> int:
    return int(status)


@exercise("08.p3", "predict", hint="这个服务端加载了几个模型？LM Studio 只加载一个模型时怎么做？",
          mistakes=[Mistake(lambda a, e: a not in ("answered", "error"), "答案写成 'answered' 或 'error'。"),
                    Mistake(lambda a, e: a == "error" and e == "answered",
                            "这个服务端只加载了一个模型，请求里写什么模型名都由它回答（LM Studio 只加载一个模型时也这样）；"
                            "回答里的 model 字段说明真正回答的是谁。vLLM 和 OpenAI 会对不存在的名字回 404。")])
def _any_name(answered: bool) -> str:
    return "answered" if answered else "error"


# ---------------------------------------------------------------------------------------- 08.w1: a request body


@dataclass(frozen=True)
class _Body:
    """The reference body for one case, and where to POST the student's body to prove the server takes it."""

    body: dict
    base_url: str | None = None

    def __repr__(self) -> str:
        return repr(self.body)


def _post(base_url: str, body: dict) -> bool:
    """POST ``body`` to the running server: True when it answers 200 (a stream: ending in ``data: [DONE]``)."""
    request = urllib.request.Request(f"{base_url}/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy
    try:
        with opener.open(request, timeout=600) as reply:
            text = reply.read().decode()
    except OSError:  # HTTPError (400 ...) is an OSError too
        return False
    if body.get("stream"):
        return text.rstrip().endswith("data: [DONE]")
    return "choices" in json.loads(text)


def _same_request(got: Any, want: _Body) -> bool:
    """Both bodies mean the same to the server (its own checks), and the server answers the student's."""
    if not isinstance(got, dict):
        return False
    try:
        mine, ref = validate_chat_request(got), validate_chat_request(want.body)
    except RequestError:
        return False
    fields = ("model", "messages", "max_tokens", "temperature", "stream")
    if any(getattr(mine, f) != getattr(ref, f) for f in fields):
        return False
    return want.base_url is None or _post(want.base_url, got)


def _refused(body: Any) -> bool:
    try:
        validate_chat_request(body)
    except RequestError:
        return True
    return False


def _body_reference(base_url: str | None = None, posts: int = 4) -> Any:
    calls = iter(range(10**9))

    def chat_body(model: str, question: str, max_tokens: int, temperature: float, stream: bool) -> _Body:
        body = {"model": model, "messages": [{"role": "user", "content": question}], "max_tokens": max_tokens,
                "temperature": temperature, "stream": stream}
        return _Body(body, base_url if next(calls) < posts else None)

    return chat_body


def _body_cases(model: str, base_url: str | None = None) -> Iterator[tuple]:
    rng = random.Random(8)
    for i in range(24):
        stream = i == 1 or (i > 1 and rng.random() < 0.5)
        yield (model, rng.choice(_QUESTIONS), rng.randint(1, 3), rng.choice([0, 0.2, 0.7, 1.0, 1.5]), stream)


@exercise("08.w1", "write", cases=_body_cases,
          compare=_same_request,
          hint="OpenAI 的请求体：model、messages（一个 {\"role\": \"user\", \"content\": ...} 的列表）、max_tokens、"
               "temperature、stream。检查会把你的请求体真的发给服务端。",
          mistakes=[Mistake(lambda got, want: "max_new_tokens" in got,
                            "max_new_tokens 是 transformers generate() 的参数名；OpenAI 格式里叫 max_tokens。"),
                    Mistake(lambda got, want: "prompt" in got or isinstance(got.get("messages"), str),
                            "聊天接口不收 prompt 字符串：messages 是消息的列表，每条是 {\"role\": ..., \"content\": ...}。"),
                    Mistake(lambda got, want: bool({"do_sample", "top_k", "min_p"} & set(got)),
                            "do_sample / top_k / min_p 不在 OpenAI 的格式里，服务端会回 400 并说出字段名。"),
                    Mistake(lambda got, want: "temperature" not in got,
                            "temperature=0 和不写不一样：0 是贪心解码 (greedy)，不写就用模型自己的采样设置。"),
                    Mistake(lambda got, want: bool(got.get("stream")) != bool(want.body["stream"]),
                            "stream 也要照传：True 时服务端回 SSE 块，False 时回一整个 JSON。"),
                    Mistake(lambda got, want: _refused(got),
                            "服务端会用 400 拒绝这个请求体：用 qwenlab.serve.validate_chat_request(body) 看它说哪个字段不对。")])
def _chat_body(model: str, base_url: str | None = None) -> Any:
    return _body_reference(base_url)


# ---------------------------------------------------------------------------------------- 08.w2: parsing SSE


@functools.lru_cache(maxsize=1)
def _offline_client() -> Any:
    from openai import OpenAI

    return OpenAI(api_key="unused", base_url="http://127.0.0.1:9/v1")  # never sends: it only parses here


def openai_sse_content(lines: list[str]) -> str:
    """The answer text of an SSE stream as the ``openai`` package reads it: its own ``Stream`` (SSE decoder,
    ``[DONE]``, error events) and ``ChatCompletionChunk`` type, ``delta.content`` joined (the reference of 08.w2)."""
    import httpx2  # the HTTP library openai 3.x is built on
    from openai import Stream
    from openai.types.chat import ChatCompletionChunk

    raw = "".join(line + "\n" for line in lines).encode()
    response = httpx2.Response(200, content=raw, headers={"content-type": "text/event-stream"},
                              request=httpx2.Request("POST", "http://127.0.0.1:9/v1/chat/completions"))
    stream = Stream(cast_to=ChatCompletionChunk, response=response, client=_offline_client())
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def _stream_lines(rng: random.Random) -> list[str]:
    """One made-up stream in this server's shapes: thought pieces, answer pieces, maybe usage and comments."""
    events: list[dict] = [chunk("c", "m", {"role": "assistant", "content": ""})]
    if rng.random() < 0.4:
        events += [chunk("c", "m", reasoning_delta(rng.choice(_PIECES))) for _ in range(rng.randint(1, 4))]
    events += [chunk("c", "m", {"content": rng.choice(_PIECES)}) for _ in range(rng.randint(0, 8))]
    events.append(chunk("c", "m", {}, rng.choice(["stop", "length"])))
    if rng.random() < 0.4:
        events.append(usage_chunk("c", "m", 9, 5))
    lines: list[str] = []
    for event in events:
        if rng.random() < 0.15:
            lines += [": keep-alive", ""]  # an SSE comment (OpenRouter and others send them)
        lines += [_DATA + json.dumps(event, ensure_ascii=rng.random() < 0.5), ""]
    return lines + ["data: [DONE]", ""]


def _sse_cases(lines: list[str]) -> Iterator[tuple[list[str]]]:
    yield (list(lines),)
    rng = random.Random(14)
    for _ in range(30):
        yield (_stream_lines(rng),)


@exercise("08.w2", "write", cases=_sse_cases,
          hint="只看以 data: 开头的行；data: [DONE] 表示结束；其余每行是一个 JSON 块，文字在 "
               "choices[0].delta.content（choices 可能是空列表，content 可能没有）。",
          mistakes=[Mistake(lambda got, want: "[DONE]" in got and "[DONE]" not in want,
                            "data: [DONE] 不是 JSON 块，是流结束的标记：不要把它当文字。"),
                    Mistake(lambda got, want: got.strip() == want.strip(),
                            "不要 strip()：块里的空格和换行也是回答的一部分。"),
                    Mistake(lambda got, want: len(got) > len(want) and all(c in got for c in want),
                            "多出来的文字多半是思考：reasoning / reasoning_content 不是回答 (content)。"),
                    Mistake(lambda got, want: len(got) < len(want),
                            "少了文字：是不是跳过了某些块（例如一行里的 JSON 正好含有 \"data: \"），或者只取了第一块？")])
def _sse(lines: list[str]) -> Any:
    return openai_sse_content
