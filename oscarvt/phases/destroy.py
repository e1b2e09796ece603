"""destroy: stop every VM of the cluster and remove its disks, taps and bridge.

Works from the pidfiles in the folder, not only the state, so it also cleans up
after the driver crashed; running it twice is harmless. Consoles, profiles and
the state stay, for the logs.
"""

from __future__ import annotations

import shutil

from oscarvt import network
from oscarvt.backends import qemu
from oscarvt.cluster import ClusterDir
from oscarvt.errors import OscarvtError
from oscarvt.log import progress


def destroy(cluster: ClusterDir) -> str:
    """Tear the cluster down; return the verdict text."""
    if not cluster.path.exists():
        return f"destroy: nothing at {cluster.path}"
    try:
        state = cluster.load()
    except OscarvtError as exc:
        progress(f"state unreadable, cleaning up from the folder alone: {exc}")
        state = None
    if state is None:
        return _teardown(cluster, None)
    with cluster.phase("destroy") as state:
        return _teardown(cluster, state)


def _teardown(cluster: ClusterDir, state: dict | None) -> str:
    timeout = cluster.spec(state).timeouts.stop if state else 15
    names = {p.stem for p in cluster.pidfiles()} | set(state["vms"] if state else [])
    stopped = 0
    for name in sorted(names):
        files = cluster.files(name)
        if qemu.stop(files, timeout):
            stopped += 1
            progress(f"{name}: stopped")
        if files.qmp.parent != cluster.path / "run":
            shutil.rmtree(files.qmp.parent, ignore_errors=True)
        if state and name in state["vms"]:
            state["vms"][name]["desired"] = "stopped"
            if cluster.profile_path(name).exists():
                for tap, _ in qemu.tap_nics(cluster.profile(name)):
                    network.remove_link(tap)
    bridge = state.get("bridge") if state else None
    if bridge and bridge.get("created"):
        network.remove_link(bridge["name"])
        bridge["created"] = False
        progress(f"bridge {bridge['name']}: removed")
    disks = sorted((cluster.path / "disks").glob("*"))
    shutil.rmtree(cluster.path / "disks", ignore_errors=True)
    alive = [name for name in sorted(names) if qemu.running_pid(cluster.files(name)) is not None]
    if alive:
        raise OscarvtError(f"still running after destroy: {', '.join(alive)}")
    return f"destroy: {stopped} VMs stopped, {len(disks)} disks removed, no VM of {cluster.path.name} running"
