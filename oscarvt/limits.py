"""How long each phase may take before the driver itself reports: what Buildbot's step limits follow.

Every wait in the driver is bounded; the sum of a phase's bounds is its limit below. A
Buildbot step gets this limit plus a margin as its ``timeout`` and ``maxTime``, so Buildbot
never kills a step that the driver would still have reported on.
"""

from __future__ import annotations

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
        "copy-vm-image": vms * COMMAND_TIMEOUT,
        "boot-headnode": t.kvm_probe + START_TIMEOUT + t.ssh + 2 * COMMAND_TIMEOUT,
        "checkout-oscar": CHECKOUT_TIMEOUT + 4 * COMMAND_TIMEOUT,
        "start-oscar": t.oscar + 4 * COMMAND_TIMEOUT,
        "boot-compute-nodes": IDLE_TIMEOUT * 10 + start_all,
        "wait-for-nodes": t.install + t.node + start_all + HOOK_FAIL_WAIT + 2 * COMMAND_TIMEOUT,
        "finish-oscar": t.oscar + 4 * COMMAND_TIMEOUT,
        "grab-logs": 10 * IDLE_TIMEOUT + 2 * COMMAND_TIMEOUT,
        "destroy": vms * (t.stop + KILL_WAIT + 10),
    }
    limits["run"] = sum(limits.values())
    return limits[phase]
