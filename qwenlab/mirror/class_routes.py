"""The classroom routes of the mirror, answered by :mod:`qwenlab.classroom`: the wheelhouse as a PEP 503 package
index (``/simple/``, ``/packages/``) and the class dashboard (``/class``, ``/class/reports``).

Each route returns a :class:`~qwenlab.mirror.replies.Reply` or :class:`~qwenlab.mirror.replies.FileReply`;
the class code and the pause are checked before, by the handler. The classroom is in ``docs/teacher.md``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import quote

from ..classroom.dashboard import (
    MAX_REPORT_BYTES, PAGE_HTML, PAGE_PATH, PAGE_POLICY, PAGE_SCRIPT, REPORTS_PATH, SCRIPT_PATH, ClassBoard,
    ReportError, parse_report,
)
from ..classroom.index import PackageIndex, normalize_name
from .replies import FileReply, Reply, error_reply, html_reply

__all__ = ["package_index", "dashboard", "receive_report"]

_SECURITY = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def package_index(index: PackageIndex | None, parts: list[str]) -> Reply | FileReply:
    """``/simple/``, ``/simple/{name}/`` and ``/packages/{file}`` (``parts``: the path's parts)."""
    if index is None:
        return error_reply(404, "EntryNotFound", "this mirror serves no package index (start it with "
                                                 "--wheelhouse DIR)")
    if parts == ["simple"]:
        return html_reply(index.root_page())
    if parts[0] == "simple" and len(parts) == 2:
        name = normalize_name(parts[1])
        if name != parts[1]:  # PEP 503: other spellings of a name redirect to its normal form
            return Reply(301, {"Location": f"/simple/{quote(name)}/"})
        page = index.project_page(name)
        if page is None:
            return error_reply(404, "EntryNotFound", f"no package {name!r} in this wheelhouse")
        return html_reply(page)
    f = index.files.get(parts[1]) if parts[0] == "packages" and len(parts) == 2 else None
    if f is None:
        return error_reply(404, "EntryNotFound", f"{'/'.join(parts)} is not in this wheelhouse")
    return FileReply(f.path, f.size, f.sha256)


def dashboard(board: ClassBoard, path: str) -> Reply:
    """``GET /class`` (the page), its script, and ``/class/reports`` (every report, as JSON)."""
    if path == PAGE_PATH:
        return Reply(200, {"Content-Type": "text/html; charset=utf-8", "Content-Security-Policy": PAGE_POLICY,
                           "X-Frame-Options": "DENY", **_SECURITY}, PAGE_HTML.encode())
    if path == SCRIPT_PATH:
        return Reply(200, {"Content-Type": "text/javascript; charset=utf-8", **_SECURITY}, PAGE_SCRIPT.encode())
    if path == REPORTS_PATH:
        return Reply(200, {"Content-Type": "application/json", **_SECURITY}, board.to_json())
    return error_reply(404, "EntryNotFound", f"{path} is not part of the class dashboard")


def receive_report(board: ClassBoard, length: str | None, chunked: bool, read: Callable[[int], bytes],
                   client: str) -> Reply:
    """``POST /class/reports``: check the size (``Content-Length``; a chunked body is refused) before reading
    the body with ``read(n)``, then the report, then keep it (200 with the number of laptops) or say why not (4xx)."""
    try:
        if chunked or length is None:
            raise ReportError(411, "send the report with a Content-Length")
        if not length.strip().isdigit():
            raise ReportError(400, "Content-Length is not a number")
        if int(length) > MAX_REPORT_BYTES:
            raise ReportError(413, f"a report is at most {MAX_REPORT_BYTES} bytes")
        data = read(int(length))
        if len(data) < int(length):
            raise ReportError(400, "the report ended early")
        count = board.add(parse_report(data), client)
    except ReportError as err:
        refused = error_reply(err.status, "BadReport", str(err))
        refused.close = err.status in (411, 413)  # the body was not read
        return refused
    return Reply(200, {"Content-Type": "application/json"}, json.dumps({"ok": True, "laptops": count}).encode())
