"""ipywidgets panels: the sampling lab, the chat box, the two-pane thinking view.

Every panel is a thin view over library functions (``sampling``, ``generation``, ``chat``, ``thinking``);
callbacks are plain methods so tests can drive them headless by setting widget values.

Taught in ``04_generate.ipynb`` (SamplingLab), ``05_chat.ipynb`` (ChatBox), ``06_thinking.ipynb`` (ThinkingView).
"""

from __future__ import annotations

# ---- SamplingLab (04_generate) -------------------------------------------------------------------

# ---- ChatBox and ThinkingView (05_chat, 06_thinking) ---------------------------------------------

import html as _html
import threading as _threading
import time as _time
from typing import Any as _Any

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
        from .thinking import STATES

        text = STATES.get(split.state, split.state)
        if split.hint:
            text += f"<br>⚠️ {_html.escape(split.hint)}"
        self.state_html.value = f"<span style='{_GREY}'>{text}</span>"

    def play(self, token_ids: _Any, tokenizer: _Any, delay: float = 0.0) -> _Any:
        """Replay token ids one by one through a ThinkingStream; returns the final ThinkingSplit."""
        from .thinking import ThinkingStream

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
        from .generation import stream
        from .thinking import ThinkingStream, split_thinking

        self.clear()
        ts = ThinkingStream()
        text_stream = stream(model, tokenizer, prompt_or_messages, **kwargs)
        for piece in text_stream:
            for event in ts.feed_text(piece):
                self.apply(event)
        for event in ts.close():
            self.apply(event)
        split = split_thinking(text_stream.result.token_ids, tokenizer)
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
        except ValueError as err:  # e.g. the message alone does not fit the context budget
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
