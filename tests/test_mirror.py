"""The classroom mirror speaks the Hub protocol well enough for the stock huggingface_hub client, and serves only
what the teacher named, only inside those folders, and (beyond loopback) only to clients with the class code.

Every test talks to a real server on 127.0.0.1 with real clients (httpx, http.client, huggingface_hub, the
`qwenlab mirror` command); no traffic leaves this machine.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from qwenlab import mirror
from qwenlab.mirror.replies import Reply

REPO = "test/tiny-model"
MiB = 2**20


def make_repo(folder: Path, weights_mib: int = 32) -> Path:
    """A small model-shaped repo: valid safetensors weights, config, tokenizer files, and files a download
    must skip (pickle weights, README) or a mirror must not serve (a hidden state folder)."""
    import numpy as np
    from safetensors.numpy import save_file

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = weights_mib * MiB // (4 * 256)
    save_file({"embed.weight": rng.standard_normal((rows, 256), dtype=np.float32)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"]}))
    (folder / "generation_config.json").write_text(json.dumps({"do_sample": True, "temperature": 0.7}))
    (folder / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {"type": "BPE"}}))
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 32768}))
    (folder / "pytorch_model.bin").write_bytes(b"pickle weights: never downloaded by qwenlab")
    (folder / "README.md").write_text("# a test repo\n")
    (folder / ".qwenlab").mkdir()
    (folder / ".qwenlab" / "secret.txt").write_text("state files are not served")
    return folder


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """qwenlab's folders and both hub caches live in this test's temporary folder."""
    monkeypatch.setenv("QWENLAB_HOME", str(tmp_path / "qwenlab-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms-cache"))
    for var in ("HF_ENDPOINT", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def repo_dir(tmp_path_factory) -> Path:
    return make_repo(tmp_path_factory.mktemp("repo") / "tiny-model")


@pytest.fixture
def server(repo_dir):
    with mirror.MirrorServer({REPO: repo_dir}) as srv:
        yield srv


def test_binds_loopback_by_default_and_lists_its_models(server):
    assert server.host == "127.0.0.1" and server.url.startswith("http://127.0.0.1:")
    listing = httpx.get(f"{server.url}/api/models").json()
    assert [m["id"] for m in listing] == [REPO]
    index = httpx.get(server.url).text
    assert REPO in index and f"--source {server.url}" in index


def test_head_gives_the_headers_huggingface_hub_needs(server, repo_dir):
    r = httpx.head(f"{server.url}/{REPO}/resolve/main/model.safetensors")
    assert r.status_code == 200
    assert r.headers["ETag"].strip('"') == sha256(repo_dir / "model.safetensors")  # large file: sha256
    assert int(r.headers["Content-Length"]) == (repo_dir / "model.safetensors").stat().st_size
    assert r.headers["Accept-Ranges"] == "bytes"
    assert len(r.headers["X-Repo-Commit"]) == 40
    assert "X-Xet-Hash" not in r.headers  # never offers Xet, so clients cannot bypass the mirror
    small = httpx.head(f"{server.url}/{REPO}/resolve/main/config.json")
    data = (repo_dir / "config.json").read_bytes()
    git_sha1 = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    assert small.headers["ETag"].strip('"') == git_sha1  # small file: git blob id, as on the Hub


def test_range_requests_return_exactly_the_asked_bytes(server, repo_dir):
    data = (repo_dir / "model.safetensors").read_bytes()
    url = f"{server.url}/{REPO}/resolve/main/model.safetensors"
    r = httpx.get(url, headers={"Range": "bytes=1000-1999"})
    assert r.status_code == 206 and r.content == data[1000:2000]
    assert r.headers["Content-Range"] == f"bytes 1000-1999/{len(data)}"
    tail = httpx.get(url, headers={"Range": f"bytes={len(data) - 10}-"})
    assert tail.status_code == 206 and tail.content == data[-10:]
    suffix = httpx.get(url, headers={"Range": "bytes=-5"})
    assert suffix.content == data[-5:]
    bad = httpx.get(url, headers={"Range": f"bytes={len(data)}-"})
    assert bad.status_code == 416 and bad.headers["Content-Range"] == f"bytes */{len(data)}"
    entry = server.requests("model.safetensors", "GET")[0]
    assert (entry.range_start, entry.range_end, entry.bytes_sent) == (1000, 1999, 1000)


def test_errors_carry_the_hub_error_codes(server):
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import RemoteEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    missing = httpx.get(f"{server.url}/api/models/nobody/nothing")
    assert missing.status_code == 404 and missing.headers["X-Error-Code"] == "RepoNotFound"
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("nobody/nothing", "config.json", endpoint=server.url, cache_dir=os.environ["HF_HUB_CACHE"])
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(REPO, "nope.json", endpoint=server.url, cache_dir=os.environ["HF_HUB_CACHE"])
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "config.json", revision="v9", endpoint=server.url,
                        cache_dir=os.environ["HF_HUB_CACHE"])


def test_hidden_state_files_are_not_served(server):
    from huggingface_hub import HfApi

    files = HfApi(endpoint=server.url).list_repo_files(REPO)
    assert "config.json" in files and not any(f.startswith(".") for f in files)
    assert httpx.get(f"{server.url}/{REPO}/resolve/main/.qwenlab/secret.txt").status_code == 404


def test_stock_snapshot_download_gets_an_identical_copy(server, repo_dir, tmp_path):
    from huggingface_hub import snapshot_download

    out = Path(snapshot_download(REPO, endpoint=server.url, local_dir=tmp_path / "copy"))
    for name in ("model.safetensors", "config.json", "tokenizer.json", "pytorch_model.bin"):
        assert sha256(out / name) == sha256(repo_dir / name)
    assert server.requests("/tree/"), "snapshot_download lists the repo through the tree API"


def test_drop_after_cuts_responses_like_a_bad_network(repo_dir):
    with mirror.MirrorServer({REPO: repo_dir}, drop_after=1000) as srv:
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.get(f"{srv.url}/{REPO}/resolve/main/model.safetensors")
        deadline = time.monotonic() + 60  # the server logs the request after it closed the connection
        while not srv.requests("model.safetensors", "GET") and time.monotonic() < deadline:
            time.sleep(0.01)
        entry = srv.requests("model.safetensors", "GET")[-1]
        assert entry.dropped and entry.bytes_sent == 1000


def test_stop_closes_kept_alive_connections_and_the_port(repo_dir):
    srv = mirror.MirrorServer({REPO: repo_dir}).start()
    with httpx.Client() as client:  # keeps its connection open between requests
        assert client.get(f"{srv.url}/api/models").status_code == 200
        srv.stop()
        with pytest.raises(httpx.TransportError):
            client.get(f"{srv.url}/api/models")


def test_file_hashes_are_computed_once_and_cached(repo_dir):
    first = mirror.ServedRepo.from_folder(REPO, repo_dir)
    cache = Path(os.environ["QWENLAB_HOME"]) / "mirror" / "hashes.json"
    entries = json.loads(cache.read_text())
    assert any(k.startswith(str((repo_dir / "model.safetensors").resolve())) for k in entries)
    again = mirror.ServedRepo.from_folder(REPO, repo_dir)
    assert again.commit == first.commit  # the same content gives the same commit id


def test_served_models_accepts_repo_equals_path_and_rejects_unknown(repo_dir):
    assert mirror.served_models([f"my/model={repo_dir}"]) == {"my/model": repo_dir}
    assert mirror.served_models([str(repo_dir)]) == {"local/tiny-model": repo_dir}
    with pytest.raises(mirror.NotServableError, match="qwenlab models"):
        mirror.served_models(["no/such-model"])


def test_the_mini_thinker_is_not_served_and_the_teacher_is_told_to_serve_offline():
    with pytest.raises(mirror.NotServableError, match="serve 'offline' instead"):
        mirror.served_models(["offline-thinker"])


def test_a_handler_subclass_adds_a_route_and_keeps_the_others(repo_dir):
    class WithHealth(mirror.MirrorHandler):
        def reply_for(self, target):
            if target == "/health":
                return Reply(200, {"Content-Type": "text/plain"}, b"ok")
            return super().reply_for(target)

    class HealthMirror(mirror.MirrorServer):
        handler_class = WithHealth

    with HealthMirror({REPO: repo_dir}, api_key="k3mz-7qpa-vx2d") as srv:
        assert httpx.get(f"{srv.url}/health").status_code == 401  # the class code still guards every route
        auth = {"Authorization": "Bearer k3mz-7qpa-vx2d"}
        assert httpx.get(f"{srv.url}/health", headers=auth).text == "ok"
        assert httpx.get(f"{srv.url}/api/models/{REPO}", headers=auth).json()["id"] == REPO


def test_qwenlab_mirror_command_serves_the_stock_client(repo_dir, tmp_path):
    from huggingface_hub import hf_hub_download

    port = _free_port()
    cmd = [sys.executable, "-m", "qwenlab.cli", "mirror", "--port", str(port), "--model", f"{REPO}={repo_dir}"]
    env = {k: v for k, v in os.environ.items() if k != "QWENLAB_API_KEY"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        lines = []
        deadline = time.time() + 60
        while time.time() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if line.startswith("Ctrl+C") or proc.poll() is not None:
                break
        assert f"http://127.0.0.1:{port}" in "".join(lines), "".join(lines)
        got = hf_hub_download(REPO, "model.safetensors", endpoint=f"http://127.0.0.1:{port}",
                              cache_dir=tmp_path / "hf")
        assert sha256(Path(got)) == sha256(repo_dir / "model.safetensors")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_mirror_list_option_prints_what_would_be_served(repo_dir, capsys):
    from qwenlab.cli import main as qwenlab_cli

    assert qwenlab_cli(["mirror", "--list", "--model", f"{REPO}={repo_dir}"]) == 0
    [row] = [line for line in capsys.readouterr().out.splitlines() if line.startswith(REPO)]
    assert row.split() == [REPO, str(repo_dir)]


def test_mirror_shows_what_it_serves_as_a_table(server, repo_dir):
    text = str(server)
    assert text.splitlines()[0] == f"qwenlab mirror at {server.url}"
    [row] = [line.split() for line in text.splitlines() if line.startswith(REPO)]
    assert row[1] == str(len(server.repos[REPO].files)) and row[-1] == str(repo_dir)
    assert f"<td>{REPO}</td>" in server._repr_html_()


def test_a_paused_mirror_answers_503_and_serves_again_when_resumed(server):
    url = f"{server.url}/{REPO}/resolve/main/config.json"
    server.paused = True
    assert httpx.get(url).status_code == 503
    server.paused = False
    assert httpx.get(url).status_code == 200


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- what is served: only named model folders, only their own files ----------------------------------------


def test_mirror_refuses_etc_and_other_folders_that_are_not_model_folders(tmp_path, capsys):
    from qwenlab.cli import main as qwenlab_cli

    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "config.json").write_text("{}")  # a config.json alone is not a model
    (notes / "diary.txt").write_text("private")
    for folder in ("/etc", str(notes)):
        assert qwenlab_cli(["mirror", "--list", "--model", folder]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"qwenlab mirror: {folder} is not a model folder") and err.count("\n") == 1, err
        with pytest.raises(mirror.NotServableError, match="not a model folder"):
            mirror.MirrorServer({"local/x": folder})  # the library refuses it too, before listening


def test_serving_every_model_on_disk_needs_all_models(server, repo_dir, tmp_path, capsys):
    from huggingface_hub import hf_hub_download, snapshot_download

    from qwenlab.cli import main as qwenlab_cli

    cached = Path(snapshot_download(REPO, endpoint=server.url, cache_dir=os.environ["HF_HUB_CACHE"]))
    assert (cached / "model.safetensors").is_symlink()  # the HF cache: links into ../../blobs
    with pytest.raises(mirror.NotServableError, match="all_models=True"):
        mirror.served_models()
    assert qwenlab_cli(["mirror"]) == 1
    assert "--all-models" in capsys.readouterr().err
    assert mirror.served_models(all_models=True) == {REPO: cached}
    assert mirror.served_models([REPO]) == {REPO: cached}  # a name, found through find_local
    assert qwenlab_cli(["mirror", "--all-models", "--list"]) == 0
    assert [REPO, str(cached)] in [line.split() for line in capsys.readouterr().out.splitlines()]
    with mirror.start(all_models=True) as again:  # the cache's links into its blobs folder are served
        got = hf_hub_download(REPO, "model.safetensors", endpoint=again.url, cache_dir=tmp_path / "student")
    assert sha256(Path(got)) == sha256(repo_dir / "model.safetensors")


def test_links_out_of_the_folder_and_dotfiles_are_not_served(repo_dir, tmp_path):
    from huggingface_hub import HfApi

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("the teacher's private file")
    folder = tmp_path / "model"
    shutil.copytree(repo_dir, folder)
    (folder / "leak.txt").symlink_to(outside / "secret.txt")
    (folder / "linked").symlink_to(outside, target_is_directory=True)
    (folder / "alias.json").symlink_to(folder / "config.json")  # a link inside the folder is fine
    (folder / ".git").mkdir()
    (folder / ".git" / "config").write_text("[remote] url = secret")
    (folder / ".env").write_text("TOKEN=secret")
    with mirror.MirrorServer({REPO: folder}) as srv:
        files = set(HfApi(endpoint=srv.url).list_repo_files(REPO))
        assert {"config.json", "model.safetensors", "alias.json"} <= files
        assert not files & {"leak.txt", "linked/secret.txt", ".git/config", ".env", ".qwenlab/secret.txt"}
        for name in ("leak.txt", "linked/secret.txt", ".git/config", ".env"):
            r = httpx.get(f"{srv.url}/{REPO}/resolve/main/{name}")
            assert r.status_code == 404, name
            assert not any(text in r.content for text in (b"private file", b"url = secret", b"TOKEN=secret")), name


def test_a_gguf_folder_serves_only_its_gguf_files(tmp_path):
    from huggingface_hub import HfApi

    folder = tmp_path / "downloads"
    (folder / "sub").mkdir(parents=True)
    (folder / "model-q4_k_m.gguf").write_bytes(b"GGUF" + os.urandom(1000))
    (folder / "README.md").write_text("# GGUF\n")
    (folder / "tax-return.pdf").write_bytes(b"%PDF private")
    (folder / "sub" / "other.gguf").write_bytes(b"GGUF")
    with mirror.MirrorServer({"local/downloads": folder}) as srv:
        assert sorted(HfApi(endpoint=srv.url).list_repo_files("local/downloads")) == ["README.md", "model-q4_k_m.gguf"]


def _raw_get(url: str, path: str) -> tuple[int, bytes]:
    """GET with the path sent exactly as written (httpx and browsers would normalise ``..`` away first)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


@pytest.mark.parametrize("path", [
    "/{repo}/resolve/main/../../../../../etc/passwd",
    "/{repo}/resolve/main/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/{repo}/resolve/main/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/{repo}/resolve/main/..\\..\\..\\config.json",
    "/{repo}/resolve/main/%2e%2e%5c%2e%2e%5cconfig.json",
    "/{repo}/resolve/main/C:%5cWindows%5cwin.ini",
    "/{repo}/resolve/main/tokenizer.json/../.qwenlab/secret.txt",
    "/api/models/{repo}/tree/main/%2e%2e/%2e%2e",
])
def test_request_paths_that_climb_out_are_refused_with_400(server, path):
    status, body = _raw_get(server.url, path.format(repo=REPO))
    assert status == 400, (status, body[:200])
    assert b"root:" not in body and b"state files" not in body


@pytest.mark.parametrize("path", ["/%2e%2e/%2e%2e/etc/passwd", "/{repo}/resolve/main/.qwenlab/secret.txt",
                                  "/{repo}/resolve/main/%2Eqwenlab/secret.txt"])
def test_paths_outside_any_repo_or_hidden_get_404(server, path):
    status, body = _raw_get(server.url, path.format(repo=REPO))
    assert status == 404 and b"root:" not in body and b"state files" not in body


# ---- beyond loopback: the class code -------------------------------------------------------------------------


def test_a_mirror_with_a_class_code_answers_401_without_it_and_serves_with_hf_token(repo_dir, tmp_path,
                                                                                    monkeypatch):
    """Bound to 127.0.0.1 (no traffic leaves this machine), with the key required as off loopback."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError

    code = mirror.class_code()
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with mirror.MirrorServer({REPO: repo_dir}, api_key=code) as srv:
        with pytest.raises(HfHubHTTPError) as err:
            hf_hub_download(REPO, "model.safetensors", endpoint=srv.url, cache_dir=tmp_path / "no-key")
        assert err.value.response.status_code == 401 and "HF_TOKEN=<class code>" in str(err.value)
        with pytest.raises(HfHubHTTPError, match="401"):
            hf_hub_download(REPO, "config.json", endpoint=srv.url, cache_dir=tmp_path / "wrong", token="wrong-code")
        assert httpx.get(f"{srv.url}/api/models").status_code == 401  # the list of models is not shown either
        monkeypatch.setenv("HF_TOKEN", code)  # what a student sets
        got = hf_hub_download(REPO, "model.safetensors", endpoint=srv.url, cache_dir=tmp_path / "student")
        assert sha256(Path(got)) == sha256(repo_dir / "model.safetensors")
        assert f"HF_TOKEN={code}" in str(srv)  # the teacher's table shows the code
    assert [e.status for e in srv.requests("model.safetensors")][:1] == [401]


def test_off_loopback_a_class_code_is_generated_and_loopback_needs_none():
    assert mirror.is_loopback("127.0.0.1") and mirror.is_loopback("localhost") and mirror.is_loopback("::1")
    assert not mirror.is_loopback("0.0.0.0") and not mirror.is_loopback("") and not mirror.is_loopback("192.168.1.5")
    codes = {mirror.class_code() for _ in range(20)}
    assert len(codes) == 20 and all(len(c) == 14 and c.count("-") == 2 for c in codes)
    with mirror.MirrorServer({}) as srv:
        assert srv.api_key is None and httpx.get(f"{srv.url}/api/models").status_code == 200
    # what MirrorServer asks before it listens (a test never listens beyond loopback): off loopback a code always
    for host in ("0.0.0.0", "::", "192.168.1.5", ""):
        code = mirror.required_code(host, None)
        assert code is not None and len(code) == 14 and code != mirror.required_code(host, None)
        assert mirror.required_code(host, "teachers-code") == "teachers-code"
    assert mirror.required_code("127.0.0.1", None) is None and mirror.required_code("::1", "c") == "c"


def test_qwenlab_mirror_command_prints_the_class_code_and_keeps_it_out_of_argv(repo_dir, tmp_path, monkeypatch):
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError

    code = mirror.class_code()
    port = _free_port()
    cmd = [sys.executable, "-m", "qwenlab.cli", "mirror", "--port", str(port), "--model", f"{REPO}={repo_dir}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "QWENLAB_API_KEY": code})
    try:
        banner = _read_banner(proc)
        assert f"Class code: {code}" in banner and f"HF_TOKEN={code} HF_ENDPOINT=http://127.0.0.1:{port}" in banner
        assert code not in Path(f"/proc/{proc.pid}/cmdline").read_text()  # `ps` does not show it
        monkeypatch.delenv("HF_TOKEN", raising=False)
        with pytest.raises(HfHubHTTPError, match="401"):
            hf_hub_download(REPO, "config.json", endpoint=f"http://127.0.0.1:{port}", cache_dir=tmp_path / "a")
        got = hf_hub_download(REPO, "config.json", endpoint=f"http://127.0.0.1:{port}", cache_dir=tmp_path / "b",
                              token=code)
        assert Path(got).read_bytes() == (repo_dir / "config.json").read_bytes()
    finally:
        proc.terminate()
        out = proc.communicate(timeout=10)[0]
    assert "401" in out and "no or wrong class code" in out  # the teacher sees refused requests


def _read_banner(proc: subprocess.Popen) -> str:
    lines = []
    deadline = time.time() + 60
    while time.time() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if line.startswith("Ctrl+C") or proc.poll() is not None:
            break
    return "".join(lines)


def test_a_missing_file_with_a_chinese_name_gets_a_404_that_names_it(server):
    r = httpx.get(f"{server.url}/{REPO}/resolve/main/权重.safetensors")
    assert r.status_code == 404 and "权重.safetensors" in r.json()["error"]
    assert "\\u6743" in r.headers["X-Error-Message"]  # headers are Latin-1: the name goes as escapes there
