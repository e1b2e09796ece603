"""The cluster folder: state (JSON), profiles, disks, consoles and runtime files.

Layout of ``--cluster DIR``::

    state.json          the cluster state (``oscarvt.state.ClusterState``)
    profiles/VM.xml     V2M profile of each VM (what the back end starts)
    profiles/VM.oscarvt.json  what V2M has no element for (networks, boot device, kernel)
    disks/VM.qcow2      headnode overlay, blank node disks
    consoles/VM.log     each VM's serial console
    run/VM.pid|.qmp     QEMU pidfile and QMP socket
    run/VM.identity     the driver's end of the headnode's identity port (while it boots)
    lock                the PID of the oscarvt command working on the cluster (flock)
    claim               a build's claim on a place for the cluster on its host (phases.host)
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from oscarvt import events, timing
from oscarvt.backends import qemu
from oscarvt.backends.qemu import QemuVm, VmFiles
from oscarvt.errors import InputError, OscarvtError
from oscarvt.masking import mask_credentials
from oscarvt.profile import Profile, load_profile
from oscarvt.spec import ClusterSpec, spec_from_dict
from oscarvt.state import ClusterState, PhaseRecord

SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes
LOCK_FILE = "lock"      # holds the PID of the oscarvt working on the cluster
CLAIM_FILE = "claim"    # a build's claim on a place on the host, until destroy (phases.host)


@dataclass(frozen=True)
class ClusterDir:
    """A cluster's folder and the state stored in it.

    The path is made absolute and canonical at once, so every QEMU command line names the
    same files however ``--cluster`` was spelled (destroy finds the VMs by these names).
    """

    path: Path

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "path", Path(os.path.realpath(self.path)))
        except ValueError:  # a NUL in the name
            raise InputError(f"--cluster: not a folder name: {str(self.path)[:80]!r}") from None

    @property
    def state_file(self) -> Path:
        return self.path / "state.json"

    def exists(self) -> bool:
        return self.state_file.is_file()

    def profile_path(self, vm: str) -> Path:
        return self.path / "profiles" / f"{vm}.xml"

    def disk_path(self, vm: str) -> Path:
        return self.path / "disks" / f"{vm}.qcow2"

    def files(self, vm: str) -> VmFiles:
        """Pidfile, QMP and identity sockets and console file of ``vm``."""
        run = self.path / "run"
        sockets = run
        if len(str(run / f"{vm}.identity")) > SOCKET_PATH_MAX:  # deep build folders: keep the sockets short
            digest = hashlib.sha256(str(self.path.resolve()).encode()).hexdigest()[:12]
            sockets = Path(tempfile.gettempdir()) / f"oscarvt-{os.getuid()}-{digest}"
        sockets.mkdir(parents=True, exist_ok=True)
        return VmFiles(pidfile=run / f"{vm}.pid", qmp=sockets / f"{vm}.qmp",
                       console=self.path / "consoles" / f"{vm}.log", identity=sockets / f"{vm}.identity")

    def vm(self, name: str) -> QemuVm:
        """The VM ``name`` as its QEMU process (start, stop, running, paused, console, rebooted)."""
        return QemuVm(name, self.files(name))

    def qemu_processes(self) -> dict[int, Path]:
        """Live QEMU processes whose pidfile lies in this folder (any depth), by PID: what oscarvt started
        for its clusters, found even when their pidfiles or states are gone."""
        return qemu.processes_in(self.path)

    def kill_strays(self) -> dict[int, Path]:
        """SIGKILL every QEMU ``qemu_processes`` finds (those no pidfile or state led to); the ones killed."""
        found = self.qemu_processes()
        for pid in found:
            qemu.kill(pid)
        return found

    def holds_cluster(self) -> bool:
        """Whether the folder holds a cluster's files: a state (even a damaged one), pidfiles or profiles."""
        return self._has_state_or_profiles() or bool(self.pidfiles())

    def is_cluster_folder(self) -> bool:
        """Whether the folder is a cluster's (a state, even a damaged one: copy-vm-image writes it first;
        or, the state lost, its profiles) or one a build claimed for its cluster. The verbs that work on
        a cluster take no lock in, and destroy touches nothing of, any other folder: ``--cluster /`` has
        a ``run/`` with daemons' pidfiles, a home folder may have a ``disks/``, and every QEMU's pidfile
        is under ``/``."""
        return self._has_state_or_profiles() or (self.path / CLAIM_FILE).exists()

    def _has_state_or_profiles(self) -> bool:
        return self.state_file.exists() or self.state_file.is_symlink() or any((self.path / "profiles").glob("*.xml"))

    def pidfiles(self) -> list[Path]:
        """Every pidfile in the folder, whatever the state says (for destroy after a crash)."""
        return sorted((self.path / "run").glob("*.pid"))

    def create_folders(self) -> None:
        for sub in ("profiles", "disks", "consoles", "run"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)

    def load(self) -> ClusterState:
        """The cluster state; an error if the folder holds no cluster or a damaged state."""
        try:
            if self.state_file.exists() and not self.state_file.is_file():  # a FIFO would block the read
                raise ValueError("not a regular file")
            return ClusterState.from_json(self.state_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"{self.path}: no cluster here (run 'oscarvt copy-vm-image' first)") from None
        except (OSError, ValueError) as exc:
            raise InputError(f"{self.state_file}: unreadable cluster state: {exc}") from None

    @contextmanager
    def locked(self, create: bool = False) -> Iterator[None]:
        """Hold the folder's lock while a command works on the cluster (``create``: make the folder).

        A second driver on the same folder gets one error naming the holder's PID. The
        kernel drops the lock when its holder exits, even by SIGKILL.
        """
        made = create and not self.path.exists()
        if create:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except FileExistsError:
                raise InputError(f"{self.path}: not a folder") from None
        if not self.path.is_dir() or not (create or self.is_cluster_folder()):  # the verb says it holds no cluster
            yield
            return
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                raise InputError(f"{self.path}: another oscarvt (pid {holder}) is working on this cluster; "
                                 "wait for it to end or stop it") from None
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            except OSError:  # a full disk: the lock holds all the same
                pass
            yield
        finally:
            os.close(fd)
            if made and [p.name for p in self.path.iterdir()] == [LOCK_FILE]:  # bad input: leave nothing
                (self.path / LOCK_FILE).unlink()
                self.path.rmdir()

    def lock_holder(self) -> int | None:
        """The PID of the oscarvt working on the cluster now (holding its lock), or None."""
        try:
            fd = os.open(self.path / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return None
        except OSError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else None
        finally:
            os.close(fd)

    def save(self, state: ClusterState) -> None:
        """Write the state atomically."""
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(state.to_json())
        tmp.replace(self.state_file)

    def spec(self, state: ClusterState) -> ClusterSpec:
        """The spec the cluster was made from (its files are not required to exist still)."""
        try:
            return spec_from_dict(state.spec, self.path, check_files=False, stored=True)
        except InputError as exc:
            raise InputError(f"{self.state_file}: the spec in it: {exc}") from None

    def profile(self, vm: str) -> Profile:
        return load_profile(self.profile_path(vm))

    @contextmanager
    def phase(self, name: str) -> Iterator[ClusterState]:
        """Record a phase's start, end and result in the state; yields the state to update.

        The state is saved at the start and at the end, whether the phase passes,
        fails (OscarvtError; its message is recorded, credentials in URLs masked) or is
        interrupted. Each is an event too. The record keeps how much of its time went to
        the product (``oscarvt.timing``).
        """
        state = self.load()
        record = PhaseRecord(phase=name, start=time.time())
        product_before = timing.product_seconds()
        state.phases.append(record)
        self.save(state)
        events.emit("phase", phase=name, result="running")
        try:
            yield state
        except BaseException as exc:
            record.result, record.message = "failed", mask_credentials(str(exc) or type(exc).__name__)
            if isinstance(exc, OscarvtError):
                record.blame = exc.blame
            raise
        else:
            record.result = "passed"
        finally:
            record.end = time.time()
            record.seconds = round(record.end - record.start, 2)
            record.product_seconds = round(min(timing.product_seconds() - product_before, record.seconds), 2)
            events.emit("phase", phase=name, result=record.result, seconds=record.seconds,
                        product_seconds=record.product_seconds)
            self.save(state)
