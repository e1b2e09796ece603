"""The clusters on one host, as a worker sees them: ``claim`` (room under max_clusters, kept
clusters counting), ``keep`` and ``reap``, with the real command line on real cluster folders
(made by copy-vm-image; no VM is started, a cluster takes its place by its disks or a claim)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import oscarvt, spec_data, write_spec

WAIT = "1"  # seconds a claim waits on a full host in these tests


def make_cluster(guest, folder: Path) -> Path:
    folder.parent.mkdir(parents=True, exist_ok=True)
    spec = write_spec(folder.parent.parent / f"spec-{folder.name}.yaml", spec_data(guest, nodes={"count": 1}))
    result = oscarvt("copy-vm-image", "--cluster", folder, "--spec", spec)
    assert result.returncode == 0, result.output
    return folder


def claim(cluster: Path, under: Path, max_clusters: int):
    return oscarvt("claim", "--cluster", cluster, "--under", under, "--max-clusters", str(max_clusters),
                   "--wait", WAIT)


def test_a_claim_counts_the_other_builds_clusters_until_they_are_destroyed(tmp_path):
    first = claim(tmp_path / "b1" / "clusters" / "1", tmp_path, 1)
    assert first.returncode == 0, first.output
    assert first.last_line == f"PASS: claim: room for {tmp_path}/b1/clusters/1: cluster 1 of at most 1 here"
    full = claim(tmp_path / "b2" / "clusters" / "1", tmp_path, 1)
    assert full.returncode == 3
    assert full.last_line == (
        f"FAIL: claim: infrastructure: no room for a cluster after 1s: 1 of 1 clusters here: "
        f"{tmp_path}/b1/clusters/1 (in use by a build) (destroy kept clusters that nobody needs, or raise "
        "max_clusters)")
    assert not (tmp_path / "b2" / "clusters" / "1").exists()  # nothing made for a claim that failed
    assert oscarvt("destroy", "--cluster", tmp_path / "b1" / "clusters" / "1").returncode == 0
    assert claim(tmp_path / "b2" / "clusters" / "1", tmp_path, 1).returncode == 0


def test_a_kept_cluster_takes_a_place_until_destroyed_and_its_builder_goes_on_beside_it(guest, tmp_path):
    builder = tmp_path / "b1" / "clusters"
    kept = make_cluster(guest, builder / "3")
    stale = make_cluster(guest, builder / "2")
    result = oscarvt("keep", "--cluster", kept, "--reason", "b1 build 3, kept on failure by ada")
    assert result.returncode == 0, result.output
    full = claim(tmp_path / "b2" / "clusters" / "1", tmp_path, 1)
    assert full.returncode == 3
    assert f"{kept} (kept: b1 build 3, kept on failure by ada)" in full.last_line
    # b1's next build: its stale cluster goes, the kept one stays and counts (2 of 2)
    result = claim(builder / "4", tmp_path, 2)
    assert result.returncode == 0, result.output
    assert result.last_line.endswith("cluster 2 of at most 2 here")
    assert not stale.exists() and (kept / "disks").is_dir()
    assert oscarvt("destroy", "--cluster", kept).returncode == 0  # the person is done
    assert claim(tmp_path / "b2" / "clusters" / "1", tmp_path, 2).returncode == 0


def test_two_claims_at_once_on_a_host_with_room_for_one_get_one_place(tmp_path):
    runs = [subprocess.Popen([sys.executable, "-m", "oscarvt", "claim", "--cluster", str(tmp_path / f"b{i}" / "c"),
                              "--under", str(tmp_path), "--max-clusters", "1", "--wait", "3"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    codes = sorted(run.wait(timeout=60) for run in runs)
    for run in runs:
        assert run.stdout is not None
        run.stdout.close()
    assert codes == [0, 3]


def test_reap_destroys_what_interrupted_builds_left_and_leaves_kept_clusters(guest, tmp_path):
    left = make_cluster(guest, tmp_path / "b1" / "clusters" / "5")
    kept = make_cluster(guest, tmp_path / "b2" / "clusters" / "9")
    assert oscarvt("keep", "--cluster", kept).returncode == 0
    result = oscarvt("reap", "--under", tmp_path)
    assert result.returncode == 0, result.output
    assert result.last_line == (f"PASS: reap: 1 left-behind clusters destroyed, 1 kept for a person, 0 in use, "
                                f"under {tmp_path}")
    assert not list((left / "disks").glob("*")) and list((kept / "disks").glob("*"))
    again = oscarvt("reap", "--under", tmp_path)  # nothing is left of the first: not counted again
    assert again.last_line.startswith("PASS: reap: 0 left-behind clusters destroyed, 1 kept for a person")
