"""The clusters on a host: room for a new one (claim), left-behind ones (reap), kept ones (keep).

A worker whose process stopped in the middle of a build (a crash, a restart, a lost host)
leaves that build's cluster running: its QEMUs, taps and disks, and possibly the oscarvt
driver that was working on it. ``reap --under DIR`` runs when the worker starts (see
``workers/``): it finds every cluster folder under DIR, stops a driver still working on one
(``--stop-drivers``: SIGTERM, which cleans up as after Ctrl-C, then SIGKILL), and destroys
the cluster, unless a person keeps it (``keep``, ``run --keep``, Buildbot's "keep the cluster
on failure"), which stays until someone runs ``oscarvt destroy`` on it.

``claim`` makes room for a build's cluster on a worker that runs at most ``max_clusters``:
kept clusters count, as do the other builds' clusters, so a build waits (up to ``--wait``)
while the host is full, and then fails as infrastructure, naming what fills it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from oscarvt.cluster import CLAIM_FILE, ClusterDir
from oscarvt.errors import InfraError, InputError, OscarvtError, shown
from oscarvt.log import progress
from oscarvt.paths import folder_to_make
from oscarvt.phase_names import KEEP
from oscarvt.processes import live_argv
from oscarvt.teardown import destroy
from oscarvt.waiting import wait_for

DEPTH = 3  # worker folder / builder / cluster: how deep reap looks for cluster folders
DRIVER_STOP = 120.0  # seconds for a SIGTERMed driver to clean up and exit before SIGKILL
CLAIM_WAIT = 3600.0  # seconds a build waits for room on a full host (claim's --wait default)
CLAIM_POLL = 10.0
REASON_MAX = 200  # characters of keep's --reason (reap and claim print it)
LOCK_RELEASE_WAIT = 10.0  # seconds for a SIGKILLed driver's lock to be let go
HOST_LOCK = ".oscarvt-claims"  # in the folder claim counts under: one claim at a time


def claim(cluster: ClusterDir, under: Path, max_clusters: int, wait: float | None = None) -> str:
    """Make room for ``cluster`` among the clusters under ``under``: at most ``max_clusters``.

    First the builder's own leftovers (the other folders beside ``cluster`` that nobody keeps)
    are destroyed and removed. Then, while kept clusters and other builds' clusters fill the
    host, it waits (``wait`` seconds, default CLAIM_WAIT). Once there is room the folder is
    made with a claim in it, which counts until ``destroy``.
    """
    _check_under(under)
    if max_clusters < 1:
        raise InputError(f"--max-clusters must be at least 1, not {max_clusters}")
    if not Path(os.path.realpath(cluster.path)).is_relative_to(os.path.realpath(under)):
        raise InputError(f"--cluster {cluster.path} is not in --under {under}: claim makes room among the clusters "
                         "there and destroys the leftovers beside --cluster")
    if cluster.path.is_dir() and _is_cluster_folder(cluster):
        raise InputError(f"{cluster.path}: already holds a cluster (claim a new folder for a new one)")
    folder_to_make(cluster.path, "--cluster")
    limit = CLAIM_WAIT if wait is None else wait
    deadline = time.monotonic() + limit
    said = ""
    while True:
        with _host_locked(under):
            for stale in _leftovers_beside(cluster):
                progress(f"{stale.path}: {destroy(stale)}; removed")
                shutil.rmtree(stale.path, ignore_errors=True)
            taken = [c for c in cluster_folders(under) if c.path != cluster.path and counts(c)]
            if len(taken) < max_clusters:
                cluster.path.mkdir(parents=True, exist_ok=True)
                (cluster.path / CLAIM_FILE).write_text(f"{os.getpid()}\n")
                return f"room for {cluster.path}: cluster {len(taken) + 1} of at most {max_clusters} here"
        full = f"{len(taken)} of {max_clusters} clusters here: " + "; ".join(_describe(c) for c in taken)
        if time.monotonic() > deadline:
            raise InfraError(f"no room for a cluster after {limit:.0f}s: {full} (destroy kept clusters "
                             "that nobody needs, or raise max_clusters)")
        if full != said:
            progress(f"waiting for room: {full}")
            said = full
        time.sleep(max(0.1, min(CLAIM_POLL, deadline - time.monotonic())))


def _check_under(under: Path) -> None:
    try:
        if under.is_dir():
            return
    except ValueError:  # a NUL in the name
        pass
    raise InputError(f"--under: no such folder {str(under)[:200]!r}")


def counts(cluster: ClusterDir) -> bool:
    """Whether ``cluster`` takes a place on the host: anything of it left, or claimed by a build."""
    return left_behind(cluster) or (cluster.path / CLAIM_FILE).exists()


def _leftovers_beside(cluster: ClusterDir) -> list[ClusterDir]:
    """The other cluster folders in ``cluster``'s parent that no driver works on and nobody keeps
    (a folder counts as a cluster's if it has a state, a claim, pidfiles or profiles)."""
    parent = cluster.path.parent
    if not parent.is_dir():
        return []
    beside = [ClusterDir(p) for p in sorted(parent.iterdir()) if p.is_dir() and p != cluster.path]
    return [c for c in beside if _is_cluster_folder(c) and c.lock_holder() is None and kept_reason(c) is None]


def _is_cluster_folder(cluster: ClusterDir) -> bool:
    """Anything of a cluster in the folder (a state, pidfiles, profiles), or a build's claim on it."""
    return cluster.holds_cluster() or (cluster.path / CLAIM_FILE).exists()


def _describe(cluster: ClusterDir) -> str:
    reason = kept_reason(cluster)
    return f"{cluster.path} ({f'kept: {reason}' if reason else 'in use by a build'})"


@contextmanager
def _host_locked(under: Path) -> Iterator[None]:
    fd = os.open(under / HOST_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held for a moment: the count and the claim
        yield
    finally:
        os.close(fd)


def keep(cluster: ClusterDir, reason: str | None = None) -> str:
    """Mark the cluster as kept for a person: reap leaves it running. ``reason``: one printable line."""
    if reason is not None and not (reason.isprintable() and 0 < len(reason) <= REASON_MAX):
        raise InputError(f"--reason must be one line of printable text of at most {REASON_MAX} characters, "
                         f"not {shown(reason)}")
    with cluster.phase(KEEP) as state:
        state.kept = reason or "kept by hand"
    return f"{cluster.path} stays up ({state.kept}); 'oscarvt destroy --cluster {cluster.path}' when done"


def reap(under: Path, stop_drivers: bool = False) -> str:
    """Destroy every cluster under ``under`` that nobody keeps; the verdict counts them."""
    _check_under(under)
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
    """Every cluster folder under ``under``: a state, a claim, pidfiles or a running QEMU of it (canonical paths)."""
    root = Path(os.path.realpath(under))
    found = {p.parent for depth in range(DEPTH + 1) for name in ("state.json", CLAIM_FILE)
             for p in root.glob("*/" * depth + name)}
    found |= {p.parent.parent for depth in range(DEPTH + 1) for p in root.glob("*/" * depth + "run/*.pid")}
    found |= {pidfile.parent.parent for pidfile in ClusterDir(root).qemu_processes().values()}
    return [ClusterDir(path) for path in sorted(found)]


def left_behind(cluster: ClusterDir) -> bool:
    """Whether anything of the cluster is still there: a QEMU, a pidfile, a disk, or a driver at work."""
    disks = cluster.path / "disks"
    return bool(cluster.pidfiles() or cluster.qemu_processes() or (disks.is_dir() and any(disks.iterdir()))
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
    try:
        wait_for(lambda: None if _is_oscarvt(pid) else True, timeout=DRIVER_STOP, interval=0.2,
                 what=f"oscarvt pid {pid} to exit")
    except OscarvtError:
        os.kill(pid, signal.SIGKILL)
        progress(f"{cluster.path}: oscarvt pid {pid} killed after {DRIVER_STOP:.0f}s")
    wait_for(lambda: True if cluster.lock_holder() is None else None, timeout=LOCK_RELEASE_WAIT, interval=0.2,
             what=f"oscarvt pid {pid} to let go of {cluster.path} after SIGKILL")


def _is_oscarvt(pid: int) -> bool:
    """Whether ``pid`` is a live oscarvt command (``oscarvt VERB`` or ``python -m oscarvt VERB``)."""
    argv = live_argv(pid)
    return argv is not None and any("oscarvt" in arg for arg in argv[:3])
