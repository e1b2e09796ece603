"""The driver's phases end to end (`oscarvt run` and the single verbs), with examples/oscar-mini
as the OSCAR under test, on real VMs: a Debian template headnode and two blank nodes."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
import yaml
from conftest import oscarvt, port_open, qemu_pids_of, template_spec_data, write_spec
from PIL import Image

from oscarvt import events, monitor
from oscarvt.cluster import ClusterDir
from oscarvt.image import build_template
from oscarvt.network import free_tcp_port
from oscarvt.timeline import picture_height
from oscarvt.waiting import wait_for
from oscarvt_dev import local

SUITE = Path(__file__).parent.parent / "examples" / "oscar-mini"
OSCAR_LOG = "logs/headnode/var/log/oscar/oscarinstall.log"  # in a cluster folder after run


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory) -> Path:
    template, _ = build_template()
    return write_spec(tmp_path_factory.mktemp("spec") / "spec.yaml", template_spec_data(template))


def one_node_spec(spec_file: Path, path: Path) -> Path:
    """``spec_file`` with one compute node, written to ``path``."""
    return write_spec(path, {**yaml.safe_load(spec_file.read_text()), "nodes": {"count": 1, "memory": 384,
                                                                             "disk": "1G"}})


def check_logs(logs: Path, nodes: list[str]) -> None:
    """The log folder and tarball hold what grab-logs promises."""
    for name in ["headnode/var/log/oscar/oscarinstall.log", "headnode/var/log/systemimager/si_monitor.log",
                 "headnode/var/log/systemimager/rsyncd", "headnode/var/lib/oscarvt/install_cluster.out",
                 "consoles/headnode.log",
                 "consoles.log", "phases.json", "summary.txt", *(f"consoles/{n}.log" for n in nodes)]:
        assert (logs / name).is_file(), name
    prefixes = {line.split("| ")[0] for line in (logs / "consoles.log").read_text().splitlines()}
    assert {"headnode", *nodes} <= prefixes
    with tarfile.open(logs.with_name(logs.name + ".tar.gz")) as tar:
        assert {f"{logs.name}/phases.json", f"{logs.name}/timeline.png"} <= set(tar.getnames())
    with Image.open(logs / "timeline.png") as timeline:  # oscarvt.timeline: a lane per node that started
        assert (timeline.format, timeline.width) == ("PNG", 1400)
        phases = {p["phase"] for p in json.loads((logs / "phases.json").read_text())["phases"]}
        assert timeline.height == picture_height(len(phases), len(nodes))


@pytest.mark.vm
def test_run_passes_with_cd_boot(spec_file, tmp_path, clusters):
    cluster = clusters(tmp_path / "c").path
    result = oscarvt("run", "--cluster", cluster, "--spec", spec_file, "--source", SUITE, "--boot", "cdrom")
    assert result.returncode == 0, result.output
    assert result.output.strip().splitlines()[-1].startswith("PASS: run: every phase passed in ")
    for line in ("oscarnode1: installed", "oscarnode2: booted from its disk", "oscarnode1: rebooted; starting it",
                 "test PASSED: test_cluster oscarnode2 ssh", "oscar| == Build OSCAR Client Image"):
        assert line in result.output, line
    check_logs(cluster / "logs", ["oscarnode1", "oscarnode2"])
    assert "oscarnode2 192.168.77.3" in (cluster / "logs/headnode/etc/oscar/clients").read_text()
    phases = json.loads((cluster / "logs" / "phases.json").read_text())
    assert [p["phase"] for p in phases["phases"]] == [
        "copy-vm-image", "boot-headnode", "checkout-oscar", "start-oscar", "boot-compute-nodes",
        "wait-for-nodes", "finish-oscar", "grab-logs"]
    assert all(p["result"] == "passed" for p in phases["phases"][:-1])  # grab-logs wrote it while running
    assert {node["status"] for node in phases["nodes"].values()} == {102}
    for node in phases["nodes"].values():  # each change of status, as the driver saw it (the timeline's lanes)
        codes = [seen["status"] for seen in node["history"]]
        assert codes[0] == 0 and codes[-1] == 102 and 100 in codes and any(0 < c < 100 for c in codes), codes
        assert node["started"] <= node["history"][0]["time"] <= node["history"][-1]["time"]
    assert "timeline.png not drawn" not in result.output
    check_time_shares(phases, result.last_line)
    assert qemu_pids_of(cluster) == []
    check_imaged(cluster, {"oscarnode1": "192.168.77.2", "oscarnode2": "192.168.77.3"})


def check_time_shares(phases: dict, verdict: str) -> None:
    """Waits on OSCAR and its nodes are the product's time, all else the harness's, phase by phase and summed."""
    product = {p["phase"]: p["product_seconds"] for p in phases["phases"][:-1]}
    waiting_on_oscar = ("start-oscar", "wait-for-nodes", "finish-oscar")
    assert all(0 < product[name] <= p["seconds"] for p in phases["phases"] for name in waiting_on_oscar
               if p["phase"] == name), product
    assert all(product[name] == 0 for name in product if name not in waiting_on_oscar), product
    share = phases["share"]
    assert abs(share["product_seconds"] - sum(product.values())) < 0.2
    assert abs(share["harness_seconds"] + share["product_seconds"] - share["seconds"]) < 0.2
    assert 0 < share["harness_share"] < 1
    took = re.search(r"every phase passed in ([0-9]+)s, harness ([0-9]+)s of ([0-9]+)s \(([0-9]+)%\)", verdict)
    assert took is not None, verdict
    assert int(took.group(3)) >= share["seconds"] - 1 and int(took.group(2)) >= share["harness_seconds"] - 1


def check_imaged(cluster: Path, nodes: dict[str, str]) -> None:
    """From the logs: each node went through SystemImager's states (0, percentages, 100, 104,
    then 102 from its own disk), fetched its imaging_complete marker, was started again from
    its disk without the CD, and passed OSCAR's cluster tests."""
    logs = cluster / "logs" / "headnode"
    codes: dict[tuple[str, str], list[int]] = {}
    for line in (logs / "var/log/systemimager/si_monitor.log").read_text().splitlines():
        fields = monitor.parse_status_line(line)
        codes.setdefault((fields["host"], fields["ip"]), []).append(int(fields["status"]))
    rsyncd = (logs / "var/log/systemimager/rsyncd").read_text()
    for name, ip in nodes.items():
        seen = codes[(name, ip)]
        assert seen[0] == 0 and seen[-1] == 102 and {100, 104} <= set(seen), seen
        assert any(0 < code < 100 for code in seen), seen
        assert f"imaging_complete_{ip}" in rsyncd
        console = (cluster / "logs" / "consoles" / f"{name}.log").read_text(errors="replace")
        assert "oscar-installer: imaging complete" in console and f"oscar-node: {name} up at {ip}" in console
        profile = ClusterDir(cluster).profile(name)
        assert (profile.boot_device, profile.cdrom) == ("disk", None)
    report = (logs / "var/log/oscar/cluster_tests.xml").read_text()
    assert f'tests="{3 * len(nodes) + 1}" failures="0"' in report


@pytest.fixture
def git_daemon(tmp_path) -> Iterator[tuple[str, Path]]:
    """A git repository of the example suite served by git daemon on 127.0.0.1 (10.0.2.2 from a VM)."""
    root = tmp_path / "git"
    repo = local.git_repo(SUITE, root / "oscar")
    port = free_tcp_port()
    daemon = subprocess.Popen(["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={root}",
                               "--listen=127.0.0.1", f"--port={port}", str(root)])
    try:
        wait_for(lambda: port_open(port), timeout=20, what="git daemon to listen")
        yield f"git://10.0.2.2:{port}/oscar", repo
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)


@pytest.fixture
def svn_server(tmp_path) -> Iterator[str]:
    """An SVN repository of the example suite served by svnserve on 127.0.0.1 (10.0.2.2 from a VM)."""
    root = tmp_path / "svn"
    root.mkdir()
    subprocess.run(["svnadmin", "create", str(root / "repo")], check=True)
    subprocess.run(["svn", "import", "-q", "-m", "oscar-mini", str(SUITE), f"file://{root}/repo/trunk"], check=True)
    port = free_tcp_port()
    server = subprocess.Popen(["svnserve", "--foreground", "-d", "--listen-host", "127.0.0.1",
                               "--listen-port", str(port), "-r", str(root)])
    try:
        wait_for(lambda: port_open(port), timeout=20, what="svnserve to listen")
        yield f"svn://10.0.2.2:{port}/repo/trunk"
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.vm
def test_run_passes_with_network_boot_from_a_git_clone(spec_file, tmp_path, git_daemon, clusters):
    url, repo = git_daemon
    head = local.git(repo, "rev-parse", "HEAD").strip()
    cluster = clusters(tmp_path / "c").path
    result = oscarvt("run", "--cluster", cluster, "--spec", spec_file, "--url", url, "--revision", head,
                     "--boot", "network")
    assert result.returncode == 0, result.output
    assert f"checkout-oscar: {url} ({head}) is in the headnode's /opt/oscar" in result.output
    assert "oscarnode2: booted from its disk" in result.output
    check_logs(cluster / "logs", ["oscarnode1", "oscarnode2"])
    served = (cluster / "logs/headnode/var/log/oscar/httpd.log").read_text()  # iPXE fetched them over HTTP
    for ip in ("192.168.77.2", "192.168.77.3"):
        assert {f"{ip}: url:/oscar.ipxe", f"{ip}: url:/kernel", f"{ip}: url:/initrd.img"} <= {
            line.split(":", 1)[0] + ":" + line.split(":", 2)[2] for line in served.splitlines() if ": url:" in line}
    assert "sent /tftpboot/kernel" not in (cluster / "logs/headnode/var/log/oscar/dnsmasq.log").read_text()
    check_imaged(cluster, {"oscarnode1": "192.168.77.2", "oscarnode2": "192.168.77.3"})
    assert qemu_pids_of(cluster) == []


@pytest.mark.vm
@pytest.mark.long  # 5-7 minutes, make test's slowest; test_phases keeps the order of ten and more clients without VMs
def test_ten_nodes_are_each_installed_as_the_client_oscar_gives_its_mac(spec_file, tmp_path, clusters):
    """OSCAR gives the MAC file's MACs, in file order, to its clients sorted by name prefix and then
    number (MAC.pm sortclients: oscarnode2 before oscarnode10); the MAC file lists the VMs in that
    order, so VM oscarnodeK is installed as client oscarnodeK, past nine nodes too."""
    data = {**yaml.safe_load(spec_file.read_text()), "nodes": {"count": 10, "memory": 384, "disk": "1G"}}
    cluster = clusters(tmp_path / "c").path
    result = oscarvt("run", "--cluster", cluster, "--spec", write_spec(tmp_path / "spec.yaml", data), "--source",
                     SUITE, "--boot", "network", timeout=1800)
    assert result.returncode == 0, result.output
    print("".join(line for line in result.output.splitlines(keepends=True) if "power-cycled" in line)
          + result.output.strip().splitlines()[-1])  # a node whose network boot gave up under load is power-cycled
    macs = {name: vm.mac.lower() for name, vm in ClusterDir(cluster).load().node_vms().items()}
    assert list(macs) == [f"oscarnode{k}" for k in range(1, 11)]
    clients = {}  # the client name each MAC reported as, from the monitor's log
    for line in (cluster / "logs/headnode/var/log/systemimager/si_monitor.log").read_text().splitlines():
        fields = monitor.parse_status_line(line)
        clients[fields["mac"].lower()] = fields["host"]
    assert {name: clients.get(mac) for name, mac in macs.items()} == {name: name for name in macs}
    assert qemu_pids_of(cluster) == []


@pytest.mark.vm
@pytest.mark.matrix  # 3 min under TCG, the legacy path: make test keeps the HTTP network run, make matrix runs this
def test_the_suites_tftp_setting_loads_the_installer_by_classic_pxe(spec_file, tmp_path, clusters):
    """oscar-mini's NETBOOT=tftp (share/oscar-mini.conf): pxelinux and the installer over TFTP, as before HTTP."""
    suite = Path(shutil.copytree(SUITE, tmp_path / "oscar"))
    conf = suite / "share/oscar-mini.conf"
    conf.write_text(conf.read_text().replace("NETBOOT=http", "NETBOOT=tftp"))
    spec = one_node_spec(spec_file, tmp_path / "spec.yaml")
    cluster = clusters(tmp_path / "c").path
    result = oscarvt("run", "--cluster", cluster, "--spec", spec, "--source", suite, "--boot", "network")
    assert result.returncode == 0, result.output
    dnsmasq = (cluster / "logs/headnode/var/log/oscar/dnsmasq.log").read_text()
    assert "sent /tftpboot/pxelinux.0 to 192.168.77.2" in dnsmasq and "sent /tftpboot/kernel to 192.168.77.2" in dnsmasq
    assert not (cluster / "logs/headnode/var/log/oscar/httpd.log").exists()
    check_imaged(cluster, {"oscarnode1": "192.168.77.2"})


def run_broken(spec_file: Path, tmp_path: Path, path: str, old: str, new: str,
               clusters: Callable[[Path], ClusterDir]) -> tuple[str, Path]:
    """`oscarvt run` on a copy of the suite with ``old`` replaced by ``new`` in ``path``; it must fail."""
    suite = Path(shutil.copytree(SUITE, tmp_path / "oscar"))
    text = (suite / path).read_text()
    assert old in text
    (suite / path).write_text(text.replace(old, new))
    cluster = clusters(tmp_path / "c").path
    spec = one_node_spec(spec_file, tmp_path / "spec.yaml")  # one node is enough to fail: the verdict is the point
    result = oscarvt("run", "--cluster", cluster, "--spec", spec, "--source", suite)
    assert result.returncode == 1, result.output
    assert qemu_pids_of(cluster) == []
    return result.output.strip().splitlines()[-1], cluster


@pytest.mark.vm
def test_a_suite_that_breaks_step_4_fails_in_start_oscar(spec_file, tmp_path, clusters):
    last, cluster = run_broken(spec_file, tmp_path, "share/client.pkglist", "dropbear-bin", "no-such-package",
                               clusters)
    assert last.startswith("FAIL: run: product: failed in start-oscar after ")
    # as in OSCAR, a failed build ends step 4 with status 0, and step 5 finds no image
    assert "OSCAR failed in step 5 - Define OSCAR Clients: You must build at least one image!" in last
    check_logs(cluster / "logs", [])
    log = (cluster / OSCAR_LOG).read_text()
    assert "package no-such-package is not installed" in log and 'Failed building image "oscarimage"' in log


@pytest.mark.vm
def test_a_broken_node_installer_fails_in_wait_for_nodes_naming_the_node(spec_file, tmp_path, clusters):
    last, cluster = run_broken(spec_file, tmp_path, "share/installer", "DISK=/dev/vda", "DISK=/dev/vdz", clusters)
    assert last.startswith("FAIL: run: product: failed in wait-for-nodes after ")
    assert re.search(r"oscarnode1: the installer reported an error: .*/dev/vdz", last), last
    check_logs(cluster / "logs", ["oscarnode1"])
    assert "OSCAR failed" not in last  # the hook was released with a failure: OSCAR stopped too
    assert "Failed to confirm client node boot before Step 7" in (cluster / OSCAR_LOG).read_text()


@pytest.mark.vm
def test_a_failing_cluster_test_fails_in_finish_oscar(spec_file, tmp_path, clusters):
    last, cluster = run_broken(spec_file, tmp_path, "testing/test_cluster", 'check "$name" ssh "$name" "hostname"',
                               'check "$name" ssh "$name.wrong" "hostname"', clusters)
    assert last.startswith("FAIL: run: product: failed in finish-oscar after ")
    assert "OSCAR failed in step 8 - Test Cluster Setup: 1 of 4 cluster tests failed, first test_cluster " \
           "oscarnode1 ssh: " in last, last
    check_logs(cluster / "logs", ["oscarnode1"])
    assert (cluster / "logs/headnode/var/log/oscar/cluster_tests.xml").is_file()


@pytest.mark.vm
@pytest.mark.long  # about 3 minutes under TCG, 2 of them the half of timeouts.node a silent node is given
def test_a_node_whose_network_boot_gave_up_is_power_cycled_once_and_installs(spec_file, tmp_path, svn_server):
    """The headnode's dnsmasq is stopped (SIGSTOP) while the node boots from the network: its boot ROM
    gets no DHCP answer and gives up, nothing on the console. Half of timeouts.node later wait-for-nodes
    power-cycles it; dnsmasq goes on then, and the node's second network boot installs it."""
    data = yaml.safe_load(one_node_spec(spec_file, tmp_path / "one.yaml").read_text())
    data["timeouts"] = {**data.get("timeouts", {}), "node": 240}
    spec = write_spec(tmp_path / "spec.yaml", data)
    cluster = tmp_path / "c"
    dnsmasq = "$(cat /run/oscar-dnsmasq.pid)"
    try:
        for args in (["copy-vm-image", "--spec", spec], ["boot-headnode"], ["checkout-oscar", "--url", svn_server],
                     ["start-oscar"], ["ssh", "headnode", "--", f"kill -STOP {dnsmasq}"],
                     ["boot-compute-nodes", "--boot", "network"]):
            result = oscarvt(args[0], "--cluster", cluster, *args[1:])
            assert result.returncode == 0, result.output
        events_file = tmp_path / "events.jsonl"
        waiting = subprocess.Popen([sys.executable, "-m", "oscarvt", "wait-for-nodes", "--cluster", str(cluster)],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   env={**os.environ, "OSCARVT_EVENTS": str(events_file)})
        assert waiting.stdout is not None
        lines = []
        for line in waiting.stdout:  # wait-for-nodes ends by itself within timeouts.node and a half
            lines.append(line)
            if "power-cycled" in line:
                result = oscarvt("ssh", "--cluster", cluster, "headnode", "--", f"kill -CONT {dnsmasq}")
                assert result.returncode == 0, result.output
        output = "".join(lines)
        assert waiting.wait(timeout=60) == 0, output
        cycled = [line for line in lines if "power-cycled" in line]
        print("".join(cycled) + lines[-1])
        assert len(cycled) == 1 and re.search(r"oscarnode1: nothing on its console and no report \d+s after its "
                                              r"network boot; power-cycled \(network boot 2 of 2\)", cycled[0]), output
        assert int(re.search(r"report (\d+)s", cycled[0]).group(1)) >= 120  # half of timeouts.node: 240
        assert "1 nodes imaged and booted from their disks" in lines[-1], output
        seen = [events.parse(line) for line in events_file.read_text().splitlines()]
        assert [e["state"] for e in seen if e and e["event"] == "node"][:2] == ["power-cycled", "imaging"]
    finally:
        oscarvt("destroy", "--cluster", cluster)
    assert qemu_pids_of(cluster) == []


@pytest.mark.vm
def test_killing_a_node_during_imaging_fails_wait_for_nodes_within_seconds(spec_file, tmp_path, svn_server):
    cluster = tmp_path / "c"
    try:
        outputs = {}
        for args in (["copy-vm-image", "--spec", spec_file], ["boot-headnode"], ["checkout-oscar", "--url", svn_server],
                     ["start-oscar"], ["boot-compute-nodes", "--boot", "cdrom"]):
            result = oscarvt(args[0], "--cluster", cluster, *args[1:])
            assert result.returncode == 0, result.output
            outputs[args[0]] = result.output
        assert f"checkout-oscar: {svn_server} (1) is in the headnode's /opt/oscar" in outputs["checkout-oscar"]
        waiting = subprocess.Popen([sys.executable, "-m", "oscarvt", "wait-for-nodes", "--cluster", str(cluster)],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        console = cluster / "consoles" / "oscarnode2.log"
        wait_for(lambda: True if "pulling image" in console.read_text(errors="replace") else None,
                 timeout=300, what="oscarnode2 to start pulling its image")
        os.kill(int((cluster / "run" / "oscarnode2.pid").read_text()), signal.SIGKILL)
        killed = time.monotonic()
        output, _ = waiting.communicate(timeout=60)
        print(f"wait-for-nodes failed {time.monotonic() - killed:.1f}s after the kill")
        assert waiting.returncode == 3, output  # a QEMU gone without a reboot: the host's trouble
        last = output.strip().splitlines()[-1]
        assert last.startswith("FAIL: wait-for-nodes: infrastructure: oscarnode2: its VM died"), output
        result = oscarvt("grab-logs", "--cluster", cluster, "--dest", tmp_path / "logs")
        assert result.returncode == 0, result.output
        check_logs(tmp_path / "logs", ["oscarnode1", "oscarnode2"])
    finally:
        oscarvt("destroy", "--cluster", cluster)
    assert qemu_pids_of(cluster) == []

