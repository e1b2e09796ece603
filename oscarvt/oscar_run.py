"""OSCAR's run on the headnode, as the phases share it: where install_cluster's output, exit status
and log are, and the boot hook between start-oscar and wait-for-nodes.

start-oscar (``oscarvt.phases.oscar``) installs ``HOOK_SCRIPT`` as install_cluster's ``--bootscript``.
The hook tells the driver OSCAR waits for the nodes (``REACHED``) and waits until wait-for-nodes
(``oscarvt.phases.nodes``) writes ``RELEASE`` with ``release_hook`` (``0``: every node booted; ``1``:
give up, and OSCAR fails as it does when its boot script fails). grab-logs and send-logs take
``OUTPUT`` and ``OSCAR_LOG``.
"""

from __future__ import annotations

from oscarvt.errors import OscarvtError
from oscarvt.log import progress
from oscarvt.ssh import Connection
from oscarvt.waiting import wait_for

WORK = "/var/lib/oscarvt"
HOOK = f"{WORK}/boot_hook"
REACHED = f"{WORK}/hook.reached"
RELEASE = f"{WORK}/hook.release"
OUTPUT = f"{WORK}/install_cluster.out"
STATUS = f"{WORK}/install_cluster.status"
OSCAR_LOG = "/var/log/oscar/oscarinstall.log"
HOOK_FAIL_WAIT = 30  # seconds for OSCAR to exit once its boot hook failed

HOOK_SCRIPT = f"""#!/bin/sh
# oscarvt's boot hook (install_cluster --bootscript): tell the driver OSCAR waits for the
# nodes, then wait until wait-for-nodes releases the hook (0) or gives up (1).
date +%s > {REACHED}
while [ ! -s {RELEASE} ]; do sleep 1; done
exit "$(cat {RELEASE})"
"""


def release_hook(conn: Connection, ok: bool) -> None:
    """Let OSCAR go on past its boot hook (``ok``), or make the hook fail.

    A failed hook ends OSCAR; this waits (up to ``HOOK_FAIL_WAIT`` seconds) until it has
    exited, so that the logs grabbed next hold its last line ("Failed to confirm ...").
    """
    conn.check_output(f"echo {0 if ok else 1} > {RELEASE}.tmp && mv {RELEASE}.tmp {RELEASE}")
    if not ok:
        try:
            wait_for(lambda: True if conn.run(f"test -s {STATUS}") == 0 else None,
                     timeout=HOOK_FAIL_WAIT, what="OSCAR to stop after its boot hook failed", interval=0.5)
        except OscarvtError as exc:
            progress(str(exc))
