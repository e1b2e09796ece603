"""A matrix build on two hypervisor hosts: a real master whose settings have a ``matrix:``, and two
real worker processes (standing for two hosts, ``max_clusters: 1`` each) that share its cells.

Every cell runs once, no worker ever runs two clusters at once, both workers take work, each
cell's headnode is the template of its own suite and arch, and the console and grid views show
the matrix (screenshots in test-artifacts/)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
from buildbot.process.results import SUCCESS
from conftest import oscarvt, qemu_pids_of

from oscarvt.network import free_tcp_port
from oscarvt.waiting import wait_for
from oscarvt_dev import local
from oscarvt_dev.local import Rest
from oscarvt_master.secret_files import hashed_line
from oscarvt_master.settings import BISECT

ROOT = Path(__file__).parent.parent
SUITE = ROOT / "examples" / "oscar-mini"
ARTIFACTS = ROOT / "test-artifacts"
ADMIN = ("admin", "admin-password")
WORKERS = ("hv1", "hv2")
MATRIX = {"repository": "oscar", "suites": ["bookworm", "trixie", "bullseye"], "arches": ["amd64"],
          "boots": ["cdrom"], "commit": [{"boot": "cdrom"}],  # a commit builds every cell, as the nightly does
          "nodes": 1, "spec": {"nodes": {"memory": 384, "disk": "1G"}, "accel": "tcg"}}
CELLS = ["bookworm-amd64-cdrom", "trixie-amd64-cdrom", "bullseye-amd64-cdrom"]


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory) -> Iterator[tuple[Rest, Path, Path]]:
    root = tmp_path_factory.mktemp("matrix")
    repo = local.git_repo(SUITE, root / "repo")
    www_port, worker_port = free_tcp_port(), free_tcp_port()
    settings: dict[str, Any] = {
        "title": "oscarvt matrix", "url": f"http://127.0.0.1:{www_port}/", "www_port": www_port,
        "worker_port": worker_port, "logs_port": 0, "oscarvt": str(local.BIN / "oscarvt"), "admins": ["admin"],
        "repositories": [{"name": "oscar", "url": str(repo), "poll_interval": 2}],
        "workers": [{"name": name, "max_clusters": 1, "arches": ["amd64", "arm64"]} for name in WORKERS],
        "matrix": MATRIX, "retries": 0}
    secrets = {f"worker-{name}": f"{name}-password" for name in WORKERS}
    pids: list[int] = []
    try:
        local.create_master(root / "master", settings, {**secrets, "www-users": hashed_line(*ADMIN, rounds=4) + "\n"})
        pids.append(local.start_master(root / "master"))
        for name in WORKERS:
            local.create_worker(root / name, name, worker_port, f"{name}-password")
            pids.append(local.start_worker(root / name))
        rest = Rest(settings["url"])
        wait_for(lambda: True if {w["name"] for w in rest.get("workers")["workers"]} >= set(WORKERS)  # and bisector
                 and rest.worker_connected() else None, timeout=60, what="both workers to connect")
        yield rest, repo, root / "master"
    finally:
        for pid in reversed(pids):
            local.stop(pid)
        for name in WORKERS:
            oscarvt("reap", "--under", root / name, "--stop-drivers")
            assert qemu_pids_of(root / name) == []


@pytest.mark.vm
def test_two_workers_share_a_matrix_build(two_hosts):
    rest, repo, master = two_hosts
    assert sorted(b["name"] for b in rest.get("builders")["builders"]) == sorted([*CELLS, BISECT])  # and bisection
    local.wait_logged(master, f'gitpoller: processing changes from "{repo}"', times=2)
    readme = repo / "README.md"
    readme.write_text(readme.read_text() + "\nBuilt on every cell of the matrix.\n")
    local.git(repo, "commit", "-q", "-am", "README: a line for the matrix")

    def all_done() -> list[dict[str, Any]] | None:
        builds = [build for cell in CELLS for build in rest.builds(cell)]
        return builds if len(builds) == len(CELLS) and all(b["complete"] for b in builds) else None
    builds = wait_for(all_done, timeout=2400, what="every cell's build", interval=5)

    by_cell = {cell: rest.builds(cell) for cell in CELLS}
    assert all(len(found) == 1 for found in by_cell.values()), by_cell  # every cell once
    results = {cell: (found[0]["results"], found[0]["state_string"]) for cell, found in by_cell.items()}
    assert all(result == SUCCESS for result, _ in results.values()), results
    workers = {w["workerid"]: w["name"] for w in rest.get("workers")["workers"]}
    ran_on: dict[str, list[tuple[int, int]]] = {}  # when each worker had a cluster: copy-vm-image to destroy
    for build in builds:
        steps = {step["name"]: step for step in rest.steps(build)}
        span = (steps["copy-vm-image"]["started_at"], steps["destroy"]["complete_at"])
        ran_on.setdefault(workers[build["workerid"]], []).append(span)
    assert set(ran_on) == set(WORKERS), ran_on  # both hosts took work
    for spans in ran_on.values():  # and neither ran two clusters at once
        spans.sort()
        assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:], strict=False)), ran_on
    for cell, found in by_cell.items():  # each cell's headnode is of its own suite
        suite = cell.split("-")[0]
        props = rest.get(f"builds/{found[0]['buildid']}/properties")["properties"][0]
        assert props["arch"][0] == "amd64" and props["distribution"][0] == {
            "bullseye": "debian-11", "bookworm": "debian-12", "trixie": "debian-13"}[suite]
        stdio = rest.get(f"builds/{found[0]['buildid']}/steps/copy-vm-image/logs/stdio/contents")
        assert f"amd64 headnode ({suite} template) + 1 nodes" in stdio["logchunks"][0]["content"]

    ARTIFACTS.mkdir(exist_ok=True)
    chromium = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=20000",
                "--window-size=1400,900"]
    for view in ("console", "grid"):
        shot = ARTIFACTS / f"matrix-{view}.png"
        subprocess.run([*chromium, f"--screenshot={shot}", f"{rest.url}#/{view}"], capture_output=True, timeout=120)
        assert shot.stat().st_size > 10_000
    dom = subprocess.run([*chromium, "--dump-dom", f"{rest.url}#/grid"], capture_output=True, text=True,
                         timeout=120).stdout
    (ARTIFACTS / "matrix-grid.html").write_text(dom)
    assert all(cell in dom for cell in CELLS), "see matrix-grid.html"
