"""The phases' names: the CLI verb, the Buildbot step and the state's phase record of each.

A phase module takes its own name from here (``Session.phase(cluster, BOOT_HEADNODE)``); the phase
table (``oscarvt.phase_table``) pairs each name with its function, help and options.
"""

from __future__ import annotations

CLAIM = "claim"
COPY_VM_IMAGE = "copy-vm-image"
BOOT_HEADNODE = "boot-headnode"
CHECKOUT_OSCAR = "checkout-oscar"
START_OSCAR = "start-oscar"
BOOT_COMPUTE_NODES = "boot-compute-nodes"
WAIT_FOR_NODES = "wait-for-nodes"
FINISH_OSCAR = "finish-oscar"
GRAB_LOGS = "grab-logs"
SEND_LOGS = "send-logs"
RUN = "run"
KEEP = "keep"
DESTROY = "destroy"
