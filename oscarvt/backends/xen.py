"""Render a V2M profile as a Xen ``xl`` configuration (HVM guest) and check it.

NIC types map to vifs: ``TUN/TAP+NAT`` -> the ``vif-nat`` script; ``VLAN`` and
``BRIDGED_TAP`` -> a bridge (the network's bridge, else a bridge named after the
network, since Xen has no multicast socket backend). xl itself needs a Xen host,
so the check here parses the output back with xl.cfg's syntax (KEY = "string" |
number | [ "list", ... ]) and checks the keys and device specs xl requires.
"""

from __future__ import annotations

import re

from oscarvt import disks
from oscarvt.errors import InputError
from oscarvt.profile import NAT, Profile

BOOT = {"cdrom": "d", "network": "n", "disk": "c"}
REQUIRED = ("name", "type", "memory", "vcpus")
_VALUE = r'"[^"\n]*"|\d+'
_LINE = re.compile(rf'^([a-z_]+)\s*=\s*({_VALUE}|\[\s*(?:"[^"\n]*"\s*,?\s*)*\])\s*$')


def render_xen(profile: Profile) -> str:
    """The xl configuration for ``profile``, checked (amd64 only: xl's HVM guests are x86)."""
    if profile.arch != "amd64":
        raise InputError(f"profile {profile.name}: the Xen back end renders HVM guests, which are amd64 only, "
                         f"not {profile.arch}")
    entries: list[tuple[str, object]] = [
        ("name", profile.name), ("type", "hvm"),
        ("memory", profile.memory or 512), ("vcpus", profile.cpu or 1),
    ]
    disk_specs = []
    images = ([profile.image] if profile.image else []) + [p for _, p in profile.virtual_disks]
    for index, image in enumerate(images):
        disk_specs.append(f"format={disks.disk_format(image)}, vdev=xvd{chr(ord('a') + index)}, "
                          f"access=rw, target={image}")
    if profile.cdrom is not None:
        disk_specs.append(f"format=raw, vdev=hdc, access=ro, devtype=cdrom, target={profile.cdrom}")
    entries.append(("disk", disk_specs))
    vifs = []
    for _, nic in profile.connected_nics():
        if nic.type == NAT:
            vifs.append(f"mac={nic.mac}, script=vif-nat")
        else:
            bridge = (nic.network.bridge or nic.network.name) if nic.network else "xenbr0"
            vifs.append(f"mac={nic.mac}, bridge={bridge}")
    entries.append(("vif", vifs))
    if profile.kernel is not None:
        entries += [("kernel", str(profile.kernel))]
        if profile.initrd is not None:
            entries.append(("ramdisk", str(profile.initrd)))
        if profile.append:
            entries.append(("cmdline", profile.append))
    elif profile.boot_device is not None:
        entries.append(("boot", BOOT[profile.boot_device]))
    entries.append(("serial", "pty"))
    text = "".join(f"{key} = {_value(value)}\n" for key, value in entries)
    check_xl_config(text, profile.name)
    return text


def check_xl_config(text: str, name: str) -> None:
    """Raise OscarvtError unless ``text`` is xl.cfg syntax with the keys and specs xl needs."""
    keys = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise InputError(f"xl config for {name}, line {number}: not KEY = VALUE: {line!r}")
        keys[match.group(1)] = match.group(2)
    missing = [key for key in REQUIRED if key not in keys]
    if missing:
        raise InputError(f"xl config for {name}: missing {', '.join(missing)}")
    for spec in re.findall(r'"([^"]*)"', keys.get("disk", "")):
        if "target=" not in spec or "vdev=" not in spec:
            raise InputError(f"xl config for {name}: disk spec without target/vdev: {spec}")
    for spec in re.findall(r'"([^"]*)"', keys.get("vif", "")):
        if not re.search(r"mac=([0-9a-f]{2}:){5}[0-9a-f]{2}", spec):
            raise InputError(f"xl config for {name}: vif without a MAC: {spec}")


def _value(value: object) -> str:
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[ " + ", ".join(_value(v) for v in value) + " ]"
    text = str(value)
    if '"' in text or "\n" in text:
        raise InputError(f"value cannot be written to an xl config: {text!r}")
    return f'"{text}"'
