"""``qwenlab mirror --model NAME|FOLDER|REPO=PATH ... [--all-models] [--wheelhouse DIR] [--dashboard]
[--host 0.0.0.0] [--port 8090] [--list]``.

Serves the models the teacher names to a classroom over the Hub protocol and prints one line per download;
with ``--wheelhouse DIR`` also the course's packages (a PEP 503 index at ``/simple/``), and always the class
dashboard at ``/class`` (one line per report that arrives).
Beyond this machine (``--host 0.0.0.0``) every request must carry the class code (``$QWENLAB_API_KEY`` or
``--api-key``; one is generated and printed when none is given), which students pass as ``HF_TOKEN``.
The server is :class:`qwenlab.mirror.MirrorServer`; this module only parses arguments and prints.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path

from ..display import Table
from ..mirror import API_KEY_ENV, DEFAULT_PORT, LogEntry, MirrorServer, NotServableError, is_loopback, served_models
from . import fail, make_parser

_EPILOG = (
    "Students download with the stock tools: HF_ENDPOINT=http://TEACHER:PORT HF_HUB_DISABLE_XET=1 hf download MODEL. "
    "Beyond this machine the mirror needs a class code: students also set HF_TOKEN=<class code> (huggingface_hub "
    "and hf send it as 'Authorization: Bearer <class code>'; requests without it get 401). Set the code with "
    f"${API_KEY_ENV} (better than --api-key: command lines are visible to other users in `ps`); without one, "
    "a code is generated and printed."
)


def main(argv: list[str], prog: str = "qwenlab mirror") -> int:
    """Serve until Ctrl+C (or, with ``--list``, print what would be served); exit 1 when nothing can be served."""
    parser = make_parser(prog, "Serve models on this machine to a classroom over the Hugging Face Hub protocol "
                               "(students: HF_ENDPOINT=http://THIS-MACHINE:PORT).")
    parser.epilog = _EPILOG
    parser.add_argument("--model", action="append", metavar="NAME|FOLDER|REPO=PATH",
                        help="serve this model (repeatable): a model name on disk (see `qwenlab models`), "
                             "a model folder (config.json + *.safetensors, or *.gguf), or REPO_ID=FOLDER")
    parser.add_argument("--all-models", action="store_true",
                        help="serve every complete model on this machine, the Hugging Face cache included")
    parser.add_argument("--wheelhouse", metavar="DIR", type=Path,
                        help="also serve this folder of wheels (built by `qwenlab wheelhouse DIR`) as a package "
                             "index at /simple/, so students install the course from this machine")
    parser.add_argument("--dashboard", action="store_true",
                        help="start even without models or wheelhouse: only the class dashboard (/class, always on)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1 = this machine only; 0.0.0.0 = the "
                             "classroom, which requires a class code)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT})")
    parser.add_argument("--api-key", default=os.environ.get(API_KEY_ENV), metavar="CLASS_CODE",
                        help=f"the class code clients must send (default ${API_KEY_ENV}; generated off loopback)")
    parser.add_argument("--list", action="store_true", help="show what would be served and exit")
    args = parser.parse_args(argv)
    models_only = not (args.wheelhouse or args.dashboard)
    if not args.model and not args.all_models and models_only:
        return fail(prog, "name what to serve: --model NAME|FOLDER (repeatable, e.g. --model Qwen/Qwen3-0.6B), "
                          "or --all-models to serve every complete model on this machine (the Hugging Face "
                          "cache included; see `qwenlab models`); --wheelhouse DIR for the course's packages; "
                          "--dashboard for the class dashboard alone.")
    try:
        repos = served_models(args.model, all_models=args.all_models) if args.model or args.all_models else {}
    except NotServableError as err:
        return fail(prog, str(err))
    if not repos and models_only:
        return fail(prog, "no complete model on disk to serve; download one first (qwenlab download "
                          "Qwen/Qwen3-0.6B) or build the offline model (qwenlab offline-model).")
    if args.list:
        print(Table(["repo", "folder"], [(rid, str(folder)) for rid, folder in repos.items()]))
        return 0
    print("hashing files (once; cached afterwards)...", file=sys.stderr, flush=True)
    try:
        server = MirrorServer(repos, host=args.host, port=args.port, on_request=print_download,
                              api_key=args.api_key, wheelhouse=args.wheelhouse)
    except (NotServableError, FileNotFoundError) as err:
        return fail(prog, str(err))
    except OSError as err:
        return fail(prog, f"cannot listen on {args.host}:{args.port} ({err}); pick another --port.")
    _print_banner(server)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("mirror stopped.", file=sys.stderr)
    return 0


def _print_banner(server: MirrorServer) -> None:
    print(f"Serving {len(server.repos)} model(s) at {server.url}")
    print(dataclasses.replace(server.table(), title="", notes=()))
    if server.api_key:
        print(f"\nClass code: {server.api_key}   (every request must send it; students set "
              f"HF_TOKEN={server.api_key}, which huggingface_hub and hf send as 'Authorization: Bearer ...')")
    if server.repos:
        first = next(iter(server.repos))
        print(f"\nStudents:  {server.student_commands(first)[0]}")
        print(f"      or:  {server.student_commands(first)[1]}")
    if server.index is not None:
        print(f"\nInstall the course from here:  {server.setup_commands()[0]}")
    login = " (your browser asks for the class code: any user name, the code as password)" if server.api_key else ""
    print(f"\nClass dashboard:  {server.url}/class{login}")
    print(f"Students report:  {server.doctor_command()}")
    if is_loopback(server.host):
        print("(only this machine can connect; use --host 0.0.0.0 to serve the classroom)")
    print("Ctrl+C stops the mirror.\n", flush=True)


def print_download(entry: LogEntry) -> None:
    """One line per file download the mirror answers (time, client, status, path, MB sent, resumed from), per
    package downloaded from the index, per class report received or refused, and per request refused for a
    missing or wrong class code."""
    stamp = time.strftime("%H:%M:%S", time.localtime(entry.time))
    if entry.status == 401:
        print(f"{stamp} {entry.client:<15} 401 {entry.path} (no or wrong class code)", flush=True)
    elif entry.method == "POST":
        what = "report received" if entry.status == 200 else "report refused"
        print(f"{stamp} {entry.client:<15} {entry.status} {entry.path} ({what})", flush=True)
    elif entry.method == "GET" and entry.path.startswith("/packages/"):
        print(f"{stamp} {entry.client:<15} {entry.status} {entry.path} {entry.bytes_sent / 1e6:,.1f} MB", flush=True)
    elif entry.method == "GET" and "/resolve/" in entry.path:
        extra = f" from byte {entry.range_start}" if entry.range_start else ""
        print(f"{stamp} {entry.client:<15} {entry.status} {entry.path} {entry.bytes_sent / 1e6:,.1f} MB{extra}",
              flush=True)
