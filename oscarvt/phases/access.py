"""Reach a cluster's VMs over SSH: the headnode by its forwarded port, nodes through it.

The headnode's SSH host key is recorded by boot-headnode when its SSH first lets the driver
log in (``Vm.host_key``), and every later connection to it (each phase, ``oscarvt ssh``,
grab-logs) requires exactly that key before it sends a credential; another key is a
``HostKeyChanged`` (infrastructure, see there). A state without the key (from an oscarvt
before it was recorded, or a boot-headnode that never reached SSH) gets no connection at all:
there is nothing to tell the headnode from whatever answers on its port.

Each phase opens its own connection, as each runs in its own process under Buildbot; ``oscarvt
run``, which runs them all in one, keeps the headnode's open from phase to phase
(``kept_connections``): a login under TCG costs the guest about half a second.

Compute nodes' keys are not recorded: a node answers with a new key each time it boots another
system (the installer's CD or network boot, then the image on its disk), no phase logs in to a
node, and ``oscarvt ssh``, the one verb that does, does not write the state (it runs beside a
phase without its lock). The way to a node is a channel of the checked headnode connection.
"""

from __future__ import annotations

import shlex
from contextlib import contextmanager
from typing import Iterator

from oscarvt.cluster import ClusterDir
from oscarvt.errors import InputError, OscarvtError
from oscarvt.spec import ClusterSpec
from oscarvt.ssh import Connection, Credentials, connect
from oscarvt.state import ClusterState
from oscarvt.waiting import wait_for


def credentials(spec: ClusterSpec) -> Credentials:
    return Credentials(spec.ssh.user, spec.ssh.password, spec.ssh.key)


_kept: dict[tuple[int, str], Connection] | None = None  # within kept_connections: by port and host key


@contextmanager
def kept_connections() -> Iterator[None]:
    """Within this block a headnode connection outlives the phase that opened it: the next phase that
    asks for the same headnode (same port, same recorded host key) gets it again while it works, a
    new one otherwise. All are closed at the end."""
    global _kept
    outer, _kept = _kept, {}
    try:
        yield
    finally:
        kept, _kept = _kept, outer
        for conn in kept.values():
            conn.kept = False
            conn.close()


def keep(conn: Connection, port: int) -> Connection:
    """Keep ``conn`` (to the headnode on ``port``, its host key checked) for later phases, within
    ``kept_connections``; elsewhere it is returned as it is."""
    if _kept is not None:
        old = _kept.pop((port, conn.host_key), None)
        if old is not None and old is not conn:
            old.kept = False
            old.close()
        conn.kept = True
        _kept[(port, conn.host_key)] = conn
    return conn


def open_headnode(cluster: ClusterDir, state: ClusterState) -> Connection:
    """An SSH connection to the running headnode (a kept one, within ``kept_connections``)."""
    name = state.headnode_name()
    vm = state.vms[name]
    if not vm.ssh_port:
        raise InputError(f"{name} has not been booted (run 'oscarvt boot-headnode')")
    if not vm.host_key:
        raise InputError(f"{name}'s SSH host key is not in the cluster state (boot-headnode records it when "
                         f"{name} first lets it log in); no connection without it")
    kept = _kept.get((vm.ssh_port, vm.host_key)) if _kept is not None else None
    if kept is not None and kept.active:
        return kept
    conn = connect("127.0.0.1", vm.ssh_port, credentials(cluster.spec(state)), name, host_key=vm.host_key)
    return keep(conn, vm.ssh_port)


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
