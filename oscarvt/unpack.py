"""Unpack what a guest sends (a tar stream), checked entry by entry before anything is written.

The guest runs the code under test, so its stream is hostile until checked. Only regular files
and folders under the names that were asked for are written, each with a fresh name in the
destination (never through a link, never over one); links, devices, FIFOs, absolute names,
``..``, a name over ``NAME_MAX`` bytes, a path over ``MAX_PATH`` bytes or ``MAX_DEPTH`` names deep,
and an entry the host's file system refuses for its name or for what is in its way are refused
by name, and the copy goes on. A file over ``FILE_CAP``, a stream over ``COPY_CAP`` bytes (what
is refused counts too), over ``MAX_ENTRIES`` entries or over ``TIME_LIMIT`` stops the copy in one line:
what came before stays, the rest is left unread (a guest cannot make the host read on through
millions of refusals). The host's own trouble writing (its disk full, an I/O error, a folder it may
not write) is ``HostCannotWrite``, an ``InfraError``. Names are quoted by ``errors.shown`` (control
characters escaped, cut short). This does not rely on ``tarfile``'s extraction filters (Debian 12's
Python 3.11.2 has none).
"""

from __future__ import annotations

import errno
import os
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Sequence, cast

from oscarvt.errors import InfraError, shown

FILE_CAP = 1 << 30     # bytes in one file (a log, the boot CD)
COPY_CAP = 2 << 30     # bytes of stream in one copy
TIME_LIMIT = 600.0     # seconds for one copy
MAX_ENTRIES = 10_000   # entries in one copy, refused ones too (a grab-logs of oscar-mini with 10 nodes has 26)
MAX_DEPTH = 32         # names in one entry's path (var/log/oscar/oscarinstall.log is 4)
MAX_PATH = 1024        # bytes in one entry's path, so that --dest and the master's logs folder fit PATH_MAX
NAME_MAX = 255         # bytes in one name, as Linux file systems allow
CHUNK = 1 << 20

_ENTRY_ERRNOS = {errno.ENAMETOOLONG, errno.ELOOP, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.EINVAL,
                 errno.EILSEQ}
"""What writing an entry fails with because of the entry (its name, or what an earlier entry put in its
way); any other errno (ENOSPC, EIO, EACCES, EROFS, ...) is the host's own trouble."""


class HostCannotWrite(InfraError):
    """The host could not write what the guest sent: its disk full, an I/O error, a folder it may
    not write (the ``OSError`` is the cause)."""


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
    stopped: bool = False  # a cap, the entries' bound or the time limit ended the copy early
    seen: set[str] = field(default_factory=set)  # the tops the stream had entries under (written or refused by kind)


def unpack(stream: IO[bytes], dest: Path, top: str | Sequence[str], file_cap: int = FILE_CAP,
           copy_cap: int = COPY_CAP, time_limit: float = TIME_LIMIT, max_entries: int = MAX_ENTRIES) -> Unpacked:
    """Write the stream's entries named ``top`` or ``top/...`` into the folder ``dest``.

    ``top`` may be several names, and each a relative path (``var/log/oscar``). An entry the host
    cannot take is refused; the host's own trouble writing is raised (``HostCannotWrite``)."""
    copy = _Copy(dest, [top] if isinstance(top, str) else list(top), file_cap, copy_cap, time_limit, max_entries)
    dest.mkdir(parents=True, exist_ok=True)
    counted = _Counted(stream)
    try:
        with tarfile.open(fileobj=cast(IO[bytes], counted), mode="r|") as tar:
            for member in tar:
                if not copy.take(tar, member):
                    break  # the rest is not read: the caller closes the stream
    except tarfile.TarError as exc:
        if counted.count == 0:
            raise EmptyStream("no bytes") from None
        raise DamagedStream(str(exc) or type(exc).__name__) from None
    return copy.result


class _Copy:
    """One copy: where it goes, its bounds, and what it wrote and refused so far."""

    def __init__(self, dest: Path, named: list[str], file_cap: int, copy_cap: int, time_limit: float,
                 max_entries: int) -> None:
        self.dest, self.named = dest, named
        self.tops = [PurePosixPath(name).parts for name in named]
        self.file_cap, self.copy_cap, self.time_limit, self.max_entries = file_cap, copy_cap, time_limit, max_entries
        self.deadline = time.monotonic() + time_limit
        self.entries = 0
        self.result = Unpacked()

    def take(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> bool:
        """Write or refuse one entry; False if the copy stops here."""
        parts, under = _parts(member.name, self.tops)
        if under is not None:
            self.result.seen.add(self.named[under])
        name = shown(member.name)
        self.entries += 1
        if self.entries > self.max_entries:
            return self._stop(f"{name} and what follows: over {self.max_entries} entries in one copy; copy stopped")
        if time.monotonic() > self.deadline:
            return self._stop(f"{name} and what follows: the copy took over {self.time_limit:.0f}s")
        why = _refusal(member, parts, self.file_cap)
        if _data_size(member) > self.file_cap:  # refused; its data is not read: the rest of the stream is lost
            return self._stop(f"{name}: {why}; copy stopped")
        if member.offset_data + _data_size(member) > self.copy_cap:  # the stream read so far and this entry's data
            return self._stop(f"{name}: the copy would pass {self.copy_cap >> 20} MiB; copy stopped")
        if why is not None:
            return self._refuse(f"{name}: {why}")
        assert parts is not None  # _refusal refuses the rest
        return self._place(tar, member, parts, name)

    def _place(self, tar: tarfile.TarFile, member: tarfile.TarInfo, parts: list[str], name: str) -> bool:
        """Write the folder or file ``member`` at ``parts``; refused if something is in its way or the
        host cannot take its name; False if the time ran out while writing."""
        target = self.dest.joinpath(*parts)
        try:
            if not _make_folders(self.dest, parts if member.isdir() else parts[:-1]) \
                    or (member.isreg() and (target.is_symlink() or (target.exists() and not target.is_file()))):
                return self._refuse(f"{name}: something else is in the way in {self.dest}")
            if member.isdir():
                return True
            source = tar.extractfile(member)
            assert source is not None  # a regular file
            if not _write(source, target, self.deadline):
                return self._stop(f"{name}: the copy took over {self.time_limit:.0f}s; copy stopped")
        except TimeoutError:
            raise  # the guest's channel went quiet (oscarvt.ssh): not the host's disk
        except OSError as exc:
            return self._not_written(name, exc)
        self.result.files += 1
        self.result.size += member.size
        return True

    def _not_written(self, name: str, exc: OSError) -> bool:
        """The entry refused if its own name or kind made the host fail, else the host's trouble raised."""
        if exc.errno not in _ENTRY_ERRNOS:
            raise HostCannotWrite(f"the host cannot write {name} into {self.dest}: {exc.strerror or exc}") from exc
        return self._refuse(f"{name}: the host cannot take it ({exc.strerror or exc})")

    def _refuse(self, line: str) -> bool:
        """Note one refused entry; the copy goes on."""
        self.result.refused.append(line)
        return True

    def _stop(self, line: str) -> bool:
        """Note why the copy stops here; the rest of the stream is left unread."""
        self.result.refused.append(line)
        self.result.stopped = True
        return False


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
        return f"a link (to {shown(member.linkname)})"
    if not (member.isreg() or member.isdir()):
        return "not a regular file or folder (device, FIFO, ...)"
    if _data_size(member) > file_cap:
        return f"{member.size >> 20} MiB, over the {file_cap >> 20} MiB a file may have"
    return _unfit(parts)


def _data_size(member: tarfile.TarInfo) -> int:
    """The bytes of stream that ``member``'s data takes: tarfile reads past a regular or unknown
    entry's data; a folder's, a link's or a device's size is no data."""
    return member.size if member.isreg() or member.type not in tarfile.SUPPORTED_TYPES else 0


def _unfit(parts: list[str]) -> str | None:
    """Why the host should not take the path ``parts`` (a name or the path too long, too deep), or None."""
    try:
        names = [os.fsencode(part) for part in parts]
    except UnicodeEncodeError:
        return "not a usable file name"
    if any(b"\0" in part for part in names):
        return "not a usable file name"
    if (longest := max(map(len, names))) > NAME_MAX:
        return f"a name of {longest} bytes, over the {NAME_MAX} a file system allows"
    if len(names) > MAX_DEPTH:
        return f"{len(names)} names deep, over the {MAX_DEPTH} a copy allows"
    if (size := len(b"/".join(names))) > MAX_PATH:
        return f"a path of {size} bytes, over the {MAX_PATH} a copy allows"
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
