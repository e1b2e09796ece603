"""The CPU architectures oscarvt runs guests of, one row each, named as Debian names them.

Everything that differs between an amd64 and an arm64 cluster is read from here: which
QEMU runs it and on which machine, the serial console the kernel writes to, how firmware
is told what to boot, the Debian packages a headnode template needs, and what a host must
have installed to build and run it. V2M profiles have no element for the architecture; it
lives beside the profile (``NAME.oscarvt.json``, key ``arch``), amd64 when absent.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

from oscarvt.errors import InputError, shown


@dataclass(frozen=True)
class Arch:
    """One architecture: its QEMU, its firmware, its console and its packages."""

    name: str                 # Debian's name: amd64, arm64
    machine_name: str         # the kernel's (``uname -m``) on a host of this architecture
    qemu: str                 # the QEMU system emulator
    qemu_package: str         # the Debian package that has it
    machine: str | None       # QEMU's -machine; None: its default (the PC)
    cpu: str | None           # QEMU's -cpu under TCG (KVM: the host's); None: its default
    console: str              # the kernel's serial console device
    firmware: Path | None     # UEFI firmware for boots without -kernel; None: the machine's BIOS
    firmware_package: str | None
    kernel_package: str       # the Debian kernel of a headnode template
    boot_packages: tuple[str, ...]  # what the example suite makes boot media with, on a headnode of this arch
    cdrom_bus: str            # "ide" (the PC's CD drive) or "scsi" (virtio-scsi: ``virt`` has no IDE)
    vmgenid: bool = False     # QEMU has a vmgenid device for it (Linux reseeds when a saved state restores)

    @property
    def boot_by_index(self) -> bool:
        """UEFI firmware reads the boot order from each device's ``bootindex``, not ``-boot order``."""
        return self.firmware is not None

    def host_packages(self) -> tuple[str, ...]:
        """Debian packages a host needs to build templates of this arch and run its guests."""
        needed = [self.qemu_package, *([self.firmware_package] if self.firmware_package else [])]
        if not self.native():
            needed += ["qemu-user-static", "binfmt-support"]  # mmdebstrap runs its maintainer scripts
        return tuple(needed)

    def native(self) -> bool:
        """Whether this host's CPU is of this architecture (so KVM can run its guests)."""
        return platform.machine() == self.machine_name


ARCHES: dict[str, Arch] = {arch.name: arch for arch in (
    Arch("amd64", "x86_64", "qemu-system-x86_64", "qemu-system-x86", None, None, "ttyS0", None, None,
         "linux-image-cloud-amd64", ("isolinux", "syslinux-common", "pxelinux", "extlinux"), "ide", vmgenid=True),
    Arch("arm64", "aarch64", "qemu-system-aarch64", "qemu-system-arm", "virt,gic-version=3", "cortex-a57",
         "ttyAMA0", Path("/usr/share/qemu-efi-aarch64/QEMU_EFI.fd"), "qemu-efi-aarch64",
         "linux-image-cloud-arm64", ("grub-efi-arm64-bin", "grub-common", "mtools", "dosfstools"), "scsi"),
)}
DEFAULT = "amd64"


def arch(name: str) -> Arch:
    """The architecture named ``name``; bad input is one line that lists the known ones."""
    try:
        return ARCHES[name]
    except (KeyError, TypeError):
        raise InputError(f"arch must be one of {', '.join(ARCHES)}, not {shown(name)}") from None


def qemu_binaries() -> tuple[str, ...]:
    """Every QEMU that may run a cluster's VMs (to find them among the host's processes)."""
    return tuple(a.qemu for a in ARCHES.values())
