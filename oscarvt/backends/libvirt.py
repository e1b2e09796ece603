"""Render a V2M profile as a libvirt domain (XML) and check it against libvirt's own schema.

NIC types map to libvirt interfaces: ``TUN/TAP+NAT`` -> ``user``, ``VLAN`` ->
``mcast`` (the profile's group and port), ``BRIDGED_TAP``/``TUN/TAP`` -> ``bridge``.
The schema is the one Debian's libvirt0 package installs. An arm64 profile becomes an
``aarch64`` domain on the ``virt`` machine with the UEFI firmware as its loader; the boot
device is then given per device (``<boot order="1"/>``, QEMU's bootindex), the CD on SCSI.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from lxml import etree

from oscarvt import arches, disks
from oscarvt.errors import InfraError, InputError
from oscarvt.profile import NAT, VLAN, Profile

SCHEMA = Path("/usr/share/libvirt/schemas/domain.rng")
BOOT_DEV = {"cdrom": "cdrom", "network": "network", "disk": "hd"}


def render_libvirt(profile: Profile) -> str:
    """The domain XML for ``profile``, checked against libvirt's RelaxNG schema."""
    domain = etree.Element("domain", type="kvm" if profile.type == "Kvm" else "qemu")
    _sub(domain, "name", profile.name)
    _sub(domain, "memory", profile.memory or 512, unit="MiB")
    _sub(domain, "vcpu", profile.cpu or 1)
    arch = arches.arch(profile.arch)
    os_element = _sub(domain, "os")
    machine = arch.machine.split(",")[0] if arch.machine else "pc"
    _sub(os_element, "type", "hvm", arch=arch.machine_name, machine=machine)
    by_index = None
    if profile.kernel is not None:
        _sub(os_element, "kernel", profile.kernel)
        if profile.initrd is not None:
            _sub(os_element, "initrd", profile.initrd)
        if profile.append:
            _sub(os_element, "cmdline", profile.append)
    elif profile.boot_device is not None:
        if arch.firmware is not None:
            _sub(os_element, "loader", arch.firmware, readonly="yes", type="rom")
            by_index = profile.boot_device
        else:
            _sub(os_element, "boot", dev=BOOT_DEV[profile.boot_device])
    if arch.cpu is not None and profile.type != "Kvm":
        cpu = _sub(domain, "cpu", mode="custom", match="exact")
        _sub(cpu, "model", arch.cpu)
    devices = _sub(domain, "devices")
    images = ([profile.image] if profile.image else []) + [p for _, p in profile.virtual_disks]
    for index, image in enumerate(images):
        disk = _sub(devices, "disk", type="file", device="disk")
        _sub(disk, "driver", name="qemu", type=disks.disk_format(image))
        _sub(disk, "source", file=str(image))
        _sub(disk, "target", dev=f"vd{chr(ord('a') + index)}", bus="virtio")
        if index == 0 and by_index == "disk":
            _sub(disk, "boot", order=1)
    if profile.cdrom is not None:
        cdrom = _sub(devices, "disk", type="file", device="cdrom")
        _sub(cdrom, "driver", name="qemu", type="raw")
        _sub(cdrom, "source", file=str(profile.cdrom))
        scsi = arch.cdrom_bus == "scsi"
        _sub(cdrom, "target", dev="sda" if scsi else "hdc", bus=arch.cdrom_bus)
        _sub(cdrom, "readonly")
        if by_index == "cdrom":
            _sub(cdrom, "boot", order=1)
        if scsi:
            _sub(devices, "controller", type="scsi", model="virtio-scsi")
    for number, nic in profile.connected_nics():
        if nic.type == NAT:
            interface = _sub(devices, "interface", type="user")
        elif nic.type == VLAN:
            if nic.network is None or not nic.network.mcast:
                raise InputError(f"profile {profile.name}: VLAN NIC names no multicast network")
            interface = _sub(devices, "interface", type="mcast")
            address, port = nic.network.mcast.rsplit(":", 1)
            _sub(interface, "source", address=address, port=port)
        else:
            interface = _sub(devices, "interface", type="bridge")
            bridge = nic.network.bridge if nic.network and nic.network.bridge else "br0"
            _sub(interface, "source", bridge=bridge)
            if nic.network and nic.network.tap:
                _sub(interface, "target", dev=nic.network.tap)
        _sub(interface, "mac", address=nic.mac)
        _sub(interface, "model", type="virtio")
        if by_index == "network" and number == 1:
            _sub(interface, "boot", order=1)
    serial = _sub(devices, "serial", type="pty")
    _sub(serial, "target", port="0")
    rng = _sub(devices, "rng", model="virtio")
    _sub(rng, "backend", "/dev/urandom", model="random")
    _check(domain, profile.name)
    return etree.tostring(domain, pretty_print=True, encoding="unicode")


@lru_cache(maxsize=1)
def _schema() -> etree.RelaxNG:
    return etree.RelaxNG(etree.parse(str(SCHEMA)))


def _check(domain: etree._Element, name: str) -> None:
    if not SCHEMA.exists():
        raise InfraError(f"cannot check the libvirt domain: {SCHEMA} is missing (Debian package libvirt0)")
    schema = _schema()
    if not schema.validate(domain):
        raise InputError(f"libvirt domain for {name} breaks libvirt's schema: {schema.error_log.last_error}")


def _sub(parent: etree._Element, tag: str, text: object = None, **attrs: str | int) -> etree._Element:
    element = etree.SubElement(parent, tag, {k: str(v) for k, v in attrs.items()})
    if text is not None:
        element.text = str(text)
    return element
