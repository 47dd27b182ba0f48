"""The ``qwenlab`` command: a small dispatcher. Each subcommand is ``qwenlab.commands.<module>.main``.

    qwenlab doctor [--json]          environment report            (commands/doctor.py)
    qwenlab offline-model            install/assemble/convert the offline model
    qwenlab tokens TEXT              token chips, special tokens, cost
    qwenlab download MODEL           download a model
    qwenlab models                   list / delete downloaded models
    qwenlab mirror                   classroom mirror
    qwenlab chat [MODEL]             terminal chat
    qwenlab bench [MODEL] [--json]   speed measurements (``bench quant``: the quantized variants)
    qwenlab serve MODEL              OpenAI-compatible server

No traceback reaches a user: an error the user can fix (a ValueError, an OSError, one of qwenlab's own
error classes, Ctrl-C) prints one line ``qwenlab CMD: message`` — the message says what to do next —
and exits with 1 (130 for Ctrl-C); anything else prints one line that names it and how to see the
traceback (``QWENLAB_DEBUG=1``), and exits with 1.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys
import traceback

# command -> (module under qwenlab.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "doctor": ("doctor", "check this machine: Python, torch, CPU/GPU, RAM, disk, hubs (PASS/WARN/FAIL)"),
    "offline-model": ("offline_model", "install, assemble, verify and convert the offline model (no hub needed)"),
    "tokens": ("tokens", "show how a tokenizer cuts text into tokens (ids, split characters), special tokens, cost"),
    "download": ("download", "download a model from Hugging Face / hf-mirror / ModelScope / a mirror"),
    "models": ("models", "list models on disk (HF cache, ModelScope cache, qwenlab), delete one on request"),
    "mirror": ("mirror", "serve the models on this machine to a classroom over the Hub protocol"),
    "wheelhouse": ("wheelhouse", "download the course's wheels for the students' laptops (served by mirror)"),
    "chat": ("chat", "chat with a model in the terminal (streaming, /think, /reset, /save)"),
    "bench": ("bench", "measure bandwidth, prefill/decode tokens/s and the roofline on this machine"),
    "serve": ("serve", "run an OpenAI-compatible API server for a model on 127.0.0.1"),
    "edition": ("edition", "build the student edition (no solutions) or the teacher edition, as a zip to hand out"),
    "train-thinker": ("train_thinker", "train (or --measure) the mini thinker: offline model + LoRA, on the CPU"),
}


def usage() -> str:
    lines = ["usage: qwenlab COMMAND [ARGS]", "", "commands:"]
    lines += [f"  {name:<14} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `qwenlab COMMAND --help` for the options of one command."]
    return "\n".join(lines)


DEBUG_ENV = "QWENLAB_DEBUG"
REINSTALL = "Reinstall the course (`pip install -e \".[offline,lab,test,serve,quant]\"`, or `make install`)."

# a next step for the plain OS errors whose message names only the problem
_OS_HINTS: dict[type, str] = {
    PermissionError: "check the permissions, or choose a folder you own",
    FileNotFoundError: "check the path (absolute paths are safest)",
    IsADirectoryError: "give a file, not a folder",
    NotADirectoryError: "a part of the path is a file, not a folder: check the path",
}


def is_known_error(err: BaseException) -> bool:
    """An error the user can act on from its message: ValueError, OSError, EOFError, ImportError (a missing
    package), or a class qwenlab defines."""
    if isinstance(err, (ValueError, OSError, EOFError, ImportError, KeyboardInterrupt)):
        return True
    return any(cls.__module__.split(".")[0] == "qwenlab" for cls in type(err).__mro__)


def error_line(prog: str, err: BaseException, debug: bool = False) -> str:
    """The one line printed for ``err``: ``prog: message`` plus the next step where the message lacks one
    (``debug``: the traceback was printed above it)."""
    text = " ".join(str(err).split())
    if isinstance(err, KeyboardInterrupt):
        return f"{prog}: interrupted (Ctrl-C); stopped before finishing, nothing else was changed."
    if isinstance(err, EOFError):
        return (f"{prog}: standard input ended before an answer was typed (EOF); run it in a terminal, or "
                "pass the option that answers for you (e.g. --yes).")
    if isinstance(err, ImportError):
        return f"{prog}: {text}: a package this command needs is missing. {REINSTALL}"
    if not is_known_error(err):
        see = "the traceback is above" if debug else f"run with {DEBUG_ENV}=1 to see the traceback"
        return (f"{prog}: unexpected error {type(err).__name__}: {text or '(no message)'} — {see} "
                "(and please report it).")
    if isinstance(err, OSError) and type(err).__module__ == "builtins":
        hint = _OS_HINTS.get(type(err)) or ("free some disk space" if err.errno == errno.ENOSPC else "")
        text = f"{text}; {hint}" if hint else text
    return f"{prog}: {text or type(err).__name__}"


def report_error(prog: str, err: BaseException) -> int:
    """Print the one line for ``err`` on stderr (after its traceback when ``QWENLAB_DEBUG=1``); the exit code."""
    debug = os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")
    if debug:
        traceback.print_exception(type(err), err, err.__traceback__)
    print(error_line(prog, err, debug), file=sys.stderr)
    return 130 if isinstance(err, KeyboardInterrupt) else 1


def _quiet_broken_pipe() -> int:
    """``qwenlab ... | head``: the reader left; stop quietly (and keep Python from complaining at exit)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from .version import __version__

        print(f"qwenlab {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"qwenlab: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    prog = f"qwenlab {command}"
    try:
        module = importlib.import_module(f"qwenlab.commands.{COMMANDS[command][0]}")
    except ImportError as err:
        # A broken install, not a missing feature: say which import failed and how to repair it.
        print(f"{prog}: cannot start — {type(err).__name__}: {err}. {REINSTALL}", file=sys.stderr)
        return 1
    except Exception as err:
        return report_error(prog, err)
    try:
        return int(module.main(rest, prog=prog) or 0)
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except (Exception, KeyboardInterrupt) as err:  # SystemExit (argparse, sys.exit) passes through
        return report_error(prog, err)


if __name__ == "__main__":
    sys.exit(main())
