"""oscar-mini on every target: ``oscarvt run`` on a headnode of each Debian suite and architecture
the matrix names (its spec names the template by suite and arch, as a matrix cell's does), with
nodes that install from the CD or the network and then boot from their own disks.

arm64 nodes have no BIOS: the firmware (UEFI) boots the CD's El Torito EFI image or, by PXE, the
GRUB image dnsmasq names for DHCP client-arch 11; the installer writes GRUB as the removable-media
loader EFI/BOOT/BOOTAA64.EFI on an EFI system partition, which the firmware starts from the disk.

The runs marked ``matrix`` are left out of the default run (``tests/conftest.py``) to keep ``make test``
within its time; ``pytest -m matrix`` runs them. Times measured under TCG on 2 cores are in each
test's docstring.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import oscarvt, qemu_pids_of, write_spec
from test_driver import SUITE, check_imaged, check_logs

from oscarvt import image
from oscarvt.errors import OscarvtError

pytestmark = pytest.mark.vm

NODES = {"oscarnode1": "192.168.77.2", "oscarnode2": "192.168.77.3"}


def target_spec(path: Path, suite: str, arch: str, count: int) -> Path:
    """A spec that names its headnode template by suite and arch, with ``count`` blank nodes."""
    try:
        image.find_template(suite, arch)
    except OscarvtError as exc:
        pytest.fail(f"no {suite} {arch} template ({exc}): run 'make test', which builds the templates first")
    return write_spec(path, {"template": {"suite": suite, "arch": arch},
                             "nodes": {"count": count, "memory": 512 if arch == "arm64" else 384, "disk": "1G"},
                             "accel": "tcg"})


def run_target(tmp_path: Path, clusters, suite: str, arch: str, boot: str, count: int) -> Path:
    """``oscarvt run`` of oscar-mini on the target; it must pass, and every node must be imaged."""
    cluster = clusters(tmp_path / "c").path
    spec = target_spec(tmp_path / "spec.yaml", suite, arch, count)
    result = oscarvt("run", "--cluster", cluster, "--spec", spec, "--source", SUITE, "--boot", boot, timeout=1800)
    assert result.returncode == 0, result.output
    assert result.output.strip().splitlines()[-1].startswith("PASS: run: every phase passed in ")
    nodes = dict(list(NODES.items())[:count])
    check_logs(cluster / "logs", list(nodes))
    check_imaged(cluster, nodes)
    assert qemu_pids_of(cluster) == []
    return cluster


def check_uefi_node(cluster: Path, name: str, installer_from: str) -> None:
    """From an arm64 node's console: the firmware started the installer's GRUB from ``installer_from``,
    then, after the installer rebooted, GRUB from the node's own disk (virtio-blk, the removable-media
    path of its EFI system partition), which booted the installed system; its getty is on ttyAMA0."""
    console = (cluster / "logs" / "consoles" / f"{name}.log").read_text(errors="replace")
    starts = [line for line in console.splitlines() if line.startswith("BdsDxe: starting ")]
    assert len(starts) == 2 and installer_from in starts[0] and "UEFI Misc Device" in starts[1], starts
    assert "oscar-installer: installing GRUB on the EFI system partition /dev/vda1" in console
    assert f"Booting `oscar-mini node {name}'" in console
    assert f"{name} login:" in console  # busybox getty on the PL011 console
    assert "ttyS0" not in console


def test_arm64_node_installs_from_the_uefi_cd(tmp_path, clusters):
    """arm64 bookworm headnode and 1 node from the CD: 120-145 s under TCG (2 cores)."""
    cluster = run_target(tmp_path, clusters, "bookworm", "arm64", "cdrom", 1)
    check_uefi_node(cluster, "oscarnode1", "CD-ROM")
    dnsmasq = (cluster / "logs/headnode/etc/oscar/dnsmasq.conf").read_text()
    assert "dhcp-match=set:efi-arm64,option:client-arch,11" in dnsmasq and "pxelinux" not in dnsmasq


@pytest.mark.matrix  # 2.6 min under TCG: make test keeps the CD run, make matrix runs this one too
def test_arm64_node_installs_from_the_network_by_uefi_pxe(tmp_path, clusters):
    """arm64 bookworm headnode and 1 node by UEFI PXE: 155 s under TCG (2 cores)."""
    cluster = run_target(tmp_path, clusters, "bookworm", "arm64", "network", 1)
    check_uefi_node(cluster, "oscarnode1", "PXEv4")
    log = (cluster / "logs/headnode/var/log/oscar/dnsmasq.log").read_text()
    for sent in ("grubnetaa64.efi", "kernel", "initrd.img"):
        assert f"sent /tftpboot/{sent} to 192.168.77.2" in log, sent


@pytest.mark.matrix
@pytest.mark.parametrize("boot", ["cdrom", "network"])
@pytest.mark.parametrize("suite", ["trixie", "bullseye"])
def test_amd64_nodes_install_on_other_suites(tmp_path, clusters, suite, boot):
    """amd64 trixie and bullseye headnodes, 2 nodes from the CD or by PXE, under TCG (2 cores):
    83-98 s from the CD, 113-134 s by PXE."""
    cluster = run_target(tmp_path, clusters, suite, "amd64", boot, 2)
    console = (cluster / "logs" / "consoles" / "oscarnode1.log").read_text(errors="replace")
    assert "oscar-installer: installing extlinux" in console
    if boot == "network":
        log = (cluster / "logs/headnode/var/log/oscar/dnsmasq.log").read_text()
        for sent in ("pxelinux.0", "kernel", "initrd.img"):
            assert f"sent /tftpboot/{sent} to 192.168.77.2" in log, sent
