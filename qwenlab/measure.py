"""Measurement helpers shared by the benchmark and the quantization lab: timing a generation step by
step, counting the bytes a model's weights take (quantized layers included), copying a model without
a second full copy in memory, peak memory of this process, and what machine a number was measured on.

Taught in ``07_quantization.ipynb`` (footprint, copies) and ``09_performance.ipynb`` (timing).
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import os
import platform
import statistics
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from collections.abc import Callable, Iterator

import torch

from .env import bf16_native, cpu_name, package_version
from .modelfacts import facts_of, remember

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from .modelfacts import CausalLM

__all__ = [
    "sync",
    "seconds_of",
    "torch_threads",
    "tensor_bytes",
    "dtype_name",
    "packed_tensors",
    "weight_tensors",
    "copy_model",
    "GenerateTiming",
    "time_generate",
    "time_decode_steps",
    "decode_speed",
    "load_average",
    "machine_info",
    "PeakRss",
]

# ---------------------------------------------------------------------------------------------- clocks


def sync(device: Any) -> None:
    """Wait for the GPU to finish queued work (nothing to do on a CPU), so a clock reads the real time."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def seconds_of(fn: Callable[[], Any], repeats: int, device: Any = "cpu") -> list[float]:
    """Wall-clock seconds of each of ``repeats`` calls of ``fn`` (at least one), device work included."""
    times = []
    for _ in range(max(1, repeats)):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[int]:
    """Run the block with ``n`` torch threads (None: leave the setting alone); yields the number used."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------- bytes


def tensor_bytes(t: Any) -> int:
    """Bytes of a tensor, looking inside tensor subclasses (torchao's quantized weights keep int data inside).

    >>> tensor_bytes(torch.zeros(3, 4))
    48
    """
    if type(t) in (torch.Tensor, torch.nn.Parameter) or not hasattr(t, "__tensor_flatten__"):
        return t.numel() * t.element_size()
    names, _ = t.__tensor_flatten__()
    return sum(tensor_bytes(getattr(t, name)) for name in names)


def dtype_name(dtype: Any) -> str:
    """``torch.float32`` -> ``"float32"``."""
    return str(dtype).replace("torch.", "")


def _scale_bytes(q: Any) -> int:
    """fp32 bytes of the scales of a quantized (qint8) tensor: one per channel, or one for the tensor."""
    if q.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        return 4 * q.q_per_channel_scales().numel()
    return 4


def packed_tensors(module: Any) -> list[tuple[Any, int, bool]]:
    """``(tensor, bytes, is_weight)`` that ``module`` itself keeps outside ``parameters()``.

    Two kinds exist: torch.ao-style packed int8 Linear layers (``_packed_params`` and a ``weight()``
    method, as ``torch.ao`` dynamic layers and ``qwenlab.quant.Int8Linear`` have; bytes include the
    per-channel scales), and modules that list their own with ``quantized_tensors()``
    (``qwenlab.quant.Int8Embedding``'s row scales).
    """
    if hasattr(module, "quantized_tensors"):
        return list(module.quantized_tensors())
    if not (hasattr(module, "_packed_params") and callable(getattr(module, "weight", None))):
        return []
    w = module.weight()
    out = [(w, w.numel() * w.element_size() + _scale_bytes(w), True)]
    bias = module.bias() if callable(getattr(module, "bias", None)) else None
    if bias is not None:
        out.append((bias, tensor_bytes(bias), True))
    return out


def weight_tensors(model: CausalLM) -> list[Any]:
    """Every weight tensor of ``model`` once: its parameters (a tied weight listed once) and the packed
    int8 weights of quantized Linear layers, which are not parameters (see :func:`packed_tensors`)."""
    out = list(model.parameters())
    for module in model.modules():
        out += [t for t, _, is_weight in packed_tensors(module) if is_weight]
    return out


# ---------------------------------------------------------------------------------------------- copies


def copy_model(model: CausalLM, dtype: Any = None) -> Any:
    """A copy of ``model`` that costs no second full-precision copy in memory; the original is untouched.

    Without ``dtype`` every tensor of the copy shares memory with the original (a structural copy to
    replace modules in, as quantization does): each parameter gets a new Parameter object over the same
    storage, so assigning ``.data`` or a new Parameter on the copy never reaches the original. With
    ``dtype`` (``"bfloat16"``, ``torch.float32`` …) each parameter is converted once into the copy, so
    converting a 2.5 GB fp32 model to bf16 needs ~1.25 GB more, not 2.5 GB (a ``dtype`` the model already has
converts nothing: those tensors are shared, so never change them in place). The copy keeps the original's
    :func:`qwenlab.modelfacts.facts_of`.

    Taught in ``07_quantization.ipynb`` (a quantized model is a copy) and ``09_performance.ipynb``.
    """
    torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    memo: dict[int, Any] = {}
    for p in model.parameters():
        data = p.detach() if torch_dtype is None else p.detach().to(torch_dtype)
        memo[id(p)] = torch.nn.Parameter(data, requires_grad=False)
    for b in model.buffers():
        memo[id(b)] = b  # shared; ``.to(dtype)`` below gives the copy its own converted buffers
    clone = copy.deepcopy(model, memo)
    facts = facts_of(model)
    if torch_dtype is not None:
        clone = clone.to(torch_dtype)
        facts = facts.but(dtype_reason=f"a {dtype_name(torch_dtype)} copy", load_seconds=0.0)
    remember(clone, facts)
    return clone


# ---------------------------------------------------------------------------------------------- timing


class _Clock:
    """A StoppingCriteria that never stops, it only records when each new token is ready."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        sync(input_ids.device)
        self.times.append(time.perf_counter())
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


@dataclass
class GenerateTiming:
    """The clock of one :func:`time_generate` run.

    Attributes:
        seconds: the whole ``generate`` call.
        prefill_seconds: the wait for the first new token (reading the prompt).
        step_seconds: the gap before each later token (one decode step each).
    """

    seconds: float
    prefill_seconds: float
    step_seconds: list[float]

    @property
    def step_median(self) -> float:
        """Median seconds of one decode step (the whole run's time when there was no second token)."""
        return statistics.median(self.step_seconds) if self.step_seconds else self.seconds


def time_generate(model: CausalLM, inputs: dict, new_tokens: int, *, use_cache: bool = True) -> GenerateTiming:
    """One greedy ``model.generate`` of exactly ``new_tokens`` tokens, with the time of every step.

    ``min_new_tokens = max_new_tokens`` so every run does the same work; the prefill time is the wait
    for the first token, the decode steps are the gaps between later tokens.

    Taught in ``09_performance.ipynb``.
    """
    from transformers import StoppingCriteriaList

    clock = _Clock()
    sync(model.device)
    start = time.perf_counter()
    with torch.inference_mode():
        model.generate(**inputs, do_sample=False, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                       use_cache=use_cache, stopping_criteria=StoppingCriteriaList([clock]))
    seconds = time.perf_counter() - start
    steps = [b - a for a, b in zip(clock.times, clock.times[1:])]
    return GenerateTiming(seconds, clock.times[0] - start if clock.times else seconds, steps)


def decode_speed(model: CausalLM, tokenizer: PreTrainedTokenizerBase,
                 prompt: str = "Count from one to twenty in words.", new_tokens: int = 16) -> tuple[float, str]:
    """Tokens per second of a short greedy decode (the median step, all CPU threads), and how it was measured.

    The number ``qwenlab doctor --send`` puts on the teacher's class dashboard (``docs/teacher.md``), one per
    laptop; timing itself is taught in ``09_performance.ipynb``.

    >>> speed, how = decode_speed(model, tokenizer, new_tokens=4)
    >>> speed > 0, how.startswith("4 tokens greedy")
    (True, True)
    """
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch_threads(None) as threads:
        timing = time_generate(model, inputs, new_tokens)
    return 1.0 / timing.step_median, f"{new_tokens} tokens greedy, {model.dtype}, {threads} threads"


def time_decode_steps(model: CausalLM, cache: Any, last_logits: Any, steps: int) -> list[float]:
    """Greedy decode ``steps`` tokens by hand on an existing KV cache; seconds of each step.

    ``last_logits`` is ``(batch, vocab)``: the logits the next token is chosen from.
    """
    times = []
    logits = last_logits
    with torch.inference_mode():
        for _ in range(steps):
            token = logits.argmax(-1, keepdim=True)
            sync(model.device)
            start = time.perf_counter()
            out = model(input_ids=token, past_key_values=cache, use_cache=True)
            sync(model.device)
            times.append(time.perf_counter() - start)
            logits = out.logits[:, -1]
    return times


# ---------------------------------------------------------------------------------------------- machine


def load_average() -> tuple[float, float, float] | None:
    """The system load average over 1, 5 and 15 minutes; None where the OS has none (Windows)."""
    try:
        return tuple(os.getloadavg())  # type: ignore[return-value]
    except (OSError, AttributeError):
        return None


def machine_info(threads: int) -> dict:
    """Where a measurement was made: date, CPU, cores, torch threads, load average (``"1/5/15"`` or
    ``"?"``), whether bf16 is native, and the versions of Python, torch, transformers, qwenlab and
    llama-cpp-python (None when not installed)."""
    import transformers

    from .version import __version__

    load = load_average()
    return {
        "date": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "threads": threads,
        "load_average": "/".join(f"{x:.1f}" for x in load) if load else "?",
        "bf16_native": bf16_native("cpu")[0],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "qwenlab": __version__,
        "llama_cpp_python": package_version("llama-cpp-python"),
    }


class PeakRss:
    """Samples this process's resident memory every 20 ms in a thread while the ``with`` block runs;
    ``start`` is the memory before, ``peak`` the highest seen.

    >>> with PeakRss() as rss:
    ...     block = bytearray(50 * 2**20)
    >>> rss.peak >= rss.start
    True
    """

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        self.start = self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)
