"""The classroom kit behind ``qwenlab mirror``: a package index and a live class dashboard.

- :mod:`~qwenlab.classroom.wheelhouse`: the teacher downloads, the day before, every wheel the students'
  laptops need (Windows, macOS, Linux; Python 3.10-3.12) into one folder (``qwenlab wheelhouse``).
- :mod:`~qwenlab.classroom.index`: that folder served as a PEP 503 "simple" index by the classroom mirror,
  so 40 laptops install the course from the teacher's machine (``--pip-mirror http://TEACHER:8090/simple``).
- :mod:`~qwenlab.classroom.dashboard`: students send their ``qwenlab doctor`` report
  (``qwenlab doctor --send http://TEACHER:8090``); the teacher's page ``/class`` lists every laptop.

The HTTP side is :class:`qwenlab.mirror.MirrorServer` (one process, one port, one class code); this
subpackage holds what it serves. Taught in ``docs/teacher.md``.
"""

from __future__ import annotations

from .dashboard import (
    MAX_REPORT_BYTES, REPORTS_PATH, ClassBoard, ReportError, ReportSendError, StudentReport, send_report,
)
from .index import PackageIndex, normalize_name
from .wheelhouse import STUDENT_TARGETS, Target, TargetResult, WheelhouseReport, build, course_requirements

__all__ = [
    "MAX_REPORT_BYTES", "REPORTS_PATH", "ClassBoard", "ReportError", "ReportSendError", "StudentReport",
    "send_report", "PackageIndex", "normalize_name", "STUDENT_TARGETS", "Target", "TargetResult",
    "WheelhouseReport", "build", "course_requirements",
]
