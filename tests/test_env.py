"""qwenlab.env: the environment report (`qwenlab doctor`), its advice, and the model recommendation."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from qwenlab import env
from tests.test_mirror import isolated_home  # noqa: F401  (autouse: fresh QWENLAB_HOME and caches)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def silent_server():
    """A TCP server on 127.0.0.1 that accepts connections and never answers (a hub that hangs)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held = []
    stop = threading.Event()

    def accept():
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    sock.close()


def test_version_tuple_orders_versions_as_numbers():
    assert env.version_tuple("4.51.3") == (4, 51, 3)
    assert env.version_tuple("2.13.0+cpu") == (2, 13, 0)
    assert env.version_tuple("5.0.0rc1") == (5, 0, 0)
    assert env.version_tuple("4.9") < env.version_tuple("4.51") < env.version_tuple("5.0")
    assert env.version_tuple(None) == ()


def test_report_covers_the_machine_and_flags_unreachable_hubs_with_advice():
    sources = {"huggingface": closed_port_url(), "hf-mirror": closed_port_url(), "modelscope": closed_port_url()}
    rep = env.report(timeout=1.0, sources=sources)
    names = [c.name for c in rep.checks]
    for expected in ("OS", "Python", "torch", "CUDA", "CPU", "CPU bf16", "RAM", "free disk", "transformers",
                     "huggingface_hub", "modelscope", "accelerate", "ipywidgets", "jupyterlab", "HF_ENDPOINT",
                     "HF_HOME", "HF_HUB_OFFLINE", "MODELSCOPE_CACHE", "recommended model"):
        assert expected in names, expected
    for hub_name in sources:
        check = rep.get(f"reach {hub_name}")
        assert check.status == "WARN" and check.value.startswith(sources[hub_name]) and check.advice
    assert rep.get("model hubs").status == "WARN" and "offline" in rep.get("model hubs").advice
    assert rep.recommendation.model == "offline"  # nothing reachable, nothing on disk (fresh QWENLAB_HOME)
    assert all(c.status in ("PASS", "WARN", "FAIL") for c in rep.checks)
    assert all(c.advice for c in rep.checks if c.status != "PASS"), "every WARN/FAIL says what to do"


def test_report_renders_as_text_html_and_json():
    rep = env.report(probe=False)
    text = str(rep)
    assert "[PASS] Python" in text
    html = rep._repr_html_()
    assert html.count("<tr>") == len(rep.checks) + 1 and "推荐" in html
    data = json.loads(rep.to_json())
    assert [c["name"] for c in data["checks"]] == [c.name for c in rep.checks]
    assert data["recommendation"]["model"] == rep.recommendation.model


def test_hubs_are_probed_in_parallel(silent_server):
    import httpx  # noqa: F401  (imported before timing: the first import is slow on a loaded machine)

    from qwenlab import hub

    start = time.perf_counter()
    probes = hub.probe(timeout=1.0, sources={f"hang{i}": silent_server for i in range(3)})
    elapsed = time.perf_counter() - start
    print(f"3 hanging hubs probed in {elapsed:.2f} s with a 1 s timeout each")
    assert [p.ok for p in probes] == [False] * 3 and all("1 s" in p.detail for p in probes)
    assert elapsed < 2.5, "three 1 s timeouts one after the other would take 3 s"


def test_env_vars_get_advice(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://192.168.1.10:8090")
    monkeypatch.delenv("HF_HUB_DISABLE_XET", raising=False)
    checks = {c.name: c for c in env._env_checks()}
    assert checks["HF_HUB_OFFLINE"].status == "WARN" and "unset" in checks["HF_HUB_OFFLINE"].advice
    assert checks["HF_ENDPOINT"].status == "WARN" and "HF_HUB_DISABLE_XET=1" in checks["HF_ENDPOINT"].advice


def test_old_or_missing_packages_get_advice():
    old = {c.name: c for c in env._package_checks(lambda name: "4.40.0" if name == "transformers" else None)}
    assert old["transformers"].status == "FAIL" and "KeyError: 'qwen3'" in old["transformers"].advice
    assert old["modelscope"].status == "WARN" and "pip install" in old["modelscope"].advice
    current = env._package_checks()
    assert {c.name for c in current} == {name for name, *_ in env._PACKAGES}


@pytest.mark.parametrize(
    "ram_gb, bf16, downloadable, on_disk, model, dtype",
    [
        (16, False, True, set(), "Qwen/Qwen3-0.6B", "float32"),
        (16, True, True, set(), "Qwen/Qwen3-0.6B", "bfloat16"),
        (3.5, False, True, set(), "Qwen/Qwen2.5-0.5B-Instruct", "float32"),  # Qwen3 fp32 needs ~4.1 GB
        (3.5, True, True, set(), "Qwen/Qwen3-0.6B", "bfloat16"),
        (16, False, False, set(), "offline", "float32"),
        (16, False, False, {"Qwen/Qwen2.5-0.5B-Instruct"}, "Qwen/Qwen2.5-0.5B-Instruct", "float32"),
        (1.5, False, True, set(), "offline", "float32"),
    ],
)
def test_recommendation_fits_ram_disk_and_network(ram_gb, bf16, downloadable, on_disk, model, dtype):
    rec = env.recommend(ram_gb * 1e9, 100e9, bf16, downloadable, on_disk)
    assert (rec.model, rec.dtype) == (model, dtype)
    assert rec.why


def test_doctor_command_without_network_marks_hubs_unreachable(tmp_path):
    """`qwenlab doctor --json` as a user runs it. With no network every hub line is a WARN with advice."""
    run_env = {**os.environ, "QWENLAB_HOME": str(tmp_path), "HF_ENDPOINT": closed_port_url()}
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "qwenlab.cli", "doctor", "--json"], env=run_env,
                         capture_output=True, text=True, timeout=120)
    wall = time.perf_counter() - start
    data = json.loads(out.stdout)
    print(f"qwenlab doctor: {wall:.1f} s wall (interpreter + torch import included), "
          f"report {data['seconds']:.1f} s, probing {data['probe_seconds']:.1f} s")
    assert out.returncode == 0, out.stderr
    reach = [c for c in data["checks"] if c["name"].startswith("reach ")]
    assert [c["name"] for c in reach][0] == "reach HF_ENDPOINT" and len(reach) == 4
    assert reach[0]["status"] == "WARN" and reach[0]["advice"]
    for c in reach:
        assert c["status"] == "PASS" or c["advice"], c
    if not any(c["status"] == "PASS" for c in reach):
        assert any(c["name"] == "model hubs" and c["status"] == "WARN" for c in data["checks"])
    assert data["probe_seconds"] <= 5.0, "hubs are probed in parallel with a 3 s timeout each"
