"""Warm start: a headnode restored from a saved, booted-and-idle machine state instead of booted.

The first time a template's headnode boots cold in a given shape (architecture, machine,
memory, CPUs, devices, accelerator, the QEMU build and the template's files), the driver
saves it at the moment it waits for its identity (``oscarvt.identity``): the machine's state
(QEMU's migration, to a file) and a copy of its disk overlay, in ``warm/KEY/`` beside the
template. Later headnodes of that shape start from it: a new overlay on the saved disk (the
chain template <- saved disk <- the cluster's overlay), QEMU started with ``-incoming``, the
state loaded, then the clone's own identity given. The template is never written; the saved
disk is read-only and only ever a backing file.

A state that does not restore (a damaged file, a guest that does not answer) is removed; the
headnode then boots cold, and that boot saves a new one. At most ``KEEP`` states are kept per
template: the least recently used go first.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from oscarvt import arches
from oscarvt.backends import qemu
from oscarvt.cache import recipe_key
from oscarvt.errors import InfraError
from oscarvt.profile import NAT, Network, Profile

KEEP = 4  # states kept per template
FORMAT = "1"  # of a state folder; a new one leaves older states unused
RESTORE_TIMEOUT = 120.0  # seconds to load a state (it is read from the host's disk or page cache)
SAVE_TIMEOUT = 300.0
STATE, DISK, CONSOLE, META = "state", "disk.qcow2", "console.log", "meta.json"
_PLACES = qemu.VmFiles(pidfile=Path("/vm.pid"), qmp=Path("/vm.qmp"), console=Path("/vm.log"),
                       identity=Path("/vm.identity"))


@dataclass(frozen=True)
class WarmState:
    """One saved state: the machine (``state``), its disk (``disk``, an overlay of the template),
    its console up to the save, and ``meta.json`` (when it was saved, how long the cold boot took,
    the headnode's shape in words, the MAC of each NIC then)."""

    folder: Path

    @property
    def state(self) -> Path:
        return self.folder / STATE

    @property
    def disk(self) -> Path:
        return self.folder / DISK

    @property
    def console(self) -> Path:
        return self.folder / CONSOLE

    def meta(self) -> dict[str, Any]:
        """``meta.json``; InfraError if it is missing or damaged (the state is then of no use)."""
        try:
            data = json.loads((self.folder / META).read_text())
            if not isinstance(data, dict) or not isinstance(data.get("macs"), dict):
                raise ValueError("not a state description")
            return data
        except (OSError, ValueError) as exc:
            raise InfraError(f"{self.folder / META}: {exc}") from None

    def saved_macs(self, profile: Profile) -> dict[str, str]:
        """The MAC each private NIC had when the state was saved -> the one ``profile`` gives it (the NAT NIC
        keeps its MAC, ``network.NAT_MAC``)."""
        saved = self.meta()["macs"]
        return {str(saved[f"nic{n}"]): nic.mac for n, nic in profile.connected_nics()
                if f"nic{n}" in saved and nic.type != NAT}

    def used(self) -> None:
        """Mark it as used now (the least recently used states are pruned first)."""
        try:
            os.utime(self.folder)
        except OSError:
            pass


def states_folder(template_disk: Path) -> Path:
    """Where the saved states of the template ``template_disk`` live: ``warm/`` beside it."""
    return template_disk.resolve().parent / "warm"


def shape_key(profile: Profile, accel: str, template_disk: Path) -> str:
    """What a saved state must match to be restored into ``profile``'s VM: its QEMU command line with this
    cluster's own names left out (files, ports, MACs, LAN), and the files and QEMU it runs."""
    nics = tuple(replace(nic, mac="52:54:00:00:00:00", network=_placeholder(nic.network)) for nic in profile.nics)
    shape = replace(profile, name="headnode", image=Path("/disk.qcow2"), nics=nics)
    argv = qemu.qemu_command(shape, _PLACES, accel, ssh_port=1)
    arch = arches.arch(profile.arch)
    used_files = [template_disk, profile.kernel, profile.initrd, shutil.which(arch.qemu), arch.firmware]
    return recipe_key(FORMAT, json.dumps(argv), json.dumps([_fingerprint(f) for f in used_files if f]))


def find(profile: Profile, accel: str, template_disk: Path) -> WarmState | None:
    """The saved state for ``profile``'s VM, if there is a complete one."""
    saved = WarmState(states_folder(template_disk) / shape_key(profile, accel, template_disk))
    return saved if all(p.is_file() for p in (saved.state, saved.disk, saved.folder / META)) else None


def save(files: qemu.VmFiles, profile: Profile, accel: str, template_disk: Path, boot_seconds: float) -> WarmState:
    """Save the running VM (booted, waiting for its identity) as the state for its shape; it is left
    paused (``qemu.resume``). Another driver that saved the same shape first wins; InfraError on failure."""
    assert profile.image is not None
    root = states_folder(template_disk)
    root.mkdir(parents=True, exist_ok=True)
    final = WarmState(root / shape_key(profile, accel, template_disk))
    work = WarmState(Path(tempfile.mkdtemp(prefix=".saving.", dir=root)))
    try:
        qemu.save_state(files, work.state, SAVE_TIMEOUT)
        shutil.copyfile(profile.image, work.disk)  # flushed and idle: QEMU stopped using it for the save
        if files.console.is_file():
            shutil.copyfile(files.console, work.console)
        else:
            work.console.touch()
        macs = {f"nic{n}": nic.mac for n, nic in profile.connected_nics()}
        shape = {"arch": profile.arch, "memory": profile.memory, "cpus": profile.cpu, "accel": accel}
        (work.folder / META).write_text(json.dumps({"saved": time.time(), "boot_seconds": round(boot_seconds, 1),
                                                    "shape": shape, "macs": macs}, indent=2) + "\n")
        for path in (work.state, work.disk, work.console):
            path.chmod(0o444)
        work.folder.chmod(0o755)
        try:
            work.folder.rename(final.folder)
        except OSError:  # another cluster of the same shape saved it first
            pass
    except OSError as exc:
        raise InfraError(f"could not save the state in {root}: {exc}") from None
    finally:
        if work.folder.exists():
            shutil.rmtree(work.folder, ignore_errors=True)
    prune(root)
    return final


def discard(saved: WarmState) -> None:
    """Remove a state that did not restore (a headnode already running on its disk keeps its open file)."""
    shutil.rmtree(saved.folder, ignore_errors=True)


def prune(root: Path, keep: int = KEEP) -> None:
    """Keep the ``keep`` most recently used states under ``root``; remove the others and failed saves."""
    folders = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                     key=lambda p: p.stat().st_mtime, reverse=True)
    stale = [p for p in root.iterdir() if p.name.startswith(".saving.") and time.time() - p.stat().st_mtime > 3600]
    for folder in folders[keep:] + stale:
        shutil.rmtree(folder, ignore_errors=True)


def _placeholder(network: Network | None) -> Network | None:
    if network is None:
        return None
    return Network("lan", mcast="239.0.0.1:1" if network.mcast else None, bridge="br" if network.bridge else None,
                   tap="tap" if network.tap else None)


def _fingerprint(path: Path | str) -> list[object]:
    """The file as a state depends on it: its real path, size and modification time."""
    real = os.path.realpath(path)
    try:
        info = os.stat(real)
    except OSError:
        return [real, None]
    return [real, info.st_size, info.st_mtime_ns]
