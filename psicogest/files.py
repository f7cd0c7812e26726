"""Files written whole or not at all.

A full disk, a crash or a second process writing at the same moment must never leave a
truncated or empty file where a reader (a person opening an ``.eml``, the next start reading
its secret key) expects a whole one. :func:`write_atomically` writes a temporary file beside
the target, flushes it to disk and only then gives it the target's name.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

#: What a local disk says when it cannot take a file: full, over quota, read-only, failing.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG})


def is_disk_error(err: BaseException) -> bool:
    """Whether ``err`` is the local disk refusing a write (not a network error)."""
    return isinstance(err, OSError) and err.errno in DISK_ERRNOS


def write_atomically(
    path: Path, data: bytes, *, mode: int = 0o644, replace: bool = True, durable: bool = False
) -> bool:
    """Write ``data`` to ``path``: readers see the old file (or none) or the whole new one.

    With ``replace=False`` an existing file is kept (two processes creating the same file:
    the first one wins, the second one reads it); ``durable`` also survives a power cut
    (the data is flushed to the disk before the rename). Returns whether ``path`` now holds
    ``data``. On any error the temporary file is removed and the error raised."""
    path = Path(path)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        if replace:
            os.replace(temporary, path)
            return True
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
