"""The matrix's figures as JSON lines: `oscarvt run` on every cell, examples/oscar-mini as OSCAR.

    bench/matrix.py [--cells bookworm:amd64:cdrom,...] [--boots cdrom,network] [--nodes 1] [--lanes 1]

Each cell (SUITE:ARCH:BOOT) runs the real pipeline on a cluster whose headnode is this
host's template for the suite and arch (``make template`` or ``oscarvt image build`` made it),
with TCG. One JSON line per cell: suite, arch, boot, result, seconds per phase and for the
whole run. The last line sums up: the whole matrix's wall time here, with ``--lanes`` cells
at once (2: two workers' worth of clusters on this one host), and the sum of the cells' times
(what one host running one cluster at a time takes). Default cells: every template in the
cache, with each of ``--boots``. Run inside a private network namespace (``make matrix`` does).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from queue import Empty, Queue
from typing import Any

import yaml

from oscarvt.cache import cache_root

SUITE = Path(__file__).parent.parent / "examples" / "oscar-mini"


def measure(cell: tuple[str, str, str], nodes: int) -> dict[str, Any]:
    """Run one cell end to end; its figures."""
    suite, arch, boot = cell
    with tempfile.TemporaryDirectory(prefix="oscarvt-matrix.") as tmp:
        root = Path(tmp)
        spec = root / "spec.yaml"
        spec.write_text(yaml.safe_dump({"template": {"suite": suite, "arch": arch}, "accel": "tcg",
                                        "nodes": {"count": nodes, "memory": 384, "disk": "1G"}}))
        started = time.monotonic()  # a process per cell: lanes run side by side as workers would
        proc = subprocess.run([sys.executable, "-m", "oscarvt", "run", "--cluster", str(root / "c"), "--spec",
                               str(spec), "--source", str(SUITE), "--boot", boot], capture_output=True, text=True)
        whole = round(time.monotonic() - started, 1)
        lines = (proc.stdout + proc.stderr).strip().splitlines()
        result = "passed" if proc.returncode == 0 else (lines[-1] if lines else f"exit {proc.returncode}")
        phases_file = root / "c" / "logs" / "phases.json"
        phases = json.loads(phases_file.read_text()) if phases_file.is_file() else {"phases": []}
    seconds = {p["phase"]: p["seconds"] for p in phases["phases"] if "seconds" in p}
    return {"suite": suite, "arch": arch, "boot": boot, "nodes": nodes, "result": result,
            "phase_s": seconds, "run_s": whole}


def cached_cells(boots: list[str]) -> list[tuple[str, str, str]]:
    """A cell per boot method for every template this host has (``templates/SUITE-ARCH`` links)."""
    links = sorted(p.name for p in (cache_root() / "templates").glob("*-*") if p.is_symlink())
    return [(*name.rsplit("-", 1), boot) for name in links for boot in boots]  # type: ignore[misc]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", help="SUITE:ARCH:BOOT,... (default: every cached template with each --boots)")
    parser.add_argument("--boots", default="cdrom", help="cdrom,network (default: cdrom)")
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--lanes", type=int, default=1, help="cells run at once (workers' worth)")
    args = parser.parse_args()
    cells = [tuple(c.split(":")) for c in args.cells.split(",")] if args.cells else cached_cells(args.boots.split(","))
    queue: Queue[tuple[str, str, str]] = Queue()
    for cell in cells:
        queue.put(cell)  # type: ignore[arg-type]
    results: list[dict[str, Any]] = []
    lock = threading.Lock()

    def lane() -> None:
        while True:
            try:
                cell = queue.get_nowait()
            except Empty:
                return
            figures = measure(cell, args.nodes)
            with lock:
                results.append(figures)
                print(json.dumps(figures), flush=True)

    started = time.monotonic()
    lanes = [threading.Thread(target=lane) for _ in range(max(1, args.lanes))]
    for thread in lanes:
        thread.start()
    for thread in lanes:
        thread.join()
    wall = round(time.monotonic() - started, 1)
    one_host = round(sum(float(r["run_s"]) for r in results), 1)
    ratio = round(wall / one_host, 2) if one_host else None
    print(json.dumps({"matrix": len(results), "passed": sum(r["result"] == "passed" for r in results),
                      "lanes": args.lanes, "host_cores": os.cpu_count(), "wall_s": wall,
                      "sum_of_cells_s": one_host, "ratio_wall_to_sum": ratio}))


if __name__ == "__main__":
    main()
