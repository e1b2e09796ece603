"""Reading what a worker uploaded (``public_html/logs``) on the master: small regular files only.

A build's logs folder came from a worker, and in part out of a guest, so the master reads a file
from it only if neither the file nor a folder on the way to it (below the logs folder) is a
symbolic link, the file is a regular file, and it is not larger than the caller expects.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def read_uploaded(root: Path, relative: str, limit: int) -> bytes | None:
    """The bytes of ``root/relative``; None if it is missing, a link, not a regular file, goes through a
    link, or holds more than ``limit`` bytes."""
    parts = Path(relative).parts
    if not parts or any(part in ("..", "/") for part in parts):
        return None
    folder = root
    try:
        for part in parts[:-1]:
            folder = folder / part
            if not stat.S_ISDIR(folder.lstat().st_mode):
                return None
        handle = os.open(folder / parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        info = os.fstat(handle)
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            return None
        data = b""
        while len(data) <= limit:
            chunk = os.read(handle, limit + 1 - len(data))
            if not chunk:
                break
            data += chunk
    finally:
        os.close(handle)
    return data if len(data) <= limit else None
