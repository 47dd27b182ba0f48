"""Environment report: what this machine has for running Qwen (``qwenlab doctor``).

Taught in ``01_environment.ipynb``.
"""

from __future__ import annotations

import html
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from . import catalog
from .classroom.dashboard import CheckLine, StudentReport
from .display import Table, TableView
from .files import format_gb, free_bytes
from .offline import check_folder as check_offline_folder
from .ondisk import find_local
from .paths import models_dir
from .sources import Probe, probe as probe_hubs

__all__ = [
    "cpu_flags",
    "cpu_name",
    "bf16_native",
    "package_version",
    "version_tuple",
    "PACKAGES",
    "package_checks",
    "Check",
    "Recommendation",
    "Report",
    "recommend",
    "report",
    "ready_model",
    "student_report",
]


def cpu_flags() -> set[str]:
    """CPU feature flags (Linux ``/proc/cpuinfo``; macOS ``sysctl``); empty set when unknown."""
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as f:
                for line in f:
                    if line.startswith(("flags", "Features")):
                        return set(line.split(":", 1)[1].split())
        except OSError:
            pass
    elif sys.platform == "darwin" and platform.machine() == "arm64":
        try:
            out = subprocess.run(["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True, text=True)
            return {"bf16"} if out.stdout.strip() == "1" else set()
        except OSError:
            pass
    return set()


def cpu_name() -> str:
    """Human-readable CPU model name."""
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as f:
                for line in f:
                    if line.startswith("model name"):
                        return line.split(":", 1)[1].strip()
        except OSError:
            pass
    return platform.processor() or platform.machine()


def bf16_native(device: str = "cpu") -> tuple[bool, str]:
    """Whether ``device`` computes bfloat16 natively, and why (one sentence).

    bf16 halves memory and bandwidth, but on a CPU without AMX / AVX512-BF16 it is emulated and
    usually *slower* than fp32. Taught in ``00_quickstart.ipynb`` and ``09_performance.ipynb``.
    """
    if device.startswith("cuda"):
        import torch

        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return True, "this CUDA GPU supports bf16"
        return False, "this CUDA GPU has no bf16 support (pre-Ampere), fp16 or fp32 instead"
    if device == "mps":
        return False, "MPS: fp32 is the safe default (fp16 can overflow in Qwen's activations)"
    flags = cpu_flags()
    if "amx_bf16" in flags:
        return True, "the CPU has AMX (amx_bf16): bf16 matrix multiply in hardware"
    if "avx512_bf16" in flags:
        return True, "the CPU has AVX512-BF16: bf16 dot products in hardware"
    if "bf16" in flags:
        return True, "the CPU supports bf16 instructions (ARM FEAT_BF16)"
    return False, "the CPU has no AMX / AVX512-BF16, so bf16 would be emulated (slower than fp32)"


def package_version(name: str) -> str | None:
    """Installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def version_tuple(version: str | None) -> tuple[int, ...]:
    """``"4.51.3"`` -> ``(4, 51, 3)``; ``"5.0.0rc1"`` -> ``(5, 0, 0)``; ``()`` for None (compares as oldest).

    >>> version_tuple("5.0.0rc1"), version_tuple(None)
    ((5, 0, 0), ())
    """
    m = re.match(r"\d+(\.\d+)*", version or "")
    return tuple(int(p) for p in m.group(0).split(".")) if m else ()


@dataclass
class Check:
    """One line of the report: a name, a value, PASS / WARN / FAIL, and what to do."""

    name: str
    value: str
    status: str = "PASS"
    advice: str = ""

    def __str__(self) -> str:
        return f"[{self.status}] {self.name}: {self.value}" + (f"  -> {self.advice}" if self.advice else "")


@dataclass
class Recommendation:
    """Which catalog model and dtype fit this machine, and why (one sentence)."""

    model: str
    dtype: str
    why: str

    def __str__(self) -> str:
        return f"{self.model} ({self.dtype}): {self.why}"

    def _repr_html_(self) -> str:
        return (f"<p>推荐 (recommended): <b><code>{html.escape(self.model)}</code></b>, "
                f"<code>{html.escape(self.dtype)}</code> — {html.escape(self.why)}</p>")


_STATUS_COLOURS = {"PASS": "#1a7f37", "WARN": "#9a6700", "FAIL": "#cf222e"}


@dataclass
class Report(TableView):
    """The environment report; a table (``str()`` for a terminal, HTML in Jupyter), or ``to_json()``."""

    checks: list[Check] = field(default_factory=list)
    recommendation: Recommendation | None = None
    seconds: float = 0.0
    probe_seconds: float = 0.0

    def to_dict(self) -> dict:
        return {
            "checks": [asdict(c) for c in self.checks],
            "recommendation": asdict(self.recommendation) if self.recommendation else None,
            "seconds": round(self.seconds, 2),
            "probe_seconds": round(self.probe_seconds, 2),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2)

    @property
    def ok(self) -> bool:
        return all(c.status != "FAIL" for c in self.checks)

    def get(self, name: str) -> Check | None:
        """The check called ``name`` (e.g. ``"RAM"``), or None."""
        return next((c for c in self.checks if c.name == name), None)

    def _notes(self) -> list[str]:
        return [f"推荐 (recommended): {self.recommendation}"] if self.recommendation else []

    def table(self) -> Table:
        """One row per check (status, name, value, advice); the recommendation below it."""
        rows = [(f"[{c.status}]", c.name, c.value, c.advice) for c in self.checks]
        return Table(["状态 (status)", "检查 (check)", "结果 (value)", "建议 (advice)"], rows, notes=self._notes())

    def __str__(self) -> str:
        """For a terminal: the advice goes on its own line under the value, so lines stay short."""
        rows: list[tuple[str, str, str]] = []
        for c in self.checks:
            rows.append((f"[{c.status}]", c.name, c.value))
            if c.advice:
                rows.append(("", "", f"-> {c.advice}"))
        return str(Table([], rows, notes=self._notes()))

    def _repr_html_(self) -> str:
        """The table, with each status coloured (green PASS, amber WARN, red FAIL) so a FAIL stands out."""
        out = self.table()._repr_html_()
        for status, colour in _STATUS_COLOURS.items():
            out = out.replace(f"<td>[{status}]</td>",
                              f"<td style='color:{colour};font-weight:bold'>{html.escape(status)}</td>")
        return out


# ---- the checks, one small function per topic ------------------------------------------------------


def _gb(n: float) -> str:
    return format_gb(n, digits=1)


def _system_checks() -> list[Check]:
    ok = sys.version_info >= (3, 10)
    return [
        Check("OS", f"{platform.system()} {platform.release()} ({platform.machine()})"),
        Check("Python", platform.python_version(), "PASS" if ok else "FAIL",
              "" if ok else "qwenlab needs Python >= 3.10: install a newer Python (conda or python.org)"),
    ]


def _torch_checks(torch: Any) -> list[Check]:
    old = version_tuple(torch.__version__) < (2, 4)
    checks = [Check("torch", torch.__version__, "FAIL" if old else "PASS",
                    "torch >= 2.4 is needed: pip install torch==2.13.0 (CPU wheel)" if old else "")]
    if torch.cuda.is_available():
        cudnn = torch.backends.cudnn.version()
        checks.append(Check("CUDA", f"{torch.version.cuda} (cuDNN {cudnn})"))
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            checks.append(Check(f"GPU {i}", f"{props.name}, {_gb(props.total_memory)} VRAM"))
    else:
        built = torch.version.cuda or "none (CPU build)"
        checks.append(Check("CUDA", f"no CUDA GPU (torch CUDA: {built})", "PASS",
                            "everything runs on the CPU, which is fine for the course's 0.5B models"))
    mps = getattr(torch.backends, "mps", None)
    if sys.platform == "darwin":
        available = bool(mps and mps.is_available())
        checks.append(Check("MPS", "available" if available else "not available", "PASS",
                            "" if available else "Apple GPU not usable; the CPU works fine"))
    return checks


def _cpu_checks(psutil: Any) -> list[Check]:
    physical = psutil.cpu_count(logical=False) or "?"
    native, why = bf16_native("cpu")
    return [
        Check("CPU", f"{cpu_name()} ({physical} cores, {os.cpu_count()} threads)"),
        Check("CPU bf16", "native" if native else "emulated", "PASS", why),
    ]


def _ram_check(psutil: Any) -> Check:
    mem = psutil.virtual_memory()
    value = f"{_gb(mem.total)} total, {_gb(mem.available)} available"
    if mem.total < 4e9:
        return Check("RAM", value, "FAIL", "under 4 GB: even a 0.5B model in fp32 (2-3 GB) will not fit; "
                                           "use the smallest model in bf16 or a machine with more RAM")
    if mem.available < 3e9:
        return Check("RAM", value, "WARN", "less than 3 GB free: close the browser tabs / apps you do not need")
    return Check("RAM", value)


def _disk_check() -> Check:
    free = free_bytes(models_dir())
    value = f"{_gb(free)} free at {models_dir()}"
    if free < 2e9:
        return Check("free disk", value, "FAIL",
                     "a model needs 1-2 GB: free some space (`qwenlab models`) or set QWENLAB_HOME to a bigger disk")
    if free < 5e9:
        return Check("free disk", value, "WARN", "room for one or two models; set QWENLAB_HOME to a bigger disk")
    return Check("free disk", value)


#: (package, minimum version, FAIL or WARN when missing/too old, what to do)
PACKAGES: list[tuple[str, tuple[int, ...], str, str]] = [
    ("transformers", (4, 51), "FAIL", "Qwen3 needs transformers >= 4.51 (else `KeyError: 'qwen3'`): "
                                      "pip install -U 'transformers>=5'"),
    ("huggingface_hub", (1, 0), "WARN", "pip install -U 'huggingface_hub>=1' (old versions use removed options "
                                        "such as resume_download)"),
    ("modelscope", (1, 20), "WARN", "pip install -U modelscope (needed only to download from ModelScope)"),
    ("accelerate", (1, 0), "WARN", "pip install -U accelerate"),
    ("ipywidgets", (8, 0), "WARN", "pip install -U ipywidgets (the notebooks' interactive panels)"),
    ("jupyterlab", (4, 0), "WARN", "pip install -U jupyterlab"),
]


def package_checks(version_of: Callable[[str], str | None] | None = None) -> list[Check]:
    """One check per package of :data:`PACKAGES`: PASS, or WARN/FAIL with the pip command that fixes it.

    Args:
        version_of: package name -> version (None when missing); default :func:`package_version`, the
            installed one. Pass another to see what a student's versions would get.

    Taught in ``01_environment.ipynb``.
    """
    version_of = version_of or package_version
    checks = []
    for name, minimum, level, advice in PACKAGES:
        version = version_of(name)
        ok = version is not None and version_tuple(version) >= minimum
        checks.append(Check(name, version or "not installed", "PASS" if ok else level, "" if ok else advice))
    return checks


def _env_checks() -> list[Check]:
    env = os.environ
    checks = []
    endpoint = env.get("HF_ENDPOINT")
    if endpoint and not env.get("HF_HUB_DISABLE_XET"):
        checks.append(Check("HF_ENDPOINT", endpoint, "WARN",
                            "also set HF_HUB_DISABLE_XET=1, or Xet downloads may bypass the mirror"))
    else:
        checks.append(Check("HF_ENDPOINT", endpoint or "not set (huggingface.co)", "PASS",
                            "" if endpoint else "in mainland China: HF_ENDPOINT=https://hf-mirror.com"))
    checks.append(Check("HF_HOME", env.get("HF_HOME") or "not set (~/.cache/huggingface)"))
    offline = env.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    checks.append(Check("HF_HUB_OFFLINE", env.get("HF_HUB_OFFLINE") or "not set",
                        "WARN" if offline else "PASS",
                        "downloads are disabled; unset it to download (local folders still load)" if offline else ""))
    checks.append(Check("MODELSCOPE_CACHE", env.get("MODELSCOPE_CACHE") or "not set (~/.cache/modelscope)"))
    proxy = env.get("HTTPS_PROXY") or env.get("https_proxy") or env.get("HTTP_PROXY") or env.get("http_proxy")
    if proxy:
        checks.append(Check("proxy", proxy, "PASS", "downloads go through this proxy (HTTPS_PROXY)"))
    return checks


_PROBE_ADVICE = {
    "huggingface": "unreachable from here: use hf-mirror.com, ModelScope or a classroom mirror",
    "hf-mirror": "unreachable: try ModelScope, a classroom mirror, or check your proxy",
    "modelscope": "unreachable: check the network / proxy settings",
    "HF_ENDPOINT": "the mirror in HF_ENDPOINT does not answer: check its address and that it is running",
}


def _probe_checks(probes: list[Probe]) -> list[Check]:
    checks = []
    for p in probes:
        if p.ok:
            checks.append(Check(f"reach {p.name}", f"{p.url}: {p.detail}, {p.seconds:.2f} s"))
        else:
            checks.append(Check(f"reach {p.name}", f"{p.url}: {p.detail}", "WARN",
                                _PROBE_ADVICE.get(p.name, "check the address")))
    if probes and not any(p.ok for p in probes):
        checks.append(Check("model hubs", "none reachable", "WARN",
                            "the course still runs on the offline model (qwenlab offline-model); to download, "
                            "fix the network/proxy or use a classroom mirror (HF_ENDPOINT=http://TEACHER:8090)"))
    return checks


def recommend(ram_available: float, disk_free: float, bf16: bool, downloadable: bool,
              on_disk: set[str] | None = None) -> Recommendation:
    """Pick the course model and dtype that fit: the default Qwen3-0.6B when it fits, else a smaller one,
    else the offline model. fp32 unless bf16 is native (emulated bf16 is slower).

    Args:
        ram_available: bytes of RAM free now.
        disk_free: bytes free where models are stored.
        bf16: whether the CPU/GPU computes bf16 natively.
        downloadable: whether some model source answers.
        on_disk: catalog names already on disk.

    Taught in ``01_environment.ipynb``.
    """
    on_disk = on_disk or set()
    dtype, per_param = ("bfloat16", 2) if bf16 else ("float32", 4)
    for name in (catalog.DEFAULT_MODEL, "Qwen/Qwen2.5-0.5B-Instruct"):
        info = catalog.get(name)
        need_ram = info.params * per_param * 1.2 + 0.5e9
        fits_disk = name in on_disk or (downloadable and disk_free > info.disk_bytes + 0.5e9)
        if ram_available >= need_ram and fits_disk:
            where = "on disk" if name in on_disk else "downloadable"
            return Recommendation(name, dtype, f"{where}; needs about {_gb(need_ram)} of RAM in {dtype}, "
                                               f"{_gb(ram_available)} available")
    why = "no model hub answers" if not downloadable else "the catalog models do not fit in free RAM/disk"
    return Recommendation(catalog.OFFLINE_MODEL, "float32", f"{why}: the offline model (from PyPI) works here")


def _on_disk() -> set[str]:
    return {name for name, info in catalog.CATALOG.items() if name != catalog.OFFLINE_MODEL
            and find_local([info.hf_id], [info.modelscope_id])}


def report(probe: bool = True, timeout: float = 3.0, sources: dict[str, str] | None = None) -> Report:
    """Collect the environment report: system, torch/GPU, CPU, RAM, disk, packages, env vars, hubs.

    The model sources are probed in parallel, and at the same time as the rest is collected, so the
    report takes about ``timeout`` seconds at most even with no network.

    Args:
        probe: probe huggingface.co, hf-mirror.com, modelscope.cn (and ``$HF_ENDPOINT`` if set).
        timeout: seconds to wait for each source.
        sources: name -> URL to probe instead of the default ones (see ``qwenlab.hub.default_sources``).

    Taught in ``01_environment.ipynb``.
    """
    start = time.perf_counter()
    probes: list[Probe] = []
    probe_time = [0.0]
    worker = None
    if probe:
        def run() -> None:
            t0 = time.perf_counter()
            probes.extend(probe_hubs(timeout, sources))
            probe_time[0] = time.perf_counter() - t0

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
    import psutil
    import torch

    checks = _system_checks() + _torch_checks(torch) + _cpu_checks(psutil)
    checks += [_ram_check(psutil), _disk_check()] + package_checks() + _env_checks()
    if worker is not None:
        worker.join(timeout + 2)
        checks += _probe_checks(probes)
    native = bf16_native("cuda" if torch.cuda.is_available() else "cpu")[0]
    rec = recommend(psutil.virtual_memory().available, free_bytes(models_dir()), native,
                    any(p.ok for p in probes), _on_disk())
    checks.append(Check("recommended model", f"{rec.model} ({rec.dtype})", "PASS", rec.why))
    return Report(checks, rec, time.perf_counter() - start, probe_time[0])


# ---- for the class dashboard (``qwenlab doctor --send``) -----------------------------------------------------


def ready_model() -> str | None:
    """The course model that is ready on this disk now: the default one, else another catalog model, else the
    offline model when its converted folder checks out; None when there is none (nothing is downloaded)."""
    on_disk = _on_disk()
    for name in (catalog.DEFAULT_MODEL, *sorted(on_disk)):
        if name in on_disk:
            return name
    return catalog.OFFLINE_MODEL if check_offline_folder().ready else None


def student_report(rep: Report, name: str, decode_tok_s: float | None = None, decode_note: str = "") -> StudentReport:
    """What ``qwenlab doctor --send`` sends to the teacher's dashboard: this machine (OS, RAM, free disk, Python,
    torch), the model ready on disk, the decode speed measured on it (or why there is none), and every check
    of ``rep`` with its advice.

    Args:
        rep: the doctor's report (:func:`report`).
        name: what the teacher's page calls this laptop (the student's name or seat; default the host name).
        decode_tok_s: tokens per second of a short greedy decode, when one was measured.
        decode_note: how it was measured, or why it was not.

    Taught in ``docs/teacher.md``.
    """
    import psutil
    import torch

    model = ready_model()
    return StudentReport(
        name=name, os=f"{platform.system()} {platform.release()} ({platform.machine()})",
        python=platform.python_version(), torch=torch.__version__,
        ram_gb=round(psutil.virtual_memory().total / 1e9, 1), disk_free_gb=round(free_bytes(models_dir()) / 1e9, 1),
        model=model or "", model_ready=model is not None,
        decode_tok_s=None if decode_tok_s is None else round(decode_tok_s, 1), decode_note=decode_note,
        checks=tuple(CheckLine(c.name, c.status, c.value, c.advice) for c in rep.checks),
    )
