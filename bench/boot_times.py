"""Boot times of the test guest and of a 1+2 cluster under this host's accelerator, as JSON.

Run inside a private network namespace (``make bench`` does). Every figure comes
from one run on one machine; compare the ratios, which hold better than the
absolute seconds on a noisy host.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import yaml

from oscarvt import log
from oscarvt.access import open_vm
from oscarvt.cluster import ClusterDir
from oscarvt.phases.boot import boot_compute_nodes, boot_headnode
from oscarvt.phases.create import copy_vm_image
from oscarvt.teardown import destroy
from oscarvt_dev.ping import wait_pingable
from oscarvt_dev.testguest import build_test_guest

LAN = "192.168.77"


def timed(function, *args):  # type: ignore[no-untyped-def]
    started = time.monotonic()
    function(*args)
    return round(time.monotonic() - started, 2)


def main() -> None:
    log.use_stream(sys.stderr)
    started = time.monotonic()
    guest = build_test_guest()
    build = round(time.monotonic() - started, 2)
    with tempfile.TemporaryDirectory(prefix="oscarvt-bench.") as tmp:
        root = Path(tmp)
        iso = guest.build_iso(root / "node.iso", f"oscarvt.lan={LAN}")
        spec = root / "spec.yaml"
        spec.write_text(yaml.safe_dump({
            "template": {"kernel": str(guest.kernel), "initrd": str(guest.initrd), "append": "console=ttyS0 quiet"},
            "headnode": {"memory": 256}, "nodes": {"count": 2, "memory": 256, "disk": "64M"},
            "network": {"subnet": f"{LAN}.0/24"}, "ssh": {"password": guest.password}, "accel": "auto",
            "timeouts": {"kvm_probe": 4}}))
        cluster = ClusterDir(root / "c")
        try:
            create = timed(copy_vm_image, cluster, spec)
            headnode = timed(boot_headnode, cluster)
            nodes_started = time.monotonic()
            boot_compute_nodes(cluster, "cdrom", iso)
            conn, opened = open_vm(cluster, cluster.load(), "headnode")
            try:
                wait_pingable(conn, [f"{LAN}.2", f"{LAN}.3"], timeout=300)
            finally:
                for c in opened:
                    c.close()
            nodes = round(time.monotonic() - nodes_started, 2)
            accel = cluster.load().accel
            assert accel is not None
        finally:
            teardown = timed(destroy, cluster)
    print(json.dumps({
        "accel": accel.name, "accel_reason": accel.reason,
        "test_guest_build_or_cache_s": build,
        "copy_vm_image_s": create,
        "boot_headnode_to_ssh_s": headnode,
        "nodes_cd_boot_to_ping_s": nodes,
        "cluster_up_s": round(create + headnode + nodes, 2),
        "destroy_s": teardown,
        "ratio_cluster_up_to_headnode_boot": round((create + headnode + nodes) / headnode, 2),
    }, indent=2))


if __name__ == "__main__":
    main()
