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
from oscarvt.profile import NAT, VLAN, Nic, Profile

SCHEMA = Path("/usr/share/libvirt/schemas/domain.rng")
BOOT_DEV = {"cdrom": "cdrom", "network": "network", "disk": "hd"}


def render_libvirt(profile: Profile) -> str:
    """The domain XML for ``profile``, checked against libvirt's RelaxNG schema."""
    domain = etree.Element("domain", type="kvm" if profile.type == "Kvm" else "qemu")
    _sub(domain, "name", profile.name)
    _sub(domain, "memory", profile.memory or 512, unit="MiB")
    _sub(domain, "vcpu", profile.cpu or 1)
    arch = arches.arch(profile.arch)
    by_index = _add_os(domain, profile, arch)
    if arch.cpu is not None and profile.type != "Kvm":
        cpu = _sub(domain, "cpu", mode="custom", match="exact")
        _sub(cpu, "model", arch.cpu)
    devices = _sub(domain, "devices")
    _add_disks(devices, profile, by_index == "disk")
    if profile.cdrom is not None:
        _add_cdrom(devices, profile.cdrom, arch, by_index == "cdrom")
    _add_interfaces(devices, profile, by_index == "network")
    serial = _sub(devices, "serial", type="pty")
    _sub(serial, "target", port="0")
    rng = _sub(devices, "rng", model="virtio")
    _sub(rng, "backend", "/dev/urandom", model="random")
    _check(domain, profile.name)
    return etree.tostring(domain, pretty_print=True, encoding="unicode")


def _add_os(domain: etree._Element, profile: Profile, arch: arches.Arch) -> str | None:
    """Add ``<os>``: the machine and how it boots (a kernel, or the boot device). The boot device
    when the firmware takes it per device (``<boot order="1"/>`` on that device), else None."""
    os_element = _sub(domain, "os")
    machine = arch.machine.split(",")[0] if arch.machine else "pc"
    _sub(os_element, "type", "hvm", arch=arch.machine_name, machine=machine)
    if profile.kernel is not None:
        _sub(os_element, "kernel", profile.kernel)
        if profile.initrd is not None:
            _sub(os_element, "initrd", profile.initrd)
        if profile.append:
            _sub(os_element, "cmdline", profile.append)
        return None
    if profile.boot_device is None:
        return None
    if arch.firmware is not None:
        _sub(os_element, "loader", arch.firmware, readonly="yes", type="rom")
        return profile.boot_device
    _sub(os_element, "boot", dev=BOOT_DEV[profile.boot_device])
    return None


def _add_disks(devices: etree._Element, profile: Profile, boot: bool) -> None:
    """Add the profile's image and virtual disks on virtio (the first one first to boot if ``boot``)."""
    images = ([profile.image] if profile.image else []) + [p for _, p in profile.virtual_disks]
    for index, image in enumerate(images):
        disk = _sub(devices, "disk", type="file", device="disk")
        _sub(disk, "driver", name="qemu", type=disks.disk_format(image))
        _sub(disk, "source", file=str(image))
        _sub(disk, "target", dev=f"vd{chr(ord('a') + index)}", bus="virtio")
        if index == 0 and boot:
            _sub(disk, "boot", order=1)


def _add_cdrom(devices: etree._Element, image: Path, arch: arches.Arch, boot: bool) -> None:
    """Add the CD drive with ``image`` in it, on the arch's bus (and its SCSI controller), first to boot if ``boot``."""
    cdrom = _sub(devices, "disk", type="file", device="cdrom")
    _sub(cdrom, "driver", name="qemu", type="raw")
    _sub(cdrom, "source", file=str(image))
    scsi = arch.cdrom_bus == "scsi"
    _sub(cdrom, "target", dev="sda" if scsi else "hdc", bus=arch.cdrom_bus)
    _sub(cdrom, "readonly")
    if boot:
        _sub(cdrom, "boot", order=1)
    if scsi:
        _sub(devices, "controller", type="scsi", model="virtio-scsi")


def _add_interfaces(devices: etree._Element, profile: Profile, boot: bool) -> None:
    """Add the connected NICs as virtio interfaces (the first one first to boot if ``boot``)."""
    for number, nic in profile.connected_nics():
        interface = _add_interface(devices, profile.name, nic)
        _sub(interface, "mac", address=nic.mac)
        _sub(interface, "model", type="virtio")
        if boot and number == 1:
            _sub(interface, "boot", order=1)


def _add_interface(devices: etree._Element, name: str, nic: Nic) -> etree._Element:
    """Add the ``<interface>`` for ``nic``'s type (see above) with its source; profile ``name`` in errors."""
    if nic.type == NAT:
        return _sub(devices, "interface", type="user")
    if nic.type == VLAN:
        if nic.network is None or not nic.network.mcast:
            raise InputError(f"profile {name}: VLAN NIC names no multicast network")
        interface = _sub(devices, "interface", type="mcast")
        address, port = nic.network.mcast.rsplit(":", 1)
        _sub(interface, "source", address=address, port=port)
        return interface
    interface = _sub(devices, "interface", type="bridge")
    bridge = nic.network.bridge if nic.network and nic.network.bridge else "br0"
    _sub(interface, "source", bridge=bridge)
    if nic.network and nic.network.tap:
        _sub(interface, "target", dev=nic.network.tap)
    return interface


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
