"""The live class dashboard: every laptop's ``qwenlab doctor`` report on one page of the teacher's mirror.

A student runs ``qwenlab doctor --send http://TEACHER:8090`` (with ``--class-code CODE`` or
``$QWENLAB_CLASS_CODE`` when the mirror has one); the report is POSTed as JSON to ``/class/reports``. The
teacher opens ``http://TEACHER:8090/class`` (or ``http://127.0.0.1:8090/class`` on the teacher's machine):
one row per laptop (OS, RAM, free disk, Python, torch, model ready?, decode tok/s, each FAIL with its fix),
refreshed every few seconds by plain JavaScript polling ``/class/reports`` (no CDN, no build step).

What a report may be, checked before anything is stored (else 4xx and nothing changes):

- at most :data:`MAX_REPORT_BYTES` (64 KiB; 413 beyond), a JSON object (400 otherwise), with a ``name``; every
  field of the right type, strings of bounded length, at most 100 checks (400, naming the field);
- at most :data:`MAX_STUDENTS` laptops (a new name beyond that gets 429; a known name replaces its report).

Every field is shown as text: the page builds its table with ``textContent`` only (never ``innerHTML``), and
is served with a Content-Security-Policy that allows no inline script, so ``<script>`` in a report is just
characters on the page. Beyond loopback, the page, the data and the POST need the class code, as every
request to the mirror does (a browser asks for it: any user name, the class code as password).
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..display import Table, TableView

__all__ = ["MAX_REPORT_BYTES", "MAX_STUDENTS", "REPORT_VERSION", "REPORTS_PATH", "PAGE_PATH", "SCRIPT_PATH",
           "ReportError", "CheckLine", "StudentReport", "parse_report", "Received", "ClassBoard",
           "ReportSendError", "report_url", "send_report", "PAGE_HTML", "PAGE_SCRIPT", "PAGE_POLICY"]

MAX_REPORT_BYTES = 64 * 1024
MAX_STUDENTS = 500
MAX_CHECKS = 100
REPORT_VERSION = 1
PAGE_PATH = "/class"
SCRIPT_PATH = "/class/dashboard.js"
REPORTS_PATH = "/class/reports"
_STATUSES = ("PASS", "WARN", "FAIL")


class ReportError(ValueError):
    """A report the dashboard refuses: ``status`` is the HTTP status (400, 411, 413, 429), the message says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class CheckLine:
    """One line of a student's ``qwenlab doctor`` report."""

    name: str
    status: str
    value: str = ""
    advice: str = ""


def _text(data: dict, key: str, limit: int, required: bool = False) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise ReportError(400, f"field {key!r} must be a string, not {type(value).__name__}")
    value = value.strip()
    if required and not value:
        raise ReportError(400, f"field {key!r} is required")
    if len(value) > limit:
        raise ReportError(400, f"field {key!r} is longer than {limit} characters")
    return value


def _number(data: dict, key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not 0 <= value <= 1e6:
        raise ReportError(400, f"field {key!r} must be a number from 0 to 1e6, or null")
    return float(value)


def _check(item: Any, i: int) -> CheckLine:
    if not isinstance(item, dict):
        raise ReportError(400, f"checks[{i}] must be an object")
    status = _text(item, "status", 8)
    if status not in _STATUSES:
        raise ReportError(400, f"checks[{i}].status must be one of {', '.join(_STATUSES)}")
    return CheckLine(_text(item, "name", 100, required=True), status, _text(item, "value", 500),
                     _text(item, "advice", 1000))


@dataclass(frozen=True)
class StudentReport:
    """What one laptop reports: the machine, the model, the measured decode speed, and the doctor's checks.

    Built by :func:`qwenlab.env.student_report` on the student's side; checked by :meth:`from_dict` on the
    teacher's.
    """

    name: str
    os: str = ""
    python: str = ""
    torch: str = ""
    ram_gb: float | None = None
    disk_free_gb: float | None = None
    model: str = ""
    model_ready: bool = False
    decode_tok_s: float | None = None
    decode_note: str = ""
    checks: tuple[CheckLine, ...] = ()

    @property
    def fails(self) -> list[CheckLine]:
        return [c for c in self.checks if c.status == "FAIL"]

    def to_dict(self) -> dict:
        return {"version": REPORT_VERSION, **asdict(self), "checks": [asdict(c) for c in self.checks]}

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_dict(cls, data: Any) -> StudentReport:
        """Check a decoded report field by field (unknown fields are ignored).

        Raises:
            ReportError: 400, naming the first field that is missing, of the wrong type, or too long.
        """
        if not isinstance(data, dict):
            raise ReportError(400, "a report is a JSON object")
        if data.get("version", REPORT_VERSION) != REPORT_VERSION:
            raise ReportError(400, f"report version {data.get('version')!r} is not {REPORT_VERSION}: update qwenlab")
        checks = data.get("checks", [])
        if not isinstance(checks, list) or len(checks) > MAX_CHECKS:
            raise ReportError(400, f"field 'checks' must be a list of at most {MAX_CHECKS} objects")
        ready = data.get("model_ready", False)
        if not isinstance(ready, bool):
            raise ReportError(400, "field 'model_ready' must be true or false")
        return cls(
            name=_text(data, "name", 80, required=True), os=_text(data, "os", 200), python=_text(data, "python", 50),
            torch=_text(data, "torch", 80), ram_gb=_number(data, "ram_gb"), disk_free_gb=_number(data, "disk_free_gb"),
            model=_text(data, "model", 200), model_ready=ready, decode_tok_s=_number(data, "decode_tok_s"),
            decode_note=_text(data, "decode_note", 300), checks=tuple(_check(c, i) for i, c in enumerate(checks)),
        )


def parse_report(body: bytes) -> StudentReport:
    """A POSTed body -> a checked :class:`StudentReport`.

    Raises:
        ReportError: 413 over :data:`MAX_REPORT_BYTES`; 400 when it is not UTF-8 JSON or a field is wrong.
    """
    if len(body) > MAX_REPORT_BYTES:
        raise ReportError(413, f"a report is at most {MAX_REPORT_BYTES} bytes")
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise ReportError(400, f"a report is UTF-8 JSON ({type(err).__name__}: {str(err)[:80]})") from None
    return StudentReport.from_dict(data)


# ---- the teacher's side: what has arrived -----------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """A report as the dashboard keeps it: who sent it (the client's address) and when."""

    report: StudentReport
    client: str
    received: float = field(default_factory=time.time)

    def sort_key(self) -> tuple:
        r = self.report
        return (not r.fails, r.model_ready, r.name.lower())  # FAILs first, then laptops without a model


class ClassBoard(TableView):
    """The reports that arrived, one per student name (a new report from the same name replaces the old one);
    thread-safe (the mirror answers each connection in its own thread). Shows as a table.

    Args:
        max_students: how many different names it keeps (then a new name gets 429).
    """

    def __init__(self, max_students: int = MAX_STUDENTS):
        self.max_students = max_students
        self._entries: dict[str, Received] = {}
        self._lock = threading.Lock()

    def add(self, report: StudentReport, client: str) -> int:
        """Keep ``report`` (replacing that name's last one); the number of laptops now.

        Raises:
            ReportError: 429 when the board is full and the name is new.
        """
        with self._lock:
            if report.name not in self._entries and len(self._entries) >= self.max_students:
                raise ReportError(429, f"the dashboard already lists {self.max_students} laptops")
            self._entries[report.name] = Received(report, client)
            return len(self._entries)

    def reports(self) -> list[Received]:
        """Every laptop's last report: those with a FAIL first, then those without a model, then by name."""
        with self._lock:
            entries = list(self._entries.values())
        return sorted(entries, key=Received.sort_key)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def to_json(self) -> bytes:
        """What the page polls: ``{"now", "count", "reports": [report + client + received]}``."""
        rows = [{**e.report.to_dict(), "client": e.client, "received": e.received} for e in self.reports()]
        return json.dumps({"now": time.time(), "count": len(rows), "reports": rows}, ensure_ascii=False).encode()

    def table(self) -> Table:
        rows = []
        for e in self.reports():
            r = e.report
            speed = f"{r.decode_tok_s:.1f} tok/s" if r.decode_tok_s is not None else f"— {r.decode_note}"
            rows.append((r.name, r.os, _gb(r.ram_gb), _gb(r.disk_free_gb), r.python, r.torch,
                         ("ready: " if r.model_ready else "not ready: ") + (r.model or "no model"), speed,
                         "; ".join(f"{c.name}: {c.advice or c.value}" for c in r.fails) or "—"))
        return Table(["student", "OS", "RAM", "free disk", "Python", "torch", "model", "decode", "FAIL -> fix"],
                     rows, title=f"class dashboard: {len(rows)} laptop(s)")


def _gb(x: float | None) -> str:
    return "?" if x is None else f"{x:.1f} GB"


# ---- the student's side: sending ---------------------------------------------------------------------------


class ReportSendError(RuntimeError):
    """The report did not reach the teacher's dashboard; the message says what to check."""


def report_url(url: str) -> str:
    """Where to POST, from what the teacher wrote on the board: ``192.168.1.10:8090``, ``http://host:8090``,
    ``http://host:8090/class`` all mean ``http://host:8090/class/reports``.

    >>> report_url("192.168.1.10:8090"), report_url("http://t:8090/class/")
    ('http://192.168.1.10:8090/class/reports', 'http://t:8090/class/reports')
    """
    url = url.strip()
    parts = urlsplit(url if "://" in url else "http://" + url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{url!r} is not the dashboard's address; it looks like http://TEACHER:8090")
    path = parts.path.rstrip("/")
    if path in ("", PAGE_PATH):
        path = REPORTS_PATH
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def send_report(url: str, report: StudentReport, class_code: str | None = None, timeout: float = 10.0) -> dict:
    """POST ``report`` to the teacher's dashboard; the dashboard's answer (``{"ok": true, "laptops": n}``).

    The connection goes straight to the teacher's machine (a proxy from the environment is not used: the
    mirror is on the classroom's own network).

    Raises:
        ReportSendError: no answer, a refused class code, or a report the dashboard refused (it says why).
    """
    import httpx

    target = report_url(url)
    headers = {"Content-Type": "application/json"}
    if class_code:
        headers["Authorization"] = f"Bearer {class_code}"
    try:
        response = httpx.post(target, content=report.to_json(), headers=headers, timeout=timeout, trust_env=False)
    except httpx.HTTPError as err:
        raise ReportSendError(f"the dashboard at {target} does not answer ({type(err).__name__}: {err}); check the "
                              "teacher's address and that `qwenlab mirror` is running there") from None
    if response.status_code == 401:
        raise ReportSendError("the teacher's dashboard needs the class code: add --class-code CODE (or set "
                              "QWENLAB_CLASS_CODE=CODE)" + (" — this one was refused" if class_code else ""))
    if response.status_code >= 400:
        try:
            why = response.json().get("error", "")
        except ValueError:
            why = response.text[:200]
        raise ReportSendError(f"the dashboard refused the report (HTTP {response.status_code}): {why}")
    try:
        return response.json()
    except ValueError:
        return {}


# ---- the page ---------------------------------------------------------------------------------------------

# No inline script may run on the page (the script is a separate file from the same server), nothing is
# loaded from elsewhere, and nothing may frame it.
PAGE_POLICY = ("default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
               "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

PAGE_HTML = """<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>qwenlab 课堂 (class dashboard)</title>
<style>
body { font-family: system-ui, "Noto Sans CJK SC", "Microsoft YaHei", sans-serif; margin: 1.5em; }
table { border-collapse: collapse; width: 100%; font-size: 0.9em; table-layout: fixed; }
th, td { border-bottom: 1px solid #ddd; padding: 0.35em 0.5em; text-align: left; vertical-align: top;
         overflow-wrap: anywhere; }
th { background: #f3f3f3; position: sticky; top: 0; }
td.num { text-align: right; white-space: nowrap; }
tr.fail td.name { border-left: 6px solid #cf222e; }
tr.notready td.name { border-left: 6px solid #9a6700; }
tr.ready td.name { border-left: 6px solid #1a7f37; }
td ul { margin: 0; padding-left: 1.1em; color: #cf222e; }
#summary { font-size: 1.2em; }
#status { color: #666; }
code { background: #f3f3f3; padding: 0.1em 0.3em; }
</style>
</head>
<body data-polls="0">
<h1>qwenlab 课堂 (class dashboard)</h1>
<p id="summary">等待报告 (waiting for reports)…</p>
<p>学生运行 (students run): <code id="command">qwenlab doctor --send http://TEACHER:PORT</code></p>
<p id="status"></p>
<table id="laptops">
<colgroup><col style="width:11%"><col style="width:11%"><col style="width:6%"><col style="width:7%">
<col style="width:6%"><col style="width:7%"><col style="width:10%"><col style="width:10%"><col style="width:24%">
<col style="width:8%"></colgroup>
<thead><tr><th>学生 (student)</th><th>系统 (OS)</th><th>内存 (RAM)</th><th>空闲磁盘 (free disk)</th>
<th>Python</th><th>torch</th><th>模型 (model)</th><th>解码 (decode)</th><th>问题 → 解决 (FAIL → fix)</th>
<th>更新 (seen)</th></tr></thead>
<tbody></tbody>
</table>
<script src="/class/dashboard.js"></script>
</body>
</html>
"""

# Every value from a report goes into the page through textContent: a report cannot add markup or script.
PAGE_SCRIPT = """"use strict";
(function () {
  const every = Math.max(0.5, Number(new URLSearchParams(location.search).get("every")) || 3) * 1000;
  const tbody = document.querySelector("#laptops tbody");
  const summary = document.getElementById("summary");
  const status = document.getElementById("status");
  document.getElementById("command").textContent = "qwenlab doctor --send " + location.origin;
  let polls = 0;

  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  }
  function gb(x) { return typeof x === "number" ? x.toFixed(1) + " GB" : "?"; }
  function ago(s) { return s < 60 ? Math.round(s) + " s" : Math.round(s / 60) + " min"; }

  function row(r, now) {
    const tr = document.createElement("tr");
    const fails = r.checks.filter(function (c) { return c.status === "FAIL"; });
    tr.className = fails.length ? "fail" : (r.model_ready ? "ready" : "notready");
    tr.dataset.student = r.name;
    cell(tr, r.name, "name");
    cell(tr, r.os);
    cell(tr, gb(r.ram_gb), "num");
    cell(tr, gb(r.disk_free_gb), "num");
    cell(tr, r.python);
    cell(tr, r.torch);
    cell(tr, (r.model_ready ? "✓ " : "✗ ") + (r.model || "无模型 (no model)"));
    if (typeof r.decode_tok_s === "number") cell(tr, r.decode_tok_s.toFixed(1) + " tok/s", "num");
    else cell(tr, "— " + r.decode_note);
    const problems = cell(tr, fails.length ? "" : "—");
    if (fails.length) {
      const list = document.createElement("ul");
      fails.forEach(function (c) {
        const item = document.createElement("li");
        item.textContent = c.name + ": " + c.value + (c.advice ? " → " + c.advice : "");
        list.appendChild(item);
      });
      problems.appendChild(list);
    }
    cell(tr, ago(now - r.received) + " (" + r.client + ")");
    return tr;
  }

  function render(data) {
    tbody.replaceChildren.apply(tbody, data.reports.map(function (r) { return row(r, data.now); }));
    const failing = data.reports.filter(function (r) {
      return r.checks.some(function (c) { return c.status === "FAIL"; });
    }).length;
    const ready = data.reports.filter(function (r) { return r.model_ready; }).length;
    summary.textContent = data.count + " 台电脑 (laptops) · " + ready + " 模型就绪 (model ready) · " +
      failing + " 有 FAIL (with a FAIL)";
  }

  async function poll() {
    try {
      // location.origin, not a relative URL: a page opened as http://user:code@host/... may not fetch
      // URLs with credentials in them; the browser sends the login it already has for this origin.
      const response = await fetch(location.origin + "/class/reports", {cache: "no-store", credentials: "same-origin"});
      if (response.status === 401) {
        status.textContent = "需要课堂码 (the class code is needed): reload and log in with any user name " +
          "and the class code as the password.";
      } else if (!response.ok) {
        status.textContent = "HTTP " + response.status;
      } else {
        render(await response.json());
        polls += 1;
        document.body.dataset.polls = String(polls);
        status.textContent = "更新于 (updated) " + new Date().toLocaleTimeString();
      }
    } catch (err) {
      status.textContent = "镜像没有响应 (the mirror does not answer): " + err;
    }
    setTimeout(poll, every);
  }
  poll();
})();
"""
