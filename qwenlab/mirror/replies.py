"""What a mirror route answers, as data: a :class:`Reply` (status, headers, body) or a :class:`FileReply` (a file
to stream, whole or the ``Range`` asked for). The handler in :mod:`qwenlab.mirror.server` writes them.

Errors are JSON with ``X-Error-Code`` / ``X-Error-Message`` headers, as the Hub answers them (huggingface_hub
reads those headers to raise ``RepositoryNotFoundError``, ``RevisionNotFoundError`` ...).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Reply", "FileReply", "json_reply", "html_reply", "error_reply", "parse_range"]


@dataclass
class Reply:
    """One answer: status, headers and body (``Content-Length`` is added when it is sent).

    ``close``: close the connection after it (the request's body was not read).
    """

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    close: bool = False


@dataclass
class FileReply:
    """A file to send with its ``ETag``: whole (200), the ``Range`` asked for (206) or 416 when unsatisfiable."""

    path: Path
    size: int
    etag: str
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(data: Any) -> Reply:
    return Reply(200, {"Content-Type": "application/json"}, json.dumps(data).encode())


def html_reply(page: str) -> Reply:
    return Reply(200, {"Content-Type": "text/html; charset=utf-8"}, page.encode())


def error_reply(status: int, code: str, message: str, commit: str | None = None,
                extra: dict[str, str] | None = None) -> Reply:
    """An error as the Hub sends it (``commit``: the repo's, as ``X-Repo-Commit``, when the repo exists)."""
    # a header is Latin-1: a name in another script goes as \u escapes there (intact in the JSON body)
    safe = message.encode("ascii", "backslashreplace").decode("ascii")
    headers = {"Content-Type": "application/json", "X-Error-Code": code, "X-Error-Message": safe, **(extra or {})}
    if commit is not None:
        headers["X-Repo-Commit"] = commit
    return Reply(status, headers, json.dumps({"error": message}).encode())


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """``Range: bytes=a-b`` -> (start, end inclusive); None without a header; "bad" when unsatisfiable.

    >>> parse_range("bytes=10-", 100), parse_range("bytes=-30", 100), parse_range(None, 100), parse_range("bytes=200-", 100)
    ((10, 99), (70, 99), None, 'bad')
    """
    if not header:
        return None
    m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if not m or (not m.group(1) and not m.group(2)):
        return "bad"
    if not m.group(1):  # suffix range: the last N bytes
        n = int(m.group(2))
        return (max(size - n, 0), size - 1) if n else "bad"
    start = int(m.group(1))
    end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
    return (start, end) if start < size and start <= end else "bad"
