"""Exercises of ``07_quantization.ipynb``: int8 by hand (per-channel, with an error bound), what an int8 model
really weighs, whether int8 changes the answer, outlier channels, reading the side-by-side comparison."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .core import Mistake, exercise, within

#: The Linear layers inside each decoder layer: what transformers' ``TorchAoConfig`` quantizes by default
#: (``lm_head`` and the embedding table stay float). Notebook 07 passes them to ``quantize(..., modules=)``.
DECODER_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class _Name(str):
    """The expected name, carrying what the misconception messages need (never shown to the student)."""

    fastest: str = ""
    reference: str = ""
    names: tuple[str, ...] = ()


# ------------------------------------------------------------------------------------------- predictions


@exercise("07.p1", "predict", hint="先写下预测 (True = 答案变了 / False = 没变)，再运行揭晓的那一格。",
          mistakes=[Mistake(lambda a, e: not isinstance(a, bool), "答案写成 True（答案变了）或 False（没变）。"),
                    Mistake(lambda a, e: a is False and e is True,
                            "种子说 int8“几乎无损”，但 torch 默认的 quantize_dynamic：每个权重张量只有一个 scale (per-tensor)，"
                            "激活只用 7 比特、整个 prompt 共用一个 scale——第 4、5 节的离群通道把其余的值压扁了。"
                            "0.5B 的小模型对这点误差很敏感，贪心解码 (greedy) 只要一步选错，后面就全变了。"),
                    Mistake(lambda a, e: a is True and e is False,
                            "这次答案没变：只要每一步概率最高的 token 没被误差挤下去，贪心解码的结果就和 fp32 一样。")])
def _answer_changes(fp32_answer: str, int8_answer: str) -> bool:
    from ..evaluation import same_answer

    return not same_answer(fp32_answer, int8_answer)


@exercise("07.p2", "predict", compare=within(0.15),
          hint="写一个比例，例如 0.5 表示 int8 模型占 fp32 的一半。想一想：哪些张量被量化了，哪些没有？",
          mistakes=[Mistake(lambda a, e: not isinstance(a, (int, float)) or isinstance(a, bool),
                            "写一个数（比例），例如 0.5。"),
                    Mistake(lambda a, e: a > 1, "要的是 int8 ÷ fp32 的比例，应该小于 1。"),
                    Mistake(lambda a, e: abs(a - 0.25) < 0.04 and e > 0.35,
                            "你假设每个参数都变成了 1 字节 (1/4)。TorchAoConfig 默认只量化解码层里的 Linear："
                            "词嵌入表 (embed_tokens) 和 lm_head 仍是 fp32，而在 0.5B 模型里它们占了很大一块。"),
                    Mistake(lambda a, e: abs(a - 0.125) < 0.03,
                            "1/8 是 int4（半个字节）对 fp32；int8 每个权重 1 字节，而且不是每个张量都被量化了。"),
                    Mistake(lambda a, e: a > e, "比实际大：被量化的那些 Linear 每个权重从 4 字节变成 1 字节（加上每行一个 scale）。"),
                    Mistake(lambda a, e: a < e, "比实际小：不是所有张量都被量化——看一看哪些模块还是 fp32 (Parameter)。")])
def _int8_fraction(int8: Any, fp32: Any) -> float:
    return float(int8.total_bytes / fp32.total_bytes)


# ---------------------------------------------------------------------------------------------- write it


class _Reference:
    """The reference's answer on one input: qwenlab's codes and scales, and the input itself (for the bound)."""

    def __init__(self, w: Any):
        from ..quant import quantize_tensor

        qt = quantize_tensor(w, bits=8, scheme="per-channel")
        self.w, self.q, self.scale = w, qt.values, qt.scale.reshape(-1, 1)

    def __repr__(self) -> str:
        return f"(q: int8 {tuple(self.q.shape)}, scale: {tuple(self.scale.shape)} = max|row| / 127)"


def _as_pair(got: Any) -> tuple[Any, Any]:
    import torch

    q, scale = got
    return torch.as_tensor(q), torch.as_tensor(scale, dtype=torch.float32)


def _int8_ok(got: Any, want: _Reference) -> bool:
    """Codes are integers in [-127, 127] within 1 of qwenlab's, scales agree where a row is not all zero,
    and the round trip ``q * scale`` lands within half a step of ``w`` in every channel."""
    import torch

    try:
        q, scale = _as_pair(got)
    except (TypeError, ValueError, RuntimeError):
        return False
    rows = want.w.shape[0]
    if q.shape != want.w.shape or scale.numel() != rows:
        return False
    q, scale = q.double(), scale.double().reshape(rows, 1)
    w = want.w.double()
    if not torch.isfinite(q).all() or not torch.equal(q, q.round()) or q.abs().max() > 127:
        return False
    if (q - want.q.double()).abs().max() > 1:
        return False
    live = w.abs().amax(dim=1) > 0
    if not torch.allclose(scale[live], want.scale.double()[live], rtol=1e-4, atol=0.0):
        return False
    err = (q * scale - w).abs()
    bound = scale / 2 + 1e-6 * w.abs().amax(dim=1, keepdim=True)
    return bool((err[live] <= bound[live]).all() and (q[~live] == 0).all())


def _matrices(seed: int = 0) -> Iterator[tuple[Any]]:
    """30 weight-like matrices: Gaussian, uniform, tiny and huge values, outlier rows, one all-zero row."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    for i in range(30):
        most = (4, 6) if i < 10 else (48, 96)  # small ones first: a counterexample you can read
        rows, cols = (int(torch.randint(1, n + 1, (1,), generator=gen)) for n in most)
        if i % 3 == 0:
            w = torch.rand(rows, cols, generator=gen) * 2 - 1
        else:
            w = torch.randn(rows, cols, generator=gen) * 10 ** float(torch.randint(-3, 2, (1,), generator=gen))
        if i % 4 == 1 and rows > 1:
            w[int(torch.randint(0, rows, (1,), generator=gen))] *= 40  # an outlier channel
        if i == 29:
            w[0] = 0.0  # a row of zeros: max|w| = 0
        yield (w,)


def _scale_is_per_tensor(got: Any, want: _Reference) -> bool:
    return _as_pair(got)[1].numel() == 1 and want.w.shape[0] > 1


def _scale_is_per_column(got: Any, want: _Reference) -> bool:
    return _as_pair(got)[1].numel() == want.w.shape[1] != want.w.shape[0]


def _scale_ratio(got: Any, want: _Reference) -> float:
    import torch

    _, scale = _as_pair(got)
    live = want.w.abs().amax(dim=1) > 0
    return float(torch.median(scale.reshape(-1, 1)[live] / want.scale[live]))


def _zero_row_broken(got: Any, want: _Reference) -> bool:
    import torch

    q, _ = _as_pair(got)
    dead = want.w.abs().amax(dim=1) == 0
    return bool(dead.any()) and not bool(torch.isfinite(q.double()[dead]).all())


@exercise("07.w1", "write", cases=lambda: _matrices(), compare=_int8_ok,
          hint="每一行 (output channel) 一个 scale：scale = w.abs().amax(dim=1, keepdim=True) / 127，"
               "q = torch.round(w / scale).clamp(-127, 127)；返回 (q, scale)。",
          mistakes=[Mistake(lambda got, want: not (isinstance(got, (tuple, list)) and len(got) == 2),
                            "返回两样东西：return q, scale（整数码和每行的 scale）。"),
                    Mistake(lambda got, want: tuple(_as_pair(got)[0].shape) != tuple(want.w.shape),
                            "q 的形状要和 w 一样：每个权重一个整数码。"),
                    Mistake(_zero_row_broken,
                            "有一行全是 0：scale = 0，0 / 0 = nan。像 qwenlab 一样给 scale 一个很小的下限："
                            ".clamp(min=torch.finfo(torch.float32).tiny)。"),
                    Mistake(_scale_is_per_tensor, "你只用了一个 scale（整个矩阵 per-tensor）。这里要每一行 (每个输出通道) 一个。"),
                    Mistake(_scale_is_per_column, "你按列求了 max（dim=0，每个输入通道）。输出通道是行：amax(dim=1)。"),
                    Mistake(lambda got, want: abs(_scale_ratio(got, want) - 127 / 255) < 1e-3,
                            "对称 (symmetric) int8 的码是 -127…127：scale = max|w| / 127，不是 / 255。"),
                    Mistake(lambda got, want: abs(_scale_ratio(got, want) - 127 / 128) < 1e-3,
                            "用 / 127 而不是 / 128：最大的数要正好落在 127 上，-128 不用（保持对称）。"),
                    Mistake(lambda got, want: not bool(_as_pair(got)[0].double().eq(_as_pair(got)[0].double().round()).all()),
                            "码 (codes) 必须是整数：别忘了 torch.round。"),
                    Mistake(lambda got, want: True,
                            "还原 q * scale 离 w 超过了半个步长 (scale / 2)：是不是用了截断 (.int() / .to(torch.int8)) "
                            "而不是 torch.round？")])
def _int8_reference() -> Any:
    return _Reference


# ------------------------------------------------------------------------------------------- exercises


@exercise("07.1", "reason", compare=within(0.02),
          hint="每个权重 0.5 字节，再加上每 64 个权重一个 2 字节的 scale：params × (0.5 + 2/64)。",
          mistakes=[Mistake(lambda a, e: abs(a / e - 0.5 / (0.5 + 2 / 64)) < 0.01,
                            "你只算了 4 比特的码，忘了 scale：每 64 个权重还要存一个 2 字节的 scale。"),
                    Mistake(lambda a, e: abs(a / e - 8) < 0.2,
                            "你算的是比特 (bits)，要的是字节 (bytes)：除以 8。"),
                    Mistake(lambda a, e: abs(a / e - (0.5 + 4 / 64) / (0.5 + 2 / 64)) < 0.01,
                            "题目里的 scale 是 2 字节 (fp16)，不是 4 字节。"),
                    Mistake(lambda a, e: abs(a / e - 1 / (0.5 + 2 / 64)) < 0.05,
                            "这是 int8（每个权重 1 字节）的大小；int4 是半个字节。"),
                    Mistake(lambda a, e: abs(a / e - 4 / (0.5 + 2 / 64)) < 0.1, "这是 fp32（每个权重 4 字节）的大小。")])
def _int4_bytes(params: int) -> float:
    return params * (0.5 + 2 / 64)


@exercise("07.6", "reason", compare=within(0.02),
          hint="每道题独立地以 95 % 的概率不变；14 道都不变 = 14 个 0.95 相乘。",
          mistakes=[Mistake(lambda a, e: not isinstance(a, (int, float)) or isinstance(a, bool) or not 0 <= a <= 1,
                            "写一个 0 到 1 之间的概率，例如 0.3。"),
                    Mistake(lambda a, e: abs(a - (1 - e)) < 0.02,
                            "这是“至少有一道变了”的概率；题目问的是 14 道**全部不变**。"),
                    Mistake(lambda a, e: abs(a - 0.05 ** 14) < 1e-6 or a < 1e-6,
                            "0.05 是每道题**变**的概率；不变的概率是 0.95。"),
                    Mistake(lambda a, e: abs(a - 0.95) < 0.01,
                            "0.95 只是一道题不变的概率；14 道都不变要把 14 个 0.95 乘起来。")])
def _probes_all_kept(change_rate: float = 0.05, probes: int = 14) -> float:
    """Chance that a recipe which changes ``change_rate`` of all answers keeps every one of ``probes`` probes."""
    return (1 - change_rate) ** probes


@exercise("07.2", "reason", hint="scale = max|w| / 127；每个数除以 scale 再四舍五入 (torch.round，.5 舍入到偶数)。",
          mistakes=[Mistake(lambda a, e: len(a) != len(e), "每个数一个码：列表长度要和 w 一样。"),
                    Mistake(lambda a, e: any(isinstance(x, float) and x != int(x) for x in a),
                            "码是整数：除以 scale 之后还要四舍五入。"),
                    Mistake(lambda a, e: list(a)[1] == e[1] + 1,
                            "-63.5 被你截断成了 -63。量化用四舍五入：torch.round(-63.5) = -64（.5 舍入到偶数）。"),
                    Mistake(lambda a, e: max(abs(x) for x in a) > 127,
                            "对称 int8 的最大码是 127：最大的 |w| 正好对应 127。"),
                    Mistake(lambda a, e: max(abs(x) for x in a) < 127,
                            "最大的 |w|（这里是 1.0）应该正好对应 127：scale = max|w| / 127。")])
def _codes(w: Any) -> list[int]:
    from ..quant import quantize_tensor

    return [int(x) for x in quantize_tensor(w, bits=8, scheme="per-tensor").values.flatten().tolist()]


@exercise("07.3", "reason", hint="per-channel 每行一个 scale；组 32 每行有很多个 scale。一个 scale 管的数越少，步长离它们越近。",
          mistakes=[Mistake(lambda a, e: not isinstance(a, bool), "填 True 或 False。"),
                    Mistake(lambda a, e: a is False and e is True,
                            "per-channel 已经解决了“离群的那一行”；但在每一行内部，一个 scale 仍要照顾几百个权重里最大的那个。"
                            "分组后每 32 个权重各有自己的 scale，步长贴着这 32 个数的范围，误差更小（代价是更多 scale）。"),
                    Mistake(lambda a, e: a is True and e is False,
                            "在这个矩阵上分组没有帮上忙：用 quant.quant_error 比一比两者的 rel_error。")])
def _group_beats_channel(w_out: Any) -> bool:
    from ..quant import quant_error

    return bool(quant_error(w_out, 4, "group", 32).rel_error < quant_error(w_out, 4, "per-channel").rel_error)


def _fastest_kept(cmp: Any) -> Any:
    kept = [r for r in cmp.rows if r.name != cmp.reference and r.kept == r.total]
    name = _Name(max(kept, key=lambda r: r.decode_tokens_per_second).name if kept else "")
    others = [r for r in cmp.rows if r.name != cmp.reference]
    name.fastest = max(others, key=lambda r: r.decode_tokens_per_second).name if others else ""
    name.reference = cmp.reference
    name.names = tuple(r.name for r in cmp.rows)
    return name


@exercise("07.4", "lookup", hint="先只看 'same as ref' 等于全部题数的行（fp32 自己除外），再在其中比 decode tok/s。",
          mistakes=[Mistake(lambda a, e: a not in e.names, "填表里 variant 一列的名字（整个字符串，一字不差）。"),
                    Mistake(lambda a, e: a == e.reference, "fp32 是参考 (reference)，不算：要的是量化后的版本。"),
                    Mistake(lambda a, e: a == e.fastest and a != e,
                            "它解码最快，但有答案和 fp32 不同（'same as ref' 没满）——速度不能拿答案换。")])
def _fastest(cmp: Any) -> str:
    return _fastest_kept(cmp)


@exercise("07.5", "lookup", hint="看 torchao int8 weight-only 那一行的 'vs ref'（解码速度 ÷ fp32 的）。",
          mistakes=[Mistake(lambda a, e: not isinstance(a, bool), "填 True 或 False。"),
                    Mistake(lambda a, e: a is True and e is False,
                            "int8 存储 ≠ int8 计算：weight-only 每一步先把 int8 权重还原成浮点再乘，"
                            "CPU 上没有专门的 kernel 时，这一步比省下的读内存还贵。"),
                    Mistake(lambda a, e: a is False and e is True,
                            "在你的机器上它确实比 fp32 快：看 'vs ref' 一列是否大于 1.00x。")])
def _torchao_faster(cmp: Any) -> bool:
    return bool(cmp.row("torchao int8 weight-only").speedup > 1.0)
