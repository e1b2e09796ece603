"""grab-logs: everything a developer needs to see why a build passed or failed, in one folder.

``DEST/`` gets ``headnode/`` (OSCAR's and SystemImager's logs, OSCAR's configuration and
output, the test report, each under its own path, e.g. ``headnode/var/log/oscar/``),
``consoles/VM.log`` (each VM's serial console) and ``consoles.log`` (all of them, each line
prefixed by its VM's name), ``phases.json`` (phase timings and results, the part of each that
waited on the product, the harness's ``share`` (``oscarvt.timing``), per node times) and
``summary.txt`` (both with credentials in URLs masked), ``timeline.png`` (a picture of the phases and
the nodes' stages over time, ``oscarvt.timeline``; one that cannot be drawn is a progress line, never
a failure); then ``DEST.tar.gz`` holds it all. It works on a half-failed cluster: what cannot be had
is listed in ``missing.txt`` instead.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tarfile
from functools import partial
from pathlib import Path

from oscarvt import timing
from oscarvt.access import open_headnode
from oscarvt.cluster import ClusterDir
from oscarvt.errors import InfraError, OscarvtError
from oscarvt.log import progress
from oscarvt.masking import mask_credentials
from oscarvt.oscar_run import OUTPUT
from oscarvt.paths import folder_to_make
from oscarvt.phase_names import GRAB_LOGS
from oscarvt.session import Session
from oscarvt.ssh import Connection
from oscarvt.state import ClusterState, Logs
from oscarvt.status import summary
from oscarvt.timeline import TIMELINE, write_timeline
from oscarvt.unpack import HostCannotWrite, Unpacked
from oscarvt.waiting import wait_for

HEADNODE_PATHS = ("/var/log/oscar", "/var/log/systemimager", "/var/lib/systemimager/clients.xml",
                  "/etc/oscar", OUTPUT)


def grab_logs(cluster: ClusterDir, dest: Path) -> str:
    """Collect the cluster's logs into ``dest`` and ``dest``.tar.gz."""
    dest = folder_to_make(dest, "--dest")
    with Session.phase(cluster, GRAB_LOGS) as session:
        state = session.state
        dest.mkdir(parents=True, exist_ok=True)
        missing: list[str] = []
        grab_headnode(session, dest / "headnode", missing)
        consoles = dest / "consoles"
        consoles.mkdir(exist_ok=True)
        merged = []
        for name in state.vms:
            console = cluster.files(name).console
            if not console.exists():
                missing.append(f"{name}'s console (the VM never started)")
                continue
            shutil.copy(console, consoles / f"{name}.log")
            text = console.read_text(errors="replace")
            merged += [f"{name}| {line}" for line in text.splitlines()]
        (dest / "consoles.log").write_text("\n".join(merged) + "\n")
        record = dataclasses.asdict(state)
        times = {"share": timing.share(p for p in state.phases if p.seconds is not None)}
        (dest / "phases.json").write_text(mask_credentials(json.dumps(  # a state from before the masking too
            {**times, **{key: record[key] for key in ("phases", "nodes", "checkout", "oscar")}}, indent=2)) + "\n")
        (dest / "summary.txt").write_text(mask_credentials(summary(state)) + "\n")
        draw_timeline(state, dest / TIMELINE)
        (dest / "missing.txt").unlink(missing_ok=True)  # from an earlier grab into the same folder
        if missing:
            (dest / "missing.txt").write_text("".join(f"{item}\n" for item in missing))
        tarball = dest.with_name(dest.name + ".tar.gz")
        with tarfile.open(tarball, "w:gz") as tar:
            tar.add(dest, arcname=dest.name)
        state.logs = Logs(dir=str(dest), tarball=str(tarball))
        files = sum(1 for path in dest.rglob("*") if path.is_file())
    note = f", missing: {len(missing)} (see missing.txt)" if missing else ""
    return f"{files} files in {dest} and {tarball.name}{note}"


def draw_timeline(state: ClusterState, path: Path) -> None:
    """Draw the cluster's timeline into ``path``; a picture that cannot be made is a progress line."""
    try:
        write_timeline(state, path)
    except Exception as exc:  # noqa: BLE001 (matplotlib missing or failing: the logs matter more than the picture)
        path.unlink(missing_ok=True)  # not an older run's picture
        progress(f"{path.name} not drawn: {type(exc).__name__}: {exc}")


class StillChanging(InfraError):
    """tar said on every try that a file changed as it read it."""


def grab_headnode(session: Session, dest: Path, missing: list[str]) -> None:
    """Copy the headnode's logs (each of ``HEADNODE_PATHS`` that exists) into ``dest`` in one request,
    again for up to 10 s while tar says a file changed as it read it (then the last copy stays);
    note what could not be had (each refused entry by name, escaped, and the copy goes on). The
    host's own trouble writing them (its disk) is raised: ``HostCannotWrite``, an InfraError."""
    dest.mkdir(parents=True, exist_ok=True)
    last: list[tuple[Unpacked, list[str], int]] = []

    def complete_copy(conn: Connection) -> tuple[Unpacked, list[str], int] | None:
        last[:] = [conn.get_paths(HEADNODE_PATHS, dest)]
        return last[0] if last[0][2] <= 0 else None  # complete, or stopped by a cap (no use trying again)

    try:
        with open_headnode(session) as conn:
            progress(f"copying the headnode's {', '.join(HEADNODE_PATHS)}")
            try:
                unpacked, absent, _ = wait_for(partial(complete_copy, conn), timeout=10, interval=1,
                                               what="a complete copy of the headnode's logs", error=StillChanging)
            except StillChanging:  # e.g. a log that kept growing while a node imaged
                unpacked, absent, status = last[0]
                missing.append(f"headnode logs: tar exited {status} on each try for 10s (GNU tar: a file "
                               "changed as it read it); the last copy is kept")
            missing += [f"headnode:{path} (not there)" for path in absent]
            missing += [f"headnode: refused {why}" for why in unpacked.refused]
    except HostCannotWrite:  # the host's disk, not the guest: the whole grab fails as infrastructure
        raise
    except OscarvtError as exc:  # no connection, a broken one, the guest's stream itself
        missing.append(f"headnode logs: {exc}")
