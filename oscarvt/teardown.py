"""destroy: stop every VM of the cluster and remove its disks, taps and bridge.

It stands beside the phases rather than among them because run, claim and reap destroy
clusters too.

Works from what is in the folder, not only the state: the pidfiles, the QEMU processes
whose files are in the folder, the profiles. So it also cleans up after the driver was
killed, with a damaged, empty or missing ``state.json``, on a full disk (it writes nothing
before the VMs are stopped), and through a second Ctrl-C or SIGTERM (they are held off
until it is done). Running it twice is harmless. Consoles, profiles and the state stay,
for the logs.
"""

from __future__ import annotations

import re
import shutil
import signal
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from oscarvt import events, network
from oscarvt.backends import qemu
from oscarvt.cluster import CLAIM_FILE, ClusterDir
from oscarvt.errors import InfraError, OscarvtError
from oscarvt.log import progress
from oscarvt.phase_names import DESTROY
from oscarvt.profile import load_profile
from oscarvt.session import Session
from oscarvt.state import ClusterState, PhaseRecord

DEFAULT_STOP = 15  # seconds for a VM to quit when the state (timeouts.stop) cannot be read
_OWN_BRIDGE = re.compile(r"ovt[0-9a-f]{4}")  # network.bridge_name's pattern


def destroy(cluster: ClusterDir) -> str:
    """Tear the cluster down; return the verdict text."""
    if not cluster.path.is_dir():
        return f"nothing at {cluster.path}"
    if not cluster.is_cluster_folder():  # e.g. --cluster ~ or /: its disks/ or run/ are not ours to touch
        return f"nothing to destroy at {cluster.path}: no cluster's files there (state.json, profiles, claim)"
    started = time.time()
    events.emit("phase", phase=DESTROY, result="running")
    with signals_held("destroy"):
        session = _readable_session(cluster)
        stopped, disks, alive = _teardown(cluster, session)
        failure = f"still running after destroy: {', '.join(alive)}" if alive else ""
        _record(cluster, alive, started, failure)
    events.emit("phase", phase=DESTROY, result="failed" if failure else "passed")
    if failure:
        raise InfraError(failure)
    return f"{stopped} VMs stopped, {disks} disks removed, no VM of {cluster.path.name} running"


def _readable_session(cluster: ClusterDir) -> Session | None:
    """The cluster's state with its spec read; None (said in a line) if either is unusable."""
    try:
        session = Session(cluster, cluster.load())
        session.spec  # noqa: B018 (parsed and checked now: with an unusable spec, destroy goes by the folder alone)
        return session
    except (OscarvtError, TypeError, ValueError, RecursionError) as exc:
        progress(f"state unusable, cleaning up from the folder alone: {exc}")
        return None


def _teardown(cluster: ClusterDir, session: Session | None) -> tuple[int, int, list[str]]:
    state = session.state if session else None
    timeout = session.spec.timeouts.stop if session else DEFAULT_STOP
    names = {p.stem for p in cluster.pidfiles()} | set(state.vms if state else [])
    stopped = 0
    for name in sorted(names):
        files = cluster.files(name)
        if cluster.vm(name).stop(timeout):
            stopped += 1
            progress(f"{name}: stopped")
        if files.qmp.parent != cluster.path / "run":
            shutil.rmtree(files.qmp.parent, ignore_errors=True)
    for pid, pidfile in cluster.kill_strays().items():  # no pidfile, or not in the state
        stopped += 1
        progress(f"{pidfile.stem}: killed (pid {pid}, its pidfile or state was gone)")
    taps, bridges = _links(cluster, state)
    for link in taps + bridges:  # a bridge after its taps
        if network.link_exists(link):
            network.remove_link(link)
            progress(f"{link}: removed")
    disks = sorted((cluster.path / "disks").glob("*"))
    shutil.rmtree(cluster.path / "disks", ignore_errors=True)
    alive = sorted({p.stem for p in cluster.qemu_processes().values()}
                   | {n for n in names if cluster.vm(n).pid() is not None})
    if not alive:  # the cluster no longer takes a place on the host
        (cluster.path / CLAIM_FILE).unlink(missing_ok=True)
    return stopped, len(disks), alive


def _links(cluster: ClusterDir, state: ClusterState | None) -> tuple[list[str], list[str]]:
    """The cluster's taps (from its profiles) and the bridges to remove.

    The bridge goes if the state says this cluster created it; without a state, only a
    bridge named as oscarvt names its own (``ovtXXXX``), never one the spec named.
    """
    taps: list[str] = []
    bridges: set[str] = set()
    for path in sorted((cluster.path / "profiles").glob("*.xml")):
        try:
            profile = load_profile(path)
        except OscarvtError:  # a damaged profile: its taps cannot be known
            continue
        for tap, bridge in qemu.tap_nics(profile):
            taps.append(tap)
            if bridge:
                bridges.add(bridge)
    if state is not None:
        owned = {state.bridge.name} if state.bridge and state.bridge.created else set()
    else:
        owned = {b for b in bridges if _OWN_BRIDGE.fullmatch(b)}
    return taps, sorted(owned)


def _record(cluster: ClusterDir, alive: list[str], started: float, failure: str) -> None:
    """Note the destroy (a phase record) in the state, if there is a state and room to write it."""
    try:
        state = cluster.load()
        now = time.time()
        state.phases.append(PhaseRecord(phase=DESTROY, start=started, end=now, seconds=round(now - started, 2),
                                        result="failed" if failure else "passed", message=failure))
        for name, vm in state.vms.items():
            if name not in alive:
                vm.desired = "stopped"
        if state.bridge:
            state.bridge.created = False
        cluster.save(state)
    except (OscarvtError, OSError):
        pass


@contextmanager
def signals_held(what: str) -> Iterator[None]:
    """Hold off SIGINT and SIGTERM while ``what`` cleans up (a second stop must not leave VMs behind)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _: received.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if received:
            progress(f"{what} finished before taking {len(received)} stop signal(s)")
