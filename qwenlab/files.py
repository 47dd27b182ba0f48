"""Small file helpers written once for every module: hashes, free disk, folder sizes, atomic writes.

- :func:`sha256_file` / :class:`HashingWriter`: the SHA-256 that Hugging Face's LFS files, the offline
  model and the classroom mirror are checked with.
- :func:`git_blob_sha1` / :func:`git_blob_sha1_of`: the id git (and the Hub) gives a small file.
- :func:`free_bytes` / :func:`disk_room`: free disk where a file *will* go (the folder may not exist yet).
- :func:`folder_size`, :func:`write_text_atomic`, :func:`format_gb`.
- :func:`safe_relpath` / :func:`inside`: a file name that comes from a source or a request, normalised and
  refused (:class:`UnsafePathError`) unless it stays inside its folder under POSIX *and* Windows rules.

Taught in ``02_download.ipynb`` (how a download is checked) and ``01_environment.ipynb`` (free disk).
"""

from __future__ import annotations

import hashlib
import ntpath
import os
import posixpath
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import BinaryIO

__all__ = [
    "CHUNK_BYTES",
    "sha256_file",
    "git_blob_sha1",
    "git_blob_sha1_of",
    "HashingWriter",
    "nearest_existing_folder",
    "free_bytes",
    "DiskRoom",
    "disk_room",
    "folder_size",
    "write_text_atomic",
    "format_gb",
    "UnsafePathError",
    "safe_relpath",
    "inside",
]

#: Bytes read at a time while hashing (large enough to be fast, small enough for a laptop's RAM).
CHUNK_BYTES = 8 << 20

PathLike = str | os.PathLike


def sha256_file(path: PathLike) -> str:
    """SHA-256 of a file's bytes, as a hex string (read in chunks: fine for multi-GB weights).

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.txt"; _ = p.write_bytes(b"abc")
    >>> sha256_file(p)[:16]
    'ba7816bf8f01cfea'
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            h.update(chunk)
    return h.hexdigest()


def git_blob_sha1(path: PathLike) -> str:
    """The git blob id of a file: SHA-1 of ``b"blob <size>\\0"`` + its bytes (what ``git hash-object`` prints).

    The Hub reports this id (``blobId``, and the ``ETag`` of small files) for files not stored in LFS.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "empty"; _ = p.write_bytes(b"")
    >>> git_blob_sha1(p)   # git's well-known id of the empty file
    'e69de29bb2d1d6434b8b29ae775ad8c2e48c5391'
    """
    size = os.stat(path).st_size
    h = hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            h.update(chunk)
    return h.hexdigest()


def git_blob_sha1_of(data: bytes) -> str:
    """The git blob id of some bytes held in memory (e.g. an LFS pointer file).

    >>> git_blob_sha1_of(b"")
    'e69de29bb2d1d6434b8b29ae775ad8c2e48c5391'
    """
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HashingWriter:
    """Wrap a binary file opened for writing so that the SHA-256 of its whole content is known at the end,
    without reading the file a second time.

    Bytes already in the file before the current position are hashed first (a resumed download opened
    with ``"r+b"`` and positioned at its end); ``truncate`` re-hashes what is left (a server that ignored a
    ``Range`` request makes the file start again from zero).

    >>> import io
    >>> w = HashingWriter(io.BytesIO()); _ = w.write(b"abc")
    >>> w.hexdigest()[:16]
    'ba7816bf8f01cfea'
    """

    def __init__(self, f: BinaryIO):
        self.f = f
        self._rehash()

    def _rehash(self) -> None:
        end = self.f.tell()
        self._hash = hashlib.sha256()
        if end:
            self.f.seek(0)
            remaining = end
            while remaining and (chunk := self.f.read(min(CHUNK_BYTES, remaining))):
                self._hash.update(chunk)
                remaining -= len(chunk)
        self.f.seek(end)

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        return self.f.write(data)

    def tell(self) -> int:
        return self.f.tell()

    def seek(self, pos: int, whence: int = 0) -> int:
        return self.f.seek(pos, whence)

    def truncate(self, size: int | None = None) -> int:
        out = self.f.truncate(size)
        self._rehash()
        return out

    def hexdigest(self) -> str:
        """SHA-256 of everything in the file up to now."""
        return self._hash.hexdigest()


def nearest_existing_folder(path: PathLike) -> Path:
    """``path`` itself if it exists, else its closest existing parent (where it would be created)."""
    where = Path(path).expanduser().resolve()
    while not where.exists():
        where = where.parent
    return where


def free_bytes(path: PathLike) -> int:
    """Free disk, in bytes, on the drive that holds ``path`` (or would hold it: it need not exist yet)."""
    return shutil.disk_usage(nearest_existing_folder(path)).free


@dataclass(frozen=True)
class DiskRoom:
    """Whether ``needed`` bytes fit at ``folder`` while ``keep_free`` bytes stay free (see :func:`disk_room`)."""

    folder: Path
    free: int
    needed: int
    keep_free: int = 0

    @property
    def enough(self) -> bool:
        return self.free - self.needed >= self.keep_free

    def describe(self) -> str:
        """One phrase for an error message: what is needed and what is there."""
        keep = f" (keeping {format_gb(self.keep_free)} free)" if self.keep_free else ""
        return f"it needs {format_gb(self.needed)} more and {self.folder} has {format_gb(self.free)} free{keep}"


def disk_room(path: PathLike, needed: int, keep_free: int = 0) -> DiskRoom:
    """Measure whether ``needed`` bytes can be written under ``path`` and still leave ``keep_free`` bytes free.

    Callers raise their own error (with their own advice) when ``.enough`` is False; check before the
    first byte is written, so a full disk never leaves half a model behind.

    >>> disk_room(".", needed=0).enough
    True
    """
    folder = nearest_existing_folder(path)
    return DiskRoom(folder, shutil.disk_usage(folder).free, int(needed), int(keep_free))


def folder_size(path: PathLike) -> int:
    """Bytes of all files under ``path`` (links counted as links, unreadable files skipped)."""
    total = 0
    for root, _, names in os.walk(Path(path)):
        for name in names:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def write_text_atomic(path: PathLike, text: str) -> None:
    """Write a text file under a temporary name, then rename it into place: readers see the old file or the
    new one, never half of one (a crash mid-write leaves the old file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def format_gb(nbytes: float, digits: int = 2) -> str:
    """Bytes as decimal gigabytes, the unit download pages and disk tools use.

    >>> format_gb(1_503_300_328), format_gb(3.9e9, digits=1)
    ('1.50 GB', '3.9 GB')
    """
    return f"{nbytes / 1e9:.{digits}f} GB"


# ---------------------------------------------------------------------------------------------------------
# File names that come from elsewhere (a repo listing, a mirror request): inside their folder, or refused.
# ---------------------------------------------------------------------------------------------------------


class UnsafePathError(ValueError):
    """A file name from a source or a request that would land outside its folder (or is no file name)."""


# Names Windows treats as devices, whatever the extension (``nul.txt`` is the NUL device too).
_WINDOWS_DEVICES = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{kind}{n}" for kind in ("COM", "LPT") for n in "123456789\u00b9\u00b2\u00b3"]
)
_WINDOWS_BAD_CHARS = frozenset('<>:"|?*')


def _parts(name: str, flavour: ModuleType) -> list[str]:
    """The normalised components of ``name`` under one OS's rules; raise :class:`UnsafePathError` if unsafe."""
    windows = flavour is ntpath
    rules = "Windows" if windows else "POSIX"
    if any(ord(c) < 32 for c in name):
        raise UnsafePathError(f"the file name {name!r} contains a control character")
    if windows and flavour.splitdrive(name)[0]:
        raise UnsafePathError(f"the file name {name!r} names a drive or network share on Windows")
    seps = ("/", "\\") if windows else ("/",)
    if name.startswith(seps):
        raise UnsafePathError(f"the file name {name!r} is an absolute path under {rules} rules")
    stack: list[str] = []
    for part in name.replace("\\", "/").split("/") if windows else name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not stack:
                raise UnsafePathError(f"the file name {name!r} climbs out of its folder with '..' under {rules} rules")
            stack.pop()
            continue
        if windows:
            _check_windows_part(name, part)
        stack.append(part)
    if not stack:
        raise UnsafePathError(f"the file name {name!r} names no file (empty, '.' or only separators)")
    return stack


def _check_windows_part(name: str, part: str) -> None:
    """Refuse one component Windows would read differently from how it is written."""
    if bad := sorted(_WINDOWS_BAD_CHARS.intersection(part)):
        raise UnsafePathError(f"the file name {name!r} contains {''.join(bad)!r}, which Windows does not allow "
                              "(':' would write a hidden stream or name a drive)")
    if part != part.rstrip(". "):
        raise UnsafePathError(f"the file name {name!r} has a part ending in '.' or ' ', which Windows strips "
                              "(so it would name another file)")
    if part.split(".")[0].upper() in _WINDOWS_DEVICES:
        raise UnsafePathError(f"the file name {name!r} uses {part!r}, a device name on Windows")


def safe_relpath(name: str, flavour: ModuleType | None = None) -> str:
    """Normalise a relative file name from a source or a request, or refuse it.

    ``a/./b`` and ``a/x/../b`` become ``a/b``; a name that is empty, absolute, on a drive or network share,
    climbs out with ``..``, or (under Windows rules) holds ``:``, ``<>"|?*``, a device name such as ``CON``,
    or a part ending in ``.``/space is refused with :class:`UnsafePathError` saying why.

    Args:
        name: the name as the source or the request wrote it.
        flavour: ``posixpath`` or ``ntpath`` to apply one OS's rules; ``None`` (default) applies both and also
            refuses a name the two read differently (``a\\b`` is one file on Linux, two parts on Windows), so a
            name accepted here is safe for every student in the class.

    Returns:
        The name with ``/`` separators, to join onto the target folder (see :func:`inside`).

    Taught in ``02_download.ipynb`` (why a downloader checks the names a server sends).

    >>> safe_relpath("a/x/../b.json")
    'a/b.json'
    >>> try:
    ...     safe_relpath("..\\\\..\\\\evil.safetensors")
    ... except UnsafePathError as e:
    ...     print(e)
    the file name '..\\\\..\\\\evil.safetensors' climbs out of its folder with '..' under Windows rules
    """
    if not isinstance(name, str):
        raise UnsafePathError(f"the file name {name!r} is not text")
    if flavour is not None:
        return "/".join(_parts(name, flavour))
    posix, windows = _parts(name, posixpath), _parts(name, ntpath)
    if posix != windows:
        raise UnsafePathError(f"the file name {name!r} means a different file on Windows than on Linux/macOS "
                              "(it contains a backslash)")
    return "/".join(posix)


def inside(base: PathLike, name: str, flavour: ModuleType | None = None) -> Path:
    """``base / name`` for a ``name`` from a source or a request, refused unless it stays inside ``base``.

    Checks ``name`` with :func:`safe_relpath` (both OS rule sets unless ``flavour`` names one). The check
    is on the name, not on links already on disk.

    >>> inside("/models/qwen", "sub/../config.json").as_posix()
    '/models/qwen/config.json'
    """
    return Path(base) / safe_relpath(name, flavour)
