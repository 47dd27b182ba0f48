"""`qwenlab chat` driven through a pseudo-terminal (pexpect), on the tiny Qwen3."""

from __future__ import annotations

import json
import os
import sys
import time

import pexpect

from qwenlab.cli import main

PROMPT = "你> "
STATS = r"\[\d+ tokens, [\d.]+ tok/s\]"


def say(child: pexpect.spawn, line: str, expect: str, regex: bool = False) -> None:
    child.sendline(line)
    (child.expect if regex else child.expect_exact)(expect)
    child.expect_exact(PROMPT)


def test_chat_in_a_terminal_two_turns_commands_ctrl_c_reset_exit(tiny_dir, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    child = pexpect.spawn(sys.executable, ["-m", "qwenlab.cli", "chat", str(tiny_dir), "--max-new-tokens", "6",
                                           "--seed", "0", "--system", "Be brief."],
                          cwd=str(tmp_path), env=env, encoding="utf-8", timeout=120, dimensions=(40, 200))
    child.expect("qwenlab chat")
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
    saved = json.loads((tmp_path / "chat.json").read_text(encoding="utf-8"))
    assert [m["content"] for m in saved["messages"] if m["role"] == "user"] == ["你好", "再说一句 /no_think"]
    assert saved["thinking"] is False and saved["params"]["temperature"] == 0.5
    assert saved["system"] == "Answer in Chinese."

    # Ctrl-C stops a long reply; what was written stays in the conversation, which goes on
    say(child, "/params max_new_tokens=3000", "'max_new_tokens': 3000")
    child.sendline("tell me a very long story")
    child.expect_exact("tell me a very long story")  # the echo; the reply streams after it
    child.expect(r"\S")
    time.sleep(0.5)
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
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_unknown_model_says_what_to_do_without_a_traceback(capsys):
    assert main(["chat", "Qwen/Qwen3-0.6X"]) == 2
    err = capsys.readouterr().err
    assert "Did you mean" in err and "Qwen/Qwen3-0.6B" in err
