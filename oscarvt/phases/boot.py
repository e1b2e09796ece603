"""boot-headnode and boot-compute-nodes: start VMs from their profiles."""

from __future__ import annotations

import ipaddress
import shlex
import time
from pathlib import Path

from oscarvt import events, network
from oscarvt.accel import choose_accel
from oscarvt.arches import arch
from oscarvt.backends import qemu
from oscarvt.cluster import ClusterDir
from oscarvt.errors import InfraError, InputError, ProductError
from oscarvt.log import progress
from oscarvt.phase_table import BOOT_COMPUTE_NODES, BOOT_HEADNODE
from oscarvt.phases.access import credentials, open_headnode
from oscarvt.profile import NAT, write_profile
from oscarvt.spec import BOOT_METHODS
from oscarvt.ssh import Connection, wait_for_ssh
from oscarvt.state import Accel, ClusterState

PORT_TRIES = 5  # QEMU starts with a new SSH port when the picked one was taken meanwhile


def boot_headnode(cluster: ClusterDir) -> str:
    """Start the headnode, wait until SSH answers, give its private NIC its address.

    The first login records the headnode's SSH host key, which every later connection requires
    (``oscarvt.phases.access``): this boot, from the cluster's own disk on a port just forwarded
    on 127.0.0.1, is the one moment the driver knows who answers.
    """
    with cluster.phase(BOOT_HEADNODE.name) as state:
        spec = cluster.spec(state)
        name = state.headnode_name()
        vm = state.vms[name]
        start_vm(cluster, state, name)
        assert vm.ssh_port is not None  # the headnode forwards SSH
        progress(f"{name}: waiting for SSH on 127.0.0.1:{vm.ssh_port} (up to {spec.timeouts.ssh}s)")
        conn = wait_for_ssh("127.0.0.1", vm.ssh_port, credentials(spec), name, spec.timeouts.ssh,
                            give_up=lambda: vm_gone(cluster, name))
        with conn:
            vm.host_key = conn.host_key
            cluster.save(state)
            progress(f"{name}: SSH answers; its host key {conn.host_key_fingerprint} is recorded")
            vm.iface = configure_private_nic(conn, vm.mac, f"{vm.ip}/{_prefix(spec.network.subnet)}")
            progress(f"{name}: private NIC {vm.iface} is {vm.ip}")
    return f"{name} up, SSH on 127.0.0.1:{vm.ssh_port}, private address {vm.ip}"


def boot_compute_nodes(cluster: ClusterDir, boot: str | None = None, iso: Path | None = None,
                       only: list[str] | None = None) -> str:
    """Start the compute nodes (all, or those in ``only``), booting from ``boot``.

    ``cdrom`` needs ``iso`` or a profile's cdrom; ``disk`` takes the CD out of the drive.
    """
    with cluster.phase(BOOT_COMPUTE_NODES.name) as state:
        spec = cluster.spec(state)
        method = boot or spec.nodes.boot
        if method not in BOOT_METHODS:
            raise InputError(f"--boot must be one of {', '.join(BOOT_METHODS)}, not {method!r}")
        if iso is not None and not iso.is_file():
            raise InputError(f"--iso: no such file {iso}")
        nodes = list(state.node_vms())
        unknown = sorted(set(only or []) - set(nodes))
        if unknown:
            raise InputError(f"--node: no compute node named {', '.join(unknown)} (nodes: {', '.join(nodes)})")
        nodes = [name for name in nodes if not only or name in only]
        if method == "cdrom" and iso is None and any(cluster.profile(n).cdrom is None for n in nodes):
            iso = fetch_boot_cd(cluster, state)
        for name in nodes:
            boot_node(cluster, state, name, method, iso)
    return f"{len(nodes)} nodes started from {method}"


def boot_node(cluster: ClusterDir, state: ClusterState, name: str, method: str, iso: Path | None) -> int:
    """Start one node from ``method``; with ``disk`` the CD is taken out of its drive."""
    profile = cluster.profile(name)
    cdrom = (iso.resolve() if iso else profile.cdrom) if method == "cdrom" else None
    if method == "cdrom" and cdrom is None:
        raise InputError("booting nodes from CD needs --iso FILE")
    write_profile(profile.with_boot(method, cdrom), cluster.profile_path(name))
    console = cluster.files(name).console
    state.vms[name].console_start = console.stat().st_size if console.exists() else 0
    state.vms[name].started = time.time()
    return start_vm(cluster, state, name)


def fetch_boot_cd(cluster: ClusterDir, state: ClusterState) -> Path:
    """Copy the autoinstall CD that OSCAR built (spec ``oscar.bootcd``) from the headnode."""
    remote = cluster.spec(state).oscar.bootcd
    with open_headnode(cluster, state) as conn:
        if conn.run(f"test -s {shlex.quote(remote)}") != 0:
            raise ProductError(f"the headnode has no boot CD at {remote} (OSCAR builds it in step 6; "
                               "or give --iso FILE)")
        progress(f"fetching the boot CD {remote} from the headnode")
        path, unpacked = conn.get(remote, cluster.path / "disks")
        if unpacked.refused or not path.is_file() or path.is_symlink():
            why = unpacked.refused[0] if unpacked.refused else "not a regular file"
            raise ProductError(f"the headnode's boot CD {remote} was refused: {why}")
        return path


def start_vm(cluster: ClusterDir, state: ClusterState, name: str) -> int:
    """Start one VM from its profile (resolving the accelerator first); record it in the state."""
    accel = ensure_accel(cluster, state)
    profile = cluster.profile(name)
    files = cluster.files(name)
    if qemu.running_pid(files) is not None:
        raise InputError(f"{name} is already running (run 'oscarvt destroy' first)")
    bridge = state.bridge
    for tap, bridge_name in qemu.tap_nics(profile):
        if bridge_name is None:
            raise InputError(f"profile {name}: tap {tap} names no bridge")
        if network.ensure_bridge(bridge_name) and bridge:
            bridge.created = True
            cluster.save(state)
        network.add_tap(tap, bridge_name)
    vm = state.vms[name]
    vm.desired = "running"
    forwards = any(nic.type == NAT for _, nic in profile.connected_nics())
    for attempt in range(1, PORT_TRIES + 1):
        if forwards:  # picked right before QEMU binds it; taken in between: pick again
            vm.ssh_port = network.free_tcp_port()
        cluster.save(state)
        try:
            pid = qemu.start(qemu.qemu_command(profile, files, accel, vm.ssh_port), files)
            break
        except qemu.PortTaken as exc:
            if attempt == PORT_TRIES:
                raise
            progress(f"{name}: port {vm.ssh_port} was taken ({exc}); trying another")
    progress(f"{name}: started (pid {pid}, {accel.upper()}), console {files.console}")
    return pid


def ensure_accel(cluster: ClusterDir, state: ClusterState) -> str:
    """The cluster's accelerator, chosen once (KVM probe) and kept in the state."""
    if state.accel is None:
        spec = cluster.spec(state)
        choice = choose_accel(spec.accel, spec.template.kernel, spec.timeouts.kvm_probe, arch(spec.template.arch))
        state.accel = Accel(choice.name, choice.reason)
        cluster.save(state)
        progress(f"accelerator: {choice.name.upper()} ({choice.reason})")
        events.emit("accel", name=choice.name, reason=choice.reason)
    return state.accel.name


def vm_gone(cluster: ClusterDir, name: str) -> str | None:
    """A reason to stop waiting for ``name`` if its QEMU process is gone."""
    if qemu.running_pid(cluster.files(name)) is None:
        return f"{name}'s QEMU process is gone (see {cluster.files(name).console})"
    return None


def configure_private_nic(conn: Connection, mac: str, address: str) -> str:
    """Find the interface with ``mac`` on the VM and give it ``address``; return its name."""
    links = conn.check_output("ip -o link")
    for line in links.splitlines():
        fields = line.split()
        if mac.lower() in line.lower() and len(fields) > 1:
            iface = fields[1].rstrip(":").split("@")[0]
            dev, quoted = shlex.quote(iface), shlex.quote(address)
            conn.check_output(f"ip link set dev {dev} up && ip addr replace {quoted} dev {dev}")
            return iface
    raise InfraError(f"{conn.label}: no interface with MAC {mac} (is nic2 on the private LAN?)")


def _prefix(subnet: str) -> int:
    return ipaddress.ip_network(subnet).prefixlen
