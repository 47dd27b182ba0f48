"""``qwenlab tokens [TEXT] [--model NAME] [--special] [--stats]``: how a tokenizer cuts a text, in the terminal.

The chips and tables come from :mod:`qwenlab.tokens`; this module only parses the arguments and prints.
Taught in ``03_tokenizer.ipynb``.
"""

from __future__ import annotations

import sys

from ..tokens import load_tokenizer, show_tokens, special_tokens, token_stats
from . import fail, make_parser

__all__ = ["main", "read_text"]

CONVERT_HINT = ("save it as UTF-8, or convert it first, e.g. `iconv -f GBK -t UTF-8 file.txt | qwenlab tokens` "
                "(Windows: save as \"UTF-8\" in Notepad)")


def read_text(arg: str | None) -> str:
    """TEXT from the command line, else standard input, as checked UTF-8 text.

    Raises:
        ValueError: the bytes are not UTF-8 (a GBK file, a binary file); the message says where and how
            to convert.
    """
    if arg is None and getattr(sys.stdin, "buffer", None) is None:  # a text-only stdin (tests, notebooks)
        arg = sys.stdin.read()
    if arg is not None:
        try:
            arg.encode("utf-8")  # undecodable bytes arrive as lone surrogates
        except UnicodeEncodeError:
            raise ValueError(f"TEXT is not valid UTF-8; {CONVERT_HINT}.") from None
        return arg
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"standard input is not valid UTF-8 text (byte 0x{data[err.start]:02x} at offset "
                         f"{err.start}); {CONVERT_HINT}.") from None


def main(argv: list[str], prog: str = "qwenlab tokens") -> int:
    """Print token chips of TEXT (or standard input), the special tokens (``--special``), the token cost
    of the built-in samples (``--stats``)."""
    parser = make_parser(prog, "Show how a Qwen tokenizer cuts a text into tokens (reads stdin without TEXT).")
    parser.add_argument("text", nargs="?", help="text to tokenize (default: read standard input)")
    parser.add_argument("--model", default="qwen3",
                        help="whose tokenizer: 'qwen3' (offline, default), a catalog name or a model folder")
    parser.add_argument("--special", action="store_true", help="list the special and added tokens")
    parser.add_argument("--stats", action="store_true", help="token cost of the built-in samples")
    args = parser.parse_args(argv)
    try:
        tokenizer = load_tokenizer(args.model)
    except (OSError, ValueError) as err:
        return fail(prog, str(err))
    if args.special:
        print(special_tokens(tokenizer))
    if args.stats:
        print(token_stats(None, tokenizer))
    if args.text is not None or not (args.special or args.stats):
        try:
            text = read_text(args.text)
        except ValueError as err:
            return fail(prog, str(err))
        print(show_tokens(text, tokenizer))
    return 0
