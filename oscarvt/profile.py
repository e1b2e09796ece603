"""V2M profiles: the one description of each VM, read and written with lxml.

A VM lives in two files side by side:

- ``NAME.xml``, a V2M profile exactly as V2M (libv3m) reads it: a DOCTYPE naming
  ``v3m_profile.dtd``, the DTD's elements in the DTD's order (name, type, cpu, memory,
  image, virtual_disks, cdrom, nic1, nic2), the image size in MB, V2M's type names;
- ``NAME.oscarvt.json``, what V2M has no element for (optional): the architecture (amd64
  when absent), which network each NIC joins, the boot device, a kernel, initrd and
  command line for direct kernel boot, and ``identity: true`` for a headnode whose
  template waits for its identity from the driver (``oscarvt.identity``).

A profile is checked in this order, and the first broken rule is one OscarvtError naming
the file and line: well-formed XML; a DOCTYPE naming V2M's DTD; the DTD file V2M loads for
that DOCTYPE (``_dtd_file``: its system id as a path, a relative one beside the profile), then
V2M's grammar (oscarvt's copy) if that file declares another; then the values V2M checks when
it loads a profile (NIC types, MACs, VM type, compared as written) and the ones a hypervisor
needs (numbers, sizes in MB, MAC addresses, unicast MACs).

What V2M does was read in its source (repository oscar-cluster/pkgsrc, commit c6eb28ef,
folder libv3m-v2m/branches/1.0 and tools/v2m/branches/1.0; line numbers from it) and seen
running a build of it (libxml++ 2.40.1, libxml2 2.9.14) on crafted profiles; tests/test_profile.py
keeps the messages it printed.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from lxml import etree

from oscarvt import arches
from oscarvt.errors import InputError, shown
from oscarvt.spec import BOOT_METHODS

OWN_DTD = Path(__file__).parent / "schema" / "v3m_profile.dtd"
V2M_DTD = Path("/etc/libv3m/v3m_profile.dtd")  # where V2M installs its DTD
DOCTYPE = f'<!DOCTYPE profile PUBLIC "" "{V2M_DTD}">'

# V2M's type names, compared as written (no trimming: ' Qemu ' is refused): vm.cpp:14-17 and
# check_vm_type 94-104 for the VM, ProfileXMLNode.cpp:143-159 check_nic_type for NICs; the text
# is the element's text node as it is (get_node_content 338-359).
VM_TYPES = ("Qemu", "Kvm", "Xen", "XenHVM", "VMWare", "VMM-HPC")  # V2M's vm.cpp, check_vm_type
V2M_VM_TYPE_REFUSAL = "ERROR: virtualization technology ({}) not supported."  # vm.cpp:101-102
NAT = "TUN/TAP+NAT"
VLAN = "VLAN"
BRIDGED_TAP = "BRIDGED_TAP"
TUN_TAP = "TUN/TAP"
NO_NIC = ("", "N/A")  # a NIC slot V2M leaves unconnected
NIC_TYPES = (*NO_NIC, TUN_TAP, NAT, VLAN, BRIDGED_TAP)  # V2M's ProfileXMLNode.cpp, check_nic_type
V2M_NIC_TYPE_REFUSAL = "ERROR: Unknow network type ({})"  # ProfileXMLNode.cpp:157, V2M's spelling
WHOLE = re.compile(r"[0-9]{1,9}")  # a count of CPUs or MB as V2M (atoi) and a hypervisor read it
MCAST = re.compile(r"((?:[0-9]{1,3}\.){3}[0-9]{1,3}):([0-9]{1,5})")
# V2M's MAC check (ProfileXMLNode.cpp:598-617, check_mac_address): the MAC's text as written
# must not start with one of these; what V2M prints for each. It runs on both slots, N/A ones
# too, after both NIC types (load_profile_nics_info_from_node 810-838); it looks for upper case
# only and trims nothing, so V2M itself lets '03:...', 'ff:ff:ff:ff:ff:ff' or ' 01:...' through.
# (For 33: too it prints "starts by 01".)
V2M_MAC_REFUSALS = (
    ("01:", "ERROR your MAC address may be an address for multicast (starts by 01)"),
    ("33:", "ERROR your MAC address may be an address for multicast (starts by 01)"),
    ("FF:FF:FF:FF:FF:FF", "ERROR your MAC address may be an address for broadcast"),
)
BROADCAST = "ff:ff:ff:ff:ff:ff"


@dataclass(frozen=True)
class Network:
    """The network a NIC joins: a multicast group (``GROUP:PORT``) or a bridge and tap."""

    name: str
    mcast: str | None = None
    bridge: str | None = None
    tap: str | None = None


# V2M joins every VLAN NIC to one TCP socket pair on localhost:1234; a VLAN NIC with no
# network beside its profile joins this multicast group on 127.0.0.1 instead.
V2M_VLAN = Network("v2m-vlan", mcast="239.255.0.1:1234")


@dataclass(frozen=True)
class Nic:
    type: str
    mac: str
    network: Network | None = None

    @property
    def connected(self) -> bool:
        return self.type not in NO_NIC


@dataclass(frozen=True)
class Profile:
    """One VM: its V2M profile and, beside it, what V2M has no element for."""

    name: str
    type: str = "Qemu"
    cpu: int | None = None
    memory: int | None = None  # MB
    image: Path | None = None
    image_size: int | None = None  # MB, as V2M reads it
    virtual_disks: tuple[tuple[str, Path], ...] = ()
    cdrom: Path | None = None
    nics: tuple[Nic, ...] = field(default_factory=tuple)  # nic1, nic2
    # Beside the profile (NAME.oscarvt.json):
    arch: str = arches.DEFAULT
    boot: str | None = None
    kernel: Path | None = None
    initrd: Path | None = None
    append: str | None = None
    identity: bool = False  # the VM gets the driver's identity port (oscarvt.identity)

    @property
    def boot_device(self) -> str | None:
        """What the VM boots from: ``boot`` if given, else the CD if it has one, else its disk."""
        if self.boot is not None:
            return self.boot
        if self.cdrom is not None:
            return "cdrom"
        return "disk" if self.image is not None else None

    def with_boot(self, boot: str, cdrom: Path | None) -> Profile:
        """The same VM set to boot from ``boot``, with ``cdrom`` in its drive (or none)."""
        return replace(self, boot=boot, cdrom=cdrom)

    def connected_nics(self) -> list[tuple[int, Nic]]:
        """(slot number, NIC) of each NIC that is connected (type not N/A)."""
        return [(number, nic) for number, nic in enumerate(self.nics, start=1) if nic.connected]


def host_file(path: Path) -> Path:
    """The file beside profile ``path`` that holds what V2M has no element for."""
    return path.with_name(f"{path.stem}.oscarvt.json")


def to_xml(profile: Profile) -> bytes:
    """The V2M profile, with V2M's DOCTYPE and elements in the DTD's order."""
    if profile.image is None:
        raise InputError(f"profile {profile.name}: V2M requires an image")
    root = etree.Element("profile")
    _text(root, "name", profile.name)
    _text(root, "type", profile.type)
    _text(root, "cpu", profile.cpu)
    _text(root, "memory", profile.memory)
    image = _text(root, "image", profile.image)
    if profile.image_size is not None:
        image.set("size", str(profile.image_size))
    if profile.virtual_disks:
        disks = etree.SubElement(root, "virtual_disks")
        for disk_id, path in profile.virtual_disks:
            etree.SubElement(disks, "virtual_disk", id=disk_id).text = str(path)
    _text(root, "cdrom", profile.cdrom)
    for number, nic in enumerate(profile.nics, start=1):
        element = etree.SubElement(root, f"nic{number}")
        _text(element, "type", nic.type)
        _text(element, "mac", nic.mac)
    return etree.tostring(root.getroottree(), doctype=DOCTYPE, pretty_print=True,
                          xml_declaration=True, encoding="UTF-8")


def host_data(profile: Profile) -> dict[str, Any]:
    """What goes beside the profile: arch, networks, boot device, direct kernel boot (only what is set)."""
    data: dict[str, Any] = {key: str(value) for key in ("boot", "kernel", "initrd", "append")
                            if (value := getattr(profile, key)) is not None}
    if profile.arch != arches.DEFAULT:
        data["arch"] = profile.arch
    if profile.identity:
        data["identity"] = True
    networks = {f"nic{number}": {k: v for k, v in vars(nic.network).items() if v is not None}
                for number, nic in enumerate(profile.nics, start=1) if nic.network is not None}
    if networks:
        data["networks"] = networks
    return data


def write_profile(profile: Profile, path: Path) -> None:
    """Write the profile and the file beside it, checking the profile first."""
    data = to_xml(profile)
    _check_tree(etree.fromstring(data).getroottree(), path)
    _replace(path, data)
    extra = host_data(profile)
    if extra:
        _replace(host_file(path), (json.dumps(extra, indent=2, sort_keys=True) + "\n").encode())
    else:
        host_file(path).unlink(missing_ok=True)


def load_profile(path: Path) -> Profile:
    """Read and check a profile and the file beside it; any problem is one OscarvtError naming the file."""
    tree = _parse(path)
    _check_tree(tree, path)
    root = tree.getroot()
    extra = _load_host_file(host_file(path))
    networks = extra.get("networks", {})
    nics = []
    for number in (1, 2):
        element = root.find(f"nic{number}")
        if element is None:
            if number == 1 and root.find("nic2") is not None:
                nics.append(Nic("N/A", "N/A"))  # keep nic2 in its slot
            continue
        nic_type, mac = _text_of(element, "type"), _text_of(element, "mac")
        network = networks.get(f"nic{number}")
        if network is None and nic_type == VLAN:
            network = V2M_VLAN
        nics.append(Nic(nic_type, mac.lower() if nic_type not in NO_NIC else mac, network))
    size = _child(root, "image").get("size")
    return Profile(
        name=_text_of(root, "name"),
        type=_text_of(root, "type"),
        cpu=_int(root.findtext("cpu")),
        memory=_int(root.findtext("memory")),
        image=_path(root.findtext("image")),
        image_size=None if size in (None, "") else int(size),
        virtual_disks=tuple((d.get("id", ""), _path(d.text) or Path())
                            for d in root.iterfind("virtual_disks/virtual_disk")),
        cdrom=_path(root.findtext("cdrom")),
        nics=tuple(nics),
        arch=extra.get("arch", arches.DEFAULT),
        boot=extra.get("boot"),
        kernel=_path(extra.get("kernel")),
        initrd=_path(extra.get("initrd")),
        append=extra.get("append"),
        identity=extra.get("identity", False),
    )


def validate_file(path: Path) -> None:
    """Check one profile file and the file beside it (raises OscarvtError)."""
    _check_tree(_parse(path), path)
    _load_host_file(host_file(path))


def dtd_path() -> Path:
    """The DTD a profile naming V2M's installed one is checked against: that file if present, else
    oscarvt's copy (a profile naming another DTD is checked against the file it names, ``_dtd_file``)."""
    return V2M_DTD if V2M_DTD.is_file() else OWN_DTD


def _dtd_file(system_url: str, profile: Path, where: str) -> Path:
    """The file V2M reads as the DTD of ``profile``, whose DOCTYPE names ``system_url``.

    V2M parses with libxml++'s DomParser, validation on (vm.cpp:30-32, and before it the v2m tool's
    ArgumentParser.cpp:69-71), and libxml2 resolves the DOCTYPE's system id against the profile's
    own path: an absolute name is that file, a relative one (V2M's doc/example_profile_qemu.xml
    names "v3m_profile.dtd") is beside the profile, never in the working folder. Seen running V2M:
    with no such file it prints 'failed to load external entity "DIR/v3m_profile.dtd"' and
    'Validation failed: no DTD found !' and aborts (status 134), even when /etc/libv3m has one.
    The one fallback: V2M installs its DTD as /etc/libv3m/v3m_profile.dtd (Makefile.am:48-53,
    libv3m.spec:54), so on a host without V2M a profile naming that file is checked against
    oscarvt's copy of the same grammar, as V2M would check it once installed.
    """
    scheme, sep, rest = system_url.partition("://")
    if sep and (scheme.lower() != "file" or not rest.removeprefix("localhost").startswith("/")):
        raise InputError(f"{where}: the DOCTYPE names its DTD at {shown(system_url)}, which oscarvt does not "
                         f"fetch; name a file (V2M's is {V2M_DTD})")
    named = Path(unquote(rest.removeprefix("localhost")) if sep else system_url)
    file = named if named.is_absolute() else profile.parent / named
    return OWN_DTD if file == V2M_DTD and not V2M_DTD.exists() else file


def _load_dtd(file: Path, where: str) -> etree.DTD:
    """The DTD in ``file``, or an error with V2M's reason when V2M could not load it."""
    if not file.is_file():
        state = "not a regular file" if file.exists() else "no such file"
        raise InputError(f"{where}: V2M cannot load the DTD the DOCTYPE names, {file} ({state}; a relative "
                         f"name is looked up beside the profile): V2M stops with 'failed to load external "
                         f"entity \"{file}\"' and 'Validation failed: no DTD found !'")
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise InputError(f"{where}: V2M cannot load the DTD the DOCTYPE names, {file}: {exc.strerror}") from None
    if b"<!ENTITY" in data or b"\0" in data:  # nothing for libxml2 to fetch or expand
        raise InputError(f"{where}: the DTD the DOCTYPE names, {file}, declares entities or is not 8-bit "
                         f"text; V2M's has neither")
    try:
        return _dtd(data)
    except etree.DTDParseError as exc:
        first = exc.error_log[0] if len(exc.error_log) else None
        detail = f"line {first.line}: {first.message}" if first is not None else str(exc)
        raise InputError(f"{where}: the DTD the DOCTYPE names, {file}, is not a DTD: {detail}") from None


@lru_cache(maxsize=8)
def _dtd(data: bytes) -> etree.DTD:
    return etree.DTD(io.BytesIO(data))


def _parse(path: Path) -> etree._ElementTree:
    _regular_file(path, "profile")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    try:
        return etree.parse(str(path), parser)
    except OSError:
        raise InputError(f"{path}: cannot read profile") from None
    except etree.XMLSyntaxError as exc:
        raise InputError(f"{path}:{exc.lineno}: not well-formed XML: {exc.msg}") from None


def _regular_file(path: Path, what: str) -> None:
    """An error unless ``path`` is a regular file (a FIFO or a device would never end)."""
    if not path.is_file():
        raise InputError(f"{path}: cannot read {what}: {'not a regular file' if path.exists() else 'no such file'}")


def _check_tree(tree: etree._ElementTree, path: Path) -> None:
    """V2M's rules, in the order V2M meets them: DOCTYPE, DTD, then the values it reads.

    ``path``: where the profile is (or is about to be written), which a relative DTD name is beside.
    """
    where = str(path)
    info: Any = tree.docinfo  # lxml-stubs lack doctype, system_url, internalDTD
    if not info.doctype:
        raise InputError(f"{where}:1: no DOCTYPE: V2M validates every profile against its DTD "
                           f"and refuses one without (add {DOCTYPE})")
    doctype = f"{where}:{_doctype_line(tree)}"
    if info.root_name != "profile" or not (info.system_url or "").endswith("v3m_profile.dtd"):
        raise InputError(f"{doctype}: the DOCTYPE must name V2M's DTD, as in {DOCTYPE}")
    internal = info.internalDTD
    if internal is not None and (list(internal.iterelements()) or list(internal.iterentities())):
        raise InputError(f"{doctype}: the DOCTYPE has an internal subset; V2M's DTD alone defines a profile")
    named = _dtd_file(info.system_url, path, doctype)
    for dtd_file in dict.fromkeys((named, OWN_DTD)):  # what V2M checks, then V2M's grammar if it differs
        dtd: Any = _load_dtd(dtd_file, doctype)
        if not dtd.validate(tree):
            error = dtd.error_log.filter_from_errors()[0]
            other = "" if dtd_file == named else f" (the DTD the DOCTYPE names, {named}, declares another grammar)"
            raise InputError(f"{where}:{error.line}: breaks V2M's DTD ({dtd_file}): {error.message}{other}")
    _check_values(tree.getroot(), where)


def _doctype_line(tree: etree._ElementTree) -> int:
    """The DOCTYPE's line (lxml keeps none): found in the file the tree was read from, else 1."""
    url = tree.docinfo.URL
    try:
        data = Path(url).read_bytes() if url else b""
    except OSError:
        data = b""
    index = data.find(b"<!DOCTYPE")
    return data.count(b"\n", 0, index) + 1 if index >= 0 else 1


def _check_values(root: etree._Element, where: str) -> None:
    """The values V2M checks when it loads a profile and the ones a hypervisor needs, in V2M's order:
    texts and numbers, the image size, both NIC types, then both MACs, then the VM type."""
    _check_texts(root, where)
    _check_image_size(_child(root, "image"), where)
    nics = [(number, nic) for number in (1, 2) if (nic := root.find(f"nic{number}")) is not None]
    _check_nic_types(nics, where)
    _check_macs(nics, where)
    _check_vm_type(root, where)


def _broken(where: str, element: etree._Element, rule: str) -> InputError:
    """The rule ``element`` breaks, with its line."""
    return InputError(f"{where}:{element.sourceline}: {rule}")


def _check_texts(root: etree._Element, where: str) -> None:
    """Every element that holds a value has one; CPUs and memory are whole numbers above 0."""
    for element in root.iter(tag=etree.Element):
        if element.tag in ("name", "cpu", "memory", "image", "cdrom", "mac", "virtual_disk"):
            text = (element.text or "").strip()
            if not text:
                raise _broken(where, element, f"<{element.tag}> is empty")
            if element.tag in ("cpu", "memory") and not (WHOLE.fullmatch(text) and int(text) > 0):
                raise _broken(where, element, f"<{element.tag}> must be a whole number above 0, not {shown(text)}")


def _check_image_size(image: etree._Element, where: str) -> None:
    """The image's size, if given, is a whole number of MB above 0."""
    size = image.get("size")
    if size is not None and not (WHOLE.fullmatch(size) and int(size) > 0):
        raise _broken(where, image, f"image size must be a whole number of MB (V2M runs 'qemu-img create PATH "
                                    f"{{size}}M'), not {shown(size)}")


def _check_nic_types(nics: list[tuple[int, etree._Element]], where: str) -> None:
    """Each NIC's type is one V2M knows, as written."""
    for number, nic in nics:
        nic_type = _as_written(nic, "type")
        if nic_type not in NIC_TYPES:
            raise _broken(where, nic, f"nic{number} type {shown(nic_type)} is not one V2M knows "
                                      f"({', '.join(t or repr(t) for t in NIC_TYPES)})"
                                      f"{_untrimmed(nic_type, NIC_TYPES, V2M_NIC_TYPE_REFUSAL)}")


def _check_macs(nics: list[tuple[int, etree._Element]], where: str) -> None:
    """A connected NIC's MAC is a MAC address, and no NIC's MAC is one V2M or the hypervisor refuses."""
    for number, nic in nics:
        mac, connected = _as_written(nic, "mac"), _as_written(nic, "type") not in NO_NIC
        if connected and not _is_mac(mac.strip()):
            raise _broken(where, nic, f"nic{number} MAC {shown(mac.strip())} is not a MAC address "
                                      "(six hex pairs with ':')")
        refusal = _mac_refusal(mac, connected)
        if refusal:
            raise _broken(where, nic, f"nic{number} MAC {shown(mac)} {refusal}")  # as written: V2M sees spaces


def _check_vm_type(root: etree._Element, where: str) -> None:
    """The VM's type is one V2M knows, as written."""
    vm_type = _as_written(root, "type")
    if vm_type not in VM_TYPES:
        raise _broken(where, _child(root, "type"), f"type {shown(vm_type)} is not one V2M knows "
                                                   f"({', '.join(VM_TYPES)})"
                                                   f"{_untrimmed(vm_type, VM_TYPES, V2M_VM_TYPE_REFUSAL)}")


def _as_written(element: etree._Element, tag: str) -> str:
    """A child's text as V2M reads it: not trimmed (ProfileXMLNode.cpp:338-359, get_node_content)."""
    return element.findtext(tag) or ""


def _untrimmed(text: str, known: tuple[str, ...], v2m_message: str) -> str:
    """Why a name with spaces around it is refused, if it is one V2M knows once trimmed: V2M's words."""
    if text == text.strip() or text.strip() not in known:
        return ""
    quoted = text if text.isprintable() and len(text) <= 40 else shown(text)
    return f"; V2M compares it as written, spaces included: \"{v2m_message.format(quoted)}\""


def _mac_refusal(mac: str, connected: bool) -> str | None:
    """Why V2M, or the hypervisor, refuses a NIC's MAC (its text as written), or None.

    V2M's own check (V2M_MAC_REFUSALS) runs on every slot; a connected NIC's MAC must also be
    unicast, first octet even, which V2M's check only partly sees: QEMU 7.2 starts with a
    multicast MAC, but libvirt's schema refuses one (uniMacAddr, basictypes.rng) and an Ethernet
    frame's source address is never multicast.
    """
    for prefix, message in V2M_MAC_REFUSALS:
        if mac.startswith(prefix):
            kind = "the broadcast address" if prefix == V2M_MAC_REFUSALS[-1][0] else "a multicast address"
            return f"is {kind}, which V2M refuses: \"{message}\""
    address = mac.strip().lower()
    kind = "the broadcast address" if address == BROADCAST else "a multicast address"
    if connected and _is_mac(address) and int(address[:2], 16) & 1:
        return (f"is {kind} (first octet odd), which a NIC cannot have (libvirt refuses it; V2M's own "
                f"check looks only for {', '.join(prefix for prefix, _ in V2M_MAC_REFUSALS)} as written)")
    return None


def _load_host_file(path: Path) -> dict[str, Any]:
    """The file beside a profile, checked key by key; {} if there is none."""
    if not path.exists() and not path.is_symlink():
        return {}
    _regular_file(path, "the file beside the profile")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: not a readable JSON file: {exc}") from None
    except RecursionError:
        raise InputError(f"{path}: not a readable JSON file: nested too deeply") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: must be a JSON object")
    for key, value in data.items():
        if key in ("kernel", "initrd", "append") and not isinstance(value, str):
            raise InputError(f"{path}: key '{key}' must be text")
        elif key == "boot" and value not in BOOT_METHODS:
            raise InputError(f"{path}: key 'boot' must be one of {', '.join(BOOT_METHODS)}, not {shown(value)}")
        elif key == "arch" and (not isinstance(value, str) or value not in arches.ARCHES):
            raise InputError(f"{path}: key 'arch' must be one of {', '.join(arches.ARCHES)}, not {shown(value)}")
        elif key == "identity" and not isinstance(value, bool):
            raise InputError(f"{path}: key 'identity' must be true or false, not {shown(value)}")
        elif key == "networks":
            data[key] = _networks(path, value)
        elif key not in ("kernel", "initrd", "append", "boot", "arch", "identity"):
            raise InputError(f"{path}: unknown key '{key}'")
    return data


def _networks(path: Path, value: Any) -> dict[str, Network]:
    if not isinstance(value, dict) or not set(value) <= {"nic1", "nic2"}:
        raise InputError(f"{path}: key 'networks' must map nic1/nic2 to a network")
    networks = {}
    for slot, raw in value.items():
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
            raise InputError(f"{path}: key 'networks.{slot}' needs a 'name'")
        unknown = set(raw) - {"name", "mcast", "bridge", "tap"}
        if unknown or not all(isinstance(v, str) for v in raw.values()):
            raise InputError(f"{path}: key 'networks.{slot}' takes text values name, mcast, bridge, tap")
        mcast = raw.get("mcast")
        if mcast is not None and not _is_mcast(mcast):
            raise InputError(f"{path}: key 'networks.{slot}.mcast' must be GROUP:PORT with a "
                               f"multicast GROUP (224-239.x.x.x), not {shown(mcast)}")
        networks[slot] = Network(**raw)
    return networks


def _is_mac(text: str) -> bool:
    parts = text.split(":")
    return len(parts) == 6 and all(len(p) == 2 and all(c in "0123456789abcdefABCDEF" for c in p) for p in parts)


def _is_mcast(text: str) -> bool:
    match = MCAST.fullmatch(text)
    if match is None:
        return False
    octets = [int(o) for o in match.group(1).split(".")]
    return all(o < 256 for o in octets) and 224 <= octets[0] <= 239 and 0 < int(match.group(2)) < 65536


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _text(parent: etree._Element, tag: str, value: object) -> etree._Element:
    """Append ``<tag>value</tag>`` unless value is None (then return the parent)."""
    if value is None:
        return parent
    element = etree.SubElement(parent, tag)
    element.text = str(value)
    return element


def _child(element: etree._Element, tag: str) -> etree._Element:
    """A child the DTD requires (so it is there once the DTD check passed)."""
    found = element.find(tag)
    return element if found is None else found


def _text_of(element: etree._Element, tag: str) -> str:
    """Text of a child the DTD requires (so it is there once the profile is checked)."""
    return (element.findtext(tag) or "").strip()


def _path(text: str | None) -> Path | None:
    if text is None:
        return None
    text = text.strip()
    return Path(text.removeprefix("file://")) if text else None


def _int(text: str | None) -> int | None:
    return None if text is None else int(text)
