"""reap and keep: clusters left behind by interrupted builds, and clusters kept for a person.

A worker whose process stopped in the middle of a build (a crash, a restart, a lost host)
leaves that build's cluster running: its QEMUs, taps and disks, and possibly the oscarvt
driver that was working on it. ``reap --under DIR`` runs when the worker starts (see
``workers/``): it finds every cluster folder under DIR, stops a driver still working on one
(``--stop-drivers``: SIGTERM, which cleans up as after Ctrl-C, then SIGKILL), and destroys
the cluster, unless a person keeps it (``keep``, ``run --keep``, Buildbot's "keep the cluster
on failure"), which stays until someone runs ``oscarvt destroy`` on it.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from oscarvt.backends import qemu
from oscarvt.cluster import ClusterDir
from oscarvt.errors import InfraError, InputError, OscarvtError
from oscarvt.log import progress
from oscarvt.phase_table import KEEP
from oscarvt.phases.destroy import destroy

DEPTH = 3  # worker folder / builder / cluster: how deep reap looks for cluster folders
DRIVER_STOP = 120.0  # seconds for a SIGTERMed driver to clean up and exit before SIGKILL


def keep(cluster: ClusterDir, reason: str | None = None) -> str:
    """Mark the cluster as kept for a person: reap leaves it running."""
    with cluster.phase(KEEP.name) as state:
        state.kept = reason or "kept by hand"
    return f"{cluster.path} stays up ({state.kept}); 'oscarvt destroy --cluster {cluster.path}' when done"


def reap(under: Path, stop_drivers: bool = False) -> str:
    """Destroy every cluster under ``under`` that nobody keeps; the verdict counts them."""
    if not under.is_dir():
        raise InputError(f"--under: no such folder {under}")
    destroyed, kept, busy = [], [], []
    for cluster in cluster_folders(under):
        if not left_behind(cluster):
            continue
        holder = cluster.lock_holder()
        if holder is not None:
            if not stop_drivers:
                busy.append(cluster)
                progress(f"{cluster.path}: oscarvt pid {holder} is working on it; left alone")
                continue
            stop_driver(holder, cluster)
        reason = kept_reason(cluster)
        if reason is not None:
            kept.append(cluster)
            progress(f"{cluster.path}: kept for a person ({reason}); left running")
            continue
        with cluster.locked():
            progress(f"{cluster.path}: {destroy(cluster)}")
        destroyed.append(cluster)
    return (f"{len(destroyed)} left-behind clusters destroyed, {len(kept)} kept for a person, "
            f"{len(busy)} in use, under {under}")


def cluster_folders(under: Path) -> list[ClusterDir]:
    """Every cluster folder under ``under``: a state, pidfiles or a running QEMU of it (canonical paths)."""
    root = Path(os.path.realpath(under))
    found = {p.parent for depth in range(DEPTH + 1) for p in root.glob("*/" * depth + "state.json")}
    found |= {p.parent.parent for depth in range(DEPTH + 1) for p in root.glob("*/" * depth + "run/*.pid")}
    found |= {pidfile.parent.parent for pidfile in qemu.processes_in(root).values()}
    return [ClusterDir(path) for path in sorted(found)]


def left_behind(cluster: ClusterDir) -> bool:
    """Whether anything of the cluster is still there: a QEMU, a pidfile, a disk, or a driver at work."""
    disks = cluster.path / "disks"
    return bool(cluster.pidfiles() or qemu.processes_in(cluster.path) or (disks.is_dir() and any(disks.iterdir()))
                or cluster.lock_holder() is not None)


def kept_reason(cluster: ClusterDir) -> str | None:
    """Why a person keeps the cluster, or None (also for a state too damaged to say)."""
    try:
        return cluster.load().kept
    except OscarvtError:
        return None


def stop_driver(pid: int, cluster: ClusterDir) -> None:
    """SIGTERM the oscarvt working on ``cluster`` (it cleans up and exits), SIGKILL it if it does not."""
    if not _is_oscarvt(pid):
        raise InfraError(f"{cluster.path}: its lock holder, pid {pid}, is not an oscarvt")
    progress(f"{cluster.path}: stopping oscarvt pid {pid}, left from an interrupted build")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + DRIVER_STOP
    while _is_oscarvt(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            progress(f"{cluster.path}: oscarvt pid {pid} killed after {DRIVER_STOP:.0f}s")
            break
        time.sleep(0.2)
    deadline = time.monotonic() + qemu.KILL_WAIT
    while cluster.lock_holder() is not None:
        if time.monotonic() > deadline:
            raise InfraError(f"{cluster.path}: oscarvt pid {pid} still holds the cluster after SIGKILL")
        time.sleep(0.2)


def _is_oscarvt(pid: int) -> bool:
    """Whether ``pid`` is a live oscarvt command (``oscarvt VERB`` or ``python -m oscarvt VERB``)."""
    argv = qemu.live_argv(pid)
    return argv is not None and any("oscarvt" in arg for arg in argv[:3])
