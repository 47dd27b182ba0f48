"""One table type for every result qwenlab shows: aligned text in a terminal, an HTML table in Jupyter.

Result objects build a :class:`Table` (``table()``) and inherit :class:`TableView`, so ``print(result)``
and a notebook cell's rich display come from the same rows. Also: the display width of CJK text and
the CJK fonts matplotlib can use (``cjk_fonts``).

Taught in ``01_environment.ipynb`` (the doctor's report is one) and used by every notebook.
"""

from __future__ import annotations

import html
import unicodedata
from dataclasses import dataclass, field
from collections.abc import Iterable, Sequence
from typing import TypeVar

T = TypeVar("T")

__all__ = ["Table", "TableView", "KeyValueTable", "text_width", "CJK_FONTS", "cjk_fonts", "pick"]

# Fonts with Chinese glyphs, most common first (Linux, Windows, macOS).
CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Micro Hei",
             "WenQuanYi Zen Hei", "Microsoft YaHei", "SimHei", "PingFang SC", "Heiti SC", "Arial Unicode MS")


def text_width(text: str) -> int:
    """Display width in a terminal: CJK and other wide characters take two columns.

    >>> text_width("ab"), text_width("中文")
    (2, 4)
    """
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def cjk_fonts() -> list[str]:
    """The installed fonts of :data:`CJK_FONTS`, in that order (empty when none is installed)."""
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    return [name for name in CJK_FONTS if name in installed]


def _pad(text: str, width: int, right: bool) -> str:
    fill = " " * max(0, width - text_width(text))
    return fill + text if right else text + fill


@dataclass
class Table:
    """Rows of cells with an optional header, shown as aligned text (``str``) or HTML (Jupyter).

    Args:
        header: column titles; empty for a label/value table without a header row.
        rows: one sequence of cells per row; cells are turned into text with ``str`` (``None`` → "—").
        title: a line shown above the table.
        notes: lines shown below it.
        align_right: column indexes whose text is right-aligned in the terminal (numbers).
        css_class: an HTML class for the ``<table>`` (styling in notebooks).
        min_widths: terminal width of a column at least this (label columns keep one width across tables).

    >>> print(Table(["model", "size"], [["offline", "0.49 GB"]]))
    model    size
    offline  0.49 GB
    """

    header: Sequence[str]
    rows: Sequence[Sequence[object]]
    title: str = ""
    notes: Sequence[str] = ()
    align_right: Sequence[int] = ()
    css_class: str = ""
    min_widths: dict[int, int] = field(default_factory=dict)

    def cells(self) -> list[list[str]]:
        """The rows as text (the header not included)."""
        return [["—" if c is None else str(c) for c in row] for row in self.rows]

    def __str__(self) -> str:
        body = self.cells()
        lines = [list(self.header)] + body if self.header else body
        lines_out = [self.title, ""] if self.title else []
        if lines:
            n = max(len(r) for r in lines)
            widths = [max([text_width(r[i]) for r in lines if i < len(r)] + [self.min_widths.get(i, 0)])
                      for i in range(n)]
            for r in lines:
                padded = [_pad(c, widths[i], i in self.align_right) for i, c in enumerate(r)]
                if padded and len(r) == n and n - 1 not in self.align_right:
                    padded[-1] = r[-1]  # no trailing spaces
                lines_out.append("  ".join(padded).rstrip())
        if self.notes:
            lines_out += [""] + list(self.notes)
        return "\n".join(lines_out)

    def _repr_html_(self) -> str:
        cls = f" class='{html.escape(self.css_class)}'" if self.css_class else ""
        head = ("<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in self.header) + "</tr>"
                if self.header else "")
        label_col = not self.header  # a label/value table: the first cell of a row is its label
        body = "".join(
            "<tr>" + "".join(
                f"<th style='text-align:left'>{html.escape(c)}</th>" if label_col and i == 0
                else f"<td>{html.escape(c)}</td>" for i, c in enumerate(row)) + "</tr>"
            for row in self.cells())
        title = f"<p>{'<br>'.join(map(html.escape, self.title.splitlines()))}</p>" if self.title else ""
        notes = "".join(f"<p style='font-size:90%'>{html.escape(n)}</p>" for n in self.notes)
        if any("\n" in c for row in self.cells() for c in row):
            cls += " style='white-space:pre-wrap'"  # inherited: cells keep their line breaks (chat messages)
        return f"{title}<table{cls}>{head}{body}</table>{notes}"

    def to_markdown(self) -> str:
        """A Markdown table (benchmark records, docs)."""
        def line(cells: Sequence[str]) -> str:
            return "| " + " | ".join(c.replace("|", "/") for c in cells) + " |"

        header = list(self.header) or ["", ""]
        out = [f"- {self.title}", ""] if self.title else []
        out += [line(header), "|" + "---|" * len(header)] + [line(r) for r in self.cells()]
        return "\n".join(out + ([""] + [f"- {n}" for n in self.notes] if self.notes else []))


class TableView:
    """Mixin for result objects that show as one :class:`Table`: define ``table()``; ``str()`` and
    Jupyter's rich display follow."""

    def table(self) -> Table:
        raise NotImplementedError

    def __str__(self) -> str:
        return str(self.table())

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()


class KeyValueTable(TableView):
    """Mixin for result objects with ``rows() -> [(label, value), ...]``: a label/value :class:`Table`
    with the labels ``key_width`` wide in the terminal."""

    key_width = 24

    def rows(self) -> list[tuple[str, str]]:
        raise NotImplementedError

    def table(self) -> Table:
        return Table([], self.rows(), min_widths={0: self.key_width - 1})


def pick(items: Iterable[T], attr: str, value: object, what: str = "row") -> T:
    """The first of ``items`` whose ``attr`` equals ``value`` — how every report's ``row(name)`` finds a row;
    a KeyError that lists the names there are otherwise.

    >>> from types import SimpleNamespace as R
    >>> pick([R(name="fp32"), R(name="fast")], "name", "fast").name
    'fast'
    >>> pick([R(name="fp32")], "name", "int4", "variant")
    Traceback (most recent call last):
    KeyError: "No variant 'int4'; there are: fp32."
    """
    items = list(items)
    for item in items:
        if getattr(item, attr) == value:
            return item
    raise KeyError(f"No {what} {value!r}; there are: {', '.join(str(getattr(i, attr)) for i in items)}.")
