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
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode is None:
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
