"""What the Buildbot layer adds, as JSON: one `oscarvt run` and one Buildbot build of the same
cluster spec and example suite, in one run (machines here are noisy: compare the ratio).

The build is started by a commit to a local git repository (GitPoller) on a master and worker
started here (oscarvt_dev.local). Run inside a private network namespace after
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
from oscarvt.image import build_template
from oscarvt.network import free_tcp_port
from oscarvt.phase_table import RUN_PHASES
from oscarvt.run import run
from oscarvt.waiting import wait_for
from oscarvt_dev import local

SUITE = Path(__file__).parent.parent / "examples" / "oscar-mini"


def main() -> None:
    log.use_stream(sys.stderr)
    template, _ = build_template()
    spec = {**template.spec_data(), "nodes": {"count": 2, "memory": 384, "disk": "1G", "boot": "cdrom"},
            "accel": "tcg"}
    with tempfile.TemporaryDirectory(prefix="oscarvt-bench.") as tmp:
        root = Path(tmp)
        (root / "spec.yaml").write_text(yaml.safe_dump(spec))
        started = time.monotonic()
        run(ClusterDir(root / "c"), phases=RUN_PHASES, spec=root / "spec.yaml", source=SUITE)
        driver = time.monotonic() - started

        repo = local.git_repo(SUITE, root / "repo")
        www, port = free_tcp_port(), free_tcp_port()
        settings = {"title": "bench", "url": f"http://127.0.0.1:{www}/", "www_port": www, "worker_port": port,
                    "logs_port": free_tcp_port(),
                    "oscarvt": str(local.BIN / "oscarvt"),
                    "repositories": [{"name": "oscar", "url": str(repo), "poll_interval": 1}],
                    "workers": [{"name": "w"}],
                    "builders": [{"name": "b", "repository": "oscar", "workers": ["w"], "spec": spec}]}
        local.create_master(root / "master", settings, {"worker-w": "pw"})
        pids = [local.start_master(root / "master")]
        try:
            local.create_worker(root / "worker", "w", port, "pw")
            pids.append(local.start_worker(root / "worker"))
            rest = local.Rest(settings["url"])
            wait_for(rest.worker_connected, timeout=60, what="the worker", interval=0.5)
            local.wait_logged(root / "master", "gitpoller: processing", times=2)
            (repo / "README.md").write_text("bench\n")
            local.git(repo, "commit", "-q", "-am", "bench")
            committed = time.monotonic()
            build = wait_for(lambda: next((b for b in rest.builds("b") if b["complete"]), None),
                             timeout=1200, what="the build", interval=1)
            from_commit = time.monotonic() - committed
            steps = rest.steps(build)
        finally:
            for pid in reversed(pids):
                local.stop(pid)
    phases = {s["name"]: round(s["complete_at"] - s["started_at"], 1) for s in steps if s["started_at"]}
    build_s = build["complete_at"] - build["started_at"]
    print(json.dumps({
        "oscarvt_run_s": round(driver, 1), "buildbot_build_s": round(build_s, 1),
        "buildbot_commit_to_done_s": round(from_commit, 1), "build_passed": build["results"] == 0,
        "ratio_build_to_run": round(build_s / driver, 3), "added_by_buildbot_s": round(build_s - driver, 1),
        "build_steps_s": phases,
    }, indent=2))


if __name__ == "__main__":
    main()
