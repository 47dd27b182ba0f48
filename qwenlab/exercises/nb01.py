"""Exercises of ``01_environment.ipynb``: bytes per parameter, fp16/bf16 on a CPU, when environment variables are
read, the shell's ``>``, the memory rule behind the recommendation."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from .core import Mistake, exercise, within


@exercise("01.p1", "predict", hint="先写下预测（'faster' 或 'slower'），再运行计时的那一格。",
          mistakes=[Mistake(lambda a, e: a not in ("faster", "slower"), "答案写成 'faster' 或 'slower'。"),
                    Mistake(lambda a, e: a == "faster" and e == "slower",
                            "fp16 在 GPU 上快（有专门的 Tensor Core）。大多数 CPU 没有 fp16 的乘加指令：PyTorch 只能走"
                            "通用的慢路径，每个数都要转换——数字小一半，不等于算得快。"),
                    Mistake(lambda a, e: a == "slower" and e == "faster",
                            "这块 CPU 有 fp16 的硬件指令（如 AVX512-FP16 / AMX-FP16，新的服务器 CPU），所以 fp16 真的更快；"
                            "普通笔记本 CPU 上通常相反。")])
def _fp16_faster(speed: dict[str, float]) -> str:
    return "faster" if speed["float16"] < speed["float32"] else "slower"


@exercise("01.p2", "predict", hint="先写下你认为 huggingface_hub 那一行会打印的地址（字符串），再运行。",
          mistakes=[Mistake(lambda a, e: "hf-mirror" in a and "hf-mirror" not in e,
                            "huggingface_hub 在被 import 的那一刻读 HF_ENDPOINT，存进 constants.ENDPOINT；"
                            "之后再改 os.environ，它看不到。")])
def _endpoint_after_import(endpoint: str) -> str:
    return endpoint


def _same_files(answer: Any, expected: Any) -> bool:
    names = [answer] if isinstance(answer, str) else list(answer)
    return sorted(names) == sorted(expected)


@exercise("01.p3", "predict", compare=_same_files,
          hint="写下文件名的列表（没有文件就写 []），再运行揭晓的那一格。",
          mistakes=[Mistake(lambda a, e: len(a) == 0,
                            "没加引号的 > 是输出重定向 (redirect)：shell 把它后面的词当成文件名，把命令的输出写进去。"),
                    Mistake(lambda a, e: any(">" in x for x in ([a] if isinstance(a, str) else a)),
                            "> 本身被 shell 吃掉了，不会出现在文件名里；文件名是紧跟在 > 后面的那个词。"),
                    Mistake(lambda a, e: any(x.startswith("4.") for x in ([a] if isinstance(a, str) else a)),
                            "> 后面紧跟的词从 = 开始：等号也是文件名的一部分。")])
def _redirect_files(files: list[str]) -> list[str]:
    return sorted(files)


def _ram_needed_gb(params: int) -> float:
    return (params * 4 * 1.2 + 0.5e9) / 1e9


@exercise("01.1", "reason", compare=within(0.02),
          hint="按 report() 的规则：参数量 × 每个参数的字节数 × 1.2 + 0.5 GB，单位 GB (1e9 字节)。",
          mistakes=[Mistake(lambda a, e: within(0.02)(a, (e - 0.5) / 1.2),
                            "这只是权重：运行时还有激活值和 KV 缓存，规则是再乘 1.2、加 0.5 GB。"),
                    Mistake(lambda a, e: within(0.02)(a, (e - 0.5) / 1.2 / 2 * 1.2 + 0.5),
                            "fp32 每个参数 4 字节；2 字节是 bf16/fp16。"),
                    Mistake(lambda a, e: within(0.02)(a, e - 0.5), "别忘了那 0.5 GB 的固定余量。"),
                    Mistake(lambda a, e: within(0.02)(a, e * 1e9 / 2**30),
                            "题目用 GB (1e9 字节)，你算的是 GiB (2**30 字节)。")])
def _ram_qwen3_fp32() -> float:
    from .. import catalog

    return _ram_needed_gb(catalog.get("Qwen/Qwen3-0.6B").params)


@exercise("01.2", "reason", hint="看 qwenlab.env.recommend 的规则：先试默认模型，内存需求按所选 dtype 算。",
          mistakes=[Mistake(lambda a, e: a == "Qwen/Qwen2.5-0.5B-Instruct",
                            "原生 bf16 时 recommend 选 bf16：每个参数 2 字节，默认模型的内存需求减半，而默认模型是先试的。"),
                    Mistake(lambda a, e: a == "offline",
                            "这台机器能下载、磁盘也够：离线模型只是最后的退路。"),
                    Mistake(lambda a, e: "/" not in a, "写出完整的模型名，例如 'Org/Name'。")])
def _recommend_bf16() -> str:
    from ..env import recommend

    return recommend(ram_available=3.5e9, disk_free=20e9, bf16=True, downloadable=True).model


@exercise("01.3", "lookup", hint="看第 6 节的表格。",
          mistakes=[Mistake(lambda a, e: a == "HF_ENDPOINT", "HF_ENDPOINT 换下载地址，不禁止联网。"),
                    Mistake(lambda a, e: a == "TRANSFORMERS_OFFLINE",
                            "TRANSFORMERS_OFFLINE 是旧名字；今天起作用的是 huggingface_hub 读的那个变量（第 6 节的表）。"),
                    Mistake(lambda a, e: a == "HF_HOME", "HF_HOME 只决定缓存放在哪里。")])
def _offline_var() -> str:
    return "HF_HUB_OFFLINE"


def _bytes_reference(n_params: int, dtype: Any) -> int:
    return int(n_params) * int(dtype.itemsize)


def _bytes_cases(n_params: int) -> Iterator[tuple[int, Any]]:
    import torch

    dtypes = [torch.float32, torch.bfloat16, torch.float16, torch.float64, torch.int8, torch.uint8]
    for dtype in dtypes:
        yield n_params, dtype
    rng = random.Random(1)
    for _ in range(24):
        yield rng.randint(1, 10**10), rng.choice(dtypes)


@exercise("01.w1", "write", cases=_bytes_cases,
          hint="每种 dtype 每个数占几个字节：float64 8、float32 4、bfloat16 / float16 2、int8 / uint8 1。",
          mistakes=[Mistake(lambda got, want: got == want * 8, "你算的是比特 (bits)：1 字节 = 8 比特。"),
                    Mistake(lambda got, want: 0 < got < want / 1e5,
                            "要的是字节数 (bytes)，不要换算成 GB/MB。"),
                    Mistake(lambda got, want: got in (want * 2, want / 2, want * 4, want / 4),
                            "每种 dtype 的字节数不同：float32 是 4，bfloat16 / float16 是 2，int8 是 1，float64 是 8。")])
def _bytes_for(n_params: int) -> Any:
    return _bytes_reference
