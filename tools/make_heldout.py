"""Write qwenlab's held-out quality set: ``qwenlab/data/heldout/questions.json`` (240 short questions,
120 zh + 120 en, with accepted answers and a fixed tune/report split) and ``text_zh.txt`` /
``text_en.txt`` (held-out prose for next-token agreement, KL divergence and perplexity).

Run once by the maintainers (``python tools/make_heldout.py``); the files are committed so every
run of ``qwenlab bench quant --quality`` measures the same data. Nothing here was used to build or tune
the fast CPU recipe (its calibration text is ``qwenlab/data/calibration.txt``).

The split: questions are generated in a fixed order with a fixed seed; every 6th one (index % 6 == 0,
40 in all, 20 zh + 20 en) is ``tune`` — the only part a recipe may be tuned on — and the other 200 are
``report``, the part every published number comes from.

The prose is the course's own writing (notebook Markdown cells for zh; qwenlab's own docstrings and
docs/architecture.md for en), so it carries no one else's copyright; none of it is in the
calibration text or the 14 probes.
"""

from __future__ import annotations

import ast
import json
import random
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "qwenlab" / "data" / "heldout"
SEED = 20261130

# (en country, zh country, en capital, zh capital)
CAPITALS = [
    ("Italy", "意大利", "Rome", "罗马"), ("Spain", "西班牙", "Madrid", "马德里"),
    ("Russia", "俄罗斯", "Moscow", "莫斯科"), ("China", "中国", "Beijing", "北京"),
    ("Egypt", "埃及", "Cairo", "开罗"), ("Greece", "希腊", "Athens", "雅典"),
    ("Austria", "奥地利", "Vienna", "维也纳"), ("Portugal", "葡萄牙", "Lisbon", "里斯本"),
    ("Thailand", "泰国", "Bangkok", "曼谷"), ("South Korea", "韩国", "Seoul", "首尔"),
    ("Canada", "加拿大", "Ottawa", "渥太华"), ("Australia", "澳大利亚", "Canberra", "堪培拉"),
    ("Ireland", "爱尔兰", "Dublin", "都柏林"), ("Norway", "挪威", "Oslo", "奥斯陆"),
    ("Sweden", "瑞典", "Stockholm", "斯德哥尔摩"), ("Poland", "波兰", "Warsaw", "华沙"),
    ("Argentina", "阿根廷", "Buenos Aires", "布宜诺斯艾利斯"), ("Kenya", "肯尼亚", "Nairobi", "内罗毕"),
    ("Vietnam", "越南", "Hanoi", "河内"), ("India", "印度", "New Delhi", "新德里"),
    ("Mexico", "墨西哥", "Mexico City", "墨西哥城"), ("Turkey", "土耳其", "Ankara", "安卡拉"),
    ("Finland", "芬兰", "Helsinki", "赫尔辛基"), ("Denmark", "丹麦", "Copenhagen", "哥本哈根"),
]
# (en word, zh word)
WORDS = [
    ("apple", "苹果"), ("water", "水"), ("book", "书"), ("cat", "猫"), ("dog", "狗"), ("sun", "太阳"),
    ("moon", "月亮"), ("tree", "树"), ("car", "汽车"), ("red", "红色"), ("teacher", "老师"),
    ("student", "学生"), ("computer", "电脑"), ("rain", "雨"), ("river", "河"), ("mountain", "山"),
    ("bird", "鸟"), ("fish", "鱼"), ("milk", "牛奶"), ("rice", "米饭"), ("school", "学校"),
    ("friend", "朋友"), ("music", "音乐"), ("flower", "花"),
]
OPPOSITES = [("hot", "cold", "热", "冷"), ("big", "small", "大", "小"), ("up", "down", "上", "下"),
             ("fast", "slow", "快", "慢"), ("old", "new", "旧", "新"), ("long", "short", "长", "短"),
             ("open", "close", "开", "关"), ("left", "right", "左", "右"), ("black", "white", "黑", "白"),
             ("day", "night", "白天", "晚上"), ("high", "low", "高", "低"), ("buy", "sell", "买", "卖")]
DAYS_EN = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
DAYS_ZH = ["星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期日"]
ELEMENTS = [("gold", "金", "Au"), ("silver", "银", "Ag"), ("iron", "铁", "Fe"), ("oxygen", "氧", "O"),
            ("hydrogen", "氢", "H"), ("carbon", "碳", "C"), ("sodium", "钠", "Na"), ("copper", "铜", "Cu"),
            ("helium", "氦", "He"), ("nitrogen", "氮", "N"), ("calcium", "钙", "Ca"), ("zinc", "锌", "Zn")]
PY_WORDS = ["hello", "qwen", "python", "laptop", "token", "model", "chat", "cpu"]


def _arith(rng: random.Random, lang: str) -> dict:
    a, b = rng.randint(11, 89), rng.randint(11, 89)
    op = rng.choice(["+", "-", "*"])
    if op == "*":
        a, b = rng.randint(3, 19), rng.randint(3, 12)
    value = {"+": a + b, "-": a - b, "*": a * b}[op]
    zh_op = {"+": "加", "-": "减", "*": "乘以"}[op]
    en_op = {"+": "plus", "-": "minus", "*": "times"}[op]
    q = (f"{a} {zh_op} {b} 等于多少？只回答数字。" if lang == "zh"
         else f"What is {a} {en_op} {b}? Answer with a number only.")
    return {"question": q, "expected": [str(value)], "kind": "arithmetic"}


def _capital(rng: random.Random, lang: str) -> dict:
    en, zh, cap_en, cap_zh = rng.choice(CAPITALS)
    q = (f"{zh}的首都是哪座城市？只回答城市名。" if lang == "zh"
         else f"What is the capital of {en}? Answer with the city name only.")
    return {"question": q, "expected": [cap_zh, cap_en] if lang == "zh" else [cap_en], "kind": "capital"}


def _translate(rng: random.Random, lang: str) -> dict:
    en, zh = rng.choice(WORDS)
    if lang == "zh":
        return {"question": f"“{en}”的中文意思是什么？只回答一个词。", "expected": [zh], "kind": "translate"}
    return {"question": f"Translate the Chinese word “{zh}” into English. Answer with one word.",
            "expected": [en], "kind": "translate"}


def _larger(rng: random.Random, lang: str) -> dict:
    a, b = rng.sample(range(10, 999), 2)
    q = (f"{a} 和 {b} 哪个更大？只回答数字。" if lang == "zh"
         else f"Which is larger, {a} or {b}? Answer with the number only.")
    return {"question": q, "expected": [str(max(a, b))], "kind": "compare"}


def _sequence(rng: random.Random, lang: str) -> dict:
    start, step = rng.randint(1, 20), rng.randint(2, 9)
    seq = [start + i * step for i in range(4)]
    shown = ", ".join(map(str, seq))
    q = (f"数列 {shown} 的下一个数是多少？只回答数字。" if lang == "zh"
         else f"What number comes next: {shown}? Answer with the number only.")
    return {"question": q, "expected": [str(start + 4 * step)], "kind": "sequence"}


def _day(rng: random.Random, lang: str) -> dict:
    i = rng.randrange(7)
    if lang == "zh":
        return {"question": f"{DAYS_ZH[i]}的后一天是星期几？只回答星期几。",
                "expected": [DAYS_ZH[(i + 1) % 7]] + (["星期天"] if i == 5 else []), "kind": "day"}
    return {"question": f"What day comes after {DAYS_EN[i]}? Answer with one word.",
            "expected": [DAYS_EN[(i + 1) % 7]], "kind": "day"}


def _opposite(rng: random.Random, lang: str) -> dict:
    en, en_opp, zh, zh_opp = rng.choice(OPPOSITES)
    if lang == "zh":
        return {"question": f"“{zh}”的反义词是什么？只回答一个字或词。", "expected": [zh_opp], "kind": "opposite"}
    return {"question": f"What is the opposite of “{en}”? Answer with one word.", "expected": [en_opp],
            "kind": "opposite"}


def _element(rng: random.Random, lang: str) -> dict:
    en, zh, sym = rng.choice(ELEMENTS)
    q = (f"{zh}的化学元素符号是什么？只回答符号。" if lang == "zh"
         else f"What is the chemical symbol of {en}? Answer with the symbol only.")
    return {"question": q, "expected": [sym], "kind": "element"}


def _python(rng: random.Random, lang: str) -> dict:
    word = rng.choice(PY_WORDS)
    n = rng.randint(2, 5)
    form = rng.choice(["len", "upper", "repeat"])
    code, value = {"len": (f"len('{word}')", str(len(word))), "upper": (f"'{word}'.upper()", word.upper()),
                   "repeat": (f"len('{word}' * {n})", str(len(word) * n))}[form]
    q = (f"在 Python 中，{code} 的结果是什么？只回答结果。" if lang == "zh"
         else f"In Python, what does {code} return? Answer with the result only.")
    return {"question": q, "expected": [value], "kind": "python"}


KINDS = [_arith, _capital, _translate, _larger, _sequence, _day, _opposite, _element, _python]


def questions(per_lang: int = 120) -> list[dict]:
    """240 distinct questions (120 zh, 120 en) in a fixed order, each with its split."""
    rng = random.Random(SEED)
    out: list[dict] = []
    seen: set[str] = set()
    for lang in ("zh", "en"):
        made = tries = 0
        while made < per_lang:  # kinds in turn; a repeat moves on to the next kind
            item = KINDS[tries % len(KINDS)](rng, lang)
            tries += 1
            if item["question"] in seen:
                continue
            seen.add(item["question"])
            out.append({"lang": lang, **item})
            made += 1
    for i, item in enumerate(out):
        item["split"] = "tune" if i % 6 == 0 else "report"
    return out


def _markdown_cells(path: Path) -> list[str]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown"]


def _prose(text: str) -> str:
    """Keep prose lines: drop code fences, tables, headings' markup, links' targets and HTML."""
    lines, in_code = [], False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            in_code = not in_code
            continue
        if in_code or line.lstrip().startswith(("|", "<", "!", "---")):
            continue
        line = re.sub(r"\]\([^)]*\)", "]", line).lstrip("#>*- ").strip()
        if len(line) >= 12:
            lines.append(line)
    return "\n".join(lines)


def zh_text() -> str:
    parts = [_prose(cell) for nb in sorted((ROOT / "notebooks").glob("*.ipynb")) for cell in _markdown_cells(nb)]
    return "\n".join(p for p in parts if p)


def _docstrings(path: Path) -> str:
    """The module's and its functions' docstrings, paragraphs joined into lines (doctest lines dropped)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = [tree] + [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    docs = [ast.get_docstring(n) or "" for n in nodes]
    paragraphs = [" ".join(line.strip() for line in para.splitlines() if not line.strip().startswith((">>>", "...")))
                  for doc in docs for para in doc.split("\n\n")]
    return "\n".join(p for p in paragraphs if len(p) > 60 and not p.endswith(":"))


def en_text() -> str:
    texts = [_docstrings(path) for path in sorted((ROOT / "qwenlab").rglob("*.py"))]
    texts.append((ROOT / "docs" / "architecture.md").read_text(encoding="utf-8"))
    lines = "\n".join(_prose(t) for t in texts).splitlines()
    return "\n".join(line for line in lines if not re.search(r"[\u4e00-\u9fff]", line))


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    items = questions()
    lines = ",\n".join("  " + json.dumps(q, ensure_ascii=False) for q in items)
    (OUT / "questions.json").write_text(f"[\n{lines}\n]\n", encoding="utf-8")
    (OUT / "text_zh.txt").write_text(zh_text()[:9000] + "\n", encoding="utf-8")
    (OUT / "text_en.txt").write_text(en_text()[:16000] + "\n", encoding="utf-8")
    print(f"{len(items)} questions, {sum(q['split'] == 'report' for q in items)} report; texts written to {OUT}")


if __name__ == "__main__":
    main()
