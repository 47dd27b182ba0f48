"""Classroom mirror: one machine serves the models it already has to the class over the Hugging Face Hub protocol.

The teacher runs ``qwenlab mirror --host 0.0.0.0 --model Qwen/Qwen3-0.6B``; students set
``HF_ENDPOINT=http://<teacher>:8090`` and ``HF_TOKEN=<class code>`` and the stock ``huggingface_hub`` client
works unchanged: 40 students download over the room's Wi-Fi instead of 40 × 1.5 GB from abroad.

What is served, and to whom:

- only what the teacher names: model names found on disk (:func:`qwenlab.hub.find_local`) or folders that are
  model folders (``config.json`` + complete ``*.safetensors``, or ``*.gguf`` files); every complete model on
  disk, the Hugging Face cache included, only when asked for (``all_models=True`` / ``--all-models``);
- inside a model folder, only its own files: no hidden files or folders (``.git``, ``.qwenlab``), no symlink
  that points out of the folder (the Hugging Face cache's links into its ``blobs/`` are followed), no file
  name unsafe on POSIX or Windows; a request path that is not such a name gets 400, one not served 404;
- beyond this machine (any host but loopback) only with a class code: every request must send
  ``Authorization: Bearer <code>``, which ``huggingface_hub`` and ``hf`` do when ``HF_TOKEN=<code>`` is set
  (or ``token=<code>`` is passed). One is generated when none is given.

The server answers the endpoints ``huggingface_hub`` uses to download:

- ``GET /api/models/{repo}`` and ``/api/models/{repo}/revision/{rev}`` (repo info, ``?blobs=true`` for sizes/hashes)
- ``GET /api/models/{repo}/tree/{rev}[/{path}]`` (file listing, used by ``snapshot_download`` / ``hf download``)
- ``HEAD`` / ``GET /{repo}/resolve/{rev}/{file}`` with ``ETag`` (sha256 for large files, git blob sha1 for
  small ones), ``X-Repo-Commit``, ``Content-Length`` and ``Range`` requests (206), so downloads resume.

Why not olah (the existing mirror on PyPI, tried first, 0.5.4): it serves local models only as git repos with
LFS objects, and in that mode it reads the whole file into memory for every request (1.3 GB RSS per
download of a 0.5B model), re-hashes the whole file on every ``HEAD`` (~10 s on our test machine for
1.26 GB), and ignores ``Range`` (answers 200 with the full file), so an interrupted download can never resume.
This server streams files with ``sendfile``, hashes each file once (cached), and honours ``Range``.

The same server is the classroom's one machine for everything else (see :mod:`qwenlab.classroom`), under the
same class code:

- ``/simple/`` (with ``wheelhouse=`` / ``--wheelhouse DIR``): the teacher's wheelhouse as a PEP 503 package
  index, so students install the course without the internet (pip sends the class code as Basic auth:
  ``--pip-mirror http://student:CODE@TEACHER:8090/simple``);
- ``/class``: the live class dashboard (always on): students POST their ``qwenlab doctor --send`` report to
  ``/class/reports``, the teacher's browser shows every laptop (it asks for the class code: any user name,
  the code as password).

The modules, one job each: :mod:`~qwenlab.mirror.served` (which folders and files are served, and their
hashes), :mod:`~qwenlab.mirror.access` (the class code), :mod:`~qwenlab.mirror.hub_routes` (the Hub protocol),
:mod:`~qwenlab.mirror.class_routes` (the package index and the dashboard, answered by :mod:`qwenlab.classroom`),
:mod:`~qwenlab.mirror.replies` (answers as data), :mod:`~qwenlab.mirror.server` (the HTTP server and its
handler). Every name below is importable from ``qwenlab.mirror``.

Taught in ``02_download.ipynb``; the classroom parts in ``docs/teacher.md``.
"""

from __future__ import annotations

from ..paths import API_KEY_ENV
from .access import class_code, is_loopback, required_code
from .server import DEFAULT_PORT, LogEntry, MirrorHandler, MirrorServer, start
from .served import OFFLINE_REPO_ID, HashCache, NotServableError, ServedFile, ServedRepo, model_folder_kind, served_models

__all__ = ["OFFLINE_REPO_ID", "DEFAULT_PORT", "API_KEY_ENV", "NotServableError", "model_folder_kind",
           "is_loopback", "class_code", "required_code", "ServedFile", "HashCache", "ServedRepo", "LogEntry", "MirrorHandler",
           "MirrorServer", "served_models", "start"]
