"""The ipywidgets panels in a real browser: JupyterLab 4 + headless Chromium, driven like a student would.

One JupyterLab server (127.0.0.1, random port and token, a tmp root) and one headless Chromium (shared by
the three tests below) serve three pages, each opened alone in a fresh workspace:

1. ``04_generate.ipynb`` — the course notebook, copied and cut right after the cell that shows the
   SamplingLab (plus one probe cell), run with Run → Run All Cells on the offline model. The test types a
   prompt, clicks Generate, moves the temperature and top_k sliders with the keyboard, clicks Generate
   again, and checks that the chart image and the sampled text changed.
2. ``widgets.ipynb`` — a ChatBox (type a message + Enter, then type + click Send: replies appear) and a
   ThinkingView replaying a constructed Qwen3 reply (thought pane, answer pane, state line; the thought
   folds when its title is clicked).
3. ``broken.ipynb`` — a control: a widget whose frontend module does not exist, to prove that the
   console check below does catch a widget that throws in the browser.

Every page's browser console is read (``goog:loggingPrefs``); a SEVERE entry that is not listed in
``HARMLESS_CONSOLE`` fails the test. Kernel state is read through a probe cell that prints JSON (JupyterLab 4
does not expose ``window.jupyterapp``). Screenshots land in ``build/screenshots/`` for a person to look at.

Needs the Debian packages ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them); without them
the browser test skips and says why. ``test_panels_use_only_stock_ipywidgets`` needs no browser.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.browser import JupyterLabServer, Notebook, chromium_driver, find_chromium, wait_for, write_notebook

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "build" / "screenshots"
NOTEBOOK_04 = ROOT / "notebooks" / "04_generate.ipynb"

# SEVERE browser console entries known to be harmless: (text in the message, why it is harmless). Every other
# SEVERE entry fails the test. JupyterLab 4.6 + Chromium 156 + ipywidgets 8.1 log none on these pages
# (only DEBUG/INFO lines); add an entry here, with its reason, only for noise that is not about the widgets.
HARMLESS_CONSOLE: tuple[tuple[str, str], ...] = ()

# Frontend modules that ship with ipywidgets / jupyterlab_widgets (no custom JS, no build step).
STOCK_MODULES = {"@jupyter-widgets/base", "@jupyter-widgets/controls", "@jupyter-widgets/output"}

PROBE_LAB = """# test probe (not part of the course): what the kernel's SamplingLab holds now
import hashlib, json
print(json.dumps({"prompt": lab.prompt.value, "temperature": lab.temperature.value, "top_k": lab.top_k.value,
                  "kept": lab.last.final.n_kept, "chart": hashlib.sha256(lab.chart.value).hexdigest(),
                  "text": lab.last_result.text if lab.last_result else None,
                  "forward_passes": lab.forward_passes}, ensure_ascii=False))"""

WIDGET_CELLS = [
    'import qwenlab\nmodel, tokenizer = qwenlab.load_model("offline")',
    'from qwenlab.widgets import ChatBox\n'
    'box = ChatBox(qwenlab.Conversation(model, tokenizer, system="你是一个友好的助手，回答简短。", thinking=False,\n'
    '                                   max_new_tokens=24), seed=0)\n'
    'box',
    "# a constructed Qwen3 reply, as in 06_thinking\n"
    "from qwenlab.thinking import THINK_OPEN_ID, THINK_CLOSE_ID\n"
    "from qwenlab.widgets import ThinkingView\n"
    "qwen3_tok = qwenlab.qwen3_tokenizer()\n"
    'IM_END = qwen3_tok.convert_tokens_to_ids("<|im_end|>")\n'
    'thought = "\\n比较 9.11 和 9.9：把它们写成 9.11 和 9.90，小数部分 0.90 > 0.11，所以 9.9 更大。\\n"\n'
    'ids = [THINK_OPEN_ID, *qwen3_tok.encode(thought), THINK_CLOSE_ID, *qwen3_tok.encode("\\n\\n9.9 更大。"), IM_END]\n'
    "view = ThinkingView()\n"
    "view",
    "split = view.play(ids, qwen3_tok, delay=0.01)",
    "# test probe\nimport json\n"
    'print(json.dumps({"history": box.conversation.history, "state": split.state, "thinking": view.thinking,\n'
    '                  "answer": view.answer}, ensure_ascii=False))',
]

BROKEN_CELLS = [
    "import ipywidgets as w, traitlets\n"
    "class Missing(w.DOMWidget):  # a frontend module that does not exist: the browser must complain\n"
    '    _view_module = traitlets.Unicode("qwenlab-test-missing-module").tag(sync=True)\n'
    '    _view_name = traitlets.Unicode("MissingView").tag(sync=True)\n'
    '    _model_module = traitlets.Unicode("qwenlab-test-missing-module").tag(sync=True)\n'
    '    _model_name = traitlets.Unicode("MissingModel").tag(sync=True)\n'
    "Missing()",
]


# ---- no browser needed ----------------------------------------------------------------------------------------


def _widget_tree(widget) -> list:
    import ipywidgets as w

    found = [widget]
    for child in getattr(widget, "children", ()) or ():
        if isinstance(child, w.Widget):
            found += _widget_tree(child)
    return found


def test_panels_use_only_stock_ipywidgets(tiny):
    """Item 6: every view in the three panels is a stock ipywidgets control, so JupyterLab 4, Notebook 7 and
    VS Code render them from the ipywidgets frontend they already ship — no custom JS, no build step."""
    import ipywidgets as w

    import qwenlab
    from qwenlab.widgets import ChatBox, SamplingLab, ThinkingView

    model, tok = tiny
    panels = [SamplingLab(model, tok, draw=False), ChatBox(qwenlab.Conversation(model, tok)), ThinkingView()]
    modules = {}
    for panel in panels:
        assert isinstance(panel.widget, w.Widget) and type(panel.widget).__module__.startswith("ipywidgets")
        for widget in _widget_tree(panel.widget):
            modules[type(widget).__name__] = (widget._view_module, widget._model_module)
    custom = {name: mods for name, mods in modules.items() if not set(mods) <= STOCK_MODULES}
    assert not custom, f"widgets with a custom frontend module: {custom}"
    source = (ROOT / "qwenlab" / "widgets.py").read_text(encoding="utf-8")
    for marker in ("_esm", "anywidget", "_view_module", "Javascript(", "require.config"):
        assert marker not in source, f"qwenlab/widgets.py uses {marker!r}: custom frontend code"


def test_thinking_view_state_line_shows_the_think_tags(qwen3_tok):
    """Found in the browser: the state line was raw HTML, so "closed by </think>" lost its tag on screen."""
    import html

    from qwenlab.thinking import STATES, THINK_CLOSE_ID, THINK_OPEN_ID
    from qwenlab.widgets import ThinkingView

    view = ThinkingView()
    thought = [THINK_OPEN_ID, *qwen3_tok.encode("hmm")]
    for ids, state in ((thought + [THINK_CLOSE_ID, *qwen3_tok.encode("42")], "complete"), (thought, "unfinished")):
        assert view.play(ids, qwen3_tok).state == state
        assert html.escape(STATES[state]) in view.state_html.value and "think>" not in view.state_html.value


# ---- the browser ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium(request):
    found = find_chromium()
    if isinstance(found, str):
        reason = f"browser test skipped: {found}"
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        if reporter is not None and capture is not None:  # printed even without -rs
            with capture.global_and_fixture_disabled():
                reporter.write_line(reason, yellow=True)
        pytest.skip(reason)
    return found


def notebook_04_until_the_lab(folder: Path) -> Path:
    """notebooks/04_generate.ipynb as it is now, cut right after the cell that shows the SamplingLab."""
    nb = json.loads(NOTEBOOK_04.read_text(encoding="utf-8"))
    cells = nb["cells"]
    shows_lab = [i for i, c in enumerate(cells) if c["cell_type"] == "code" and "SamplingLab(" in "".join(c["source"])]
    assert shows_lab, "04_generate.ipynb no longer shows a SamplingLab"
    assert nb["metadata"].get("kernelspec"), "04_generate.ipynb has no kernelspec: JupyterLab would ask for a kernel"
    lab_cell = cells[shows_lab[0]]
    assert re.search(r"^lab\s*=", "".join(lab_cell["source"]), re.M), "the SamplingLab is no longer named `lab`"
    probe = copy.deepcopy(lab_cell) | {"source": PROBE_LAB, "outputs": [], "execution_count": None, "id": "probe"}
    nb["cells"] = [*cells[: shows_lab[0] + 1], probe]
    path = folder / "04_generate.ipynb"
    path.write_text(json.dumps(nb, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def severe(entries: list[dict]) -> list[str]:
    """SEVERE console entries that are not known harmless noise."""
    return [e["message"] for e in entries if e["level"] == "SEVERE"
            and not any(pattern in e["message"] for pattern, _why in HARMLESS_CONSOLE)]


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def shot(element, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    element.screenshot(str(path))
    return path


def slider(nb: Notebook, within, label: str):
    """``(handle, readout)`` of the slider whose description is ``label``."""
    for box in nb.find(".widget-slider", within):
        if any(lbl.text.strip() == label for lbl in nb.find(".widget-label", box)):
            return nb.find(".noUi-handle", box)[0], nb.find(".widget-readout", box)[0]
    raise AssertionError(f"no slider labelled {label!r} in the panel")


def chart_on_screen(nb: Notebook, panel, sha256: str, timeout: float = 45,
                    kernel_chart: Callable[[], str] | None = None) -> bytes:
    """The PNG the panel's image shows, once it is the one the kernel drew (``sha256`` of ``lab.chart.value``).

    The widget frontend decodes binary updates asynchronously, so the probe's printed line can be on screen
    a moment before the new image is. And a slider change that arrives after the probe redraws the chart
    once more: when the screen still differs at the timeout, ``kernel_chart`` asks the kernel again, and the
    screen must then show that newer chart.
    """
    seen: list[str] = []

    def shown(want: str) -> bytes | None:
        images = nb.find("img", panel)
        png = nb.image_bytes(images[0])
        seen.append(f"{hashlib.sha256(png).hexdigest()[:12]} ({len(images)} img)")
        return png if hashlib.sha256(png).hexdigest() == want else None

    wanted = [sha256]
    try:
        return wait_for(lambda: shown(sha256), timeout, "the chart on screen to be the one the kernel drew")
    except TimeoutError as first:
        err = first
        if kernel_chart is not None:
            latest = kernel_chart()
            wanted.append(latest)
            if latest != sha256:
                try:
                    return wait_for(lambda: shown(latest), timeout, "the chart on screen to be the kernel's latest")
                except TimeoutError as second:
                    err = second
    console = [(e["level"], e["message"][:300]) for e in nb.console() if e["level"] not in ("DEBUG", "INFO")]
    shot(panel, "04_sampling_lab_chart_not_updated.png")  # for whoever reads the failure
    raise AssertionError(f"{err}: kernel {[w[:12] for w in wanted]}, screen showed {sorted(set(seen))} in "
                         f"{len(seen)} reads; console: {console}") from None


def button(nb: Notebook, within, text: str):
    found = [b for b in nb.find("button.widget-button", within) if b.text.strip() == text]
    assert found, f"no button {text!r} in the panel"
    return found[0]


@pytest.fixture(scope="module")
def browser_session(chromium, tmp_path_factory):
    """``(server, web, root)``: a JupyterLab server and a headless Chromium, both stopped at the end."""
    browser, driver = chromium
    tmp = tmp_path_factory.mktemp("browser")
    root = tmp / "root"
    root.mkdir()
    # One torch thread in the kernels: Chromium and the server share the CPU with them, and on a busy 2-core
    # machine two torch threads slow decoding down many times over.
    env = {"QWENLAB_MODEL": "offline", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with JupyterLabServer(root, tmp / "home", env=env) as server:
        web = chromium_driver(browser, driver, tmp / "profile", tmp / "chromedriver.log")
        try:
            yield server, web, root
        finally:
            web.quit()


@pytest.fixture
def opened(browser_session):
    """``open(name, cells_or_None) -> Notebook``: writes the notebook (unless it is there) and opens it alone
    in a fresh workspace; its kernel is shut down at the end."""
    server, web, root = browser_session
    pages: list[tuple[str, Notebook]] = []

    def open_page(name: str, cells: list[str] | None = None, timeout: float = 90) -> Notebook:
        if cells is not None:
            write_notebook(root / name, cells)
        nb = Notebook(web, server.page(name, Path(name).stem), timeout=timeout)
        pages.append((name, nb))
        return nb

    yield open_page
    for name, _nb in pages:
        server.close_notebook(name)


def assert_console_clean(nb: Notebook) -> None:
    """Item 6: no widget threw in the browser. Fails on any SEVERE console entry not in HARMLESS_CONSOLE."""
    entries = nb.console()
    noisy = [(e["level"], e["message"][:300]) for e in entries if e["level"] not in ("DEBUG", "INFO")]
    if noisy:
        print(f"browser console above INFO: {noisy}")
    assert not severe(entries), f"the browser console reported errors: {severe(entries)}"


@pytest.mark.real_model
def test_sampling_lab_in_notebook_04(opened, offline_dir, browser_session):
    """Run notebook 04 (up to the SamplingLab) with Run All; type a prompt, Generate, move temperature and
    top_k: the chart and the sampled text change, and the screen always shows what the kernel holds."""
    from selenium.webdriver.common.keys import Keys

    started = time.monotonic()
    notebook_04_until_the_lab(browser_session[2])
    nb = opened("04_generate.ipynb")
    nb.run_all(timeout=300)
    ran_all = time.monotonic() - started
    assert not nb.errors(), f"notebook 04 raised: {nb.errors()}"
    *_, lab_cell, probe_cell = nb.code_cells()
    panel = wait_for(lambda: nb.find(".jp-OutputArea-output .widget-vbox", lab_cell), 30, "the SamplingLab panel")[0]
    wait_for(lambda: nb.find("img", panel), 30, "the chart image")
    temperature, t_readout = slider(nb, panel, "temperature")
    top_k, k_readout = slider(nb, panel, "top_k (0=off)")
    shot(panel, "04_sampling_lab_opened.png")

    # a prompt with room for different answers, typed into the panel's text box; then Generate
    prompt_box = nb.find("textarea", panel)[0]
    prompt_box.click()
    prompt_box.send_keys(Keys.CONTROL, "a")
    prompt_box.send_keys("写一首关于秋天的短诗。", Keys.TAB)
    button(nb, panel, "Generate").click()
    before = nb.probe(probe_cell, timeout=120)
    assert before["prompt"] == "写一首关于秋天的短诗。" and before["forward_passes"] == 2
    assert before["text"], "Generate wrote nothing"
    wait_for(lambda: "finish_reason=" in nb.output_text(lab_cell), 10, "the generated text in the panel")
    assert squash(before["text"]) in squash(nb.output_text(lab_cell)), "the panel does not show the kernel's text"
    chart_before = chart_on_screen(nb, panel, before["chart"], kernel_chart=lambda: nb.probe(probe_cell)["chart"])

    # arrow keys on the slider handles (the keyboard way to use a slider): temperature up to 1.2 in steps of
    # 0.05, top_k down to 5 in steps of 1. The sliders update when released: each key press is one change.
    target = {"temperature": 1.2, "top_k": 5}
    assert before["temperature"] < target["temperature"] and before["top_k"] > target["top_k"], before
    for _ in range(round((target["temperature"] - before["temperature"]) / 0.05)):
        temperature.send_keys(Keys.ARROW_RIGHT)
    for _ in range(before["top_k"] - target["top_k"]):
        top_k.send_keys(Keys.ARROW_LEFT)
    wait_for(lambda: (t_readout.text, k_readout.text) == ("1.20", "5"), 15, "the sliders to read 1.20 and 5")
    # the widget frontend holds back a slider's later changes while one is unanswered: probe until all arrived
    moved = nb.probe(probe_cell, timeout=60,
                     until=lambda s: (round(s["temperature"], 2), s["top_k"]) == (1.2, 5))
    assert moved["kept"] <= moved["top_k"] and moved["forward_passes"] == before["forward_passes"]
    chart_after = chart_on_screen(nb, panel, moved["chart"], kernel_chart=lambda: nb.probe(probe_cell)["chart"])
    assert chart_after != chart_before, "moving the sliders did not redraw the distribution"

    button(nb, panel, "Generate").click()
    after = nb.probe(probe_cell, timeout=120)
    assert after["text"] and after["text"] != before["text"], "the same seed, other settings: the text should change"
    wait_for(lambda: squash(after["text"]) in squash(nb.output_text(lab_cell)), 10, "the new text in the panel")
    shot(panel, "04_sampling_lab_after_sliders.png")
    assert not nb.errors(), f"the SamplingLab raised: {nb.errors()}"
    assert_console_clean(nb)
    print(f"notebook 04: Run All {ran_all:.0f} s, whole test {time.monotonic() - started:.0f} s")


@pytest.mark.real_model
def test_chat_box_and_thinking_view(opened, offline_dir):
    """ChatBox: a message sent with Enter and one with Send both get replies; ThinkingView: the replay fills
    the thought and answer panes and the state line, and the thought folds when its title is clicked."""
    from selenium.webdriver.common.keys import Keys

    from qwenlab.thinking import STATES

    started = time.monotonic()
    nb = opened("widgets.ipynb", WIDGET_CELLS)
    nb.run_all(timeout=120)
    assert not nb.errors(), f"the widgets notebook raised: {nb.errors()}"
    _load, chat_cell, view_cell, _play, probe_cell = nb.code_cells()

    message = wait_for(lambda: nb.find(".widget-text input", chat_cell), 30, "the chat input")[0]
    message.click()
    message.send_keys("你好！用一句话介绍你自己。", Keys.ENTER)
    wait_for(lambda: nb.output_text(chat_cell).count("助手 (assistant)") == 1 and "tok/s" in nb.output_text(chat_cell),
             120, "the first reply")
    message.send_keys("再用三个词形容你自己。")
    button(nb, chat_cell, "发送 Send").click()
    wait_for(lambda: nb.output_text(chat_cell).count("助手 (assistant)") == 2, 120, "the second reply")
    state = nb.probe(probe_cell)
    history = state["history"]
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]
    assert history[0]["content"] == "你好！用一句话介绍你自己。" and history[2]["content"] == "再用三个词形容你自己。"
    on_screen = squash(nb.output_text(chat_cell))
    for m in history:
        assert m["content"].strip() and squash(m["content"]) in on_screen, f"not on screen: {m}"
    assert nb.find(".widget-text input", chat_cell)[0].get_attribute("value") == "", "the text box is not cleared"
    assert "❌" not in nb.output_text(chat_cell)
    shot(nb.find(".jp-OutputArea-output", chat_cell)[0], "05_chat_box.png")

    # ThinkingView: the replay filled both panes; the state line is the "complete" one, </think> included
    assert state["state"] == "complete" and "9.9 更大" in state["answer"]
    view_text = nb.output_text(view_cell)
    assert "思考 (thinking)" in view_text and "回答 (answer)" in view_text
    thought_pane = [e for e in nb.find(".widget-html", view_cell) if "比较 9.11 和 9.9" in e.text]
    assert thought_pane and thought_pane[0].is_displayed(), "the thought is not shown"
    assert "9.9 更大。" in view_text and squash(STATES["complete"]) in squash(view_text)
    shot(nb.find(".jp-OutputArea-output", view_cell)[0], "06_thinking_view.png")
    title = [e for e in nb.find(".widget-accordion *", view_cell) if e.text.strip() == "思考 (thinking)"][-1]
    title.click()
    wait_for(lambda: not thought_pane[0].is_displayed(), 10, "the thought to fold")
    title.click()
    wait_for(lambda: thought_pane[0].is_displayed(), 10, "the thought to unfold")
    assert not nb.errors(), f"a panel raised: {nb.errors()}"
    assert_console_clean(nb)
    print(f"ChatBox + ThinkingView: {time.monotonic() - started:.0f} s")


def test_console_check_catches_a_widget_that_throws(browser_session):
    """The control for the console check above: a widget whose frontend module does not exist must show up
    as a SEVERE console entry (and as ipywidgets' "Click to show javascript error." in its output)."""
    server, web, _root = browser_session
    write_notebook(browser_session[2] / "broken.ipynb", BROKEN_CELLS)
    nb = Notebook(web, server.page("broken.ipynb", "broken"), timeout=60)
    try:
        nb.run_all(timeout=60)
        log: list[dict] = []

        def reported() -> list[str]:
            log.extend(nb.console())
            return [m for m in severe(log) if "qwenlab-test-missing-module" in m]

        wait_for(reported, 30, "the missing widget module to be reported as an error in the browser console")
        wait_for(nb.errors, 10, "the widget's error in its output")
    finally:
        server.close_notebook("broken.ipynb")
