"""How fast a developer hears back, as JSON: issue 13's figures, all from one run on this host.

    bench/feedback.py [--builds 4] [--skip throughput]

- ``headnode``: the bookworm amd64 template's headnode booted cold (its saved state removed
  first; this boot saves a new one) and then started warm three times, to SSH: seconds each.
- ``runs``: ``oscarvt run`` of oscar-mini on 1+2 nodes (a warm headnode), from the CD and from
  the network (HTTP): seconds, and the harness's share (time not spent waiting on OSCAR and its
  nodes) from ``phases.json``; the network run's extra seconds over the CD run's, in all and in
  the two phases the boot method changes (boot-compute-nodes, wait-for-nodes).
- ``build``: the demo's build (a Buildbot master and worker here, the same 1+2 CD cluster,
  forced): seconds, the ``harness_share`` property (oscarvt's and Buildbot's seconds), and the
  harness's seconds in parts: oscarvt inside its phases, oscarvt's processes outside them, Buildbot.
- ``throughput``: ``--builds`` builds on one worker, one per builder (Buildbot collapses a builder's
  pending requests for the same sources into one build), with ``max_clusters`` 1 and then 2:
  builds per hour each and their ratio, and the memory one cluster's QEMUs held at most
  (RSS), to set a host's ``max_clusters`` from its memory; the QEMUs' CPU seconds per build and
  the cores they kept busy; the cores the whole host kept busy (QEMU, oscarvt, Buildbot, the
  kernel: ``/proc/stat``); and from each the most two clusters at once could gain on this host's
  cores (``ratio_limit_from_cpu`` from the QEMUs alone, ``ratio_limit_from_host_cpu`` from all).

Machines here are noisy: compare the ratios within one run. Run inside a private network
namespace after ``make template`` (``make bench`` does).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from oscarvt import warm
from oscarvt.backends import qemu
from oscarvt.image import build_template
from oscarvt.network import free_tcp_port
from oscarvt.waiting import wait_for
from oscarvt_dev import local
from oscarvt_master.secret_files import hashed_line

SUITE = Path(__file__).parent.parent / "examples" / "oscar-mini"
ADMIN = ("admin", "admin-password")
NODES = {"count": 2, "memory": 384, "disk": "1G"}


def oscarvt(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "oscarvt", *map(str, args)], capture_output=True, text=True)


def headnode_figures(root: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """Cold (no saved state), then warm three times: seconds from boot-headnode's start to SSH."""
    template, _ = build_template()
    for saved in warm.states_folder(template.disk).glob("*"):  # the default shape's state, made anew below
        if saved.is_dir() and warm.WarmState(saved).meta().get("shape", {}).get("memory") == 1024:
            warm.discard(warm.WarmState(saved))
    (root / "head.yaml").write_text(yaml.safe_dump({**spec, "nodes": {"count": 0}}))
    times = []
    for n in range(4):
        cluster = root / f"head{n}"
        assert oscarvt("copy-vm-image", "--cluster", cluster, "--spec", root / "head.yaml").returncode == 0
        started = time.monotonic()
        booted = oscarvt("boot-headnode", "--cluster", cluster)
        times.append(round(time.monotonic() - started, 2))
        oscarvt("destroy", "--cluster", cluster)
        assert booted.returncode == 0, booted.stdout + booted.stderr
        verdict = booted.stdout.strip().splitlines()[-1]  # "PASS: boot-headnode: headnode up (warm start in 2.1s), ..."
        assert ("(warm start" in verdict) == (n > 0), booted.stdout
    warm_median = statistics.median(times[1:])
    return {"cold_s": times[0], "warm_s": times[1:], "warm_median_s": warm_median,
            "ratio_warm_to_cold": round(warm_median / times[0], 3)}


def run_figures(root: Path, spec: dict[str, Any], boot: str) -> dict[str, Any]:
    """``oscarvt run`` of oscar-mini from ``boot``: seconds, the phases, the harness's share."""
    (root / f"{boot}.yaml").write_text(yaml.safe_dump({**spec, "nodes": NODES}))
    cluster = root / f"run-{boot}"
    started = time.monotonic()
    result = oscarvt("run", "--cluster", cluster, "--spec", root / f"{boot}.yaml", "--source", SUITE, "--boot", boot)
    whole = round(time.monotonic() - started, 1)
    phases = json.loads((cluster / "logs" / "phases.json").read_text())
    return {"boot": boot, "passed": result.returncode == 0, "run_s": whole, "verdict": result.stdout.strip()[-160:],
            "phase_s": {p["phase"]: p["seconds"] for p in phases["phases"] if p.get("seconds") is not None},
            "share_until_grab_logs": phases["share"]}


def node_phases(run: dict[str, Any]) -> float:
    """Seconds of the phases the boot method changes (the rest is the same work on either boot, and
    on this noisy host OSCAR's steps alone vary by several seconds from run to run)."""
    return sum(run["phase_s"].get(phase, 0.0) for phase in ("boot-compute-nodes", "wait-for-nodes"))


class Master:
    """A master and one worker here (``max_clusters``), ``builders`` b1, b2, ... with ``spec``; admins may force."""

    def __init__(self, root: Path, spec: dict[str, Any], max_clusters: int, builders: int = 1) -> None:
        self.root = root
        self.names = [f"b{n}" for n in range(1, builders + 1)]
        www, port = free_tcp_port(), free_tcp_port()
        repo = local.git_repo(SUITE, root / "repo")
        self.settings = {
            "title": "bench", "url": f"http://127.0.0.1:{www}/", "www_port": www, "worker_port": port,
            "logs_port": 0, "oscarvt": str(local.BIN / "oscarvt"), "admins": ["admin"], "retries": 0,
            "repositories": [{"name": "oscar", "url": str(repo), "poll_interval": 3600}],
            "workers": [{"name": "w", "max_clusters": max_clusters}],
            "builders": [{"name": name, "repository": "oscar", "workers": ["w"], "spec": spec}
                         for name in self.names]}
        local.create_master(root / "master", self.settings,
                            {"worker-w": "pw", "www-users": hashed_line(*ADMIN, rounds=4) + "\n"})
        self.pids = [local.start_master(root / "master")]
        local.create_worker(root / "worker", "w", port, "pw")
        self.pids.append(local.start_worker(root / "worker"))
        self.rest = local.Rest(str(self.settings["url"]))
        wait_for(self.rest.worker_connected, timeout=60, what="the worker", interval=0.5)

    def force(self, builder: str) -> None:
        status, reply = self.rest.rpc("forceschedulers/force", "force", {"builderNames": [builder]}, user=ADMIN)
        assert status == 200, reply

    def builds(self) -> list[dict[str, Any]]:
        return [b for name in self.names for b in self.rest.builds(name)]

    def wait_done(self, count: int, timeout: float) -> list[dict[str, Any]]:
        def done() -> list[dict[str, Any]] | None:
            found = self.builds()
            return found if len(found) >= count and all(b["complete"] for b in found) else None
        return wait_for(done, timeout=timeout, what=f"{count} builds", interval=2)

    def stop(self) -> None:
        for pid in reversed(self.pids):
            local.stop(pid)
        oscarvt("reap", "--under", self.root / "worker", "--stop-drivers")


def build_figures(root: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """The demo's build, forced: its seconds, the harness's share the Destroy step reports, and where
    the harness's seconds went (``harness_parts``)."""
    master = Master(root, {**spec, "nodes": NODES}, max_clusters=1)
    try:
        master.force("b1")
        build = master.wait_done(1, 1200)[0]
        props = master.rest.get(f"builds/{build['buildid']}/properties")["properties"][0]
        processes = process_seconds(master.rest, build)
    finally:
        master.stop()
    share = props.get("harness_share", [None])[0]
    phases = (props.get("phase_seconds") or [{}])[0]
    return {"passed": build["results"] == 0, "build_s": round(build["complete_at"] - build["started_at"], 1),
            "state_string": build["state_string"], "harness_share": share,
            "harness_parts": harness_parts(share, phases, processes) if share else None}


def process_seconds(rest: local.Rest, build: dict[str, Any]) -> dict[str, float]:
    """Each step's seconds in its worker processes, from the ``elapsedTime=`` that Buildbot writes
    at the end of a step's stdio log (a retried step ran more than one)."""
    seconds = {}
    for log in rest.step_logs(build, "stdio"):
        found = [float(value) for value in ELAPSED.findall(log["content"])]
        if found:
            seconds[log["step"]] = sum(found)
    return seconds


ELAPSED = re.compile(r"^helapsedTime=([0-9.]+)$", re.M)  # a header line ("h"): never the guest's output


def harness_parts(share: dict[str, float], phases: dict[str, Any], processes: dict[str, float]) -> dict[str, float]:
    """The build's harness seconds in three parts: oscarvt's work inside its phases; oscarvt's
    processes outside their phases (Python starting and ending; the SSH login that opens a phase
    is inside it); and Buildbot (its steps' bookkeeping, and steps that run no
    oscarvt process: checkout, spec, logs)."""
    outside = sum(processes[name] - float(phases[name]["seconds"]) for name in phases if name in processes)
    return {"oscarvt_in_phases_s": share["oscarvt_seconds"], "oscarvt_processes_outside_phases_s": round(outside, 1),
            "buildbot_s": round(share["buildbot_seconds"] - outside, 1)}


def throughput_figures(root: Path, spec: dict[str, Any], builds: int) -> dict[str, Any]:
    """Builds per hour with max_clusters 1 and 2 on one worker; one cluster's peak memory."""
    figures: dict[str, Any] = {"builds": builds, "spec_nodes": NODES}
    for clusters in (1, 2):
        (root / f"max{clusters}").mkdir()
        master = Master(root / f"max{clusters}", {**spec, "nodes": NODES}, max_clusters=clusters, builders=builds)
        peak: dict[str, int] = {}
        cpu: dict[int, float] = {}
        stop = threading.Event()
        sampler = threading.Thread(target=sample_qemus, args=(root / f"max{clusters}" / "worker", peak, cpu, stop))
        sampler.start()
        try:
            started, busy_before = time.monotonic(), host_busy_seconds()
            for name in master.names:
                master.force(name)
            done = master.wait_done(builds, 3600)
            wall, busy = time.monotonic() - started, host_busy_seconds() - busy_before
        finally:
            stop.set()
            sampler.join()
            master.stop()
        figures[f"max_clusters_{clusters}"] = {
            "passed": sum(b["results"] == 0 for b in done), "wall_s": round(wall, 1),
            "builds_per_hour": round(builds * 3600 / wall, 1),
            "cluster_peak_rss_mib": max(peak.values(), default=0) // 1024,
            "qemu_cpu_s_per_build": round(sum(cpu.values()) / builds, 1),
            "qemu_cores_busy": round(sum(cpu.values()) / wall, 2),
            "host_cpu_s_per_build": round(busy / builds, 1), "host_cores_busy": round(busy / wall, 2)}
    one = figures["max_clusters_1"]
    figures["ratio_2_to_1"] = round(figures["max_clusters_2"]["builds_per_hour"] / one["builds_per_hour"], 2)
    # One build at a time keeps N cores busy (its QEMUs, or the whole host): builds side by side can
    # go at most host_cores / N times as fast (and at most 2x with 2 clusters).
    figures["host_cores"] = cores = os.cpu_count() or 1
    for limit, busy in (("ratio_limit_from_cpu", "qemu_cores_busy"), ("ratio_limit_from_host_cpu", "host_cores_busy")):
        figures[limit] = round(min(2.0, cores / max(one[busy], 0.01)), 2)
    return figures


def host_busy_seconds() -> float:
    """CPU seconds the whole host has spent at work since it started (``/proc/stat``'s ``cpu`` line:
    user, nice, system, irq, softirq; not idle, iowait, or steal, the hypervisor's; guest time is in user)."""
    user, nice, system, _idle, _iowait, irq, softirq = map(int, Path("/proc/stat").read_text().split()[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def sample_qemus(folder: Path, peak: dict[str, int], cpu: dict[int, float], stop: threading.Event) -> None:
    """Every second, for the QEMUs under ``folder``: each cluster's RSS together (KiB), keeping its
    peak in ``peak``; and each QEMU's CPU seconds so far (user and system), in ``cpu`` by PID."""
    tick = os.sysconf("SC_CLK_TCK")
    while not stop.wait(1.0):
        now: dict[str, int] = {}
        for pid, pidfile in qemu.processes_in(folder.resolve()).items():
            try:
                rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                           if line.startswith("VmRSS:"))
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, StopIteration, ValueError, IndexError):
                continue
            cpu[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime (fields 14, 15 of stat)
            cluster = str(pidfile.parent.parent)  # CLUSTER/run/VM.pid
            now[cluster] = now.get(cluster, 0) + rss
        for cluster, rss in now.items():
            peak[cluster] = max(peak.get(cluster, 0), rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--builds", type=int, default=4, help="builds per throughput measurement")
    parser.add_argument("--skip", action="append", default=[], choices=["headnode", "runs", "build", "throughput"])
    args = parser.parse_args()
    template, _ = build_template()
    spec = {**template.spec_data(), "accel": "tcg"}
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="oscarvt-bench.") as tmp:
        root = Path(tmp)
        if "headnode" not in args.skip:
            figures["headnode"] = headnode_figures(root, spec)
            print(json.dumps({"headnode": figures["headnode"]}), file=sys.stderr, flush=True)
        if "runs" not in args.skip:
            runs = [run_figures(root, spec, boot) for boot in ("cdrom", "network")]
            figures["runs"] = runs
            figures["network_minus_cd_s"] = round(runs[1]["run_s"] - runs[0]["run_s"], 1)
            figures["network_minus_cd_node_phases_s"] = (round(node_phases(runs[1]) - node_phases(runs[0]), 1)
                                                         if all(run["passed"] for run in runs) else None)
            print(json.dumps({"runs": runs}), file=sys.stderr, flush=True)
        if "build" not in args.skip:
            (root / "build").mkdir()
            figures["build"] = build_figures(root / "build", spec)
            print(json.dumps({"build": figures["build"]}), file=sys.stderr, flush=True)
        if "throughput" not in args.skip:
            figures["throughput"] = throughput_figures(root, spec, args.builds)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
