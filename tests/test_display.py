"""qwenlab.display: one table type for text and HTML."""

from __future__ import annotations

from qwenlab.display import KeyValueTable, Table, text_width


def test_text_columns_line_up_by_display_width_with_chinese_cells():
    table = Table(["词元", "id"], [["你好", 108386], ["world", 1879]], align_right=[1])
    lines = str(table).splitlines()
    # the id column ends at the same terminal column on every line, though 你好 is 2 chars wide 4
    assert len({text_width(line) for line in lines}) == 1
    assert lines[1].startswith("你好") and lines[1].endswith("108386")


def test_html_escapes_cells_and_keeps_line_breaks_only_when_needed():
    html = Table(["a"], [["<script>x</script>"]])._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "pre-wrap" not in html
    assert "pre-wrap" in Table(["a"], [["one\ntwo"]])._repr_html_()


def test_none_cells_show_a_dash_and_markdown_escapes_pipes():
    table = Table(["k", "v"], [["a|b", None]], title="t", notes=["n"])
    assert "—" in str(table)
    md = table.to_markdown()
    assert "| a/b | — |" in md and md.startswith("- t") and md.endswith("- n")


def test_key_value_table_labels_are_headers_in_html_and_aligned_in_text():
    class Summary(KeyValueTable):
        key_width = 10

        def rows(self):
            return [("模型", "offline"), ("size", "0.49 GB")]

    text = str(Summary()).splitlines()
    assert [text_width(line.split("  ")[0].rstrip()) for line in text] == [4, 4]
    # values start at the same terminal column (模型 is 2 characters but 4 columns wide)
    assert text_width(text[0][:text[0].index("offline")]) == text_width(text[1][:text[1].index("0.49")]) == 11
    assert "<th style='text-align:left'>模型</th>" in Summary()._repr_html_()
