"""Headnode template figures as JSON: build (cold with --cold, else from the cache) and boot to SSH.

Run inside a private network namespace after ``make template`` (``make bench`` does);
``--cold`` rebuilds the template first, which needs the package registry, so run
that one outside the namespace.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import yaml

from oscarvt import log
from oscarvt.cluster import ClusterDir
from oscarvt.image import build_template
from oscarvt.phases.boot import boot_headnode
from oscarvt.phases.create import copy_vm_image
from oscarvt.teardown import destroy


def main() -> None:
    log.use_stream(sys.stderr)
    cold = "--cold" in sys.argv
    started = time.monotonic()
    template, cached = build_template(force=cold)
    build = round(time.monotonic() - started, 2)
    with tempfile.TemporaryDirectory(prefix="oscarvt-bench.") as tmp:
        root = Path(tmp)
        spec = root / "spec.yaml"
        spec.write_text(yaml.safe_dump({**template.spec_data(), "nodes": {"count": 0}, "accel": "tcg"}))
        cluster = ClusterDir(root / "c")
        try:
            copy_vm_image(cluster, spec)
            started = time.monotonic()
            boot_headnode(cluster)
            boot = round(time.monotonic() - started, 2)
        finally:
            destroy(cluster)
    print(json.dumps({
        "template_build_s": build, "template_build": "cached" if cached else "cold",
        "template_qcow2_mb": round(template.disk.stat().st_size / 1e6, 1),
        "headnode_boot_to_ssh_tcg_s": boot,
    }, indent=2))


if __name__ == "__main__":
    main()
