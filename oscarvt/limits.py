"""How long each phase may take before the driver itself reports: what Buildbot's step limits follow.

Every wait in the driver is bounded; the sum of a phase's bounds is its limit below. A
Buildbot step gets this limit plus a margin as its ``timeout`` and ``maxTime``, so Buildbot
never kills a step that the driver would still have reported on.
"""

from __future__ import annotations

from oscarvt import phase_table as table
from oscarvt.backends.qemu import KILL_WAIT, START_TIMEOUT
from oscarvt.phases.checkout import CHECKOUT_TIMEOUT
from oscarvt.phases.oscar import HOOK_FAIL_WAIT
from oscarvt.spec import ClusterSpec
from oscarvt.ssh import COMMAND_TIMEOUT, IDLE_TIMEOUT

MARGIN = 300.0  # seconds Buildbot waits beyond a phase's limit


def phase_limit(spec: ClusterSpec, phase: str) -> float:
    """The longest ``phase`` can run on a cluster made from ``spec`` before the driver reports."""
    t = spec.timeouts
    vms = spec.nodes.count + 1
    start_all = vms * (START_TIMEOUT + COMMAND_TIMEOUT)
    limits = {
        table.COPY_VM_IMAGE: vms * COMMAND_TIMEOUT,
        table.BOOT_HEADNODE: t.kvm_probe + START_TIMEOUT + t.ssh + 2 * COMMAND_TIMEOUT,
        table.CHECKOUT_OSCAR: CHECKOUT_TIMEOUT + 4 * COMMAND_TIMEOUT,
        table.START_OSCAR: t.oscar + 4 * COMMAND_TIMEOUT,
        table.BOOT_COMPUTE_NODES: IDLE_TIMEOUT * 10 + start_all,
        table.WAIT_FOR_NODES: t.install + t.node + start_all + HOOK_FAIL_WAIT + 2 * COMMAND_TIMEOUT,
        table.FINISH_OSCAR: t.oscar + 4 * COMMAND_TIMEOUT,
        table.GRAB_LOGS: 10 * IDLE_TIMEOUT + 2 * COMMAND_TIMEOUT,
        table.DESTROY: vms * (t.stop + KILL_WAIT + 10),
        table.KEEP: 60.0,
    }
    by_name = {p.name: seconds for p, seconds in limits.items()}
    by_name[table.RUN.name] = sum(limits.values()) - limits[table.KEEP]
    return by_name[phase]
