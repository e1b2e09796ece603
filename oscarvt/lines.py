"""Reading a growing log by byte offset, one complete line at a time."""

from __future__ import annotations


def complete_lines(data: bytes, final: bool = False) -> tuple[list[str], int]:
    """The complete lines in ``data`` (decoded) and the bytes they take.

    A last line without its newline is left for the next read, unless ``final``
    (the writer is done, so it will never be completed).
    """
    end = len(data) if final else data.rfind(b"\n") + 1
    text = data[:end].decode(errors="replace")
    return [line.rstrip("\r") for line in text.splitlines()], end
