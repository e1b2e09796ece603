"""A real virtual cluster (1 headnode + 2 nodes, TCG) through the ``oscarvt`` verbs.

The tests in this module share one cluster and run in order: they boot it,
reach it, copy files, write to the headnode's disk, kill a node, destroy it.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
from conftest import LAN_PREFIX, oscarvt, qemu_pids_of, spec_data, wait_reachable, write_spec

from oscarvt.access import drop_reused, open_headnode, open_vm, reused_connections
from oscarvt.cluster import ClusterDir
from oscarvt.session import Session
from oscarvt.ssh import Credentials, connect
from oscarvt.teardown import destroy
from oscarvt.waiting import wait_for

pytestmark = pytest.mark.vm


@dataclass
class Booted:
    cluster: ClusterDir
    template: Path
    template_sha256: str
    template_mtime: float


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def booted(guest, node_iso, tmp_path_factory) -> Iterator[Booted]:
    root = tmp_path_factory.mktemp("cluster")
    template = root / "template.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(template), "16M"], check=True)
    data = spec_data(guest)
    data["template"]["disk"] = str(template)
    spec = write_spec(root / "spec.yaml", data)
    cluster = ClusterDir(root / "c")
    before = sha256(template), template.stat().st_mtime
    try:
        for args in (["copy-vm-image", "--spec", spec], ["boot-headnode"],
                     ["boot-compute-nodes", "--iso", node_iso]):
            result = oscarvt(args[0], "--cluster", cluster.path, *args[1:])
            assert result.returncode == 0, result.output
            assert result.last_line.startswith(f"PASS: {args[0]}: ")
        yield Booted(cluster, template, *before)
    finally:
        destroy(cluster)


def test_headnode_answers_ssh_on_a_loopback_only_port(booted):
    status = json.loads(oscarvt("status", "--cluster", booted.cluster.path, "--json").stdout)
    port = status["vms"]["headnode"]["ssh_port"]
    listening = {line.split()[1] for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                 if line.split()[3] == "0A"}
    assert f"0100007F:{port:04X}" in listening
    assert f"00000000:{port:04X}" not in listening
    result = oscarvt("ssh", "--cluster", booted.cluster.path, "headnode", "--", "hostname")
    assert result.returncode == 0
    assert result.stdout == "guest\n"


def test_headnode_pings_both_nodes_over_the_private_lan(booted):
    state = booted.cluster.load()
    nodes = state.node_vms()
    assert [vm.ip for vm in nodes.values()] == [f"{LAN_PREFIX}.2", f"{LAN_PREFIX}.3"]
    wait_reachable(booted.cluster, [vm.ip for vm in nodes.values()])
    result = oscarvt("ssh", "--cluster", booted.cluster.path, "headnode", "--", "ip", "neigh")
    for vm in nodes.values():
        assert f"{vm.ip} dev eth1 lladdr {vm.mac}" in result.stdout


def test_node_is_reached_through_the_headnode_with_password_and_key(booted, guest):
    result = oscarvt("ssh", "--cluster", booted.cluster.path, "oscarnode2", "--", "cat /sys/class/net/eth0/address")
    assert result.returncode == 0, result.output
    assert result.stdout.strip() == booted.cluster.load().vms["oscarnode2"].mac
    port = booted.cluster.load().vms["headnode"].ssh_port
    assert port is not None
    with connect("127.0.0.1", port, Credentials("root", key=guest.key), "headnode") as head:
        with connect(f"{LAN_PREFIX}.2", 22, Credentials("root", key=guest.key), "oscarnode1", via=head) as node:
            assert node.check_output("echo $((6 * 7))") == "42\n"


def test_command_status_and_output_stream_back(booted):
    result = oscarvt("ssh", "--cluster", booted.cluster.path, "oscarnode1", "--", "echo out; echo err >&2; exit 3")
    assert result.returncode == 3
    assert result.stdout == "out\nerr\n"
    assert result.stderr.strip() == "FAIL: ssh: product: oscarnode1: 'echo out; echo err >&2; exit 3' exited 3"


def test_put_and_get_files_and_folders(booted, tmp_path):
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "a.txt").write_text("alpha\n")
    (tree / "run.sh").write_text("#!/bin/sh\necho ran\n")
    (tree / "run.sh").chmod(0o755)
    conn, opened = open_vm(booted.cluster, booted.cluster.load(), "oscarnode1")
    try:
        conn.put(tree, "/tmp/in")
        assert conn.check_output("/tmp/in/tree/run.sh; cat /tmp/in/tree/sub/a.txt") == "ran\nalpha\n"
        conn.check_output("mkdir -p /tmp/in/renamed/stale")
        conn.put(tree, "/tmp/in", name="renamed", replace=True)  # what had the name is gone, not merged
        assert conn.check_output("ls /tmp/in/renamed") == "run.sh\nsub\n"
        conn.check_output("mkdir -p /tmp/out/logs && echo beta > /tmp/out/logs/b.log")
        got, folder = conn.get("/tmp/out/logs", tmp_path / "back")
        single, file = conn.get("/tmp/in/tree/sub/a.txt", tmp_path / "single")
        many, absent, status = conn.get_paths(["/tmp/out/logs", "/tmp/in/tree/sub/a.txt", "/tmp/nothing"],
                                              tmp_path / "many")
        none, gone, nothing = conn.get_paths(["/tmp/nothing"], tmp_path / "none")  # no stream, no error
    finally:
        for c in opened:
            c.close()
    assert (got / "b.log").read_text() == "beta\n"
    assert single.read_text() == "alpha\n"
    assert (folder.files, folder.refused, file.files, file.size, file.refused) == (1, [], 1, 6, [])
    assert (tmp_path / "many" / "tmp" / "out" / "logs" / "b.log").read_text() == "beta\n"
    assert (tmp_path / "many" / "tmp" / "in" / "tree" / "sub" / "a.txt").read_text() == "alpha\n"
    assert (many.files, many.refused, absent, status) == (2, [], ["/tmp/nothing"], 0)
    assert (none.files, none.refused, gone, nothing) == (0, [], ["/tmp/nothing"], 0)
    assert os.access(tmp_path / "back" / "logs", os.R_OK)


def test_reused_connections_log_in_once_for_every_phase_and_close_at_the_end(booted):
    state = booted.cluster.load()
    with reused_connections():
        with open_headnode(Session(booted.cluster, state)) as first:
            first.check_output("true")
        assert first.active  # a phase's "with" left it open for the next one
        with open_headnode(Session(booted.cluster, state)) as second:
            assert second is first and second.check_output("echo again") == "again\n"
        first.client.close()  # a connection that broke is not handed out again
        with open_headnode(Session(booted.cluster, state)) as third:
            assert third is not first and third.active
        drop_reused()  # after a failed phase: the next one logs in afresh
        assert not third.active
        with open_headnode(Session(booted.cluster, state)) as fourth:
            assert fourth is not third and fourth.active
    assert not fourth.active  # the block's end closed it
    with open_headnode(Session(booted.cluster, state)) as alone, open_headnode(Session(booted.cluster, state)) as other:
        assert alone is not other  # outside the block each phase logs in on its own
    assert not alone.active and not other.active


def test_headnode_writes_reach_its_overlay_never_the_template(booted):
    marker = "oscarvt-overlay-marker"
    result = oscarvt("ssh", "--cluster", booted.cluster.path, "headnode", "--",
                     f"echo {marker} | dd of=/dev/vda conv=fsync 2>/dev/null && head -c {len(marker)} /dev/vda")
    assert result.stdout == marker
    assert sha256(booted.template) == booted.template_sha256
    assert booted.template.stat().st_mtime == booted.template_mtime


def test_killed_node_shows_in_status(booted):
    pid = int(booted.cluster.files("oscarnode2").pidfile.read_text())
    os.kill(pid, signal.SIGKILL)
    result = oscarvt("status", "--cluster", booted.cluster.path)
    assert result.returncode == 3
    assert result.last_line == "FAIL: status: infrastructure: oscarnode2 died (2/3 VMs running)"
    assert any(line.split()[:3] == ["oscarnode2", "node", "dead"] for line in result.stdout.splitlines())


def test_destroy_stops_everything_and_removes_disks(booted):
    assert qemu_pids_of(booted.cluster.path)
    result = oscarvt("destroy", "--cluster", booted.cluster.path)
    assert result.returncode == 0, result.output
    assert result.last_line == "PASS: destroy: 2 VMs stopped, 3 disks removed, no VM of c running"
    assert qemu_pids_of(booted.cluster.path) == []
    assert not (booted.cluster.path / "disks").exists()
    again = oscarvt("destroy", "--cluster", booted.cluster.path)
    assert again.last_line == "PASS: destroy: 0 VMs stopped, 0 disks removed, no VM of c running"
    assert sha256(booted.template) == booted.template_sha256
    phases = [(p.phase, p.result) for p in booted.cluster.load().phases]
    assert phases == [("copy-vm-image", "passed"), ("boot-headnode", "passed"),
                      ("boot-compute-nodes", "passed"), ("destroy", "passed"), ("destroy", "passed")]


def test_boot_headnode_gives_up_at_once_when_its_qemu_dies(clusters, guest, tmp_path):
    cluster = clusters(tmp_path / "c")
    spec = write_spec(tmp_path / "spec.yaml", spec_data(guest, nodes={"count": 0}, timeouts={"ssh": 300}))
    assert oscarvt("copy-vm-image", "--cluster", cluster.path, "--spec", spec).returncode == 0
    boot = subprocess.Popen([sys.executable, "-m", "oscarvt", "boot-headnode", "--cluster", str(cluster.path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pidfile = cluster.files("headnode").pidfile
    wait_for(lambda: pidfile.read_text().strip() or None if pidfile.exists() else None,
             timeout=60, what="the headnode's pidfile")
    killed = time.monotonic()
    os.kill(int(pidfile.read_text()), signal.SIGKILL)
    output, _ = boot.communicate(timeout=60)
    assert time.monotonic() - killed < 10
    assert boot.returncode == 3
    assert output.strip().splitlines()[-1] == (
        "FAIL: boot-headnode: infrastructure: gave up waiting for SSH on headnode: headnode's QEMU process is gone "
        f"(see {cluster.files('headnode').console})")
    assert cluster.load().phases[-1].result == "failed"
