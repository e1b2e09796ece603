"""wait-for-nodes: follow every node through imaging to its first boot from its own disk.

From the host, every couple of seconds: the headnode's monitor log (SystemImager status
lines) and rsync log (imaging_complete markers), each node's QEMU process and serial console.
A node whose installer rebooted (QEMU exits, see the QEMU back end) is started again from its
disk. Once every node has reported 102 (booted from its disk) the boot hook is released and
OSCAR goes on. It fails early, naming the node, on an error status, an error on a console
(``CONSOLE_ERRORS``), a VM that died, or a node with no progress for ``timeouts.node``; then
the hook is released with a failure, so OSCAR stops as it does when its boot script fails.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from oscarvt import monitor
from oscarvt.backends import qemu
from oscarvt.cluster import ClusterDir
from oscarvt.errors import OscarvtError
from oscarvt.log import progress
from oscarvt.phases.access import open_headnode
from oscarvt.phases.boot import boot_node
from oscarvt.phases.inputs import node_vms
from oscarvt.phases.oscar import release_hook
from oscarvt.ssh import Connection

CONSOLE_ERRORS = ("Kernel panic", "oscar-installer: ERROR", "Failed to execute /init", "VFS: Unable to mount root")
POLL = 2.0


@dataclass
class Node:
    """What the driver knows about one node while it installs."""

    name: str
    ip: str
    started: float
    console_offset: int
    status: int | None = None
    last_activity: float = field(default_factory=time.time)
    restarted: bool = False
    times: dict[str, float] = field(default_factory=dict)

    def seen(self, what: str) -> None:
        self.last_activity = time.time()
        self.times.setdefault(what, round(time.time() - self.started, 1))


def wait_for_nodes(cluster: ClusterDir, timeout: float | None = None) -> str:
    """Wait until every node is imaged and booted from its disk; release OSCAR's boot hook."""
    with cluster.phase("wait-for-nodes") as state:
        spec = cluster.spec(state)
        if "oscar" not in state:
            raise OscarvtError("OSCAR has not been started (run 'oscarvt start-oscar')")
        limit = timeout or spec.timeouts.install
        nodes = {name: Node(name, vm["ip"], vm.get("started", time.time()), vm.get("console_start", 0))
                 for name, vm in node_vms(state).items()}
        if not all("started" in vm for vm in node_vms(state).values()):
            raise OscarvtError("the nodes have not been started (run 'oscarvt boot-compute-nodes')")
        by_ip = {node.ip: node for node in nodes.values()}
        offsets = {"monitor": state["oscar"].get("monitor_offset", 0), "rsyncd": state["oscar"].get("rsyncd_offset", 0)}
        deadline = time.monotonic() + limit
        with open_headnode(cluster, state) as conn:
            try:
                while not all(node.status == monitor.BOOTED for node in nodes.values()):
                    read_monitor(conn, offsets, by_ip)
                    for node in nodes.values():
                        check_vm(cluster, state, node)
                        if time.time() - node.last_activity > spec.timeouts.node:
                            said = monitor.describe(node.status) if node.status is not None else "not heard from"
                            raise OscarvtError(f"{node.name}: no progress for {spec.timeouts.node}s "
                                               f"(last: {said}; timeouts.node)")
                    if time.monotonic() > deadline:
                        waiting = [n.name for n in nodes.values() if n.status != monitor.BOOTED]
                        raise OscarvtError(f"not every node booted within {limit:.0f}s: {', '.join(waiting)}")
                    time.sleep(POLL)
            except BaseException:
                state["nodes"] = {n.name: {"status": n.status, **n.times} for n in nodes.values()}
                try:
                    release_hook(conn, ok=False)
                except OscarvtError:
                    pass
                raise
            release_hook(conn, ok=True)
        state["nodes"] = {n.name: {"status": n.status, **n.times} for n in nodes.values()}
    took = ", ".join(f"{n.name} {n.times.get('installed', 0):.0f}s" for n in nodes.values())
    return f"wait-for-nodes: {len(nodes)} nodes imaged and booted from their disks (imaged after: {took})"


def read_monitor(conn: Connection, offsets: dict[str, int], by_ip: dict[str, Node]) -> None:
    """Take in the monitor's and rsync daemon's new log lines; print each node's changes."""
    new = {}
    for key, path in (("monitor", monitor.MONITOR_LOG), ("rsyncd", monitor.RSYNCD_LOG)):
        data = conn.check_output_bytes(f"tail -c +{offsets[key] + 1} {path} 2>/dev/null || true")
        complete = data[:data.rfind(b"\n") + 1]
        offsets[key] += len(complete)
        new[key] = complete.decode(errors="replace")
    for line in new["monitor"].splitlines():
        fields = monitor.parse_status_line(line)
        node = by_ip.get(fields.get("ip", ""))
        if node is None or not fields.get("status", "").lstrip("-").isdigit():
            continue
        status = int(fields["status"])
        if status < 0:
            raise OscarvtError(f"{node.name}: the installer reported an error: {fields.get('message', line)}")
        if status != node.status:
            node.status = status
            progress(f"{node.name}: {monitor.describe(status)}")
            node.seen({monitor.IMAGED: "installed", monitor.BOOTED: "booted"}.get(status, "imaging"))
    for ip in monitor.completed_ips(new["rsyncd"]):
        if ip in by_ip:
            progress(f"{by_ip[ip].name}: fetched imaging_complete_{ip}")
            by_ip[ip].seen("imaging_complete")


def check_vm(cluster: ClusterDir, state: dict[str, Any], node: Node) -> None:
    """Scan the node's console for errors; start it from its disk if its installer rebooted."""
    files = cluster.files(node.name)
    try:
        with files.console.open("rb") as console:
            console.seek(node.console_offset)
            data = console.read()
    except OSError:
        data = b""
    complete = data[:data.rfind(b"\n") + 1]
    if complete:
        node.console_offset += len(complete)
        node.last_activity = time.time()
        for line in complete.decode(errors="replace").splitlines():
            if any(error in line for error in CONSOLE_ERRORS):
                raise OscarvtError(f"{node.name}: {line.strip()} (console {files.console})")
    if qemu.running_pid(files) is not None:
        return
    if not qemu.asked_to_reboot(files):
        raise OscarvtError(f"{node.name}: its VM died (QEMU exited without a reboot; console {files.console})")
    if node.restarted:
        raise OscarvtError(f"{node.name}: rebooted again after starting from its disk (console {files.console})")
    if node.status is None or node.status < monitor.IMAGED:
        said = monitor.describe(node.status) if node.status is not None else "not heard from"
        raise OscarvtError(f"{node.name}: rebooted before imaging completed (last: {said})")
    progress(f"{node.name}: rebooted; starting it from its disk, CD out")
    boot_node(cluster, state, node.name, "disk", None)
    node.console_offset = state["vms"][node.name]["console_start"]
    node.restarted = True
    node.seen("restarted")
