"""Remove outputs and execution counts from notebooks (they are committed clean) and give every cell the
``id`` nbformat 4.5 requires (new cells written by a script often lack one): ``make strip``."""

import json
import sys
import uuid

import nbformat


def strip(path: str) -> bool:
    with open(path, encoding="utf-8") as f:
        changed = any("id" not in cell for cell in json.load(f)["cells"])  # nbformat.read fills them in silently
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if "id" not in cell:
            cell["id"], changed = uuid.uuid4().hex[:8], True
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None):
            cell.outputs, cell.execution_count, changed = [], None, True
        if cell.get("metadata", {}).pop("execution", None) is not None:
            changed = True
    if changed:
        nbformat.write(nb, path)
    return changed


if __name__ == "__main__":
    for p in sys.argv[1:]:
        if strip(p):
            print(f"stripped {p}")
