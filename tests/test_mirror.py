"""The classroom mirror speaks the Hub protocol well enough for the stock huggingface_hub client.

Every test talks to a real server on 127.0.0.1 with real clients (httpx, huggingface_hub, the `hf` CLI).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from qwenlab import mirror

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
    with pytest.raises(FileNotFoundError, match="qwenlab models"):
        mirror.served_models(["no/such-model"])


def test_qwenlab_mirror_command_serves_the_stock_client(repo_dir, tmp_path):
    from huggingface_hub import hf_hub_download

    port = _free_port()
    cmd = [sys.executable, "-m", "qwenlab.cli", "mirror", "--port", str(port), "--model", f"{REPO}={repo_dir}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())
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
    assert mirror.cli(["--list", "--model", f"{REPO}={repo_dir}"]) == 0
    assert REPO in capsys.readouterr().out


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
