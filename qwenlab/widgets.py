"""ipywidgets panels: the sampling lab, the chat box, the two-pane thinking view.

Every panel is a thin view over library functions (``sampling``, ``generation``, ``chat``, ``thinking``);
callbacks are plain methods so tests can drive them headless by setting widget values.

Taught in ``04_generate.ipynb`` (SamplingLab), ``05_chat.ipynb`` (ChatBox), ``06_thinking.ipynb`` (ThinkingView).
"""

from __future__ import annotations

import html as _html
import io as _io
import threading as _threading
import time as _time
from typing import Any as _Any

from .generation import effective_params, generate, stream, transformers_fallbacks
from .sampleloop import next_token_logits
from .sampling import distribution_from_logits, plot_distribution
from .thinking import STATES, ThinkingStream, split_thinking

# ---- SamplingLab (04_generate) -------------------------------------------------------------------


class SamplingLab:
    """Move a slider, watch the live model's next-token distribution reshape, then generate with it.

    A prompt box; sliders for temperature, top_k (0 = off), top_p, min_p, repetition_penalty and
    max_new_tokens; a do_sample switch and a seed; bar charts of the next-token distribution after each
    sampling step (:func:`qwenlab.sampling.plot_distribution`). "Generate" streams an answer into the
    panel; "Generate ×5" generates five answers (seeds ``seed … seed+4``) and counts the distinct ones.

    The model runs once per prompt: moving a slider only re-applies the sampling steps to the cached
    logits, and sliders update when released, so the panel stays responsive on a CPU. Invalid settings
    (e.g. temperature 0 while sampling) show a message in the panel instead of a traceback.

    For tests and notebooks the results are attributes: ``last`` (the NextTokenDistribution shown),
    ``chart`` (an image widget: ``chart.value`` is the PNG of the charts on screen),
    ``last_result`` (the last GenerationResult), ``last_batch`` and ``distinct`` ("Generate ×5"),
    ``forward_passes`` (model runs for the chart so far).

    Example:
        >>> lab = qwenlab.widgets.SamplingLab(model, tokenizer); lab     # doctest: +SKIP

    Taught in ``04_generate.ipynb``.
    """

    SLIDERS = ("temperature", "top_k", "top_p", "min_p", "repetition_penalty")

    def __init__(self, model: _Any, tokenizer: _Any, prompt: str = "用一个词形容大海:", top: int = 10,
                 max_new_tokens: int = 48, enable_thinking: bool | None = None, draw: bool = True):
        import ipywidgets as w

        self.model, self.tokenizer, self.top = model, tokenizer, top
        self.enable_thinking, self.draw = enable_thinking, draw
        self.last: _Any = None
        self.last_result: _Any = None
        self.last_batch: list = []
        self.distinct: int | None = None
        self.forward_passes = 0
        self._cache: tuple[str, _Any, _Any] | None = None  # (prompt, input_ids, logits)

        start = dict(transformers_fallbacks())
        start.update({k: v for k, v in effective_params(model).items() if v is not None})
        slider = dict(continuous_update=False, style={"description_width": "130px"},
                      layout=w.Layout(width="420px"))
        self.prompt = w.Textarea(value=prompt, description="prompt", continuous_update=False,
                                 layout=w.Layout(width="640px", height="60px"))
        self.do_sample = w.Checkbox(value=bool(start.get("do_sample")), description="do_sample (采样)")
        self.temperature = w.FloatSlider(value=float(start.get("temperature") or 1.0), min=0.0, max=2.0,
                                         step=0.05, description="temperature", **slider)
        self.top_k = w.IntSlider(value=int(start.get("top_k") or 0), min=0, max=100, description="top_k (0=off)",
                                 **slider)
        self.top_p = w.FloatSlider(value=float(start.get("top_p") or 1.0), min=0.0, max=1.0, step=0.01,
                                   description="top_p", **slider)
        self.min_p = w.FloatSlider(value=float(start.get("min_p") or 0.0), min=0.0, max=0.5, step=0.01,
                                   description="min_p", **slider)
        self.repetition_penalty = w.FloatSlider(value=float(start.get("repetition_penalty") or 1.0), min=0.5,
                                                max=2.0, step=0.01, description="repetition_penalty", **slider)
        self.max_new_tokens = w.IntSlider(value=max_new_tokens, min=1, max=512, description="max_new_tokens",
                                          **slider)
        self.seed = w.IntText(value=0, description="seed", layout=w.Layout(width="200px"))
        self.generate_button = w.Button(description="Generate", button_style="primary")
        self.generate5_button = w.Button(description="Generate ×5")
        self.message = w.HTML()
        self.chart = w.Image(format="png")
        self.output = w.HTML()
        self.diversity = w.HTML()

        for name in ("do_sample", *self.SLIDERS):
            getattr(self, name).observe(self._on_setting, names="value")
        self.prompt.observe(self._on_setting, names="value")
        self.generate_button.on_click(lambda _: self.on_generate())
        self.generate5_button.on_click(lambda _: self.on_generate_many())
        self.widget = w.VBox([
            self.prompt,
            w.HBox([w.VBox([self.do_sample, self.temperature, self.top_k, self.top_p]),
                    w.VBox([self.min_p, self.repetition_penalty, self.max_new_tokens, self.seed])]),
            self.message, self.chart,
            w.HBox([self.generate_button, self.generate5_button]),
            self.output, self.diversity,
        ])
        self.update()

    # ---- settings -----------------------------------------------------------------------------------

    def params(self) -> dict:
        """The sampling parameters the panel is set to (top_k 0 and min_p 0 mean "off")."""
        return {
            "do_sample": bool(self.do_sample.value),
            "temperature": float(self.temperature.value),
            "top_k": int(self.top_k.value),
            "top_p": float(self.top_p.value),
            "min_p": float(self.min_p.value) or None,
            "repetition_penalty": float(self.repetition_penalty.value),
        }

    def _say(self, text: str, ok: bool = True) -> None:
        color = "#555" if ok else "#b42318"
        self.message.value = f"<span style='color:{color}'>{_html.escape(text)}</span>" if text else ""

    def _on_setting(self, change: dict | None = None) -> None:
        sampling = bool(self.do_sample.value)
        for name in ("temperature", "top_k", "top_p", "min_p"):
            getattr(self, name).disabled = not sampling  # greedy ignores them
        self.update()

    def _logits(self) -> tuple[_Any, _Any]:
        prompt = self.prompt.value
        if self._cache is None or self._cache[0] != prompt:
            input_ids, logits = next_token_logits(self.model, self.tokenizer, prompt, self.enable_thinking)
            self.forward_passes += 1
            self._cache = (prompt, input_ids, logits)
        return self._cache[1], self._cache[2]

    def update(self) -> _Any:
        """Recompute the distribution for the current prompt and settings and redraw the chart.

        Returns the NextTokenDistribution (also kept as ``last``), or None when the settings are invalid
        (the message line says why).
        """
        if not self.prompt.value.strip():
            self._say("请先输入提示 (type a prompt first).", ok=False)
            return None
        try:
            input_ids, logits = self._logits()
            dist = distribution_from_logits(self.tokenizer, input_ids, logits, top=self.top, **self.params())
        except (ValueError, TypeError) as err:
            self._say(f"⚠️ {err}", ok=False)
            return None
        self.last = dist
        self._say(f"下一个词元的分布 (next-token distribution): {dist.final.n_kept:,} token(s) can be chosen.")
        if self.draw:
            self._draw(dist)
        return dist

    def _draw(self, dist: _Any) -> None:
        """Render the stage charts to a PNG in the ``chart`` image (what the panel shows)."""
        import matplotlib.pyplot as plt

        fig = plot_distribution(dist)
        try:
            png = _io.BytesIO()
            fig.savefig(png, format="png", dpi=100, bbox_inches="tight")
        finally:
            plt.close(fig)
        self.chart.value = png.getvalue()

    # ---- generation ---------------------------------------------------------------------------------

    def _generation_params(self) -> dict:
        params = self.params()
        if not params["do_sample"]:  # greedy: leave out what it ignores (transformers would warn)
            params = {"do_sample": False, "repetition_penalty": params["repetition_penalty"]}
        return {**params, "max_new_tokens": int(self.max_new_tokens.value), "enable_thinking": self.enable_thinking}

    def on_generate(self) -> _Any:
        """Stream one answer at the current settings into the panel; returns the GenerationResult."""
        self.output.value = ""
        try:
            text_stream = stream(self.model, self.tokenizer, self.prompt.value, seed=int(self.seed.value),
                                 **self._generation_params())
            for piece in text_stream:
                self.output.value += _html.escape(piece)
        except (ValueError, TypeError) as err:
            self._say(f"⚠️ {err}", ok=False)
            return None
        result = text_stream.finish()
        self.last_result = result
        note = f" · ⚠️ {result.hint}" if result.hint else ""
        self.output.value = (f"<div style='white-space:pre-wrap'>{_html.escape(result.text)}</div>"
                             f"<small style='color:#8a8a8a'>{result.completion_tokens} tokens · "
                             f"{result.tokens_per_second:.1f} tok/s · finish_reason={result.finish_reason}"
                             f"{_html.escape(note)}</small>")
        return result

    def on_generate_many(self, n: int = 5) -> int | None:
        """Generate ``n`` answers (seeds ``seed … seed+n-1``); show them and how many are distinct."""
        self.diversity.value = f"⏳ generating {n} answers…"
        results = []
        try:
            for i in range(n):
                results.append(generate(self.model, self.tokenizer, self.prompt.value, seed=int(self.seed.value) + i,
                                        **self._generation_params()))
                self.diversity.value = f"⏳ {i + 1}/{n}"
        except (ValueError, TypeError) as err:
            self._say(f"⚠️ {err}", ok=False)
            self.diversity.value = ""
            return None
        self.last_batch = results
        self.distinct = len({r.text for r in results})
        rows = "".join(f"<li><code>seed={int(self.seed.value) + i}</code> {_html.escape(r.text)}</li>"
                       for i, r in enumerate(results))
        self.diversity.value = (f"<b>{self.distinct} distinct answer(s) of {n}</b> "
                                f"(不同的回答数 / diversity)<ol style='white-space:pre-wrap'>{rows}</ol>")
        return self.distinct

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


# ---- ChatBox and ThinkingView (05_chat, 06_thinking) ---------------------------------------------

_GREY = "color:#8a8a8a"


def _pre(text: str, style: str = "") -> str:
    return f"<div style='white-space:pre-wrap;{style}'>{_html.escape(text)}</div>"


class ThinkingView:
    """Two panes, live: the thought (grey, collapsible) on the left, the answer on the right.

    Driven by :class:`qwenlab.thinking.ThinkingStream`: :meth:`play` replays token ids (e.g. a
    constructed Qwen3 reply), :meth:`run` generates with a model and shows the reply as it is written,
    :meth:`apply` takes one :class:`~qwenlab.thinking.StreamEvent` (to drive it yourself).

    Example:
        >>> view = ThinkingView(); display(view)                                  # doctest: +SKIP
        >>> view.run(model, tokenizer, "1+1=?", max_new_tokens=512)              # doctest: +SKIP

    Taught in ``06_thinking.ipynb``.
    """

    def __init__(self, collapse_when_answering: bool = False):
        import ipywidgets as w

        self.collapse_when_answering = collapse_when_answering
        self.thinking = ""
        self.answer = ""
        self.thinking_html = w.HTML()
        self.answer_html = w.HTML()
        self.state_html = w.HTML()
        self.accordion = w.Accordion(children=[self.thinking_html], titles=("思考 (thinking)",),
                                     selected_index=0, layout=w.Layout(width="50%"))
        answer_box = w.VBox([w.HTML("<b>回答 (answer)</b>"), self.answer_html],
                            layout=w.Layout(width="50%", padding="0 0 0 12px"))
        self.widget = w.VBox([w.HBox([self.accordion, answer_box]), self.state_html])
        self.clear()

    def clear(self) -> None:
        """Empty both panes."""
        self.thinking = self.answer = ""
        self.accordion.selected_index = 0
        self.state_html.value = ""
        self._render()

    def _render(self) -> None:
        self.thinking_html.value = _pre(self.thinking.strip() or "…", _GREY + ";font-style:italic")
        self.answer_html.value = _pre(self.answer.strip() or "…")

    def apply(self, event: _Any) -> None:
        """Show one stream event: append thought or answer text, or move a retracted answer away."""
        if event.channel == "thinking":
            self.thinking += event.text
        elif event.channel == "answer":
            self.answer += event.text
            if self.collapse_when_answering and self.answer.strip():
                self.accordion.selected_index = None
        elif event.channel == "retract":
            self.answer = ""
        self._render()

    def show_result(self, split: _Any) -> None:
        """Show the final state (and what to do when the thought was cut)."""
        text = _html.escape(STATES.get(split.state, split.state))  # the states name <think> and </think>
        if split.hint:
            text += f"<br>⚠️ {_html.escape(split.hint)}"
        self.state_html.value = f"<span style='{_GREY}'>{text}</span>"

    def play(self, token_ids: _Any, tokenizer: _Any, delay: float = 0.0) -> _Any:
        """Replay token ids one by one through a ThinkingStream; returns the final ThinkingSplit."""
        self.clear()
        ts = ThinkingStream(tokenizer)
        for token_id in (token_ids.tolist() if hasattr(token_ids, "tolist") else token_ids):
            for event in ts.feed(token_id):
                self.apply(event)
            if delay:
                _time.sleep(delay)
        for event in ts.close():
            self.apply(event)
        self.show_result(ts.result)
        return ts.result

    def run(self, model: _Any, tokenizer: _Any, prompt_or_messages: _Any, **kwargs: _Any) -> _Any:
        """Generate with :func:`qwenlab.stream` and show the thought and the answer as they arrive.

        ``kwargs`` go to ``stream`` (``enable_thinking``, ``max_new_tokens``, ``seed`` …). Returns the
        ``ThinkingSplit`` of the whole reply (split on token ids).
        """
        self.clear()
        ts = ThinkingStream()
        text_stream = stream(model, tokenizer, prompt_or_messages, **kwargs)
        for piece in text_stream:
            for event in ts.feed_text(piece):
                self.apply(event)
        for event in ts.close():
            self.apply(event)
        split = split_thinking(text_stream.finish().token_ids, tokenizer)
        self.show_result(split)
        return split

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


class ChatBox:
    """A chat panel over a :class:`qwenlab.chat.Conversation`: history, a text box, Send, Stop, Reset.

    The reply streams in (its thought grey, then the answer); Stop ends it early and keeps what was
    written; Reset forgets the conversation. Enter or Send sends the text box. Buttons run the reply in
    a background thread so Stop stays clickable; :meth:`send` with ``wait=True`` runs it in place.

    Example:
        >>> box = ChatBox(qwenlab.Conversation(model, tokenizer, max_new_tokens=128)); box   # doctest: +SKIP

    Taught in ``05_chat.ipynb``.
    """

    def __init__(self, conversation: _Any, **params: _Any):
        import ipywidgets as w

        self.conversation = conversation
        self.params = params
        self.thoughts: dict[int, str] = {}  # history index -> the thought behind that reply (display only)
        self.last_reply: _Any = None
        self._stream: _Any = None
        self._thread: _threading.Thread | None = None
        self.history_html = w.HTML()
        self.live_html = w.HTML()
        self.status_html = w.HTML()
        self.input = w.Text(placeholder="输入消息, 回车发送 (type a message, Enter to send)",
                            continuous_update=False, layout=w.Layout(width="60%"))
        self.send_button = w.Button(description="发送 Send", button_style="primary")
        self.stop_button = w.Button(description="停止 Stop", disabled=True)
        self.reset_button = w.Button(description="清空 Reset")
        self.send_button.on_click(lambda _: self.send(wait=False))
        self.stop_button.on_click(lambda _: self.stop())
        self.reset_button.on_click(lambda _: self.reset())
        self.input.observe(self._on_submit, names="value")
        self.widget = w.VBox([self.history_html, self.live_html,
                              w.HBox([self.input, self.send_button, self.stop_button, self.reset_button]),
                              self.status_html])
        self.refresh()

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def refresh(self) -> None:
        """Draw the history (assistant turns without thinking; their thought folded, grey)."""
        rows = []
        if self.conversation.system:
            rows.append(f"<div style='{_GREY}'>系统 (system): {_html.escape(self.conversation.system)}</div>")
        for i, m in enumerate(self.conversation.history):
            who = "你 (user)" if m["role"] == "user" else "助手 (assistant)"
            thought = self.thoughts.get(i)
            fold = (f"<details style='{_GREY}'><summary>思考 (thinking)</summary>{_pre(thought)}</details>"
                    if thought else "")
            rows.append(f"<div><b>{who}</b>{fold}{_pre(m['content'])}</div>")
        dropped = len(self.conversation.dropped)
        if dropped:
            rows.insert(1 if self.conversation.system else 0,
                        f"<div style='{_GREY}'>… {dropped} 条旧消息未放入提示 (left out to fit the budget)</div>")
        self.history_html.value = "".join(rows) or f"<div style='{_GREY}'>（还没有消息 no messages yet）</div>"

    def _on_submit(self, change: dict) -> None:
        if change["new"].strip() and not self.busy:
            self.send(wait=False)

    def send(self, text: str | None = None, wait: bool = True) -> _Any:
        """Send ``text`` (default: the text box) and stream the reply; returns the ChatReply when ``wait``."""
        text = (self.input.value if text is None else text).strip()
        if not text:
            return None
        if self.busy:
            self.status_html.value = "⏳ 上一条回复还在生成 (a reply is still being written)"
            return None
        self.input.value = ""
        try:
            self._stream = self.conversation.reply(text, stream=True, **self.params)
        except (ValueError, TypeError) as err:  # the message does not fit the budget, an unknown parameter
            self.status_html.value = f"❌ {_html.escape(str(err))}"
            return None
        self.refresh()
        self.stop_button.disabled, self.send_button.disabled = False, True
        if wait:
            self._run(self._stream)
            return self.last_reply
        self._thread = _threading.Thread(target=self._run, args=(self._stream,), daemon=True)
        self._thread.start()
        return None

    def _run(self, chat_stream: _Any) -> None:
        thought, answer = "", ""
        try:
            for event in chat_stream.events():
                if event.channel == "thinking":
                    thought += event.text
                elif event.channel == "answer":
                    answer += event.text
                else:
                    answer = ""
                self.live_html.value = _pre(thought.strip(), _GREY) + _pre(answer.strip())
            reply = chat_stream.finish()
        except Exception as err:  # shown in the panel: a thread has nowhere else to report it
            self.status_html.value = f"❌ {_html.escape(type(err).__name__)}: {_html.escape(str(err))}"
            return
        finally:
            self.stop_button.disabled, self.send_button.disabled = True, False
        self.last_reply = reply
        if reply.thinking:
            self.thoughts[len(self.conversation.history) - 1] = reply.thinking
        self.live_html.value = ""
        note = "已停止 (stopped) · " if reply.finish_reason == "stopped" else ""
        hint = f" · ⚠️ {_html.escape(reply.hint)}" if reply.hint else ""
        self.status_html.value = (f"<span style='{_GREY}'>{note}{reply.completion_tokens} tokens · "
                                  f"{reply.tokens_per_second:.1f} tok/s{hint}</span>")
        self.refresh()

    def wait(self, timeout: float | None = None) -> _Any:
        """Wait for a reply started by a button (or Enter); returns it."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.last_reply

    def stop(self) -> None:
        """Stop the reply being written (what was written is kept)."""
        if self._stream is not None:
            self._stream.stop()

    def reset(self) -> None:
        """Forget the conversation (the system prompt stays)."""
        self.stop()
        self.wait()
        self.conversation.reset()
        self.thoughts.clear()
        self.live_html.value = self.status_html.value = ""
        self.refresh()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
