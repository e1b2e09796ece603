"""Private LANs: two clusters on one host stay apart; the bridge+tap back end works as root."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
from conftest import LAN_PREFIX, in_private_netns, links, oscarvt, qemu_pids_of, spec_data, wait_reachable, write_spec

from oscarvt.access import open_vm
from oscarvt.errors import InfraError
from oscarvt.phases.boot import configure_private_nic

pytestmark = pytest.mark.vm


def boot(clusters, guest, node_iso, folder: Path, **spec) -> object:
    folder.mkdir()
    cluster = clusters(folder / "c")
    path = write_spec(folder / "spec.yaml", spec_data(guest, **spec))
    for args in (["copy-vm-image", "--spec", path], ["boot-headnode"], ["boot-compute-nodes", "--iso", node_iso]):
        result = oscarvt(args[0], "--cluster", cluster.path, *args[1:])
        assert result.returncode == 0, result.output
    return cluster


def headnode_run(cluster, command: str) -> tuple[int, str]:
    conn, opened = open_vm(cluster, cluster.load(), "headnode")
    chunks: list[bytes] = []
    try:
        status = conn.run(command, chunks.append)
    finally:
        for c in opened:
            c.close()
    return status, b"".join(chunks).decode()


def test_two_clusters_side_by_side_do_not_see_each_other(clusters, guest, node_iso, tmp_path):
    # Same subnet, same addresses: only the LAN (multicast group and port) keeps them apart.
    one = boot(clusters, guest, node_iso, tmp_path / "one", nodes={"count": 1})
    two = boot(clusters, guest, node_iso, tmp_path / "two", nodes={"count": 1},
               ssh={"password": None, "key": str(guest.key)})
    lans = [one.load().cluster_id, two.load().cluster_id]
    assert lans[0] != lans[1]
    for cluster in (one, two):
        wait_reachable(cluster, [f"{LAN_PREFIX}.2"])
        status, neigh = headnode_run(cluster, "ip neigh")
        assert f"{LAN_PREFIX}.2 dev eth1 lladdr {cluster.load().vms['oscarnode1'].mac}" in neigh
    # An address that exists only on cluster two's LAN is unreachable from cluster one.
    assert headnode_run(two, f"ip addr add {LAN_PREFIX}.200/24 dev eth1")[0] == 0
    assert headnode_run(two, f"ping -c 1 -W 2 {LAN_PREFIX}.200")[0] == 0
    status, output = headnode_run(one, f"ping -c 3 -W 2 {LAN_PREFIX}.200")
    assert status != 0, output
    assert "0 packets received" in output


@pytest.mark.skipif(not in_private_netns(), reason="the bridge back end is tested only inside the test namespace")
def test_bridge_and_tap_back_end(clusters, guest, node_iso, tmp_path):
    cluster = boot(clusters, guest, node_iso, tmp_path / "br", nodes={"count": 1},
                   network={"private": "bridge"})
    state = cluster.load()
    assert state.bridge is not None
    bridge = state.bridge.name
    taps = sorted(links("master", bridge))
    assert taps == [f"{bridge}t0", f"{bridge}t1"]
    wait_reachable(cluster, [f"{LAN_PREFIX}.2"])
    result = oscarvt("destroy", "--cluster", cluster.path)
    assert result.returncode == 0, result.output
    assert not set(links()) & {bridge, *taps}
    assert qemu_pids_of(cluster.path) == []


class NamespaceShell:
    """Stands in for a headnode's SSH connection (``check_output``: stdout and stderr merged, an
    InfraError when the command fails): each command runs in a network namespace of its own (with
    its own /sys) holding one interface, ``name`` with ``mac``; ``addresses`` keeps what ``ip -o
    addr`` said there after the last command."""

    label = "headnode"

    def __init__(self, name: str, mac: str) -> None:
        self.name, self.mac, self.addresses = name, mac, ""

    def check_output(self, command: str) -> str:
        quoted = shlex.quote(self.name)
        script = (f"mount -t sysfs none /sys && ip tuntap add name {quoted} mode tap && "
                  f"ip link set dev {quoted} address {self.mac} || exit 99; ( {command} ); status=$?; "
                  "echo =====; ip -o addr show; exit $status")
        result = subprocess.run(["unshare", "--net", "--mount", "sh", "-c", script],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert result.returncode != 99, result.stdout
        said, self.addresses = result.stdout.split("=====\n")
        if result.returncode != 0:
            raise InfraError(f"{self.label}: exited {result.returncode}: {said.strip()}")
        return said


def test_the_private_nic_is_found_by_its_mac_and_given_its_address():
    shell = NamespaceShell("ens9", "52:54:00:45:03:01")
    assert configure_private_nic(shell, "52:54:00:45:03:01", "192.168.77.1/24") == "ens9"  # type: ignore[arg-type]
    assert re.search(r"^\d+: ens9 +inet 192\.168\.77\.1/24 ", shell.addresses, re.M), shell.addresses
    with pytest.raises(InfraError, match="no interface with MAC 52:54:00:45:03:02"):
        configure_private_nic(shell, "52:54:00:45:03:02", "192.168.77.1/24")  # type: ignore[arg-type]
    with pytest.raises(InfraError, match="exited"):  # the address is refused: the request fails, as ip said
        configure_private_nic(shell, "52:54:00:45:03:01", "192.168.77.1/99")  # type: ignore[arg-type]


def test_a_private_nic_name_that_a_shell_would_read_is_not_passed_on():
    shell = NamespaceShell("e$(id>&2)", "52:54:00:45:03:01")  # a guest can name its interfaces so
    with pytest.raises(InfraError, match=r"has a name oscarvt does not pass on: 'e\$\(id>&2\)'") as refused:
        configure_private_nic(shell, "52:54:00:45:03:01", "192.168.77.1/24")  # type: ignore[arg-type]
    assert "uid=" not in str(refused.value)  # the name was never run as a command
    with pytest.raises(InfraError, match="has a name oscarvt does not pass on: '-x'"):  # an option to OSCAR
        configure_private_nic(NamespaceShell("-x", "52:54:00:45:03:01"), "52:54:00:45:03:01",  # type: ignore[arg-type]
                              "192.168.77.1/24")
