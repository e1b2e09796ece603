"""Reach a cluster's VMs over SSH: the headnode by its forwarded port, nodes through it.

The headnode's SSH host key is recorded by boot-headnode when its SSH first lets the driver
log in (``Vm.host_key``), and every later connection to it (each phase, ``oscarvt ssh``,
grab-logs) requires exactly that key before it sends a credential; another key is a
``HostKeyChanged`` (infrastructure, see there). A state without the key (from an oscarvt
before it was recorded, or a boot-headnode that never reached SSH) gets no connection at all:
there is nothing to tell the headnode from whatever answers on its port.

Each phase opens its own connection, as each runs in its own process under Buildbot; ``oscarvt
run``, which runs them all in one, keeps the headnode's open from phase to phase
(``reused_connections``): a login under TCG costs the guest about half a second.

Compute nodes' keys are not recorded: a node answers with a new key each time it boots another
system (the installer's CD or network boot, then the image on its disk), no phase logs in to a
node, and ``oscarvt ssh``, the one verb that does, does not write the state (it runs beside a
phase without its lock). The way to a node is a channel of the checked headnode connection.
"""

from __future__ import annotations

from contextlib import contextmanager, suppress
from typing import Iterator

from oscarvt.cluster import ClusterDir
from oscarvt.errors import InputError, OscarvtError, shown
from oscarvt.session import Session
from oscarvt.spec import ClusterSpec
from oscarvt.ssh import Connection, Credentials, Fate, connect
from oscarvt.state import ClusterState


def credentials(spec: ClusterSpec) -> Credentials:
    return Credentials(spec.ssh.user, spec.ssh.password, spec.ssh.key)


_reused: dict[tuple[int, str], Connection] | None = None  # within reused_connections: by port and host key


@contextmanager
def reused_connections() -> Iterator[None]:
    """Within this block a headnode connection outlives the phase that opened it: the next phase that
    asks for the same headnode (same port, same recorded host key) gets it again while it works, a
    new one otherwise. All are closed at the end.

    A reused connection is not logged into again: a host key or password that OSCAR changes during
    ``run`` shows at the next login (the next Buildbot step's, ``oscarvt ssh``), not within it."""
    global _reused
    outer, _reused = _reused, {}
    try:
        yield
    finally:
        drop_reused()
        _reused = outer


def drop_reused() -> None:
    """Close the connections kept for reuse (after a failed phase: the clean-up logs in afresh,
    in case the connection was what failed)."""
    if _reused is None:
        return
    while _reused:
        _, conn = _reused.popitem()
        conn.reused = False
        with suppress(Exception):  # closing the rest matters more
            conn.close()


def reuse(conn: Connection, port: int) -> Connection:
    """Keep ``conn`` (to the headnode on ``port``, under the host key it showed) for later phases,
    within ``reused_connections``; elsewhere it is returned as it is."""
    if _reused is not None:
        old = _reused.pop((port, conn.host_key), None)
        if old is not None and old is not conn:
            old.reused = False
            old.close()
        conn.reused = True
        _reused[(port, conn.host_key)] = conn
    return conn


def open_headnode(session: Session) -> Connection:
    """An SSH connection to the running headnode (a reused one, within ``reused_connections``)."""
    state = session.state
    name = state.headnode_name()
    vm = state.vms[name]
    if not vm.ssh_port:
        raise InputError(f"{name} has not been booted (run 'oscarvt boot-headnode')")
    if not vm.host_key:
        raise InputError(f"{name}'s SSH host key is not in the cluster state (boot-headnode records it when "
                         f"{name} first lets it log in); no connection without it")
    reused = _reused.get((vm.ssh_port, vm.host_key)) if _reused is not None else None
    if reused is not None and reused.active:
        return reused
    conn = connect("127.0.0.1", vm.ssh_port, credentials(session.spec), name, host_key=vm.host_key,
                   fate=fate_of(session.cluster, name))
    return reuse(conn, vm.ssh_port)


def fate_of(cluster: ClusterDir, name: str) -> Fate:
    """What SSH to the VM ``name`` says when it fails: whether its QEMU is still there."""
    return cluster.vm(name).fate


def open_vm(cluster: ClusterDir, state: ClusterState, name: str) -> tuple[Connection, list[Connection]]:
    """An SSH connection to ``name`` (a VM's name, or OSCAR's name for a node), and every connection to
    close afterwards (hops included). A node is reached at the address OSCAR gave it once wait-for-nodes
    has learned it (a user's define-clients answers may give other addresses than the spec's)."""
    vm = state.vm_named(name)
    if vm is None:
        clients = [record.client for record in state.nodes.values() if record.client]
        also = f"; OSCAR's names: {', '.join(clients)}" if clients else ""
        raise InputError(f"no VM named {shown(name)} in this cluster (VMs: {', '.join(state.vms)}{also})")
    session = Session(cluster, state)
    head = open_headnode(session)
    if state.vms[vm].role == "headnode":
        return head, [head]
    try:
        node = connect(state.node_ip(vm), 22, credentials(session.spec), state.label(vm), via=head,
                       fate=fate_of(cluster, vm))
    except OscarvtError:
        head.close()
        raise
    return node, [node, head]
