"""Progress lines and the one-line verdict every command ends with (each also an event).

Credentials in URLs are masked in every line (``oscarvt.masking``).
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from oscarvt import events
from oscarvt.errors import Blame
from oscarvt.masking import mask_credentials

_stream: TextIO = sys.stdout
_started = time.monotonic()


def use_stream(stream: TextIO) -> None:
    """Send progress and verdicts to ``stream`` (stderr when stdout carries data)."""
    global _stream
    _stream = stream


def progress(message: str) -> None:
    """Print one progress line, stamped with the seconds since the command started."""
    _print(f"[{time.monotonic() - _started:7.1f}s] {message}")
    events.emit("progress", text=message)


def verdict(verb: str, message: str, blame: Blame | None = None, vm: str | None = None,
            logs: str | None = None) -> None:
    """Print the command's final line: ``PASS: VERB: ...``, or ``FAIL: VERB: BLAME: ...`` with a blame,
    ``logs`` (where to read more) in parentheses at its end; the event carries it as a field of its own."""
    text = f"PASS: {verb}: {message}" if blame is None else f"FAIL: {verb}: {blame}: {message}"
    _print(f"{text} ({logs})" if logs else text)
    events.emit("verdict", verb=verb, ok=blame is None, blame=blame, message=message, vm=vm, logs=logs)


def printable(text: str) -> str:
    """``text`` as one line a terminal shows as it is: tabs as spaces, every other control or
    separator character (newline, escape, U+2028, ...) escaped as Python writes it (``\\x1b``)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text.expandtabs())


def _print(line: str) -> None:
    """Print one line (progress or verdict; whatever it quotes, a guest's text too, stays one line)."""
    line = printable(mask_credentials(line))
    try:
        try:
            print(line, file=_stream, flush=True)
        except UnicodeEncodeError:  # a file name that is not UTF-8, on a strict output
            print(line.encode("utf-8", "backslashreplace").decode(), file=_stream, flush=True)
    except OSError:  # a closed or full output must not hide the verdict event
        pass
