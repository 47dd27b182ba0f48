"""``qwenlab chat [MODEL]``: chat in the terminal — streaming replies, /commands, Ctrl-C stops a reply.

The conversation itself is :class:`qwenlab.chat.Conversation`; this module is the terminal around it
(reading lines, printing the thought dimmed, the /commands). Nothing typed is lost: an error in a
command or a reply prints one line and the prompt comes back with the history as it was, and after
every turn the conversation is saved (atomically) to ``$QWENLAB_HOME/chats/<time>.json`` — the path is
printed at the start and at the end (continue with ``--load``). ``--engine llama.cpp`` chats with a GGUF file
run by llama.cpp (:mod:`qwenlab.engines`): the same terminal, the same history rule (answers only) and saved
files; ``/params`` is not available there. Taught in ``05_chat.ipynb``.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from ..chat import FORMAT, ChatReply, ChatStream, Conversation, read_saved
from ..course import course_model
from ..engines import ENGINES, EngineError, EngineNotInstalledError, EngineReply, LlamaCppModel, LlamaCppStream
from ..engines.llamacpp import DEFAULT_CONTEXT
from ..files import write_text_atomic
from ..generation import effective_params
from ..hub import DownloadError
from ..modelfacts import model_name
from ..models import GpuRequiredError, load_model
from ..offline import OfflineModelError
from ..paths import qwenlab_home
from ..thinking import StreamEvent, ThinkingStream, history_content
from . import fail, make_parser

__all__ = ["main", "PROMPT", "HELP", "autosave_path"]

# what loading a model can fail with, each message saying what to do
LOAD_ERRORS = (ValueError, OSError, GpuRequiredError, OfflineModelError, DownloadError, EngineNotInstalledError,
               EngineError)

PROMPT = "你> "
HELP = """命令 (commands):
  /reset            清空对话 (forget every turn; the system prompt stays)
  /think            打开思考模式 (enable_thinking=True; Qwen3 only)
  /no_think         关闭思考模式 (enable_thinking=False)
  /system [TEXT]    显示或设置系统提示 (show or set the system prompt)
  /params [k=v ...] 显示或设置生成参数 (show or set generation parameters, e.g. temperature=0.7)
  /save [FILE]      保存对话为 JSON (save the conversation; it is also autosaved after every turn)
  /history          显示对话历史 (show the history)
  /exit             退出 (quit; Ctrl-D works too)
A message ending in /think or /no_think is a soft switch for that turn. Ctrl-C stops the current reply."""


class _Style:
    def __init__(self, enabled: bool):
        self.dim = "\x1b[2m" if enabled else ""
        self.reset = "\x1b[0m" if enabled else ""


def autosave_path() -> Path:
    """A new file for this chat's autosave: ``$QWENLAB_HOME/chats/<YYYYmmdd-HHMMSS>.json`` (never an old one)."""
    folder = qwenlab_home() / "chats"
    stem = time.strftime("%Y%m%d-%H%M%S")
    path, n = folder / f"{stem}.json", 1
    while path.exists():
        n += 1
        path = folder / f"{stem}-{n}.json"
    return path


class _Autosave:
    """Saves the conversation after every turn; says where, and once if it cannot."""

    def __init__(self, enabled: bool):
        self.path: Path | None = autosave_path() if enabled else None
        self.written: list[Path] = []

    def save(self, conv: Conversation | _EngineChat, out: TextIO) -> None:
        if self.path is None or not conv.history:
            return
        try:
            conv.save(self.path)
        except OSError as err:
            print(f"[自动保存失败 (autosave failed): {_one_line(err)}; use /save FILE to keep the chat]", file=out)
            self.path = None
            return
        if self.path not in self.written:
            self.written.append(self.path)

    def restart(self) -> None:
        """/reset: later turns go to a new file; the earlier conversation stays in its own."""
        if self.path is not None and self.path in self.written:
            self.path = autosave_path()

    def start_line(self) -> str:
        if self.path is None:
            return "[自动保存关闭 (autosave off)]"
        return f"[自动保存 (autosave): {self.path}]"

    def end_lines(self) -> list[str]:
        if not self.written:
            return [] if self.path is None else ["[没有对话, 未保存 (nothing said, nothing autosaved)]"]
        return [f"[对话已保存 (saved): {p} — 继续 (continue): qwenlab chat --load {p}]" for p in self.written]


class _EngineChat:
    """A conversation on the llama.cpp engine: the system prompt, the mode, and the history (answers only, the
    thought left out, as :class:`~qwenlab.chat.Conversation` keeps it); saved in the same format."""

    def __init__(self, model: LlamaCppModel, system: str | None = None, thinking: bool | None = None,
                 max_new_tokens: int = 512):
        self.model = model
        self.system = system
        self.thinking = thinking
        self.max_new_tokens = max_new_tokens
        self.history: list[dict] = []

    @classmethod
    def from_dict(cls, data: dict, model: LlamaCppModel) -> _EngineChat:
        params = data.get("params") or {}
        conv = cls(model, data.get("system"), data.get("thinking"), int(params.get("max_new_tokens", 512)))
        conv.history = [{"role": m["role"], "content": m["content"]} for m in data.get("messages", [])]
        return conv

    @property
    def messages(self) -> list[dict]:
        return ([{"role": "system", "content": self.system}] if self.system else []) + self.history

    def reset(self) -> None:
        self.history = []

    def next_thinking_mode(self) -> bool:
        return bool(self.thinking)

    def reply(self, message: str, seed: int | None) -> LlamaCppStream:
        """Add the message and start the reply (the message is taken back out when the request fails)."""
        self.history.append({"role": "user", "content": message})
        params: dict[str, Any] = {"max_new_tokens": self.max_new_tokens}
        if self.thinking is not None:
            params["enable_thinking"] = self.thinking
        if seed is not None:
            params["seed"] = seed
        try:
            return self.model.chat_stream(self.messages, **params)
        except BaseException:
            self.history.pop()
            raise

    def commit(self, reply: EngineReply) -> None:
        self.history.append({"role": "assistant", "content": history_content(reply.split)})

    def take_back(self) -> None:
        if self.history and self.history[-1]["role"] == "user":
            self.history.pop()

    def save(self, path: str | Path) -> Path:
        path = Path(path).expanduser()
        data = {"format": FORMAT, "version": 1, "model": self.model.name, "system": self.system,
                "thinking": self.thinking, "max_context_tokens": self.model.context,
                "params": {"max_new_tokens": self.max_new_tokens}, "messages": [dict(m) for m in self.history]}
        write_text_atomic(path, json.dumps(data, ensure_ascii=False, indent=2))
        return path


def _one_line(err: BaseException) -> str:
    """An error as one line: its message with line breaks folded (its type when it has no message)."""
    text = " ".join(str(err).split())
    return text or type(err).__name__


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return {"True": True, "False": False, "None": None}.get(text, text)


def _unknown_param(conv: Conversation, key: str) -> bool:
    return not hasattr(conv.model.generation_config, key)


def _set_params(conv: Conversation, arg: str, out: TextIO) -> None:
    """``/params k=v ...``: every pair checked first; a wrong one changes nothing (one line says why)."""
    changes = {}
    for pair in arg.split():
        key, sep, value = pair.partition("=")
        if not sep:
            print(f"[/params expects key=value pairs, e.g. /params temperature=0.7 (got {pair!r})]", file=out)
            return
        if _unknown_param(conv, key):
            print(f"[unknown generation parameter {key!r}: see transformers.GenerationConfig, "
                  "e.g. temperature, top_p, top_k, max_new_tokens]", file=out)
            return
        changes[key] = _parse_value(value)
    try:
        conv.set_params(**changes)
    except (TypeError, ValueError) as err:
        print(f"[参数未改 (params unchanged): {_one_line(err)}]", file=out)
        return
    settings = conv.settings()
    print(f"[参数 (params, {settings.source}): {effective_params(conv.model, **settings.params)}]", file=out)


def _command(conv: Conversation | _EngineChat, line: str, out: TextIO, autosave: _Autosave) -> bool | None:
    """Run a /command. Returns False to quit, True when handled, None when ``line`` is a message."""
    name, _, arg = line.partition(" ")
    arg = arg.strip()
    if name in ("/exit", "/quit"):
        return False
    if name == "/help":
        print(HELP, file=out)
    elif name == "/reset":
        conv.reset()
        autosave.restart()
        print("[已清空对话 (conversation reset)]", file=out)
    elif name in ("/think", "/no_think") and not arg:
        conv.thinking = name == "/think"
        print(f"[思考模式 (thinking mode): {'开 on' if conv.thinking else '关 off'}]", file=out)
    elif name == "/system":
        if arg:
            conv.system = arg
        print(f"[系统提示 (system prompt): {conv.system!r}]", file=out)
    elif name == "/params":
        if isinstance(conv, _EngineChat):
            print("[/params: not with --engine llama.cpp; start again with the options you want (--max-new-tokens, "
                  "--seed, --max-context, --threads)]", file=out)
        else:
            _set_params(conv, arg, out)
    elif name == "/save":
        target = arg or f"chat-{time.strftime('%Y%m%d-%H%M%S')}.json"
        try:
            path = conv.save(target)
        except OSError as err:
            print(f"[未保存 (not saved): cannot write {target}: {_one_line(err)}; "
                  "choose another path, e.g. /save ~/chat.json]", file=out)
        else:
            print(f"[已保存 (saved): {path}]", file=out)
    elif name == "/history":
        for m in conv.messages:
            print(f"  {m['role']}: {m['content']}", file=out)
        print(f"[{len(conv.history)} messages]", file=out)
    else:
        return None
    return True


def _stream_events(chat_stream: ChatStream, out: TextIO, style: _Style) -> None:
    """Write the thought (dimmed) and the answer as they arrive."""
    _show_events(chat_stream.events(), out, style)


def _show_events(events: Iterable[StreamEvent], out: TextIO, style: _Style) -> None:
    in_thought = False
    for event in events:
        if event.channel == "thinking":
            if not in_thought:
                out.write(f"{style.dim}[思考 (thinking)] ")
                in_thought = True
            out.write(event.text)
        elif event.channel == "answer":
            if in_thought:
                out.write(f"{style.reset}\n")
                in_thought = False
            out.write(event.text)
        else:  # retract: the text above was still thought
            out.write(f"\n{style.dim}[上面仍是思考 (the text above was thinking)]{style.reset}\n")
        out.flush()
    if in_thought:
        out.write(style.reset)


def _print_reply(chat_stream: ChatStream, out: TextIO, style: _Style) -> ChatReply:
    """Stream one reply to the terminal; Ctrl-C stops it (the conversation is kept)."""
    previous = signal.signal(signal.SIGINT, lambda signum, frame: chat_stream.stop())
    try:
        _stream_events(chat_stream, out, style)
        reply = chat_stream.finish()
    finally:
        signal.signal(signal.SIGINT, previous)
    stats = f"{reply.completion_tokens} tokens, {reply.tokens_per_second:.1f} tok/s"
    if reply.finish_reason == "stopped":
        out.write(f"\n{style.dim}[已停止 (stopped); {stats}]{style.reset}\n")
    else:
        out.write(f"\n{style.dim}[{stats}]{style.reset}\n")
    if reply.hint:
        out.write(f"{style.dim}[{reply.hint}]{style.reset}\n")
    if reply.dropped:
        out.write(f"{style.dim}[{len(reply.dropped)} 条旧消息未放入提示 (oldest messages left out to fit "
                  f"the context budget)]{style.reset}\n")
    out.flush()
    return reply


def _engine_events(stream: LlamaCppStream) -> Iterator[StreamEvent]:
    """The llama.cpp engine's text pieces as thought / answer events (the same parser as the PyTorch path)."""
    thinking = ThinkingStream()
    for piece in stream:
        yield from thinking.feed_text(piece)
    yield from thinking.close()


def _print_engine_reply(stream: LlamaCppStream, out: TextIO, style: _Style) -> EngineReply:
    """Stream one llama.cpp reply to the terminal; Ctrl-C stops it (the conversation is kept)."""
    previous = signal.signal(signal.SIGINT, lambda signum, frame: stream.stop())
    try:
        _show_events(_engine_events(stream), out, style)
        reply = stream.finish()
    finally:
        signal.signal(signal.SIGINT, previous)
    stats = f"{reply.completion_tokens} tokens, {reply.tokens_per_second:.1f} tok/s (llama.cpp)"
    stopped = "已停止 (stopped); " if reply.finish_reason == "stopped" else ""
    out.write(f"\n{style.dim}[{stopped}{stats}]{style.reset}\n")
    hint = reply.split.hint or ("the reply was cut at --max-new-tokens; raise it for longer replies"
                                if reply.finish_reason == "length" else None)
    if hint:
        out.write(f"{style.dim}[{hint}]{style.reset}\n")
    out.flush()
    return reply


def _engine_turn(conv: _EngineChat, line: str, seed: int | None, out: TextIO, style: _Style) -> bool:
    """Reply to one message on the llama.cpp engine; False when it failed (one line printed, history as before)."""
    try:
        stream = conv.reply(line, seed)
        reply = _print_engine_reply(stream, out, style)
    except Exception as err:  # the prompt does not fit the context, llama.cpp refused it
        out.write(f"{style.reset}\n")
        conv.take_back()
        _error_line(err, out, "in the reply")
        return False
    conv.commit(reply)
    return True


def _parser(prog: str) -> Any:
    parser = make_parser(prog, "Chat with a model in the terminal (streaming). Type /help for commands.")
    parser.add_argument("model", nargs="?", help="catalog name or local folder (default: the course model)")
    parser.add_argument("--system", help="system prompt")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--think", dest="thinking", action="store_true", default=None, help="thinking mode on")
    mode.add_argument("--no-think", dest="thinking", action="store_false", help="thinking mode off")
    parser.add_argument("--max-new-tokens", type=int, default=512, help="longest reply in tokens (default 512)")
    parser.add_argument("--max-context", type=int, help="context budget in tokens (default: the model's)")
    parser.add_argument("--seed", type=int, help="seed sampling (reproducible replies)")
    parser.add_argument("--load", metavar="FILE",
                        help="continue a conversation saved with /save (or an autosave); checked before loading")
    parser.add_argument("--no-autosave", dest="autosave", action="store_false",
                        help="do not save the conversation to $QWENLAB_HOME/chats after every turn")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--engine", choices=ENGINES, default="pytorch",
                        help="pytorch (default) or llama.cpp: a GGUF file run by llama.cpp (pip install xllamacpp), "
                             "e.g. qwenlab chat offline --engine llama.cpp")
    parser.add_argument("--threads", type=int, help="llama.cpp: CPU threads (default: the physical cores)")
    return parser


def _error_line(err: BaseException, out: TextIO, when: str) -> None:
    """One line for an error in a command or a reply; the conversation is unchanged."""
    print(f"[错误 (error) {when}: {type(err).__name__}: {_one_line(err)} — 对话未变 (the conversation is "
          "unchanged); try again or /help]", file=out)


def _turn(conv: Conversation, line: str, seed: int | None, out: TextIO, style: _Style) -> bool:
    """Reply to one message; False when it was refused or failed (one line printed, history as before)."""
    try:
        chat_stream = conv.reply(line, stream=True, seed=seed)
    except (ValueError, TypeError) as err:  # the message does not fit the budget, a bad parameter
        print(f"[{_one_line(err)}]", file=out)
        return False
    try:
        _print_reply(chat_stream, out, style)
    except Exception as err:  # generation failed: ChatStream took the message back out
        out.write(f"{style.reset}\n")  # after the part of the reply already printed
        _error_line(err, out, "in the reply")
        return False
    return True


def _loop(conv: Conversation | _EngineChat, seed: int | None, out: TextIO, autosave: _Autosave) -> int:
    """Read lines until /exit or Ctrl-D: a /command, or a message to reply to. Saves after every line."""
    style = _Style(out.isatty())
    turn = 0
    while True:
        try:
            line = input(PROMPT).strip()
        except EOFError:
            print(file=out)
            return 0
        except KeyboardInterrupt:
            print("\n[输入 /exit 退出 (type /exit to quit)]", file=out)
            continue
        if not line:
            continue
        if line.startswith("/"):
            try:
                handled = _command(conv, line, out, autosave)
            except Exception as err:  # a command that failed: say so, keep the conversation
                _error_line(err, out, f"in {line.split()[0]}")
                handled = True
            if handled is False:
                return 0
            if handled:
                autosave.save(conv, out)
                continue
        turn_seed = None if seed is None else seed + turn
        if isinstance(conv, _EngineChat):
            replied = _engine_turn(conv, line, turn_seed, out, style)
        else:
            replied = _turn(conv, line, turn_seed, out, style)
        if replied:
            turn += 1
        autosave.save(conv, out)


def _start(args: Any) -> tuple[dict | None, str]:
    """What can be checked before the (slow) model load: the ``--load`` file; and the model's name."""
    saved = read_saved(args.load) if args.load else None
    return saved, args.model or course_model()


def main(argv: list[str], prog: str = "qwenlab chat") -> int:
    """``qwenlab chat [MODEL]``: chat in the terminal, streaming, with /reset /think /no_think /system /params /save."""
    args = _parser(prog).parse_args(argv)
    try:
        saved, name = _start(args)
    except ValueError as err:  # --load: missing, not JSON, not a conversation — said before any loading
        return fail(prog, _one_line(err), code=2)
    print(f"loading {name} ...", file=sys.stderr)
    if args.engine == "llama.cpp":
        return _engine_main(args, saved, name, prog)
    try:
        model, tokenizer = load_model(name, device=args.device, dtype=args.dtype)
    except LOAD_ERRORS as err:  # unknown name, missing folder, not downloaded, needs a GPU, offline model broken
        return fail(prog, _one_line(err), code=2)
    if saved is not None:
        conv = Conversation.from_dict(saved, model, tokenizer)
    else:
        conv = Conversation(model, tokenizer, system=args.system, max_context_tokens=args.max_context,
                            thinking=args.thinking, max_new_tokens=args.max_new_tokens)
    return _session(conv, model_name(model), args.seed, args.autosave)


def _engine_main(args: Any, saved: dict | None, name: str, prog: str) -> int:
    """``--engine llama.cpp``: load the GGUF with llama.cpp and chat in the same terminal."""
    try:
        llm = load_model(name, device=args.device, dtype=args.dtype, engine="llama.cpp",
                         context=args.max_context or DEFAULT_CONTEXT, threads=args.threads)
    except LOAD_ERRORS as err:  # not a GGUF, xllamacpp missing, offline parts missing, llama.cpp cannot load it
        return fail(prog, _one_line(err), code=2)
    if saved is not None:
        conv = _EngineChat.from_dict(saved, llm)
    else:
        conv = _EngineChat(llm, system=args.system, thinking=args.thinking, max_new_tokens=args.max_new_tokens)
    with llm:
        return _session(conv, f"{llm.name} on llama.cpp, {llm.threads} threads", args.seed, args.autosave)


def _session(conv: Conversation | _EngineChat, title: str, seed: int | None, autosave_on: bool) -> int:
    """The banner, the loop, and the last save."""
    out = sys.stdout
    autosave = _Autosave(autosave_on)
    mode = "on" if conv.next_thinking_mode() else "off"
    print(f"qwenlab chat — {title} (thinking {mode}). "
          f"/help 查看命令 (commands), /exit 退出 (quit). {autosave.start_line()}", file=out)
    try:
        return _loop(conv, seed, out, autosave)
    finally:
        autosave.save(conv, out)
        for line in autosave.end_lines():
            print(line, file=out)
