"""Retention: with a tiny ``log_horizon``, the janitor of a real master (and a real worker) removes an
old build's step logs and uploaded logs and keeps a new build's; pruning never follows a link."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from buildbot.configurators.janitor import JANITOR_NAME
from conftest import qemu_pids_of
from test_master import example
from test_master_boundaries import ADMIN, Running

from oscarvt.waiting import wait_for
from oscarvt_dev import local
from oscarvt_master.retention import is_build_folder, prune
from oscarvt_master.secret_files import hashed_line
from oscarvt_master.settings import HORIZONS

ROOT = Path(__file__).parent.parent
HORIZON = 40  # seconds: log_horizon of the test's master


def test_pruning_removes_old_builds_folders_and_links_without_following_them(tmp_path):
    logs, outside = tmp_path / "logs", tmp_path / "outside"
    (outside / "keep").mkdir(parents=True)
    (outside / "keep" / "file").write_text("not the janitor's")
    old, new = logs / "b1" / "1", logs / "b1" / "2"
    (old / "consoles").mkdir(parents=True)
    (old / "consoles" / "headnode.log").write_text("old")
    (old / "consoles" / "escape").symlink_to(outside / "keep")  # a link inside an old build's folder
    new.mkdir()
    (logs / "b1" / "3").symlink_to(outside)  # a build "folder" that is a link
    (logs / "b2").symlink_to(outside)  # a builder "folder" that is a link: not a builder's logs
    (logs / "b3" / "7").mkdir(parents=True)
    (logs / "b1" / "trend.png").write_bytes(b"\x89PNG")  # the builder's picture: not a build, never pruned
    long_ago = time.time() - 3600
    for path in (old, logs / "b1" / "3", logs / "b2", logs / "b3" / "7", logs / "b1" / "trend.png"):
        os.utime(path, (long_ago, long_ago), follow_symlinks=False)
    assert shutil.rmtree.avoids_symlink_attacks  # rmtree never follows a link inside what it removes
    assert prune(logs, time.time() - 600) == (3, 1)
    assert sorted(p.relative_to(logs).as_posix() for p in logs.rglob("*")) == ["b1", "b1/2", "b1/trend.png", "b2", "b3"]
    assert (outside / "keep" / "file").read_text() == "not the janitor's"  # nothing behind a link went
    assert prune(tmp_path / "no-such-folder", time.time()) == (0, 0)
    assert HORIZONS[0].total_seconds() <= HORIZON  # the test's horizon is one the settings take


class Farm(Running):
    """A running master and worker whose builder b1 fails fast: its template's kernel is no kernel, so QEMU
    stops at once in boot-headnode (no guest boots); grab-logs still collects the cluster's logs."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.rest = local.Rest(self.url)
        self.pids: list[int] = []

    def force(self, builder: str, scheduler: str = "force") -> dict[str, Any]:
        """Force a build of ``builder`` as the admin; the build once it is complete."""
        count = len(self.rest.builds(builder))
        status, reply = self.rest.rpc(f"forceschedulers/{scheduler}", "force", {"builderNames": [builder]}, user=ADMIN)
        assert status == 200, reply

        def complete() -> dict[str, Any] | None:
            builds = self.rest.builds(builder)
            return builds[count] if len(builds) > count and builds[count]["complete"] else None
        return wait_for(complete, timeout=300, what=f"the forced build of {builder}", interval=1)


@pytest.fixture(scope="module")
def farm(tmp_path_factory) -> Any:
    root = tmp_path_factory.mktemp("retention")
    running = Farm(root)
    repo = local.git_repo(ROOT / "examples" / "oscar-mini", root / "repo")
    settings = {**example(), "url": running.url, "www_port": running.www, "worker_port": running.worker,
                "logs_port": running.logs, "mail": None, "oscarvt": str(local.BIN / "oscarvt"),
                "log_horizon": f"{HORIZON}s", "build_data_horizon": "30d", "retries": 0}
    settings["repositories"] = [{"name": "oscar", "url": str(repo), "poll_interval": 3600}]
    settings["workers"] = [{"name": "hv1"}]
    del settings["matrix"]
    (root / "vmlinuz").write_bytes(b"not a kernel")
    spec = {"template": {"kernel": str(root / "vmlinuz")}, "ssh": {"password": "x"}, "accel": "tcg",
            "headnode": {"memory": 128}, "nodes": {"memory": 128, "disk": "64M"}, "timeouts": {"ssh": 5}}
    settings["builders"] = [{"name": "b1", "repository": "oscar", "workers": ["hv1"], "nodes": 1, "spec": spec}]
    local.create_master(root / "master", settings,
                        {"worker-hv1": "worker-password", "www-users": hashed_line(*ADMIN, rounds=4) + "\n"})
    try:
        running.pids.append(local.start_master(root / "master"))
        local.create_worker(root / "worker", "hv1", running.worker, "worker-password")
        running.pids.append(local.start_worker(root / "worker"))
        wait_for(lambda: True if all(w["connected_to"] for w in running.rest.get("workers")["workers"]
                                     if w["name"] == "hv1") else None, timeout=60, what="the worker to connect")
        yield running
    finally:
        for pid in reversed(running.pids):
            local.stop(pid)


@pytest.mark.vm  # it listens on ports: inside the test command's network namespace (no VM boots)
def test_the_janitor_removes_old_logs_and_keeps_new_ones(farm):
    old = farm.force("b1")
    steps = {s["name"]: s for s in farm.rest.steps(old)}
    assert steps["boot-headnode"]["state_string"].startswith("failed: "), steps["boot-headnode"]  # no guest booted
    assert steps["upload-logs"]["results"] == 0
    uploaded = farm.root / "master" / "public_html" / "logs" / "b1"
    assert (uploaded / str(old["number"])).is_dir()
    assert any(log["content"] for log in farm.rest.step_logs(old))
    last_start = max(s["started_at"] for s in farm.rest.steps(old))
    time.sleep(max(0.0, last_start + HORIZON + 2 - time.time()))  # every step of the old build is past the horizon
    new = farm.force("b1")
    janitor = farm.force(JANITOR_NAME, scheduler=f"{JANITOR_NAME}_force")
    assert janitor["results"] == 0, farm.rest.steps(janitor)
    done = {s["name"]: s["state_string"] for s in farm.rest.steps(janitor)}
    assert done["prune-uploaded-logs"] == f"removed 1 uploaded log folders older than 0:00:{HORIZON}, kept 1"
    deleted = int(done["LogChunksJanitor"].split()[1])
    assert deleted > 0, done
    assert done["BuildDataJanitor"].startswith("deleted ")
    assert sorted(p.name for p in uploaded.iterdir() if is_build_folder(p.name)) == [str(new["number"])]
    gone = farm.rest.step_logs(old)
    assert gone and all(log["type"] == "d" and not log["content"] for log in gone), gone
    kept = farm.rest.step_logs(new)
    assert any(log["content"] for log in kept) and not [log for log in kept if log["type"] == "d"]
    assert qemu_pids_of(farm.root / "worker") == []
