"""The cluster spec: a YAML file describing a virtual cluster, defaults for everything.

Example (every key optional but ``template`` and one of ``ssh.password``/``ssh.key``)::

    template:                 # or just: template: /path/headnode.qcow2
      suite: bookworm                         # a template 'oscarvt image build' made on this host:
      arch: amd64                             #   suite and arch find it (then no disk/kernel/initrd)
    template:                 # or the files themselves:
      disk: /var/cache/oscarvt/headnode.qcow2
      kernel: /var/cache/oscarvt/vmlinuz      # direct kernel boot (optional)
      initrd: /var/cache/oscarvt/initrd.img
      append: "root=/dev/vda ro console=ttyS0"   # default: console=ttyS0 (ttyAMA0 on arm64)
      arch: amd64                             # amd64 | arm64: the whole cluster's architecture
    headnode: {memory: 1024, cpus: 1}
    nodes: {count: 2, memory: 512, cpus: 1, disk: 4G, boot: cdrom, name: oscarnode}
    network: {private: mcast, subnet: 192.168.77.0/24, bridge: null}
    ssh: {user: root, password: secret}       # or key: /path/id_ecdsa
    accel: auto                               # auto | kvm | tcg
    timeouts: {ssh: 600, kvm_probe: 8, stop: 15, oscar: 1800, install: 1800, node: 600}
    oscar: {dir: /opt/oscar, domain: oscardomain, install_mode: Rsync, bootcd: /tmp/oscar_bootcd.iso}

Relative paths are taken from the spec file's folder. Unknown keys and bad
values are errors that name the file and the key. A template found by suite and arch
also gives ``ssh.key`` when the spec names no credentials (the key made beside it).
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_args, get_type_hints

import yaml

from oscarvt import arches, checks
from oscarvt.errors import InputError, OscarvtError, shown
from oscarvt.image import SUITE, find_template
from oscarvt.oscar_menus import INSTALL_MODES
from oscarvt.paths import expand_home

BOOT_METHODS = ("cdrom", "network", "disk")
SIZE = re.compile(r"([1-9][0-9]{0,15})([KMGT]?)")
REMOVED_KEYS = {"oscar.image": "OSCAR's define-clients step takes the first image it built; "
                               "name the image in a buildimage answer file (--inputs) instead"}
NAT_SUBNET = ipaddress.ip_network("10.0.2.0/24")  # QEMU user-mode networking
MAX_MEMORY = 1024 * 1024  # MiB
MAX_CPUS = 255            # QEMU's pc machine
MAX_DISK_MB = 64 * 1024 * 1024  # 64T
MAX_TIMEOUT = 7 * 24 * 3600     # seconds


@dataclass(frozen=True)
class Template:
    """What the headnode boots: a disk image, a kernel+initrd pair, or both; and the cluster's arch."""

    disk: Path | None = None
    kernel: Path | None = None
    initrd: Path | None = None
    append: str | None = None  # the kernel's command line; None: the arch's serial console only
    arch: str = arches.DEFAULT
    suite: str | None = None   # find the template built for (suite, arch) on this host instead


@dataclass(frozen=True)
class Headnode:
    memory: int = 1024
    cpus: int = 1
    name: str = "headnode"


@dataclass(frozen=True)
class Nodes:
    count: int = 2
    memory: int = 512
    cpus: int = 1
    disk: str = "4G"
    boot: str = "cdrom"
    name: str = "oscarnode"


@dataclass(frozen=True)
class Network:
    private: str = "mcast"
    subnet: str = "192.168.77.0/24"
    bridge: str | None = None


@dataclass(frozen=True)
class Ssh:
    user: str = "root"
    password: str | None = None
    key: Path | None = None


@dataclass(frozen=True)
class Oscar:
    """How the driver runs OSCAR on the headnode."""

    dir: str = "/opt/oscar"      # where checkout-oscar puts the tree (install_cluster at its top)
    domain: str = "oscardomain"  # the define-clients answers' domain name
    install_mode: str = "Rsync"  # the networking answers' installation mode (one of OSCAR's)
    bootcd: str = "/tmp/oscar_bootcd.iso"  # the autoinstall CD OSCAR's step 6 builds


@dataclass(frozen=True)
class Timeouts:
    ssh: int = 600
    kvm_probe: int = 8
    stop: int = 15
    oscar: int = 1800    # start-oscar until the boot hook; finish-oscar until OSCAR ends
    install: int = 1800  # wait-for-nodes until every node has rebooted from its disk
    node: int = 600      # a node that shows no progress for this long fails wait-for-nodes


@dataclass(frozen=True)
class ClusterSpec:
    template: Template
    headnode: Headnode = field(default_factory=Headnode)
    nodes: Nodes = field(default_factory=Nodes)
    network: Network = field(default_factory=Network)
    ssh: Ssh = field(default_factory=Ssh)
    accel: str = "auto"
    timeouts: Timeouts = field(default_factory=Timeouts)
    oscar: Oscar = field(default_factory=Oscar)

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data (paths as strings), as stored in the cluster state."""
        return {key: _plain(value) for key, value in asdict(self).items()}


def load_spec(path: Path) -> ClusterSpec:
    """Read and check a spec file; raise OscarvtError naming the file and key on any problem."""
    data = read_yaml(path, "cluster spec")
    try:
        return spec_from_dict({} if data is None else data, path.parent)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


def read_yaml(path: Path, what: str, error: type[InputError] = InputError) -> Any:
    """The YAML document in file ``path``; any problem is one ``error`` naming the file (and line).

    A key given twice in one mapping is an error (YAML would keep the last one silently).
    """
    try:
        if path.exists() and not path.is_file():  # a FIFO or a device would never end
            raise error(f"{path}: cannot read {what}: not a regular file")
        data = path.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror}") from None
    except ValueError:
        raise error(f"{path}: cannot read {what}: the name holds a NUL character") from None
    try:
        return yaml.load(data.decode("utf-8"), _UniqueKeyLoader)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise error(f"{path}: line {line} is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise error(f"{path}:{where} not valid YAML: {problem}") from None
    except RecursionError:
        raise error(f"{path}: not valid YAML: nested too deeply") from None
    except ValueError as exc:  # e.g. a number of more than 4300 digits
        raise error(f"{path}: not valid YAML: {exc}") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a mapping that gives a key twice."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"key {shown(key)} given twice",
                                                            key_node.start_mark)
                seen.add(key)
            except TypeError:  # an unhashable key: YAML's own check names it
                pass
        return super().construct_mapping(node, deep)


def spec_from_dict(data: Any, base: Path, check_files: bool = True, stored: bool = False) -> ClusterSpec:
    """Build a checked spec from parsed YAML; relative paths are resolved against ``base``.

    ``check_files=False`` skips checking that the files exist. ``stored``: a cluster's own
    stored spec, whose template found by suite and arch already names its files, and whose VMs
    must still be stoppable when the template has gone since (nothing is checked on disk).
    """
    top = checks.mapping(data, "spec")
    if "template" not in top:
        raise InputError("key 'template' is required (a qcow2 path or {disk, kernel, initrd})")
    raw_template = top["template"]
    if isinstance(raw_template, str):
        raw_template = {"disk": raw_template}
    sections = {
        "template": _section(Template, raw_template, "template"),
        "headnode": _section(Headnode, top.get("headnode", {}), "headnode"),
        "nodes": _section(Nodes, top.get("nodes", {}), "nodes"),
        "network": _section(Network, top.get("network", {}), "network"),
        "ssh": _section(Ssh, top.get("ssh", {}), "ssh"),
        "timeouts": _section(Timeouts, top.get("timeouts", {}), "timeouts"),
        "oscar": _section(Oscar, top.get("oscar", {}), "oscar"),
    }
    checks.no_unknown(top, (f.name for f in fields(ClusterSpec)), "")
    accel = checks.choice(top.get("accel", "auto"), ("auto", "kvm", "tcg"), "accel")
    spec = ClusterSpec(accel=accel, **sections)
    return _resolve_paths(_check(spec, resolved=stored), base, check_files and not stored)


def _section(cls: type, raw: Any, name: str) -> Any:
    """The section ``name`` of the spec as ``cls``: each key known, each value of its field's type."""
    values = checks.mapping(raw, name)
    hints = get_type_hints(cls)
    for key, value in values.items():
        if f"{name}.{key}" in REMOVED_KEYS:
            raise InputError(f"key '{name}.{key}' is no longer read: {REMOVED_KEYS[f'{name}.{key}']}")
        if key not in hints:
            raise InputError(f"unknown key '{name}.{key}'")
        values[key] = _typed(value, hints[key], f"{name}.{key}")
    return cls(**values)


def _typed(value: Any, hint: Any, key: str) -> Any:
    """``value`` as the field typed ``hint`` holds it: a whole number, or one line of text or a path (a
    text's None is left for the section's own checks to name)."""
    kinds = set(get_args(hint)) or {hint}
    if int in kinds:
        return checks.whole_number(value, key)
    if value is None or not kinds & {str, Path}:
        return value
    line = checks.text(value, key, numbers=True)
    return Path(line) if Path in kinds else line


def _check(spec: ClusterSpec, resolved: bool = False) -> ClusterSpec:
    """Check the values; ``resolved``: a stored spec, whose template found by suite has its files too.

    The checks run in this order and the first broken rule is the error.
    """
    spec = _check_template(spec, resolved)
    _check_ranges(spec)
    _check_node_disk(spec.nodes.disk)
    _check_host_names(spec.headnode, spec.nodes)
    checks.choice(spec.nodes.boot, BOOT_METHODS, "nodes.boot")
    _check_network(spec.network, spec.nodes.count)
    _check_oscar(spec.oscar)
    if spec.ssh.password is None and spec.ssh.key is None and spec.template.suite is None:
        raise InputError("key 'ssh' needs 'password' or 'key'")
    return spec


def _check_template(spec: ClusterSpec, resolved: bool) -> ClusterSpec:
    """Check the template keys; the spec with the arch's serial console as the kernel's command
    line when it gives none (a template found by suite brings its own)."""
    t = spec.template
    if t.suite is not None and (t.disk or t.kernel or t.initrd) and not resolved:
        raise InputError("key 'template' names a built template by 'suite' and 'arch', or its files "
                         "('disk', 'kernel', 'initrd'), not both")
    if t.suite is not None and not SUITE.fullmatch(t.suite):
        raise InputError(f"key 'template.suite' must be a Debian suite name like bookworm, not {shown(t.suite)}")
    if t.suite is None and t.disk is None and t.kernel is None:
        raise InputError("key 'template' needs 'disk' or 'kernel' (or 'suite' and 'arch')")
    if t.initrd is not None and t.kernel is None:
        raise InputError("key 'template.initrd' needs 'template.kernel'")
    checks.choice(t.arch, arches.ARCHES, "template.arch")
    if t.append is None and t.suite is None:
        return replace(spec, template=replace(t, append=f"console={arches.arch(t.arch).console}"))
    return spec


def _check_ranges(spec: ClusterSpec) -> None:
    """Check that each number (memory, CPUs, node count, timeouts) is within its bounds."""
    limits = spec.timeouts
    for key, value, low, high in [
        ("headnode.memory", spec.headnode.memory, 64, MAX_MEMORY), ("headnode.cpus", spec.headnode.cpus, 1, MAX_CPUS),
        ("nodes.memory", spec.nodes.memory, 64, MAX_MEMORY), ("nodes.cpus", spec.nodes.cpus, 1, MAX_CPUS),
        ("nodes.count", spec.nodes.count, 0, 250), ("timeouts.ssh", limits.ssh, 1, MAX_TIMEOUT),
        ("timeouts.kvm_probe", limits.kvm_probe, 1, MAX_TIMEOUT), ("timeouts.stop", limits.stop, 1, MAX_TIMEOUT),
        ("timeouts.oscar", limits.oscar, 1, MAX_TIMEOUT), ("timeouts.install", limits.install, 1, MAX_TIMEOUT),
        ("timeouts.node", limits.node, 1, MAX_TIMEOUT),
    ]:
        if value < low:
            raise InputError(f"key '{key}' must be at least {low}, not {shown(value)}")
        if value > high:
            raise InputError(f"key '{key}' must be at most {high}, not {shown(value)}")


def _check_node_disk(disk: str) -> None:
    """Check ``nodes.disk``: a size, in whole MB, at most 64T."""
    if not SIZE.fullmatch(disk):
        raise InputError(f"key 'nodes.disk' must be a size like 4G or 512M, not {shown(disk)}")
    disk_mb = size_mb(disk)
    if disk_mb is None:
        raise InputError(f"key 'nodes.disk' must be a whole number of MB (V2M sizes disks in MB), "
                           f"not {shown(disk)}")
    if disk_mb > MAX_DISK_MB:
        raise InputError(f"key 'nodes.disk' must be at most 64T, not {shown(disk)}")


def _check_host_names(headnode: Headnode, nodes: Nodes) -> None:
    """Check the host names, and that the headnode's is none of the compute nodes' (NAME1, NAME2, ...)."""
    for key, name in [("headnode.name", headnode.name), ("nodes.name", nodes.name)]:
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", name):
            raise InputError(f"key '{key}' must be a host name (a-z, 0-9, -), not {shown(name)}")
    if headnode.name in {f"{nodes.name}{i}" for i in range(1, nodes.count + 1)}:
        raise InputError(f"key 'headnode.name' {headnode.name!r} is also a compute node's name "
                         f"(nodes.name {nodes.name!r} and a number)")


def _check_network(network: Network, node_count: int) -> None:
    """Check the private network: its kind, an IPv4 subnet apart from NAT's with room for the
    nodes, and the bridge's interface name."""
    checks.choice(network.private, ("mcast", "bridge"), "network.private")
    try:
        subnet = ipaddress.ip_network(network.subnet)
    except ValueError:
        raise InputError(f"key 'network.subnet' is not an IPv4 network: {shown(network.subnet)}") from None
    if subnet.version != 4 or subnet.overlaps(NAT_SUBNET):
        raise InputError(f"key 'network.subnet' must be IPv4 and not overlap {NAT_SUBNET} (NAT)")
    if subnet.num_addresses < node_count + 3:
        raise InputError(f"key 'network.subnet' {subnet} is too small for {node_count} nodes")
    if network.bridge is not None and not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", network.bridge):
        raise InputError(f"key 'network.bridge' is not an interface name: {shown(network.bridge)}")


def _check_oscar(oscar: Oscar) -> None:
    """Check the OSCAR keys: absolute paths below / on the headnode, a domain name, an install mode."""
    for key, path in [("oscar.dir", oscar.dir), ("oscar.bootcd", oscar.bootcd)]:
        if not path.startswith("/"):
            raise InputError(f"key '{key}' must be an absolute path on the headnode, not {shown(path)}")
        if not posixpath.normpath(path).strip("/"):
            raise InputError(f"key '{key}' must name a path below /, not {shown(path)}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", oscar.domain):
        raise InputError(f"key 'oscar.domain' must be a name (letters, digits, . _ -), not {shown(oscar.domain)}")
    checks.choice(oscar.install_mode, INSTALL_MODES, "oscar.install_mode")


def size_mb(size: str) -> int | None:
    """``size`` (``4G``, ``512M``, ``1048576K``, bytes without a unit) in MB, or None if not whole MB."""
    match = SIZE.fullmatch(size)
    if match is None:
        return None
    value = int(match.group(1)) * 1024 ** " KMGT".index(match.group(2) or " ")
    return value // 1024 ** 2 if value % 1024 ** 2 == 0 else None


def _resolve_paths(spec: ClusterSpec, base: Path, check_files: bool) -> ClusterSpec:
    def resolve(value: Path | None, key: str) -> Path | None:
        if value is None:
            return None
        path = (base / expand_home(value, f"key '{key}'")).resolve()
        if check_files and not path.is_file():
            raise InputError(f"key '{key}': no such file {path}")
        return path

    if spec.template.suite is not None and check_files:
        spec = _built_template(spec)
    t = spec.template
    template = Template(resolve(t.disk, "template.disk"), resolve(t.kernel, "template.kernel"),
                        resolve(t.initrd, "template.initrd"), t.append, t.arch, t.suite)
    ssh = Ssh(spec.ssh.user, spec.ssh.password, resolve(spec.ssh.key, "ssh.key"))
    return replace(spec, template=template, ssh=ssh)


def _built_template(spec: ClusterSpec) -> ClusterSpec:
    """The spec with the files of the template built for its (suite, arch) on this host, and its key
    as ``ssh.key`` unless the spec gives credentials."""
    t = spec.template
    assert t.suite is not None
    try:
        built = find_template(t.suite, t.arch)
        append = t.append or built.append
    except OscarvtError as exc:
        raise InputError(f"key 'template': {exc}") from None
    ssh = spec.ssh
    if ssh.password is None and ssh.key is None:
        if not built.key.exists():
            raise InputError(f"key 'ssh' needs 'password' or 'key': the {t.suite} {t.arch} template "
                             f"({built.folder}) was built with your own key or password")
        ssh = replace(ssh, key=built.key)
    return replace(spec, ssh=ssh, template=Template(built.disk, built.kernel, built.initrd, append, t.arch, t.suite))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return str(value) if isinstance(value, Path) else value
