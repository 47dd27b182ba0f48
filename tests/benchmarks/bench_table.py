"""Record the performance table of one model on this machine (benchmarks/README.md).

    .venv/bin/python tests/benchmarks/bench_table.py [MODEL] [--quick] [--threads N] [--out DIR]

Runs ``qwenlab.bench.run_bench`` (the same as ``qwenlab bench``), prints the table, and writes
``<out>/<date>-<model>.json`` (with per-step timings) and ``.md`` (the table for the README).
Not run by ``make test``: speed is a benchmark, never a unit-test assert.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from qwenlab import bench

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="offline")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--note", default="", help="a line for the record, e.g. 'machine shared with 6 jobs'")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "benchmarks")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    report = bench.run_bench(args.model, quick=args.quick, threads=args.threads,
                             progress=lambda line: print(f"[bench] {line}", file=sys.stderr, flush=True))
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{report.machine['date'][:10]}-{re.sub(r'[^A-Za-z0-9.]+', '-', report.model['name']).strip('-')}"
    stem += "-quick" if args.quick else ""
    (args.out / f"{stem}.json").write_text(report.to_json(steps=True), encoding="utf-8")
    note = f"- note: {args.note}\n" if args.note else ""
    (args.out / f"{stem}.md").write_text(note + report.to_markdown() + "\n", encoding="utf-8")
    print(f"\nwrote {args.out / stem}.json/.md in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
