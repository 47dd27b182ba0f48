"""`qwenlab chat` driven through a pseudo-terminal (pexpect), on the tiny Qwen3."""

from __future__ import annotations

import json
import os
import sys

import pexpect

from qwenlab.cli import main

PROMPT = "你> "
STATS = r"\[\d+ tokens, [\d.]+ tok/s\]"


def say(child: pexpect.spawn, line: str, expect: str, regex: bool = False) -> None:
    child.sendline(line)
    (child.expect if regex else child.expect_exact)(expect)
    child.expect_exact(PROMPT)


def test_chat_in_a_terminal_two_turns_commands_ctrl_c_reset_exit(tiny_dir, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1",
               QWENLAB_HOME=str(tmp_path / "home"))
    child = pexpect.spawn(sys.executable, ["-m", "qwenlab.cli", "chat", str(tiny_dir), "--max-new-tokens", "6",
                                           "--seed", "0", "--system", "Be brief."],
                          cwd=str(tmp_path), env=env, encoding="utf-8", timeout=120, dimensions=(40, 200))
    child.expect(r"qwenlab chat .*\[自动保存 \(autosave\): (\S+\.json)\]")
    autosave = child.match.group(1)
    assert autosave.startswith(str(tmp_path / "home" / "chats"))
    child.expect_exact(PROMPT)

    # two turns, streamed; a soft switch is part of the message, not a command
    say(child, "你好", STATS, regex=True)
    say(child, "再说一句 /no_think", STATS, regex=True)
    say(child, "/history", "[4 messages]")

    # the commands
    say(child, "/no_think", "thinking mode): 关 off")
    say(child, "/params temperature=0.5", "'temperature': 0.5")
    say(child, "/params temprature=0.5", "unknown generation parameter 'temprature'")
    say(child, "/system Answer in Chinese.", "'Answer in Chinese.'")
    say(child, "/save chat.json", "saved")
    # errors in a command print one line and the chat goes on with its history
    say(child, "/params max_new_tokens=abc", "params unchanged")
    (tmp_path / "afile").write_text("not a folder")
    say(child, "/save afile/chat.json", "not saved")
    say(child, "/history", "[4 messages]")
    saved = json.loads((tmp_path / "chat.json").read_text(encoding="utf-8"))
    assert [m["content"] for m in saved["messages"] if m["role"] == "user"] == ["你好", "再说一句 /no_think"]
    assert saved["thinking"] is False and saved["params"]["temperature"] == 0.5
    assert saved["system"] == "Answer in Chinese."

    # Ctrl-C stops a long reply; what was written stays in the conversation, which goes on
    say(child, "/params max_new_tokens=3000", "'max_new_tokens': 3000")
    child.sendline("tell me a very long story")
    child.expect_exact("tell me a very long story")  # the echo; the reply streams after it
    child.expect(r"\S")  # the reply has started (its Ctrl-C handler is set before the first character)
    child.sendintr()
    child.expect(r"\[已停止 \(stopped\); (\d+) tokens")
    assert int(child.match.group(1)) < 3000
    child.expect_exact(PROMPT)
    say(child, "/history", "[6 messages]")
    say(child, "/params max_new_tokens=6", "'max_new_tokens': 6")
    say(child, "and now?", STATS, regex=True)

    # /reset forgets the turns; Ctrl-C at the prompt does not quit; /exit does
    say(child, "/reset", "conversation reset")
    say(child, "/history", "[0 messages]")
    child.sendintr()
    child.expect_exact("/exit")
    child.sendline("/exit")
    child.expect_exact(f"[对话已保存 (saved): {autosave} — 继续 (continue): qwenlab chat --load {autosave}]")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    kept = json.loads(open(autosave, encoding="utf-8").read())  # the autosave before /reset: every turn
    assert [m["content"] for m in kept["messages"] if m["role"] == "user"][-1] == "and now?"
    assert (tmp_path / "afile").read_text() == "not a folder"


def test_unknown_model_says_what_to_do_without_a_traceback(capsys):
    assert main(["chat", "Qwen/Qwen3-0.6b"]) == 2  # a mistyped catalog id (see qwenlab.catalog.lookup)
    err = capsys.readouterr().err
    assert "Did you mean" in err and "Qwen/Qwen3-0.6B" in err


class _Typist:
    """Stands in for the keyboard: ``input()`` returns these lines, then Ctrl-D (EOF)."""

    def __init__(self, lines: list[str]):
        self.lines = list(lines)
        self.last = ""

    def __call__(self, prompt: str = "") -> str:
        if not self.lines:
            raise EOFError
        self.last = self.lines.pop(0)
        return self.last


def test_errors_in_commands_and_replies_keep_the_chat_and_the_autosave_has_every_turn(
        tiny_dir, tmp_path, monkeypatch, capsys, one_thread):
    from transformers import Qwen3ForCausalLM

    monkeypatch.setenv("QWENLAB_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("mine")
    typist = _Typist(["hello", "/params max_new_tokens=abc", "/save afile/x.json", "this reply fails",
                      "/history", "and again", "/exit"])
    monkeypatch.setattr("builtins.input", typist)
    generate = Qwen3ForCausalLM.generate

    def fails_once(self, *args, **kwargs):
        if typist.last == "this reply fails":
            raise RuntimeError("simulated generation failure")
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(Qwen3ForCausalLM, "generate", fails_once)
    assert main(["chat", str(tiny_dir), "--max-new-tokens", "4", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert "[参数未改 (params unchanged): max_new_tokens must be a whole number >= 1, got 'abc'" in out
    assert "[未保存 (not saved): cannot write afile/x.json" in out
    failed = [line for line in out.splitlines() if "simulated generation failure" in line]
    assert len(failed) == 1 and "the conversation is unchanged" in failed[0]
    assert "[2 messages]" in out  # the failed message was taken back out
    saved = sorted((tmp_path / "home" / "chats").glob("*.json"))
    assert len(saved) == 1 and f"[自动保存 (autosave): {saved[0]}]" in out and f"--load {saved[0]}]" in out
    data = json.loads(saved[0].read_text(encoding="utf-8"))
    assert [m["content"] for m in data["messages"] if m["role"] == "user"] == ["hello", "and again"]
    assert data["params"]["max_new_tokens"] == 4 and (tmp_path / "afile").read_text() == "mine"


def test_load_is_checked_before_the_model_loads(tiny_dir, tmp_path, monkeypatch, capsys):
    def no_loading(*args, **kwargs):
        raise AssertionError("the model must not load for a --load file that cannot be used")

    monkeypatch.setattr("qwenlab.commands.chat.load_model", no_loading)
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "robot.json").write_text(json.dumps({"format": "qwenlab-conversation",
                                                    "messages": [{"role": "robot", "content": "hi"}]}))
    for name, problem in [("missing.json", "No such file"), ("broken.json", "Expecting property name"),
                          ("robot.json", "role 'robot'")]:
        assert main(["chat", str(tiny_dir), "--load", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("qwenlab chat: ") and name in err and problem in err and "loading" not in err


def test_ctrl_c_twice_then_a_crash_loses_no_turn_the_autosave_holds_them(tiny_dir, tmp_path):
    """Issue #19, item 4: Ctrl-C pressed twice in a long reply, then the process killed (a crash): every turn
    typed is in the autosave whose path the chat printed at the start."""
    import signal

    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1",
               QWENLAB_HOME=str(tmp_path / "home"))
    child = pexpect.spawn(sys.executable, ["-m", "qwenlab.cli", "chat", str(tiny_dir), "--max-new-tokens", "3000",
                                           "--seed", "0"],
                          cwd=str(tmp_path), env=env, encoding="utf-8", timeout=120, dimensions=(40, 200))
    child.expect(r"\[自动保存 \(autosave\): (\S+\.json)\]")
    autosave = child.match.group(1)
    child.expect_exact(PROMPT)
    say(child, "/params max_new_tokens=4", "'max_new_tokens': 4")
    say(child, "first message", STATS, regex=True)
    say(child, "/params max_new_tokens=3000", "'max_new_tokens': 3000")
    child.sendline("a long story please")
    child.expect_exact("a long story please")
    child.expect(r"\S")  # the reply has started
    child.sendintr()
    child.sendintr()  # twice: wherever the second one lands, nothing typed may be lost
    index = child.expect([r"\[已停止 \(stopped\)", "interrupted", pexpect.EOF])
    if index == 0:  # still running: the prompt comes back, then the process dies without any cleanup
        child.expect_exact(PROMPT)
        os.kill(child.pid, signal.SIGKILL)
        child.expect(pexpect.EOF)
    child.close()
    saved = json.loads(open(autosave, encoding="utf-8").read())
    users = [m["content"] for m in saved["messages"] if m["role"] == "user"]
    assert users == ["first message", "a long story please"]
    assert saved["messages"][-1]["role"] == "assistant"  # the part of the reply written before Ctrl-C
