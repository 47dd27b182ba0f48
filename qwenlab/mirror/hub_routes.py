"""The Hub-protocol routes of the classroom mirror: what ``huggingface_hub`` and ``hf download`` ask for.

- ``GET /api/models`` (the list), ``/api/models/{repo}`` and ``/api/models/{repo}/revision/{rev}`` (repo info,
  ``?blobs=true`` for sizes and hashes);
- ``GET /api/models/{repo}/tree/{rev}[/{path}]`` (file listing, ``?recursive=true``);
- ``HEAD`` / ``GET /{repo}/resolve/{rev}/{file}``: the file, with ``X-Repo-Commit`` (the handler adds ``ETag``,
  ``Content-Length`` and ``Range``).

Each route returns a :class:`~qwenlab.mirror.replies.Reply` or :class:`~qwenlab.mirror.replies.FileReply`;
only ``main`` and the repo's commit id are served as revisions. Taught in ``02_download.ipynb``.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..files import UnsafePathError, safe_relpath
from .replies import FileReply, Reply, error_reply, json_reply
from .served import ServedRepo

__all__ = ["refused_file_name", "api", "resolve"]


def refused_file_name(path: str) -> Reply | None:
    """A 400 reply when ``path`` is not a plain relative file name under POSIX and Windows rules, else None."""
    try:
        if safe_relpath(path) == path:
            return None
        reason = "it is not in normal form"
    except UnsafePathError as err:
        reason = str(err)
    return error_reply(400, "BadRequest", f"refused file name {path!r}: {reason}")


def _repo(repos: Mapping[str, ServedRepo], repo_id: str, rev: str | None = None) -> ServedRepo | Reply:
    """The served repo (at revision ``rev``, when given), or the 404 that says which is missing."""
    repo = repos.get(repo_id)
    if repo is None:
        return error_reply(404, "RepoNotFound", f"Repository {repo_id} is not served by this mirror")
    if rev is not None and rev not in ("main", repo.commit):
        return error_reply(404, "RevisionNotFound", f"Revision {rev} not found (this mirror serves 'main')",
                           repo.commit)
    return repo


def _flag(query: Mapping[str, list[str]], name: str) -> bool:
    return query.get(name, ["false"])[0].lower() == "true"


def api(repos: Mapping[str, ServedRepo], parts: list[str], query: Mapping[str, list[str]]) -> Reply:
    """``/api/models/...``: ``parts`` are the path's parts after ``api/models``, ``query`` its parsed query."""
    if not parts:
        return json_reply([{"id": r.repo_id, "modelId": r.repo_id, "sha": r.commit} for r in repos.values()])
    repo = _repo(repos, "/".join(parts[:2]))
    if isinstance(repo, Reply):
        return repo
    rest, blobs = parts[2:], _flag(query, "blobs")
    if not rest:
        return json_reply(repo.info(blobs))
    if not ((rest[0] == "revision" and len(rest) == 2) or (rest[0] == "tree" and len(rest) >= 2)):
        return error_reply(404, "EntryNotFound", "unsupported API path", repo.commit)
    at_revision = _repo(repos, repo.repo_id, rest[1])
    if isinstance(at_revision, Reply):
        return at_revision
    if rest[0] == "revision":
        return json_reply(repo.info(blobs))
    sub = "/".join(rest[2:])
    refused = refused_file_name(sub) if sub else None
    if refused is not None:
        return refused
    entries = repo.tree(sub, _flag(query, "recursive"))
    if entries is None:
        return error_reply(404, "EntryNotFound", "no such folder", repo.commit)
    return json_reply(entries)


def resolve(repos: Mapping[str, ServedRepo], parts: list[str]) -> Reply | FileReply:
    """``/{org}/{name}/resolve/{rev}/{file}``: ``parts`` are the path's parts (at least five)."""
    path = "/".join(parts[4:])
    refused = refused_file_name(path)
    if refused is not None:
        return refused
    repo_id = f"{parts[0]}/{parts[1]}"
    repo = _repo(repos, repo_id, parts[3])
    if isinstance(repo, Reply):
        return repo
    f = repo.files.get(path)
    if f is None:
        return error_reply(404, "EntryNotFound", f"{path} is not in {repo_id}", repo.commit)
    return FileReply(f.abspath, f.size, f.etag, {"X-Repo-Commit": repo.commit})
