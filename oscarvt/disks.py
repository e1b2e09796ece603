"""Disk images: copy-on-write overlays of the template, blank disks for nodes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from oscarvt.errors import OscarvtError


def image_format(path: Path) -> str:
    """The format ``qemu-img`` sees in ``path`` (qcow2, raw, ...), read without writing it."""
    info = _qemu_img("info", "--force-share", "--output=json", str(path))
    return str(json.loads(info)["format"])


def disk_format(path: Path) -> str:
    """The format of ``path``: asked of qemu-img if it exists, else guessed from its suffix."""
    if path.exists():
        return image_format(path)
    return "qcow2" if path.suffix == ".qcow2" else "raw"


def create_overlay(template: Path, overlay: Path) -> None:
    """Create a qcow2 overlay of ``template``; the template is only ever read (O(1) copy)."""
    _qemu_img("create", "-q", "-f", "qcow2", "-F", image_format(template),
              "-b", str(template.resolve()), str(overlay))


def create_blank(path: Path, size: str) -> None:
    """Create an empty qcow2 disk of ``size`` (e.g. ``4G``)."""
    _qemu_img("create", "-q", "-f", "qcow2", str(path), size)


def _qemu_img(*args: str) -> str:
    try:
        result = subprocess.run(["qemu-img", *args], capture_output=True, text=True)
    except FileNotFoundError:
        raise OscarvtError("qemu-img is not installed (Debian package qemu-utils)") from None
    if result.returncode != 0:
        message = result.stderr.strip().splitlines()[-1:] or ["failed"]
        raise OscarvtError(f"qemu-img {args[0]}: {message[0]}")
    return result.stdout
