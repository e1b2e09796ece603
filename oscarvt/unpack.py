"""Unpack what a guest sends (a tar stream), checked entry by entry before anything is written.

The guest runs the code under test, so its stream is hostile until checked. Only regular files
and folders under the names that were asked for are written, each with a fresh name in the
destination (never through a link, never over one); links, devices, FIFOs, absolute names and
``..`` are refused by name. A file over ``FILE_CAP``, a copy over ``COPY_CAP`` or over
``TIME_LIMIT`` stops the copy: what came before stays, what was refused is reported. This does
not rely on ``tarfile``'s extraction filters (Debian 12's Python 3.11.2 has none).
"""

from __future__ import annotations

import os
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Sequence, cast

FILE_CAP = 1 << 30   # bytes in one file (a log, the boot CD)
COPY_CAP = 2 << 30   # bytes in one copy
TIME_LIMIT = 600.0   # seconds for one copy
CHUNK = 1 << 20


class DamagedStream(Exception):
    """The bytes are not a tar stream (empty, truncated, garbage)."""


class EmptyStream(DamagedStream):
    """There were no bytes at all."""


@dataclass
class Unpacked:
    """What one copy wrote and what it refused (``NAME: why``, a line each)."""

    files: int = 0
    size: int = 0
    refused: list[str] = field(default_factory=list)
    stopped: bool = False  # a cap or the time limit ended the copy early
    seen: set[str] = field(default_factory=set)  # the tops the stream had entries under (written or refused by kind)


def unpack(stream: IO[bytes], dest: Path, top: str | Sequence[str], file_cap: int = FILE_CAP,
           copy_cap: int = COPY_CAP, time_limit: float = TIME_LIMIT) -> Unpacked:
    """Write the stream's entries named ``top`` or ``top/...`` into the folder ``dest``.

    ``top`` may be several names, and each a relative path (``var/log/oscar``)."""
    named = [top] if isinstance(top, str) else list(top)
    tops = [PurePosixPath(name).parts for name in named]
    result = Unpacked()
    dest.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + time_limit
    counted = _Counted(stream)
    try:
        with tarfile.open(fileobj=cast(IO[bytes], counted), mode="r|") as tar:
            for member in tar:
                parts, under = _parts(member.name, tops)
                if under is not None:
                    result.seen.add(named[under])
                name = _shown(member.name)
                if time.monotonic() > deadline:
                    result.refused.append(f"{name} and what follows: the copy took over {time_limit:.0f}s")
                    result.stopped = True
                    break
                why = _refusal(member, parts, file_cap)
                if why is None and result.size + member.size > copy_cap:
                    why, result.stopped = f"the copy would pass {copy_cap >> 20} MiB; copy stopped", True
                if why is not None:
                    result.refused.append(f"{name}: {why}")
                    if result.stopped or member.size > file_cap:
                        result.stopped = True  # its data is not read: the rest of the stream is lost
                        break
                    continue
                assert parts is not None  # _refusal refuses the rest
                target = dest.joinpath(*parts)
                if not _make_folders(dest, parts if member.isdir() else parts[:-1]) \
                        or (member.isreg() and (target.is_symlink() or target.is_dir())):
                    result.refused.append(f"{name}: something else is in the way in {dest}")
                    continue
                if member.isdir():
                    continue
                source = tar.extractfile(member)
                assert source is not None  # a regular file
                if not _write(source, target, deadline):
                    result.refused.append(f"{name}: the copy took over {time_limit:.0f}s; copy stopped")
                    result.stopped = True
                    break
                result.files += 1
                result.size += member.size
    except tarfile.TarError as exc:
        if counted.count == 0:
            raise EmptyStream("no bytes") from None
        raise DamagedStream(str(exc) or type(exc).__name__) from None
    return result


class _Counted:
    """A stream that counts the bytes read from it (tarfile's stream mode only calls ``read``)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream, self.count = stream, 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.count += len(data)
        return data


def _parts(name: str, tops: list[tuple[str, ...]]) -> tuple[list[str] | None, int | None]:
    """The entry's path under ``dest`` as parts and the index of the top it is under, or (None, None)
    if it is absolute, has ``..`` or is under no top."""
    path = PurePosixPath(name)
    parts = [p for p in path.parts if p not in ("", ".")]
    if path.is_absolute() or ".." in parts:
        return None, None
    under = next((index for index, top in enumerate(tops) if top and tuple(parts[:len(top)]) == top), None)
    return (parts, under) if under is not None else (None, None)


def _refusal(member: tarfile.TarInfo, parts: list[str] | None, file_cap: int) -> str | None:
    if parts is None:
        return "not under the copied path (absolute, '..' or another name)"
    if member.issym() or member.islnk():
        return f"a link (to {_shown(member.linkname)})"
    if not (member.isreg() or member.isdir()):
        return "not a regular file or folder (device, FIFO, ...)"
    if any("\0" in part for part in parts):
        return "not a usable file name"
    if member.size > file_cap:
        return f"{member.size >> 20} MiB, over the {file_cap >> 20} MiB a file may have; copy stopped"
    return None


def _make_folders(dest: Path, parts: list[str]) -> bool:
    """Make ``dest/parts...`` as real folders; False if a link or a file is in the way."""
    folder = dest
    for part in parts:
        folder = folder / part
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            return False
        folder.mkdir(mode=0o755, exist_ok=True)
    return True


def _write(source: IO[bytes], target: Path, deadline: float) -> bool:
    """Copy ``source`` into ``target`` (O_NOFOLLOW: never through a link); False if the deadline passed."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "wb") as out:
        while chunk := source.read(CHUNK):
            out.write(chunk)
            if time.monotonic() > deadline:
                return False
    return True


def _shown(name: str) -> str:
    return repr(name[:120])
