"""Paths a person gives (a flag, a spec's value): ``~`` and ``~user`` expanded as a shell does.

A shell expands ``~`` before oscarvt sees a flag, but not in a quoted argument, a YAML value or
a Buildbot step's arguments; there oscarvt does. A ``~user`` this host does not have is bad input,
named, where Python's own expansion would raise a RuntimeError.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from oscarvt.errors import InputError, shown


def expand_home(path: str | Path, what: str) -> Path:
    """``path`` with a leading ``~`` or ``~user`` expanded; ``what`` names it in the error (a flag, a key)."""
    try:
        return Path(path).expanduser()
    except RuntimeError:  # ~name of a user this host does not have
        raise InputError(f"{what}: {shown(str(path))} names a user this host does not have") from None


def flag_path(text: str) -> Path:
    """An argparse ``type``: the flag's path, expanded (argparse names the flag in its one error line)."""
    try:
        return Path(text).expanduser()
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"{shown(text)} names a user this host does not have") from None


def folder_to_make(dest: Path, flag: str) -> Path:
    """``dest`` made absolute, if it is a folder or can be made one (``flag`` names it in errors)."""
    try:
        dest = dest.resolve()
    except (OSError, ValueError):  # a NUL in the name, a symlink loop
        raise InputError(f"{flag}: not a usable folder name: {shown(str(dest))}") from None
    for folder in (dest, *dest.parents):
        if folder.exists() or folder.is_symlink():
            if not folder.is_dir():
                raise InputError(f"{flag}: {dest}: {folder} is not a folder")
            break
    return dest
