"""Run every notebook headless and write executed copies + HTML: ``make course``.

Prints a table notebook -> ok/failed -> seconds and exits non-zero if any notebook failed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbconvert import HTMLExporter


def run_one(src: Path, out_dir: Path, timeout: int = 900) -> tuple[bool, float, str]:
    nb = nbformat.read(src, as_version=4)
    start = time.perf_counter()
    ok, error = True, ""
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(src.parent)}}).execute()
    except CellExecutionError as err:
        ok, error = False, str(err).strip().splitlines()[-1] if str(err).strip() else "cell failed"
    seconds = time.perf_counter() - start
    nbformat.write(nb, out_dir / src.name)
    html, _ = HTMLExporter().from_notebook_node(nb)
    (out_dir / src.with_suffix(".html").name).write_text(html, encoding="utf-8")
    return ok, seconds, error


def main(src_dir: str = "notebooks", out: str = "build/course") -> int:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for src in sorted(Path(src_dir).glob("[0-9][0-9]_*.ipynb")):
        print(f"running {src.name} ...", flush=True)
        rows.append((src.name, *run_one(src, out_dir)))
    width = max((len(r[0]) for r in rows), default=10)
    print(f"\n{'notebook':<{width}}  result  seconds")
    for name, ok, seconds, error in rows:
        print(f"{name:<{width}}  {'ok' if ok else 'FAILED':<6}  {seconds:7.1f}" + (f"   {error}" if error else ""))
    print(f"\nexecuted copies and HTML in {out_dir}/")
    return 0 if all(r[1] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
