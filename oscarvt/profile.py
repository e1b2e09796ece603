"""V2M profiles: the one description of each VM, read and written with lxml.

A profile is checked against the XML schema shipped in ``oscarvt/schema``, which
accepts every profile V2M's DTD accepts and adds optional elements (see the
schema's header). Hypervisor back ends render profiles; they never read the spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from lxml import etree

from oscarvt.errors import OscarvtError

SCHEMA = Path(__file__).parent / "schema" / "v2m-profile.xsd"

NAT = "TUN/TAP+NAT"
VLAN = "VLAN"
BRIDGED_TAP = "BRIDGED_TAP"


@dataclass(frozen=True)
class Network:
    """The network a NIC joins: a multicast group (``GROUP:PORT``) or a bridge and tap."""

    name: str
    mcast: str | None = None
    bridge: str | None = None
    tap: str | None = None


@dataclass(frozen=True)
class Nic:
    type: str
    mac: str
    network: Network | None = None


@dataclass(frozen=True)
class Profile:
    """One VM as V2M describes it, with oscarvt's optional additions."""

    name: str
    type: str = "Qemu"
    cpu: int | None = None
    memory: int | None = None
    image: Path | None = None
    image_size: str | None = None
    virtual_disks: tuple[tuple[str, Path], ...] = ()
    cdrom: Path | None = None
    nics: tuple[Nic, ...] = field(default_factory=tuple)
    boot: str | None = None
    kernel: Path | None = None
    initrd: Path | None = None
    append: str | None = None

    @property
    def boot_device(self) -> str | None:
        """What the VM boots from: ``boot`` if given, else the CD if it has one (as V2M did), else its disk."""
        if self.boot is not None:
            return self.boot
        if self.cdrom is not None:
            return "cdrom"
        return "disk" if self.image is not None else None

    def with_boot(self, boot: str, cdrom: Path | None) -> Profile:
        """The same VM set to boot from ``boot``, with ``cdrom`` in its drive (or none)."""
        return replace(self, boot=boot, cdrom=cdrom)


def to_xml(profile: Profile) -> bytes:
    """Serialise a profile, elements in the schema's order."""
    root = etree.Element("profile")
    _text(root, "name", profile.name)
    _text(root, "type", profile.type)
    _text(root, "cpu", profile.cpu)
    _text(root, "memory", profile.memory)
    image = _text(root, "image", profile.image)
    if image is not None and profile.image_size:
        image.set("size", profile.image_size)  # V2M's own attribute
    if profile.virtual_disks:
        disks = etree.SubElement(root, "virtual_disks")
        for disk_id, path in profile.virtual_disks:
            etree.SubElement(disks, "virtual_disk", id=disk_id).text = str(path)
    _text(root, "cdrom", profile.cdrom)
    for number, nic in enumerate(profile.nics, start=1):
        element = etree.SubElement(root, f"nic{number}")
        _text(element, "type", nic.type)
        _text(element, "mac", nic.mac)
        if nic.network is not None:
            net = etree.SubElement(element, "network", name=nic.network.name)
            for attr in ("mcast", "bridge", "tap"):
                if getattr(nic.network, attr):
                    net.set(attr, getattr(nic.network, attr))
    for tag in ("boot", "kernel", "initrd", "append"):
        _text(root, tag, getattr(profile, tag))
    return etree.tostring(root, pretty_print=True, xml_declaration=True, encoding="UTF-8")


def write_profile(profile: Profile, path: Path) -> None:
    """Write a profile file, checking it against the schema first."""
    data = to_xml(profile)
    _validate(etree.fromstring(data).getroottree(), str(path))
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def load_profile(path: Path) -> Profile:
    """Read and check a profile file; any problem is one OscarvtError naming the file."""
    tree = _parse(path)
    _validate(tree, str(path))
    root = tree.getroot()
    nics = []
    for number in (1, 2):
        element = root.find(f"nic{number}")
        if element is not None:
            net = element.find("network")
            network = None if net is None else Network(
                net.get("name", ""), net.get("mcast"), net.get("bridge"), net.get("tap"))
            nics.append(Nic(_required(element, "type"), _required(element, "mac").lower(), network))
    image = root.find("image")
    return Profile(
        name=_required(root, "name"),
        type=_required(root, "type"),
        cpu=_int(root.findtext("cpu")),
        memory=_int(root.findtext("memory")),
        image=_path(root.findtext("image")),
        image_size=None if image is None else image.get("size"),
        virtual_disks=tuple((d.get("id", ""), Path(_required(d, ".").removeprefix("file://")))
                            for d in root.iterfind("virtual_disks/virtual_disk")),
        cdrom=_path(root.findtext("cdrom")),
        nics=tuple(nics),
        boot=root.findtext("boot"),
        kernel=_path(root.findtext("kernel")),
        initrd=_path(root.findtext("initrd")),
        append=root.findtext("append"),
    )


def validate_file(path: Path) -> None:
    """Check one profile file against the schema (raises OscarvtError)."""
    _validate(_parse(path), str(path))


@lru_cache(maxsize=1)
def _schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SCHEMA)))


def _parse(path: Path) -> etree._ElementTree:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    try:
        return etree.parse(str(path), parser)
    except OSError:
        raise OscarvtError(f"{path}: cannot read profile") from None
    except etree.XMLSyntaxError as exc:
        raise OscarvtError(f"{path}:{exc.lineno}: not well-formed XML: {exc.msg}") from None


def _validate(tree: etree._ElementTree, where: str) -> None:
    schema = _schema()
    if not schema.validate(tree):
        error = schema.error_log[0]  # type: ignore[index]  # the first problem, as xmllint shows it
        raise OscarvtError(f"{where}:{error.line}: not a valid V2M profile: {error.message}")


def _text(parent: etree._Element, tag: str, value: object) -> etree._Element | None:
    """Append ``<tag>value</tag>`` unless value is None."""
    if value is None:
        return None
    element = etree.SubElement(parent, tag)
    element.text = str(value)
    return element


def _required(element: etree._Element, tag: str) -> str:
    """Text of a child the schema requires (so it is there once the profile validated)."""
    text = element.findtext(tag) if tag != "." else element.text
    if text is None:
        raise OscarvtError(f"profile lacks <{tag}>")
    return text.strip()


def _path(text: str | None) -> Path | None:
    if text is None:
        return None
    text = text.strip()
    return Path(text.removeprefix("file://")) if text else None


def _int(text: str | None) -> int | None:
    return None if text is None else int(text)
