"""Exercises of ``09_performance.ipynb``: is decoding memory-bound, the roofline by hand (bytes per token ->
tokens/s, with the KV cache and batching), what batching buys, the KV cache size, reading tok/s claims."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .core import Mistake, exercise, within


class _Batch(int):
    """The expected batch size, carrying the measured ones (for the misconception messages only)."""

    batches: tuple[int, ...] = ()
    slowest: int = 0


# ------------------------------------------------------------------------------------------- predictions


@exercise("09.p1", "predict", hint="写 True（受内存带宽限制 memory-bound）或 False（受算力限制 compute-bound），再运行揭晓的那一格。",
          mistakes=[Mistake(lambda a, e: not isinstance(a, bool), "答案写成 True 或 False。"),
                    Mistake(lambda a, e: a is False and e is True,
                            "CPU 算得并不慢：解码每读 1 字节权重只做约 0.5 次浮点运算 (fp32 一个权重 4 字节、一次乘加 2 FLOP)，"
                            "而你的 CPU 每读 1 字节能做好几次运算。算力在等内存：解码受带宽限制 (memory-bound)。"),
                    Mistake(lambda a, e: a is True and e is False,
                            "在这台机器上算力反而是瓶颈：矩阵乘法的 FLOP/s ÷ 读带宽，比解码的算术强度还小。")])
def _memory_bound(traffic: Any, bw: Any, matmul: Any) -> bool:
    ridge = matmul.flops_per_second / bw.read_bytes_per_second  # FLOPs the CPU can do per byte it reads
    return bool(traffic.intensity < ridge)


def _batch_speedup(report: Any) -> float:
    return float(report.row("batch_8").tokens_per_second / report.row("batch_1").tokens_per_second)


@exercise("09.p2", "predict", hint="写 True（接近 8 倍：≥ 7 倍）或 False，再运行揭晓的那一格。",
          mistakes=[Mistake(lambda a, e: not isinstance(a, bool), "答案写成 True 或 False。"),
                    Mistake(lambda a, e: a is True and e is False,
                            "权重确实每步只读一次，可每一步的计算量是 8 倍：CPU 的算力撑不住 8 条序列，"
                            "每条序列都变慢了。只有纯受带宽限制、算力绰绰有余时（GPU 上接近）才有 8 倍。"),
                    Mistake(lambda a, e: a is False and e is True,
                            "在你的机器上几乎是 8 倍：每步读一次权重、算出 8 个 token，算力还够用——这正是批处理的意义。")])
def _eight_times(report: Any) -> bool:
    return _batch_speedup(report) >= 7.0


# ---------------------------------------------------------------------------------------------- write it


def _roofline_reference(bandwidth: float, weight_bytes: float, kv_bytes_per_token: float, context: int,
                        batch: int) -> float:
    from ..bench import DecodeTraffic, roofline_tokens_per_second

    traffic = DecodeTraffic(weight_bytes=int(weight_bytes), embedding_bytes=0,
                            kv_bytes_per_token=int(kv_bytes_per_token), context=context, batch=batch)
    return roofline_tokens_per_second(float(bandwidth), traffic)


def _roofline_cases(traffic: Any, bw: Any) -> Iterator[tuple[float, int, int, int, int]]:
    """This machine and three others, this model at fp32 / bf16 / int8 / int4, contexts 0..32k, batches 1..32."""
    import random

    rng = random.Random(9)
    bandwidths = [bw.read_bytes_per_second, 20e9, 120e9, 3.35e12]
    for i in range(32):
        divide = (1, 2, 4, 8)[i % 4]
        context = (0, 0, 512, 4096, 32768)[rng.randrange(5)] if i >= 4 else 0  # the plain roofline first
        batch = (1, 1, 2, 8, 32)[rng.randrange(5)] if i >= 4 else 1
        yield (bandwidths[i % 4 if i < 4 else rng.randrange(4)], traffic.weight_bytes // divide,
               traffic.kv_bytes_per_token, context, batch)


@exercise("09.w1", "write", cases=_roofline_cases, compare=within(1e-6),
          hint="每生成一个 token 读的字节 = (权重 + batch × context × 每 token 的 KV 字节) ÷ batch；"
               "上限 tokens/s = 带宽 ÷ 这个数。",
          mistakes=[Mistake(lambda got, want: abs(got / want / 1e9 - 1) < 1e-3 or abs(got * 1e9 / want - 1) < 1e-3,
                            "单位 (units) 差了 10⁹：带宽是 bytes/s（不是 GB/s），字节数也是 bytes。"),
                    Mistake(lambda got, want: got < want,
                            "你的上限偏小。批处理时权重每步只读一次，却产出 batch 个 token：每个 token 只分摊 权重 ÷ batch。"
                            "（KV 缓存是每条序列各读各的，不分摊。）"),
                    Mistake(lambda got, want: got > want,
                            "你的上限偏大：是不是忘了 KV 缓存？每一步每条序列还要读 context × kv_bytes_per_token 字节。")])
def _roofline(traffic: Any, bw: Any) -> Any:
    return _roofline_reference


# ------------------------------------------------------------------------------------------- exercises


@exercise("09.1", "reason", compare=within(0.05),
          hint="int8 每个权重 1 字节 = fp32 的 1/4；上限 = 读带宽 ÷ 每 token 字节数。",
          mistakes=[Mistake(lambda a, e: abs(a / e - 1 / 4) < 0.02,
                            "这是 fp32 的上限（第 3 节）。int8 每个 token 读的字节只有 fp32 的 1/4，上限就是 4 倍。"),
                    Mistake(lambda a, e: abs(a / e - 1 / 16) < 0.005,
                            "方向反了：字节变少，上限变高（带宽 ÷ 更小的数）。"),
                    Mistake(lambda a, e: abs(a / e - 2) < 0.1,
                            "8 倍是 int4（半个字节）；int8 是 1 字节，是 fp32 的 1/4。"),
                    Mistake(lambda a, e: abs(a / e - 1 / 2) < 0.03, "2 倍是 bf16（2 字节）；int8 是 1 字节。"),
                    Mistake(lambda a, e: abs(a / e - 1e-9) < 1e-10 or abs(a / e - 1e9) < 1e8,
                            "单位：带宽用 bytes/s，字节数用 bytes，结果才是 tokens/s。")])
def _int8_roofline(bw: Any, traffic: Any) -> float:
    return float(bw.read_bytes_per_second / (traffic.weight_bytes / 4))


@exercise("09.2", "reason", hint="预填充一次读权重、处理整段提示；解码每读一次权重只算 1 个 token。",
          mistakes=[Mistake(lambda a, e: a not in ("prefill", "decode"), "填 \"prefill\" 或 \"decode\"。"),
                    Mistake(lambda a, e: a == "decode" and e == "prefill",
                            "解码每步读一遍全部权重，只算出 1 个 token；预填充读一遍权重就处理几百个提示 token——每个 token 便宜得多。")])
def _cheaper_per_token(raw: Any) -> str:
    return "prefill" if raw.prefill_tokens_per_second > raw.tokens_per_second else "decode"


@exercise("09.3", "reason", hint="2 (K 和 V) × 层数 × KV 头数 × 每头维度 × 4 字节 × 4096；每头维度用 describe(model).head_dim。",
          mistakes=[Mistake(lambda a, e: a == e // 2,
                            "少了一半：K 和 V 各存一份 (×2)？这个模型是 fp32（4 字节，不是 bf16 的 2）？每头维度用 "
                            "describe(model).head_dim 了吗（Qwen3 的配置写了 head_dim，不等于 hidden_size ÷ 头数）？"),
                    Mistake(lambda a, e: a > e and a % e == 0,
                            "多了整数倍：用的是注意力头数 (num_attention_heads) 吗？分组查询注意力 (GQA) 只缓存 "
                            "num_key_value_heads 个 KV 头。"),
                    Mistake(lambda a, e: a == e // 4096, "这是每个 token 的 KV 字节；还要乘上下文长度 4096。")])
def _kv_bytes(model: Any) -> int:
    from ..bench import decode_traffic

    return int(decode_traffic(model, context=4096).kv_bytes)


def _best_batch(report: Any) -> _Batch:
    rows = [r for r in report.rows if r.group == "batch" and r.ok]
    best = _Batch(max(rows, key=lambda r: r.tokens_per_second).batch)
    best.batches = tuple(r.batch for r in rows)
    return best


@exercise("09.4", "lookup", hint="看第 10 节的图（蓝线：总吞吐），或比较 report.row('batch_8').tokens_per_second 等几行。",
          mistakes=[Mistake(lambda a, e: a not in e.batches, "填一个你测过的批大小（第 10 节图里的横轴）。"),
                    Mistake(lambda a, e: a == 1 and e != 1,
                            "批大小 1 是每条序列最快的，但要的是所有序列加起来的总吞吐。"),
                    Mistake(lambda a, e: a > e,
                            "批越大不一定越好：算力跟不上时，再加序列总吞吐也不再上升，甚至下降——看图上的最高点。")])
def _batch(report: Any) -> int:
    return _best_batch(report)


@exercise("09.5", "reason", hint="200 tok/s × 每 token 字节数（traffic.weight_bytes）要 ≤ 40 GB/s 才可能。",
          mistakes=[Mistake(lambda a, e: not isinstance(a, bool), "填 True 或 False。"),
                    Mistake(lambda a, e: a is True and e is False,
                            "单条序列每生成一个 token 都要读一遍全部 fp32 权重 (traffic.weight_bytes，好几 GB)：每秒 200 次"
                            "就要几百 GB/s，远超 40 GB/s。"
                            "这个数多半是预填充速度、一批的总吞吐，或者是量化模型。")])
def _claim_possible(traffic: Any) -> bool:
    return bool(200 * traffic.weight_bytes <= 40e9)
