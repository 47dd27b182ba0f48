"""qwenlab.env: the environment report (`qwenlab doctor`), its advice, and the model recommendation."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading

import pytest

from qwenlab import env
from tests.test_mirror import isolated_home  # noqa: F401  (autouse: fresh QWENLAB_HOME and caches)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def _hold_connections(answer_when_open: int | None):
    """A TCP server on 127.0.0.1 that holds every connection without answering, until ``answer_when_open``
    of them are open at the same time: then it answers them all ``HTTP 200`` (None: never answers)."""
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
                continue
            if answer_when_open is not None and len(held) == answer_when_open:
                for conn in held:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    sock.close()


@pytest.fixture
def silent_server():
    """A hub that accepts connections and never answers (hangs)."""
    yield from _hold_connections(None)


@pytest.fixture
def rendezvous_server():
    """A hub that answers only once three clients are connected at the same time."""
    yield from _hold_connections(3)


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
    [python_row] = [line.split() for line in text.splitlines() if line.split()[1:2] == ["Python"]]
    assert python_row[0] == "[PASS]" and python_row[2] == sys.version.split()[0]
    lines = [line.strip() for line in text.splitlines()]
    for check in (c for c in rep.checks if c.advice):  # the advice is on the line under its check
        row = next(i for i, line in enumerate(lines) if line.startswith(f"[{check.status}]  {check.name}  "))
        assert lines[row + 1] == f"-> {check.advice}"
    assert f"推荐 (recommended): {rep.recommendation}" in text
    html = rep._repr_html_()
    assert html.count("<tr>") == len(rep.checks) + 1 and "推荐" in html
    assert "<td style='color:#1a7f37;font-weight:bold'>PASS</td><td>Python</td>" in html  # status in colour
    data = json.loads(rep.to_json())
    assert [c["name"] for c in data["checks"]] == [c.name for c in rep.checks]
    assert data["recommendation"]["model"] == rep.recommendation.model


def test_hubs_are_probed_in_parallel(rendezvous_server):
    """The server answers only when all three probes are connected at once: probed one after the other,
    the first would wait for an answer that never comes and every probe would fail."""
    from qwenlab import hub

    probes = hub.probe(timeout=20.0, sources={f"hub{i}": rendezvous_server for i in range(3)})
    assert [(p.name, p.ok, p.detail) for p in probes] == [(f"hub{i}", True, "HTTP 200") for i in range(3)]


def test_a_hub_that_hangs_is_reported_with_the_timeout(silent_server):
    from qwenlab import hub

    [probe] = hub.probe(timeout=0.5, sources={"hangs": silent_server})
    assert (probe.name, probe.url, probe.ok, probe.detail) == ("hangs", silent_server, False, "no answer within 0.5 s")


def test_env_vars_get_advice(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://192.168.1.10:8090")
    monkeypatch.delenv("HF_HUB_DISABLE_XET", raising=False)
    rep = env.report(probe=False)
    offline, endpoint = rep.get("HF_HUB_OFFLINE"), rep.get("HF_ENDPOINT")
    assert offline.status == "WARN" and "unset" in offline.advice
    assert endpoint.status == "WARN" and endpoint.value == "http://192.168.1.10:8090"
    assert "HF_HUB_DISABLE_XET=1" in endpoint.advice


def test_old_or_missing_packages_get_advice():
    old = {c.name: c for c in env.package_checks(lambda name: "4.40.0" if name == "transformers" else None)}
    assert old["transformers"].status == "FAIL" and "KeyError: 'qwen3'" in old["transformers"].advice
    assert old["modelscope"].status == "WARN" and "pip install" in old["modelscope"].advice
    new = env.package_checks(lambda name: "99.0")
    assert [(c.name, c.status) for c in new] == [
        (name, "PASS") for name in ("transformers", "huggingface_hub", "modelscope", "accelerate", "ipywidgets",
                                    "jupyterlab")]


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
    out = subprocess.run([sys.executable, "-m", "qwenlab.cli", "doctor", "--json"], env=run_env,
                         capture_output=True, text=True, timeout=120)
    data = json.loads(out.stdout)
    assert out.returncode == 0, out.stderr
    reach = [c for c in data["checks"] if c["name"].startswith("reach ")]
    assert [c["name"] for c in reach][0] == "reach HF_ENDPOINT" and len(reach) == 4
    assert reach[0]["status"] == "WARN" and reach[0]["advice"]
    for c in reach:
        assert c["status"] == "PASS" or c["advice"], c
    if not any(c["status"] == "PASS" for c in reach):
        assert any(c["name"] == "model hubs" and c["status"] == "WARN" for c in data["checks"])


def test_doctor_command_prints_the_table(tmp_path):
    run_env = {**os.environ, "QWENLAB_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "qwenlab.cli", "doctor", "--offline"], env=run_env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:2] == ["[PASS]", "OS"]
    assert any(line.split()[:2] == ["[PASS]", "Python"] for line in lines)
    assert not any(" reach " in line for line in lines)  # --offline: no hub probed
    assert lines[-1].startswith("推荐 (recommended): ")


def test_the_class_report_carries_the_machine_and_every_check_with_its_advice():
    rep = env.Report([env.Check("Python", "3.11.9"), env.Check("torch", "2.3.0", "FAIL", "pip install torch==2.13.0")])
    sent = env.student_report(rep, "seat-05", decode_tok_s=12.345, decode_note="offline, 16 tokens")
    assert sent.name == "seat-05" and sent.ram_gb > 0 and sent.disk_free_gb >= 0 and sent.python
    assert sent.decode_tok_s == 12.3 and [c.name for c in sent.fails] == ["torch"]
    assert sent.fails[0].advice == "pip install torch==2.13.0"
    assert (sent.model, sent.model_ready) == ("", False)  # nothing on disk in this test's QWENLAB_HOME
    assert env.ready_model() is None
    assert type(sent).from_dict(json.loads(sent.to_json())) == sent  # what the dashboard accepts
