"""Run pip as if on another platform: ``python -m qwenlab.classroom.targetpip MARKERS_JSON PIP_ARGS...``.

``pip download --platform win_amd64 --python-version 3.11`` picks Windows wheels, but it still evaluates
environment markers (``colorama; platform_system == "Windows"``, ``pywinpty; os_name == "nt"``) against the
machine it runs on (pip issues #4304, #6117, #10050: pip treats this as a feature request). A Windows
wheelhouse built on Linux would lack Windows-only dependencies, and a macOS one would ask for Linux-only
ones (torch's ``nvidia-*`` wheels, ``triton``) and fail to resolve.

This runs pip in this (separate) process with its marker environment replaced by the target's, the way pex
does for its cross-platform resolves: pip's vendored ``packaging.markers.Marker.evaluate`` reads
``default_environment()`` at call time, so replacing that function is enough. Used by
:func:`qwenlab.classroom.wheelhouse.build`; never imported by the package itself.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def main(argv: list[str]) -> int:
    """``argv``: the marker environment as JSON (keys of PEP 508, e.g. ``{"sys_platform": "win32"}``), then
    pip's own arguments. Returns pip's exit code."""
    if not argv:
        print("usage: python -m qwenlab.classroom.targetpip MARKERS_JSON PIP_ARGS...", file=sys.stderr)
        return 2
    overrides = json.loads(argv[0])
    # pip's private modules, on purpose: this is the one place that changes how pip evaluates markers.
    from pip._vendor.packaging import markers  # noqa: PLC2701

    environment = markers.default_environment()
    environment.update(overrides)

    def target_environment() -> Any:
        return dict(environment)

    markers.default_environment = target_environment
    from pip._internal.cli.main import main as pip_main  # noqa: PLC2701

    return pip_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
