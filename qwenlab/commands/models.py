"""``qwenlab models [--delete NAME [--where W] [--yes]] [--json]``: list the models on disk, delete one.

The work is :func:`qwenlab.ondisk.list_models` / :func:`~qwenlab.ondisk.find_model` /
:func:`~qwenlab.ondisk.delete_model`; this module only parses arguments, asks before deleting, and prints.
An unknown or empty name, or no answer to the question (stdin closed), is a one-line error and exit 1,
with nothing deleted.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict

from ..files import format_gb
from ..ondisk import delete_model, find_model, list_models
from . import fail, make_parser


def main(argv: list[str], prog: str = "qwenlab models") -> int:
    """List every model on disk (a table, or ``--json``), or delete one after asking."""
    parser = make_parser(prog, "List the models on disk (qwenlab, Hugging Face cache, ModelScope cache) "
                               "and delete one on request.")
    parser.add_argument("--delete", metavar="NAME_OR_PATH", help="delete this one model (asks first)")
    parser.add_argument("--where", help="with --delete: 'qwenlab', 'Hugging Face cache' or 'ModelScope cache'")
    parser.add_argument("--yes", action="store_true", help="with --delete: do not ask")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    if args.delete is not None:
        return _delete(args.delete, args.where, args.yes, prog)
    models = list_models()
    if args.json:
        print(json.dumps([{**asdict(m), "path": str(m.path)} for m in models], indent=2, ensure_ascii=False))
    else:
        print(models)
    return 0


def _delete(name: str, where: str | None, yes: bool, prog: str) -> int:
    """Find the one model first (an unknown or empty name fails at once), ask, then delete it."""
    try:
        model = find_model(name, where=where)
    except (FileNotFoundError, ValueError) as err:
        return fail(prog, str(err))
    if not yes:
        question = f"Delete {model.name} ({model.where}, {format_gb(model.size_bytes)}): {model.path}? [y/N] "
        try:
            answer = input(question)
        except (EOFError, KeyboardInterrupt):
            print()  # end the question's line
            return fail(prog, f"no answer to the question (stdin closed or Ctrl-C); nothing was deleted. "
                              f"To delete without a question: qwenlab models --delete {shlex.quote(name)} --yes")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 0
    try:
        gone = delete_model(str(model.path), where=model.where)
    except (OSError, ValueError) as err:
        return fail(prog, f"could not delete {model.path}: {err}")
    print(f"deleted {gone.name} ({gone.where}, {format_gb(gone.size_bytes)}): {gone.path}")
    return 0
