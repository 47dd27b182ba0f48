"""docs/seed-errata.md points at notebook sections that exist and say what it claims (issue #13 item 4).

Each entry's "In the course" paragraph starts with one marker (✅ runs live, 📝 described, ⏳ to be added,
🖥️ needs hardware the course lacks) and cites `notebooks/NN_x.ipynb` §N "title". These tests fail when a notebook
section is renumbered or renamed, when a ✅ section no longer runs the seed's line, or when the summary table
drifts from the entries. No model is loaded.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "seed-errata.md"
MARKERS = ("✅", "📝", "⏳", "🖥️")

NB_REF = re.compile(r'`notebooks/(\d\d_\w+)\.ipynb` §(\d+(?:\.\d+)?)(?: "([^"]+)")?')
DOC_REF = re.compile(r"`docs/([\w-]+\.md)` §(\d+)")
COURSE = re.compile(r"- \*\*课程 / In the course\*\* — (.*?)(?=\n\n|\n---|\Z)", re.S)
HEADING = re.compile(r"^(#{2,3}) (?:(\d+\.\d+)|(\d+)\.)\s*(.*)$")


@dataclass(frozen=True)
class Live:
    """What a ✅ entry's section must contain: `code` in its code cells, `text` anywhere in it."""

    notebook: str
    section: str
    code: tuple[str, ...]
    text: tuple[str, ...] = ()


# The seed's line (or the key token of it) that each ✅ entry's cited section really runs.
LIVE: dict[str, tuple[Live, ...]] = {
    "E04": (
        Live(
            "01_environment",
            "5",
            ("echo pip install transformers>=4.37.0 accelerate",),
            ("pip install transformers>=4.37.0 accelerate tiktoken einops scipy",),
        ),
    ),
    "E05": (
        Live(
            "05_chat",
            "5",
            ("import transformers_stream_generator", "DisjunctiveConstraint", "TextIteratorStreamer"),
            ("transformers_stream_generator==0.0.4",),
        ),
    ),
    "E08": (
        Live(
            "02_download",
            "9",
            ("os.system(", "huggingface-cli download --resume-download"),
            ("huggingface-cli download --resume-download Qwen/Qwen3-0.6B",),
        ),
    ),
    "E09": (Live("02_download", "9", ("local_dir_use_symlinks=False",)),),
    "E11": (
        Live("01_environment", "6", ('os.environ["HF_ENDPOINT"] = "https://hf-mirror.com"', "hf_constants.ENDPOINT")),
    ),
    "E14": (
        Live(
            "02_download",
            "10",
            ("cache_dir=", 'revision="master"'),
            ('model_name = "/root/autodl-tmp/model/Qwen/Qwen3-0.6B"',),
        ),
    ),
    "E16": (
        Live(
            "00_quickstart",
            "10",
            ('"qwen/Qwen-0.5B"', "UnknownModelError"),
            ('AutoTokenizer.from_pretrained("qwen/Qwen-0.5B", trust_remote_code=True)',),
        ),
    ),
    "E17": (
        Live(
            "00_quickstart",
            "7",
            ('tokenizer(question, return_tensors="pt")', '"Qwen/Qwen1.5-0.5B"'),
            ('model_id = "qwen/Qwen1.5-0.5B"',),
        ),
    ),
    "E18": (Live("00_quickstart", "1", ("__module__", 'glob("*.py")'), ("trust_remote_code",)),),
    "E19": (Live("00_quickstart", "8", ("torch_dtype=",), ('torch_dtype="auto",',)),),
    "E20": (
        Live(
            "00_quickstart",
            "8",
            ('device_map="cuda:0"', 'inputs.to("cuda")'),
            ('device = "cuda" # the device to load the model onto',),
        ),
    ),
    "E21": (Live("00_quickstart", "6", ("describe(model)",), ("参数量仅 5 亿，占用内存约 2GB，CPU 也能流畅运行。",)),),
    "E22": (
        Live(
            "00_quickstart",
            "7",
            ('tokenizer(question, return_tensors="pt")',),
            ('inputs = tokenizer(prompt, return_tensors="pt")',),
        ),
    ),
    "E23": (Live("00_quickstart", "8", ('"<|assistant|>" in tokenizer.get_vocab()',), ("自动加上 <|assistant|>",)),),
    "E24": (Live("03_tokenizer", "7", ('{"role": "system", "content": SYS_PROMPT}', "NameError")),),
    "E25": (Live("03_tokenizer", "3", ('return_tensors="tf"',), ('"tf" → TensorFlow 张量',)),),
    "E26": (
        Live(
            "03_tokenizer",
            "2",
            ('tokenizer.encode("你好")', "tokenizer.decode([108386, 103924])"),
            ('把 "你好" 变成 [108386, 103924]',),
        ),
    ),
    "E28": (
        Live(
            "00_quickstart",
            "5",
            ("tokenizer.decode(output_ids[0])",),
            ("tokenizer.decode(pred.cpu()[0], skip_special_tokens=True)",),
        ),
    ),
    "E29": (Live("04_generate", "2", ("model.generate(**inputs)", "parameter_sources(model)")),),
    "E30": (Live("04_generate", "8", ("32768", "tokens_per_second", "kv_bytes_per_token"), ("max_new_tokens=32768",)),),
    "E32": (
        Live("06_thinking", "2", ("output_ids[::-1].index(151668)",)),
        Live("06_thinking", "4", ("cut_ids[::-1].index(151668)",)),
    ),
    "E33": (
        Live("00_quickstart", "8", ('model.chat(tokenizer, "你好", history=None)',)),
        Live("05_chat", "1", ('model.chat(tokenizer, "你好", history=None)',)),
        Live("07_quantization", "11", ('model.chat(tokenizer, "你好", history=None)',)),
    ),
    "E34": (Live("05_chat", "1", ("我叫什么名字？",)),),
    "E36": (
        Live(
            "07_quantization",
            "11",
            ('model.chat(tokenizer, "你好", history=None)',),
            ("接下来，可使用和8.8.4节一致的方法调用量化模型。", '"qwen/Qwen1.5-0.5B-Chat",'),
        ),
    ),
    "E42": (
        Live(
            "08_serve",
            "3.1",
            ('"qwen/Qwen1.5-0.5B-Chat-GGUF", "lm-studio", "http://localhost:1234/v1"',),
            ("Model Name: qwen/Qwen1.5-0.5B-Chat-GGUF",),
        ),
    ),
}


@dataclass
class Section:
    titles: list[str] = field(default_factory=list)
    code: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Entry:
    id: str
    marker: str
    course: str
    refs: tuple[tuple[str, str, str | None], ...]


def _doc() -> str:
    return DOC.read_text(encoding="utf-8")


@cache
def notebook_sections(stem: str) -> dict[str, Section]:
    """Numbered sections of a notebook: `## N.` and `### N.M` headings outside code fences, with their cells."""
    cells = json.loads((ROOT / "notebooks" / f"{stem}.ipynb").read_text(encoding="utf-8"))["cells"]
    sections: dict[str, Section] = {}
    top: str | None = None
    sub: str | None = None
    for cell in cells:
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            fenced = False
            for line in source.splitlines():
                fenced ^= line.lstrip().startswith("```")
                match = None if fenced else HEADING.match(line)
                if match:
                    level, subnumber, number, title = match.groups()
                    if level == "##" and number:
                        top, sub = number, None
                        sections.setdefault(top, Section()).titles.append(title)
                    elif level == "###" and subnumber:
                        sub = subnumber
                        sections.setdefault(sub, Section()).titles.append(title)
                elif not fenced and line.startswith("## "):
                    top = sub = None  # 小结 / 练习: outside every numbered section
                elif not fenced and line.startswith("### ") and sub:
                    sub = None
                for key in (top, sub):
                    if key:
                        sections[key].text.append(line)
        else:
            for key in (top, sub):
                if key:
                    sections[key].code.append(source)
                    sections[key].text.append(source)
    return sections


def entries() -> list[Entry]:
    parts = re.split(r"(?m)^### (E\d\d) ", _doc())
    found = []
    for eid, body in zip(parts[1::2], parts[2::2], strict=True):
        match = COURSE.search(body)
        assert match, f"{eid} has no 'In the course' paragraph"
        course = match.group(1)
        marker = next((m for m in MARKERS if course.startswith(m)), "")
        found.append(Entry(eid, marker, course, tuple(NB_REF.findall(course))))
    return found


def all_notebook_refs() -> list[tuple[str, str, str | None]]:
    return sorted({(nb, sec, title or None) for nb, sec, title in NB_REF.findall(_doc())}, key=str)


def test_entries_run_from_e01_to_e42_each_with_one_marker_and_a_notebook() -> None:
    found = entries()
    assert [e.id for e in found] == [f"E{n:02d}" for n in range(1, 43)]
    for e in found:
        assert e.marker, f"{e.id}: the course paragraph must start with one of {MARKERS}"
        rest = e.course[len(e.marker) :]
        assert not any(m in rest for m in MARKERS), f"{e.id}: one marker per entry; put the rest in words"
        assert e.refs, f"{e.id}: cites no `notebooks/NN_x.ipynb` §N"
        if e.marker == "⏳":
            assert "待补" in e.course, f"{e.id}: a ⏳ entry must say where the seed's line should go (待补)"


@pytest.mark.parametrize(
    ("stem", "number", "title"), all_notebook_refs(), ids=[f"{nb[:2]}-s{sec}" for nb, sec, _ in all_notebook_refs()]
)
def test_notebook_reference_names_an_existing_section(stem: str, number: str, title: str | None) -> None:
    assert (ROOT / "notebooks" / f"{stem}.ipynb").exists(), f"no notebook {stem}.ipynb"
    sections = notebook_sections(stem)
    level = "###" if "." in number else "##"
    assert number in sections, f"{stem} has no '{level} {number}.' heading (renumbered?): {sorted(sections)}"
    titles = sections[number].titles
    assert len(titles) == 1, f"{stem} has {len(titles)} headings numbered {number}: {titles}"
    if title:
        assert title in titles[0], f"{stem} §{number} is now {titles[0]!r}, the errata says {title!r}"


def test_course_paragraphs_have_no_section_sign_without_its_file() -> None:
    for e in entries():
        bare = DOC_REF.sub("", NB_REF.sub("", e.course))
        assert "§" not in bare, f"{e.id}: write every section as `notebooks/NN_x.ipynb` §N or `docs/x.md` §N"


def test_docs_references_name_existing_sections() -> None:
    refs = set(DOC_REF.findall(_doc()))
    assert refs
    for name, number in sorted(refs):
        text = (ROOT / "docs" / name).read_text(encoding="utf-8")
        assert re.search(rf"(?m)^## {number}\. ", text), f"docs/{name} has no '## {number}.' heading"


@pytest.mark.parametrize("eid", sorted(LIVE))
def test_live_entry_section_runs_the_seed_line(eid: str) -> None:
    entry = next(e for e in entries() if e.id == eid)
    assert entry.marker == "✅", f"{eid} is {entry.marker} now: drop it from LIVE"
    cited = {(nb, sec) for nb, sec, _ in entry.refs}
    for live in LIVE[eid]:
        assert (live.notebook, live.section) in cited, f"{eid} no longer cites {live.notebook} §{live.section}"
        sections = notebook_sections(live.notebook)
        assert live.section in sections, f"{live.notebook} has no section {live.section} ({eid})"
        section = sections[live.section]
        code, text = "\n".join(section.code), "\n".join(section.text)
        for token in live.code:
            assert token in code, f"{live.notebook} §{live.section} no longer runs {token!r} ({eid})"
        for token in live.text:
            assert token in text, f"{live.notebook} §{live.section} no longer quotes {token!r} ({eid})"


def test_every_live_entry_says_what_it_runs() -> None:
    live = {e.id for e in entries() if e.marker == "✅"}
    assert live == set(LIVE), f"✅ entries without a LIVE check: {sorted(live - set(LIVE))}"


def test_summary_table_matches_the_entries() -> None:
    rows = dict(re.findall(r"(?m)^\| (E\d\d) \|.*\| (\S+ \d\d §[\d.]+) \|$", _doc()))
    for e in entries():
        nb, sec, _ = e.refs[0]
        assert rows.get(e.id) == f"{e.marker} {nb[:2]} §{sec}", f"summary row {e.id} disagrees with its entry"
    counts = Counter(e.marker for e in entries())
    stated = re.search(r"✅ (\d+) · 📝 (\d+) · ⏳ (\d+) · 🖥️ (\d+)", _doc())
    assert stated, "the summary lost its marker counts"
    assert [int(n) for n in stated.groups()] == [counts[m] for m in MARKERS]
