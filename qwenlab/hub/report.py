"""What a download reports and how it fails: the errors (:class:`DownloadError` and its kinds), one line per
source tried (:class:`Attempt`), per file (:class:`FileResult`), and the whole :class:`DownloadReport`.

Taught in ``02_download.ipynb``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..catalog import UnknownModelError
from ..display import KeyValueTable
from ..ondisk import partial_dir

__all__ = ["DownloadError", "NotEnoughDiskError", "RepoNotFoundError", "UserFileConflictError", "FileResult",
           "Attempt", "DownloadReport"]


class DownloadError(RuntimeError):
    """A download failed on every source; the message lists what each source said and what to do."""


class NotEnoughDiskError(DownloadError, OSError):
    """Not enough free disk for the files still to download (checked before any byte is written)."""


class RepoNotFoundError(UnknownModelError):
    """No source has a repo of that name; the message names the closest catalog ids."""

    def __init__(self, name: str, suggestions: list[str], sources: list[str]):
        super().__init__(name, suggestions)
        self.sources = sources
        hint = ", ".join(suggestions)
        self.args = (
            f"No source has a model repo named {name!r} ({', '.join(sources)} answered 'not found'). "
            f"Did you mean: {hint}? (ids are case-sensitive on some sources; see qwenlab.CATALOG)",
        )


class UserFileConflictError(DownloadError):
    """The download folder holds a file of the repo's name that qwenlab did not write and whose bytes differ.

    qwenlab never deletes or overwrites such a file: the download stops and the message names the files,
    says that nothing of the user's was changed, and what to do (move them away, or pick another folder).
    """

    def __init__(self, repo_id: str, folder: Path, paths: list[str], during: bool = False):
        self.repo_id, self.folder, self.paths = repo_id, Path(folder), list(paths)
        names = ", ".join(self.paths)
        if during:
            what = (f"Stopped downloading {repo_id}: {names} appeared in {folder} during the download and "
                    f"differs from the repo's; qwenlab left it as it was (the verified download waits in "
                    f"{partial_dir(folder)}).")
        else:
            what = (f"Stopped before downloading {repo_id}: {folder} already has {names}, not written by "
                    "qwenlab and different from the repo's; nothing in the folder was changed.")
        super().__init__(f"{what} Move {'it' if len(self.paths) == 1 else 'them'} out of the folder, or download "
                         "into another folder (--local-dir / local_dir=...).")



@dataclass
class FileResult:
    """What happened to one file: ``downloaded``, ``resumed`` (from ``resumed_from`` bytes), ``kept``
    (already there with the right size and hash) or ``refetched`` (a file qwenlab wrote, found damaged by
    its hash and replaced by a verified copy)."""

    path: str
    size: int
    action: str
    fetched_bytes: int = 0
    resumed_from: int = 0


@dataclass
class Attempt:
    """One source tried during a download: ``used``, ``unreachable``, ``not found`` or ``failed`` (+ why)."""

    source: str
    url: str
    outcome: str
    detail: str = ""


@dataclass
class DownloadReport(KeyValueTable):
    """Result of :func:`fetch`: the folder, the source used, every source tried, and each file's fate."""

    name: str
    repo_id: str
    folder: Path
    source: str
    url: str
    commit: str | None
    files: list[FileResult] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def bytes_fetched(self) -> int:
        return sum(f.fetched_bytes for f in self.files)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    key_width = 26

    def rows(self) -> list[tuple[str, str]]:
        tried = "; ".join(f"{a.source}: {a.outcome}" + (f" ({a.detail})" if a.detail else "") for a in self.attempts)
        rate = self.bytes_fetched / self.seconds / 1e6 if self.seconds > 0 else 0.0
        return [
            ("模型 (model)", self.repo_id),
            ("来源 (source used)", f"{self.source} — {self.url}"),
            ("尝试过 (sources tried)", tried or "-"),
            ("保存到 (folder)", str(self.folder)),
            ("版本 (commit)", self.commit or "-"),
            ("文件 (files)", ", ".join(f"{f.path} [{f.action}]" for f in self.files)),
            ("下载量 (fetched)", f"{self.bytes_fetched / 1e6:,.1f} MB of {self.size / 1e6:,.1f} MB "
                                f"in {self.seconds:.1f} s ({rate:,.0f} MB/s)"),
        ]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["folder"] = str(self.folder)
        return d
