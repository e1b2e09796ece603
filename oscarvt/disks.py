"""Disk images: copy-on-write overlays of the template, blank disks for nodes."""

from __future__ import annotations

import json
from pathlib import Path

from oscarvt.tools import run_tool


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


def create_blank(path: Path, size_mb: int) -> None:
    """Create an empty qcow2 disk of ``size_mb`` MB (V2M's unit for disk sizes)."""
    _qemu_img("create", "-q", "-f", "qcow2", str(path), f"{size_mb}M")


def _qemu_img(*args: str) -> str:
    return run_tool(["qemu-img", *args], f"qemu-img {args[0]}")
