"""status: what each VM of the cluster is doing, and how the phases went."""

from __future__ import annotations

import dataclasses
from typing import Any

from oscarvt.backends import qemu
from oscarvt.cluster import ClusterDir
from oscarvt.state import PhaseRecord


def cluster_status(cluster: ClusterDir) -> dict[str, Any]:
    """Status as data: each VM's state (running, paused, rebooted, stopped, dead, created), the phases.

    ``rebooted`` means an installer-booted VM rebooted, so its QEMU exited (``-no-reboot``)
    and it waits to be started from its disk; ``dead`` means the driver started the VM and
    did not stop it, yet its QEMU process is gone (killed, crashed).
    """
    state = cluster.load()
    vms = {}
    for name, vm in state.vms.items():
        files = cluster.files(name)
        pid = qemu.running_pid(files)
        if pid is not None:
            vm_state = qemu.query_status(files) or "running"
        elif vm.desired == "running":
            vm_state = "rebooted" if qemu.asked_to_reboot(files) else "dead"
        else:
            vm_state = "stopped" if vm.desired == "stopped" else "created"
        vms[name] = {"role": vm.role, "state": vm_state, "pid": pid, "ip": vm.ip,
                     "mac": vm.mac, "ssh_port": vm.ssh_port, "console": str(files.console)}
    return {"cluster": str(cluster.path), "cluster_id": state.cluster_id,
            "accel": dataclasses.asdict(state.accel) if state.accel else None,
            "vms": vms, "phases": [dataclasses.asdict(p) for p in state.phases]}


def format_phase(phase: PhaseRecord) -> str:
    """One phase record in a line: name, result, seconds (of which the product's), message."""
    took = f"{phase.seconds:.1f}s" if phase.seconds is not None else "..."
    product = f"{phase.product_seconds:.1f}s" if phase.product_seconds else "-"
    return f"{phase.phase:<20} {phase.result:<8} {took:>8} {product:>8}  {phase.message}"


def format_status(status: dict[str, Any]) -> str:
    """A table for people."""
    lines = [f"{'VM':<14} {'ROLE':<9} {'STATE':<8} {'PID':>7} {'SSH':>6}  {'IP':<16} MAC"]
    for name, vm in status["vms"].items():
        lines.append(f"{name:<14} {vm['role']:<9} {vm['state']:<8} {vm['pid'] or '-':>7} "
                     f"{vm['ssh_port'] or '-':>6}  {vm['ip']:<16} {vm['mac']}")
    lines += [f"phase {format_phase(PhaseRecord(**phase))}" for phase in status["phases"]]
    return "\n".join(lines)
