"""The whole pipeline's figures as JSON: `oscarvt run` with examples/oscar-mini as OSCAR.

Runs the real pipeline (template headnode, 2 blank nodes, TCG) once per boot method given
(default: cdrom) and prints each phase's seconds, OSCAR's time to the boot hook, each node's
imaging time, the whole run, and ratios to the headnode's boot (machines here are noisy:
compare ratios within one run). Run inside a private network namespace after
``make template`` (``make bench`` does).
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
from oscarvt.errors import OscarvtError
from oscarvt.image import build_template
from oscarvt.phase_table import RUN_PHASES
from oscarvt.run import run

SUITE = Path(__file__).parent.parent / "examples" / "oscar-mini"


def measure(boot: str) -> dict[str, object]:
    template, _ = build_template()
    with tempfile.TemporaryDirectory(prefix="oscarvt-bench.") as tmp:
        root = Path(tmp)
        spec = root / "spec.yaml"
        spec.write_text(yaml.safe_dump({**template.spec_data(), "nodes": {"count": 2, "memory": 384, "disk": "1G"},
                                        "accel": "tcg"}))
        cluster = ClusterDir(root / "c")
        started = time.monotonic()
        try:
            run(cluster, phases=RUN_PHASES, spec=spec, source=SUITE, boot=boot)
            ok = True
        except OscarvtError as exc:
            log.progress(f"run failed: {exc}")
            ok = False
        whole = round(time.monotonic() - started, 1)
        phases = json.loads((root / "c" / "logs" / "phases.json").read_text())
    seconds = {p["phase"]: p["seconds"] for p in phases["phases"] if "seconds" in p}  # grab-logs: still running
    head = seconds.get("boot-headnode") or 1
    return {
        "boot": boot, "passed": ok, "phase_s": seconds, "run_s_with_logs_and_destroy": whole,
        "node_imaged_after_s": {n: v.get("installed") for n, v in phases["nodes"].items()},
        "node_booted_from_disk_after_s": {n: v.get("booted") for n, v in phases["nodes"].items()},
        "ratio_run_to_headnode_boot": round(whole / head, 2),
        "ratio_oscar_to_hook_to_headnode_boot": round(seconds.get("start-oscar", 0) / head, 2),
    }


def main() -> None:
    log.use_stream(sys.stderr)
    boots = sys.argv[1:] or ["cdrom"]
    print(json.dumps([measure(boot) for boot in boots], indent=2))


if __name__ == "__main__":
    main()
