"""``qwenlab serve MODEL``: serve a model on http://127.0.0.1:8000/v1 (OpenAI-compatible) until Ctrl-C.

The server is :func:`qwenlab.serve.run_server`; this module parses the arguments. ``qwenlab.serve.start``
runs this module as its child process (``python -m qwenlab.commands.serve MODEL --port-file … --parent-pid …``;
those two flags are hidden). Taught in ``08_serve.ipynb``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..serve import API_KEY_ENV, DEFAULT_PORT, DEFAULT_TIME_LIMIT, check_host, run_server
from . import fail, make_parser

__all__ = ["main"]


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to 65535 (0 = any free port), got {text!r}")
    return int(text)


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}")
    return value


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = make_parser(prog, "Serve a model behind an OpenAI-compatible API (chat completions, streaming). "
                               "One model is served; requests naming any model get it (as in LM Studio).")
    parser.add_argument("model", help="catalog name (Qwen/Qwen3-0.6B, offline), model folder or .gguf file")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT,
                        help=f"port (default {DEFAULT_PORT}; LM Studio's is 1234; 0 = any free)")
    parser.add_argument("--name", help="model id listed in /v1/models (default: catalog name or folder name)")
    parser.add_argument("--reasoning", choices=("auto", "on", "off"), default="auto",
                        help="Qwen3 thinking default; a request's chat_template_kwargs.enable_thinking or "
                             "reasoning_effort (\"none\" = off) overrides it")
    parser.add_argument("--api-key-file", type=Path,
                        help=f"require the key in this file (Authorization: Bearer ...); or set ${API_KEY_ENV}")
    parser.add_argument("--api-key", help=f"the key itself (visible to other users in `ps`: prefer ${API_KEY_ENV} "
                                          "or --api-key-file)")
    parser.add_argument("--max-tokens", type=_count,
                        help="the most tokens one reply may have (default: what the context leaves)")
    parser.add_argument("--max-prompt-tokens", type=_count,
                        help="the longest prompt accepted (default: the model's context minus one)")
    parser.add_argument("--time-limit", type=_seconds, default=DEFAULT_TIME_LIMIT,
                        help=f"seconds one request may generate (default {DEFAULT_TIME_LIMIT:.0f})")
    parser.add_argument("--engine", choices=("pytorch", "llama.cpp"), default="pytorch",
                        help="pytorch (default; one request at a time) or llama.cpp (a GGUF file such as 'offline': "
                             "faster on a CPU, and --slots requests at once)")
    parser.add_argument("--slots", type=_count, default=None,
                        help="llama.cpp: requests that generate at once by continuous batching (default 1)")
    parser.add_argument("--context", type=_count, default=None,
                        help="llama.cpp: tokens per conversation, prompt and reply (default 4096)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--port-file", help=argparse.SUPPRESS)  # set by qwenlab.serve.start
    parser.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)
    return parser


def _api_key(args: argparse.Namespace) -> str | None:
    """The key from --api-key-file, --api-key (with a warning) or $QWENLAB_API_KEY, in that order."""
    if args.api_key_file is not None:
        try:
            key = args.api_key_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"Cannot read the API key file {args.api_key_file} ({err}).") from None
        if not key:
            raise ValueError(f"The API key file {args.api_key_file} is empty; put the key on its first line.")
        return key
    if args.api_key:
        print(f"Warning: --api-key is visible to every user of this machine (`ps`); next time set ${API_KEY_ENV} "
              "or use --api-key-file.", file=sys.stderr)
        return args.api_key
    return os.environ.get(API_KEY_ENV) or None


def main(argv: list[str], prog: str = "qwenlab serve") -> int:
    """Run the server in the foreground; 2 when it cannot start (the reason on stderr)."""
    args = _parser(prog).parse_args(argv)
    try:
        api_key = _api_key(args)
        check_host(args.host, api_key)
        if not args.parent_pid:
            shown = f"[{args.host}]" if ":" in args.host else args.host
            print(f"Loading {args.model} ... then serving it at http://{shown}:{args.port}/v1 "
                  "(OpenAI-compatible; Ctrl-C stops).", file=sys.stderr)
        run_server(args.model, args.host, args.port, name=args.name, reasoning=args.reasoning,
                   device=args.device, dtype=args.dtype, api_key=api_key, max_tokens=args.max_tokens,
                   max_prompt_tokens=args.max_prompt_tokens, time_limit=args.time_limit,
                   port_file=args.port_file, parent_pid=args.parent_pid, log_level=args.log_level,
                   engine=args.engine, slots=args.slots or 1, context=args.context)
    except KeyboardInterrupt:
        return 130
    except (ValueError, OSError, RuntimeError, ImportError) as err:  # ServeError, OfflineModelError, no such model
        return fail(prog, str(err).strip() or type(err).__name__, code=2)
    return 0


if __name__ == "__main__":  # the child process of qwenlab.serve.start
    sys.exit(main(sys.argv[1:]))
