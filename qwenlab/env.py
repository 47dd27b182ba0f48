"""Environment report: what this machine has for running Qwen (``qwenlab doctor``).

Taught in ``01_environment.ipynb``.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field

__all__ = ["cpu_flags", "cpu_name", "bf16_native", "package_version", "Check", "Report", "report"]


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


@dataclass
class Check:
    """One line of the report: a name, a value, PASS / WARN / FAIL, and what to do."""

    name: str
    value: str
    status: str = "PASS"
    advice: str = ""


@dataclass
class Report:
    """The environment report; ``str()`` for a terminal, ``_repr_html_`` for Jupyter, ``to_json()``."""

    checks: list[Check] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"checks": [asdict(c) for c in self.checks]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2)

    @property
    def ok(self) -> bool:
        return all(c.status != "FAIL" for c in self.checks)

    def __str__(self) -> str:
        width = max((len(c.name) for c in self.checks), default=10)
        lines = []
        for c in self.checks:
            line = f"[{c.status:4}] {c.name:<{width}}  {c.value}"
            if c.advice:
                line += f"\n       {'':<{width}}  -> {c.advice}"
            lines.append(line)
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        import html

        colors = {"PASS": "#1a7f37", "WARN": "#9a6700", "FAIL": "#cf222e"}
        rows = "".join(
            f"<tr><td style='color:{colors.get(c.status, '#000')};font-weight:bold'>{c.status}</td>"
            f"<td>{html.escape(c.name)}</td><td>{html.escape(c.value)}</td><td>{html.escape(c.advice)}</td></tr>"
            for c in self.checks
        )
        return (
            "<table><thead><tr><th>状态</th><th>检查 (check)</th><th>结果</th><th>建议 (advice)</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
        )


def report() -> Report:
    """Collect the environment report (no network access in this minimal version)."""
    import torch

    from .paths import qwenlab_home

    checks = [
        Check("OS", f"{platform.system()} {platform.release()} ({platform.machine()})"),
        Check(
            "Python",
            platform.python_version(),
            "PASS" if sys.version_info >= (3, 10) else "FAIL",
            "" if sys.version_info >= (3, 10) else "qwenlab needs Python >= 3.10",
        ),
        Check("torch", torch.__version__),
        Check("CUDA", torch.version.cuda or "none", "PASS" if torch.cuda.is_available() else "WARN",
              "" if torch.cuda.is_available() else "no GPU: everything runs on the CPU (fine for 0.5B models)"),
        Check("CPU", f"{cpu_name()} ({os.cpu_count()} threads)"),
    ]
    native, why = bf16_native("cpu")
    checks.append(Check("CPU bf16", "native" if native else "emulated", "PASS", why))
    for pkg in ("transformers", "huggingface_hub", "modelscope", "accelerate", "ipywidgets", "jupyterlab"):
        v = package_version(pkg)
        checks.append(Check(pkg, v or "not installed", "PASS" if v else "WARN",
                            "" if v else f"pip install {pkg}"))
    home = qwenlab_home()
    home.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(home).free
    checks.append(Check("free disk", f"{free / 1e9:.1f} GB at {home}", "PASS" if free > 5e9 else "WARN",
                        "" if free > 5e9 else "a model needs 1-2 GB; set QWENLAB_HOME to a bigger disk"))
    return Report(checks)


def cli(argv: list[str], prog: str = "qwenlab doctor", command: str = "doctor") -> int:
    """``qwenlab doctor [--json]``: print the report; exit 1 when a check FAILs."""
    from .cli import make_parser

    parser = make_parser(prog, "Check this machine for running small Qwen models.")
    parser.add_argument("--json", action="store_true", help="print JSON (for a teacher to collect)")
    args = parser.parse_args(argv)
    rep = report()
    print(rep.to_json() if args.json else rep)
    return 0 if rep.ok else 1
