"""Clusters of another architecture: an arm64 VM's profile stays V2M's, its QEMU is the ``virt``
machine with UEFI firmware (or direct kernel boot), and its accelerator is TCG on an amd64 host."""

from __future__ import annotations

import json
import platform
import subprocess
from pathlib import Path

import pytest
from conftest import oscarvt, write_spec
from lxml import etree

from oscarvt import arches
from oscarvt.accel import choose_accel
from oscarvt.backends import qemu
from oscarvt.errors import InputError, OscarvtError
from oscarvt.processes import live_argv
from oscarvt.profile import NAT, VLAN, Network, Nic, Profile, host_file, load_profile, to_xml, write_profile
from oscarvt.spec import spec_from_dict
from oscarvt.waiting import wait_for

ARM64 = arches.ARCHES["arm64"]
pytestmark = pytest.mark.skipif(platform.machine() != "x86_64", reason="written for an amd64 host")


def node(tmp_path: Path, boot: str, arch: str = "arm64", cdrom: Path | None = None) -> Profile:
    lan = Network("oscarvt-1234", mcast="239.255.18.52:24660")
    return Profile(name="oscarnode1", memory=512, image=tmp_path / "node.qcow2", image_size=1024,
                   nics=(Nic(VLAN, "52:54:00:12:34:02", lan),), cdrom=cdrom, arch=arch, boot=boot)


def files(tmp_path: Path) -> qemu.VmFiles:
    return qemu.VmFiles(pidfile=tmp_path / "n.pid", qmp=tmp_path / "n.qmp", console=tmp_path / "n.log")


def test_an_arm64_profile_is_the_same_v2m_profile_with_its_arch_beside_it(tmp_path):
    arm, amd = node(tmp_path, "disk"), node(tmp_path, "disk", arch="amd64")
    assert to_xml(arm) == to_xml(amd)  # V2M has no element for it
    path = tmp_path / "oscarnode1.xml"
    write_profile(arm, path)
    assert '"arch": "arm64"' in host_file(path).read_text()
    assert load_profile(path).arch == "arm64"
    write_profile(amd, path)  # the default is left out
    assert "arch" not in host_file(path).read_text()
    assert load_profile(path).arch == "amd64"


@pytest.mark.parametrize("value", ["sparc", ["arm64"], 64, None])
def test_a_bad_arch_beside_a_profile_is_one_line(tmp_path, value):
    path = tmp_path / "oscarnode1.xml"
    write_profile(node(tmp_path, "disk"), path)
    host_file(path).write_text(json.dumps({"arch": value}))
    with pytest.raises(InputError, match=rf"^{host_file(path)}: key 'arch' must be one of amd64, arm64, not "):
        load_profile(path)


def test_arm64_vms_run_on_the_virt_machine_and_firmware_boots_by_index(tmp_path):
    cd = tmp_path / "boot.iso"
    argv = qemu.qemu_command(node(tmp_path, "cdrom", cdrom=cd), files(tmp_path), "tcg", None)
    assert argv[0] == "qemu-system-aarch64"
    assert argv[argv.index("-machine") + 1] == "virt,gic-version=3"
    assert argv[argv.index("-cpu") + 1] == "cortex-a57"
    assert argv[argv.index("-bios") + 1] == str(ARM64.firmware)
    assert "-boot" not in argv and "-no-reboot" in argv
    assert f"file={cd},media=cdrom,if=none,id=cd0,readonly=on" in argv
    assert "scsi-cd,bus=scsi0.0,drive=cd0,bootindex=0" in argv
    assert [a for a in argv if "bootindex" in a] == ["scsi-cd,bus=scsi0.0,drive=cd0,bootindex=0"]

    network = qemu.qemu_command(node(tmp_path, "network"), files(tmp_path), "tcg", None)
    assert [a for a in network if "bootindex" in a] == ["virtio-net-pci,netdev=nic1,mac=52:54:00:12:34:02,bootindex=0"]
    disk = qemu.qemu_command(node(tmp_path, "disk"), files(tmp_path), "tcg", None)
    assert [a for a in disk if "bootindex" in a] == ["virtio-blk-pci,drive=disk0,bootindex=0"]
    assert "-no-reboot" not in disk


def test_direct_kernel_boot_needs_no_firmware_and_amd64_is_unchanged(tmp_path):
    head = Profile(name="headnode", image=tmp_path / "h.qcow2", nics=(Nic(NAT, "52:54:01:12:34:01"),),
                   arch="arm64", boot="disk", kernel=tmp_path / "vmlinuz", append="console=ttyAMA0")
    argv = qemu.qemu_command(head, files(tmp_path), "tcg", 2222)
    assert "-bios" not in argv and "bootindex" not in " ".join(argv)
    assert argv[argv.index("-kernel") + 1] == str(tmp_path / "vmlinuz")
    amd = qemu.qemu_command(node(tmp_path, "cdrom", arch="amd64", cdrom=tmp_path / "b.iso"), files(tmp_path),
                            "tcg", None)
    assert amd[0] == "qemu-system-x86_64"
    assert "-machine" not in amd and "-cpu" not in amd and "-bios" not in amd
    assert amd[amd.index("-boot") + 1] == "order=d"


def test_kvm_is_never_chosen_for_a_foreign_arch():
    choice = choose_accel("auto", None, 4, ARM64)
    assert (choice.name, choice.reason) == ("tcg", "arm64 guests cannot use KVM on this x86_64 host")
    with pytest.raises(InputError, match="^the spec asks for KVM, but arm64 guests cannot use KVM on this x86_64"):
        choose_accel("kvm", None, 4, ARM64)


def test_the_spec_names_the_arch_and_its_console_is_the_default(tmp_path):
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"")
    base = {"template": {"kernel": str(kernel)}, "ssh": {"password": "pw"}}
    assert spec_from_dict(base, tmp_path).template.append == "console=ttyS0"
    arm = spec_from_dict({**base, "template": {"kernel": str(kernel), "arch": "arm64"}}, tmp_path)
    assert (arm.template.arch, arm.template.append) == ("arm64", "console=ttyAMA0")
    spec = write_spec(tmp_path / "spec.yaml", {**base, "template": {"kernel": str(kernel), "arch": "mips"}})
    result = oscarvt("copy-vm-image", "--cluster", tmp_path / "c", "--spec", spec)
    assert result.returncode == 2
    assert result.output.strip() == (f"FAIL: copy-vm-image: bad input: {spec}: key 'template.arch' must be one of "
                                     "amd64, arm64, not 'mips'")
    assert not (tmp_path / "c").exists()


def test_copy_vm_image_writes_arm64_profiles_for_every_vm(tmp_path):
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"")
    spec = write_spec(tmp_path / "spec.yaml", {"template": {"kernel": str(kernel), "arch": "arm64"},
                                               "ssh": {"password": "pw"}, "nodes": {"count": 1, "disk": "64M"}})
    try:
        assert oscarvt("copy-vm-image", "--cluster", tmp_path / "c", "--spec", spec).returncode == 0
        loaded = [load_profile(p) for p in sorted((tmp_path / "c").rglob("*.xml"))]
        assert sorted(p.name for p in loaded) == ["headnode", "oscarnode1"]
        assert {p.arch for p in loaded} == {"arm64"}
    finally:
        oscarvt("destroy", "--cluster", tmp_path / "c")


@pytest.mark.vm
def test_the_arm64_firmware_tries_the_cd_first(tmp_path, clusters):
    """A real arm64 VM under TCG: UEFI starts and boots from the CD the profile names (one without a
    boot loader here, so the firmware moves on after saying so)."""
    cd = tmp_path / "empty.iso"
    (tmp_path / "iso").mkdir()
    (tmp_path / "iso" / "README").write_text("no boot loader here\n")
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-o", str(cd), str(tmp_path / "iso")], check=True)
    profile = node(tmp_path, "cdrom", cdrom=cd)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(profile.image), "64M"], check=True)
    vm = files(tmp_path)
    pid = qemu.start(qemu.qemu_command(profile, vm, "tcg", None), vm)
    try:
        wait_for(lambda: "CD-ROM" in vm.console.read_text(errors="replace") or None, timeout=180,
                 what="the firmware's CD-ROM line", error=OscarvtError)
        console = vm.console.read_text(errors="replace")
        first = next(line for line in console.splitlines() if "BdsDxe" in line)
        assert "CD-ROM" in first, console[-2000:]
    finally:
        qemu.stop(vm, 5)
    assert live_argv(pid) is None


def test_an_arm64_profile_renders_for_libvirt_and_not_for_xen(tmp_path):
    cd = tmp_path / "boot.iso"
    path = tmp_path / "oscarnode1.xml"
    write_profile(node(tmp_path, "cdrom", cdrom=cd), path)
    result = oscarvt("profile", "render", "--backend", "libvirt", path)
    assert result.returncode == 0, result.output  # checked against libvirt's own schema
    domain = etree.fromstring(result.stdout.encode())
    assert domain.find("os/type").attrib == {"arch": "aarch64", "machine": "virt"}
    assert domain.findtext("os/loader") == str(ARM64.firmware) and domain.find("os/boot") is None
    assert domain.findtext("cpu/model") == "cortex-a57"
    cdrom = domain.find("devices/disk[@device='cdrom']")
    assert cdrom.find("target").attrib == {"dev": "sda", "bus": "scsi"} and cdrom.find("boot").get("order") == "1"
    assert domain.find("devices/controller").attrib == {"type": "scsi", "model": "virtio-scsi"}
    xen = oscarvt("profile", "render", "--backend", "xen", path)
    assert xen.returncode == 2
    assert xen.last_line == ("FAIL: profile render: bad input: profile oscarnode1: the Xen back end renders HVM "
                             "guests, which are amd64 only, not arm64")
