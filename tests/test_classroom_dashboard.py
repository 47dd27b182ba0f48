"""The live class dashboard: students' ``qwenlab doctor --send`` reports reach the teacher's mirror, which refuses
anything oversize or malformed (4xx, nothing changes), and asks for the class code when it has one.

The browser tests drive a real headless Chromium (the Debian package, through selenium) against a real mirror on
127.0.0.1: the page lists every laptop as reports arrive, shows HTML and script in a report as plain text, and
needs the class code when one is set. Screenshots go to build/screenshots/ for a person to look at.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import httpx
import pytest

import qwenlab.cli
from qwenlab import mirror
from qwenlab.classroom.dashboard import MAX_REPORT_BYTES, ClassBoard, CheckLine, StudentReport
from qwenlab.commands.doctor import decode_speed
from tests.test_mirror import isolated_home  # noqa: F401  (autouse: fresh QWENLAB_HOME and caches)

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "build" / "screenshots"
CODE = "k3mz-7qpa-vx2d"

READY = StudentReport("seat-01 王小明", "Windows 11 (AMD64)", "3.12.10", "2.13.0+cpu", 16.0, 120.5, "offline", True,
                      12.4, "offline, 16 tokens", (CheckLine("RAM", "PASS", "16.0 GB total"),))
NO_MODEL = StudentReport("seat-02", "Darwin 24.1 (arm64)", "3.11.9", "2.13.0", 8.0, 30.0, "", False, None,
                         "no model on disk yet: run `qwenlab offline-model`")
FAILING = StudentReport("seat-03", "Linux 6.8 (x86_64)", "3.10.12", "2.3.0", 4.0, 1.2, "", False, None, "",
                        (CheckLine("torch", "FAIL", "2.3.0", "torch >= 2.4 is needed: pip install torch==2.13.0"),
                         CheckLine("free disk", "FAIL", "1.2 GB free", "a model needs 1-2 GB: free some space")))
# Markup and script in every kind of field; the marker global must stay undefined.
XSS = StudentReport('<img src=x onerror="window.__xss=\'name\'">', "<script>window.__xss='os'</script>",
                    '"><svg onload="window.__xss=1">', "</td></tr><tr><td>injected row", None, None,
                    "<iframe src=\"javascript:top.__xss=1\"></iframe>", False, None, "<b>bold</b> note",
                    (CheckLine("<i>check</i>", "FAIL", "<b>value</b>", "<script>alert('xss')</script>"),))


def post(url: str, body: bytes, code: str | None = None, **headers: str) -> httpx.Response:
    if code:
        headers["Authorization"] = f"Bearer {code}"
    return httpx.post(f"{url}/class/reports", content=body, headers={"Content-Type": "application/json", **headers})


@pytest.fixture
def server():
    with mirror.MirrorServer({}) as srv:
        yield srv


def board_json(srv) -> list[dict]:
    return httpx.get(f"{srv.url}/class/reports").json()["reports"]


# ---- the HTTP side ----------------------------------------------------------------------------------------


def test_reports_arrive_one_row_per_laptop_failing_ones_first(server):
    for r in (READY, NO_MODEL, FAILING):
        answer = post(server.url, r.to_json())
        assert answer.status_code == 200 and answer.json()["ok"]
    again = post(server.url, json.dumps({**NO_MODEL.to_dict(), "model": "offline", "model_ready": True}).encode())
    assert again.json()["laptops"] == 3  # the same name replaces its report
    rows = board_json(server)
    assert [r["name"] for r in rows] == ["seat-03", "seat-01 王小明", "seat-02"]
    assert rows[0]["checks"][0]["advice"].startswith("torch >= 2.4") and rows[0]["client"] == "127.0.0.1"
    assert rows[2]["model_ready"] is True
    assert "seat-03" in str(server.board) and "torch: torch >= 2.4" in str(server.board)


@pytest.mark.parametrize("body, status, why", [
    (json.dumps({**READY.to_dict(), "decode_note": "x" * MAX_REPORT_BYTES}).encode(), 413, "at most 65536 bytes"),
    (b"{not json", 400, "UTF-8 JSON"),
    (b"\xff\xfe", 400, "UTF-8 JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (json.dumps({"os": "Linux"}).encode(), 400, "'name' is required"),
    (json.dumps({"name": "a", "ram_gb": "lots"}).encode(), 400, "'ram_gb' must be a number"),
    (json.dumps({"name": "a", "ram_gb": True}).encode(), 400, "'ram_gb' must be a number"),
    (json.dumps({"name": "a", "model_ready": "yes"}).encode(), 400, "'model_ready' must be true or false"),
    (json.dumps({"name": "a", "checks": [{"name": "x", "status": "OK"}]}).encode(), 400, "checks[0].status"),
    (json.dumps({"name": "a", "checks": [{}] * 101}).encode(), 400, "at most 100"),
    (json.dumps({"name": "n" * 81}).encode(), 400, "longer than 80"),
    (json.dumps({"name": "a", "version": 2}).encode(), 400, "update qwenlab"),
])
def test_oversize_or_malformed_reports_get_4xx_and_change_nothing(server, body, status, why):
    assert post(server.url, READY.to_json()).status_code == 200
    before = board_json(server)
    answer = post(server.url, body)
    assert answer.status_code == status and why in answer.json()["error"]
    assert board_json(server) == before


def test_a_report_without_length_or_to_another_path_is_refused(server):
    def chunks():
        yield READY.to_json()

    assert httpx.post(f"{server.url}/class/reports", content=chunks()).status_code == 411
    assert httpx.post(f"{server.url}/class/elsewhere", content=READY.to_json()).status_code == 404
    assert board_json(server) == []


def test_a_full_board_refuses_new_names_but_updates_known_ones(server):
    server.board = ClassBoard(max_students=2)
    assert post(server.url, READY.to_json()).status_code == 200
    assert post(server.url, NO_MODEL.to_json()).status_code == 200
    assert post(server.url, FAILING.to_json()).status_code == 429
    assert post(server.url, READY.to_json()).status_code == 200
    assert sorted(r["name"] for r in board_json(server)) == ["seat-01 王小明", "seat-02"]


def test_with_a_class_code_the_page_the_data_and_the_post_need_it():
    with mirror.MirrorServer({}, api_key=CODE) as srv:
        assert post(srv.url, READY.to_json()).status_code == 401
        assert post(srv.url, READY.to_json(), code="wrong").status_code == 401
        assert len(srv.board) == 0
        assert post(srv.url, READY.to_json(), code=CODE).status_code == 200
        page = httpx.get(f"{srv.url}/class")
        assert page.status_code == 401 and page.headers["WWW-Authenticate"].startswith("Basic ")
        assert httpx.get(f"{srv.url}/class/reports").status_code == 401
        assert httpx.get(f"{srv.url}/class/reports", auth=("anyone", CODE)).json()["count"] == 1
        assert httpx.get(f"{srv.url}/class", auth=("anyone", "wrong")).status_code == 401


def test_the_page_forbids_inline_script_and_builds_rows_with_text_only(server):
    page = httpx.get(f"{server.url}/class")
    assert "script-src 'self'" in page.headers["Content-Security-Policy"] and "<script>" not in page.text
    script = httpx.get(f"{server.url}/class/dashboard.js").text
    assert "textContent" in script and "innerHTML" not in script and "insertAdjacentHTML" not in script


def test_doctor_send_puts_this_laptop_on_the_board(server, capsys):
    code = qwenlab.cli.main(["doctor", "--offline", "--no-speed", "--send", server.url, "--name", "seat-07"])
    rows = board_json(server)
    assert [r["name"] for r in rows] == ["seat-07"]
    import platform

    row = rows[0]
    assert row["python"] == platform.python_version() and row["os"].startswith(platform.system())
    assert row["ram_gb"] > 0 and row["decode_tok_s"] is None and row["decode_note"] == "not measured (--no-speed)"
    assert {c["name"] for c in row["checks"]} >= {"Python", "torch", "RAM", "free disk"}
    assert code == (1 if any(c["status"] == "FAIL" for c in row["checks"]) else 0)
    assert "sent to the teacher's dashboard as 'seat-07'" in capsys.readouterr().err


def test_doctor_send_says_what_to_fix_when_the_report_does_not_arrive(capsys):
    with mirror.MirrorServer({}, api_key=CODE) as srv:
        assert qwenlab.cli.main(["doctor", "--offline", "--no-speed", "--send", srv.url]) == 1
        assert "--class-code" in capsys.readouterr().err
        assert qwenlab.cli.main(["doctor", "--offline", "--no-speed", "--send", srv.url, "--class-code", CODE,
                                 "--name", "late"]) in (0, 1)
        assert [e.report.name for e in srv.board.reports()] == ["late"]
        url = srv.url
    assert qwenlab.cli.main(["doctor", "--offline", "--no-speed", "--send", url]) == 1
    assert "does not answer" in capsys.readouterr().err


def test_without_a_model_the_decode_speed_is_left_out_with_the_reason():
    speed, why = decode_speed()
    assert speed is None and "qwenlab offline-model" in why


@pytest.mark.real_model
def test_with_the_offline_model_ready_the_decode_speed_is_measured(offline_dir, monkeypatch):
    monkeypatch.delenv("QWENLAB_HOME")  # where the offline model was built
    speed, how = decode_speed()
    assert speed is not None and speed > 0 and how.startswith("offline, 16 tokens")


# ---- in a real browser --------------------------------------------------------------------------------------


def _chromium() -> tuple[str, str] | None:
    browser = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="module")
def browser():
    found = _chromium()
    if found is None:
        print("SKIP reason: no Chromium here; install it: apt-get install chromium chromium-driver (.ci/run does)")
        pytest.skip("Chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    selenium = pytest.importorskip("selenium", reason="selenium is not installed (pip install selenium)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    del selenium
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    profile = tempfile.mkdtemp(prefix="qwenlab-chromium-")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", "--window-size=1500,900", "--lang=zh-CN"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(found[1]))
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _wait(driver, condition, what: str, timeout: float = 20):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: condition(d), message=what)


def _rows(driver) -> list[list[str]]:
    """Each row of the laptop table as the textContent of its cells (what the page really holds)."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#laptops tbody tr'))"
        ".map(tr => Array.from(tr.cells).map(td => td.textContent));")


def _polls(driver) -> int:
    return int(driver.execute_script("return Number(document.body.dataset.polls)"))


def _screenshot(driver, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    driver.save_screenshot(str(path))
    return path


def test_browser_lists_laptops_as_reports_arrive_and_shows_markup_as_text(browser, server):
    from selenium.common.exceptions import NoAlertPresentException

    post(server.url, READY.to_json())
    browser.get(f"{server.url}/class?every=0.5")
    _wait(browser, lambda d: len(_rows(d)) == 1, "the first report on the page")
    for r in (NO_MODEL, FAILING):  # students reporting while the page is open
        post(server.url, r.to_json())
    _wait(browser, lambda d: len(_rows(d)) == 3, "three laptops on the page")
    rows = _rows(browser)
    assert [r[0] for r in rows] == ["seat-03", "seat-02", "seat-01 王小明"]  # FAILs first, then no model
    assert "torch: 2.3.0 → torch >= 2.4 is needed" in rows[0][8] and "free disk: 1.2 GB free" in rows[0][8]
    assert rows[1][7].startswith("— no model on disk yet")
    assert rows[2][2:8] == ["16.0 GB", "120.5 GB", "3.12.10", "2.13.0+cpu", "✓ offline", "12.4 tok/s"]
    assert "3 台电脑 (laptops)" in browser.find_element("id", "summary").text
    _screenshot(browser, "class_dashboard.png")

    assert post(server.url, XSS.to_json()).status_code == 200
    _wait(browser, lambda d: len(_rows(d)) == 4, "the fourth report on the page")
    with pytest.raises(NoAlertPresentException):
        _ = browser.switch_to.alert.text
    assert browser.execute_script("return typeof window.__xss") == "undefined"
    injected = browser.execute_script("return document.querySelectorAll('#laptops tbody img, #laptops tbody script, "
                                      "#laptops tbody svg, #laptops tbody iframe, #laptops tbody b, "
                                      "#laptops tbody i').length")
    assert injected == 0 and len(_rows(browser)) == 4  # no element and no row came from a report
    xss_row = next(r for r in _rows(browser) if r[0] == XSS.name)
    assert xss_row[1] == XSS.os and xss_row[5] == XSS.torch and xss_row[4] == XSS.python
    assert xss_row[6] == "✗ " + XSS.model and xss_row[7] == "— " + XSS.decode_note
    assert xss_row[8] == "<i>check</i>: <b>value</b> → <script>alert('xss')</script>"
    _screenshot(browser, "class_dashboard_markup_as_text.png")


def test_browser_table_is_unchanged_by_oversize_or_malformed_reports(browser, server):
    for r in (READY, FAILING):
        post(server.url, r.to_json())
    browser.get(f"{server.url}/class?every=0.5")
    _wait(browser, lambda d: len(_rows(d)) == 2, "two laptops on the page")
    before = [row[:-1] for row in _rows(browser)]  # all but the "seen ... ago" column
    oversize = json.dumps({**NO_MODEL.to_dict(), "decode_note": "x" * (MAX_REPORT_BYTES + 1)}).encode()
    bad = [post(server.url, oversize), post(server.url, b'{"name": "seat-09", '),
           post(server.url, json.dumps({"name": "seat-09", "checks": "none"}).encode()),
           post(server.url, json.dumps({"name": "seat-01 王小明", "ram_gb": -1}).encode())]
    assert [r.status_code for r in bad] == [413, 400, 400, 400]
    seen = _polls(browser)
    _wait(browser, lambda d: _polls(d) >= seen + 2, "two more polls after the refused reports")
    assert [row[:-1] for row in _rows(browser)] == before


def test_browser_needs_the_class_code_when_the_mirror_has_one(browser):
    with mirror.MirrorServer({}, api_key=CODE) as srv:  # as bound off loopback: a class code is required
        assert post(srv.url, READY.to_json()).status_code == 401
        assert post(srv.url, FAILING.to_json(), code=CODE).status_code == 200
        browser.get(f"{srv.url}/class?every=0.5")
        assert browser.find_elements("id", "laptops") == []  # no page without the code
        assert [e.status for e in srv.requests("/class", "GET")] and all(
            e.status == 401 for e in srv.requests("/class", "GET"))
        browser.get(srv.url.replace("://", f"://teacher:{CODE}@") + "/class?every=0.5")
        _wait(browser, lambda d: len(_rows(d)) == 1, "the report, once the browser sends the class code")
        assert _rows(browser)[0][0] == "seat-03"
        _screenshot(browser, "class_dashboard_with_class_code.png")
