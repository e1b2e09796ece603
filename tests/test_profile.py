"""V2M profiles: what oscarvt writes is what V2M reads (checked with V2M's own DTD), profiles in V2M's
form load and boot, broken ones are one line naming the rule, back ends render and check them."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import oscarvt, spec_data, write_spec
from lxml import etree

from oscarvt import profile as profiles
from oscarvt.backends import libvirt, qemu, xen
from oscarvt.errors import OscarvtError
from oscarvt.profile import NAT, VLAN, Network, Nic, Profile, host_file, load_profile, to_xml, write_profile
from oscarvt.spec import size_mb
from oscarvt.waiting import wait_for

DATA = Path(__file__).parent / "data"
V2M_DTD = Path(__file__).resolve().parents[2] / "shared" / "reference" / "v3m_profile.dtd"  # V2M's own file


@pytest.fixture(scope="module")
def v2m_dtd() -> etree.DTD:
    if not V2M_DTD.is_file():
        pytest.skip(f"V2M's DTD is not beside this checkout ({V2M_DTD})")
    return etree.DTD(str(V2M_DTD))


def v2m_accepts(dtd: etree.DTD, path: Path) -> bool:
    """V2M's check: a DOCTYPE naming its DTD, and the file valid under that DTD."""
    tree = etree.parse(str(path), etree.XMLParser(load_dtd=False, no_network=True))
    return tree.docinfo.system_url.endswith("v3m_profile.dtd") and dtd.validate(tree)  # type: ignore[attr-defined]


def ours(tmp_path: Path) -> Profile:
    return Profile(
        name="headnode", cpu=2, memory=1024, image=tmp_path / "head.qcow2",
        nics=(Nic(NAT, "52:54:01:12:34:01"),
              Nic(VLAN, "52:54:00:12:34:01", Network("oscarvt-1234", mcast="239.255.18.52:24660"))),
        boot="disk", kernel=tmp_path / "vmlinuz", initrd=tmp_path / "initrd", append="console=ttyS0")


def test_own_dtd_declares_v2ms_grammar(v2m_dtd):
    def declarations(dtd: etree.DTD) -> dict[str, tuple[str, str, list[tuple[str, str, str]]]]:
        def model(node) -> str:
            if node is None:
                return ""
            return f"{node.type}:{node.occur}:{node.name}({model(node.left)},{model(node.right)})"
        return {e.name: (e.type, model(e.content), sorted((a.name, a.type, a.default) for a in e.iterattributes()))
                for e in dtd.iterelements()}
    assert declarations(etree.DTD(str(profiles.OWN_DTD))) == declarations(v2m_dtd)


def test_v2m_profiles_are_valid_and_read(v2m_dtd):
    for name in ("v2m-headnode.xml", "v2m-node.xml"):
        assert v2m_accepts(v2m_dtd, DATA / name)
    result = oscarvt("profile", "validate", DATA / "v2m-headnode.xml", DATA / "v2m-node.xml")
    assert result.returncode == 0, result.output
    assert result.last_line.startswith("PASS: profile validate: 2 profile(s) valid under V2M's DTD")
    head = load_profile(DATA / "v2m-headnode.xml")
    assert (head.image, head.image_size) == (Path("/var/lib/v2m/images/head.img"), 4096)
    assert [n.type for n in head.nics] == ["TUN/TAP+NAT", "VLAN"]
    assert head.nics[1].network == profiles.V2M_VLAN  # no file beside it: V2M's one LAN
    node = load_profile(DATA / "v2m-node.xml")
    assert node.image_size == 500
    assert node.virtual_disks == (("hdb", Path("/var/lib/v2m/images/node1-scratch.img")),)
    assert [(n, nic.type) for n, nic in node.connected_nics()] == [(2, "BRIDGED_TAP")]  # nic2 keeps its slot
    assert node.boot_device == "cdrom"


def test_our_profile_is_v2m_valid_and_round_trips(tmp_path, v2m_dtd):
    profile = ours(tmp_path)
    path = tmp_path / "headnode.xml"
    write_profile(profile, path)
    assert v2m_accepts(v2m_dtd, path)
    assert path.read_text().splitlines()[1] == '<!DOCTYPE profile PUBLIC "" "/etc/libv3m/v3m_profile.dtd">'
    assert json.loads(host_file(path).read_text()) == {
        "append": "console=ttyS0", "boot": "disk", "initrd": str(tmp_path / "initrd"),
        "kernel": str(tmp_path / "vmlinuz"),
        "networks": {"nic2": {"name": "oscarvt-1234", "mcast": "239.255.18.52:24660"}}}
    assert load_profile(path) == profile
    assert oscarvt("profile", "validate", path).returncode == 0


@pytest.mark.parametrize("variant", [
    {}, {"accel": "kvm"}, {"network": {"private": "bridge"}}, {"nodes": {"boot": "network", "count": 2}},
])
def test_every_profile_copy_vm_image_writes_is_v2m_valid(guest, tmp_path, v2m_dtd, variant):
    data = spec_data(guest, **variant)
    data["template"] = {"kernel": str(guest.kernel), "initrd": str(guest.initrd)}
    spec = write_spec(tmp_path / "spec.yaml", data)
    result = oscarvt("copy-vm-image", "--cluster", tmp_path / "c", "--spec", spec)
    assert result.returncode == 0, result.output
    try:
        written = sorted((tmp_path / "c" / "profiles").glob("*.xml"))
        assert len(written) == 3
        for path in written:
            assert v2m_accepts(v2m_dtd, path), path.read_text()
            profile = load_profile(path)
            assert profile.type == ("Kvm" if variant.get("accel") == "kvm" else "Qemu")
            cd = profile.with_boot("cdrom", tmp_path / "boot.iso")  # what boot-compute-nodes writes
            write_profile(cd, tmp_path / "cd.xml")
            assert v2m_accepts(v2m_dtd, tmp_path / "cd.xml")
        node = load_profile(tmp_path / "c" / "profiles" / "oscarnode1.xml")
        assert node.image_size == size_mb(data["nodes"].get("disk", "4G"))
        assert node.boot == data["nodes"].get("boot", "cdrom")
        expected = "BRIDGED_TAP" if variant.get("network") else "VLAN"
        assert node.nics[0].type == expected and node.nics[0].network is not None
    finally:
        oscarvt("destroy", "--cluster", tmp_path / "c")


@pytest.mark.parametrize("edit, message", [
    (lambda x: x.replace(b'<!DOCTYPE profile PUBLIC "" "/etc/libv3m/v3m_profile.dtd">', b""), ":1: no DOCTYPE"),
    (lambda x: x.replace(b"v3m_profile.dtd", b"other.dtd"), ":1: the DOCTYPE must name V2M's DTD"),
    (lambda x: x.replace(b'.dtd">', b'.dtd" [<!ELEMENT boot ANY>]>'), ":1: the DOCTYPE has an internal subset"),
    (lambda x: x.replace(b"</nic2>", b"</nic2><boot>disk</boot>"), "breaks V2M's DTD"),
    (lambda x: x.replace(b"</mac>\n  </nic2>", b"</mac><network name='lan'/></nic2>"), "breaks V2M's DTD"),
    (lambda x: x.replace(b"<image>", b"<cdrom>").replace(b"</image>", b"</cdrom>"), "breaks V2M's DTD"),
    (lambda x: x.replace(b"<name>headnode</name>", b""), "breaks V2M's DTD"),
    (lambda x: x.replace(b"<type>Qemu</type>", b"<type>vmware</type>"), "type 'vmware' is not one V2M knows"),
    (lambda x: x.replace(b"<image>", b'<image size="4G">'), "image size must be a whole number of MB"),
    (lambda x: x.replace(b"<memory>1024</memory>", b"<memory>lots</memory>"), "<memory> must be a whole number"),
    (lambda x: x.replace(b"52:54:01:12:34:01", b"52:54:01:12:34"), "nic1 MAC '52:54:01:12:34' is not a MAC"),
    (lambda x: x.replace(b"<type>VLAN</type>", b"<type>WIFI</type>"), "nic2 type 'WIFI' is not one V2M knows"),
    (lambda x: x.replace(b"</profile>", b""), "not well-formed XML"),
])
def test_broken_profile_is_one_line_naming_the_rule(tmp_path, edit, message):
    path = tmp_path / "broken.xml"
    path.write_bytes(edit(to_xml(ours(tmp_path))))
    result = oscarvt("profile", "validate", path)
    assert result.returncode == 2
    assert len(result.output.strip().splitlines()) == 1
    assert result.output.startswith(f"FAIL: profile validate: bad input: {path}:")
    assert message in result.output


@pytest.mark.parametrize("beside, message", [
    ("{", "not a readable JSON file"),
    ('{"colour": "red"}', "unknown key 'colour'"),
    ('{"boot": "floppy"}', "key 'boot' must be one of cdrom, network, disk"),
    ('{"networks": {"nic2": {"name": "lan", "mcast": "10.0.0.1:5"}}}', "key 'networks.nic2.mcast' must be"),
])
def test_broken_file_beside_a_profile_is_one_line(tmp_path, beside, message):
    path = tmp_path / "p.xml"
    write_profile(ours(tmp_path), path)
    host_file(path).write_text(beside)
    result = oscarvt("profile", "validate", path)
    assert (result.returncode, len(result.output.strip().splitlines())) == (2, 1)
    assert result.output.startswith(f"FAIL: profile validate: bad input: {host_file(path)}: {message}")


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
    node = oscarvt("profile", "render", "--backend", "qemu", DATA / "v2m-node.xml").stdout
    assert "-netdev tap,id=nic2,script=no,downscript=no" in node and "id=nic1" not in node
    assert "-boot order=d" in node


def test_a_comma_in_a_path_adds_no_qemu_option(tmp_path):
    folder = tmp_path / "c,readonly=off"  # e.g. --cluster, --iso: QEMU reads ',,' as a comma in a value
    files = qemu.VmFiles(pidfile=folder / "h.pid", qmp=folder / "h.qmp", console=folder / "h.log")
    profile = Profile(name="headnode", image=folder / "h.qcow2", cdrom=folder / "boot,x.iso")
    argv = qemu.qemu_command(profile, files, "tcg", None)
    quoted = str(tmp_path).replace(",", ",,")
    for option in (f"file={quoted}/c,,readonly=off/h.qcow2,if=virtio,index=0,format=qcow2",
                   f"file={quoted}/c,,readonly=off/boot,,x.iso,media=cdrom,if=ide,index=2,readonly=on",
                   f"file,id=console,path={quoted}/c,,readonly=off/h.log,append=on",
                   f"unix:{quoted}/c,,readonly=off/h.qmp,server=on,wait=off"):
        assert option in argv
    assert argv[argv.index("-pidfile") + 1] == str(folder / "h.pid")  # a plain argument: as it is


def test_render_libvirt_is_valid_under_libvirts_schema(tmp_path):
    shutil.copy(DATA / "v2m-node.xml", tmp_path / "v2m-node.xml")
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


@pytest.mark.vm
def test_a_profile_in_v2ms_form_boots_alone(tmp_path, node_iso, v2m_dtd):
    """A profile as V2M's user guide writes one (size in MB, no file beside it) boots from its CD."""
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(tmp_path / "node.img"), "500M"], check=True)
    path = tmp_path / "node.xml"
    path.write_text(f"""<?xml version="1.0"?>
<!DOCTYPE profile PUBLIC "" "/etc/libv3m/v3m_profile.dtd">
<profile>
  <name>v2mnode</name>
  <type>Qemu</type>
  <memory>256</memory>
  <image size="500">file://{tmp_path / "node.img"}</image>
  <cdrom>{node_iso}</cdrom>
  <nic1><type>VLAN</type><mac>00:0A:03:04:05:0A</mac></nic1>
</profile>
""")
    assert v2m_accepts(v2m_dtd, path)
    result = oscarvt("profile", "render", "--backend", "qemu", path)
    assert result.returncode == 0, result.output
    files = qemu.VmFiles(pidfile=tmp_path / "node.pid", qmp=tmp_path / "node.qmp",
                         console=tmp_path / "node.console.log")
    argv = shlex.split(result.stdout)
    assert "mcast=239.255.0.1:1234,localaddr=127.0.0.1" in result.stdout
    qemu.start(argv, files)
    try:
        seen = wait_for(lambda: "oscarvt-guest: eth0 00:0a:03:04:05:0a" in files.console.read_text(errors="replace")
                        or None, timeout=180, what="the V2M profile's VM to boot from its CD")
        assert seen
    finally:
        assert qemu.stop(files, timeout=10)
