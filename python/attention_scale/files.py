"""Writing a file so that nobody ever sees it half-written.

Standard library only: the build support uses it before the project's venv exists.
"""
import os
import tempfile
from pathlib import Path


def atomic_write(path, data, mode=None):
    """Write `data` (str or bytes) to `path` through a temporary file in the same folder and a
    rename. The file keeps its permissions when it exists; `mode` sets them (default 0o644)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if mode is None:
            mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        # Named by the file asked for, not by the temporary one (or a folder on the way).
        raise type(exc)(exc.errno, exc.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def output_file_problem(output, if_folder):
    """Why the file `output` cannot be written, or None: a folder there (`if_folder`, the
    message saying what to give instead), or no folder to write it into. A missing folder is
    not created: a mistyped one would otherwise appear silently (at / even)."""
    output = Path(output)
    if output.is_dir():
        return if_folder
    if not output.parent.is_dir():
        return f"no folder {output.parent} to write into; create it first"
    return None


def folder_problem(folder):
    """Why files cannot be written in `folder` (made when missing), or None when they can. Creates
    nothing: the nearest existing folder on the way is tried with a temporary folder, removed."""
    folder = Path(folder)
    existing = folder
    while not os.path.lexists(existing) and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        return "a file, not a folder" if existing == folder else f"{existing} is a file, not a folder"
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".write-test-", dir=existing))
    except OSError as exc:
        where = "" if existing == folder else f" in {existing}"
        return f"cannot write{where} ({exc.strerror})"
    return None


def file_sha256(path, chunk=1 << 20):
    """The SHA-256 of a file's content, as hex (read in 1 MiB pieces)."""
    import hashlib
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(chunk), b""):
            digest.update(piece)
    return digest.hexdigest()
