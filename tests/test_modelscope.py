"""ModelScope downloads through the real ``modelscope`` client, against a stand-in server on 127.0.0.1.

The client is pointed at the server only through its own settings: ``$MODELSCOPE_ENDPOINT`` (the
endpoint), ``$MODELSCOPE_CACHE`` and ``$MODELSCOPE_HOME`` (so nothing lands in the real home).
``modelscope_hub`` builds its process-wide default config from the environment once, so the fixture
clears it with the client's own ``set_default_config(None)`` before and after each test. No function of
the client is replaced: every byte goes through its listing, resume, size and SHA-256 checks.

What the server speaks, and why those endpoints: see ``tests/modelscope_server.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.modelscope_server import COMMIT, REPO_ID, ModelScopeServer, make_model_repo

WEIGHTS = "model.safetensors"
LISTING = f"/api/v1/models/{REPO_ID}/repo/files"


@pytest.fixture(scope="module")
def repo_dir(tmp_path_factory) -> Path:
    return make_model_repo(tmp_path_factory.mktemp("modelscope-repo"))


@pytest.fixture
def server(repo_dir, tmp_path, monkeypatch):
    """The stand-in server, with the real client configured (through its environment) to use it."""
    from modelscope_hub import set_default_config

    with ModelScopeServer({REPO_ID: repo_dir}) as srv:
        monkeypatch.setenv("MODELSCOPE_ENDPOINT", srv.url)
        monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "modelscope-cache"))
        monkeypatch.setenv("MODELSCOPE_HOME", str(tmp_path / "modelscope-home"))
        monkeypatch.setenv("QWENLAB_HOME", str(tmp_path / "qwenlab-home"))
        for var in ("NO_PROXY", "no_proxy"):  # a proxy in the environment must not catch loopback
            monkeypatch.setenv(var, "127.0.0.1,localhost")
        set_default_config(None)
        yield srv
        set_default_config(None)


def snapshot(dest: Path | None = None, **kwargs) -> Path:
    from modelscope import snapshot_download

    return Path(snapshot_download(REPO_ID, local_dir=str(dest) if dest else None, **kwargs))


def assert_same_files(folder: Path, repo_dir: Path, names: list[str] | None = None) -> None:
    names = names or sorted(p.name for p in repo_dir.iterdir())
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == sorted(names)
    for name in names:
        assert (folder / name).read_bytes() == (repo_dir / name).read_bytes(), name


def test_snapshot_download_lands_every_file_byte_equal(server, repo_dir, tmp_path):
    out = snapshot(tmp_path / "out")

    assert out == tmp_path / "out"
    assert_same_files(out, repo_dir)
    assert server.log[0].path == LISTING and server.log[0].params["Revision"] == "master"
    for name in (p.name for p in repo_dir.iterdir()):
        (request,) = server.downloads(name)
        assert (request.status, request.range, request.sent) == (200, None, (repo_dir / name).stat().st_size)


def test_default_location_is_modelscopes_cache_layout(server, repo_dir, tmp_path):
    out = snapshot()

    owner, name = REPO_ID.split("/")
    assert out == tmp_path / "modelscope-cache" / "models" / f"{owner}--{name}" / "snapshots" / "master"
    assert_same_files(out, repo_dir)


def test_connection_cut_mid_file_resumes_with_a_range_request(server, repo_dir, tmp_path):
    size = (repo_dir / WEIGHTS).stat().st_size
    server.drop_after[WEIGHTS] = 1_500_000

    out = snapshot(tmp_path / "out")

    first, second = server.downloads(WEIGHTS)
    assert (first.status, first.range, first.sent) == (200, None, 1_500_000)
    assert (second.status, second.range, second.sent) == (206, "bytes=1500000-", size - 1_500_000)
    assert_same_files(out, repo_dir)
    assert not list(out.glob("*.incomplete"))


def test_partial_file_from_an_interrupted_run_is_resumed_not_restarted(server, repo_dir, tmp_path):
    data = (repo_dir / WEIGHTS).read_bytes()
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{WEIGHTS}.incomplete").write_bytes(data[:1_000_000])  # what a killed download leaves

    snapshot(out)

    (request,) = server.downloads(WEIGHTS)
    assert (request.status, request.range, request.sent) == (206, "bytes=1000000-", len(data) - 1_000_000)
    assert_same_files(out, repo_dir)


def test_partial_file_with_wrong_bytes_fails_the_hash_and_is_fetched_again(server, repo_dir, tmp_path):
    data = (repo_dir / WEIGHTS).read_bytes()
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{WEIGHTS}.incomplete").write_bytes(bytes(1_000_000))  # right length, wrong bytes

    snapshot(out)

    resumed, whole = server.downloads(WEIGHTS)
    assert resumed.range == "bytes=1000000-"  # resuming is tried first; the SHA-256 covers the old prefix
    assert (whole.status, whole.range, whole.sent) == (200, None, len(data))
    assert_same_files(out, repo_dir)


def test_corrupted_answer_is_rejected_and_fetched_again(server, repo_dir, tmp_path):
    server.corrupt["tokenizer.json"] = 1

    out = snapshot(tmp_path / "out")

    assert [r.status for r in server.downloads("tokenizer.json")] == [200, 200]
    assert_same_files(out, repo_dir)


def test_file_that_stays_corrupted_fails_and_never_looks_complete(server, repo_dir, tmp_path):
    from modelscope_hub.errors import FileDownloadError, FileIntegrityError

    server.corrupt["tokenizer.json"] = 100
    out = tmp_path / "out"

    with pytest.raises(FileDownloadError) as caught:
        snapshot(out)

    assert list(caught.value.failed_files) == ["tokenizer.json"]
    assert isinstance(caught.value.failed_files["tokenizer.json"], FileIntegrityError)
    assert len(server.downloads("tokenizer.json")) == 3  # the client's hash-retry budget
    assert not (out / "tokenizer.json").exists() and not list(out.glob("*.incomplete"))
    assert_same_files(out, repo_dir, [p.name for p in repo_dir.iterdir() if p.name != "tokenizer.json"])


def test_corrupted_file_on_disk_is_found_by_its_hash_and_replaced(server, repo_dir, tmp_path):
    out = snapshot(tmp_path / "out")
    damaged = bytearray((out / WEIGHTS).read_bytes())
    damaged[len(damaged) // 3] ^= 0x01  # same size: only the SHA-256 can tell
    (out / WEIGHTS).write_bytes(bytes(damaged))
    server.log.clear()

    snapshot(out)

    assert [r.file for r in server.log if r.file] == [WEIGHTS]  # the intact files were kept
    assert_same_files(out, repo_dir)


# ---- through qwenlab.hub.fetch ------------------------------------------------------------------------
# qwenlab's "modelscope" source is $MODELSCOPE_ENDPOINT when set (the fixture sets it): qwenlab probes that
# URL and hands the same URL to the client as its endpoint.


def test_qwenlab_fetch_from_modelscope_survives_a_cut_and_a_corrupted_answer(server, repo_dir, tmp_path):
    from qwenlab import hub

    server.drop_after[WEIGHTS] = 1_500_000
    server.corrupt["tokenizer.json"] = 1
    folder = tmp_path / "model"

    report = hub.fetch(REPO_ID, source="modelscope", local_dir=folder, progress=False, keep_free=0)

    assert report.source == "modelscope" and report.url == server.url
    needed = [p.name for p in repo_dir.iterdir() if p.name != "README.md"]
    assert sorted(f.path for f in report.files) == sorted(needed)
    assert_same_files(folder, repo_dir, needed)
    assert [r.range for r in server.downloads(WEIGHTS)] == [None, "bytes=1500000-"]
    assert len(server.downloads("tokenizer.json")) == 2
    assert [r.file for r in server.log if r.file][-1] == "config.json"  # written last
    assert hub.folder_weights(folder) == "safetensors"


def test_qwenlab_fetch_from_modelscope_replaces_a_same_size_corrupted_file(server, repo_dir, tmp_path):
    """A file qwenlab wrote, damaged in place with its size and mtime kept: the listed SHA-256 finds it."""
    import os

    from qwenlab import hub

    folder = tmp_path / "model"
    hub.fetch(REPO_ID, source="modelscope", local_dir=folder, progress=False, keep_free=0)
    tokenizer = folder / "tokenizer.json"
    st = tokenizer.stat()
    damaged = bytearray(tokenizer.read_bytes())
    damaged[10] ^= 0x01
    tokenizer.write_bytes(bytes(damaged))
    os.utime(tokenizer, ns=(st.st_atime_ns, st.st_mtime_ns))
    server.log.clear()

    report = hub.fetch(REPO_ID, source="modelscope", local_dir=folder, progress=False, keep_free=0)

    actions = {f.path: f.action for f in report.files}
    assert actions["tokenizer.json"] == "refetched" and actions[WEIGHTS] == "kept"
    assert [r.file for r in server.log if r.file] == ["tokenizer.json"]  # nothing else fetched again
    assert tokenizer.read_bytes() == (repo_dir / "tokenizer.json").read_bytes()
    assert report.commit == COMMIT


def test_find_local_sees_a_model_the_modelscope_client_downloaded(server, repo_dir):
    from qwenlab import hub

    folder = snapshot()

    assert hub.find_local([REPO_ID], modelscope_ids=[REPO_ID]) == (folder, "ModelScope cache")


def test_qwenlab_fetch_from_modelscope_resumes_what_an_earlier_run_left(server, repo_dir, tmp_path):
    from qwenlab import hub
    from qwenlab.ondisk import staging_dir

    folder = tmp_path / "model"
    data = (repo_dir / WEIGHTS).read_bytes()
    staging = staging_dir(folder)
    staging.mkdir(parents=True)
    (staging / f"{WEIGHTS}.incomplete").write_bytes(data[:1_000_000])  # a run killed mid-file

    report = hub.fetch(REPO_ID, source="modelscope", local_dir=folder, progress=False, keep_free=0)

    (request,) = server.downloads(WEIGHTS)
    assert (request.range, request.sent) == ("bytes=1000000-", len(data) - 1_000_000)
    [weights] = [f for f in report.files if f.path == WEIGHTS]
    assert (weights.action, weights.resumed_from, weights.fetched_bytes) == ("resumed", 1_000_000,
                                                                             len(data) - 1_000_000)
    assert (folder / WEIGHTS).read_bytes() == data and not staging.exists()
