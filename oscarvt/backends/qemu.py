"""The QEMU back end: turn a V2M profile into a QEMU command line, start, watch and stop it.

Each VM runs as a daemonized QEMU process with a pidfile, a QMP socket (driven
with qemu.qmp) and its serial console appended to a file. NIC types map to:

- ``TUN/TAP+NAT``: user-mode NAT, guest port 22 forwarded from 127.0.0.1 only;
- ``VLAN``: the cluster's private LAN, a UDP multicast group on 127.0.0.1 (no root);
- ``BRIDGED_TAP`` / ``TUN/TAP``: a tap device (on a Linux bridge; root).

A VM that boots installer media (CD or network) runs with ``-no-reboot``: when the
installer reboots, QEMU exits, and the driver starts the VM again from its disk, without
the CD, as a person would. Its console then ends with the kernel's ``REBOOTED_LINE``.

The profile's architecture (beside it, see ``oscarvt.arches``) picks the QEMU: amd64 VMs run
on the PC machine with its BIOS (boot order by ``-boot order``); arm64 VMs on the ``virt``
machine with UEFI firmware, which takes the boot device from its ``bootindex`` (the CD drive
is then virtio-SCSI, since ``virt`` has no IDE). Direct kernel boot needs no firmware on either.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable

from qemu.qmp import QMPClient

from oscarvt import arches, disks, identity
from oscarvt.errors import InfraError, InputError
from oscarvt.lines import complete_lines
from oscarvt.processes import live_argv
from oscarvt.profile import BRIDGED_TAP, NAT, TUN_TAP, VLAN, Profile

BOOT_ORDER = {"cdrom": "d", "network": "n", "disk": "c"}
INSTALLER_BOOTS = ("cdrom", "network")
REBOOTED_LINE = "reboot: Restarting system"
QMP_TIMEOUT = 5.0   # seconds for a QMP session (connect, commands, disconnect)
KILL_WAIT = 10.0    # seconds for a SIGKILLed QEMU to be gone
START_TIMEOUT = 60.0  # seconds for QEMU to set up and daemonize
STATE_FD = "state"  # the name QEMU knows a saved state's open file by
CONSOLE_READ = 4 << 20  # bytes of a console read at one look (the rest is read at the next)


class PortTaken(InfraError):
    """QEMU could not bind the forwarded SSH port: something took it after it was picked."""


@dataclass(frozen=True)
class VmFiles:
    """Where one VM's runtime files live."""

    pidfile: Path
    qmp: Path
    console: Path
    identity: Path | None = None  # the driver's socket for the identity port (oscarvt.identity)


def qemu_command(profile: Profile, files: VmFiles, accel: str, ssh_port: int | None,
                 incoming: bool = False) -> list[str]:
    """The full QEMU argv for ``profile`` (``ssh_port``: host port for the NAT NIC's SSH).

    ``incoming``: the VM waits for a saved state to load (``load_state``) instead of booting.
    """
    arch = arches.arch(profile.arch)
    argv = [arch.qemu, "-name", profile.name, "-accel", accel, "-nodefaults", "-display", "none",
            "-m", str(profile.memory or 512), "-smp", str(profile.cpu or 1)]
    argv += _machine_options(arch, accel)
    firmware_boot = profile.kernel is None and profile.boot_device is not None
    by_index = profile.boot_device if firmware_boot and arch.boot_by_index else None
    argv += _disk_options(profile, arch, by_index == "disk")
    if profile.cdrom is not None:
        argv += _cdrom(arch, profile.cdrom, by_index == "cdrom")
    argv += _nic_options(profile, ssh_port, by_index == "network")
    argv += _boot_options(profile, arch)
    argv.extend(_identity_port(profile, arch, files))
    if incoming:
        argv += ["-incoming", "defer"]
    argv += ["-device", "virtio-rng-pci",
             "-chardev", f"file,id=console,path={_value(files.console)},append=on", "-serial", "chardev:console",
             "-qmp", f"unix:{_value(files.qmp)},server=on,wait=off",
             "-pidfile", str(files.pidfile), "-daemonize"]
    return argv


def _machine_options(arch: arches.Arch, accel: str) -> list[str]:
    """The arch's machine, and the CPU: the host's under KVM, else the arch's own if it names one."""
    argv = ["-machine", arch.machine] if arch.machine else []
    if accel == "kvm" or arch.cpu:
        argv += ["-cpu", "host" if accel == "kvm" else str(arch.cpu)]
    return argv


def _disk_options(profile: Profile, arch: arches.Arch, boot: bool) -> list[str]:
    """The profile's disks on virtio: as PCI devices where the firmware boots by index (the first
    one first to boot if ``boot``), else as ``if=virtio`` drives."""
    argv: list[str] = []
    for index, disk in enumerate(_disks(profile)):
        image, image_format = _value(disk), disks.disk_format(disk)
        if arch.boot_by_index:
            first = ",bootindex=0" if index == 0 and boot else ""
            argv += ["-drive", f"file={image},if=none,id=disk{index},format={image_format}",
                     "-device", f"virtio-blk-pci,drive=disk{index}{first}"]
        else:
            argv += ["-drive", f"file={image},if=virtio,index={index},format={image_format}"]
    return argv


def _nic_options(profile: Profile, ssh_port: int | None, boot: bool) -> list[str]:
    """The connected NICs as virtio-net devices (the first one first to boot if ``boot``)."""
    argv: list[str] = []
    for number, nic in profile.connected_nics():
        first = ",bootindex=0" if boot and number == 1 else ""
        argv += ["-netdev", _netdev(profile, number, ssh_port),
                 "-device", f"virtio-net-pci,netdev=nic{number},mac={nic.mac}{first}"]
    return argv


def _boot_options(profile: Profile, arch: arches.Arch) -> list[str]:
    """How the VM boots: a kernel (with its initrd and command line), or the firmware from the
    profile's boot device (``-no-reboot`` for installer media, see above); nothing otherwise."""
    if profile.kernel is not None:
        argv = ["-kernel", str(profile.kernel)]
        if profile.initrd is not None:
            argv += ["-initrd", str(profile.initrd)]
        if profile.append:
            argv += ["-append", profile.append]
        return argv
    if profile.boot_device is None:
        return []
    if arch.firmware is not None:
        argv = ["-bios", str(arch.firmware)]
    else:
        argv = ["-boot", f"order={BOOT_ORDER[profile.boot_device]}"]
    if profile.boot_device in INSTALLER_BOOTS:
        argv.append("-no-reboot")
    return argv


def _identity_port(profile: Profile, arch: arches.Arch, files: VmFiles) -> list[str]:
    """The identity port (a virtio-serial port that connects to the driver's socket) and, where QEMU
    has one, the vmgenid device, for a VM that gets its identity from the driver."""
    if not profile.identity:
        return []
    if files.identity is None:
        raise InputError(f"profile {profile.name}: an identity port needs the driver's socket")
    argv = ["-device", "virtio-serial-pci,id=identity-bus",
            "-chardev", f"socket,id=identity,path={_value(files.identity)}",
            "-device", f"virtserialport,bus=identity-bus.0,chardev=identity,name={identity.PORT_NAME}"]
    return argv + (["-device", "vmgenid,guid=auto"] if arch.vmgenid else [])


def _cdrom(arch: arches.Arch, cdrom: Path, boot: bool) -> list[str]:
    """The CD drive with ``cdrom`` in it: the PC's IDE drive, or a virtio-SCSI one (first to boot if ``boot``)."""
    if arch.cdrom_bus == "ide":
        return ["-drive", f"file={_value(cdrom)},media=cdrom,if=ide,index=2,readonly=on"]
    first = ",bootindex=0" if boot else ""
    return ["-device", "virtio-scsi-pci,id=scsi0",
            "-drive", f"file={_value(cdrom)},media=cdrom,if=none,id=cd0,readonly=on",
            "-device", f"scsi-cd,bus=scsi0.0,drive=cd0{first}"]


def _value(path: Path) -> str:
    """``path`` as a value in QEMU's ``key=value,...`` options: a comma in it doubled, as QEMU reads it
    (a folder named ``c,readonly=off`` must not add options)."""
    return str(path).replace(",", ",,")


def _disks(profile: Profile) -> list[Path]:
    found = [profile.image] if profile.image is not None else []
    return found + [path for _, path in profile.virtual_disks]


def _netdev(profile: Profile, number: int, ssh_port: int | None) -> str:
    nic = profile.nics[number - 1]
    netdev = f"id=nic{number}"
    if nic.type == NAT:
        forward = f",hostfwd=tcp:127.0.0.1:{ssh_port}-:22" if ssh_port else ""
        return f"user,{netdev}{forward}"
    if nic.type == VLAN:
        if nic.network is None or not nic.network.mcast:
            raise InputError(f"profile {profile.name}: nic{number} (VLAN) names no multicast network")
        return f"socket,{netdev},mcast={nic.network.mcast},localaddr=127.0.0.1"
    if nic.network is None or not nic.network.tap:  # a V2M profile alone: a new tap, on no bridge
        return f"tap,{netdev},script=no,downscript=no"
    return f"tap,{netdev},ifname={nic.network.tap},script=no,downscript=no"


class QemuVm:
    """One VM as its QEMU process: what a phase gets from ``Session.vm`` or ``ClusterDir.vm``.

    It starts the VM from its profile, stops it, says whether it runs (its PID), QEMU's run state and
    why QEMU paused it for the host's sake, reads its console from an offset, says whether the guest
    rebooted (``REBOOTED_LINE``) and what became of it once SSH to it failed. Restoring a saved state
    (``load_state``, ``resume``) is for warm starts (``oscarvt.warm``).
    """

    def __init__(self, name: str, files: VmFiles) -> None:
        self.name = name
        self.files = files

    @property
    def console(self) -> Path:
        """The file its serial console is appended to."""
        return self.files.console

    def start(self, profile: Profile, accel: str, ssh_port: int | None, incoming: bool = False) -> int:
        """Start it from ``profile`` (see ``qemu_command``); its PID. Startup errors become one OscarvtError."""
        return start(qemu_command(profile, self.files, accel, ssh_port, incoming), self.files)

    def stop(self, timeout: float) -> bool:
        """QMP ``quit``, then SIGKILL after ``timeout``; True if it was running."""
        return stop(self.files, timeout)

    def pid(self) -> int | None:
        """Its QEMU's PID while that QEMU is alive, else None."""
        return running_pid(self.files)

    def status(self) -> str | None:
        """QEMU's run state (``running``, ``paused``, ``io-error``, ...), or None if QMP does not answer."""
        return query_status(self.files)

    def paused_by_host(self) -> str | None:
        """Why QEMU paused the guest for the host's sake (a full disk, an I/O error), or None."""
        return paused_by_host(self.files)

    def rebooted(self) -> bool:
        """Whether the guest's last console lines say it rebooted (an installer-booted QEMU then exits)."""
        return asked_to_reboot(self.files)

    def fate(self) -> tuple[bool, str]:
        """Whether its QEMU is gone, and what became of it in words (for a failed SSH connection)."""
        return vm_fate(self.files)

    def gone(self) -> str | None:
        """A reason to stop waiting for the VM if its QEMU is gone, else None."""
        return None if self.pid() is not None else f"{self.name}'s QEMU process is gone (see {self.console})"

    def console_size(self) -> int:
        """How many bytes its console holds so far (0 before it has one)."""
        try:
            return self.console.stat().st_size
        except OSError:
            return 0

    def console_since(self, offset: int) -> tuple[list[str], int]:
        """The complete lines of its console from byte ``offset`` on, and the bytes they take: at most
        ``CONSOLE_READ`` bytes at a time (a longer line is cut there), none before it has a console."""
        try:
            with self.console.open("rb") as console:
                console.seek(offset)
                data = console.read(CONSOLE_READ)
        except OSError:
            return [], 0
        return complete_lines(data, final=len(data) == CONSOLE_READ)

    def load_state(self, path: Path, timeout: float) -> None:
        """Load a state saved by ``save_state`` into the VM started with ``incoming``; it stays paused."""
        load_state(self.files, path, timeout)

    def resume(self) -> None:
        """Let the paused VM run."""
        resume(self.files)


def tap_nics(profile: Profile) -> list[tuple[str, str | None]]:
    """(tap, bridge) for each NIC of the profile that needs a tap device."""
    return [(nic.network.tap, nic.network.bridge) for _, nic in profile.connected_nics()
            if nic.type in (BRIDGED_TAP, TUN_TAP) and nic.network and nic.network.tap]


def start(argv: list[str], files: VmFiles) -> int:
    """Start a daemonized QEMU; return its PID. Startup errors become one OscarvtError."""
    firmware = argv[argv.index("-bios") + 1] if "-bios" in argv[:-1] else None
    if firmware is not None and not Path(firmware).is_file():
        owner = next((a for a in arches.ARCHES.values() if str(a.firmware) == firmware), None)
        package = f" (Debian package {owner.firmware_package})" if owner else ""
        raise InfraError(f"the UEFI firmware {firmware} is not installed{package}")
    for stale in (files.pidfile, files.qmp):
        stale.unlink(missing_ok=True)
    files.console.parent.mkdir(parents=True, exist_ok=True)
    try:
        result = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=START_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise InfraError(f"QEMU did not daemonize within {START_TIMEOUT:.0f}s") from None
    except FileNotFoundError:
        owner = next((a for a in arches.ARCHES.values() if a.qemu == argv[0]), None)
        package = f" (Debian package {owner.qemu_package})" if owner else ""
        raise InfraError(f"{argv[0]} is not installed{package}") from None
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        if "could not set up host forwarding" in result.stderr.lower():
            raise PortTaken(f"QEMU did not start: {lines[-1]}")
        raise InfraError(f"QEMU did not start: {lines[-1] if lines else 'exit ' + str(result.returncode)}")
    pid = running_pid(files)
    if pid is None:
        raise InfraError(f"QEMU started but left no live process behind ({files.pidfile})")
    return pid


def running_pid(files: VmFiles) -> int | None:
    """PID of this VM's QEMU if it is alive; checks the process really is that QEMU."""
    try:
        pid = int(files.pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    argv = live_argv(pid)
    return pid if argv is not None and str(files.pidfile) in argv else None


def processes_in(folder: Path) -> dict[int, Path]:
    """Live QEMU processes whose pidfile is in ``folder`` (canonical), by PID: what oscarvt
    started for a cluster, found even when its pidfiles or state are gone."""
    found: dict[int, Path] = {}
    prefix = str(folder) + os.sep
    for proc in Path("/proc").iterdir():
        argv = live_argv(int(proc.name)) if proc.name.isdigit() else None
        if not argv or not argv[0].endswith(arches.qemu_binaries()):
            continue
        pidfile = _pidfile_of(argv)
        if pidfile is not None and pidfile.startswith(prefix):
            found[int(proc.name)] = Path(pidfile)
    return found


def kill(pid: int) -> None:
    """SIGKILL a QEMU (one ``processes_in`` found) and wait, at most ``KILL_WAIT``, until it is gone."""
    argv = live_argv(pid)
    if argv is None:
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + KILL_WAIT
    while live_argv(pid) == argv:
        if time.monotonic() > deadline:  # e.g. stuck in the kernel on a dead disk
            raise InfraError(f"QEMU pid {pid} still alive {KILL_WAIT:.0f}s after SIGKILL ({_pidfile_of(argv)})")
        time.sleep(0.05)


def _pidfile_of(argv: list[str]) -> str | None:
    """The ``-pidfile`` a QEMU command line names, if any."""
    return argv[argv.index("-pidfile") + 1] if "-pidfile" in argv[:-1] else None


def asked_to_reboot(files: VmFiles) -> bool:
    """True if the guest's last console lines say it rebooted (its QEMU then exits, see above)."""
    try:
        with files.console.open("rb") as console:
            console.seek(max(0, console.seek(0, os.SEEK_END) - 2048))
            tail = console.read().decode(errors="replace")
    except OSError:
        return False
    lines = [line for line in tail.splitlines() if line.strip()]
    return any(REBOOTED_LINE in line for line in lines[-3:])


def vm_fate(files: VmFiles) -> tuple[bool, str]:
    """What became of the VM, when SSH to it fails: whether its QEMU is gone, and in words. QEMU runs
    detached, so its exit status is not known; its console says whether the guest rebooted."""
    pid = running_pid(files)
    if pid is not None:
        status = query_status(files)
        said = f", {status}" if status and status != "running" else ""
        return False, f"its QEMU (pid {pid}{said}) is still running"
    why = "the guest rebooted" if asked_to_reboot(files) else "killed or crashed"
    return True, f"its QEMU is gone ({why}; console {files.console})"


def query_status(files: VmFiles) -> str | None:
    """The VM's run state from QMP (``running``, ``paused``, ``io-error``, ...), or None if unreachable."""
    try:
        reply = qmp(files, "query-status")[0]
    except Exception:  # noqa: BLE001 (QMP is a nicety for status; the pidfile is the truth)
        return None
    return str(reply.get("status")) if isinstance(reply, dict) else None


def paused_by_host(files: VmFiles) -> str | None:
    """Why QEMU paused a running guest for the host's sake (a full disk, an I/O error), or None.

    QEMU stops a guest whose disk write fails for lack of space (``werror=enospc``, the
    default), so the guest waits forever instead of failing: this tells it from a slow guest.
    """
    if query_status(files) != "io-error":
        return None
    try:
        devices = qmp(files, "query-block")[0]
    except Exception:  # noqa: BLE001 (the paused state is known; which disk failed is a detail)
        devices = []
    for device in devices if isinstance(devices, list) else []:
        image = ((device.get("inserted") or {}).get("image") or {}).get("filename", device.get("device"))
        if device.get("io-status") == "nospace":
            return f"disk full: QEMU paused the guest, no space left for {image} on the host"
        if device.get("io-status") == "failed":
            return f"QEMU paused the guest on an I/O error writing {image} on the host"
    return "QEMU paused the guest on a disk I/O error on the host"


def qmp(files: VmFiles, *commands: str, timeout: float = QMP_TIMEOUT) -> list[object]:
    """Send QMP ``commands`` to the VM's QEMU in one session; their replies. Bounded by ``timeout``."""
    return asyncio.run(asyncio.wait_for(_qmp(files.qmp, commands), timeout=timeout))


def stop(files: VmFiles, timeout: float) -> bool:
    """Stop the VM: QMP ``quit``, then SIGKILL after ``timeout``. True if one was running."""
    pid = running_pid(files)
    if pid is None:
        files.pidfile.unlink(missing_ok=True)
        return False
    argv = live_argv(pid)  # QEMU removes its pidfile as it exits: wait for the process itself
    try:
        qmp(files, "quit", timeout=min(timeout, QMP_TIMEOUT))
    except Exception:  # noqa: BLE001 (an unresponsive QEMU is killed below)
        pass
    deadline = time.monotonic() + timeout
    while live_argv(pid) == argv and time.monotonic() < deadline:
        time.sleep(0.1)
    if live_argv(pid) == argv:
        kill(pid)
    for done in (files.pidfile, files.qmp):
        try:
            done.unlink(missing_ok=True)
        except OSError:
            pass
    return True


def save_state(files: VmFiles, path: Path, timeout: float) -> None:
    """Pause the VM and write its whole machine state to ``path`` (QEMU's migration, to a file).

    The VM stays paused, its disks flushed, until ``resume``. InfraError if QEMU fails or ``timeout`` passes.
    """
    async def save(client: QMPClient) -> None:
        await client.execute("stop")
        await _hand_over(client, path, "wb")
        await client.execute("migrate", {"uri": f"fd:{STATE_FD}"})
        while True:
            reply = await client.execute("query-migrate")
            info = reply if isinstance(reply, dict) else {}
            if info.get("status") == "completed":
                return
            if info.get("status") in ("failed", "cancelled"):
                raise InfraError(f"QEMU could not save the machine state: {info.get('error-desc', info['status'])}")
            await asyncio.sleep(0.05)

    _session(files, save, timeout, "save the machine state")


def load_state(files: VmFiles, path: Path, timeout: float) -> None:
    """Load a state ``save_state`` wrote into a VM started with ``incoming``; it stays paused until ``resume``.

    InfraError if QEMU refuses the state (it then exits) or ``timeout`` passes.
    """
    async def load(client: QMPClient) -> None:
        await _hand_over(client, path, "rb")
        await client.execute("migrate-incoming", {"uri": f"fd:{STATE_FD}"})
        while True:
            reply = await client.execute("query-status")
            if isinstance(reply, dict) and reply.get("status") != "inmigrate":
                if reply.get("status") != "paused":
                    raise InfraError(f"the restored VM is {reply.get('status')}, not paused")
                return
            await asyncio.sleep(0.05)

    _session(files, load, timeout, "load the saved machine state")


async def _hand_over(client: QMPClient, path: Path, mode: str) -> None:
    """Open ``path`` (``mode``) and pass the open file to QEMU as the fd ``STATE_FD`` (no shell, no file name
    in a QEMU option)."""
    with path.open(mode) as file:
        client.send_fd_scm(file.fileno())
        await client.execute("getfd", {"fdname": STATE_FD})


def resume(files: VmFiles) -> None:
    """Let a paused VM run (after ``save_state`` or ``load_state``)."""
    _session(files, lambda client: client.execute("cont"), QMP_TIMEOUT, "resume the VM")


def _session(files: VmFiles, work: Callable[[QMPClient], Awaitable[object]], timeout: float, what: str) -> None:
    """Run ``work`` on a QMP session with the VM's QEMU, bounded by ``timeout``; one InfraError on any failure."""
    async def session() -> None:
        client = QMPClient("oscarvt")
        await client.connect(str(files.qmp))
        try:
            await work(client)
        finally:
            await client.disconnect()

    try:
        asyncio.run(asyncio.wait_for(session(), timeout=timeout))
    except InfraError:
        raise
    except asyncio.TimeoutError:
        raise InfraError(f"QEMU did not {what} within {timeout:.0f}s") from None
    except Exception as exc:  # noqa: BLE001 (QMP errors, a QEMU that exited, a refused state, a closed socket)
        raise InfraError(f"QEMU could not {what}: {exc or type(exc).__name__}") from None


async def _qmp(socket: Path, commands: tuple[str, ...]) -> list[object]:
    client = QMPClient("oscarvt")
    await client.connect(str(socket))
    replies: list[object] = []
    try:
        for command in commands:
            try:
                replies.append(await client.execute(command))
            except Exception:
                if command == "quit":  # QEMU may close the socket before it answers
                    replies.append(None)
                else:
                    raise
        return replies
    finally:
        await client.disconnect()
