"""Choose KVM or TCG: KVM only when a probe guest really boots under it within seconds.

On some hosts /dev/kvm opens and answers, yet guests hang at boot (nested KVM);
even the firmware runs there, so the probe boots a real Linux kernel, without a
root file system, and waits for the kernel to reach its last words ("Kernel panic"
or "VFS: Unable to mount root"). The reason for the choice is always printed.
"""

from __future__ import annotations

import glob
import os
import platform
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from oscarvt.arches import ARCHES, Arch
from oscarvt.errors import InputError

KERNEL_DONE = ("Kernel panic", "VFS: Unable to mount root", "Run /init")


@dataclass(frozen=True)
class Accel:
    """The accelerator to use, and why."""

    name: str  # "kvm" or "tcg"
    reason: str


def choose_accel(wanted: str, kernel: Path | None, timeout: float, arch: Arch = ARCHES["amd64"]) -> Accel:
    """Resolve the spec's ``accel`` (auto | kvm | tcg) into the one to use for guests of ``arch``.

    ``kernel`` is a Linux kernel to probe with (the template's); without one the
    host's /boot/vmlinuz-* is tried. ``kvm`` that fails the probe is an error, and so
    is ``kvm`` for guests of another architecture than the host's.
    """
    if wanted == "tcg":
        return Accel("tcg", "the spec asks for TCG")
    if not arch.native():
        reason = f"{arch.name} guests cannot use KVM on this {platform.machine()} host"
        if wanted == "kvm":
            raise InputError(f"the spec asks for KVM, but {reason}")
        return Accel("tcg", reason)
    problem = _kvm_problem(kernel, timeout, arch)
    if problem is None:
        return Accel("kvm", "a probe guest booted under KVM")
    if wanted == "kvm":
        raise InputError(f"the spec asks for KVM, but {problem}")
    return Accel("tcg", problem)


def _kvm_problem(kernel: Path | None, timeout: float, arch: Arch) -> str | None:
    if not os.path.exists("/dev/kvm"):
        return "there is no /dev/kvm"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "this user cannot open /dev/kvm (add it to group kvm)"
    probe_kernel = kernel or next(iter(sorted(glob.glob("/boot/vmlinuz-*"), reverse=True)), None)
    if probe_kernel is None or not os.access(probe_kernel, os.R_OK):
        return "no Linux kernel to probe KVM with (template has none, /boot has none)"
    with tempfile.TemporaryDirectory(prefix="oscarvt-kvm-probe.") as tmp:
        console = Path(tmp) / "console"
        console.touch()
        machine = ["-machine", arch.machine, "-cpu", "host"] if arch.machine else []
        proc = subprocess.Popen(
            [arch.qemu, "-accel", "kvm", *machine, "-m", "256", "-display", "none",
             "-nodefaults", "-no-reboot", "-net", "none", "-serial", f"file:{console}",
             "-kernel", str(probe_kernel), "-append", f"console={arch.console} panic=-1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                text = console.read_text(errors="replace")
                if any(mark in text for mark in KERNEL_DONE):
                    return None
                if proc.poll() is not None and not any(m in console.read_text() for m in KERNEL_DONE):
                    error = (proc.stderr.read() if proc.stderr else "").strip().splitlines()
                    return f"QEMU with KVM failed: {error[-1] if error else 'exit ' + str(proc.returncode)}"
                time.sleep(0.1)
            return f"a probe guest did not boot under KVM within {timeout:.0f}s (nested KVM?)"
        finally:
            proc.kill()
            proc.wait()
