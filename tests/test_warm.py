"""Warm start: headnodes restored from their template's saved state, each with an identity of its own.

The Debian template ``make test`` builds boots cold once per headnode shape and saves its state;
the next headnode of that shape is restored from it. Every clone must differ where a clone must
(random pool, SSH host keys, machine-id, private MAC) and match the host where it must (clock),
and the template must stay unwritten. A state that does not restore gives way to a cold boot.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import subprocess
import threading
from pathlib import Path

import pytest
from conftest import oscarvt, qemu_pids_of, spec_data, write_spec

from oscarvt import identity, image, warm
from oscarvt.access import open_vm
from oscarvt.cluster import ClusterDir
from oscarvt.errors import InfraError
from oscarvt.network import NAT_MAC
from oscarvt.profile import NAT, VLAN, Network, Nic, Profile

MEMORY = 896  # a headnode shape no other test uses, so this module sees its first cold boot
PROBE = ("cat /etc/machine-id; ip -o link show dev eth1 | grep -o 'link/ether [0-9a-f:]*'; "
         "ip -o link show dev eth0 | grep -o 'link/ether [0-9a-f:]*'; date +%s; "
         "head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub")


@pytest.fixture(scope="module")
def template() -> image.Template:
    try:
        return image.find_template("bookworm", "amd64")
    except InfraError as exc:
        pytest.fail(f"{exc} ('make test' builds it first)")


def shape_spec(path: Path, template: image.Template) -> Path:
    return write_spec(path, {**template.spec_data(), "headnode": {"memory": MEMORY}, "nodes": {"count": 0},
                             "accel": "tcg"})


def boot(clusters, root: Path, template: image.Template) -> tuple[ClusterDir, str, dict[str, str]]:
    """A headnode of this module's shape, booted by the driver; its boot-headnode output and what PROBE read."""
    root.mkdir(exist_ok=True)
    cluster = clusters(root / "c")
    assert oscarvt("copy-vm-image", "--cluster", cluster.path, "--spec", shape_spec(root / "spec.yaml", template)
                   ).returncode == 0
    booted = oscarvt("boot-headnode", "--cluster", cluster.path, timeout=900)
    assert booted.returncode == 0, booted.output
    conn, opened = open_vm(cluster, cluster.load(), "headnode")
    try:
        lines = conn.check_output(PROBE).splitlines()
    finally:
        for c in opened:
            c.close()
    keys = ("machine_id", "private_mac", "nat_mac", "clock", "random", "host_key")
    return cluster, booted.output, dict(zip(keys, lines, strict=True))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _shape_memory(state: warm.WarmState) -> int | None:
    """The headnode memory a saved state is for (its ``meta.json``)."""
    try:
        return int(state.meta()["shape"]["memory"])
    except (InfraError, KeyError, TypeError, ValueError):
        return None


@pytest.mark.vm
def test_a_headnode_boots_cold_once_then_clones_start_warm_each_with_its_own_identity(template, clusters, tmp_path):
    for stale in warm.states_folder(template.disk).glob("*"):  # this shape's state from an earlier run
        if stale.is_dir() and _shape_memory(warm.WarmState(stale)) == MEMORY:
            warm.discard(warm.WarmState(stale))
    template_before = (sha256(template.disk), template.disk.stat().st_mtime_ns)

    first, first_output, first_probe = boot(clusters, tmp_path / "first", template)
    assert "headnode: cold boot: no saved state of this template for this headnode's shape yet" in first_output
    assert "headnode: saved its state for warm starts" in first_output
    state = next(warm.WarmState(p) for p in warm.states_folder(template.disk).iterdir()
                 if p.is_dir() and _shape_memory(warm.WarmState(p)) == MEMORY)
    for part in (state.state, state.disk, state.console):
        assert part.stat().st_mode & 0o777 == 0o444, part

    clones = []
    for name in ("second", "third"):
        cluster, output, probe = boot(clusters, tmp_path / name, template)
        assert "headnode: warm start: restored the state saved from its template in " in output, output
        assert "(warm start in " in output.strip().splitlines()[-1]
        clones.append((cluster, probe))
        chain = json.loads(subprocess.run(["qemu-img", "info", "--force-share", "--backing-chain", "--output=json",
                                           str(cluster.disk_path("headnode"))], capture_output=True, text=True,
                                          check=True).stdout)
        assert [Path(image_info["filename"]).resolve() for image_info in chain] == [
            cluster.disk_path("headnode").resolve(), state.disk.resolve(), template.disk.resolve()]
        console = cluster.files("headnode").console.read_text(errors="replace")
        assert "[oscarvt] the lines above are the saved state's boot; restored from it now" in console
        assert "did not reseed" not in console

    probes = [first_probe] + [probe for _, probe in clones]
    for field in ("machine_id", "host_key", "random"):  # restored from one memory, yet each its own
        assert len({p[field] for p in probes}) == 3, (field, probes)
    for cluster, probe in [(first, first_probe), *clones]:
        state_vm = cluster.load().vms["headnode"]
        assert probe["private_mac"] == f"link/ether {state_vm.mac}"
        assert probe["nat_mac"] == f"link/ether {NAT_MAC}"
        assert abs(int(probe["clock"]) - int(cluster.load().phases[-1].end or 0)) < 120  # the host's clock
        assert state_vm.host_key is not None and probe["host_key"].split()[1] == _fingerprint(state_vm.host_key)
    assert (sha256(template.disk), template.disk.stat().st_mtime_ns) == template_before
    for cluster, _ in [(first, None), *clones]:
        assert oscarvt("destroy", "--cluster", cluster.path).returncode == 0
        assert qemu_pids_of(cluster.path) == []


@pytest.mark.vm
def test_a_state_that_does_not_restore_gives_way_to_a_cold_boot_that_saves_a_new_one(template, clusters, tmp_path):
    state = next((warm.WarmState(p) for p in warm.states_folder(template.disk).iterdir()
                  if p.is_dir() and _shape_memory(warm.WarmState(p)) == MEMORY), None)
    if state is None:  # run alone: the first boot saves it
        boot(clusters, tmp_path / "saver", template)
        state = next(warm.WarmState(p) for p in warm.states_folder(template.disk).iterdir()
                     if p.is_dir() and _shape_memory(warm.WarmState(p)) == MEMORY)
    os.chmod(state.state, 0o644)
    with state.state.open("r+b") as damaged:  # QEMU refuses a stream whose device sections are garbage
        damaged.seek(4096)
        damaged.write(os.urandom(1 << 20))
    cluster, output, probe = boot(clusters, tmp_path / "c", template)
    assert "headnode: cold boot: its saved state did not restore (" in output, output
    assert "it is removed, and this boot saves a new one" in output
    assert "headnode: saved its state for warm starts" in output
    assert probe["private_mac"] == f"link/ether {cluster.load().vms['headnode'].mac}"
    renewed = warm.WarmState(state.folder)
    assert renewed.state.is_file() and renewed.state.stat().st_mode & 0o777 == 0o444
    assert oscarvt("destroy", "--cluster", cluster.path).returncode == 0
    assert qemu_pids_of(cluster.path) == []


@pytest.mark.vm
def test_a_template_without_an_identity_port_boots_cold_and_says_why(guest, clusters, tmp_path):
    cluster = clusters(tmp_path / "c")
    spec = write_spec(tmp_path / "spec.yaml", spec_data(guest, nodes={"count": 0}))
    assert oscarvt("copy-vm-image", "--cluster", cluster.path, "--spec", spec).returncode == 0
    booted = oscarvt("boot-headnode", "--cluster", cluster.path)
    assert booted.returncode == 0, booted.output
    assert ("headnode: cold boot (its template has no identity port: only templates made by "
            "'oscarvt image build' start warm)") in booted.output
    assert "(cold boot)" in booted.last_line


def test_the_shape_leaves_out_what_is_the_clusters_own_and_keeps_what_the_machine_is(tmp_path):
    disk = tmp_path / "template.qcow2"
    disk.write_bytes(b"")

    def profile(memory: int, mac: str, group: str, image_path: str) -> Profile:
        return Profile(name="headnode", memory=memory, cpu=1, image=Path(image_path),
                       nics=(Nic(NAT, NAT_MAC), Nic(VLAN, mac, Network("lan", mcast=group))),
                       boot="disk", identity=True)

    one = warm.shape_key(profile(1024, "52:54:00:00:01:01", "239.255.0.1:1000", "/a/disks/headnode.qcow2"), "tcg", disk)
    other_cluster = warm.shape_key(profile(1024, "52:54:00:00:02:01", "239.255.0.2:2000",
                                           "/b/disks/headnode.qcow2"), "tcg", disk)
    assert one == other_cluster
    assert warm.shape_key(profile(2048, "52:54:00:00:01:01", "239.255.0.1:1000", "/a/d.qcow2"), "tcg", disk) != one
    assert warm.shape_key(profile(1024, "52:54:00:00:01:01", "239.255.0.1:1000", "/a/d.qcow2"), "kvm", disk) != one
    os.utime(disk, ns=(1, 1))  # another template file in its place
    assert warm.shape_key(profile(1024, "52:54:00:00:01:01", "239.255.0.1:1000", "/a/d.qcow2"), "tcg", disk) != one


def test_the_identity_channel_reads_a_guest_as_untrusted_and_gives_each_clone_new_keys(tmp_path):
    path = tmp_path / "id.sock"
    with identity.IdentityChannel(path) as channel:
        guest = socket.socket(socket.AF_UNIX)
        guest.connect(str(path))
        received: list[bytes] = []

        def hostile_guest() -> None:
            guest.sendall(b"x" * 100_000 + b"ready\n" + b"ready" + b"y" * 100 + b"\nreadyy\n")
            guest.sendall(b"ready\n")
            received.append(guest.recv(8192))

        thread = threading.Thread(target=hostile_guest)
        thread.start()
        channel.wait_for("ready", 10, give_up=lambda: None)  # the 100 kB line is cut, not taken whole
        first_key = channel.send_identity({"52:54:00:00:00:09": "52:54:00:aa:bb:cc", NAT_MAC: NAT_MAC})
        thread.join(10)
        with pytest.raises(InfraError, match="timed out after 1s waiting for the headnode's 'done'"):
            channel.wait_for("done", 1, give_up=lambda: None)  # the guest's other lines are not 'done'
        guest.close()
    words = received[0].decode().split()
    assert words[0] == "identity" and len(words) == 9
    assert words[-1] == "52:54:00:00:00:09>52:54:00:aa:bb:cc"  # only MACs that change
    assert first_key.startswith("ssh-ed25519 ") and first_key.split()[1] == words[5]
    assert not path.exists()


def _fingerprint(host_key: str) -> str:
    """``SHA256:...`` of a ``TYPE BASE64`` key, as ssh-keygen -l prints it."""
    digest = hashlib.sha256(base64.b64decode(host_key.split()[1])).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")
