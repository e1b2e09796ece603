"""V2M profiles: V2M's own profiles stay valid, ours round-trip, back ends render and check them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import oscarvt
from lxml import etree

from oscarvt.backends import libvirt, xen
from oscarvt.errors import OscarvtError
from oscarvt.profile import NAT, VLAN, Network, Nic, Profile, load_profile, to_xml, write_profile

DATA = Path(__file__).parent / "data"


def ours(tmp_path: Path) -> Profile:
    return Profile(
        name="headnode", cpu=2, memory=1024, image=tmp_path / "head.qcow2",
        nics=(Nic(NAT, "52:54:01:12:34:01"),
              Nic(VLAN, "52:54:00:12:34:01", Network("oscarvt-1234", mcast="239.255.18.52:24660"))),
        boot="disk", kernel=tmp_path / "vmlinuz", initrd=tmp_path / "initrd", append="console=ttyS0")


def test_v2m_profiles_are_valid_and_read(tmp_path):
    assert oscarvt("profile", "validate", DATA / "v2m-headnode.xml", DATA / "v2m-node.xml").returncode == 0
    head = load_profile(DATA / "v2m-headnode.xml")
    assert head.image == Path("/var/lib/v2m/images/head.img")
    assert head.image_size == "4G"
    assert [n.type for n in head.nics] == ["TUN/TAP+NAT", "VLAN"]
    node = load_profile(DATA / "v2m-node.xml")
    assert node.virtual_disks == (("scratch", Path("/var/lib/v2m/images/node1-scratch.img")),)
    assert node.cdrom == Path("/var/lib/v2m/oscar_bootcd.iso")


def test_our_profile_round_trips_and_is_schema_valid(tmp_path):
    profile = ours(tmp_path)
    write_profile(profile, tmp_path / "p.xml")
    assert load_profile(tmp_path / "p.xml") == profile
    assert oscarvt("profile", "validate", tmp_path / "p.xml").returncode == 0


@pytest.mark.parametrize("edit, message", [
    (lambda x: x.replace(b"<memory>1024</memory>", b"<memory>lots</memory>"), "'lots' is not a valid value"),
    (lambda x: x.replace(b"52:54:01:12:34:01", b"52:54:01:12:34"), "not accepted by the pattern"),
    (lambda x: x.replace(b"<type>VLAN</type>", b"<type>WIFI</type>"), "not an element of the set"),
    (lambda x: x.replace(b"<name>headnode</name>", b""), "Expected is ( name )"),
    (lambda x: x.replace(b"<boot>disk</boot>", b"<boot>disk</boot><colour>red</colour>"), "colour"),
    (lambda x: x.replace(b"</profile>", b""), "not well-formed XML"),
])
def test_broken_profile_is_one_error_line(tmp_path, edit, message):
    path = tmp_path / "broken.xml"
    path.write_bytes(edit(to_xml(ours(tmp_path))))
    result = oscarvt("profile", "validate", path)
    assert result.returncode == 1
    assert len(result.output.strip().splitlines()) == 1
    assert result.output.startswith(f"FAIL: profile validate: {path}:")
    assert message in result.output


def test_render_qemu_maps_nics_and_boot(tmp_path):
    path = tmp_path / "p.xml"
    write_profile(ours(tmp_path), path)
    result = oscarvt("profile", "render", "--backend", "qemu", path)
    assert result.returncode == 0, result.output
    argv = result.stdout
    assert "-netdev user,id=nic1,hostfwd=tcp:127.0.0.1:2222-:22" in argv
    assert "-netdev socket,id=nic2,mcast=239.255.18.52:24660,localaddr=127.0.0.1" in argv
    assert "virtio-net-pci,netdev=nic2,mac=52:54:00:12:34:01" in argv
    assert f"-kernel {tmp_path / 'vmlinuz'}" in argv


def test_render_libvirt_is_valid_under_libvirts_schema(tmp_path):
    for source in ("v2m-node.xml",):
        shutil.copy(DATA / source, tmp_path / source)
    write_profile(ours(tmp_path), tmp_path / "head.xml")
    for name in ("head.xml", "v2m-node.xml"):
        result = oscarvt("profile", "render", "--backend", "libvirt", tmp_path / name)
        assert result.returncode == 0, result.output
        domain = etree.fromstring(result.stdout.encode())
        assert etree.RelaxNG(etree.parse(str(libvirt.SCHEMA))).validate(domain)
    head = etree.fromstring(oscarvt("profile", "render", "--backend", "libvirt", tmp_path / "head.xml").stdout.encode())
    mcast = head.find("devices/interface[@type='mcast']/source")
    assert (mcast.get("address"), mcast.get("port")) == ("239.255.18.52", "24660")
    assert head.find("os/kernel").text == str(tmp_path / "vmlinuz")


def test_libvirt_check_rejects_what_libvirt_would(tmp_path):
    domain = etree.fromstring(libvirt.render_libvirt(ours(tmp_path)).encode())
    etree.SubElement(domain, "colour").text = "red"
    with pytest.raises(OscarvtError, match="breaks libvirt's schema"):
        libvirt._check(domain, "headnode")


def test_render_xen_and_its_check(tmp_path):
    write_profile(ours(tmp_path), tmp_path / "head.xml")
    result = oscarvt("profile", "render", "--backend", "xen", DATA / "v2m-node.xml")
    assert result.returncode == 0, result.output
    assert 'disk = [ "format=raw, vdev=xvda, access=rw, target=/var/lib/v2m/images/node1.img"' in result.stdout
    assert 'boot = "d"' in result.stdout
    config = xen.render_xen(ours(tmp_path))
    assert 'vif = [ "mac=52:54:01:12:34:01, script=vif-nat", "mac=52:54:00:12:34:01, bridge=oscarvt-1234" ]' in config
    with pytest.raises(OscarvtError, match="missing vcpus"):
        xen.check_xl_config(config.replace("vcpus = 2\n", ""), "headnode")
    with pytest.raises(OscarvtError, match="not KEY = VALUE"):
        xen.check_xl_config(config + "memory 512\n", "headnode")
