"""status: what each VM of the cluster is doing, and how the phases went."""

from __future__ import annotations

import dataclasses
from typing import Any

from oscarvt import timing
from oscarvt.cluster import ClusterDir
from oscarvt.errors import guest_line
from oscarvt.state import ClusterState, PhaseRecord, node_label

MESSAGE_LIMIT = 2000  # characters of a phase's message in a line (a verdict's are far shorter)


def cluster_status(cluster: ClusterDir) -> dict[str, Any]:
    """Status as data: each VM's state (running, paused, rebooted, stopped, dead, created), the phases.

    ``rebooted`` means an installer-booted VM rebooted, so its QEMU exited (``-no-reboot``)
    and it waits to be started from its disk; ``dead`` means the driver started the VM and
    did not stop it, yet its QEMU process is gone (killed, crashed). A node's ``client`` and
    ``client_ip`` are OSCAR's name and address for it, once wait-for-nodes saw it report (else null);
    ``ip`` is the spec's.
    """
    state = cluster.load()
    vms = {}
    for name, vm in state.vms.items():
        handle = cluster.vm(name)
        pid = handle.pid()
        if pid is not None:
            vm_state = handle.status() or "running"
        elif vm.desired == "running":
            vm_state = "rebooted" if handle.rebooted() else "dead"
        else:
            vm_state = "stopped" if vm.desired == "stopped" else "created"
        node = state.nodes.get(name)
        vms[name] = {"role": vm.role, "state": vm_state, "pid": pid, "ip": vm.ip,
                     "client": node.client if node else None, "client_ip": node.client_ip if node else None,
                     "mac": vm.mac, "ssh_port": vm.ssh_port, "console": str(handle.console)}
    return {"cluster": str(cluster.path), "cluster_id": state.cluster_id,
            "accel": dataclasses.asdict(state.accel) if state.accel else None,
            "vms": vms, "phases": [dataclasses.asdict(p) for p in state.phases]}


def format_phase(phase: PhaseRecord) -> str:
    """One phase record in a line: name, result, seconds (of which the product's), message (quoted by
    ``guest_line`` if it holds a control character: it may quote a guest's text)."""
    took = f"{phase.seconds:.1f}s" if phase.seconds is not None else "..."
    product = f"{phase.product_seconds:.1f}s" if phase.product_seconds else "-"
    return f"{phase.phase:<20} {phase.result:<8} {took:>8} {product:>8}  {guest_line(phase.message, MESSAGE_LIMIT)}"


def vm_label(name: str, vm: dict[str, Any]) -> str:
    """A VM of ``cluster_status`` as people read it: a node with OSCAR's name beside it (``node_label``)."""
    return node_label(name, vm.get("client"))


def format_status(status: dict[str, Any]) -> str:
    """A table for people: a node by OSCAR's name with its VM beside it, at OSCAR's address once known."""
    labels = {name: vm_label(name, vm) for name, vm in status["vms"].items()}
    width = max([14, *map(len, labels.values())])
    lines = [f"{'VM':<{width}} {'ROLE':<9} {'STATE':<8} {'PID':>7} {'SSH':>6}  {'IP':<16} MAC"]
    for name, vm in status["vms"].items():
        lines.append(f"{labels[name]:<{width}} {vm['role']:<9} {vm['state']:<8} {vm['pid'] or '-':>7} "
                     f"{vm['ssh_port'] or '-':>6}  {vm.get('client_ip') or vm['ip']:<16} {vm['mac']}")
    lines += [f"phase {format_phase(PhaseRecord(**phase))}" for phase in status["phases"]]
    return "\n".join(lines)


def summary(state: ClusterState) -> str:
    """A few lines for people: each phase's result, time and the product's part of it, the harness's
    share, the failure, each node's times (named as OSCAR names it, its VM beside it), the cluster tests."""
    lines = [f"{'phase':<20} {'result':<8} {'seconds':>8} {'product':>8}"]
    lines += [format_phase(phase) for phase in state.phases]
    lines.append(timing.describe(timing.share(p for p in state.phases if p.seconds is not None))
                 + " (the rest waited on OSCAR and its nodes)")
    for name, node in state.nodes.items():  # by OSCAR's name, the VM beside it (node_label), at OSCAR's address
        times = ", ".join(f"{key} {value}s" for key, value in node.times.items())
        at = f", at {node.client_ip}" if node.client_ip else ""
        lines.append(f"{node_label(name, node.client)}: status {node.status}{at}; {times}")
    for test in state.oscar.tests if state.oscar else []:
        said = " ".join(guest_line(str(test[key]), 300) for key in ("class", "name", "message"))  # OSCAR's words
        lines.append(f"test {guest_line(str(test['result']), 20)}: {said}".rstrip())
    return "\n".join(lines)


def failed_phase(phases: list[PhaseRecord]) -> PhaseRecord | None:
    """The first phase whose latest run failed (a phase run again and passed does not count)."""
    latest = {p.phase: p for p in phases}
    return next((p for p in latest.values() if p.result == "failed"), None)
