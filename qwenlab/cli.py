"""The ``qwenlab`` command. Each subcommand lives in the module of its topic, as ``cli(argv) -> int``.

    qwenlab doctor [--json]          environment report            (qwenlab.env)
    qwenlab offline-model            install/assemble/convert the offline model (qwenlab.offline)
    qwenlab tokens TEXT              token chips, special tokens, cost (qwenlab.tokens)
    qwenlab download MODEL           download a model              (qwenlab.hub)
    qwenlab models                   list / delete downloaded models (qwenlab.hub)
    qwenlab mirror                   classroom mirror              (qwenlab.mirror)
    qwenlab chat [MODEL]             terminal chat                 (qwenlab.chat)
    qwenlab bench [MODEL] [--json]   speed measurements            (qwenlab.bench)
    qwenlab serve MODEL              OpenAI-compatible server      (qwenlab.serve)
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "doctor": ("env", "check this machine: Python, torch, CPU/GPU, RAM, disk, hubs (PASS/WARN/FAIL)"),
    "offline-model": ("offline", "install, assemble, verify and convert the offline model (no hub needed)"),
    "tokens": ("tokens", "show how a tokenizer cuts text into tokens (ids, split characters), special tokens, cost"),
    "download": ("hub", "download a model from Hugging Face / hf-mirror / ModelScope / a mirror"),
    "models": ("hub", "list models on disk (HF cache, ModelScope cache, qwenlab), delete one on request"),
    "mirror": ("mirror", "serve the models on this machine to a classroom over the Hub protocol"),
    "chat": ("chat", "chat with a model in the terminal (streaming, /think, /reset, /save)"),
    "bench": ("bench", "measure bandwidth, prefill/decode tokens/s and the roofline on this machine"),
    "serve": ("serve", "run an OpenAI-compatible API server for a model on 127.0.0.1"),
}


def _usage() -> str:
    lines = ["usage: qwenlab COMMAND [ARGS]", "", "commands:"]
    lines += [f"  {name:<14} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `qwenlab COMMAND --help` for the options of one command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from . import __version__

        print(f"qwenlab {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"qwenlab: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, _ = COMMANDS[command]
    try:
        module = importlib.import_module(f"qwenlab.{module_name}")
        entry = getattr(module, "cli")
    except (ImportError, AttributeError):
        print(f"qwenlab {command}: not available in this version yet.", file=sys.stderr)
        return 2
    try:
        return int(entry(rest, prog=f"qwenlab {command}", command=command) or 0)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


def make_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An argparse parser for one subcommand (shared look for every module's ``cli``)."""
    return argparse.ArgumentParser(prog=prog, description=description)


if __name__ == "__main__":
    sys.exit(main())
