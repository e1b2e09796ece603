"""Reach a cluster's VMs over SSH: the headnode by its forwarded port, nodes through it."""

from __future__ import annotations

from oscarvt.cluster import ClusterDir
from oscarvt.errors import InputError, OscarvtError
from oscarvt.spec import ClusterSpec
from oscarvt.ssh import Connection, Credentials, connect
from oscarvt.state import ClusterState
from oscarvt.waiting import wait_for


def credentials(spec: ClusterSpec) -> Credentials:
    return Credentials(spec.ssh.user, spec.ssh.password, spec.ssh.key)


def open_headnode(cluster: ClusterDir, state: ClusterState) -> Connection:
    """An SSH connection to the running headnode."""
    name = state.headnode_name()
    port = state.vms[name].ssh_port
    if not port:
        raise InputError(f"{name} has not been booted (run 'oscarvt boot-headnode')")
    return connect("127.0.0.1", port, credentials(cluster.spec(state)), name)


def open_vm(cluster: ClusterDir, state: ClusterState, name: str) -> tuple[Connection, list[Connection]]:
    """An SSH connection to ``name``, and every connection to close afterwards (hops included)."""
    if name not in state.vms:
        raise InputError(f"no VM named {name!r} in this cluster (VMs: {', '.join(state.vms)})")
    head = open_headnode(cluster, state)
    if state.vms[name].role == "headnode":
        return head, [head]
    try:
        node = connect(state.vms[name].ip, 22, credentials(cluster.spec(state)), name, via=head)
    except OscarvtError:
        head.close()
        raise
    return node, [node, head]


def wait_pingable(conn: Connection, ips: list[str], timeout: float) -> None:
    """Wait until the VM behind ``conn`` gets a ping answer from every address in ``ips``."""
    for ip in ips:
        command = f"ping -c 1 -W 1 {ip}"
        wait_for(lambda: True if conn.run(command) == 0 else None,  # noqa: B023 (called at once)
                 timeout=timeout, what=f"{ip} to answer ping from {conn.label}", interval=0.5)
