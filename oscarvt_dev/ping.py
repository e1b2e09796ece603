"""Waiting for a guest's LAN, as the tests and the boot bench check a cluster's network."""

from __future__ import annotations

import shlex

from oscarvt.ssh import Connection
from oscarvt.waiting import wait_for


def wait_pingable(conn: Connection, ips: list[str], timeout: float) -> None:
    """Wait until the VM behind ``conn`` gets a ping answer from every address in ``ips``."""
    for ip in ips:
        command = f"ping -c 1 -W 1 -- {shlex.quote(ip)}"
        wait_for(lambda: True if conn.run(command) == 0 else None,  # noqa: B023 (called at once)
                 timeout=timeout, what=f"{ip} to answer ping from {conn.label}", interval=0.5)
