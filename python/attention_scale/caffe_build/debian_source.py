"""BVLC Caffe's source from Debian's signed `caffe` source package (bullseye): one of the
routes of caffe_source.py.

apt-get verifies the download against the suite's signed Release file (checked with the system's
Debian keyring); the pinned SHA-256 below checks it once more. apt runs with a private sources
file and lists folder, so the system's apt state is never touched. The mirror is read from the
system's own apt configuration; when bullseye is no longer there (Debian moves old releases off
its mirrors), archive.debian.org, where they go, is tried next.
"""
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import List

PACKAGE = "caffe"
VERSION = "1.0.0+git20180821.99bd997-8"
SUITE = "bullseye"
ORIG_TARBALL = "caffe_1.0.0+git20180821.99bd997.orig.tar.gz"
ORIG_SHA256 = "e0eb3f06794f7402c77b7dec8e8480273ee1a1bb192e9122b621a69d4147ad0c"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# Where Debian keeps releases that left its mirrors. Its Release files may carry a Valid-Until in
# the past; the signature is still checked (and the tarball's SHA-256 after it).
ARCHIVE_MIRROR = "http://archive.debian.org/debian"


class SourceUnavailable(RuntimeError):
    pass


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def debian_mirrors(etc_apt: Path = Path("/etc/apt")) -> List[str]:
    """Archive URIs of the system's apt configuration (security mirrors left out)."""
    uris: List[str] = []
    for path in sorted((etc_apt / "sources.list.d").glob("*.sources")):
        for m in re.finditer(r"^URIs:\s*(.+)$", path.read_text(), re.M):
            uris.extend(m.group(1).split())
    legacy = etc_apt / "sources.list"
    if legacy.is_file():
        for line in legacy.read_text().splitlines():
            m = re.match(r"^\s*deb(?:-src)?\s+(?:\[[^\]]*\]\s+)?(\S+)", line)
            if m:
                uris.append(m.group(1))
    seen, result = set(), []
    for uri in uris:
        uri = uri.rstrip("/")
        if uri.endswith("/debian") and uri not in seen:
            seen.add(uri)
            result.append(uri)
    return result


def fetch_orig_tarball(downloads: Path, log=print, etc_apt: Path = Path("/etc/apt")) -> Path:
    """The verified upstream tarball in `downloads`, fetched with apt-get when not there yet."""
    target = downloads / ORIG_TARBALL
    if target.is_file() and sha256_of(target) == ORIG_SHA256:
        return target
    mirrors = debian_mirrors(etc_apt)
    if not mirrors:
        raise SourceUnavailable("no Debian archive URI found in /etc/apt")
    if shutil.which("apt-get") is None:
        raise SourceUnavailable("apt-get is not available")
    downloads.mkdir(parents=True, exist_ok=True)
    attempts = [(mirrors, [])]
    if ARCHIVE_MIRROR not in mirrors:
        attempts.append(([ARCHIVE_MIRROR], ["-oAcquire::Check-Valid-Until=false"]))
    failures = []
    for uris, extra in attempts:
        try:
            _apt_get_source(target, uris, extra, log)
        except SourceUnavailable as err:
            failures.append(f"from {', '.join(uris)}: {err}")
            continue
        return target
    raise SourceUnavailable("\n".join(failures))


def _apt_get_source(target: Path, uris: List[str], extra_opts: List[str], log) -> None:
    """apt-get source from `uris` into a temporary folder beside `target` (same file system);
    the tarball becomes `target` only once its SHA-256 is the pinned one."""
    with tempfile.TemporaryDirectory(prefix="caffe-src-", dir=target.parent) as tmp:
        tmp = Path(tmp)
        (tmp / "lists" / "partial").mkdir(parents=True)
        signed = f"[signed-by={KEYRING}] " if Path(KEYRING).is_file() else ""
        (tmp / "sources.list").write_text(
            "".join(f"deb-src {signed}{m} {SUITE} main\n" for m in uris))
        opts = [f"-oDir::Etc::SourceList={tmp / 'sources.list'}",
                "-oDir::Etc::SourceParts=/dev/null", f"-oDir::State::Lists={tmp / 'lists'}",
                "-oAPT::Sandbox::User=root", *extra_opts, "-qq"]
        log(f"fetching Debian's {PACKAGE} {VERSION} source ({SUITE}) with apt-get from "
            f"{', '.join(uris)}")
        for cmd in (["apt-get", *opts, "update"],
                    ["apt-get", *opts, "source", "--download-only", f"{PACKAGE}={VERSION}"]):
            proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SourceUnavailable(f"{' '.join(cmd[:1] + cmd[-2:])} failed:\n"
                                        f"{proc.stdout}{proc.stderr}")
        got = tmp / ORIG_TARBALL
        digest = sha256_of(got) if got.is_file() else "missing"
        if digest != ORIG_SHA256:
            raise SourceUnavailable(f"{ORIG_TARBALL}: SHA-256 {digest}, expected {ORIG_SHA256}")
        os.replace(got, target)
