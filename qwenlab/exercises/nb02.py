"""Exercises of ``02_download.ipynb``: resuming after a dropped connection, what a second download fetches, the
Hub's file URLs and cache folder names (checked against ``huggingface_hub`` itself), when a folder is a model."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from .core import Mistake, exercise

_ORGS = ["Qwen", "qwenlab", "deepseek-ai", "google", "my-org", "a.b_c"]
_NAMES = ["Qwen3-0.6B", "Qwen2.5-0.5B-Instruct", "gemma-3-270m", "tiny", "Qwen1.5-0.5B-Chat", "x.y-z_1"]
_FILES = ["config.json", "model.safetensors", "tokenizer.json", "onnx/model.onnx", "model-00001-of-00002.safetensors",
          "gguf/q4_k_m.gguf", "README.md"]
_REVISIONS = ["main", "v1.0", "refs/pr/3", "refs/convert/parquet", "619f9fc3ed4536dd902e07caf4023d21e63c54ee"]
_ENDPOINTS = ["https://huggingface.co", "https://hf-mirror.com", "http://192.168.1.10:8090", "http://127.0.0.1:8090"]


def repo_ids(n: int = 24, seed: int = 0) -> Iterator[str]:
    """Repo ids like the Hub's (the same ones every run)."""
    rng = random.Random(seed)
    for _ in range(n):
        yield f"{rng.choice(_ORGS)}/{rng.choice(_NAMES)}"


@exercise("02.p1", "predict", hint="文件有多大？每次连接最多传 400 MB，断了就带 Range 再请求一次。",
          mistakes=[Mistake(lambda a, e: a == 1, "断开以后客户端不会放弃：它带着 Range: bytes=N- 重新请求剩下的部分。"),
                    Mistake(lambda a, e: a == e - 1,
                            "差一次：前几次各在 400 MB 处断开，最后剩下不到 400 MB 的那一段也要一次请求。"),
                    Mistake(lambda a, e: a > e + 1,
                            "续传从断点附近继续（只重拿最后没写完的 10 MB 块），不是从 0 开始，所以不需要那么多次。")])
def _gets(requests: list[Any]) -> int:
    return len(requests)


@exercise("02.p2", "predict", hint="写下你预测的字节数（整数），再运行下一格。",
          mistakes=[Mistake(lambda a, e: a > e,
                            "下载前每个文件都先按大小和 SHA-256 跟磁盘上的核对：已经完整的文件一个字节也不再下载。")])
def _refetched(again: Any) -> int:
    return int(again.bytes_fetched)


@exercise("02.1", "lookup", hint="看 report.source（第 5 节那张表的“来源”一行）。",
          mistakes=[Mistake(lambda a, e: a in ("huggingface", "hf-mirror", "modelscope"),
                            "看“尝试过 (sources tried)”：这台机器上公共来源都连不上 (unreachable)，最后用的是课堂镜像。"),
                    Mistake(lambda a, e: isinstance(a, str) and a.startswith("http"),
                            "要的是来源的名字 (report.source)，不是它的地址。")])
def _source(report: Any) -> str:
    return str(report.source)


@exercise("02.2", "reason", hint="没有哪个文件，任何程序都不会把一个文件夹当成模型？qwenlab 总是最后写它。",
          mistakes=[Mistake(lambda a, e: a.endswith(".safetensors"),
                            "权重文件最大，但 transformers / qwenlab 判断“这是不是一个模型”先读的是描述模型结构的那个小文件："
                            "只有权重，from_pretrained 不知道要建一个什么样的模型。"),
                    Mistake(lambda a, e: "download.json" in a or "partial" in a,
                            "那是 qwenlab 自己的记录；transformers 不认识它。哪个文件是每个模型文件夹都有、而且 from_pretrained 先读的？"),
                    Mistake(lambda a, e: a.startswith("tokenizer"), "分词器文件缺了，模型本身仍然能被认出来；先读的是结构。")])
def _written_last() -> str:
    return "config.json"


def _url_cases() -> Iterator[tuple[str, str, str, str]]:
    rng = random.Random(2)
    for repo_id in repo_ids():
        yield repo_id, rng.choice(_FILES), rng.choice(_REVISIONS), rng.choice(_ENDPOINTS)


@exercise("02.w1", "write", cases=_url_cases,
          hint="格式是 {endpoint}/{repo_id}/resolve/{revision}/{filename}；revision 里的 '/' 要编码成 %2F："
               "urllib.parse.quote(revision, safe='')。",
          mistakes=[Mistake(lambda got, want: "/blob/" in got,
                            "blob 是给人看的网页；下载原始文件的地址用 resolve。"),
                    Mistake(lambda got, want: "%2F" in want and "%2F" not in got,
                            "revision 可以是 'refs/pr/3' 这样带 '/' 的名字：放进 URL 前要编码成 %2F，"
                            "否则服务器会把它当成文件路径的一部分。文件名里的 '/'（子文件夹）则保持不变。"),
                    Mistake(lambda got, want: got.split("/")[2] != want.split("/")[2],
                            "用传进来的 endpoint：课堂镜像和 hf-mirror 说的是同一种协议，只是地址不同。")])
def _hub_url() -> Any:
    from huggingface_hub import hf_hub_url

    return lambda repo_id, filename, revision, endpoint: hf_hub_url(repo_id, filename, revision=revision,
                                                                    endpoint=endpoint)


def _folder_cases() -> Iterator[tuple[str]]:
    for repo_id in repo_ids(seed=3):
        yield (repo_id,)


@exercise("02.w2", "write", cases=_folder_cases,
          hint="看第 4 节 hf_hub_download 返回的路径：models-- 开头，'/' 换成 '--'。",
          mistakes=[Mistake(lambda got, want: not got.startswith("models--"),
                            "缓存里模型、数据集、Space 分开放：模型的文件夹以 models-- 开头。"),
                    Mistake(lambda got, want: "/" in got, "文件夹名里不能有 '/'：把它换成 '--'。"),
                    Mistake(lambda got, want: got.lower() == want.lower(), "大小写要保持原样：Qwen 和 qwen 是两个组织。")])
def _cache_folder() -> Any:
    from huggingface_hub.file_download import repo_folder_name

    return lambda repo_id: repo_folder_name(repo_id=repo_id, repo_type="model")
