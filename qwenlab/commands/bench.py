"""``qwenlab bench [MODEL] [--json] [--quick] [--threads N]`` and ``qwenlab bench quant [MODEL] ...``.

The work is :func:`qwenlab.bench.run_bench` (the performance table, notebook 09) and
:func:`qwenlab.quant.benchmark_fast_recipe` / :func:`qwenlab.quant.compare` (the quantized variants,
notebook 07); this module only parses arguments and prints.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

import torch

from ..bench import run_bench
from ..course import course_model
from ..models import load_model
from ..quant import benchmark_fast_recipe, compare, full_variants
from . import make_parser

__all__ = ["main", "quant_main"]


def main(argv: list[str], prog: str = "qwenlab bench") -> int:
    """Measure this machine and one model; print the table (or JSON). ``quant`` goes to :func:`quant_main`."""
    if argv and argv[0] == "quant":
        return quant_main(argv[1:], prog=f"{prog} quant")
    parser = make_parser(prog, "Measure memory bandwidth, matmul FLOP/s, prefill/decode tokens/s, KV cache, "
                               "context, batch and quantized paths of one model on this machine, with the "
                               "roofline (bandwidth / bytes per token). `qwenlab bench quant` compares "
                               "quantized variants.")
    parser.add_argument("model", nargs="?", default=None,
                        help="catalog name, folder or .gguf (default: the course model)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--quick", action="store_true", help="fewer tokens and repeats (about a minute)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--steps", action="store_true", help="with --json: include per-step seconds")
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be >= 1")
    name = args.model or course_model()

    def say(line: str) -> None:
        print(f"[bench] {line}", file=sys.stderr, flush=True)

    say(f"model {name}; plan {'quick' if args.quick else 'full'}")
    report = run_bench(name, quick=args.quick, threads=args.threads, progress=say)
    print(report.to_json(steps=args.steps) if args.json else report)
    return 0


def quant_main(argv: list[str], prog: str = "qwenlab bench quant") -> int:
    """``qwenlab bench quant [MODEL] [--tokens N] [--rounds R] [--threads T] [--all] [--save FILE] [--json]``."""
    parser = make_parser(prog, "Decode speed of qwenlab's fast CPU quantization recipe vs fp32, with the probe "
                               "answers checked (goal: >= 2.0x, every answer kept). --all measures every CPU "
                               "method side by side (memory, speed, perplexity, answers).")
    parser.add_argument("model", nargs="?", default="offline", help="catalog name or folder (default: offline)")
    parser.add_argument("--tokens", type=int, default=32, help="tokens decoded per timing run (default 32)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating fp32/fast timing rounds (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--all", action="store_true", help="compare every CPU method (several minutes)")
    parser.add_argument("--save", default=None, help="with --all: write the comparison as JSON to this file")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args(argv)
    if args.tokens < 2 or args.rounds < 1:
        parser.error("--tokens must be >= 2 and --rounds >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)

    def say(msg: str) -> None:
        if not args.json:
            print(f"[{prog}] {msg}", flush=True)

    say(f"loading {args.model} (fp32) ...")
    model, tokenizer = load_model(args.model, device="cpu", dtype="float32")
    if args.all:
        cmp = compare(full_variants(model, args.model), tokenizer, decode_tokens=args.tokens, repeats=args.rounds,
                      label=f"`{prog} --all`", progress=say)
        if args.save:
            say(f"saved {cmp.save(args.save)}")
        print(cmp.to_json() if args.json else f"{cmp}\n\n{cmp.answers()}")
        return 0
    result = benchmark_fast_recipe(model, tokenizer, name=args.model, new_tokens=args.tokens, rounds=args.rounds,
                                   progress=say)
    print(json.dumps(asdict(result), ensure_ascii=False, indent=1) if args.json else result)
    return 0
