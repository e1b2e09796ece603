"""boot-headnode and boot-compute-nodes: start VMs from their profiles."""

from __future__ import annotations

import ipaddress
import re
import shlex
import shutil
import time
from pathlib import Path

from oscarvt import disks, warm
from oscarvt.access import credentials, open_headnode, reuse
from oscarvt.cluster import ClusterDir
from oscarvt.errors import InfraError, InputError, ProductError
from oscarvt.identity import DONE_TIMEOUT, IdentityChannel
from oscarvt.log import progress
from oscarvt.phase_names import BOOT_COMPUTE_NODES, BOOT_HEADNODE
from oscarvt.session import Session
from oscarvt.spec import BOOT_METHODS
from oscarvt.ssh import Connection, wait_for_ssh
from oscarvt.vms import boot_node, ensure_accel, start_vm

IFACE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}")  # a Linux interface name OSCAR's --cli takes


def boot_headnode(cluster: ClusterDir) -> str:
    """Start the headnode (warm from a saved state, or cold), wait until SSH answers, give its private
    NIC its address.

    The headnode's SSH host key is recorded here, and every later connection requires it
    (``oscarvt.access``). A headnode of a template ``oscarvt image build`` made gets its host
    key from the driver (``oscarvt.identity``), so even the first login requires it; any other
    template's key is taken at its first login, from the cluster's own disk on a port just forwarded
    on 127.0.0.1, the one moment the driver knows who answers.
    """
    with Session.phase(cluster, BOOT_HEADNODE) as session:
        spec, state = session.spec, session.state
        name = state.headnode_name()
        vm = state.vms[name]
        how, host_key = start_headnode(session, name)
        assert vm.ssh_port is not None  # the headnode forwards SSH
        progress(f"{name}: waiting for SSH on 127.0.0.1:{vm.ssh_port} (up to {spec.timeouts.ssh}s)")
        conn = wait_for_ssh("127.0.0.1", vm.ssh_port, credentials(spec), name, spec.timeouts.ssh,
                            give_up=session.vm(name).gone, host_key=host_key)
        with reuse(conn, vm.ssh_port):  # for the next phase, within reused_connections
            vm.host_key = conn.host_key
            cluster.save(state)
            given = "the one the driver gave it" if host_key else "recorded"
            progress(f"{name}: SSH answers; its host key {conn.host_key_fingerprint} is {given}")
            vm.iface = configure_private_nic(conn, vm.mac, f"{vm.ip}/{_prefix(spec.network.subnet)}")
            progress(f"{name}: private NIC {vm.iface} is {vm.ip}")
    return f"{name} up ({how}), SSH on 127.0.0.1:{vm.ssh_port}, private address {vm.ip}"


def start_headnode(session: Session, name: str) -> tuple[str, str | None]:
    """Start the headnode: restored from its template's saved state if there is one for its shape, else
    booted (and then saved for the next one); it gets its own identity either way. Says which in one line;
    returns it in a few words ("warm start in 2.1s", "cold boot") and the SSH host key the driver gave
    it (None for a template without the identity port)."""
    profile = session.profile(name)
    spec = session.spec
    if not profile.identity or spec.template.disk is None:
        start_vm(session, name)
        progress(f"{name}: cold boot (its template has no identity port: only templates made by "
                 "'oscarvt image build' start warm)")
        return "cold boot", None
    accel = ensure_accel(session)
    saved = warm.find(profile, accel, spec.template.disk)
    if saved is not None:
        started = time.monotonic()
        try:
            host_key = restore_headnode(session, name, saved)
        except InfraError as exc:
            stop_for_cold_boot(session, name, spec.template.disk, spec.timeouts.stop)
            warm.discard(saved)
            progress(f"{name}: cold boot: its saved state did not restore ({exc}); it is removed, "
                     "and this boot saves a new one")
        else:
            seconds = time.monotonic() - started
            progress(f"{name}: warm start: restored the state saved from its template in {seconds:.1f}s, "
                     "then gave it its own identity")
            return f"warm start in {seconds:.1f}s", host_key
    else:
        progress(f"{name}: cold boot: no saved state of this template for this headnode's shape yet; "
                 "this boot saves one")
    return "cold boot", cold_boot_headnode(session, name)


def restore_headnode(session: Session, name: str, saved: warm.WarmState) -> str:
    """Start the headnode from ``saved``: an overlay of its disk, its console so far, its machine state,
    then the clone's own identity; its SSH host key. InfraError if any of it fails (the caller boots cold)."""
    cluster = session.cluster
    profile = session.profile(name)
    files = cluster.files(name)
    vm = session.vm(name)
    assert profile.image is not None and files.identity is not None
    macs = saved.saved_macs(profile)
    profile.image.unlink(missing_ok=True)
    disks.create_overlay(saved.disk, profile.image)
    files.console.parent.mkdir(parents=True, exist_ok=True)
    with files.console.open("ab") as console:
        with saved.console.open("rb") as before:
            shutil.copyfileobj(before, console)
        console.write(b"\n[oscarvt] the lines above are the saved state's boot; restored from it now\n")
    with IdentityChannel(files.identity) as channel:
        start_vm(session, name, incoming=True)
        vm.load_state(saved.state, warm.RESTORE_TIMEOUT)
        vm.resume()
        saved.used()
        host_key = channel.send_identity(macs)
        channel.wait_for("done", DONE_TIMEOUT, give_up=vm.gone)
    return host_key


def cold_boot_headnode(session: Session, name: str) -> str:
    """Boot the headnode from its template's disk; once booted, save its state for warm starts (if none is
    saved for its shape yet), then give it its identity; its SSH host key."""
    cluster, state = session.cluster, session.state
    profile = session.profile(name)
    spec = session.spec
    files = cluster.files(name)
    vm = session.vm(name)
    assert files.identity is not None and spec.template.disk is not None and state.accel is not None
    started = time.monotonic()
    with IdentityChannel(files.identity) as channel:
        start_vm(session, name)
        channel.wait_for("ready", spec.timeouts.ssh, give_up=vm.gone)
        booted = time.monotonic() - started
        progress(f"{name}: booted in {booted:.1f}s")
        if warm.find(profile, state.accel.name, spec.template.disk) is None:
            try:
                saved = warm.save(files, profile, state.accel.name, spec.template.disk, booted)
                progress(f"{name}: saved its state for warm starts ({saved.folder})")
            except InfraError as exc:
                progress(f"{name}: could not save its state for warm starts: {exc}")
            finally:
                if vm.status() != "running":
                    vm.resume()
        host_key = channel.send_identity({})
        channel.wait_for("done", DONE_TIMEOUT, give_up=vm.gone)
    return host_key


def stop_for_cold_boot(session: Session, name: str, template_disk: Path, stop_timeout: float) -> None:
    """Stop a headnode whose restore failed and give it a fresh overlay of its template."""
    session.vm(name).stop(stop_timeout)
    profile = session.profile(name)
    assert profile.image is not None
    profile.image.unlink(missing_ok=True)
    disks.create_overlay(template_disk, profile.image)


def boot_compute_nodes(cluster: ClusterDir, boot: str | None = None, iso: Path | None = None,
                       only: list[str] | None = None) -> str:
    """Start the compute nodes (all, or those in ``only``), booting from ``boot``.

    ``cdrom`` needs ``iso`` or a profile's cdrom; ``disk`` takes the CD out of the drive.
    """
    with Session.phase(cluster, BOOT_COMPUTE_NODES) as session:
        spec, state = session.spec, session.state
        method = boot or spec.nodes.boot
        if method not in BOOT_METHODS:
            raise InputError(f"--boot must be one of {', '.join(BOOT_METHODS)}, not {method!r}")
        if iso is not None and not iso.is_file():
            raise InputError(f"--iso: no such file {iso}")
        nodes = list(state.node_vms())
        wanted = {state.vm_named(name) or name for name in only or []}  # a VM's name or OSCAR's for it
        unknown = sorted(wanted - set(nodes))
        if unknown:
            raise InputError(f"--node: no compute node named {', '.join(unknown)} "
                             f"(nodes: {', '.join(map(state.label, nodes))})")
        nodes = [name for name in nodes if not only or name in wanted]
        if method == "cdrom" and iso is None and any(session.profile(n).cdrom is None for n in nodes):
            iso = fetch_boot_cd(session)
        for name in nodes:
            boot_node(session, name, method, iso)
    return f"{len(nodes)} nodes started from {method}"


def fetch_boot_cd(session: Session) -> Path:
    """Copy the autoinstall CD that OSCAR built (spec ``oscar.bootcd``) from the headnode."""
    remote = session.spec.oscar.bootcd
    with open_headnode(session) as conn:
        if conn.run(f"test -s {shlex.quote(remote)}") != 0:
            raise ProductError(f"the headnode has no boot CD at {remote} (OSCAR builds it in step 6; "
                               "or give --iso FILE)")
        progress(f"fetching the boot CD {remote} from the headnode")
        path, unpacked = conn.get(remote, session.cluster.path / "disks")
        if unpacked.refused or not path.is_file() or path.is_symlink():
            why = unpacked.refused[0] if unpacked.refused else "not a regular file"
            raise ProductError(f"the headnode's boot CD {remote} was refused: {why}")
        return path


def configure_private_nic(conn: Connection, mac: str, address: str) -> str:
    """Find the interface with ``mac`` on the VM and give it ``address``, in one request; return its name."""
    said = conn.check_output(
        'for dev in /sys/class/net/*; do read -r mac 2>/dev/null <"$dev/address" || continue; '
        f'[ "$mac" = {shlex.quote(mac.lower())} ] || continue; name=${{dev##*/}}; '
        f'ip link set dev "$name" up && ip addr replace {shlex.quote(address)} dev "$name" && '
        'echo "iface=$name"; exit; done')
    found = next((line[len("iface="):] for line in reversed(said.splitlines()) if line.startswith("iface=")), None)
    if found is None:
        raise InfraError(f"{conn.label}: no interface with MAC {mac} (is nic2 on the private LAN?)")
    if not IFACE_NAME.fullmatch(found):
        raise InfraError(f"{conn.label}: the interface with MAC {mac} has a name oscarvt does not pass on: "
                         f"{found[:40]!r}")
    return found


def _prefix(subnet: str) -> int:
    return ipaddress.ip_network(subnet).prefixlen
