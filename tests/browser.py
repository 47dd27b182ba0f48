"""Drive JupyterLab 4 in headless Chromium (selenium) for ``tests/test_browser_widgets.py``.

Everything stays on this machine: a JupyterLab server on 127.0.0.1 (random port and token, its own
config, data, settings and workspace folders under a tmp dir) and a headless Chromium from the Debian
packages ``chromium`` + ``chromium-driver`` (``.ci/run`` installs them when missing). The page is driven
the way a student would: open a notebook by URL, Run → Run All Cells, click a cell, Shift+Enter, type
into a text box, arrow keys on a slider handle.

``window.jupyterapp`` is not exposed by JupyterLab 4, so nothing here reaches into the frontend's
objects: the tests read the DOM, and ask the kernel through a probe cell that prints JSON.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMEDRIVER_NAMES = ("chromedriver",)
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,2400", "--force-device-scale-factor=1", "--lang=en-US",
                  # keep the page's renderer at full priority: on a loaded machine a backgrounded (niced,
                  # timer-throttled) renderer can lag the kernel's widget updates by many seconds
                  "--disable-renderer-backgrounding", "--disable-background-timer-throttling",
                  "--disable-backgrounding-occluded-windows")

# JupyterLab user settings for a quiet, predictable page: every cell stays in the DOM (no virtual
# scrolling), no news / update toasts, no auto-closed brackets.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                         "checkForUpdates": False},
}

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def find_chromium() -> tuple[str, str] | str:
    """``(chromium, chromedriver)`` paths, or a sentence saying what is missing."""
    browser = next((shutil.which(n) for n in CHROMIUM_NAMES if shutil.which(n)), None)
    driver = next((shutil.which(n) for n in CHROMEDRIVER_NAMES if shutil.which(n)), None)
    if browser and driver:
        return browser, driver
    missing = [name for name, found in (("chromium", browser), ("chromedriver", driver)) if not found]
    return (f"{' and '.join(missing)} not found on PATH (Debian: apt-get install chromium chromium-driver; "
            ".ci/run installs them)")


def write_notebook(path: Path, cells: list[str]) -> Path:
    """A notebook of code cells, with kernelspec metadata (without it JupyterLab stops at a kernel chooser)."""
    nb = {
        "cells": [{"cell_type": "code", "execution_count": None, "id": f"cell-{i}", "metadata": {}, "outputs": [],
                   "source": source} for i, source in enumerate(cells)],
        "metadata": {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }
    path.write_text(json.dumps(nb, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Abort(RuntimeError):
    """Raised inside a ``wait_for`` condition to stop waiting at once (e.g. the server process died)."""


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    """Poll ``condition`` until it returns something truthy (returned) or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Abort:
            raise
        except Exception as err:  # a stale element or a server not up yet: try again
            last_error = err
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}"
                       + (f" (last error: {type(last_error).__name__}: {last_error})" if last_error else ""))


class JupyterLabServer:
    """A JupyterLab server on 127.0.0.1 serving ``root``; use as a context manager (stops it, and its kernels)."""

    def __init__(self, root: Path, home: Path, env: dict[str, str] | None = None, start_timeout: float = 90):
        self.root, self.home = Path(root), Path(home)
        self.port, self.token = _free_port(), secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.home / "jupyterlab.log"
        self.extra_env = env or {}
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        for name in ("config", "data", "runtime"):
            (self.home / name).mkdir(parents=True, exist_ok=True)
        env.update(JUPYTER_CONFIG_DIR=str(self.home / "config"), JUPYTER_DATA_DIR=str(self.home / "data"),
                   JUPYTER_RUNTIME_DIR=str(self.home / "runtime"), JUPYTER_PLATFORM_DIRS="1",
                   PYDEVD_DISABLE_FILE_VALIDATION="1", **self.extra_env)
        return env

    def _write_settings(self) -> Path:
        settings = self.home / "lab-settings"
        for relative, value in LAB_SETTINGS.items():
            path = settings / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(value), encoding="utf-8")
        return settings

    def start(self) -> JupyterLabServer:
        settings = self._write_settings()
        (self.home / "workspaces").mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.open_browser=False",
               *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
               f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={self.home / 'workspaces'}",
               "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        self._log = open(self.log_path, "wb")  # closed in stop()
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=self._env(), stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

        def up() -> bool:
            if self.proc.poll() is not None:
                raise Abort(f"JupyterLab exited with {self.proc.returncode}:\n{self.log_tail()}")
            return self.api("GET", "/api/status") is not None

        try:
            wait_for(up, self.start_timeout, "JupyterLab to answer /api/status")
        except (TimeoutError, Abort):
            self.stop()
            raise
        return self

    def api(self, method: str, path: str) -> Any:
        """One REST call with the token; the decoded JSON (None for an empty body)."""
        request = urllib.request.Request(f"{self.url}{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def page(self, notebook: str, workspace: str) -> str:
        """The URL that opens ``notebook`` alone, in a fresh workspace."""
        return f"{self.url}/lab/workspaces/{workspace}/tree/{notebook}?reset&token={self.token}"

    def close_notebook(self, notebook: str) -> None:
        """Shut down the kernel session of ``notebook`` (once its page is gone: it frees the model's memory)."""
        for session in self.api("GET", "/api/sessions") or []:
            if session.get("path") == notebook:
                self.api("DELETE", f"/api/sessions/{session['id']}")

    def shutdown_kernels(self) -> None:
        try:
            for kernel in self.api("GET", "/api/kernels") or []:
                self.api("DELETE", f"/api/kernels/{kernel['id']}")
        except (OSError, urllib.error.URLError, ValueError):
            pass

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.shutdown_kernels()
            self.proc.terminate()  # SIGTERM: the server shuts its kernels down and exits
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        self.proc = None

    def __enter__(self) -> JupyterLabServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def chromium_driver(browser: str, driver: str, profile: Path, log_path: Path) -> Any:
    """A headless Chromium WebDriver that records the browser console (``driver.get_log("browser")``)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=driver, log_output=str(log_path))
    web = webdriver.Chrome(options=options, service=service)
    web.set_page_load_timeout(60)
    web.set_script_timeout(30)
    return web


class Notebook:
    """One open notebook page: run cells, find widgets in outputs, read the kernel through a probe cell."""

    PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"

    def __init__(self, web: Any, url: str, timeout: float = 60):
        from selenium.webdriver.common.by import By

        self.web, self.By = web, By
        web.get(url)
        wait_for(lambda: self.cells(), timeout, "the notebook's cells to render")
        wait_for(lambda: self.kernel_name() not in ("", "No Kernel") and self.kernel_status() == "idle", timeout,
                 "the kernel to start")

    # ---- finding things ------------------------------------------------------------------------------

    def find(self, css: str, within: Any = None) -> list:
        return (within or self.web).find_elements(self.By.CSS_SELECTOR, css)

    def cells(self) -> list:
        return self.find(f"{self.PANEL} .jp-Notebook .jp-Cell")

    def code_cells(self) -> list:
        return self.find(f"{self.PANEL} .jp-Notebook .jp-CodeCell")

    def kernel_status(self) -> str:
        """The toolbar's kernel indicator: "idle", "busy", "starting", … ("" before a kernel is attached)."""
        found = self.find(f"{self.PANEL} .jp-Notebook-ExecutionIndicator")
        return (found[0].get_attribute("data-status") or "") if found else ""

    def kernel_name(self) -> str:
        found = self.find(f"{self.PANEL} .jp-KernelName, {self.PANEL} .jp-Toolbar-kernelName")
        return found[0].text.strip() if found else ""

    @staticmethod
    def prompt(cell: Any) -> str:
        """A code cell's input prompt, e.g. ``[3]:``, ``[*]:`` (running or queued) or ``[ ]:``."""
        return cell.find_element("css selector", ".jp-InputPrompt").text.strip()

    def output_text(self, cell: Any) -> str:
        return "\n".join(o.text for o in self.find(".jp-OutputArea-output", cell))

    # What an output shows when the kernel raised, or when ipywidgets 8 could not render a widget.
    ERROR_MARKERS = ("Traceback (most recent call last)", "Error displaying widget", "Click to show javascript error")

    def errors(self) -> list[str]:
        """Tracebacks and widget rendering errors shown in any output."""
        texts = [o.text for o in self.find(f"{self.PANEL} .jp-OutputArea-output")]
        return [t for t in texts if any(marker in t for marker in self.ERROR_MARKERS)]

    # ---- running -------------------------------------------------------------------------------------

    def menu(self, menu: str, label: str) -> None:
        """Click a menu bar entry, then one of its items by label (e.g. Run → Run All Cells)."""
        bar = wait_for(lambda: [i for i in self.find(".lm-MenuBar-item") if i.text.strip() == menu], 10, f"menu {menu}")
        bar[0].click()

        def item() -> list:
            return [li for li in self.find(".lm-Menu-item[data-type='command']")
                    if li.text.split("\n")[0].strip() == label and "lm-mod-disabled" not in li.get_attribute("class")]

        wait_for(item, 10, f"menu item {menu} → {label}")[0].click()

    def run_all(self, timeout: float) -> None:
        """Run → Run All Cells, then wait until every code cell has run (a number in its prompt)."""

        def prompts() -> list[str]:
            return [self.prompt(c) for c in self.code_cells()]

        def started() -> bool:
            return any(p != "[ ]:" for p in prompts())

        self.menu("Run", "Run All Cells")
        try:
            wait_for(started, 15, "Run All Cells to start")
        except TimeoutError:  # the click landed while the page was still settling: once more
            self.menu("Run", "Run All Cells")

        def done() -> bool:
            return all(p[1:-2].strip().isdigit() for p in prompts()) and self.kernel_status() == "idle"

        try:
            wait_for(done, timeout, "Run All Cells to finish", interval=0.5)
        except TimeoutError as err:
            raise TimeoutError(f"{err}; prompts: {prompts()}; errors: {self.errors()}") from None

    def run_cell(self, cell: Any, timeout: float) -> str:
        """Click into ``cell``, press Shift+Enter, wait for its new execution count; return its output text."""
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        before = self.prompt(cell)
        cell.find_element(self.By.CSS_SELECTOR, ".jp-InputArea-editor").click()
        ActionChains(self.web).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()

        def ran() -> bool:
            now = self.prompt(cell)
            return now != before and now[1:-2].strip().isdigit()

        wait_for(ran, timeout, "the cell to run again")
        return self.output_text(cell)

    def probe(self, cell: Any, timeout: float = 60, until: Callable[[dict], bool] | None = None) -> dict:
        """Re-run a cell that prints one JSON line (the kernel's view of a widget) and decode it.

        The kernel handles widget messages in the order they arrive, before a later execute request. But
        the widget frontend holds back a model's further state updates while one is unanswered (ipywidgets'
        message throttling), so after several quick key presses the last value may reach the kernel after
        the probe: ``until`` re-runs the probe (within ``timeout``) until the kernel's state satisfies it.
        """
        deadline = time.monotonic() + timeout
        while True:
            text = self.run_cell(cell, max(1.0, deadline - time.monotonic()))
            line = wait_for(lambda: next((ln for ln in self.output_text(cell).splitlines() if ln.startswith("{")),
                                         None), 10, f"the probe's JSON (output so far: {text!r})")
            state = json.loads(line)
            if until is None or until(state):
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"the kernel's state never satisfied the condition; last: {state}")
            self.wait_idle(max(1.0, deadline - time.monotonic()))

    def wait_idle(self, timeout: float) -> None:
        wait_for(lambda: self.kernel_status() == "idle", timeout, "the kernel to be idle")

    def image_bytes(self, img: Any) -> bytes:
        """The bytes behind an ``<img>`` (ipywidgets' Image shows a blob: URL)."""
        import base64

        script = """
            const [img, done] = arguments;
            fetch(img.src).then(r => r.arrayBuffer()).then(buf => {
                let s = ''; const bytes = new Uint8Array(buf);
                for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
                done(btoa(s));
            }).catch(e => done('ERROR ' + e));
        """
        encoded = self.web.execute_async_script(script, img)
        if encoded.startswith("ERROR"):
            raise RuntimeError(f"could not read the image: {encoded}")
        return base64.b64decode(encoded)

    def console(self) -> list[dict]:
        """Browser console entries since the last call."""
        return self.web.get_log("browser")
