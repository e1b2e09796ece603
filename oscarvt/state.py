"""The cluster state: what ``state.json`` in a cluster folder holds, as one typed record.

Every phase reads it once (``ClusterDir.phase``), changes its fields and has it saved. The
JSON form is checked field by field when read (dacite, strict): a damaged or hand-edited
state is one error naming the field, never a ``KeyError`` in the middle of a phase.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import dacite

from oscarvt.errors import shown

VM_NAME = re.compile(r"[a-z][a-z0-9-]{0,40}")  # the spec's host names, a node's with its number
HOST_KEY = re.compile(r"[a-z][a-z0-9@.-]{0,60} [A-Za-z0-9+/]{1,20000}={0,2}")  # known_hosts' "TYPE BASE64"
CLIENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,62}")  # an OSCAR client's name: a host name without domain
Role = Literal["headnode", "node"]
Desired = Literal["created", "running", "stopped"]
PhaseResult = Literal["running", "passed", "failed"]


def _order(state: ClusterState, name: str) -> tuple[int, str]:
    """Where the VM ``name`` comes in the cluster's order (unknown names last, by name)."""
    vm = state.vms.get(name)
    return (vm.index if vm else 1 << 30, name)


class StateError(ValueError):
    """The state file's text is not a cluster state (its message names the field)."""


@dataclass
class Vm:
    """One VM: its role, private MAC and address, and what the driver did with it."""

    role: Role
    index: int  # 0 for the headnode, N for node N (MACs, addresses and taps follow it)
    mac: str
    ip: str
    ssh_port: int | None = None  # the host's port forwarded to its SSH (the headnode's NAT NIC)
    desired: Desired = "created"  # what the driver last asked of it
    iface: str | None = None  # the headnode's private interface, OSCAR's --cli argument
    console_start: int = 0  # console size when it was last started: its new output starts here
    started: float | None = None  # when it was last started (a node's imaging is timed from it)
    host_key: str | None = None  # the headnode's SSH host key, 'TYPE BASE64': see oscarvt.access


@dataclass
class Bridge:
    """The host bridge of a bridged private LAN; ``created``: by oscarvt, so destroy removes it."""

    name: str
    created: bool = False


@dataclass
class Accel:
    """The accelerator chosen for the cluster (kvm or tcg) and why."""

    name: str
    reason: str


@dataclass
class Checkout:
    """The OSCAR revision under test: where it came from, its revision, its folder on the headnode."""

    source: str
    revision: str  # '' if unknown
    dir: str


@dataclass
class OscarRun:
    """The install_cluster that start-oscar started: how far its output and logs have been read."""

    command: str
    started: float
    offset: int = 0  # bytes of its output printed so far
    monitor_offset: int = 0  # SystemImager's monitor log is read from here on
    rsyncd_offset: int = 0
    hook_reached: float | None = None
    status: int | None = None  # its exit status, once it has exited
    failure: str | None = None  # where it failed and its line that says why (oscarvt.oscar_output)
    step: int | None = None  # the last step whose banner it printed
    step_ended: bool = False  # ... and whether that banner said the step ended well
    tests: list[dict[str, str]] = field(default_factory=list)  # its cluster tests (class, name, result, message,
                                                               # seconds)


@dataclass
class PhaseRecord:
    """One phase the cluster went through: when, its result and, if it failed, why and whose fault."""

    phase: str
    start: float
    end: float | None = None
    result: PhaseResult = "running"
    message: str = ""
    blame: str | None = None
    seconds: float | None = None
    product_seconds: float | None = None  # of ``seconds``, spent waiting on OSCAR and its nodes (oscarvt.timing)


@dataclass
class StatusSeen:
    """A SystemImager status a node reported (``oscarvt.monitor``), and when the driver saw it (UNIX seconds)."""

    time: float
    status: int


HISTORY = 200  # status changes kept per node: the guest says how often it reports, so the first and last 100


@dataclass
class NodeRecord:
    """A compute node's imaging: its last SystemImager status, when each stage was seen (seconds from
    ``started``, when its VM was first started), each change of its status (``history``, bounded), and
    the name and address OSCAR gave it (from its define-clients answers; learned from the monitor's
    reports by the node's MAC, None until it reported)."""

    status: int | None
    times: dict[str, float] = field(default_factory=dict)
    started: float | None = None
    history: list[StatusSeen] = field(default_factory=list)
    client: str | None = None  # OSCAR's name for it, e.g. node01
    client_ip: str | None = None  # OSCAR's address for it on the private LAN


def node_label(vm: str, client: str | None) -> str:
    """A node as people read it: OSCAR's name with the VM beside it (``node5 (VM oscarnode13)``), or the
    VM's name alone when OSCAR's is the same or not known."""
    return f"{client} (VM {vm})" if client and client != vm else vm


def is_ipv4(text: str) -> bool:
    """True if ``text`` is an IPv4 address written the usual way (``192.168.77.2``)."""
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def remember(history: list[StatusSeen], seen: StatusSeen) -> None:
    """Add ``seen`` to ``history``, which keeps its first and last ``HISTORY // 2`` entries."""
    history.append(seen)
    if len(history) > HISTORY:
        del history[HISTORY // 2]


@dataclass
class Logs:
    """Where the last grab-logs put the logs."""

    dir: str
    tarball: str


@dataclass
class ClusterState:
    """Everything the driver knows about a cluster between phases."""

    cluster_id: int
    spec: dict[str, Any]  # the spec it was made from (``ClusterSpec.to_dict``)
    vms: dict[str, Vm]
    accel: Accel | None = None
    bridge: Bridge | None = None
    phases: list[PhaseRecord] = field(default_factory=list)
    checkout: Checkout | None = None
    oscar: OscarRun | None = None
    nodes: dict[str, NodeRecord] = field(default_factory=dict)
    logs: Logs | None = None
    kept: str | None = None  # why a person keeps it running (reap leaves it; destroy does not)

    def headnode_name(self) -> str:
        return next(name for name, vm in self.vms.items() if vm.role == "headnode")

    def node_vms(self) -> dict[str, Vm]:
        """The compute node VMs, in order, by name."""
        return {name: vm for name, vm in self.vms.items() if vm.role == "node"}

    def node_ip(self, name: str) -> str:
        """Where the node ``name`` is on the private LAN: the address OSCAR gave it once wait-for-nodes
        learned it, else the spec's."""
        record = self.nodes.get(name)
        return record.client_ip if record and record.client_ip else self.vms[name].ip

    def vm_named(self, name: str) -> str | None:
        """The VM ``name`` means: a VM's own name, else the node OSCAR calls ``name`` (VM names come first)."""
        if name in self.vms:
            return name
        return next((vm for vm, record in self.nodes.items() if record.client == name and vm in self.vms), None)

    def label(self, name: str) -> str:
        """The VM ``name`` as people read it: a node with OSCAR's name beside it (``node_label``)."""
        record = self.nodes.get(name)
        return node_label(name, record.client if record else None)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ClusterState:
        """The state in ``text``; StateError naming the first field that is wrong."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise StateError(f"not JSON: {exc}") from None
        except RecursionError:
            raise StateError("nested too deeply") from None
        if not isinstance(data, dict):
            raise StateError("not a cluster state (a JSON object is expected)")
        try:
            state = dacite.from_dict(cls, data, config=dacite.Config(strict=True))
        except dacite.DaciteError as exc:
            raise StateError(str(exc)) from None
        # in the VMs' order (headnode, node 1, 2, ..., 10: OSCAR's client order, sortclients in
        # lib/OSCAR/MAC.pm), not the file's, whose keys are sorted as text (oscarnode10 before oscarnode2)
        state.vms = dict(sorted(state.vms.items(), key=lambda entry: entry[1].index))
        state.nodes = {name: state.nodes[name] for name in sorted(state.nodes, key=lambda n: _order(state, n))}
        if [vm.role for vm in state.vms.values()].count("headnode") != 1:
            raise StateError("field \"vms\" must hold exactly one headnode")
        bad = [name for name in state.vms if not VM_NAME.fullmatch(name)]
        if bad:  # names become file names: profiles/NAME.xml, consoles/NAME.log
            raise StateError(f"field \"vms\": {bad[0][:40]!r} is not a VM name (a host name)")
        damaged = [name for name, vm in state.vms.items() if vm.host_key and not HOST_KEY.fullmatch(vm.host_key)]
        if damaged:
            raise StateError(f"field \"vms.{damaged[0]}.host_key\" is not an SSH host key (TYPE BASE64)")
        _check_clients(state.nodes)
        return state


def _check_clients(nodes: dict[str, NodeRecord]) -> None:
    """StateError naming the first node whose OSCAR name or address is not one (they name files and hosts)."""
    for name, node in nodes.items():
        where = f"nodes.{name if VM_NAME.fullmatch(name) else shown(name)}"
        if node.client is not None and not CLIENT_NAME.fullmatch(node.client):
            raise StateError(f"field \"{where}.client\" is not a host name: {shown(node.client)}")
        if node.client_ip is not None and not is_ipv4(node.client_ip):
            raise StateError(f"field \"{where}.client_ip\" is not an IPv4 address: {shown(node.client_ip)}")
