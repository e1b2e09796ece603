"""The driver's phases end to end (`oscarvt run` and the single verbs), with examples/oscar-mini
as the OSCAR under test, on real VMs: a Debian template headnode and two blank nodes."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest
from conftest import oscarvt, qemu_pids_of, template_spec_data, write_spec

from oscarvt.image import build_template

SUITE = Path(__file__).parent.parent / "examples" / "oscar-mini"


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory) -> Path:
    template, _ = build_template()
    return write_spec(tmp_path_factory.mktemp("spec") / "spec.yaml", template_spec_data(template))


def suite_copy(tmp_path: Path) -> Path:
    """A copy of the example suite to break on purpose."""
    return Path(shutil.copytree(SUITE, tmp_path / "oscar"))


def check_logs(logs: Path, nodes: list[str]) -> None:
    """The log folder and tarball hold what grab-logs promises."""
    for name in ["headnode/var/log/oscar/oscarinstall.log", "headnode/var/log/systemimager/si_monitor.log",
                 "headnode/var/log/systemimager/rsyncd", "headnode/var/lib/oscarvt/install_cluster.out",
                 "headnode/etc/oscar/clients", "consoles/headnode.log",
                 "consoles.log", "phases.json", "summary.txt", *(f"consoles/{n}.log" for n in nodes)]:
        assert (logs / name).is_file(), name
    prefixes = {line.split("| ")[0] for line in (logs / "consoles.log").read_text().splitlines()}
    assert {"headnode", *nodes} <= prefixes
    with tarfile.open(logs.with_name(logs.name + ".tar.gz")) as tar:
        assert f"{logs.name}/phases.json" in tar.getnames()


@pytest.mark.vm
def test_run_passes_with_cd_boot(spec_file, tmp_path):
    cluster = tmp_path / "c"
    result = oscarvt("run", "--cluster", cluster, "--spec", spec_file, "--source", SUITE, "--boot", "cdrom")
    assert result.returncode == 0, result.output
    assert result.output.strip().splitlines()[-1].startswith("PASS: run: every phase passed in ")
    for line in ("oscarnode1: installed", "oscarnode2: booted from its disk", "oscarnode1: rebooted; starting it",
                 "test PASSED: oscarnode2 ssh", "oscar| --> Running command"):
        assert line in result.output, line
    check_logs(cluster / "logs", ["oscarnode1", "oscarnode2"])
    phases = json.loads((cluster / "logs" / "phases.json").read_text())
    assert [p["phase"] for p in phases["phases"]] == [
        "copy-vm-image", "boot-headnode", "checkout-oscar", "start-oscar", "boot-compute-nodes",
        "wait-for-nodes", "finish-oscar", "grab-logs"]
    assert all(p["result"] == "passed" for p in phases["phases"][:-1])  # grab-logs wrote it while running
    assert {node["status"] for node in phases["nodes"].values()} == {102}
    assert qemu_pids_of(cluster) == []


@pytest.mark.vm
def test_a_suite_that_breaks_step_4_fails_in_start_oscar(spec_file, tmp_path):
    suite = suite_copy(tmp_path)
    (suite / "share" / "client.pkglist").write_text("busybox-static\nno-such-package\n")
    cluster = tmp_path / "c"
    result = oscarvt("run", "--cluster", cluster, "--spec", spec_file, "--source", suite)
    assert result.returncode == 1, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("FAIL: run: failed in start-oscar after ")
    assert "OSCAR failed: Failed on Step 4 - Build OSCAR Client Image" in last
    assert "/var/log/oscar/oscarinstall.log| " in result.output  # the log's tail
    check_logs(cluster / "logs", [])
    assert qemu_pids_of(cluster) == []
