"""Progress lines and the one-line verdict every command ends with."""

from __future__ import annotations

import sys
import time
from typing import TextIO

_stream: TextIO = sys.stdout
_started = time.monotonic()


def use_stream(stream: TextIO) -> None:
    """Send progress and verdicts to ``stream`` (stderr when stdout carries data)."""
    global _stream
    _stream = stream


def progress(message: str) -> None:
    """Print one progress line, stamped with the seconds since the command started."""
    print(f"[{time.monotonic() - _started:7.1f}s] {message}", file=_stream, flush=True)


def verdict(ok: bool, message: str) -> None:
    """Print the command's final line: ``PASS: ...`` or ``FAIL: ...``."""
    print(f"{'PASS' if ok else 'FAIL'}: {message}", file=_stream, flush=True)
