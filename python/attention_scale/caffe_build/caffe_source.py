"""BVLC Caffe's source, from whichever route reaches it, verified by its content.

Debian's orig tarball and GitHub's archive of commit 99bd997 hold the same 701 files, so one
content hash (of the file tree, whatever the compression or top folder) identifies that source
however it arrives. Routes, in order:
  1. `--source-tarball PATH` (offline machines): any tarball of that commit;
  2. a tarball already in the cache's downloads/ folder;
  3. Debian's signed `caffe` source package (where the apt sources name a Debian mirror);
  4. GitHub's archive of the commit (any machine with internet; the URL can be overridden with
     ATTENTION_SCALE_CAFFE_URL, e.g. for a local mirror).
Every tree is checked against CONTENT_SHA256 before it is used; a tree that differs is refused
with both hashes and nothing is left behind.
"""
import hashlib
import os
import shutil
import tarfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Optional

from . import debian_source

COMMIT = "99bd99795dcdf0b1d3086a8d67ab1782a8a08383"
# sha256 of `find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum` in the tree's root.
CONTENT_SHA256 = "40e059ef5413038c0efa9460777fb94fabca35676804d6409491a49e909849a5"
GITHUB_URL = f"https://github.com/BVLC/caffe/archive/{COMMIT}.tar.gz"
GITHUB_TARBALL = f"caffe-{COMMIT}.tar.gz"
URL_ENV = "ATTENTION_SCALE_CAFFE_URL"


class SourceMismatch(RuntimeError):
    """A tarball whose files are not BVLC Caffe's commit COMMIT."""


def content_digest(root: Path) -> str:
    """The content hash of the file tree under `root`, as the shell pipeline in the module
    docstring computes it (regular files only, byte-sorted './relative/path' names)."""
    names = []
    for folder, dirs, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            if path.is_file() and not path.is_symlink():
                names.append(b"./" + os.fsencode(path.relative_to(root)))
    outer = hashlib.sha256()
    for rel in sorted(names):
        inner = hashlib.sha256()
        with open(root / os.fsdecode(rel[2:]), "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                inner.update(chunk)
        outer.update(inner.hexdigest().encode() + b"  " + rel + b"\n")
    return outer.hexdigest()


def _symlinks(root: Path):
    return [str(Path(d, n).relative_to(root)) for d, dirs, files in os.walk(root)
            for n in dirs + files if Path(d, n).is_symlink()]


def _extract_all(tar: tarfile.TarFile, dest: Path) -> None:
    try:
        tar.extractall(dest, filter="data")
    except TypeError:  # Python without extraction filters (< 3.8.17 / 3.9.17 / 3.10.12 / 3.11.4)
        for member in tar.getmembers():
            target = (dest / member.name).resolve()
            if not (member.isfile() or member.isdir()) or dest.resolve() not in target.parents:
                raise SourceMismatch(f"{tar.name}: unexpected entry {member.name!r}")
        tar.extractall(dest)


def extract_verified(tarball: Path, dest: Path) -> None:
    """Unpack `tarball` into `dest` (which must not exist) if and only if its files are
    BVLC Caffe's commit COMMIT; `dest` never exists half-extracted or unverified."""
    tmp = dest.with_name(dest.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        try:
            with tarfile.open(tarball) as tar:
                _extract_all(tar, tmp)
        except (tarfile.TarError, OSError, EOFError) as err:
            raise SourceMismatch(f"{tarball}: not a readable tarball ({err})") from err
        entries = list(tmp.iterdir())
        # Debian's orig tarball has no top folder; GitHub's has caffe-<commit>/.
        root = entries[0] if len(entries) == 1 and entries[0].is_dir() else tmp
        links = _symlinks(root)
        got = content_digest(root)
        if got != CONTENT_SHA256 or links:
            extra = f" and {len(links)} symlink(s) ({links[0]}, ...)" if links else ""
            raise SourceMismatch(
                f"{tarball} is not BVLC Caffe {COMMIT[:12]}: its content hash is\n"
                f"    {got}{extra}\n  expected\n    {CONTENT_SHA256}\n"
                "  (sha256 over `find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum`"
                " in the unpacked top folder)")
        if root is tmp:
            os.replace(tmp, dest)
        else:
            os.replace(root, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def download(url: str, target: Path, log: Callable[[str], None]) -> Path:
    """`url` to `target` through a .partial file (a stopped download leaves nothing)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    log(f"downloading {url}")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
        os.replace(partial, target)
    except (urllib.error.URLError, OSError, ValueError) as err:
        if partial.exists():
            partial.unlink()
        raise debian_source.SourceUnavailable(f"could not download {url}: {err}") from err
    return target


ROUTES = ("auto", "debian", "download")


def obtain_bvlc_tree(dest: Path, downloads: Path, tarball: Optional[Path] = None,
                     url: Optional[str] = None, route: str = "auto",
                     etc_apt: Path = Path("/etc/apt"),
                     log: Callable[[str], None] = print) -> str:
    """Put the verified BVLC tree at `dest`; return a line saying where it came from.
    `route`: "auto" (the order in the module docstring), "debian" or "download" only."""
    if tarball is not None:
        if not tarball.is_file():
            raise debian_source.SourceUnavailable(f"--source-tarball {tarball}: no such file")
        extract_verified(tarball, dest)
        return f"{tarball} (content hash verified)"
    debian = downloads / debian_source.ORIG_TARBALL
    github = downloads / GITHUB_TARBALL
    url = url or os.environ.get(URL_ENV) or GITHUB_URL
    for cached in (debian, github):
        if cached.is_file():
            try:
                extract_verified(cached, dest)
                return f"{cached} (cached; content hash verified)"
            except SourceMismatch as err:
                log(f"removing a cached download that failed verification: {err}")
                cached.unlink()
    reasons = []
    if route == "download":
        reasons.append("Debian's archive: not tried (download route chosen)")
    elif debian_source.debian_mirrors(etc_apt):
        try:
            got = debian_source.fetch_orig_tarball(downloads, log=log, etc_apt=etc_apt)
            extract_verified(got, dest)
            return f"Debian's signed source package {debian_source.VERSION} (content hash verified)"
        except debian_source.SourceUnavailable as err:
            reasons.append(f"Debian's archive: {err}")
            log(f"Debian's source package is not available ({err}); trying {url}")
    else:
        reasons.append("Debian's archive: no Debian mirror in the apt sources")
    if route == "debian":
        raise debian_source.SourceUnavailable(
            "no route to BVLC Caffe's source:\n  - " + "\n  - ".join(reasons))
    try:
        got = download(url, github, log)
    except debian_source.SourceUnavailable as err:
        reasons.append(str(err))
        raise debian_source.SourceUnavailable(
            "no route to BVLC Caffe's source:\n  - " + "\n  - ".join(reasons)
            + f"\n  Download {GITHUB_URL} elsewhere and pass --source-tarball FILE, or build "
            "your own tree with --caffe-root DIR") from err
    try:
        extract_verified(got, dest)
    except SourceMismatch:
        got.unlink()
        raise
    return f"{url} (content hash verified)"
