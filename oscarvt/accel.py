"""Choose KVM or TCG: KVM only when a probe guest really boots under it within seconds.

On some hosts /dev/kvm opens and answers, yet guests hang at boot (nested KVM);
even the firmware runs there, so the probe boots a real Linux kernel, without a
root file system, and waits for the kernel to reach its last words ("Kernel panic"
or "VFS: Unable to mount root"). Where /dev/kvm is missing or does not open, TCG is
decided at once and nothing is started. The reason for the choice is always printed,
with when it was made and by which run.

A probe's outcome holds until the host restarts: it is kept in the cache, in
``kvm-probe/BOOT_ID/KEY.json`` (``probe_record``), with no expiry; removing ``kvm-probe/``
makes the next run probe again. Runs take turns on an flock on ``KEY.lock`` beside it: the
first probes, the others wait for its answer, at most the probe's timeout and ``PROBE_GRACE``.
The kernel drops an flock when its holder dies, so a crashed run leaves nothing that blocks.
"""

from __future__ import annotations

import errno
import fcntl
import glob
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from oscarvt.arches import ARCHES, Arch
from oscarvt.cache import cache_root, recipe_key
from oscarvt.errors import InfraError, InputError

KERNEL_DONE = ("Kernel panic", "VFS: Unable to mount root", "Run /init")
KVM_DEVICE = Path("/dev/kvm")
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
PROBE_GRACE = 5.0  # seconds a run waits beyond the probe timeout for another run's probe (QEMU's kill, the record)
THIS_RUN = "this run"
EARLIER_RUN = "an earlier run"  # of this host boot: the outcome came from the cache


@dataclass(frozen=True)
class Accel:
    """The accelerator to use, why, and when and by which run that was decided."""

    name: str  # "kvm" or "tcg"
    reason: str  # after a look at /dev/kvm, ends with when and by which run
    decided_at: float = field(default_factory=time.time)  # Unix time
    decided_by: str = THIS_RUN  # or EARLIER_RUN
    waited: float = 0.0  # seconds this run waited for another run's probe


class ProbeBusy(InfraError):
    """Another run's KVM probe held its lock longer than this run may wait."""


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
    try:
        choice = _decide(kernel, timeout, arch)
    except ProbeBusy as busy:
        if wanted == "kvm":
            raise
        return Accel("tcg", f"{busy}; nothing kept", waited=timeout + PROBE_GRACE)
    if wanted == "kvm" and choice.name != "kvm":
        raise InputError(f"the spec asks for KVM, but {choice.reason}")
    return choice


def _decide(kernel: Path | None, timeout: float, arch: Arch) -> Accel:
    """KVM or TCG on this host: at once if nothing can be probed, else this boot's kept outcome or a probe."""
    probe_kernel = _probe_kernel(kernel)
    problem = _device_problem()
    if problem is None and shutil.which(arch.qemu) is None:
        problem = f"there is no {arch.qemu} to probe KVM with"
    if problem is not None or probe_kernel is None:
        problem = problem or "no Linux kernel to probe KVM with (template has none, /boot has none)"
        return Accel("tcg", f"{problem}; decided at once, no probe guest started")
    record = probe_record(arch)
    if record is None:
        problem = _probe(probe_kernel, timeout, arch)
        return _accel(problem, "probed by this run, not kept (no boot id)", time.time(), THIS_RUN)
    with _turn(record.with_suffix(".lock"), timeout + PROBE_GRACE) as waited:
        kept = _read(record, waited)
        if kept is not None:
            return kept
        problem = _probe(probe_kernel, timeout, arch)
        at = time.time()
        how = "kept for this host boot" if _write(record, problem, at, probe_kernel) else "not kept"
        return _accel(problem, f"probed {_clock(at)} by this run, {how}", at, THIS_RUN, waited)


def _accel(problem: str | None, how: str, at: float, by: str, waited: float = 0.0) -> Accel:
    """The choice a probe's outcome makes (``problem`` None: KVM works), its reason ending with ``how``."""
    if problem is None:
        return Accel("kvm", f"a probe guest booted under KVM; {how}", at, by, waited)
    return Accel("tcg", f"{problem}; {how}", at, by, waited)


def _probe_kernel(kernel: Path | None) -> Path | None:
    """``kernel``, else the host's newest /boot/vmlinuz-*; None if that is no readable file."""
    found = kernel or next(iter(sorted(glob.glob("/boot/vmlinuz-*"), reverse=True)), None)
    return Path(found) if found is not None and os.access(found, os.R_OK) else None


def _device_problem() -> str | None:
    """Why /dev/kvm cannot be used, found without starting anything; None if it opens."""
    try:
        os.close(os.open(KVM_DEVICE, os.O_RDWR | os.O_CLOEXEC))
    except FileNotFoundError:
        return f"there is no {KVM_DEVICE}"
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            return f"this user cannot open {KVM_DEVICE} (add it to group kvm)"
        return f"{KVM_DEVICE} does not open ({exc.strerror})"
    return None


def probe_record(arch: Arch = ARCHES["amd64"]) -> Path | None:
    """Where this host boot's KVM probe outcome for ``arch`` is kept; None without a boot id (nothing kept).

    Besides the boot id, the key is what can change the answer within a boot: the running
    kernel, /dev/kvm's node (reloading KVM's module, e.g. with nested=1, makes a new one), the
    QEMU binary. Not the probe kernel, which only witnesses the host's KVM, nor the probe
    timeout: under KVM a kernel gets through in about a second, and where KVM hangs it hangs
    for ever, so every ``timeouts.kvm_probe`` would otherwise wait out its own probe.
    """
    try:
        boot_id = BOOT_ID.read_text().strip()
    except OSError:
        return None
    if not boot_id or Path(boot_id).name != boot_id:
        return None
    qemu = shutil.which(arch.qemu) or arch.qemu
    key = recipe_key(platform.release(), _identity(KVM_DEVICE), _identity(qemu), arch.name)
    return cache_root() / "kvm-probe" / boot_id / f"{key}.json"


def _identity(path: str | Path) -> str:
    """``path`` and the file behind it: another file there (a new device node, an upgrade) gives another."""
    try:
        st = os.stat(path)
    except OSError:
        return str(path)
    return f"{os.path.realpath(path)}:{st.st_ino}:{st.st_rdev}:{st.st_size}:{st.st_mtime_ns}"


@contextmanager
def _turn(lock_path: Path, patience: float) -> Iterator[float]:
    """Hold the flock on ``lock_path`` (made if need be), yielding the seconds waited for it.

    ProbeBusy when another run holds it for ``patience`` seconds. Where the lock cannot be
    made or taken (a cache that is not writable), the run goes on without a turn.
    """
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError:
        yield 0.0
        return
    try:
        started, waited = time.monotonic(), 0.0
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if waited >= patience:
                    raise ProbeBusy(f"cannot tell whether KVM works: another run's KVM probe held "
                                    f"{lock_path} for {patience:.0f}s") from None
                time.sleep(0.05)
                waited = time.monotonic() - started
            except OSError:  # a file system without locks
                break
        yield waited
    finally:
        os.close(lock)  # drops the lock


def _read(record: Path, waited: float) -> Accel | None:
    """The choice kept at ``record`` by an earlier run of this boot, if any (this run waited ``waited`` s)."""
    try:
        kept = json.loads(record.read_text())
        problem, at = kept["problem"], float(kept["at"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if problem is not None and not isinstance(problem, str):
        return None
    how = f"probed {_clock(at)} by an earlier run of this host boot"
    if waited:
        how += f", which this run waited {waited:.1f}s for"
    return _accel(problem, how, at, EARLIER_RUN, waited)


def _write(record: Path, problem: str | None, at: float, kernel: Path) -> bool:
    """Keep a probe's outcome at ``record`` and remove earlier boots' records; whether it was kept."""
    try:
        written = record.with_name(f".{record.name}.{os.getpid()}")
        written.write_text(json.dumps({"problem": problem, "at": at, "kernel": str(kernel)}))
        written.replace(record)
    except OSError:
        return False
    with suppress(OSError):  # no run of an earlier boot is left to hold their locks
        for other in record.parent.parent.iterdir():
            if other.is_dir() and other != record.parent:
                shutil.rmtree(other, ignore_errors=True)
            elif other.suffix == ".json":  # kept for an hour by older versions
                other.unlink()
    return True


def _clock(at: float) -> str:
    """``at`` as the time of day, with the date if not today."""
    today = time.strftime("%Y-%m-%d") == time.strftime("%Y-%m-%d", time.localtime(at))
    return time.strftime("%H:%M:%S" if today else "%Y-%m-%d %H:%M:%S", time.localtime(at))


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
