"""qwenlab.tokens: token chips, token cost, chat-template rendering and diff, special tokens, streaming decode.

Runs on the real Qwen3 tokenizer (``qwen3_tok``); the ``real_model`` tests use the offline model's
tokenizer (loaded alone, no weights).
"""

from __future__ import annotations

import io
import json
from html.parser import HTMLParser

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qwenlab import tokens
from qwenlab.cli import main
from qwenlab.tokens import decode_steps, render_chat, show_tokens, special_tokens, token_stats

# ---- helpers -------------------------------------------------------------------------------------


class _Collector(HTMLParser):
    """Collects every element with its attributes and text, to check the HTML a notebook would show."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[dict] = []
        self._stack: list[dict] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag in ("br",):
            return
        element = {"tag": tag, "attrs": dict(attrs), "text": ""}
        self.elements.append(element)
        self._stack.append(element)

    def handle_endtag(self, tag):
        if tag == "br":
            return
        assert self._stack and self._stack[-1]["tag"] == tag, f"unbalanced </{tag}>"
        self._stack.pop()

    def handle_data(self, data):
        for element in self._stack:
            element["text"] += data

    def by_class(self, name: str) -> list[dict]:
        return [e for e in self.elements if name in e["attrs"].get("class", "").split()]


def _parse(markup: str) -> _Collector:
    parser = _Collector()
    parser.feed(markup)
    parser.close()
    assert not parser._stack, "HTML has unclosed elements"
    return parser


@pytest.fixture(scope="module")
def offline_tok(offline_dir):
    """The offline model's tokenizer alone (Qwen2.5-Coder, converted from GGUF): no weights loaded."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(offline_dir)


# ---- show_tokens ---------------------------------------------------------------------------------

_CHINESE = st.text(alphabet=st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), min_size=1, max_size=8)
_EMOJI = st.text(alphabet=st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF), min_size=1, max_size=4)
_CODE = st.sampled_from(["def f(x):\n", "    return x ** 2\n", "if a != b: print(a)", "{'k': [1, 2]}", "x+=1;"])
_SPACES = st.text(alphabet=" \t\n\r\u3000\xa0", min_size=1, max_size=6)
_SPECIAL = st.sampled_from(["<|im_start|>", "<|im_end|>", "<think>", "</think>", "<|endoftext|>"])
_COMBINING = st.sampled_from(["e\u0301", "a\u0308\u0301", "a\u0301\u0323", "\u1100\u1161\u11a8", "\u0301", "Å"])
TEXTS = st.lists(
    st.one_of(st.text(max_size=12), _CHINESE, _EMOJI, _CODE, _SPACES, _SPECIAL, _COMBINING), max_size=8
).map("".join)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=TEXTS)
def test_pieces_concatenate_to_the_text_and_ids_are_the_tokenizers(qwen3_tok, text):
    view = show_tokens(text, qwen3_tok)
    assert "".join(p.text for p in view.pieces) == text
    assert view.ids == qwen3_tok.encode(text) == qwen3_tok.encode(text, add_special_tokens=False)
    normalize = qwen3_tok.backend_tokenizer.normalizer.normalize_str
    for piece in view.pieces:
        assert piece.tokens, "every piece is spelled by at least one token"
        # the tokens' bytes are exactly the piece's text (after the tokenizer's NFC normalization)
        assert b"".join(t.data for t in piece.tokens).decode("utf-8") == normalize(piece.text)
    doc = _parse(view._repr_html_())
    assert "".join(e["attrs"]["data-text"] for e in doc.by_class("qt-piece")) == text
    assert [int(e["attrs"]["data-id"]) for e in doc.by_class("qt-tok")] == view.ids


def test_a_character_split_over_two_tokens_is_one_piece(qwen3_tok):
    view = show_tokens("我很囧", qwen3_tok)
    split = [p for p in view.pieces if p.split]
    assert [p.text for p in split] == ["囧"]
    assert len(split[0].tokens) == 2
    # decoded alone, each half is the replacement character the chip avoids showing
    assert all("\ufffd" in t.text for t in split[0].tokens)
    assert "[囧|" in str(view) and "\ufffd" not in str(view) and "Ġ" not in str(view)


def test_spaces_are_readable_not_byte_level_symbols(qwen3_tok):
    view = show_tokens("Hello world\n\tx", qwen3_tok)
    assert [p.text for p in view.pieces][:2] == ["Hello", " world"]
    assert view.tokens[1].raw == "Ġworld"  # the vocabulary's own spelling
    text_form = str(view)
    assert "[·world|" in text_form and "Ġ" not in text_form and "↵" in text_form


def test_ids_of_half_a_character_show_the_replacement_character(qwen3_tok):
    ids = qwen3_tok.encode("囧")
    half = show_tokens(ids[:1], qwen3_tok)
    assert half.text == "\ufffd" and half.ids == ids[:1]
    whole = show_tokens(ids, qwen3_tok)
    assert whole.text == "囧" and [p.text for p in whole.pieces] == ["囧"]


def test_html_escapes_markup_and_marks_special_tokens(qwen3_tok):
    text = "<b>&'\"</b><|im_end|>"
    view = show_tokens(text, qwen3_tok)
    doc = _parse(view._repr_html_())
    assert "b" not in doc.tags, "text was inserted as markup, not escaped"
    assert "".join(e["attrs"]["data-text"] for e in doc.by_class("qt-piece")) == text
    visible = "".join(e["text"] for e in doc.by_class("qt-text"))
    assert visible == text
    kinds = {int(e["attrs"]["data-id"]): e["attrs"]["data-kind"] for e in doc.by_class("qt-tok")}
    assert kinds[151645] == "special"


def test_html_shows_whitespace_and_breaks_lines(qwen3_tok):
    view = show_tokens("a b\nc", qwen3_tok)
    markup = view._repr_html_()
    doc = _parse(markup)
    assert "".join(e["text"] for e in doc.by_class("qt-text")) == "a·b↵c"
    assert doc.tags.count("br") == 1


@pytest.fixture(scope="module")
def wordpiece_tok():
    """A small WordPiece tokenizer (not byte-level, no chat template), trained here in milliseconds."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.train_from_iterator(["hello world", "hello there"], trainers.WordPieceTrainer(special_tokens=["[UNK]"]))
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")


def test_non_byte_level_tokenizer_falls_back_to_offsets(wordpiece_tok):
    tokenizer = wordpiece_tok
    view = show_tokens("hello  world", tokenizer)
    assert "".join(p.text for p in view.pieces) == "hello  world"
    assert view.ids == tokenizer.encode("hello  world", add_special_tokens=False)


# ---- token_stats ---------------------------------------------------------------------------------


def test_token_stats_counts_match_the_tokenizer(qwen3_tok):
    stats = token_stats(None, qwen3_tok)
    assert [r.name for r in stats.rows] == list(tokens.SAMPLES)
    for row in stats.rows:
        assert row.tokens == len(qwen3_tok.encode(row.text))
        assert row.chars == len(row.text)
        assert row.tokens_per_100_chars == pytest.approx(100 * row.tokens / row.chars)
    zh, en = stats.row("中文 (Chinese)"), stats.row("English")
    # the same sentence: Chinese needs far fewer characters, but each token carries fewer of them
    assert zh.chars < en.chars and zh.chars_per_token < en.chars_per_token
    assert stats.row("表情 (emoji)").tokens >= stats.row("表情 (emoji)").chars
    with pytest.raises(KeyError, match="samples are"):
        stats.row("French")


def test_token_stats_table_and_bar_chart(qwen3_tok):
    stats = token_stats(["你好", "hello"], qwen3_tok)
    assert [r.name for r in stats.rows] == ["text 1", "text 2"]
    doc = _parse(stats._repr_html_())
    assert len(doc.by_class("qwenlab-token-stats")) == 1 and doc.tags.count("tr") == 3
    fig = stats.plot()
    density, bill = fig.axes
    assert [b.get_width() for b in density.patches] == pytest.approx([r.tokens_per_100_chars for r in stats.rows])
    assert [b.get_width() for b in bill.patches] == [r.tokens for r in stats.rows]
    assert "text 1" in str(stats)


def test_bar_chart_draws_without_missing_glyphs(qwen3_tok):
    import warnings

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = token_stats(None, qwen3_tok).plot()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Glyph ... missing from font(s)" would fail here
        FigureCanvasAgg(fig).draw()
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert "English" in labels and len(labels) == len(tokens.SAMPLES)


# ---- render_chat ---------------------------------------------------------------------------------

SYSTEM = {"role": "system", "content": "你是一个乐于助人的助手。"}
CONVERSATIONS = {
    "single": [{"role": "user", "content": "法国的首都是哪里？"}],
    "system": [SYSTEM, {"role": "user", "content": "What is 2+2?"}],
    "multi": [
        {"role": "user", "content": "你好"},
        {"role": "assistant", "content": "<think>\n用户在打招呼。\n</think>\n\n你好！有什么可以帮你？"},
        {"role": "user", "content": "讲个笑话 🤗"},
    ],
    "multi+system": [
        SYSTEM,
        {"role": "user", "content": "1+1=?"},
        {"role": "assistant", "content": "2"},
        {"role": "user", "content": "再加 1 呢？"},
        {"role": "assistant", "content": "3"},
    ],
}


def _check_rendering(tokenizer, messages, add_generation_prompt, enable_thinking):
    extra = {} if enable_thinking is None else {"enable_thinking": enable_thinking}
    expected = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt,
                                             **extra)
    rendering = render_chat(messages, tokenizer, add_generation_prompt=add_generation_prompt,
                            enable_thinking=enable_thinking)
    assert str(rendering) == rendering.text == expected
    assert "".join(s.text for s in rendering.segments) == expected
    assert rendering.token_ids == tokenizer.encode(expected, add_special_tokens=False)
    roles = [s.text for s in rendering.segments if s.kind == "role"]
    assert roles.count("user") == sum(m["role"] == "user" for m in messages)
    if add_generation_prompt:
        assert roles[-1] == "assistant"
    doc = _parse(rendering._repr_html_())
    assert "".join(e["text"] for e in doc.elements if e["tag"] == "pre") == expected
    assert [e["attrs"]["data-role"] for e in doc.by_class("qc-role")] == roles
    return rendering


@pytest.mark.parametrize("enable_thinking", [None, True, False])
@pytest.mark.parametrize("add_generation_prompt", [True, False])
@pytest.mark.parametrize("name", list(CONVERSATIONS))
def test_render_chat_equals_apply_chat_template_qwen3(qwen3_tok, name, add_generation_prompt, enable_thinking):
    _check_rendering(qwen3_tok, CONVERSATIONS[name], add_generation_prompt, enable_thinking)


def test_render_chat_highlights_special_tokens_roles_and_think_tags(qwen3_tok):
    rendering = render_chat(CONVERSATIONS["system"], qwen3_tok, enable_thinking=False)
    kinds = {(s.text, s.kind) for s in rendering.segments}
    assert ("<|im_start|>", "special") in kinds and ("<|im_end|>", "special") in kinds
    assert ("<think>", "added") in kinds and ("</think>", "added") in kinds
    system_text = [s for s in rendering.segments if s.kind == "text" and SYSTEM["content"] in s.text]
    assert system_text and system_text[0].role == "system"
    doc = _parse(rendering._repr_html_())
    assert [e["text"] for e in doc.by_class("qc-added")] == ["<think>", "</think>"]


def test_render_chat_accepts_a_plain_prompt_and_rejects_bad_messages(qwen3_tok):
    assert render_chat("hi", qwen3_tok).text == qwen3_tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    with pytest.raises(ValueError, match="role"):
        render_chat([{"content": "no role"}], qwen3_tok)


def test_diff_thinking_on_vs_off_shows_the_empty_think_block(qwen3_tok):
    on = render_chat(CONVERSATIONS["single"], qwen3_tok, enable_thinking=True)
    off = render_chat(CONVERSATIONS["single"], qwen3_tok, enable_thinking=False)
    diff = on.diff(off)
    assert diff.inserted == ["<think>\n\n</think>\n\n"] and diff.deleted == []
    assert diff.token_change == off.n_tokens - on.n_tokens == 4
    assert diff.labels == ("enable_thinking=True", "enable_thinking=False")
    assert "{+<think>" in str(diff)
    doc = _parse(diff._repr_html_())
    assert [e["text"] for e in doc.by_class("qd-ins")] == ["<think>\n\n</think>\n\n"]
    assert doc.by_class("qd-del") == []
    pres = [e["text"] for e in doc.elements if e["tag"] == "pre"]
    assert pres == [on.text, off.text]


def test_diff_of_generation_prompt(qwen3_tok):
    without = render_chat(CONVERSATIONS["system"], qwen3_tok, add_generation_prompt=False)
    with_prompt = render_chat(CONVERSATIONS["system"], qwen3_tok, add_generation_prompt=True)
    diff = without.diff(with_prompt)
    assert diff.inserted == ["<|im_start|>assistant\n"]
    reverse = with_prompt.diff(without)
    assert reverse.deleted == ["<|im_start|>assistant\n"] and reverse.token_change == -3


def test_render_chat_without_a_chat_template_says_what_to_use(wordpiece_tok):
    with pytest.raises(ValueError, match="no chat template"):
        render_chat("hi", wordpiece_tok)


# ---- special_tokens ------------------------------------------------------------------------------


def test_special_tokens_of_qwen3(qwen3_tok):
    table = special_tokens(qwen3_tok)
    ids = {r.content: r.id for r in table.rows}
    assert ids["<|endoftext|>"] == 151643 and ids["<|im_start|>"] == 151644 and ids["<|im_end|>"] == 151645
    assert ids["<think>"] == 151667 and ids["</think>"] == 151668
    assert ids["<tool_call>"] == 151657 and ids["<tool_response>"] == 151665
    assert table.get("<|im_end|>").skipped and table.get("<|im_end|>").special
    assert "eos_token" in table.get("<|im_end|>").named_as
    think = table.get("<think>")
    assert not think.special and not think.skipped  # kept by skip_special_tokens=True
    assert "<think>" in table.kept and "<|im_start|>" in table.skipped
    # "removed" is what decode really does
    assert qwen3_tok.decode([151644, 151667, 151645], skip_special_tokens=True) == "<think>"
    assert (table.regular, table.added, table.placeholders) == (151_643, 26, 0)
    assert table.total == len(qwen3_tok) == 151_669
    assert all(r.purpose for r in table.rows)
    doc = _parse(table._repr_html_())
    assert doc.tags.count("tr") == len(table.rows) + 1
    assert "151,643" in str(table)


# ---- decode_steps --------------------------------------------------------------------------------


def test_decoding_token_by_token_breaks_characters_streaming_does_not(qwen3_tok):
    steps = decode_steps("我很囧🫠!", qwen3_tok)
    assert "\ufffd" in steps.naive_text
    assert steps.streamed_text == "我很囧🫠!" == qwen3_tok.decode(qwen3_tok.encode("我很囧🫠!"))
    waiting = [s for s in steps.steps if s.streamed == ""]
    assert len(waiting) == 3  # first half of 囧, first two thirds of 🫠
    assert "(waits)" in str(steps)
    _parse(steps._repr_html_())


@settings(max_examples=60, deadline=None)
@given(text=TEXTS)
def test_streamed_text_equals_decoding_everything(qwen3_tok, text):
    steps = decode_steps(text, qwen3_tok, skip_special_tokens=False)
    assert steps.streamed_text == qwen3_tok.decode(qwen3_tok.encode(text))


# ---- CLI -----------------------------------------------------------------------------------------


def test_cli_prints_chips_and_tables(capsys):
    assert main(["tokens", "我很囧"]) == 0
    out = capsys.readouterr().out
    assert "[囧|" in out and "3 characters" in out
    assert main(["tokens", "--special", "--stats"]) == 0
    out = capsys.readouterr().out
    assert "<think>" in out and "kept" in out and "tokens/100 chars" in out


def test_cli_reads_standard_input_and_names_a_missing_tokenizer(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr("sys.stdin", io.StringIO("你好 world"))
    assert main(["tokens"]) == 0
    assert "[你好|108386][·world|1879]" in capsys.readouterr().out
    assert main(["tokens", "hi", "--model", str(tmp_path / "nowhere")]) == 1
    assert "qwenlab tokens: " in capsys.readouterr().err


# ---- the offline model's tokenizer (Qwen2.5-Coder, from GGUF) --------------------------------------


@pytest.mark.real_model
@pytest.mark.parametrize("enable_thinking", [None, True, False])
@pytest.mark.parametrize("add_generation_prompt", [True, False])
@pytest.mark.parametrize("name", list(CONVERSATIONS))
def test_render_chat_equals_apply_chat_template_offline(offline_tok, name, add_generation_prompt, enable_thinking):
    _check_rendering(offline_tok, CONVERSATIONS[name], add_generation_prompt, enable_thinking)


@pytest.mark.real_model
def test_offline_template_has_no_thinking_and_adds_a_default_system_prompt(offline_tok):
    on = render_chat(CONVERSATIONS["single"], offline_tok, enable_thinking=True)
    off = render_chat(CONVERSATIONS["single"], offline_tok, enable_thinking=False)
    assert on.text == off.text and on.diff(off).inserted == []
    assert [s.text for s in on.segments if s.kind == "role"] == ["system", "user", "assistant"]
    assert "You are Qwen" in on.text


@pytest.mark.real_model
def test_offline_special_tokens_fill_the_vocabulary_to_the_embedding_size(offline_tok, offline_dir):
    table = special_tokens(offline_tok)
    vocab_size = json.loads((offline_dir / "config.json").read_text())["vocab_size"]
    assert table.total == len(offline_tok) == vocab_size == 151_936
    assert (table.regular, table.added, table.placeholders) == (151_643, 22, 271)
    assert "[PAD151665] … [PAD151935] (271)" in str(table)
    placeholders = [r for r in table.rows if r.count > 1]
    assert len(placeholders) == 1 and placeholders[0].id == 151665 and placeholders[0].last_id == 151935
    assert placeholders[0].count == 271
    with pytest.raises(KeyError):
        table.get("<think>")
    assert table.get("<|im_end|>").id == 151645 and table.get("<|im_end|>").skipped


@pytest.mark.real_model
@settings(max_examples=60, deadline=None)
@given(text=TEXTS)
def test_pieces_concatenate_with_the_offline_tokenizer(offline_tok, text):
    view = show_tokens(text, offline_tok)
    assert "".join(p.text for p in view.pieces) == text
    assert view.ids == offline_tok.encode(text, add_special_tokens=False)


@pytest.mark.real_model
def test_load_tokenizer_of_the_offline_model_needs_no_weights(offline_dir):
    tokenizer = tokens.load_tokenizer("offline")
    assert len(tokenizer) == 151_936
    view = show_tokens("我很囧", tokenizer)
    assert [p.text for p in view.pieces if p.split] == ["囧"]  # Qwen2.5 and Qwen3 share the BPE vocabulary
