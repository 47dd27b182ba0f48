"""Benchmark scripts, not unit tests: run them by hand (see benchmarks/README.md); pytest skips this folder."""

collect_ignore_glob = ["*.py"]
