"""copy-vm-image: a new cluster folder with profiles, an overlay of the template and blank node disks."""

from __future__ import annotations

from pathlib import Path

from oscarvt import __version__, disks, events, image, network
from oscarvt.cluster import ClusterDir
from oscarvt.errors import InputError
from oscarvt.log import progress
from oscarvt.phase_names import COPY_VM_IMAGE
from oscarvt.profile import BRIDGED_TAP, NAT, VLAN, Network, Nic, Profile, write_profile
from oscarvt.spec import ClusterSpec, load_spec, size_mb
from oscarvt.state import Bridge, ClusterState, Role, Vm

SCRATCH_MB = 64  # the disk of a headnode whose template is only a kernel (V2M requires an image)


def copy_vm_image(cluster: ClusterDir, spec: Path) -> str:
    """Create the cluster described by the spec file ``spec`` in ``cluster``; return the verdict text."""
    return _create(cluster, load_spec(spec))


def _create(cluster: ClusterDir, spec: ClusterSpec) -> str:
    if cluster.holds_cluster():  # another cluster's, even without its state
        raise InputError(f"{cluster.path}: already holds a cluster (run 'oscarvt destroy' first)")
    cluster_id = network.new_cluster_id()
    vms = _vm_records(spec, cluster_id)
    cluster.create_folders()
    cluster.save(ClusterState(cluster_id=cluster_id, spec=spec.to_dict(), vms=vms))
    with cluster.phase(COPY_VM_IMAGE) as state:
        if spec.network.private == "bridge":
            state.bridge = Bridge(spec.network.bridge or network.bridge_name(cluster_id))
        for name, vm in vms.items():
            profile = _profile(cluster, spec, cluster_id, name, vm, state.bridge)
            assert profile.image is not None
            if vm.role == "headnode" and spec.template.disk is not None:
                disks.create_overlay(spec.template.disk, profile.image)
            else:  # nodes, and a headnode from a kernel alone: both have their size in MB
                assert profile.image_size is not None
                disks.create_blank(profile.image, profile.image_size)
            write_profile(profile, cluster.profile_path(name))
        events.emit("cluster", template=_template_name(spec), oscarvt=__version__)
        lan = _lan_text(spec, cluster_id, state.bridge)
        built = f" ({spec.template.suite} template)" if spec.template.suite else ""
        progress(f"cluster {cluster_id:04x}: {spec.template.arch} headnode{built} + {spec.nodes.count} nodes, "
                 f"private LAN {lan}")
    return f"{len(vms)} profiles and disks in {cluster.path}"


def _template_name(spec: ClusterSpec) -> str:
    """The headnode's template in a word: the recipe key of one ``oscarvt image build`` made (its folder's
    name), else its disk's (or kernel's) file name."""
    t = spec.template
    built = image.template_of(t.disk) if t.disk else None
    if built is not None:
        return built.folder.name
    return (t.disk or t.kernel or Path("none")).name


def _vm_records(spec: ClusterSpec, cluster_id: int) -> dict[str, Vm]:
    def vm(role: Role, index: int) -> Vm:
        return Vm(role, index, mac=network.private_mac(cluster_id, index),
                  ip=network.private_ip(spec.network.subnet, index))
    vms = {spec.headnode.name: vm("headnode", 0)}
    for i in range(1, spec.nodes.count + 1):
        vms[f"{spec.nodes.name}{i}"] = vm("node", i)
    return vms


def _profile(cluster: ClusterDir, spec: ClusterSpec, cluster_id: int, name: str,
             vm: Vm, bridge: Bridge | None) -> Profile:
    if bridge is None:
        lan = Network(f"oscarvt-{cluster_id:04x}", mcast=network.mcast_group(cluster_id))
        private = Nic(VLAN, vm.mac, lan)
    else:
        tap = network.tap_name(cluster_id, vm.index)
        private = Nic(BRIDGED_TAP, vm.mac, Network(bridge.name, bridge=bridge.name, tap=tap))
    vm_type = "Kvm" if spec.accel == "kvm" else "Qemu"
    t = spec.template
    if vm.role == "headnode":
        built = image.template_of(t.disk) if t.disk else None
        return Profile(
            name=name, type=vm_type, cpu=spec.headnode.cpus, memory=spec.headnode.memory,
            image=cluster.disk_path(name), image_size=None if t.disk else SCRATCH_MB,
            nics=(Nic(NAT, network.NAT_MAC), private),
            arch=t.arch, boot="disk" if t.disk else None, kernel=t.kernel, initrd=t.initrd,
            append=t.append if t.kernel else None, identity=built is not None and built.identity)
    return Profile(name=name, type=vm_type, cpu=spec.nodes.cpus, memory=spec.nodes.memory,
                   image=cluster.disk_path(name), image_size=size_mb(spec.nodes.disk),
                   nics=(private,), arch=t.arch, boot=spec.nodes.boot)


def _lan_text(spec: ClusterSpec, cluster_id: int, bridge: Bridge | None) -> str:
    where = f"bridge {bridge.name}" if bridge else f"multicast {network.mcast_group(cluster_id)}"
    return f"{spec.network.subnet} on {where}"
