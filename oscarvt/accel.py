"""Choose KVM or TCG: KVM only when a probe guest really boots under it within seconds.

On some hosts /dev/kvm opens and answers, yet guests hang at boot (nested KVM);
even the firmware runs there, so the probe boots a real Linux kernel, without a
root file system, and waits for the kernel to reach its last words ("Kernel panic"
or "VFS: Unable to mount root"). The reason for the choice is always printed.

A probe's outcome is kept in the cache (``kvm-probe/``) for an hour, unless the host restarts
or its /dev/kvm, QEMU binary, probe kernel or probe timeout change: on a host where KVM hangs,
every headnode boot would otherwise wait out the whole probe timeout first.
"""

from __future__ import annotations

import glob
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from oscarvt.arches import ARCHES, Arch
from oscarvt.cache import cache_root, recipe_key
from oscarvt.errors import InputError

KERNEL_DONE = ("Kernel panic", "VFS: Unable to mount root", "Run /init")
PROBE_KEPT_S = 3600


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
    record = _probe_record(Path(probe_kernel), timeout, arch)
    try:
        kept = json.loads(record.read_text())
        if 0 <= time.time() - float(kept["at"]) < PROBE_KEPT_S:
            if kept["problem"] is None:
                return None
            probed = time.strftime("%H:%M:%S", time.localtime(kept["at"]))
            return f"{kept['problem']}; probed at {probed}, kept for an hour"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    problem = _probe(Path(probe_kernel), timeout, arch)
    try:  # not remembered where the cache cannot be written: the next boot probes again
        record.parent.mkdir(parents=True, exist_ok=True)
        written = record.with_name(f".{record.name}.{os.getpid()}")
        written.write_text(json.dumps({"problem": problem, "at": time.time()}))
        written.replace(record)
    except OSError:
        pass
    return problem


def _probe_record(kernel: Path, timeout: float, arch: Arch) -> Path:
    """Where the outcome of this probe on this host, since it last started, is kept."""
    def identity(path: str) -> str:
        try:
            st = os.stat(path)
        except OSError:
            return path
        return f"{os.path.realpath(path)}:{st.st_ino}:{st.st_rdev}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    qemu = shutil.which(arch.qemu) or arch.qemu
    key = recipe_key(boot_id, identity("/dev/kvm"), identity(qemu), identity(str(kernel)), arch.name, str(timeout))
    return cache_root() / "kvm-probe" / f"{key}.json"


def _probe(probe_kernel: Path, timeout: float, arch: Arch) -> str | None:
    """Boot ``probe_kernel`` under KVM: None when it gets to its last words, else what went wrong."""
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
