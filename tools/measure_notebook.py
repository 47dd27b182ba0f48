"""Run one notebook headless and print its wall time and peak memory (the numbers in its first cell).

    python tools/measure_notebook.py notebooks/06_thinking.ipynb [build/measured/]

Peak memory = the largest sum of resident memory of the kernel and its child processes, sampled every
0.2 s. The executed copy is written to the output folder (default build/measured/) so outputs can be read.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import nbformat
import psutil
from nbclient import NotebookClient


def _watch(client: NotebookClient, peak: list[float], done: threading.Event) -> None:
    while not done.is_set():
        km = getattr(client, "km", None)
        pid = getattr(getattr(km, "provisioner", None), "pid", None) if km else None
        if pid:
            try:
                proc = psutil.Process(pid)
                rss = proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
                peak[0] = max(peak[0], rss)
            except psutil.Error:
                pass
        time.sleep(0.2)


def main(src: Path, out_dir: Path) -> int:
    nb = nbformat.read(src, as_version=4)
    client = NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(src.parent)}})
    peak, done = [0.0], threading.Event()
    watcher = threading.Thread(target=_watch, args=(client, peak, done), daemon=True)
    start = time.perf_counter()
    watcher.start()
    try:
        client.execute()
    finally:
        done.set()
        seconds = time.perf_counter() - start
        out_dir.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, out_dir / src.name)
    print(f"{src.name}: {seconds:.0f} s, peak memory {peak[0] / 1e9:.1f} GB -> {out_dir / src.name}")
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args:
        raise SystemExit(__doc__)
    raise SystemExit(main(Path(args[0]), Path(args[1]) if len(args) > 1 else Path("build/measured")))
