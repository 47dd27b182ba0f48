"""``qwenlab bench [MODEL] [--json] [--quick] [--threads N]``, ``qwenlab bench quant [MODEL] ...`` and
``qwenlab bench tools [MODEL] ...``.

The work is :func:`qwenlab.bench.run_bench` (the performance table, notebook 09),
:func:`qwenlab.quant.benchmark_fast_recipe` / :func:`qwenlab.quant.compare` (the quantized variants,
notebook 07) and :func:`qwenlab.agents.measure_tool_calls` (the tool-call success rate, notebook 08);
this module only parses arguments and prints.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from dataclasses import asdict

import torch

from ..agents import ToolTrial, measure_agent_tool_calls, measure_tool_calls
from ..bench import classroom_load, run_bench
from ..bench.classroom import compare_with_llama_cpp_alone, llama_cpp_alone, overhead_table
from ..course import course_model
from ..models import load_model
from ..quant import benchmark_fast_recipe, compare, full_variants, gguf_file
from . import make_parser

__all__ = ["main", "quant_main", "tools_main", "serve_main"]


def main(argv: list[str], prog: str = "qwenlab bench") -> int:
    """Measure this machine and one model; print the table (or JSON). ``quant`` goes to :func:`quant_main`,
    ``tools`` to :func:`tools_main`, ``serve`` to :func:`serve_main`, ``fastpath`` to
    :func:`~qwenlab.commands.bench_fastpath.fastpath_main`."""
    if argv and argv[0] == "quant":
        return quant_main(argv[1:], prog=f"{prog} quant")
    if argv and argv[0] == "tools":
        return tools_main(argv[1:], prog=f"{prog} tools")
    if argv and argv[0] == "serve":
        return serve_main(argv[1:], prog=f"{prog} serve")
    if argv and argv[0] == "fastpath":
        from .bench_fastpath import fastpath_main

        return fastpath_main(argv[1:], prog=f"{prog} fastpath")
    parser = make_parser(prog, "Measure memory bandwidth, matmul FLOP/s, prefill/decode tokens/s, KV cache, "
                               "context, batch and quantized paths of one model on this machine, with the "
                               "roofline (bandwidth / bytes per token). `qwenlab bench quant` compares "
                               "quantized variants; `qwenlab bench tools` measures tool calls.")
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
    parser.add_argument("--save", default=None, help="with --all or --quality: write the result as JSON to this file")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--quality", action="store_true",
                        help="quality on held-out data instead of speed: 200 questions + KL / top-1 agreement / "
                             "perplexity over 6,000 positions, every CPU variant and GGUF (about 30 minutes)")
    parser.add_argument("--questions", type=int, default=None, help="with --quality: use only the first N questions")
    parser.add_argument("--positions", type=int, default=6000, help="with --quality: text positions (default 6000)")
    parser.add_argument("--no-gguf", action="store_true", help="with --quality: skip the llama.cpp GGUF rows")
    args = parser.parse_args(argv)
    if args.tokens < 2 or args.rounds < 1:
        parser.error("--tokens must be >= 2 and --rounds >= 1")
    if args.questions is not None and args.questions < 1 or args.positions < 1:
        parser.error("--questions and --positions must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)

    def say(msg: str) -> None:
        if not args.json:
            print(f"[{prog}] {msg}", flush=True)

    say(f"loading {args.model} (fp32) ...")
    model, tokenizer = load_model(args.model, device="cpu", dtype="float32")
    if args.quality:
        return _quality(args, model, tokenizer, say)
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


def _quality(args: argparse.Namespace, model: object, tokenizer: object, say: Callable[[str], None]) -> int:
    """``bench quant --quality``: every variant against fp32 on the held-out data."""
    from ..quant.quality import heldout_questions, quality_report, standard_ggufs, standard_variants

    questions = None if args.questions is None else heldout_questions("report")[:args.questions]
    ggufs = {}
    if not args.no_gguf:
        try:
            ggufs = standard_ggufs(gguf_file(args.model))
        except (FileNotFoundError, ValueError) as err:
            say(f"no GGUF rows: {err}")
    report = quality_report(model, tokenizer, variants=standard_variants(), ggufs=ggufs,  # type: ignore[arg-type]
                            questions=questions, positions=args.positions, progress=say)
    if args.save:
        say(f"saved {report.save(args.save)}")
    print(report.to_json() if args.json else report)
    return 0


def tools_main(argv: list[str], prog: str = "qwenlab bench tools") -> int:
    """``qwenlab bench tools [MODEL] [--trials N] [--seed S] [--route openai|autogen|both] [--rescue] [--markdown|--json]``."""
    parser = make_parser(prog, "Tool-call success rate: start a local server for MODEL, offer it a calculator and a "
                               "unit converter through OpenAI tools=, and grade N seeded prompts (Chinese and "
                               "English) with the openai client and/or an AutoGen AssistantAgent.")
    parser.add_argument("model", nargs="?", default=None, help="catalog name, folder or .gguf (default: the course model)")
    parser.add_argument("--trials", type=int, default=20, help="prompts per route (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="picks the prompts and the sampling seeds (default 0)")
    parser.add_argument("--route", choices=("openai", "autogen", "both"), default="both")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--top-p", type=float, default=0.8)
    parser.add_argument("--max-tokens", type=int, default=128, help="cap per reply (default 128)")
    parser.add_argument("--rescue", action="store_true",
                        help="openai route: also run calls the model wrote as text (the rate is unchanged)")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--markdown", action="store_true", help="print the summary and every trial as Markdown")
    out.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    if args.trials < 1 or args.max_tokens < 8:
        parser.error("--trials must be >= 1 and --max-tokens >= 8")
    name = args.model or course_model()

    def say(trial: ToolTrial) -> None:
        print(f"[tools] {trial.task.lang} {trial.outcome:24} {trial.seconds:5.1f} s  {trial.task.prompt}",
              file=sys.stderr, flush=True)

    from ..serve import start  # the serve extra (fastapi, openai, autogen) is only needed here

    sampling = {"n": args.trials, "seed": args.seed, "temperature": args.temperature, "top_p": args.top_p,
                "max_tokens": args.max_tokens, "progress": say}
    print(f"[tools] starting a server for {name} ...", file=sys.stderr, flush=True)
    reports = []
    with start(name, reasoning="off") as server:
        if args.route in ("openai", "both"):
            reports.append(measure_tool_calls(server, rescue=args.rescue, **sampling))
        if args.route in ("autogen", "both"):
            reports.append(asyncio.run(measure_agent_tool_calls(server, **sampling)))
    if args.json:
        print("[" + ",\n".join(r.to_json() for r in reports) + "]")
    else:
        print("\n\n".join(r.to_markdown() if args.markdown else str(r) for r in reports))
    return 0


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(x) for x in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1 or max(sizes) > 64:
        raise argparse.ArgumentTypeError(f"give class sizes from 1 to 64 separated by commas, e.g. 1,4,8; got {text!r}")
    return sizes


def serve_main(argv: list[str], prog: str = "qwenlab bench serve") -> int:
    """``qwenlab bench serve [MODEL] [--engine llama.cpp] [--slots N] [--students 1,4,8] [--tokens 48] [--json]``."""
    parser = make_parser(prog, "Classroom serving on this machine: start `qwenlab serve` on 127.0.0.1, send N "
                               "simulated students' short questions at once (streamed), and report aggregate "
                               "tok/s, tok/s per student, p50/p95 time to first token and errors.")
    parser.add_argument("model", nargs="?", default="offline", help="catalog name, folder or .gguf (default: offline)")
    parser.add_argument("--engine", choices=("pytorch", "llama.cpp"), default="llama.cpp")
    parser.add_argument("--slots", type=int, default=None, help="llama.cpp: requests at once (default: the largest class)")
    parser.add_argument("--students", type=_sizes, default=(1, 4, 8), help="class sizes, e.g. 1,4,8 (default)")
    parser.add_argument("--tokens", type=int, default=48, help="reply length per student (default 48)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--baseline", action="store_true",
                        help="llama.cpp: first measure llama.cpp alone (its own HTTP server, same slots) and "
                             "compare (qwenlab serve should come within 10 %%)")
    parser.add_argument("--rounds", type=int, default=3, help="with --baseline: alternating rounds per class size")
    args = parser.parse_args(argv)
    if args.tokens < 2:
        parser.error("--tokens must be >= 2")
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    if args.baseline and args.engine != "llama.cpp":
        parser.error("--baseline compares with llama.cpp alone: use it with --engine llama.cpp")
    from ..serve import start

    options = {"engine": args.engine}
    if args.engine == "llama.cpp":
        options["slots"] = args.slots or max(args.students)
    label = f"{args.model}, engine {args.engine}" + (f", {options['slots']} slots" if "slots" in options else "")
    print(f"[serve bench] starting a {args.engine} server for {args.model} ...", file=sys.stderr, flush=True)
    if args.baseline:
        print(f"[serve bench] and llama.cpp alone ({options['slots']} slots); {args.rounds} alternating rounds per "
              "class size ...", file=sys.stderr, flush=True)
        with llama_cpp_alone(args.model, options["slots"]) as bare, start(args.model, reasoning="off", **options) as server:
            alone, report = compare_with_llama_cpp_alone(bare, server, args.students, rounds=args.rounds,
                                                         max_tokens=args.tokens)
        if args.json:
            print(json.dumps({"qwenlab": report.to_dict(), "llama_cpp_alone": alone.to_dict()}, indent=1))
        else:
            print(f"{alone}\n\n{report}\n\n{overhead_table(alone, report)}")
        return 0
    with start(args.model, reasoning="off", **options) as server:
        report = classroom_load(server, args.students, max_tokens=args.tokens, label=label)
    print(json.dumps(report.to_dict(), indent=1) if args.json else report)
    return 0
