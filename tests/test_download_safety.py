"""Downloads never harm what is already in a folder, and never write outside it (issue #19, items 2, 3, 8).

Every download goes through the real ``huggingface_hub`` client against a Hub-protocol server on 127.0.0.1
(the classroom mirror, or a small hostile server below that lists dangerous file names). Checks:

- a file of the user's that shares a name with a repo file is never deleted or overwritten: a different
  one stops the download before anything changes, an identical one is kept as it is;
- a failed download leaves every file of the user's byte-equal, and says exactly what is left;
- a file qwenlab wrote and that was damaged in place (same size, mtime set back) is found by its hash
  and replaced by a verified copy;
- file names from a source are refused unless they stay inside the folder under POSIX and Windows rules;
- ``qwenlab models --delete``: no answer (stdin closed), an empty name, an unknown name.
"""

from __future__ import annotations

import io
import json
import ntpath
import os
import posixpath
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import huggingface_hub.file_download  # noqa: F401  (its log handler is made here, outside any capture)
import pytest

from qwenlab import hub, mirror
from qwenlab.cli import main as qwenlab_cli
from qwenlab.files import UnsafePathError, git_blob_sha1_of, inside, safe_relpath
from qwenlab.paths import models_dir
from tests.test_hub import WEIGHTS, dying_mirror
from tests.test_mirror import (  # noqa: F401  (fixtures re-used)
    REPO, MiB, isolated_home, make_repo, repo_dir, server, sha256,
)

USER_CONFIG = b'{"my": "own config, edited by hand"}'
NOTES = "my notes about this model\n"


def snapshot_of(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder`` (hidden state folders included): its bytes and mtime."""
    return {p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def users_folder(tmp_path: Path, **files: bytes) -> Path:
    """A folder of the user's with their own notes and the given files."""
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "notes.txt").write_text(NOTES)
    for name, data in files.items():
        (folder / name.replace("__", ".")).write_bytes(data)
    return folder


def one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


# ---- a different file of the user's with a repo file's name -------------------------------------------


def test_a_different_user_file_stops_the_download_before_anything_changes(server, tmp_path, capsys):
    folder = users_folder(tmp_path, config__json=USER_CONFIG)
    before = snapshot_of(folder)

    code = qwenlab_cli(["download", REPO, "--source", server.url, "--local-dir", str(folder), "--quiet"])

    assert code == 1
    message = one_line_error(capsys)
    assert message == (
        f"qwenlab download: Stopped before downloading {REPO}: {folder} already has config.json, not written by "
        "qwenlab and different from the repo's; nothing in the folder was changed. Move it out of the folder, "
        "or download into another folder (--local-dir / local_dir=...)."
    )
    assert snapshot_of(folder) == before  # byte-equal, same mtimes, no state folder added
    assert not server.requests("/resolve/", "GET")  # not one byte was fetched


def test_an_identical_user_file_is_kept_and_never_becomes_qwenlabs(server, repo_dir, tmp_path, capsys):
    folder = users_folder(tmp_path, tokenizer__json=(repo_dir / "tokenizer.json").read_bytes())
    mine = folder / "tokenizer.json"
    mtime = mine.stat().st_mtime_ns

    report = hub.fetch(REPO, source=server.url, local_dir=folder, progress=False, keep_free=0)

    assert {f.path: f.action for f in report.files}["tokenizer.json"] == "kept"
    assert mine.stat().st_mtime_ns == mtime and not server.requests("tokenizer.json", "GET")
    assert (folder / "notes.txt").read_text() == NOTES
    assert sha256(folder / WEIGHTS) == sha256(repo_dir / WEIGHTS)
    assert not (folder / ".qwenlab" / "partial").exists()  # temporary names are gone once complete

    mine.write_text('{"edited": "by me"}')  # the user's own file, edited later: still the user's
    with pytest.raises(hub.UserFileConflictError, match="already has tokenizer.json, not written by qwenlab"):
        hub.fetch(REPO, source=server.url, local_dir=folder, progress=False, keep_free=0)
    assert mine.read_text() == '{"edited": "by me"}'


def test_a_folder_the_user_filled_with_the_repos_files_stays_the_users(server, repo_dir, tmp_path):
    folder = tmp_path / "copied"
    shutil.copytree(repo_dir, folder, ignore=shutil.ignore_patterns(".qwenlab"))
    report = hub.fetch(REPO, source=server.url, local_dir=folder, progress=False, keep_free=0)
    assert {f.action for f in report.files} == {"kept"} and not server.requests("/resolve/", "GET")

    (folder / "config.json").write_bytes(USER_CONFIG)  # edited by hand afterwards
    with pytest.raises(hub.UserFileConflictError):
        hub.fetch(REPO, source=server.url, local_dir=folder, progress=False, keep_free=0)
    assert (folder / "config.json").read_bytes() == USER_CONFIG


def test_a_user_file_that_appears_during_the_download_is_left_alone(repo_dir, tmp_path):
    folder = users_folder(tmp_path)

    with mirror.MirrorServer({REPO: repo_dir}) as srv:
        def user_writes_config(entry: mirror.LogEntry) -> None:
            if WEIGHTS in entry.path and entry.method == "GET" and not (folder / "config.json").exists():
                (folder / "config.json").write_bytes(USER_CONFIG)

        srv.on_request = user_writes_config
        with pytest.raises(hub.UserFileConflictError) as err:
            hub.fetch(REPO, source=srv.url, local_dir=folder, progress=False, keep_free=0)

    assert (folder / "config.json").read_bytes() == USER_CONFIG
    assert f"config.json appeared in {folder} during the download" in str(err.value)
    assert "left it as it was" in str(err.value)


# ---- a download that fails ----------------------------------------------------------------------------


def test_a_failed_download_leaves_the_users_files_as_they_were(repo_dir, tmp_path, capsys):
    folder = users_folder(tmp_path, config__json=(repo_dir / "config.json").read_bytes())  # theirs, identical
    before = snapshot_of(folder)

    with dying_mirror(repo_dir) as dying:
        code = qwenlab_cli(["download", REPO, "--source", dying.url, "--local-dir", str(folder), "--quiet"])

    assert code == 1
    message = one_line_error(capsys)
    partial = folder / ".qwenlab" / "partial"
    assert message.startswith(f"qwenlab download: Could not download {REPO} (mirror: failed (")
    assert message.endswith(
        f"No file of yours in {folder} was deleted or overwritten (qwenlab only replaces files it wrote itself, "
        f"and only with a verified copy); partial files of {WEIGHTS} wait in {partial} and resume when you "
        "run the same command again."
    )
    after = snapshot_of(folder)
    assert {k: after.get(k) for k in before} == before  # every file of the user's: there, byte-equal, same mtime
    assert sorted(set(after) - set(before)) == [  # added: one verified file, the partial weights, the records
        ".qwenlab/partial/model.safetensors.part", ".qwenlab/partial/model.safetensors.part.json",
        ".qwenlab/written.json", "generation_config.json",
    ]
    assert not (folder / WEIGHTS).exists() and (partial / f"{WEIGHTS}.part").stat().st_size > 0

    with mirror.MirrorServer({REPO: repo_dir}) as healthy:
        report = hub.fetch(REPO, source=healthy.url, local_dir=folder, progress=False, keep_free=0)
    assert {f.path: f.action for f in report.files}[WEIGHTS] == "resumed"
    assert {k: v for k, v in snapshot_of(folder).items() if k in before} == before
    assert hub.folder_weights(folder) == "safetensors"


def test_a_failed_download_never_removes_a_file_qwenlab_wrote_before(repo_dir, tmp_path):
    """qwenlab's own config.json is set aside while weights are fetched and comes back with no new request."""
    folder = tmp_path / "model"
    with mirror.MirrorServer({REPO: repo_dir}) as healthy:
        hub.fetch(REPO, source=healthy.url, local_dir=folder, progress=False, keep_free=0)
    (folder / WEIGHTS).unlink()  # a weights file lost: the next run fetches it again

    with dying_mirror(repo_dir) as dying, pytest.raises(hub.DownloadError):
        hub.fetch(REPO, source=dying.url, local_dir=folder, progress=False, keep_free=0)
    assert not (folder / "config.json").exists()  # never looks complete while the weights are missing
    assert hub.folder_weights(folder) is None

    with mirror.MirrorServer({REPO: repo_dir}) as healthy:
        report = hub.fetch(REPO, source=healthy.url, local_dir=folder, progress=False, keep_free=0)
        assert not healthy.requests("config.json", "GET")
    assert {f.path: f.action for f in report.files}["config.json"] == "kept"
    assert sha256(folder / "config.json") == sha256(repo_dir / "config.json")


# ---- a file qwenlab wrote, corrupted in place --------------------------------------------------------


def test_a_byte_flipped_with_its_mtime_set_back_is_found_by_hash_and_refetched(server, repo_dir, tmp_path, capsys):
    folder = tmp_path / "model"
    hub.fetch(REPO, source=server.url, local_dir=folder, progress=False, keep_free=0)
    for name in (WEIGHTS, "tokenizer.json"):  # an LFS file (sha256) and a small one (git blob id)
        path = folder / name
        st = path.stat()
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime
        assert path.stat().st_mtime_ns == st.st_mtime_ns and path.stat().st_size == st.st_size

    assert qwenlab_cli(["download", REPO, "--source", server.url, "--local-dir", str(folder), "--quiet"]) == 0

    shown = capsys.readouterr().out
    assert f"{WEIGHTS} [refetched]" in shown and "tokenizer.json [refetched]" in shown
    assert "config.json [kept]" in shown
    for name in (WEIGHTS, "tokenizer.json", "config.json"):
        assert sha256(folder / name) == sha256(repo_dir / name)


# ---- file names from a source ------------------------------------------------------------------------

POSIX, WINDOWS, BOTH = posixpath, ntpath, None

PATH_RULES = [
    # (name, rules, normalised name or the reason it is refused)
    ("config.json", BOTH, "config.json"),
    ("a/./b.json", BOTH, "a/b.json"),
    ("a/x/../b.json", BOTH, "a/b.json"),
    ("a//b.json", BOTH, "a/b.json"),
    ("..\\..\\evil.safetensors", WINDOWS, "climbs out of its folder with '..' under Windows rules"),
    ("..\\..\\evil.safetensors", POSIX, "..\\..\\evil.safetensors"),  # one odd name on Linux, harmless there
    ("..\\..\\evil.safetensors", BOTH, "climbs out of its folder with '..' under Windows rules"),
    ("a/../../b", POSIX, "climbs out of its folder with '..' under POSIX rules"),
    ("a/../../b", WINDOWS, "climbs out of its folder"),
    ("../x", BOTH, "climbs out of its folder"),
    ("/etc/passwd", POSIX, "is an absolute path under POSIX rules"),
    ("/etc/passwd", WINDOWS, "is an absolute path under Windows rules"),
    ("\\Windows\\evil.dll", WINDOWS, "is an absolute path under Windows rules"),
    ("C:\\x", WINDOWS, "names a drive or network share on Windows"),
    ("C:x.safetensors", WINDOWS, "names a drive or network share on Windows"),  # relative to drive C's folder
    ("C:\\x", POSIX, "C:\\x"),
    ("\\\\server\\share\\x", WINDOWS, "names a drive or network share on Windows"),
    ("//server/share/x", WINDOWS, "names a drive or network share on Windows"),
    ("//server/share/x", POSIX, "is an absolute path under POSIX rules"),
    ("\\\\?\\C:\\x", WINDOWS, "names a drive or network share on Windows"),
    ("model.safetensors:hidden", WINDOWS, "contains ':', which Windows does not allow"),
    ("model.safetensors:hidden", POSIX, "model.safetensors:hidden"),
    ("what?.json", WINDOWS, "contains '?', which Windows does not allow"),
    ("CON", WINDOWS, "a device name on Windows"),
    ("nul.safetensors", BOTH, "a device name on Windows"),
    ("sub/com1.json", WINDOWS, "a device name on Windows"),
    ("config.json.", WINDOWS, "ending in '.' or ' ', which Windows strips"),
    ("config.json ", WINDOWS, "ending in '.' or ' ', which Windows strips"),
    ("a\\b.json", WINDOWS, "a/b.json"),
    ("a\\b.json", BOTH, "means a different file on Windows than on Linux/macOS"),
    ("", POSIX, "names no file"),
    ("", WINDOWS, "names no file"),
    (".", BOTH, "names no file"),
    ("a/..", BOTH, "names no file"),
    ("///", POSIX, "is an absolute path under POSIX rules"),
    ("bad\x00name", BOTH, "contains a control character"),
    ("line\nbreak.json", WINDOWS, "contains a control character"),
]


@pytest.mark.parametrize(("name", "rules", "expected"), PATH_RULES,
                         ids=[f"{n!r}-{getattr(r, '__name__', 'both')}" for n, r, _ in PATH_RULES])
def test_path_rules(name, rules, expected):
    refused = any(word in expected for word in ("climbs", "absolute", "drive", "allow", "device", "strips",
                                                "different file", "names no file", "control"))
    if refused:
        with pytest.raises(UnsafePathError) as err:
            safe_relpath(name, rules)
        assert expected in str(err.value) and repr(name) in str(err.value)
    else:
        assert safe_relpath(name, rules) == expected


def test_inside_joins_only_names_that_stay_inside(tmp_path):
    assert inside(tmp_path, "sub/../config.json") == tmp_path / "config.json"
    for name in ("../outside.json", "..\\outside.json", "/etc/passwd", "C:\\x", "", 7):
        with pytest.raises(UnsafePathError):
            inside(tmp_path, name)


class HostileHub:
    """A Hub-protocol server on 127.0.0.1 whose repo lists the given extra file names (and serves nothing)."""

    def __init__(self, repo_dir: Path, extra_names: list[str]):
        siblings = [self._sibling(p.name, p.read_bytes()) for p in sorted(repo_dir.iterdir()) if p.is_file()]
        siblings += [self._sibling(name, b"GGUF" + b"\0" * 64) for name in extra_names]
        self.info = {"id": REPO, "modelId": REPO, "sha": "0" * 40, "siblings": siblings}
        self.gets: list[str] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True

    @staticmethod
    def _sibling(name: str, data: bytes) -> dict:
        return {"rfilename": name, "size": len(data), "blobId": git_blob_sha1_of(data)}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub_ = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                hub_.gets.append(self.path)
                if not self.path.startswith(f"/api/models/{REPO}"):
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = json.dumps(hub_.info).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def __enter__(self) -> HostileHub:
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.mark.parametrize("evil", ["..\\..\\evil.safetensors", "C:evil.safetensors", "nul.safetensors"])
def test_a_source_listing_a_name_outside_the_folder_is_refused_before_any_download(repo_dir, tmp_path, evil):
    folder = users_folder(tmp_path)
    before = snapshot_of(tmp_path)

    with HostileHub(repo_dir, [evil]) as hostile, pytest.raises(hub.DownloadError) as err:
        hub.fetch(REPO, source=hostile.url, local_dir=folder, progress=False, keep_free=0)

    message = str(err.value)
    assert f"{REPO} on mirror lists a file qwenlab will not write (the file name {evil!r}" in message
    assert "could land outside the download folder); nothing was downloaded from mirror" in message
    assert [g for g in hostile.gets if "/resolve/" in g] == []
    assert snapshot_of(tmp_path) == before


def test_the_classroom_mirror_source_falls_back_after_a_hostile_one(server, repo_dir, tmp_path):
    with HostileHub(repo_dir, ["..\\..\\evil.safetensors"]) as hostile:
        report = hub.fetch(REPO, source=[hostile.url, server.url], local_dir=tmp_path / "m", progress=False,
                           keep_free=0)
    assert [a.outcome for a in report.attempts] == ["failed", "used"]
    assert "will not write" in report.attempts[0].detail
    assert not (tmp_path / "m" / "..\\..\\evil.safetensors").exists()
    assert sha256(tmp_path / "m" / WEIGHTS) == sha256(repo_dir / WEIGHTS)


# ---- qwenlab models --delete -------------------------------------------------------------------------


@pytest.fixture
def one_model(server) -> Path:
    return hub.download(REPO, source=server.url, progress=False)


def test_models_delete_with_no_answer_deletes_nothing(one_model, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # what `</dev/null` gives input(): EOF

    code = qwenlab_cli(["models", "--delete", REPO])

    assert code == 1
    assert one_line_error(capsys) == (
        "qwenlab models: no answer to the question (stdin closed or Ctrl-C); nothing was deleted. "
        f"To delete without a question: qwenlab models --delete {REPO} --yes"
    )
    assert one_model.is_dir() and hub.folder_weights(one_model) == "safetensors"


def test_models_delete_from_a_closed_stdin_in_a_real_process(one_model):
    done = subprocess.run([sys.executable, "-c", "import sys; from qwenlab.cli import main; sys.exit(main())",
                           "models", "--delete", REPO], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "Traceback" not in done.stderr
    assert "nothing was deleted" in done.stderr and one_model.is_dir()


def test_models_delete_answer_no_keeps_the_model(one_model, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n"))
    assert qwenlab_cli(["models", "--delete", REPO]) == 0
    out = capsys.readouterr().out
    assert f"Delete {REPO} (qwenlab, " in out and str(one_model) in out and "nothing deleted" in out
    assert one_model.is_dir()


@pytest.mark.parametrize("name", ["", "   "])
def test_models_delete_an_empty_name_is_refused(one_model, name, capsys):
    assert qwenlab_cli(["models", "--delete", name, "--yes"]) == 1
    message = one_line_error(capsys)
    assert message.startswith(f"qwenlab models: No model named {name!r}: give a model name, repo id or path")
    assert "nothing was deleted" in message
    assert one_model.is_dir() and hub.folder_weights(one_model) == "safetensors"


def test_models_delete_an_unknown_name_says_so_without_asking(one_model, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # asking would fail: it must not ask
    assert qwenlab_cli(["models", "--delete", "nobody/nothing"]) == 1
    message = one_line_error(capsys)
    assert message.startswith("qwenlab models: No model 'nobody/nothing' on disk; nothing was deleted.")
    assert one_model.is_dir()
    assert [m.path for m in hub.list_models()] == [models_dir() / "test--tiny-model"]
