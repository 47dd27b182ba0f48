"""Model sources (Hugging Face, hf-mirror, ModelScope, a classroom mirror) and which of them answer now.

- :data:`SOURCES` / :func:`default_sources`: the places ``source="auto"`` tries, in order.
- :func:`as_sources`: what a user may write for ``source=`` (a name, a URL, a list) -> :class:`Source` s.
- :func:`probe` / :func:`probe_sources`: ask every source at once whether it answers (a few seconds at most).

Taught in ``01_environment.ipynb`` (can this machine reach the hubs?) and ``02_download.ipynb``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["SOURCES", "Source", "default_sources", "as_sources", "Probe", "probe", "probe_sources"]

# Name -> base URL. "modelscope" is not a Hub-protocol endpoint: it is served through modelscope's client.
SOURCES: dict[str, str] = {
    "huggingface": "https://huggingface.co",
    "hf-mirror": "https://hf-mirror.com",
    "modelscope": "https://www.modelscope.cn",
}


@dataclass(frozen=True)
class Source:
    """A place to download from: a name (``huggingface``, ``hf-mirror``, ``modelscope``, ``mirror``...) and a URL."""

    name: str
    url: str

    @property
    def kind(self) -> str:
        """``"modelscope"`` (modelscope's client) or ``"hub"`` (the Hugging Face Hub protocol)."""
        return "modelscope" if self.name == "modelscope" else "hub"

    @property
    def class_code(self) -> str | None:
        """What to send as ``Authorization: Bearer`` to this source: ``$HF_TOKEN`` for a classroom mirror or
        any other URL that is not a public hub (a mirror off loopback asks for its class code this way),
        nothing for the public hubs. Only the variable is read, never a stored ``hf auth login`` token, so a
        student's own Hugging Face token is not sent to a classroom machine unless they put it there."""
        if self.url.rstrip("/") in {url.rstrip("/") for url in SOURCES.values()}:
            return None
        return os.environ.get("HF_TOKEN", "").strip() or None


def _url_of(name: str) -> str:
    """A named source's URL now: ModelScope's is ``$MODELSCOPE_ENDPOINT`` when set (what its client reads)."""
    if name == "modelscope":
        endpoint = os.environ.get("MODELSCOPE_ENDPOINT", "").strip().rstrip("/")
        if endpoint:
            return endpoint
    return SOURCES[name]


def default_sources() -> dict[str, str]:
    """The sources ``source="auto"`` tries, in order: ``$HF_ENDPOINT`` (a mirror, if set), then :data:`SOURCES`
    (ModelScope at ``$MODELSCOPE_ENDPOINT`` when that is set).

    Both variables are read now (not at import), so setting them in a notebook takes effect.

    Taught in ``02_download.ipynb``.
    """
    out: dict[str, str] = {}
    endpoint = os.environ.get("HF_ENDPOINT", "").strip().rstrip("/")
    if endpoint and endpoint != SOURCES["huggingface"]:
        out["HF_ENDPOINT"] = endpoint
    out.update({name: _url_of(name) for name in SOURCES})
    return out


def as_sources(source: str | Sequence[str]) -> list[Source]:
    """``"auto"``, a source name, a Hub-protocol URL, or a list of those -> an ordered list of sources
    (each URL once).

    >>> [s.name for s in as_sources(["hf-mirror", "http://192.168.1.10:8090/"])]
    ['hf-mirror', 'mirror']
    """
    items = [source] if isinstance(source, str) else list(source)
    out: list[Source] = []
    for item in items:
        if item == "auto":
            out += [Source(n, u) for n, u in default_sources().items()]
        elif item in SOURCES:
            out.append(Source(item, _url_of(item)))
        elif item.startswith(("http://", "https://")):
            out.append(Source("mirror", item.rstrip("/")))
        else:
            raise ValueError(
                f"Unknown source {item!r}: use 'auto', one of {', '.join(SOURCES)}, or a Hub-protocol URL "
                "such as 'http://192.168.1.10:8090' (a classroom mirror)."
            )
    unique: dict[str, Source] = {}
    for s in out:
        unique.setdefault(s.url, s)
    return list(unique.values())


@dataclass
class Probe:
    """Whether one source answered, how fast, and if not, why (one short phrase)."""

    name: str
    url: str
    ok: bool
    seconds: float
    detail: str


def _why(err: Exception, timeout: float) -> str:
    text = str(err)
    if "Name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
        return "DNS lookup failed (no network, or the name is blocked)"
    if "Connection refused" in text or "actively refused" in text:
        return "connection refused (nothing listens there)"
    if "timed out" in text.lower() or type(err).__name__.endswith("Timeout"):
        return f"no answer within {timeout:g} s"
    if "proxy" in text.lower():
        return f"proxy error: {text[:80]}"
    return f"{type(err).__name__}: {text[:80]}"


def _probe_one(name: str, url: str, timeout: float) -> Probe:
    import httpx

    start = time.perf_counter()
    try:
        response = httpx.head(url, timeout=timeout, follow_redirects=False)
        return Probe(name, url, True, time.perf_counter() - start, f"HTTP {response.status_code}")
    except httpx.HTTPError as err:
        return Probe(name, url, False, time.perf_counter() - start, _why(err, timeout))


def probe(timeout: float = 3.0, sources: dict[str, str] | None = None) -> list[Probe]:
    """Ask every source at once whether it answers (any HTTP reply counts); ``timeout`` + 2 s at worst.

    Each source gets its own daemon thread and the whole probe has one deadline, so even a DNS lookup
    that hangs (a broken network) cannot hold it up.

    Args:
        timeout: seconds to wait for each source (they are probed in parallel).
        sources: name -> URL; default :func:`default_sources` (``$HF_ENDPOINT`` first when set).

    Taught in ``01_environment.ipynb`` and ``02_download.ipynb``.
    """
    import httpx  # noqa: F401  (imported here, once, not in the threads)

    sources = sources or default_sources()
    results: dict[str, Probe] = {}

    def run(name: str, url: str) -> None:
        results[name] = _probe_one(name, url, timeout)

    threads = [threading.Thread(target=run, args=item, daemon=True) for item in sources.items()]
    for t in threads:
        t.start()
    deadline = time.perf_counter() + timeout + 2.0
    for t in threads:
        t.join(max(0.0, deadline - time.perf_counter()))
    return [results.get(name) or Probe(name, url, False, timeout, f"no answer within {timeout:g} s")
            for name, url in sources.items()]


def probe_sources(timeout: float = 3.0, sources: dict[str, str] | None = None) -> dict[str, bool]:
    """Which sources answer right now, probed in parallel: ``{name: reachable}``."""
    return {p.name: p.ok for p in probe(timeout, sources)}
