"""How long each phase may take before the driver itself reports: what Buildbot's step limits follow.

Every wait in the driver is bounded; the sum of a phase's bounds is its limit below. A
Buildbot step gets this limit plus a margin as its ``timeout`` and ``maxTime``, so Buildbot
never kills a step that the driver would still have reported on.
"""

from __future__ import annotations

from oscarvt import phase_table as table
from oscarvt import warm
from oscarvt.backends.qemu import KILL_WAIT, START_TIMEOUT
from oscarvt.identity import DONE_TIMEOUT
from oscarvt.oscar_run import HOOK_FAIL_WAIT
from oscarvt.phases.checkout import CHECKOUT_TIMEOUT
from oscarvt.phases.host import CLAIM_WAIT
from oscarvt.spec import ClusterSpec
from oscarvt.ssh import COMMAND_TIMEOUT, IDLE_TIMEOUT

MARGIN = 300.0  # seconds Buildbot waits beyond a phase's limit


def phase_limit(spec: ClusterSpec, phase: str) -> float:
    """The longest ``phase`` can run on a cluster made from ``spec`` before the driver reports."""
    t = spec.timeouts
    vms = spec.nodes.count + 1
    start_all = vms * (START_TIMEOUT + COMMAND_TIMEOUT)
    limits = {
        table.COPY_VM_IMAGE.name: vms * COMMAND_TIMEOUT,
        table.BOOT_HEADNODE.name: t.kvm_probe + START_TIMEOUT + t.ssh + 2 * COMMAND_TIMEOUT
        + (START_TIMEOUT + warm.RESTORE_TIMEOUT + DONE_TIMEOUT + t.stop + KILL_WAIT)  # a warm start that fails
        + warm.SAVE_TIMEOUT + DONE_TIMEOUT,  # the cold boot saves its state, then waits for its identity
        table.CHECKOUT_OSCAR.name: CHECKOUT_TIMEOUT + 4 * COMMAND_TIMEOUT,
        table.START_OSCAR.name: t.oscar + 4 * COMMAND_TIMEOUT,
        table.BOOT_COMPUTE_NODES.name: IDLE_TIMEOUT * 10 + start_all,
        table.WAIT_FOR_NODES.name: t.install + t.node + start_all + HOOK_FAIL_WAIT + 2 * COMMAND_TIMEOUT,
        table.FINISH_OSCAR.name: t.oscar + 4 * COMMAND_TIMEOUT,
        table.GRAB_LOGS.name: 10 * IDLE_TIMEOUT + 2 * COMMAND_TIMEOUT,
        table.DESTROY.name: vms * (t.stop + KILL_WAIT + 10),
        table.KEEP.name: 60.0,
        table.SEND_LOGS.name: 2 * 60.0,  # the SMTP session's timeout, twice
        table.CLAIM.name: CLAIM_WAIT + vms * (t.stop + KILL_WAIT + 10) + 60,
    }
    limits[table.RUN.name] = sum(limits[p.name] for p in (*table.RUN_PHASES, *table.CLEANUP_PHASES))
    return limits[phase]
