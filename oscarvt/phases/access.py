"""Reach a cluster's VMs over SSH: the headnode by its forwarded port, nodes through it.

The headnode's SSH host key is recorded by boot-headnode when its SSH first lets the driver
log in (``Vm.host_key``), and every later connection to it (each phase, ``oscarvt ssh``,
grab-logs) requires exactly that key before it sends a credential; another key is a
``HostKeyChanged`` (infrastructure, see there). A state without the key (from an oscarvt
before it was recorded, or a boot-headnode that never reached SSH) gets no connection at all:
there is nothing to tell the headnode from whatever answers on its port.

Compute nodes' keys are not recorded: a node answers with a new key each time it boots another
system (the installer's CD or network boot, then the image on its disk), no phase logs in to a
node, and ``oscarvt ssh``, the one verb that does, does not write the state (it runs beside a
phase without its lock). The way to a node is a channel of the checked headnode connection.
"""

from __future__ import annotations

import shlex

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
    vm = state.vms[name]
    if not vm.ssh_port:
        raise InputError(f"{name} has not been booted (run 'oscarvt boot-headnode')")
    if not vm.host_key:
        raise InputError(f"{name}'s SSH host key is not in the cluster state (boot-headnode records it when "
                         f"{name} first lets it log in); no connection without it")
    return connect("127.0.0.1", vm.ssh_port, credentials(cluster.spec(state)), name, host_key=vm.host_key)


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
        command = f"ping -c 1 -W 1 -- {shlex.quote(ip)}"
        wait_for(lambda: True if conn.run(command) == 0 else None,  # noqa: B023 (called at once)
                 timeout=timeout, what=f"{ip} to answer ping from {conn.label}", interval=0.5)
