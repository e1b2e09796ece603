"""Step logs with a size cap that keep their head and their tail.

What a step shows came, in good part, out of a guest (OSCAR's output, consoles), and a guest
can print without end; Buildbot 4.3 accepts ``logMaxSize`` but does not enforce it. So a step
log keeps its first :data:`HEAD` characters and its last :data:`TAIL`, with a line in between
saying how much was left out: the whole files are in the build's logs tarball.
"""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path
from typing import Any

HEAD = 2 * 1024 * 1024  # characters of a log kept from its start
TAIL = 256 * 1024       # characters kept from its end


def left_out(count: int) -> str:
    """The line that stands where ``count`` characters were left out."""
    return f"\n[oscarvt: {count} characters left out here; the logs tarball has all of it]\n"


def read_capped(path: Path, head: int = HEAD, tail: int = TAIL) -> str:
    """A file's text for a step log: its head and tail if it is large; a link is not followed."""
    with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size <= head + tail:
            return file.read(head + tail).decode("utf-8", "replace")
        first = file.read(head)
        file.seek(size - tail)
        last = file.read(tail)
    return first.decode("utf-8", "replace") + left_out(size - head - tail) + last.decode("utf-8", "replace")


class CappedLog:
    """Stands for a step's log while a remote command writes to it (stdio, or a log file it
    follows): passes on the first ``head`` characters, then keeps only the last ``tail`` (each
    with its stream) until :meth:`write_tail` writes them after the left-out line (call it
    when the command has ended, before the log is finished). Other calls go to the log itself."""

    STREAMS = {"o": "addStdout", "e": "addStderr", "h": "addHeader"}  # Buildbot's stream letters

    def __init__(self, log: Any, head: int = HEAD, tail: int = TAIL) -> None:
        self.log = log
        self.room = head
        self.tail = tail
        self.kept: deque[tuple[str, str]] = deque()
        self.kept_size = 0
        self.dropped = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.log, name)

    async def _add(self, stream: str, data: str, method: str) -> None:
        if not self.kept and self.room >= len(data):
            self.room -= len(data)
            await getattr(self.log, method)(data)
            return
        if not self.kept and self.room > 0:
            await getattr(self.log, self.STREAMS[stream])(data[:self.room])
            data, self.room = data[self.room:], 0
        self.kept.append((stream, data))
        self.kept_size += len(data)
        while len(self.kept) > 1 and self.kept_size - len(self.kept[0][1]) >= self.tail:
            self.dropped += len(self.kept[0][1])
            self.kept_size -= len(self.kept.popleft()[1])

    async def addStdout(self, data: str) -> None:  # noqa: N802
        await self._add("o", data, "addStdout")

    async def addStderr(self, data: str) -> None:  # noqa: N802
        await self._add("e", data, "addStderr")

    async def addHeader(self, data: str) -> None:  # noqa: N802
        await self._add("h", data, "addHeader")

    async def add_stdout_lines(self, data: str, *_: Any) -> None:
        await self._add("o", data, "add_stdout_lines")

    async def add_stderr_lines(self, data: str, *_: Any) -> None:
        await self._add("e", data, "add_stderr_lines")

    async def add_header_lines(self, data: str, *_: Any) -> None:
        await self._add("h", data, "add_header_lines")

    async def write_tail(self) -> None:
        """Write the left-out line and the kept tail (if anything was left out)."""
        if not self.kept:
            return
        excess = max(0, self.kept_size - self.tail)
        stream, first = self.kept[0]
        self.kept[0] = (stream, first[excess:])
        await self.log.addHeader(left_out(self.dropped + excess))
        for stream, data in self.kept:
            await getattr(self.log, self.STREAMS[stream])(data)
        self.kept.clear()
