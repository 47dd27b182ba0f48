"""Train the mini thinker: LoRA on the offline model + new rows for ``<think>`` / ``</think>``, on the CPU.

The recipe (``qwenlab train-thinker`` runs it; :class:`TrainConfig` holds every number):

1. the base model's own greedy answers to :data:`~qwenlab.thinker.data.CHAT_QUESTIONS` (self-distillation,
   generated once and kept in ``chat_targets.json``) so plain chat does not drift;
2. generated math problems rendered in the four modes (:mod:`qwenlab.thinker.data`), shuffled with the seed;
3. one pass of AdamW over them, batch 1 with gradient accumulation, loss on the reply tokens only; the
   trainable parts are a LoRA adapter on every attention and MLP projection of every layer, and the
   embedding and output rows of the two think tokens (:class:`TokenRows`), nothing else;
4. the adapter (float16), the rows and a JSON card (seed, steps, loss curve, time, versions) are saved.

Taught in ``10_learn_to_think.ipynb`` (a few of these steps, live).
"""

from __future__ import annotations

import json
import math
import random
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..adapters import THINKER_DIR, embedding_weights, save_adapter
from ..generation import generate
from ..thinking import THINK_CLOSE, THINK_OPEN
from .data import CHAT_QUESTIONS, IGNORE, MODES, TRAIN_SEED, Sample, render_chat, render_problem, train_problems

if TYPE_CHECKING:
    from ..modelfacts import CausalLM

__all__ = [
    "LORA_TARGETS",
    "TrainConfig",
    "TrainResult",
    "TokenRows",
    "lora_model",
    "chat_targets",
    "build_dataset",
    "sample_loss",
    "train",
    "write_card",
]

#: every linear projection of a Qwen2 / Qwen3 decoder layer (attention and MLP)
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
CHAT_FILE = "chat_targets.json"
CARD_FILE = "card.json"


@dataclass
class TrainConfig:
    """Every number of the recipe (the card records them).

    Attributes:
        seed: seeds the data (problems, modes, order) and torch (LoRA init).
        math_samples: generated problems, each rendered in one mode drawn with ``mode_weights``.
        chat_modes: how many modes each plain chat question is rendered in (1–4).
        rank / alpha: LoRA rank and scale (the update is ``alpha / rank · B·A``).
        lr / rows_lr: AdamW learning rates of the LoRA weights and of the think-token rows.
        accumulate: samples per optimizer step (batch 1, gradients accumulated).
        warmup: optimizer steps of linear warm-up; then linear decay to 10 % of ``lr``.
        max_steps: stop after this many optimizer steps (None: one pass over the data).
        threads: torch CPU threads.
    """

    seed: int = TRAIN_SEED
    math_samples: int = 700
    chat_modes: int = 2
    mode_weights: dict[str, float] = field(default_factory=lambda: {
        "think": 0.35, "soft_think": 0.15, "hard_off": 0.25, "soft_off": 0.25})
    rank: int = 8
    alpha: int = 16
    lr: float = 2e-4
    rows_lr: float = 1e-3
    weight_decay: float = 0.0
    accumulate: int = 4
    warmup: int = 8
    max_steps: int | None = None
    threads: int = 2


@dataclass
class TrainResult:
    """What :func:`train` did: the losses per optimizer step, the time, the step and token counts.

    ``cpu_seconds`` is the CPU time of the process: on a machine shared with other jobs the wall time
    grows, the CPU time does not (``cpu_seconds / threads`` ≈ the wall time on otherwise idle cores).
    """

    losses: list[float]
    seconds: float
    cpu_seconds: float
    steps: int
    samples: int
    reply_tokens: int
    tokens: int


class TokenRows(nn.Module):
    """Trainable embedding and output rows for a few token ids, put into a frozen model by forward hooks.

    The embedding hook replaces the looked-up vectors of those ids; the output hook replaces the logits
    of those ids with ``hidden · row``. Only ``len(ids)`` rows train instead of the whole 151,936-row
    matrices. With tied embeddings (one matrix for both) the embedding rows serve both.
    """

    def __init__(self, model: CausalLM, ids: Sequence[int], embed: torch.Tensor, head: torch.Tensor | None):
        super().__init__()
        self.ids: torch.Tensor
        self.register_buffer("ids", torch.tensor(list(ids), dtype=torch.long))
        self.embed = nn.Parameter(embed.detach().clone().float())
        embed_w, head_w = embedding_weights(model)
        self.tied = head_w.data_ptr() == embed_w.data_ptr()
        self.head = None if self.tied or head is None else nn.Parameter(head.detach().clone().float())
        self._hooks = [model.get_input_embeddings().register_forward_hook(self._embed_hook),
                       model.get_output_embeddings().register_forward_hook(self._head_hook)]

    @classmethod
    def for_tags(cls, model: CausalLM, tokenizer: Any, tags: Sequence[str] = (THINK_OPEN, THINK_CLOSE)) -> TokenRows:
        """Rows for ``<think>`` / ``</think>``, each starting as the mean of the rows of its spelling
        (``<`` ``think`` ``>``): the base model has them, but untrained (all the same vector)."""
        ids = tokenizer.convert_tokens_to_ids(list(tags))
        embed_w, head_w = embedding_weights(model)
        spelled = [_spelling_ids(tokenizer, tag) for tag in tags]
        embed = torch.stack([embed_w[s].float().mean(0) for s in spelled])
        head = torch.stack([head_w[s].float().mean(0) for s in spelled])
        return cls(model, ids, embed, head)

    def _embed_hook(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        match = args[0].unsqueeze(-1) == self.ids  # (..., k)
        if not bool(match.any()):
            return output
        hit = match.any(-1, keepdim=True)
        return torch.where(hit, match.to(self.embed.dtype) @ self.embed, output.float()).to(output.dtype)

    def _head_hook(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        rows = self.embed if self.head is None else self.head
        cols = args[0].float() @ rows.T  # (..., k)
        return output.index_copy(-1, self.ids, cols.to(output.dtype))

    def remove(self) -> None:
        """Take the hooks out of the model (the model is as before)."""
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def state(self) -> dict[str, torch.Tensor]:
        """The rows as saved (``token_ids``, ``embed`` and, when untied, ``lm_head``)."""
        out = {"token_ids": self.ids.clone(), "embed": self.embed.detach().clone()}
        if self.head is not None:
            out["lm_head"] = self.head.detach().clone()
        return out


def _spelling_ids(tokenizer: Any, tag: str) -> list[int]:
    pieces = ["</", tag[2:-1], ">"] if tag.startswith("</") else ["<", tag[1:-1], ">"]
    return [i for p in pieces for i in tokenizer(p, add_special_tokens=False).input_ids]


def lora_model(model: CausalLM, config: TrainConfig) -> Any:
    """Wrap ``model`` in a peft LoRA model (:data:`LORA_TARGETS` of every layer); only the LoRA weights train."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(config.seed)
    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=0.0, target_modules=LORA_TARGETS,
                      bias="none", task_type="CAUSAL_LM")
    with warnings.catch_warnings():  # peft calls a transformers method deprecated in 5.x; nothing to act on
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, lora)


# ---- data --------------------------------------------------------------------------------------

def chat_targets(model: CausalLM, tokenizer: Any, questions: Sequence[tuple[str, str]] = CHAT_QUESTIONS,
                 max_new_tokens: int = 96, progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """The base model's own greedy answers (its own tokenizer and template, thinking off) to ``questions``.

    Answers cut by ``max_new_tokens`` are left out (a target must end its turn). Returns
    ``[{"lang", "question", "answer"}]``.
    """
    out = []
    for i, (lang, question) in enumerate(questions):
        result = generate(model, tokenizer, question, do_sample=False, max_new_tokens=max_new_tokens)
        if result.finish_reason == "stop" and result.text.strip():
            out.append({"lang": lang, "question": question, "answer": result.text.strip()})
        if progress:
            progress(i + 1, len(questions))
    return out


def build_dataset(tokenizer: Any, chat: Sequence[dict], config: TrainConfig) -> list[Sample]:
    """The training samples: ``config.math_samples`` problems in one mode each, every chat question in
    ``config.chat_modes`` different modes, shuffled with ``config.seed``."""
    rng = random.Random(config.seed)
    modes, weights = zip(*config.mode_weights.items())
    samples = [render_problem(tokenizer, p, rng.choices(modes, weights)[0])
               for p in train_problems(config.math_samples, config.seed)]
    for i, item in enumerate(chat):
        first = ("hard_off", "soft_off")[i % 2]
        others = [m for m in MODES if m != first]
        for mode in [first, *rng.sample(others, config.chat_modes - 1)]:
            samples.append(render_chat(tokenizer, item["lang"], item["question"], item["answer"], mode))
    rng.shuffle(samples)
    return samples


# ---- training ----------------------------------------------------------------------------------

def sample_loss(model: Any, sample: Sample) -> torch.Tensor:
    """Mean cross-entropy of the reply tokens of one sample (the prompt's tokens are not scored).

    Only the logits of the reply's positions are computed (``logits_to_keep``): the output layer has
    151,936 rows, so scoring the prompt's positions would cost time for nothing.
    """
    labels = torch.tensor(sample.labels)
    first = int((labels != IGNORE).nonzero()[0])
    ids = torch.tensor([sample.input_ids], device=model.device)
    keep = len(sample.input_ids) - first + 1
    logits = model(input_ids=ids, logits_to_keep=keep).logits[0, :-1]
    return nn.functional.cross_entropy(logits.float(), labels[first:].to(logits.device), ignore_index=IGNORE)


def _schedule(config: TrainConfig, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < config.warmup:
            return (step + 1) / config.warmup
        done = (step - config.warmup) / max(1, total - config.warmup)
        return 1.0 - 0.9 * min(1.0, done)
    return factor


def train(peft_model: Any, rows: TokenRows, samples: Sequence[Sample], config: TrainConfig,
          progress: bool = True) -> TrainResult:
    """One pass of AdamW over ``samples`` (batch 1, ``config.accumulate`` samples per step), in place.

    Returns the mean loss of every optimizer step, the time and the counts. ``progress`` shows a tqdm bar.
    """
    from tqdm.auto import tqdm

    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    lora = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([
        {"params": lora, "lr": config.lr, "weight_decay": config.weight_decay},
        {"params": list(rows.parameters()), "lr": config.rows_lr, "weight_decay": 0.0},
    ])
    steps = math.ceil(len(samples) / config.accumulate)
    if config.max_steps is not None:
        steps = min(steps, config.max_steps)
        samples = samples[:steps * config.accumulate]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(config, steps))
    peft_model.train()
    losses: list[float] = []
    window: list[float] = []
    start, cpu_start = time.perf_counter(), time.process_time()
    bar = tqdm(samples, desc="train-thinker", unit="sample", disable=not progress)
    for i, sample in enumerate(bar):
        loss = sample_loss(peft_model, sample)
        (loss / config.accumulate).backward()
        window.append(float(loss.detach()))
        if len(window) == config.accumulate or i == len(samples) - 1:
            torch.nn.utils.clip_grad_norm_([*lora, *rows.parameters()], 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(sum(window) / len(window))
            window = []
            bar.set_postfix(step=f"{len(losses)}/{steps}", loss=f"{losses[-1]:.3f}")
    peft_model.eval()
    return TrainResult(losses, time.perf_counter() - start, time.process_time() - cpu_start, len(losses), len(samples),
                       sum(s.reply_tokens for s in samples), sum(len(s) for s in samples))


def write_card(folder: Path | str, config: TrainConfig, result: TrainResult, samples: Sequence[Sample],
               extra: dict | None = None) -> Path:
    """Write ``card.json``: the recipe, the data counts, the loss curve, the time and the versions."""
    import peft
    import transformers

    from ..version import __version__

    counts: dict[str, int] = {}
    for s in samples[:result.samples]:
        key = f"{s.source}/{s.kind}/{s.mode}"
        counts[key] = counts.get(key, 0) + 1
    card = {
        "model": "offline-thinker",
        "what": ("A LoRA-trained demo: the offline model (Qwen2.5-Coder-0.5B-Instruct) + a LoRA adapter + "
                 "trained rows for <think>/</think>, driven by the Qwen3 tokenizer and chat template. "
                 "It thinks step by step on simple arithmetic, decimal comparison, unit conversion and word "
                 "problems; it is not a real Qwen3."),
        "config": asdict(config),
        "lora_targets": LORA_TARGETS,
        "samples": result.samples,
        "reply_tokens": result.reply_tokens,
        "tokens": result.tokens,
        "data": dict(sorted(counts.items())),
        "steps": result.steps,
        "train_seconds": round(result.seconds, 1),
        "train_cpu_seconds": round(result.cpu_seconds, 1),
        "loss_first": round(result.losses[0], 4) if result.losses else None,
        "loss_last": round(result.losses[-1], 4) if result.losses else None,
        "loss_curve": [round(x, 4) for x in result.losses],
        "versions": {"qwenlab": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
                     "peft": peft.__version__},
        **(extra or {}),
    }
    path = Path(folder) / CARD_FILE
    path.write_text(json.dumps(card, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def default_folder() -> Path:
    """Where the shipped adapter lives (``qwenlab/data/thinker``)."""
    return THINKER_DIR


def save(peft_model: Any, rows: TokenRows, folder: Path | str, generation_config: dict | None = None) -> list[Path]:
    """Save the adapter (float16), the think-token rows and, when given, a ``generation_config.json``."""
    written = save_adapter(peft_model, folder, rows.state(),
                           base_name="qwenlab offline model (Qwen2.5-Coder-0.5B-Instruct, from PyPI)")
    if generation_config is not None:
        path = Path(folder) / "generation_config.json"
        path.write_text(json.dumps(generation_config, indent=2) + "\n")
        written.append(path)
    return written


#: Qwen3-0.6B's own generation_config (its sampling recommendation for thinking mode), for the thinker.
GENERATION_CONFIG = {"bos_token_id": 151643, "pad_token_id": 151643, "eos_token_id": [151645, 151643],
                     "do_sample": True, "temperature": 0.6, "top_p": 0.95, "top_k": 20}


@dataclass
class TrainReport:
    """What :func:`train_thinker` did, for the command to print."""

    folder: Path
    files: list[Path]
    result: TrainResult
    chat_seconds: float
    total_seconds: float
    total_cpu_seconds: float

    @property
    def adapter_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.files if p.is_file())


def train_thinker(folder: Path | str | None = None, config: TrainConfig | None = None, *,
                  chat_limit: int | None = None, progress: bool = True,
                  say: Callable[[str], None] | None = None) -> TrainReport:
    """The whole recipe: load the offline model (fp32), get the chat targets, build the data, train, save.

    Args:
        folder: where the adapter goes (default :data:`~qwenlab.adapters.THINKER_DIR`, the shipped one).
        config: the recipe (default :class:`TrainConfig`).
        chat_limit: use only the first ``chat_limit`` chat questions (a smoke run).
        progress: tqdm bars; ``say`` gets one line per stage.

    The chat targets are generated once and kept in ``folder/chat_targets.json``; a later run with the
    same questions reuses them.
    """
    from ..models import load_model
    from ..offline import qwen3_tokenizer

    start, cpu_start = time.perf_counter(), time.process_time()
    folder = Path(folder) if folder else THINKER_DIR
    config = config or TrainConfig()
    note = say or (lambda msg: None)
    torch.set_num_threads(config.threads)
    note("loading the offline model (float32) and the Qwen3 tokenizer")
    model, base_tokenizer = load_model("offline", device="cpu", dtype="float32")
    tokenizer = qwen3_tokenizer()
    questions = CHAT_QUESTIONS[:chat_limit] if chat_limit is not None else CHAT_QUESTIONS
    t0 = time.perf_counter()
    asked, cached = _cached_chat(folder)
    missing = [q for q in questions if q[1] not in asked]
    if missing:
        note(f"the base model answers {len(missing)} plain questions (greedy; the self-distillation targets)")
        cached += chat_targets(model, base_tokenizer, missing)
        folder.mkdir(parents=True, exist_ok=True)
        cache = {"asked": [[lang, q] for lang, q in CHAT_QUESTIONS if q in asked or (lang, q) in missing],
                 "targets": cached}
        (folder / CHAT_FILE).write_text(json.dumps(cache, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    wanted = {q for _, q in questions}
    chat = [c for c in cached if c["question"] in wanted]
    chat_seconds = time.perf_counter() - t0
    samples = build_dataset(tokenizer, chat, config)
    note(f"{len(samples)} samples ({sum(s.source == 'chat' for s in samples)} plain chat); "
         f"{sum(len(s) for s in samples):,} tokens, {sum(s.reply_tokens for s in samples):,} scored")
    peft_model = lora_model(model, config)
    rows = TokenRows.for_tags(model, tokenizer)
    result = train(peft_model, rows, samples, config, progress=progress)
    rows.remove()
    files = save(peft_model, rows, folder, GENERATION_CONFIG)
    total, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    files.append(write_card(folder, config, result, samples, {
        "chat_targets": len(chat), "chat_seconds": round(chat_seconds, 1), "total_seconds": round(total, 1),
        "total_cpu_seconds": round(cpu, 1), "train_seed": config.seed}))
    files.append(folder / CHAT_FILE)
    return TrainReport(folder, files, result, chat_seconds, total, cpu)


def _cached_chat(folder: Path) -> tuple[set[str], list[dict]]:
    """The questions an earlier run asked and the targets it kept (answers cut short are not kept)."""
    path = folder / CHAT_FILE
    if not path.is_file():
        return set(), []
    cache = json.loads(path.read_text(encoding="utf-8"))
    return {q for _, q in cache.get("asked", [])}, list(cache.get("targets", []))
