"""Nodes as OSCAR names them: its define-clients answers (a user's ``--inputs``) give the clients other
names and addresses than the spec's VMs have. wait-for-nodes maps the monitor's reports to the VMs by
MAC, learns OSCAR's name and address for each node from them, and maps the rsync log's
imaging_complete markers through those addresses; verdicts, summaries, status, events and the
timeline name a node as OSCAR does with its VM beside it. Crafted monitor and rsync lines (no VM),
then one `oscarvt run` on real VMs with a user's define-clients answers."""

from __future__ import annotations

import dataclasses
import io
import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import oscarvt, qemu_pids_of, template_spec_data, write_spec
from PIL import Image

from oscarvt import access, events, log, monitor
from oscarvt.cluster import ClusterDir
from oscarvt.errors import InputError, ProductError, guest_line
from oscarvt.image import build_template
from oscarvt.phases.boot import boot_compute_nodes
from oscarvt.phases.nodes import Node, take_in
from oscarvt.state import ClusterState, NodeRecord, PhaseRecord, StateError, Vm, node_label
from oscarvt.status import cluster_status, format_status, summary
from oscarvt.timeline import picture_height, timeline_figure

SUITE = Path(__file__).parent.parent / "examples" / "oscar-mini"
STAMP = "2026-12-03 09:14:16"
COUNT = 12  # past nine: OSCAR's client order and oscarvt's VM order must still agree
USER_START = ipaddress.IPv4Address("10.20.0.50")  # the user's first address, not in the spec's range


def mac(k: int) -> str:
    """VM k's private MAC, as copy-vm-image makes them (cluster id 0x1234)."""
    return f"52:54:00:12:34:{k + 1:02x}"


def cluster_state(count: int = COUNT) -> ClusterState:
    """A cluster of a headnode and ``count`` nodes named and addressed by the spec (oscarnodeK, .K+1)."""
    vms = {"headnode": Vm("headnode", 0, ip="192.168.77.1", mac=mac(0))}
    vms.update({f"oscarnode{k}": Vm("node", k, ip=f"192.168.77.{k + 1}", mac=mac(k)) for k in range(1, count + 1)})
    return ClusterState(cluster_id=0x1234, spec={"template": "/x.qcow2", "ssh": {"password": "pw"}}, vms=vms)


def followed(state: ClusterState) -> dict[str, Node]:
    """The nodes as wait-for-nodes follows them."""
    return {name: Node(name, vm.ip, started=1.0, console_offset=0, mac=vm.mac)
            for name, vm in state.node_vms().items()}


def users_client(k: int) -> tuple[str, str]:
    """OSCAR's name and address for the client that gets VM k's MAC under the user's answers: base
    ``node``, padding 2, from 1, from ``USER_START`` (the MAC file is in VM order, OSCAR assigns the
    MACs in file order to its clients in name order)."""
    return f"node{k:02d}", str(USER_START + k - 1)


def report(mac: str, ip: str, host: str, status: int | str, message: str = "") -> str:
    """A line of the monitor's log as SystemImager's installer sends it, stamped by the monitor."""
    tail = f":message={message}" if message else ""
    return f"{STAMP} mac={mac}:ip={ip}:host={host}:kernel=6.1.0:ncpus=1:status={status}{tail}"


def fetched(ip: str) -> str:
    """A line of the rsync daemon's log: a client fetched its imaging_complete marker."""
    return f"2026/12/03 09:20:01 [812] rsync on scripts/imaging_complete_{ip} from UNKNOWN ({ip})"


@pytest.fixture
def said(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What the driver prints (``text``) and the events it writes (``events``)."""
    printed = io.StringIO()
    written: list[dict[str, Any]] = []
    monkeypatch.setattr(log, "_stream", printed)
    monkeypatch.setattr(events, "emit", lambda kind, **fields: written.append({"event": kind, **fields}))
    return {"stream": printed, "events": written}


def printed_lines(said: dict[str, Any]) -> list[str]:
    return [line.split("] ", 1)[1] for line in said["stream"].getvalue().splitlines()]


def test_reports_map_to_vms_by_mac_under_a_users_names_and_addresses(said):
    """Twelve nodes named node01..node12 at 10.20.0.50..61 by the user's answers: every report and
    marker goes to the VM with that MAC, whatever its name and address, with the MAC in either case."""
    nodes = followed(cluster_state())
    for status in (0, 40, 100):
        lines = [report(mac(k).upper() if k % 2 else mac(k), users_client(k)[1], users_client(k)[0], status)
                 for k in range(COUNT, 0, -1)]  # in any order
        take_in(lines, [], nodes)
    take_in([], [fetched(users_client(k)[1]) for k in range(1, COUNT + 1)], nodes)
    take_in([], [fetched(users_client(11)[1])], nodes)  # rsyncd's second line of the same fetch: said once
    for k in range(1, COUNT + 1):
        node = nodes[f"oscarnode{k}"]
        assert (node.client, node.client_ip, node.status) == (*users_client(k), 100), k
        assert [seen.status for seen in node.history] == [0, 40, 100] and "imaging_complete" in node.times
        assert node.record().client == f"node{k:02d}" and node.record().client_ip == users_client(k)[1]
    lines = printed_lines(said)
    assert "oscarnode10: OSCAR's client node10 at 10.20.0.59" in lines
    assert "node05 (VM oscarnode5): imaging 40%" in lines and "node12 (VM oscarnode12): installed" in lines
    assert lines.count("node11 (VM oscarnode11): fetched imaging_complete_10.20.0.60") == 1
    installed = [e for e in said["events"] if e["event"] == "node" and e["state"] == "installed"]
    assert {(e["vm"], e["client"]) for e in installed} == {(f"oscarnode{k}", f"node{k:02d}") for k in range(1, 13)}


def test_spec_names_print_as_before_and_the_fqdn_in_a_report_gives_the_short_name(said):
    nodes = followed(cluster_state(2))
    take_in([report(mac(1), "192.168.77.2", "oscarnode1", 0), report(mac(2), "192.168.77.3", "node2.lab", 0)],
            [], nodes)
    assert nodes["oscarnode1"].client == "oscarnode1" and nodes["oscarnode2"].client == "node2"
    lines = printed_lines(said)
    assert lines == ["oscarnode1: installer started", "oscarnode2: OSCAR's client node2 at 192.168.77.3",
                     "node2 (VM oscarnode2): installer started"]
    assert [e["client"] for e in said["events"] if e["event"] == "node"] == ["oscarnode1", "node2"]


def test_reports_for_macs_of_no_vm_here_are_passed_over(said):
    """Another cluster's node (or a stray one) reporting the name and address of one of ours counts for nothing."""
    nodes = followed(cluster_state(2))
    take_in([report("52:54:00:99:99:02", "192.168.77.2", "oscarnode1", 40), report("", "192.168.77.3", "x", 40),
             report("52:54:00:12:34:2", "192.168.77.2", "oscarnode1", 40),  # a MAC with a digit left out
             f"{STAMP} ip=192.168.77.2:host=oscarnode1:status=40"], [], nodes)
    assert all((n.status, n.client, n.client_ip, n.history) == (None, None, None, []) for n in nodes.values())
    assert said["stream"].getvalue() == "" and said["events"] == []


def test_markers_follow_the_addresses_learned_and_the_spec_s_before_a_report():
    """The user's addresses start at .3, the spec's second node's: once oscarnode1 reported .3, the
    marker for .3 is its own; before any report the spec's address stands; unknown addresses count for nothing."""
    nodes = followed(cluster_state(2))
    take_in([], [fetched("192.168.77.3")], nodes)  # nobody reported yet: the spec's oscarnode2
    assert "imaging_complete" in nodes["oscarnode2"].times
    nodes = followed(cluster_state(2))
    take_in([report(mac(1), "192.168.77.3", "c1", 90), report(mac(2), "192.168.77.4", "c2", 90)],
            [fetched("192.168.77.3"), fetched("192.168.77.2"), fetched("10.0.0.9"), fetched("١.2.3.4")], nodes)
    assert "imaging_complete" in nodes["oscarnode1"].times and "imaging_complete" not in nodes["oscarnode2"].times
    take_in([], [fetched("192.168.77.4")], nodes)
    assert "imaging_complete" in nodes["oscarnode2"].times


@pytest.mark.parametrize("field, value", [
    ("host", "node\x1b[2J\x07one"), ("host", "n" * 100_000), ("host", "-node"), ("host", "node_1"),
    ("host", "node01." + "a." * 200), ("ip", "10.20.0.\x1b50"), ("ip", "1" * 100_000), ("ip", "10.20.0.256"),
    ("ip", "١٠.20.0.50"), ("ip", "10.20.0.050"), ("ip", "10.20.0.50/24"),
])
def test_a_hostile_name_or_address_is_passed_over_and_said_once_in_a_short_line(said, field, value):
    nodes = followed(cluster_state(1))
    good = {"host": "node01", "ip": "10.20.0.50"}
    take_in([report(mac(1), good["ip"], good["host"], 0)], [], nodes)
    hostile = {**good, field: value}
    take_in([report(mac(1), hostile["ip"], hostile["host"], status) for status in (10, 20, 30)], [], nodes)
    node = nodes["oscarnode1"]
    assert (node.client, node.client_ip, node.status) == ("node01", "10.20.0.50", 30)  # the status still counts
    refused = [line for line in printed_lines(said) if "passed over" in line]
    assert len(refused) == 1, refused
    assert refused[0].startswith(f"node01 (VM oscarnode1): its report's {field}= is not ")
    assert refused[0].isprintable() and len(refused[0]) < 200, refused[0]
    state = cluster_state(1)
    state.nodes = {"oscarnode1": node.record()}
    assert ClusterState.from_json(state.to_json()).nodes == state.nodes  # what was learned still loads


def test_a_hostile_name_is_never_learned_even_first():
    nodes = followed(cluster_state(1))
    take_in([report(mac(1), "10.20.0.50", "x" * 64, 0)], [], nodes)
    assert (nodes["oscarnode1"].client, nodes["oscarnode1"].client_ip) == (None, "10.20.0.50")


@pytest.mark.parametrize("message", ["cannot mount /dev/vdz1\x1b[31m\rFAKE: PASS", "x" * 50_000, ""])
def test_an_installers_error_is_one_short_printable_line_naming_the_node(message):
    nodes = followed(cluster_state(10))
    with pytest.raises(ProductError) as error:
        take_in([report(mac(10).upper(), "10.20.0.59", "node10", -1, message)], [], nodes)
    text = str(error.value)
    assert text.startswith("node10 (VM oscarnode10): the installer reported an error: ")
    assert error.value.vm == "oscarnode10"  # Buildbot and the mail key on the VM
    assert text.isprintable() and len(text) < 400, text


def test_a_short_printable_error_is_quoted_as_it_is():
    nodes = followed(cluster_state(1))
    with pytest.raises(ProductError, match=r"^node01 \(VM oscarnode1\): the installer reported an error: "
                                           r"fdisk /dev/vdz failed$"):
        take_in([report(mac(1), "10.20.0.50", "node01", -1, "fdisk /dev/vdz failed")], [], nodes)


def learned_state() -> ClusterState:
    """A cluster of three nodes after wait-for-nodes learned OSCAR's names (the third never reported)."""
    state = cluster_state(3)
    state.nodes = {"oscarnode1": NodeRecord(102, {"installed": 61.0}, 100.0, [], "node01", "10.20.0.50"),
                   "oscarnode2": NodeRecord(102, {"installed": 63.5}, 101.0, [], "oscarnode2", "192.168.77.3"),
                   "oscarnode3": NodeRecord(None, {}, 102.0)}
    return state


def test_the_state_keeps_oscars_names_checked_and_an_old_state_still_loads():
    state = learned_state()
    loaded = ClusterState.from_json(state.to_json())
    assert loaded.nodes == state.nodes
    assert loaded.node_ip("oscarnode1") == "10.20.0.50" and loaded.node_ip("oscarnode3") == "192.168.77.4"
    assert [loaded.vm_named(n) for n in ("node01", "oscarnode2", "headnode", "node03")] == [
        "oscarnode1", "oscarnode2", "headnode", None]
    data = json.loads(state.to_json())
    for node in data["nodes"].values():  # an oscarvt before the names wrote neither field
        del node["client"], node["client_ip"]
    old = ClusterState.from_json(json.dumps(data))
    assert all(n.client is None and n.client_ip is None for n in old.nodes.values())
    for key, value, said in [("client", "node 01", "is not a host name: 'node 01'"),
                             ("client", "n\x1b" * 5000, "is not a host name: 'n\\x1bn"),
                             ("client_ip", "10.20.0.500", "is not an IPv4 address: '10.20.0.500'"),
                             ("client_ip", 7, 'wrong value type for field "nodes.client_ip"')]:
        damaged = json.loads(state.to_json())
        damaged["nodes"]["oscarnode1"][key] = value
        with pytest.raises(StateError) as error:
            ClusterState.from_json(json.dumps(damaged))
        assert said in str(error.value) and len(str(error.value)) < 200, str(error.value)
        if isinstance(value, str):
            assert f'field "nodes.oscarnode1.{key}"' in str(error.value)


def test_summary_status_and_timeline_name_nodes_as_oscar_does(tmp_path):
    state = learned_state()
    lines = summary(state).splitlines()
    assert "node01 (VM oscarnode1): status 102, at 10.20.0.50; installed 61.0s" in lines
    assert "oscarnode2: status 102, at 192.168.77.3; installed 63.5s" in lines
    assert "oscarnode3: status None; " in lines
    cluster = ClusterDir(tmp_path)
    cluster.save(state)
    status = cluster_status(cluster)
    row = status["vms"]["oscarnode1"]
    assert (row["client"], row["client_ip"]) == ("node01", "10.20.0.50")
    assert status["vms"]["oscarnode3"]["client"] is None and status["vms"]["oscarnode3"]["ip"] == "192.168.77.4"
    table = format_status(status).splitlines()
    assert table[2].split()[:6] == ["node01", "(VM", "oscarnode1)", "node", "created", "-"]
    assert "10.20.0.50" in table[2] and table[4].split()[0] == "oscarnode3" and "192.168.77.4" in table[4]
    fig = timeline_figure([PhaseRecord("wait-for-nodes", 100.0, 200.0, "passed")], state.nodes, 210.0, "c")
    lanes = [label.get_text() for label in fig.axes[1].get_yticklabels()]
    assert lanes == ["node01 (VM oscarnode1)", "oscarnode2", "oscarnode3"]
    long = dataclasses.replace(state.nodes["oscarnode1"], client="n" * 63)
    fig = timeline_figure([PhaseRecord("wait-for-nodes", 100.0, 200.0, "passed")], {"oscarnode1": long}, 210.0, "c")
    assert len(fig.axes[1].get_yticklabels()[0].get_text()) <= 30


def test_ssh_reaches_a_node_at_oscars_address_by_either_name(tmp_path, monkeypatch):
    """`oscarvt ssh` goes through the headnode to the address OSCAR gave the node, not the spec's."""
    reached: list[tuple[str, str]] = []

    class Hop:
        def close(self) -> None:
            pass

    monkeypatch.setattr(access, "open_headnode", lambda session: Hop())
    monkeypatch.setattr(access, "connect", lambda host, port, creds, label, via, fate: reached.append((host, label)))
    cluster = ClusterDir(tmp_path)
    state = learned_state()
    for name in ("node01", "oscarnode1", "oscarnode2", "oscarnode3"):
        access.open_vm(cluster, state, name)
    assert reached == [("10.20.0.50", "node01 (VM oscarnode1)"), ("10.20.0.50", "node01 (VM oscarnode1)"),
                       ("192.168.77.3", "oscarnode2"), ("192.168.77.4", "oscarnode3")]
    with pytest.raises(InputError, match=r"^no VM named 'node9\\x1b' in this cluster \(VMs: headnode, "
                                         r"oscarnode1, oscarnode2, oscarnode3; OSCAR's names: node01, oscarnode2\)$"):
        access.open_vm(cluster, state, "node9\x1b")


def test_boot_compute_nodes_takes_oscars_name_for_a_node_too(tmp_path):
    """`boot-compute-nodes --node node01` is VM oscarnode1 once wait-for-nodes learned it; an unknown name
    is bad input that lists the nodes as OSCAR names them."""
    cluster = ClusterDir(tmp_path)
    cluster.save(learned_state())
    with pytest.raises(InputError, match=r"^--node: no compute node named headnode, nope \(nodes: node01 \(VM "
                                         r"oscarnode1\), oscarnode2, oscarnode3\)$"):
        boot_compute_nodes(cluster, "disk", None, ["node01", "oscarnode2", "nope", "headnode"])


def test_a_node_is_named_by_oscar_with_its_vm_beside_it_only_when_they_differ():
    assert node_label("oscarnode13", "node5") == "node5 (VM oscarnode13)"
    assert node_label("oscarnode13", "oscarnode13") == node_label("oscarnode13", None) == "oscarnode13"
    assert monitor.mac_key(" 52:54:00:AB:CD:0A ") == monitor.mac_key("52-54-00-ab-cd-0a") == "52:54:00:ab:cd:0a"


DEFINE_CLIENTS = """# the user's define-clients answers (OSCAR's menu items, each value on the next line)
2
lab
3
node
4
3
5
1
6
2
7
192.168.77.50
8
255.255.255.0
9
192.168.77.1
10
"""
USERS_NODES = {"oscarnode1": ("node01", "192.168.77.50"), "oscarnode2": ("node02", "192.168.77.51"),
               "oscarnode3": ("node03", "192.168.77.52")}


@pytest.mark.vm
def test_run_passes_with_a_users_define_clients_answers(tmp_path, clusters, monkeypatch):
    """`oscarvt run` of oscar-mini with three nodes that the user's answers name node01..03 in domain lab
    at .50 on: every node is followed by its MAC to its boot from disk, and named as OSCAR names it."""
    template, _ = build_template()
    spec = write_spec(tmp_path / "spec.yaml", template_spec_data(template, nodes={"count": 3, "memory": 384,
                                                                                  "disk": "1G"}))
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "defineclients").write_text(DEFINE_CLIENTS)
    monkeypatch.setenv(events.ENV, str(tmp_path / "events.jsonl"))
    cluster = clusters(tmp_path / "c").path
    result = oscarvt("run", "--cluster", cluster, "--spec", spec, "--source", SUITE, "--inputs", inputs,
                     "--boot", "network", timeout=1700)
    assert result.returncode == 0, result.output
    assert result.last_line.startswith("PASS: run: every phase passed in "), result.output
    for vm, (name, ip) in USERS_NODES.items():
        for line in (f"{vm}: OSCAR's client {name} at {ip}", f"{name} (VM {vm}): installed",
                     f"{name} (VM {vm}): fetched imaging_complete_{ip}", f"{name} (VM {vm}): rebooted; starting it",
                     f"{name} (VM {vm}): booted from its disk", f"test PASSED: test_cluster {name} ssh"):
            assert line in result.output, line
    assert "not heard from" not in result.output
    check_kept_and_shown(cluster, tmp_path / "events.jsonl")
    assert qemu_pids_of(cluster) == []


def check_kept_and_shown(cluster: Path, events_file: Path) -> None:
    """The state, the logs, the summary, the events and the timeline hold OSCAR's names beside the VMs'."""
    state = ClusterDir(cluster).load()
    assert {vm: (n.client, n.client_ip, n.status) for vm, n in state.nodes.items()} == {
        vm: (name, ip, monitor.BOOTED) for vm, (name, ip) in USERS_NODES.items()}
    logs = cluster / "logs"
    clients = (logs / "headnode/etc/oscar/clients").read_text()
    summary_lines = (logs / "summary.txt").read_text().splitlines()
    for vm, (name, ip) in USERS_NODES.items():
        assert f"{name} {ip} 255.255.255.0 192.168.77.1" in clients and clients.rstrip().endswith("lab")
        assert any(line.startswith(f"{name} (VM {vm}): status 102, at {ip}; ") for line in summary_lines), vm
        console = (logs / "consoles" / f"{vm}.log").read_text(errors="replace")
        assert f"oscar-node: {name} up at {ip}" in console
    phases = json.loads((logs / "phases.json").read_text())
    assert {vm: node["client"] for vm, node in phases["nodes"].items()} == {
        vm: name for vm, (name, _) in USERS_NODES.items()}
    with Image.open(logs / "timeline.png") as timeline:  # a lane per node
        assert timeline.height == picture_height(len({p["phase"] for p in phases["phases"]}), 3)
    written = [events.parse(line) for line in events_file.read_text().splitlines()]
    booted = {(e["vm"], e["client"]) for e in written if e and e["event"] == "node" and e["state"] == "booted"}
    assert booted == {(vm, name) for vm, (name, _) in USERS_NODES.items()}


def test_a_guest_line_with_a_control_character_is_quoted_whole_up_to_the_limit():
    """A line with an escape sequence keeps its words (escaped) as far as the limit, not the first few."""
    line = "rsync of image oscarimage failed: \x1b[31mNo space left on device\x1b[0m (code 11) at main.c(1338)"
    quoted = guest_line(line, 300)
    assert quoted == repr(line) and quoted.isprintable()
    assert guest_line("\x07" + "x" * 500, 300) == repr("\x07" + "x" * 500)[:300] + "..."
