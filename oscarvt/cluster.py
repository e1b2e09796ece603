"""The cluster folder: state (JSON), profiles, disks, consoles and runtime files.

Layout of ``--cluster DIR``::

    state.json          spec, cluster id, VMs, accelerator, phase records
    profiles/VM.xml     V2M profile of each VM (what the back end starts)
    profiles/VM.oscarvt.json  what V2M has no element for (networks, boot device, kernel)
    disks/VM.qcow2      headnode overlay, blank node disks
    consoles/VM.log     each VM's serial console
    run/VM.pid|.qmp     QEMU pidfile and QMP socket
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from oscarvt.backends.qemu import VmFiles
from oscarvt.errors import OscarvtError
from oscarvt.profile import Profile, load_profile
from oscarvt.spec import ClusterSpec, spec_from_dict

SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes


@dataclass(frozen=True)
class ClusterDir:
    """A cluster's folder and the state stored in it."""

    path: Path

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
        """Pidfile, QMP socket and console file of ``vm``."""
        run = self.path / "run"
        qmp = run / f"{vm}.qmp"
        if len(str(qmp)) > SOCKET_PATH_MAX:  # deep build folders: keep the socket short
            digest = hashlib.sha256(str(self.path.resolve()).encode()).hexdigest()[:12]
            qmp = Path(tempfile.gettempdir()) / f"oscarvt-{os.getuid()}-{digest}" / f"{vm}.qmp"
        qmp.parent.mkdir(parents=True, exist_ok=True)
        return VmFiles(pidfile=run / f"{vm}.pid", qmp=qmp, console=self.path / "consoles" / f"{vm}.log")

    def pidfiles(self) -> list[Path]:
        """Every pidfile in the folder, whatever the state says (for destroy after a crash)."""
        return sorted((self.path / "run").glob("*.pid"))

    def create_folders(self) -> None:
        for sub in ("profiles", "disks", "consoles", "run"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)

    def load(self) -> dict[str, Any]:
        """The cluster state; an error if the folder holds no cluster."""
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            raise OscarvtError(f"{self.path}: no cluster here (run 'oscarvt copy-vm-image' first)") from None
        except (OSError, ValueError) as exc:
            raise OscarvtError(f"{self.state_file}: unreadable cluster state: {exc}") from None

    def save(self, state: dict[str, Any]) -> None:
        """Write the state atomically."""
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
        tmp.replace(self.state_file)

    def spec(self, state: dict[str, Any]) -> ClusterSpec:
        """The spec the cluster was made from (its files are not required to exist still)."""
        return spec_from_dict(state["spec"], self.path, check_files=False)

    def profile(self, vm: str) -> Profile:
        return load_profile(self.profile_path(vm))

    @contextmanager
    def phase(self, name: str) -> Iterator[dict[str, Any]]:
        """Record a phase's start, end and result in the state; yields the state to update.

        The state is saved at the start and at the end, whether the phase passes,
        fails (OscarvtError; its message is recorded) or is interrupted.
        """
        state = self.load()
        record: dict[str, Any] = {"phase": name, "start": time.time(), "end": None,
                                  "result": "running", "message": ""}
        state.setdefault("phases", []).append(record)
        self.save(state)
        try:
            yield state
        except BaseException as exc:
            record.update(result="failed", message=str(exc) or type(exc).__name__)
            raise
        else:
            record["result"] = "passed"
        finally:
            record["end"] = time.time()
            record["seconds"] = round(record["end"] - record["start"], 2)
            self.save(state)
