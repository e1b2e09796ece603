"""The fault suite: what goes wrong on a hypervisor host, and the verdict and cleanup each gets.

Real processes and real VMs: a second driver on a folder, a damaged state, a lost pidfile,
two stop signals during destroy, a driver SIGKILLed in wait-for-nodes and destroyed by the
other spelling of its path, a port taken between picking and binding, a node whose disk
fills up. Each ends with no QEMU of the cluster left running.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
from conftest import oscarvt, qemu_pids_of, spec_data, template_spec_data, write_spec

from oscarvt import log, network
from oscarvt.cluster import ClusterDir
from oscarvt.image import build_template
from oscarvt.phases.boot import boot_headnode
from oscarvt.phases.create import copy_vm_image
from oscarvt.waiting import wait_for

pytestmark = pytest.mark.vm
SUITE = Path(__file__).parent.parent / "examples" / "oscar-mini"


def driver(*args: str | Path, cwd: Path | None = None) -> subprocess.Popen[str]:
    """``oscarvt ARGS`` started in the background, its output (merged) on a pipe."""
    return subprocess.Popen([sys.executable, "-m", "oscarvt", *map(str, args)], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def phase_running(running: subprocess.Popen[str], cluster: Path, name: str) -> bool | None:
    """True once the cluster's state shows phase ``name`` running (None before, for wait_for); the
    test fails at once, with the driver's output, if the driver ended first."""
    if running.poll() is not None:
        output = running.stdout.read() if running.stdout else ""
        raise AssertionError(f"the driver ended (exit {running.returncode}) before {name} ran:\n{output[-3000:]}")
    try:
        phases = json.loads((cluster / "state.json").read_text())["phases"]
    except (OSError, ValueError, KeyError):
        return None
    return True if phases and phases[-1]["phase"] == name and phases[-1]["result"] == "running" else None


@pytest.fixture
def booted(guest, node_iso, tmp_path) -> Iterator[ClusterDir]:
    """A test-guest cluster (headnode + 2 nodes) up and running; destroyed at the end whatever happens."""
    spec = write_spec(tmp_path / "spec.yaml", spec_data(guest, timeouts={"ssh": 120, "stop": 5}))
    cluster = ClusterDir(tmp_path / "c")
    try:
        for args in (["copy-vm-image", "--spec", spec], ["boot-headnode"], ["boot-compute-nodes", "--iso", node_iso]):
            result = oscarvt(args[0], "--cluster", cluster.path, *args[1:])
            assert result.returncode == 0, result.output
        yield cluster
    finally:
        oscarvt("destroy", "--cluster", cluster.path)
        assert qemu_pids_of(cluster.path) == []


def test_a_second_driver_on_the_folder_gets_one_line_naming_the_first(guest, tmp_path):
    spec = write_spec(tmp_path / "spec.yaml", spec_data(guest, nodes={"count": 1}))
    cluster = tmp_path / "c"
    assert oscarvt("copy-vm-image", "--cluster", cluster, "--spec", spec).returncode == 0
    first = driver("boot-headnode", "--cluster", cluster)
    try:
        wait_for(lambda: phase_running(first, cluster, "boot-headnode"), timeout=60, what="boot-headnode to start")
        second = oscarvt("destroy", "--cluster", cluster)
        assert (second.returncode, second.output) == (
            2, f"FAIL: destroy: bad input: {cluster}: another oscarvt (pid {first.pid}) is working on this "
               "cluster; wait for it to end or stop it\n")
        output, _ = first.communicate(timeout=300)
        assert first.returncode == 0, output  # the first driver went on undisturbed
    finally:
        first.kill()
        first.wait()
        assert oscarvt("destroy", "--cluster", cluster).returncode == 0
    assert qemu_pids_of(cluster) == []


def test_destroy_with_a_damaged_state_and_a_lost_pidfile(booted, tmp_path):
    pids = qemu_pids_of(booted.path)
    assert len(pids) == 3
    booted.state_file.write_text('{"vms": ')  # damaged, as after a full disk
    (booted.path / "run" / "oscarnode2.pid").unlink()  # and a pidfile gone
    result = oscarvt("destroy", "--cluster", os.path.relpath(booted.path))  # the other spelling of the path
    assert result.returncode == 0, result.output
    assert "state unusable, cleaning up from the folder alone" in result.output
    assert "oscarnode2: killed (pid" in result.output
    assert result.last_line == "PASS: destroy: 3 VMs stopped, 3 disks removed, no VM of c running"
    assert qemu_pids_of(booted.path) == []
    again = oscarvt("destroy", "--cluster", booted.path)
    assert again.last_line == "PASS: destroy: 0 VMs stopped, 0 disks removed, no VM of c running"


def test_two_stop_signals_do_not_stop_destroy(booted):
    node1 = int((booted.path / "run" / "oscarnode1.pid").read_text())
    os.kill(node1, signal.SIGSTOP)  # a QEMU that does not answer: destroy takes timeouts.stop for it
    destroying = driver("destroy", "--cluster", booted.path)
    assert destroying.stdout is not None
    lines = []
    for line in destroying.stdout:
        lines.append(line)
        if "headnode: stopped" in line:
            destroying.send_signal(signal.SIGTERM)
            time.sleep(0.5)  # two pending SIGTERMs would be one
            destroying.send_signal(signal.SIGTERM)
            break
    rest, _ = destroying.communicate(timeout=120)
    output = "".join(lines) + rest
    assert destroying.returncode == 0, output
    assert "destroy finished before taking 2 stop signal(s)" in output
    assert output.strip().splitlines()[-1] == "PASS: destroy: 3 VMs stopped, 3 disks removed, no VM of c running"
    assert qemu_pids_of(booted.path) == []


def test_a_port_taken_between_picking_and_binding_is_picked_again(guest, tmp_path, monkeypatch, capsys):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    picks = [taken.getsockname()[1]]
    real_pick = network.free_tcp_port
    monkeypatch.setattr(network, "free_tcp_port", lambda: picks.pop(0) if picks else real_pick())
    monkeypatch.setattr(log, "_stream", sys.stdout)  # progress lines into capsys
    cluster = ClusterDir(tmp_path / "c")
    try:
        copy_vm_image(cluster, write_spec(tmp_path / "spec.yaml", spec_data(guest, nodes={"count": 1})))
        boot_headnode(cluster)
        port = cluster.load().vms["headnode"].ssh_port
        assert port != taken.getsockname()[1]
        assert f"headnode: port {taken.getsockname()[1]} was taken" in capsys.readouterr().out
    finally:
        taken.close()
        oscarvt("destroy", "--cluster", cluster.path)
    assert qemu_pids_of(cluster.path) == []


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory) -> Path:
    template, _ = build_template()
    return write_spec(tmp_path_factory.mktemp("spec") / "spec.yaml", template_spec_data(template))


def test_sigkill_of_run_in_wait_for_nodes_then_destroy_by_the_other_spelling(spec_file, tmp_path):
    cluster = tmp_path / "c"
    running = driver("run", "--cluster", "c", "--spec", spec_file, "--source", SUITE, cwd=tmp_path)  # relative
    try:
        wait_for(lambda: phase_running(running, cluster, "wait-for-nodes"), timeout=900,
                 what="run to reach wait-for-nodes", interval=1)
        running.kill()  # SIGKILL: no cleanup of its own
        running.wait()
        assert len(qemu_pids_of(cluster)) == 3
        result = oscarvt("destroy", "--cluster", cluster)  # absolute, as a person types it
        assert result.returncode == 0, result.output
        assert result.last_line == "PASS: destroy: 3 VMs stopped, 4 disks removed, no VM of c running"  # + boot CD
    finally:
        running.kill()
        running.wait()
        oscarvt("destroy", "--cluster", cluster)
    assert qemu_pids_of(cluster) == []


def test_a_full_disk_is_infrastructure_not_a_node_timeout(spec_file, tmp_path):
    cluster = tmp_path / "c"
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(tiny)], check=True)
    try:
        assert oscarvt("copy-vm-image", "--cluster", cluster, "--spec", spec_file).returncode == 0
        disk = cluster / "disks" / "oscarnode1.qcow2"
        (tiny / disk.name).write_bytes(disk.read_bytes())  # the node's disk on a host disk that fills up
        disk.unlink()
        disk.symlink_to(tiny / disk.name)
        for args in (["boot-headnode"], ["checkout-oscar", "--source", SUITE], ["start-oscar"],
                     ["boot-compute-nodes", "--boot", "cdrom"]):
            result = oscarvt(args[0], "--cluster", cluster, *args[1:])
            assert result.returncode == 0, result.output
        result = oscarvt("wait-for-nodes", "--cluster", cluster)
        assert result.returncode == 3, result.output
        assert result.last_line.startswith("FAIL: wait-for-nodes: infrastructure: oscarnode1: disk full: QEMU paused "
                                           "the guest, no space left for "), result.output
        state = json.loads((cluster / "state.json").read_text())
        assert state["phases"][-1]["blame"] == "infrastructure"
    finally:
        oscarvt("destroy", "--cluster", cluster)
        subprocess.run(["umount", str(tiny)], check=False)
    assert qemu_pids_of(cluster) == []
