"""Shared display helper: a two-column (label, value) table for a terminal and for Jupyter."""

from __future__ import annotations

import html


class KeyValueTable:
    """Mixin for result objects with ``rows() -> [(label, value), ...]``: ``str()`` aligns the labels,
    Jupyter shows an HTML table. ``key_width`` is the label column's width in the terminal."""

    key_width = 24

    def rows(self) -> list[tuple[str, str]]:
        raise NotImplementedError

    def __str__(self) -> str:
        return "\n".join(f"{k:<{self.key_width}} {v}" for k, v in self.rows())

    def _repr_html_(self) -> str:
        body = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                       for k, v in self.rows())
        return f"<table>{body}</table>"
