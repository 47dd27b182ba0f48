"""qwenlab.download / fetch against real Hub-protocol servers on 127.0.0.1, with the real huggingface_hub client.

Covers: a fresh download, resuming after a dropped connection (within one call and on the next call),
corrupted and truncated files, falling back to the next source, unknown repos, the free-disk check,
listing and deleting models on disk, and load_model downloading a missing catalog model.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import pytest

from qwenlab import hub, mirror
from qwenlab.catalog import UnknownModelError
from qwenlab.cli import main as qwenlab_cli
from qwenlab.models import ModelNotAvailableError
from qwenlab.paths import models_dir
from tests.conftest import PROBE
from tests.test_mirror import (  # noqa: F401  (fixtures re-used)
    REPO, MiB, isolated_home, make_repo, repo_dir, server, sha256,
)

WEIGHTS = "model.safetensors"


def dying_mirror(repo_dir: Path) -> mirror.MirrorServer:
    """A mirror that cuts the first file response mid-way and then answers 503 to everything (it died)."""
    srv = mirror.MirrorServer({REPO: repo_dir}, drop_after=24 * MiB)

    def pause_after_a_drop(entry: mirror.LogEntry) -> None:
        if entry.dropped:
            srv.paused = True

    srv.on_request = pause_after_a_drop
    return srv


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens there once the socket is closed


def assert_same_files(folder: Path, repo_dir: Path) -> None:
    for name in (WEIGHTS, "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        assert sha256(folder / name) == sha256(repo_dir / name), name


def test_fresh_download_gets_only_the_needed_files(server, repo_dir):
    report = hub.fetch(REPO, source=server.url, progress=False)
    folder = models_dir() / "test--tiny-model"
    assert report.folder == folder and report.source == "mirror" and report.url == server.url
    assert_same_files(folder, repo_dir)
    assert not (folder / "pytorch_model.bin").exists() and not server.requests("pytorch_model.bin")
    assert not (folder / "README.md").exists()
    assert {f.action for f in report.files} == {"downloaded"}
    assert report.bytes_fetched == sum((repo_dir / f.path).stat().st_size for f in report.files)
    assert hub.folder_weights(folder) == "safetensors"
    assert hub.find_local([REPO]) == (folder, "qwenlab cache")
    assert hub.download(REPO, source=server.url, progress=False) == folder  # same folder, nothing re-fetched


def test_connection_dropped_mid_file_resumes_in_the_same_call(repo_dir):
    with mirror.MirrorServer({REPO: repo_dir}, drop_after=24 * MiB) as flaky:
        report = hub.fetch(REPO, source=flaky.url, progress=False)
        gets = flaky.requests(WEIGHTS, "GET")
    assert_same_files(report.folder, repo_dir)
    assert gets[0].dropped and gets[0].range_start is None
    assert len(gets) == 2 and gets[1].range_start > 0 and not gets[1].dropped
    size = (repo_dir / WEIGHTS).stat().st_size
    assert gets[1].bytes_sent == size - gets[1].range_start  # only the missing tail came again


def test_next_call_resumes_and_never_refetches_bytes_on_disk(repo_dir):
    size = (repo_dir / WEIGHTS).stat().st_size
    with dying_mirror(repo_dir) as dying:
        with pytest.raises(hub.DownloadError) as err:
            hub.fetch(REPO, source=dying.url, progress=False)
    folder = models_dir() / "test--tiny-model"
    partial = folder / ".qwenlab" / "partial" / f"{WEIGHTS}.part"
    message = str(err.value)
    assert "\n" not in message and "No file of yours" in message
    assert f"partial files of {WEIGHTS} wait in {partial.parent} and resume when you run the same command" in message
    on_disk = partial.stat().st_size
    assert 0 < on_disk < size
    assert not (folder / "config.json").exists() and hub.folder_weights(folder) is None  # never looks complete
    [entry] = [m for m in hub.list_models() if m.repo_id == REPO]
    assert not entry.complete and "resume" in entry.detail

    with mirror.MirrorServer({REPO: repo_dir}) as healthy:
        report = hub.fetch(REPO, source=healthy.url, progress=False)
        [get] = healthy.requests(WEIGHTS, "GET")
    assert (get.range_start, get.bytes_sent) == (on_disk, size - on_disk)
    [weights] = [f for f in report.files if f.path == WEIGHTS]
    assert (weights.action, weights.resumed_from, weights.fetched_bytes) == ("resumed", on_disk, size - on_disk)
    assert_same_files(folder, repo_dir)
    assert not partial.exists()


def test_corrupted_file_is_detected_and_refetched(server, repo_dir):
    folder = hub.download(REPO, source=server.url, progress=False)
    weights = folder / WEIGHTS
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, same size
    weights.write_bytes(bytes(data))
    report = hub.fetch(REPO, source=server.url, progress=False)
    actions = {f.path: f.action for f in report.files}
    assert actions[WEIGHTS] == "refetched"
    assert actions["tokenizer.json"] == "kept"
    assert server.requests(WEIGHTS, "GET")[-1].range_start is None  # fetched whole, not resumed onto bad bytes
    assert_same_files(folder, repo_dir)


def test_truncated_file_is_never_reported_complete(server, repo_dir):
    folder = hub.download(REPO, source=server.url, progress=False)
    weights = folder / WEIGHTS
    with open(weights, "r+b") as f:
        f.truncate(weights.stat().st_size // 2)
    assert hub.folder_weights(folder) is None
    assert hub.find_local([REPO]) is None
    assert not [m for m in hub.list_models() if m.repo_id == REPO][0].complete
    report = hub.fetch(REPO, source=server.url, progress=False)
    assert {f.path: f.action for f in report.files}[WEIGHTS] == "refetched"
    assert hub.folder_weights(folder) == "safetensors"


def test_first_source_unreachable_falls_back_to_the_next(server, repo_dir):
    dead = closed_port_url()
    report = hub.fetch(REPO, source=[dead, server.url], progress=False)
    assert [(a.url, a.outcome) for a in report.attempts] == [(dead, "unreachable"), (server.url, "used")]
    assert report.url == server.url
    assert "unreachable" in str(report) and server.url in str(report)
    assert_same_files(report.folder, repo_dir)


def test_source_failing_mid_way_hands_over_and_the_next_resumes(repo_dir):
    size = (repo_dir / WEIGHTS).stat().st_size
    with dying_mirror(repo_dir) as dying, \
            mirror.MirrorServer({REPO: repo_dir}) as healthy:
        report = hub.fetch(REPO, source=[dying.url, healthy.url], progress=False)
        [get] = healthy.requests(WEIGHTS, "GET")
    assert [(a.url, a.outcome) for a in report.attempts] == [(dying.url, "failed"), (healthy.url, "used")]
    assert 0 < get.range_start < size  # the second source continued the first one's partial file
    assert_same_files(report.folder, repo_dir)


def test_unknown_repo_names_the_closest_catalog_ids(server):
    with pytest.raises(UnknownModelError) as err:
        hub.fetch("Qwen/Qwen-0.5B", source=server.url, progress=False)
    assert isinstance(err.value, hub.RepoNotFoundError)
    assert "Qwen/Qwen2.5-0.5B-Instruct" in str(err.value) and "not found" in str(err.value)
    with pytest.raises(UnknownModelError, match="Did you mean"):
        hub.fetch("qwen3-tiny", source=server.url, progress=False)  # not even a repo id: no request made


def test_not_enough_disk_fails_before_any_byte_is_written(server):
    with pytest.raises(hub.NotEnoughDiskError, match="needs .* GB more") as err:
        hub.fetch(REPO, source=server.url, progress=False, keep_free=10**18)
    assert "local_dir" in str(err.value)
    assert not (models_dir() / "test--tiny-model").exists()
    assert not server.requests("/resolve/")


def test_a_complete_download_is_returned_when_no_source_answers(server):
    folder = hub.download(REPO, source=server.url, progress=False)
    report = hub.fetch(REPO, source=closed_port_url(), progress=False)
    assert report.folder == folder and report.source == "on disk (sizes and hashes checked)"
    assert {f.action for f in report.files} == {"kept"} and report.bytes_fetched == 0

    weights = folder / WEIGHTS  # a byte flipped in place, size and mtime as before: not "kept" (issue #19, item 2)
    st = weights.stat()
    data = bytearray(weights.read_bytes())
    data[len(data) // 3] ^= 0x01
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(hub.DownloadError) as err:
        hub.fetch(REPO, source=closed_port_url(), progress=False)
    assert str(err.value).startswith(f"{WEIGHTS} in {folder} differs from what was downloaded (size or hash")
    assert "no source can send" in str(err.value) and weights.read_bytes() == bytes(data)  # named, not deleted
    report = hub.fetch(REPO, source=server.url, progress=False)  # a source again: replaced by a verified copy
    assert {f.path: f.action for f in report.files}[WEIGHTS] == "refetched"


def test_no_reachable_source_fails_fast_with_what_to_do():
    with pytest.raises(ModelNotAvailableError, match="offline") as err:
        hub.fetch("Qwen/Qwen3-0.6B", source=[closed_port_url(), closed_port_url()], progress=False)
    assert "connection refused" in str(err.value)


def test_hf_hub_offline_blocks_downloads_and_load_model_says_why(monkeypatch):
    import qwenlab

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError, match="HF_HUB_OFFLINE=1") as err:
        qwenlab.load_model("Qwen/Qwen3-0.6B")
    assert "offline" in str(err.value)


def test_list_models_covers_every_cache_and_delete_removes_only_one(server, repo_dir, tmp_path):
    from huggingface_hub import snapshot_download

    hub.download(REPO, source=server.url, progress=False)
    snapshot_download(REPO, endpoint=server.url, cache_dir=os.environ["HF_HUB_CACHE"],
                      allow_patterns=["*.json", "*.safetensors"])
    ms_folder = Path(os.environ["MODELSCOPE_CACHE"]) / "models" / "Qwen" / "Qwen2___5-0___5B-Instruct"
    shutil.copytree(repo_dir, ms_folder, ignore=shutil.ignore_patterns(".qwenlab"))
    models = hub.list_models()
    where = {(m.name, m.where) for m in models}
    assert where == {(REPO, "qwenlab"), (REPO, "Hugging Face cache"),
                     ("Qwen/Qwen2.5-0.5B-Instruct", "ModelScope cache")}
    assert all(m.complete and m.size_bytes > 30 * MiB for m in models)
    assert REPO in str(models) and "<table>" in models._repr_html_()

    with pytest.raises(ValueError, match="matches 2 models"):
        hub.delete_model(REPO)
    with pytest.raises(FileNotFoundError, match="nothing was deleted"):
        hub.delete_model(str(tmp_path))  # a real folder, but not a listed model
    assert len(hub.list_models()) == 3

    gone = hub.delete_model(REPO, where="qwenlab")
    assert not gone.path.exists()
    hub.delete_model(REPO, where="Hugging Face cache")
    assert [m.where for m in hub.list_models()] == ["ModelScope cache"]
    assert repo_dir.exists()


def test_cli_download_and_models(server, capsys):
    assert qwenlab_cli(["download", REPO, "--source", server.url, "--quiet", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["url"] == server.url and report["repo_id"] == REPO
    assert qwenlab_cli(["models"]) == 0
    table = capsys.readouterr().out
    assert REPO in table and "complete" in table and str(models_dir()) in table
    assert qwenlab_cli(["models", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(m["name"], m["complete"]) for m in listed] == [(REPO, True)]
    assert qwenlab_cli(["models", "--delete", REPO, "--yes"]) == 0
    assert f"deleted {REPO}" in capsys.readouterr().out
    assert hub.list_models() == []
    assert qwenlab_cli(["models"]) == 0 and "no models on disk" in capsys.readouterr().out
    assert qwenlab_cli(["download", "Qwen/Qwen-0.5B", "--source", server.url, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("qwenlab download: ") and "Qwen/Qwen2.5-0.5B-Instruct" in err


def test_load_model_downloads_a_missing_catalog_model(tiny_dir, monkeypatch):
    """Plumbing only: the mirror serves the tiny random Qwen3 under the catalog id, HF_ENDPOINT points to it."""
    import qwenlab

    with mirror.MirrorServer({"Qwen/Qwen3-0.6B": tiny_dir}) as srv:
        monkeypatch.setenv("HF_ENDPOINT", srv.url)
        model, tokenizer = qwenlab.load_model("Qwen/Qwen3-0.6B", device="cpu", dtype="float32")
    summary = qwenlab.summarize(model)
    assert summary.found_in == "downloaded"
    assert Path(summary.folder) == models_dir() / "Qwen--Qwen3-0.6B"
    assert srv.requests("model.safetensors", "GET")


@pytest.mark.real_model
@pytest.mark.parametrize("name", ["offline", "offline-thinker"])
def test_the_offline_models_are_built_here_not_downloaded(name, offline_dir, monkeypatch, capsys):
    """Both offline models come from the offline model's PyPI packages: no source is asked, even a dead one."""
    assert offline_dir.parent.name == "offline"
    monkeypatch.setenv("QWENLAB_HOME", str(offline_dir.parent.parent))  # where the session built it
    report = hub.fetch(name, source=closed_port_url(), progress=False)
    assert report.folder == offline_dir and report.source == "offline model (PyPI)" and report.attempts == []
    assert qwenlab_cli(["download", name, "--source", closed_port_url(), "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["folder"] == str(offline_dir)


@pytest.mark.real_model
def test_offline_model_through_the_mirror_answers_the_probe(offline_dir):
    import qwenlab

    with mirror.start({mirror.OFFLINE_REPO_ID: offline_dir}) as srv:
        report = hub.fetch(mirror.OFFLINE_REPO_ID, source=srv.url, progress=False)
    try:
        assert report.bytes_fetched > 1e9
        model, tokenizer = qwenlab.load_model(report.folder, device="cpu", dtype="float32")
        answer = qwenlab.generate(model, tokenizer, PROBE, do_sample=False, max_new_tokens=5).text
    finally:
        shutil.rmtree(report.folder)  # 1.3 GB: pytest keeps old temporary folders around
    print(f"downloaded {report.bytes_fetched / 1e9:.2f} GB in {report.seconds:.1f} s; answer: {answer!r}")
    assert "paris" in answer.lower()


GGUF_REPO = "Qwen/Qwen2.5-0.5B-Instruct-GGUF"


def make_gguf_repo(folder: Path, wanted: bool = True) -> Path:
    """A GGUF repo: one file per quantization level (qwenlab takes only the catalog's one) and a README."""
    folder.mkdir(parents=True)
    if wanted:
        (folder / "qwen2.5-0.5b-instruct-q4_k_m.gguf").write_bytes(b"GGUF" + os.urandom(2 * MiB))
    (folder / "qwen2.5-0.5b-instruct-q8_0.gguf").write_bytes(b"GGUF" + os.urandom(3 * MiB))
    (folder / "README.md").write_text("# GGUF\n")
    return folder


def test_a_gguf_repo_downloads_only_the_catalog_file_and_resolves_to_it(tmp_path):
    from qwenlab.models import resolve

    repo = make_gguf_repo(tmp_path / "gguf")
    with mirror.MirrorServer({GGUF_REPO: repo}) as srv:
        report = hub.fetch(GGUF_REPO, source=srv.url, progress=False)
        assert not srv.requests("qwen2.5-0.5b-instruct-q8_0.gguf", "GET")
    assert [f.path for f in report.files] == ["qwen2.5-0.5b-instruct-q4_k_m.gguf"]
    folder = models_dir() / "Qwen--Qwen2.5-0.5B-Instruct-GGUF"
    assert sha256(folder / "qwen2.5-0.5b-instruct-q4_k_m.gguf") == sha256(repo / "qwen2.5-0.5b-instruct-q4_k_m.gguf")
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == ["qwen2.5-0.5b-instruct-q4_k_m.gguf"]
    assert hub.folder_weights(folder) == "gguf"
    where = resolve(GGUF_REPO, download=False)  # found on disk: no source needed
    assert (where.folder, where.gguf_file, where.found_in) == (folder, "qwen2.5-0.5b-instruct-q4_k_m.gguf",
                                                               "qwenlab cache")
    assert [m.name for m in hub.list_models() if m.complete] == [GGUF_REPO]


def test_a_gguf_repo_without_the_catalog_file_says_what_to_do(tmp_path):
    repo = make_gguf_repo(tmp_path / "gguf", wanted=False)
    with mirror.MirrorServer({GGUF_REPO: repo}) as srv, pytest.raises(hub.DownloadError) as err:
        hub.fetch(GGUF_REPO, source=srv.url, progress=False)
    assert "qwen2.5-0.5b-instruct-q4_k_m.gguf" in str(err.value) and "load_model('file.gguf')" in str(err.value)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a CUDA GPU")
def test_a_gptq_repo_on_a_cpu_fails_before_any_download_and_names_the_cpu_options(monkeypatch):
    import qwenlab
    from qwenlab.models import GpuRequiredError

    monkeypatch.setenv("HF_ENDPOINT", closed_port_url())
    with pytest.raises(GpuRequiredError) as err:
        qwenlab.load_model("Qwen/Qwen2.5-0.5B-Instruct-GPTQ-Int4")
    assert "quantize(model, 'fast')" in str(err.value) and "Qwen/Qwen2.5-0.5B-Instruct-GGUF" in str(err.value)
    assert not (models_dir() / "Qwen--Qwen2.5-0.5B-Instruct-GPTQ-Int4").exists()


def test_download_through_a_mirror_that_asks_for_a_class_code_sends_hf_token(repo_dir, tmp_path, monkeypatch,
                                                                              isolated_home):
    """What a student off loopback does: HF_TOKEN=<class code> qwenlab download MODEL --source URL."""
    code = mirror.class_code()
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with mirror.MirrorServer({REPO: repo_dir}, api_key=code) as srv:
        with pytest.raises(hub.DownloadError, match="401"):
            hub.download(REPO, source=srv.url, local_dir=tmp_path / "no-code", progress=False)
        monkeypatch.setenv("HF_TOKEN", code)
        folder = hub.download(REPO, source=srv.url, local_dir=tmp_path / "with-code", progress=False)
    assert sha256(folder / WEIGHTS) == sha256(repo_dir / WEIGHTS)
    assert hub.Source("huggingface", hub.SOURCES["huggingface"]).class_code is None  # never sent to a public hub
