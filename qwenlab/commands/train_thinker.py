"""``qwenlab train-thinker``: train the mini thinker's LoRA adapter on the CPU, or measure the shipped one."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from . import fail, make_parser


def main(argv: list[str], prog: str) -> int:
    parser = make_parser(prog, "Train the mini thinker (offline model + LoRA + <think> rows) on this CPU, "
                               "or measure it (--measure). The trained adapter ships with qwenlab: you do not "
                               "need to train to use load_model('offline-thinker').")
    parser.add_argument("--out", type=Path, default=None,
                        help="adapter folder (default: the shipped one, qwenlab/data/thinker)")
    parser.add_argument("--seed", type=int, default=None, help="data and init seed (default 1234)")
    parser.add_argument("--samples", type=int, default=None, help="generated math samples (default 700)")
    parser.add_argument("--steps", type=int, default=None, help="stop after this many optimizer steps")
    parser.add_argument("--chat", type=int, default=None, help="use only the first N plain chat questions")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--measure", action="store_true",
                        help="measure the adapter (in --out, default the shipped one) instead of training")
    parser.add_argument("--questions", type=int, default=56, help="eval questions for --measure (default 56)")
    parser.add_argument("--eval-seed", type=int, default=None,
                        help="--measure on questions drawn with this seed instead of the eval seed (questions of "
                             "the adapter's training set, read from its card.json, are left out)")
    parser.add_argument("--report", type=Path, default=None, help="write the measurement as markdown here")
    args = parser.parse_args(argv)
    if args.measure:
        return _measure(args, prog)
    from ..thinker.train import TrainConfig, train_thinker

    config = TrainConfig(threads=args.threads)
    if args.seed is not None:
        config.seed = args.seed
    if args.samples is not None:
        config.math_samples = args.samples
    config.max_steps = args.steps
    try:
        report = train_thinker(args.out, config, chat_limit=args.chat, say=print)
    except (FileNotFoundError, RuntimeError, ValueError) as err:
        return fail(prog, str(err))
    r = report.result
    print(f"trained {r.steps} steps on {r.samples} samples ({r.tokens:,} tokens, {r.reply_tokens:,} scored): "
          f"loss {r.losses[0]:.3f} -> {r.losses[-1]:.3f}")
    print(f"training took {r.seconds / 60:.1f} min; the whole command {report.total_seconds / 60:.1f} min "
          f"(chat targets {report.chat_seconds:.0f} s)")
    print(f"CPU time {report.total_cpu_seconds / 60:.1f} min on {config.threads} threads, i.e. about "
          f"{report.total_cpu_seconds / 60 / config.threads:.1f} min on {config.threads} otherwise idle cores")
    print(f"saved {report.adapter_bytes / 2**20:.1f} MiB in {report.folder}")
    return 0


def _measure(args, prog: str) -> int:
    import torch

    from ..adapters import THINKER_DIR, apply_adapter
    from ..evaluation import probe_answers
    from ..models import load_model
    from ..offline import qwen3_tokenizer
    from ..thinker.data import train_problems
    from ..thinker.evaluate import fresh_problems, measure

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    base, base_tokenizer = load_model("offline", device="cpu", dtype="float32")
    base_answers = probe_answers(base, base_tokenizer)
    if args.out is None:
        del base
        model, tokenizer = load_model("offline-thinker", device="cpu", dtype="float32")
    else:
        if not (args.out / "adapter_model.safetensors").is_file():
            return fail(prog, f"{args.out} has no adapter_model.safetensors: train one first (--out {args.out}).")
        model, tokenizer = apply_adapter(base, args.out), qwen3_tokenizer()

    def progress(done: int, total: int) -> None:
        print(f"\r{done}/{total} questions ({time.perf_counter() - start:.0f} s)", end="", file=sys.stderr)

    problems = None
    if args.eval_seed is not None:
        card = json.loads(((args.out or THINKER_DIR) / "card.json").read_text(encoding="utf-8"))
        trained = train_problems(card["config"]["math_samples"], card["config"]["seed"])
        problems = fresh_problems(args.questions, args.eval_seed, trained)
    report = measure(model, tokenizer, base_answers, n=args.questions, progress=progress, problems=problems)
    print(file=sys.stderr)
    print(report.summary())
    print()
    print(report.by_kind())
    print()
    print(report.probes_table())
    print(f"\nmeasured in {report.settings['seconds'] / 60:.1f} min ({report.settings})")
    if args.report:
        args.report.write_text(report.to_markdown() + "\n", encoding="utf-8")
        print(f"wrote {args.report}")
    return 0
