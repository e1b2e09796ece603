"""How the harness's cost grows with the cluster, as JSON lines: `oscarvt run` of oscar-mini on one host.

    bench/cluster_sizes.py [--nodes 2,8,16,32] [--memory 256] [--boot cdrom]

For each size, one run of the real pipeline (a warm bookworm amd64 headnode, TCG, nodes of
``--memory`` MiB): whether it passed, its wall seconds, the product's seconds (waiting on OSCAR and
its nodes) and the harness's (the rest: disks, boots, the checkout, starting the nodes, following
them, logs, destroy; ``oscarvt.timing``), each phase's seconds, and the harness's seconds per node
beyond the smallest run's, which is what each further node costs the harness. The last line sums up:
the ratios of each run's harness and wall seconds to the smallest run's (machines here are noisy:
compare within one run). Run inside a private network namespace after ``make template``
(``make bench`` does not run it: 1+32 nodes take a while under TCG).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from oscarvt.image import build_template

SUITE = Path(__file__).parent.parent / "examples" / "oscar-mini"


def measure(root: Path, nodes: int, memory: int, boot: str) -> dict[str, Any]:
    """One ``oscarvt run`` of 1+``nodes``; its figures."""
    build_template()  # bookworm amd64, from the cache (make template)
    spec = root / f"spec{nodes}.yaml"
    spec.write_text(yaml.safe_dump({"template": {"suite": "bookworm", "arch": "amd64"}, "accel": "tcg",
                                    "nodes": {"count": nodes, "memory": memory, "disk": "1G"}}))
    cluster = root / f"c{nodes}"
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "oscarvt", "run", "--cluster", str(cluster), "--spec", str(spec),
                           "--source", str(SUITE), "--boot", boot], capture_output=True, text=True)
    whole = round(time.monotonic() - started, 1)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    phases_file = cluster / "logs" / "phases.json"
    phases = json.loads(phases_file.read_text()) if phases_file.is_file() else {"phases": [], "share": {}}
    share = phases.get("share", {})
    return {"nodes": nodes, "memory_mib": memory, "boot": boot, "passed": proc.returncode == 0,
            "verdict": lines[-1][:300] if lines else f"exit {proc.returncode}", "run_s": whole,
            "product_s": share.get("product_seconds"), "harness_s": share.get("harness_seconds"),
            "harness_share": share.get("harness_share"),
            "phase_s": {p["phase"]: p["seconds"] for p in phases["phases"] if p.get("seconds") is not None}}


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each run's harness and wall seconds against the smallest run's, and per further node."""
    base = runs[0]
    out: dict[str, Any] = {"summary": True, "base_nodes": base["nodes"], "runs": {}}
    for run in runs:
        if not (run["passed"] and base["passed"]):
            continue
        extra = run["nodes"] - base["nodes"]
        out["runs"][str(run["nodes"])] = {
            "harness_ratio": round(run["harness_s"] / base["harness_s"], 2),
            "run_ratio": round(run["run_s"] / base["run_s"], 2),
            "harness_s_per_further_node": round((run["harness_s"] - base["harness_s"]) / extra, 2) if extra else None}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", default="2,8,16,32", help="cluster sizes, nodes beside the headnode")
    parser.add_argument("--memory", type=int, default=256, help="each node's memory in MiB")
    parser.add_argument("--boot", default="cdrom", choices=["cdrom", "network"])
    args = parser.parse_args()
    sizes = sorted(int(n) for n in args.nodes.split(","))
    runs = []
    with tempfile.TemporaryDirectory(prefix="oscarvt-sizes.") as tmp:
        for nodes in sizes:
            run = measure(Path(tmp), nodes, args.memory, args.boot)
            print(json.dumps(run), flush=True)
            runs.append(run)
    print(json.dumps(summary(runs)), flush=True)


if __name__ == "__main__":
    main()
