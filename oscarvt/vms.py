"""Starting a cluster's VMs: the accelerator (chosen once per cluster), the forwarded SSH port, the
taps, and the state's records of each VM; the back end (``Session.vm``) then starts its QEMU.

boot-headnode starts the headnode here, boot-compute-nodes the nodes, and wait-for-nodes starts
again from its disk a node whose installer rebooted.
"""

from __future__ import annotations

import time
from pathlib import Path

from oscarvt import events, network
from oscarvt.accel import choose_accel
from oscarvt.arches import arch
from oscarvt.backends.qemu import PortTaken, tap_nics
from oscarvt.errors import InputError
from oscarvt.log import progress
from oscarvt.profile import NAT
from oscarvt.session import Session
from oscarvt.state import Accel

PORT_TRIES = 5  # QEMU starts with a new SSH port when the picked one was taken meanwhile


def start_vm(session: Session, name: str, incoming: bool = False) -> int:
    """Start one VM from its profile (resolving the accelerator first); record it in the state.

    ``incoming``: it waits for a saved state (``QemuVm.load_state``) instead of booting."""
    cluster, state = session.cluster, session.state
    accel = ensure_accel(session)
    profile = session.profile(name)
    vm_handle = session.vm(name)
    if vm_handle.pid() is not None:
        raise InputError(f"{name} is already running (run 'oscarvt destroy' first)")
    bridge = state.bridge
    for tap, bridge_name in tap_nics(profile):
        if bridge_name is None:
            raise InputError(f"profile {name}: tap {tap} names no bridge")
        if network.ensure_bridge(bridge_name) and bridge:
            bridge.created = True
            cluster.save(state)
        network.add_tap(tap, bridge_name)
    vm = state.vms[name]
    vm.desired = "running"
    forwards = any(nic.type == NAT for _, nic in profile.connected_nics())
    for attempt in range(1, PORT_TRIES + 1):
        if forwards:  # picked right before QEMU binds it; taken in between: pick again
            vm.ssh_port = network.free_tcp_port()
        cluster.save(state)
        try:
            pid = vm_handle.start(profile, accel, vm.ssh_port, incoming)
            break
        except PortTaken as exc:
            if attempt == PORT_TRIES:
                raise
            progress(f"{name}: port {vm.ssh_port} was taken ({exc}); trying another")
    progress(f"{name}: started (pid {pid}, {accel.upper()}), console {vm_handle.console}")
    return pid


def ensure_accel(session: Session) -> str:
    """The cluster's accelerator, chosen once (KVM probe) and kept in the state."""
    state = session.state
    if state.accel is None:
        spec = session.spec
        choice = choose_accel(spec.accel, spec.template.kernel, spec.timeouts.kvm_probe, arch(spec.template.arch))
        state.accel = Accel(choice.name, choice.reason)
        session.cluster.save(state)
        progress(f"accelerator: {choice.name.upper()} ({choice.reason})")
        events.emit("accel", name=choice.name, reason=choice.reason, decided_at=round(choice.decided_at, 3),
                    decided_by=choice.decided_by, waited=round(choice.waited, 1))
    return state.accel.name


def boot_node(session: Session, name: str, method: str, iso: Path | None) -> int:
    """Start one node from ``method``; with ``disk`` the CD is taken out of its drive."""
    state = session.state
    profile = session.profile(name)
    cdrom = (iso.resolve() if iso else profile.cdrom) if method == "cdrom" else None
    if method == "cdrom" and cdrom is None:
        raise InputError("booting nodes from CD needs --iso FILE")
    session.write_profile(name, profile.with_boot(method, cdrom))
    state.vms[name].console_start = session.vm(name).console_size()
    state.vms[name].started = time.time()
    return start_vm(session, name)
