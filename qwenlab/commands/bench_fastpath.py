"""``qwenlab bench fastpath [MODEL] [--tokens N] [--repeats R] [--quick] [--steps a,b] [--no-llama-cpp]
[--markdown | --json]``.

The work is :func:`qwenlab.bench.fastpath.fastpath` (notebook 09: how close PyTorch gets to llama.cpp);
this module only parses arguments and prints.
"""

from __future__ import annotations

import sys

from ..bench.fastpath import STEPS, fastpath
from . import make_parser

__all__ = ["fastpath_main"]


def fastpath_main(argv: list[str], prog: str = "qwenlab bench fastpath") -> int:
    """Parse ``argv``, run :func:`~qwenlab.bench.fastpath.fastpath`, print its table (or JSON / Markdown)."""
    keys = [s.key for s in STEPS]
    parser = make_parser(prog, "Push PyTorch's CPU decode toward llama.cpp one step at a time, each measured in "
                               "the same run: model.generate fp32, an own greedy loop, static KV cache + "
                               "torch.compile (recompiles counted), bf16, int8 and int4 weight-only kernels; then "
                               "llama.cpp on the Q4_K_M GGUF. Each row: decode tok/s, ratios, compile seconds, bytes "
                               "per token, %% of the roofline, probe answers kept and perplexity.")
    parser.add_argument("model", nargs="?", default="offline", help="catalog name or folder (default: offline)")
    parser.add_argument("--tokens", type=int, default=64, help="tokens per timed decode (default 64)")
    parser.add_argument("--repeats", type=int, default=3, help="timed decodes per row (default 3)")
    parser.add_argument("--quick", action="store_true", help="16 tokens, 1 run, 4 probes (a smoke run)")
    parser.add_argument("--steps", default=None, help=f"only these steps, comma-separated: {','.join(keys)}")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--no-llama-cpp", action="store_true", help="skip the llama.cpp row")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print JSON")
    out.add_argument("--markdown", action="store_true", help="print Markdown (benchmarks/README.md)")
    args = parser.parse_args(argv)
    if args.tokens < 4 or args.repeats < 1:
        parser.error("--tokens must be >= 4 and --repeats >= 1")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be >= 1")
    steps = None
    if args.steps:
        steps = [s.strip() for s in args.steps.split(",") if s.strip()]
        unknown = [s for s in steps if s not in keys]
        if unknown:
            parser.error(f"unknown steps {unknown}; choose from {', '.join(keys)}")

    def say(line: str) -> None:
        print(f"[fastpath] {line}", file=sys.stderr, flush=True)

    report = fastpath(args.model, new_tokens=args.tokens, repeats=args.repeats, quick=args.quick, steps=steps,
                      threads=args.threads, llama_cpp=not args.no_llama_cpp, progress=say)
    print(report.to_json() if args.json else report.to_markdown() if args.markdown else report)
    return 0
