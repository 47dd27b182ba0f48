"""Who may use the classroom mirror: anyone on this machine (loopback), anyone else only with the class code.

The code travels as ``Authorization: Bearer <code>`` (``huggingface_hub`` and ``hf`` with ``HF_TOKEN=<code>``,
``qwenlab doctor --send``) or as the password of Basic auth with any user name (pip, a browser); it is compared
in constant time.

Taught in ``02_download.ipynb``; the classroom in ``docs/teacher.md``.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import secrets
import socket

from ..classroom.dashboard import PAGE_PATH

__all__ = ["CLASS_CODE_HINT", "is_loopback", "class_code", "required_code", "authorized", "challenge", "lan_ip"]

CLASS_CODE_HINT = (
    "this classroom mirror needs the class code: ask your teacher for it and set HF_TOKEN=<class code> "
    "(huggingface_hub and hf send it as 'Authorization: Bearer <class code>'); pip: "
    "http://student:<class code>@HOST:PORT/simple; qwenlab doctor --send URL --class-code <class code>; "
    "a browser asks for it (any user name, the class code as password)."
)
_CODE_LETTERS = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: easy to read aloud and type


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (``127.0.0.1``, ``localhost``, ``::1``).

    >>> is_loopback("127.0.0.1"), is_loopback("0.0.0.0"), is_loopback("")
    (True, False, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def class_code() -> str:
    """A fresh class code: three groups of four letters and digits (about 59 bits), e.g. ``"k3mz-7qpa-vx2d"``."""
    return "-".join("".join(secrets.choice(_CODE_LETTERS) for _ in range(4)) for _ in range(3))


def required_code(host: str, api_key: str | None) -> str | None:
    """The class code a mirror listening on ``host`` requires: the one given; off loopback without one, a fresh
    :func:`class_code` (a mirror the classroom can reach never serves without a code); on loopback, None.

    >>> required_code("127.0.0.1", None) is None, required_code("127.0.0.1", "abc"), len(required_code("0.0.0.0", None))
    (True, 'abc', 14)
    """
    return api_key or (None if is_loopback(host) else class_code())


def authorized(authorization: str, code: str | None) -> bool:
    """Whether a request's ``Authorization`` header lets it in: no class code set, or the header sends it
    (``Bearer <code>``, or Basic auth with the code as password and any user name); compared in constant time.

    >>> authorized("Bearer k3mz-7qpa-vx2d", "k3mz-7qpa-vx2d"), authorized("", "k3mz-7qpa-vx2d"), authorized("", None)
    (True, False, True)
    """
    if not code:
        return True
    scheme, _, sent = authorization.strip().partition(" ")
    if scheme.lower() == "basic":
        try:
            sent = base64.b64decode(sent.strip(), validate=True).decode("utf-8").partition(":")[2]
        except ValueError:  # not base64, or not UTF-8
            return False
    elif scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(sent.strip().encode(), code.encode())


def challenge(path: str) -> str:
    """The ``WWW-Authenticate`` header of a 401 for ``path``: browsers (the dashboard) and pip answer a Basic
    challenge; huggingface_hub sends Bearer unasked."""
    if path.startswith((PAGE_PATH, "/simple", "/packages")):
        return 'Basic realm="qwenlab class: any user name, the class code as password"'
    return 'Bearer realm="qwenlab mirror"'


def lan_ip() -> str:
    """This machine's address on the local network (the outgoing interface), or its host name."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))  # no packet is sent; this only picks the outgoing interface
            return s.getsockname()[0]
    except OSError:
        return socket.gethostname()
