"""Processes on this host as /proc shows them (for telling oscarvt's own QEMUs and drivers apart)."""

from __future__ import annotations

from pathlib import Path


def live_argv(pid: int) -> list[str] | None:
    """The command line of process ``pid``, or None if there is none or it is a zombie."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None
    return None if status == "Z" else argv
