"""wait-for-nodes: follow every node through imaging to its first boot from its own disk.

From the host, every couple of seconds: the headnode's monitor log (SystemImager status
lines) and rsync log (imaging_complete markers), each node's QEMU process and serial console.
A node whose installer rebooted (QEMU exits, see the QEMU back end) is started again from its
disk. Once every node has reported 102 (booted from its disk) the boot hook is released and
OSCAR goes on. It fails early, naming the node, on an error status, an error on a console
(``CONSOLE_ERRORS``; ``HOST_SIGNS`` are the virtual hardware's, so infrastructure), a VM
that died, or a node with no progress for ``timeouts.node``; then
the hook is released with a failure, so OSCAR stops as it does when its boot script fails
(an interrupt leaves the hook waiting, so wait-for-nodes can be run again).

A node that booted from the network and has shown nothing at all for half of ``timeouts.node``
(no console line, no report, no imaging_complete fetch) is power-cycled once, as an admin does
with a real node whose PXE boot gave up: on the cluster's multicast LAN a busy host can lose
the DHCP answers of a node's boot ROM, which then stops for good, silently. If it stays silent
after that, it fails as any node without progress, its message saying it was power-cycled.

OSCAR names and addresses its clients from its define-clients answers (a user's ``--inputs``
may give other names, numbers and addresses than the spec's), and gives them the MACs of the
MAC file in file order. So a monitor report belongs to the VM whose private NIC has its MAC
(``mac=``, any case); the report's ``host=`` and ``ip=`` are OSCAR's name and address for that
node, kept in its ``NodeRecord`` (``client``, ``client_ip``), and the rsync log's
``imaging_complete_<ip>`` markers are mapped through those addresses (through the spec's until a
node has reported). Reports for a MAC of no VM of this cluster are passed over. A node is named
as OSCAR names it with its VM beside it (``node5 (VM oscarnode13): imaging 40%``); events keep
the VM's name in ``vm`` and OSCAR's in ``client``.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Callable

from oscarvt import events, monitor, timing
from oscarvt.access import open_headnode
from oscarvt.cluster import ClusterDir
from oscarvt.errors import InfraError, InputError, OscarvtError, ProductError, guest_line, shown
from oscarvt.log import progress
from oscarvt.oscar_run import release_hook
from oscarvt.phase_names import WAIT_FOR_NODES
from oscarvt.session import Session
from oscarvt.ssh import LogReader
from oscarvt.state import NodeRecord, StatusSeen, is_ipv4, node_label, remember
from oscarvt.vms import boot_node

CONSOLE_ERRORS = ("Kernel panic", "oscar-installer: ERROR", "Failed to execute /init", "VFS: Unable to mount root")
# Console lines that are the virtual hardware's trouble, not the node's software: the kernel's
# check of the timer fails when TCG on a busy host runs the guest too slowly.
HOST_SIGNS = {"IO-APIC + timer doesn't work": "the guest's timer check failed (TCG on a busy host is too slow)"}
POLL = 1.0
NETBOOT_TRIES = 2  # network boots of a node that shows nothing at all (see above)
STATUS = re.compile(r"-?[0-9]{1,6}")  # SystemImager's codes; '²', '٣' or 5000 digits are no status
REPORT_GRACE = 5.0  # seconds for an installer's error status to follow its console error line
MAX_MESSAGE = 300  # characters of an installer's error message quoted as they are


@dataclass
class Node:
    """What the driver knows about one node while it installs: ``name`` is its VM's, ``ip`` the spec's
    address for it, ``mac`` its private NIC's; ``client`` and ``client_ip`` are what OSCAR calls it,
    from its reports."""

    name: str
    ip: str
    started: float
    console_offset: int
    mac: str = ""
    client: str | None = None
    client_ip: str | None = None
    status: int | None = None
    last_activity: float = field(default_factory=time.time)
    restarted: bool = False
    netboots: int = 1  # its network boots so far (power-cycles + 1), for a node booted from the network
    console_seen: bool = False  # a console line that is not blank since its VM was started
    times: dict[str, float] = field(default_factory=dict)
    history: list[StatusSeen] = field(default_factory=list)  # each change of status, bounded (state.remember)
    refused: set[str] = field(default_factory=set)  # report fields already said to be unusable

    @property
    def label(self) -> str:
        """How progress lines and verdicts name it: ``node5 (VM oscarnode13)``, or ``oscarnode1``."""
        return node_label(self.name, self.client)

    def record(self) -> NodeRecord:
        """What the state keeps of it."""
        return NodeRecord(self.status, dict(self.times), self.started, list(self.history), self.client,
                          self.client_ip)

    def seen(self, what: str) -> None:
        self.last_activity = time.time()
        self.times.setdefault(what, round(time.time() - self.started, 1))

    def imaged(self) -> bool:
        """Imaging finished: status 100 or later, or the imaging_complete marker fetched."""
        return (self.status is not None and self.status >= monitor.IMAGED) or "imaging_complete" in self.times

    def said(self) -> str:
        """Its last status in words."""
        if self.status is not None:
            return monitor.describe(self.status)
        return "not heard from" + (f", after {self.netboots} network boots" if self.netboots > 1 else "")

    def silent_since_power_on(self) -> bool:
        """Nothing at all from it since its VM started: no console line, no report, no fetch."""
        return not self.console_seen and self.status is None and not self.times


def wait_for_nodes(cluster: ClusterDir, timeout: float | None = None) -> str:
    """Wait until every node is imaged and booted from its disk; release OSCAR's boot hook."""
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise InputError(f"--timeout must be a number of seconds above 0, not {timeout:g}")
    with Session.phase(cluster, WAIT_FOR_NODES) as session:
        spec, state = session.spec, session.state
        if state.oscar is None:
            raise InputError("OSCAR has not been started (run 'oscarvt start-oscar')")
        if not all(vm.started is not None for vm in state.node_vms().values()):
            raise InputError("the nodes have not been started (run 'oscarvt boot-compute-nodes')")
        limit = timeout or spec.timeouts.install
        nodes = {name: Node(name, vm.ip, vm.started or 0.0, vm.console_start, mac=vm.mac)
                 for name, vm in state.node_vms().items()}
        monitor_log = LogReader(monitor.MONITOR_LOG, state.oscar.monitor_offset)
        rsyncd_log = LogReader(monitor.RSYNCD_LOG, state.oscar.rsyncd_offset)
        deadline = time.monotonic() + limit
        with open_headnode(session) as conn:
            def take_in_logs() -> None:
                known = [(node.client, node.client_ip) for node in nodes.values()]
                take_in(monitor_log.read(conn), rsyncd_log.read(conn), nodes)
                if known != [(node.client, node.client_ip) for node in nodes.values()]:
                    state.nodes = {name: node.record() for name, node in nodes.items()}
                    cluster.save(state)  # `oscarvt ssh NAME` finds a node by OSCAR's name and address at once

            try:
                with timing.spent_on_product():  # the nodes' installers at work
                    wait_until_booted(session, nodes, take_in_logs, spec.timeouts.node, deadline, limit)
            except OscarvtError:
                try:
                    release_hook(conn, ok=False)  # OSCAR stops as when its boot script fails
                except OscarvtError as exc:
                    progress(f"could not release OSCAR's boot hook: {exc}")
                raise
            finally:
                monitor_log.close()
                rsyncd_log.close()
                state.nodes = {name: node.record() for name, node in nodes.items()}
            release_hook(conn, ok=True)
    took = ", ".join(f"{n.label} {n.times.get('installed', 0):.0f}s" for n in nodes.values())
    return f"{len(nodes)} nodes imaged and booted from their disks (imaged after: {took})"


def wait_until_booted(session: Session, nodes: dict[str, Node], take_in_logs: Callable[[], None],
                      node_timeout: int, deadline: float, limit: float) -> None:
    """Follow the nodes until each has booted from its disk; ProductError for one that fails or is silent
    for ``node_timeout`` seconds, or when ``deadline`` (``limit`` seconds after the start) passes."""
    while True:
        take_in_logs()
        for node in nodes.values():
            watch_vm(session, node, take_in_logs)
            silent = time.time() - node.last_activity
            if silent > node_timeout / 2 and power_cycle_silent(session, node, silent):
                continue
            if node.status != monitor.BOOTED and silent > node_timeout:
                raise ProductError(f"{node.label}: no progress for {node_timeout}s "
                                   f"(last: {node.said()}; timeouts.node)", vm=node.name)
        if all(node.status == monitor.BOOTED for node in nodes.values()):
            return  # at once: a sleep here would be counted as the nodes' time
        if time.monotonic() > deadline:
            waiting = [n.label for n in nodes.values() if n.status != monitor.BOOTED]
            raise ProductError(f"not every node booted within {limit:.0f}s: {', '.join(waiting)}")
        time.sleep(POLL)


def power_cycle_silent(session: Session, node: Node, silent: float) -> bool:
    """Power-cycle ``node`` if it booted from the network, has shown nothing at all since, and has
    network tries left (``NETBOOT_TRIES``); True if it was."""
    if node.netboots >= NETBOOT_TRIES or not node.silent_since_power_on():
        return False
    if session.profile(node.name).boot_device != "network":
        return False
    node.netboots += 1
    progress(f"{node.label}: nothing on its console and no report {silent:.0f}s after its network boot; "
             f"power-cycled (network boot {node.netboots} of {NETBOOT_TRIES})")
    with timing.spent_on_harness():
        session.vm(node.name).stop(session.spec.timeouts.stop)
        boot_node(session, node.name, "network", None)
    node.console_offset = session.state.vms[node.name].console_start
    node.seen("power-cycled")
    emit_node(node, "power-cycled")
    return True


def take_in(monitor_lines: list[str], rsyncd_lines: list[str], nodes: dict[str, Node]) -> None:
    """Take in new monitor and rsync log lines; print each node's changes. A report belongs to the
    node with its MAC; reports for other MACs are passed over."""
    by_mac = {monitor.mac_key(node.mac): node for node in nodes.values() if node.mac}
    for line in monitor_lines:
        fields = monitor.parse_status_line(line)
        node = by_mac.get(monitor.mac_key(fields.get("mac", "")))
        if node is None or not STATUS.fullmatch(fields.get("status", "")):
            continue  # not a node of this cluster, or not a status code (the installer's line is the guest's)
        learn(node, fields)
        take_status(node, int(fields["status"]), fields.get("message") or line)
    addresses = by_address(nodes)
    for ip in monitor.completed_ips("\n".join(rsyncd_lines)):
        node = addresses.get(ip)
        if node is not None and "imaging_complete" not in node.times:  # rsyncd logs a fetch in two lines
            progress(f"{node.label}: fetched imaging_complete_{ip}")
            node.seen("imaging_complete")
            emit_node(node, "imaging_complete")


def take_status(node: Node, status: int, message: str) -> None:
    """A status the node reported: an error is a ProductError quoting ``message``; a change is printed."""
    if status < 0:
        raise ProductError(f"{node.label}: the installer reported an error: {guest_line(message, MAX_MESSAGE)}",
                           vm=node.name)
    if status != node.status:
        node.status = status
        remember(node.history, StatusSeen(round(time.time(), 2), status))
        progress(f"{node.label}: {monitor.describe(status)}")
        stage = {monitor.IMAGED: "installed", monitor.BOOTED: "booted"}.get(status, "imaging")
        node.seen(stage)
        emit_node(node, stage)


def learn(node: Node, fields: dict[str, str]) -> None:
    """Take OSCAR's name and address for ``node`` from its report (``host=``, ``ip=``); a value that
    is no host name or address is passed over, and said once per field."""
    before = (node.client, node.client_ip)
    host, address = fields.get("host", ""), fields.get("ip", "")
    name = monitor.client_name(host) if host else None
    if host and name is None:
        refuse(node, "host", host, "not a host name")
    if address and not is_ipv4(address):
        refuse(node, "ip", address, "not an IPv4 address")
        address = ""
    node.client, node.client_ip = name or node.client, address or node.client_ip
    if (node.client, node.client_ip) not in (before, (node.name, node.ip)):
        progress(f"{node.name}: OSCAR's client {node.client or '?'} at {node.client_ip or '?'}")


def refuse(node: Node, key: str, value: str, why: str) -> None:
    """Say (once per node and field) that a report's ``key=value`` is unusable; nothing is learned from it."""
    if key not in node.refused:
        node.refused.add(key)
        progress(f"{node.label}: its report's {key}= is {why}, passed over: {shown(value)}")


def by_address(nodes: dict[str, Node]) -> dict[str, Node]:
    """The nodes by address: the one OSCAR gave them once reported (it wins), else the spec's."""
    found = {node.ip: node for node in nodes.values() if node.client_ip is None}
    found.update({node.client_ip: node for node in nodes.values() if node.client_ip is not None})
    return found


def emit_node(node: Node, state: str) -> None:
    """The node event: its VM, OSCAR's name for it (or null), its state and status."""
    events.emit("node", vm=node.name, client=node.client, state=state, status=node.status)


def watch_vm(session: Session, node: Node, take_in_logs: Callable[[], None]) -> None:
    """Scan the node's console for errors; start it from its disk if its installer rebooted."""
    vm = session.vm(node.name)
    lines, used = vm.console_since(node.console_offset)
    if used:
        node.console_offset += used
        node.last_activity = time.time()
        node.console_seen = node.console_seen or any(line.strip() for line in lines)
    for line in lines:
        host_trouble = next((why for sign, why in HOST_SIGNS.items() if sign in line), None)
        if host_trouble:
            raise InfraError(f"{node.label}: {host_trouble}: {line.strip()} (console {vm.console})", vm=node.name)
        if any(error in line for error in CONSOLE_ERRORS):
            # An installer that prints an error also reports it to the monitor a moment later;
            # that report (raised by take_in_logs) is the verdict when it comes, the console line if not.
            deadline = time.monotonic() + REPORT_GRACE
            while time.monotonic() < deadline:
                take_in_logs()
                time.sleep(0.5)
            raise ProductError(f"{node.label}: {line.strip()} (console {vm.console})", vm=node.name)
    if vm.pid() is not None:
        paused = vm.paused_by_host()
        if paused:
            raise InfraError(f"{node.label}: {paused}", vm=node.name)
        return
    if not vm.rebooted():
        raise InfraError(f"{node.label}: its VM died (QEMU exited without a reboot; console {vm.console})",
                         vm=node.name)
    if node.restarted:
        raise ProductError(f"{node.label}: rebooted again after starting from its disk "
                           f"(console {vm.console})", vm=node.name)
    take_in_logs()  # its last status lines may have come since the last look
    if not node.imaged():
        raise ProductError(f"{node.label}: rebooted before imaging completed (last: {node.said()})", vm=node.name)
    progress(f"{node.label}: rebooted; starting it from its disk, CD out")
    with timing.spent_on_harness():
        boot_node(session, node.name, "disk", None)
    node.console_offset = session.state.vms[node.name].console_start
    node.restarted = True
    node.seen("restarted")
    emit_node(node, "restarted")
