"""examples/oscar-mini, the OSCAR-compatible suite: its CLI, its steps and their failures on a real
headnode. All eight steps with node VMs installing from the CD and the network: tests/test_driver.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import oscarvt, template_spec_data, write_spec

from oscarvt.cluster import ClusterDir
from oscarvt.image import build_template
from oscarvt.phases.access import open_vm
from oscarvt.ssh import Connection

SUITE = Path(__file__).parent.parent / "examples" / "oscar-mini"


def read_menu(tmp_path: Path, text: str, valued: str, top: int) -> subprocess.CompletedProcess[str]:
    answers = tmp_path / "answers.txt"
    answers.write_text(text)
    return subprocess.run(["bash", "-c", f'. "$0/lib/common.sh"; read_menu "$1" "{valued}" {top}',
                           str(SUITE), str(answers)], capture_output=True, text=True)


def test_menu_replay_reads_items_and_values(tmp_path):
    result = read_menu(tmp_path, "# build the image\n1\noscarimage\n\n7\nreboot\n8\n9\n", "1 2 3 4 5 6 7", 9)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1\toscarimage\n7\treboot\n8\t\n9\t\n"


@pytest.mark.parametrize("text, message", [
    ("1\noscarimage\n12\n", " line 3: no menu item 12 (1-9)"),
    ("build\n", " line 1: 'build' is not a menu item (1-9)"),
    ("8\n1\n", ": menu item 1 needs a value on the next line"),
])
def test_menu_replay_rejects_bad_answers(tmp_path, text, message):
    result = read_menu(tmp_path, text, "1 2 3 4 5 6 7", 9)
    assert result.returncode == 1
    assert result.stderr.strip() == f"ERROR: {tmp_path / 'answers.txt'}{message}"


@pytest.fixture(scope="module")
def headnode(tmp_path_factory) -> tuple[ClusterDir, Connection]:
    template, _ = build_template()
    root = tmp_path_factory.mktemp("mini")
    spec = write_spec(root / "spec.yaml", template_spec_data(template, nodes={"count": 0}))
    cluster = ClusterDir(root / "c")
    try:
        for args in (["copy-vm-image", "--spec", spec], ["boot-headnode"]):
            result = oscarvt(args[0], "--cluster", cluster.path, *args[1:])
            assert result.returncode == 0, result.output
        conn, opened = open_vm(cluster, cluster.load(), "headnode")
        conn.put(SUITE, "/opt")
        yield cluster, conn
        for c in opened:
            c.close()
    finally:
        oscarvt("destroy", "--cluster", cluster.path)


def run(conn: Connection, command: str) -> tuple[int, str]:
    chunks: list[bytes] = []
    status = conn.run(command, chunks.append, timeout=300)
    return status, b"".join(chunks).decode(errors="replace")


INSTALL = "/opt/oscar-mini/install_cluster --cli eth1"
SKIP_FLAGS = {1: "--skipselector", 3: "--skipinstall", 4: "--skipbuild", 5: "--skipdefine", 6: "--skipnet",
              7: "--skipcomplete", 8: "--skiptest"}


def only(*steps: int) -> str:
    """The flags that skip every step but ``steps`` (step 2 always runs, as in OSCAR)."""
    return " ".join(flag for step, flag in SKIP_FLAGS.items() if step not in steps)


def run_failing(conn: Connection, flags: str, failure: str) -> str:
    """Run install_cluster with ``flags``; it must end with OSCAR's ``failure`` line. Returns its output."""
    status, output = run(conn, f"{INSTALL} {flags}")
    assert status == 1, output
    assert output.strip().splitlines()[-1] == f"ERROR: {failure}"
    return output


@pytest.mark.vm
def test_steps_1_to_3_make_an_imaging_server(headnode):
    cluster, conn = headnode
    conn.check_output("printf 'base\\n# comment\\nssh-keys\\n' > /root/opkgs.txt")
    status, output = run(conn, f"{INSTALL} --opkgselector /root/opkgs.txt {only(1, 3)}")
    assert status == 0, output
    for text in ("Step 1 - Select Packages", "Step 2 - Configure Packages",
                 "Step 3 - Install OSCAR Server Packages", "Skipping Step 8 - Test Cluster Setup"):
        assert text in output
    assert conn.check_output("cat /etc/oscar/selected_opkgs") == "base\nssh-keys\n"
    assert "OSCAR_SERVER_ADDRESS = 192.168.77.1/24" in conn.check_output("cat /etc/oscar/oscar.conf")
    assert "Step 3 - Install OSCAR Server Packages" in conn.check_output("cat /var/log/oscar/oscarinstall.log")
    listening = conn.check_output("cat /proc/net/tcp /proc/net/udp")
    assert ":0369 " in listening  # rsync daemon, TCP 873
    assert ":1FF5 " in listening  # monitor, TCP 8181
    assert ":0043 " in listening  # DHCP, UDP 67
    line = "mac=52:54:00:aa:bb:02:ip=192.168.77.2:host=oscarnode1:status=40:speed=100"
    conn.check_output(f"echo '{line}' > /dev/tcp/127.0.0.1/8181; sleep 0.5")
    assert line in conn.check_output("cat /var/log/systemimager/si_monitor.log")
    clients = conn.check_output("cat /var/lib/systemimager/clients.xml")
    assert 'host="oscarnode1"' in clients and 'mac="52:54:00:aa:bb:02"' in clients and 'status="40"' in clients


@pytest.mark.vm
def test_bad_package_selection_fails_on_step_1(headnode):
    cluster, conn = headnode
    conn.check_output("printf 'base\\nmpich\\n' > /root/bad-opkgs.txt")
    output = run_failing(conn, f"--opkgselector /root/bad-opkgs.txt {only(1, 3)}", "Failed on Step 1 - Select Packages")
    assert "/root/bad-opkgs.txt: no OSCAR package named 'mpich'" in output


@pytest.mark.vm
def test_invalid_interface_is_refused_with_usage(headnode):
    cluster, conn = headnode
    status, output = run(conn, "/opt/oscar-mini/install_cluster --cli eth9")
    assert status == 1
    assert output.startswith("The interface eth9 specified is invalid.\nUsage: install_cluster --cli INTERFACE")


@pytest.mark.vm
def test_step_4_builds_a_client_image(headnode):
    cluster, conn = headnode
    status, output = run(conn, f"{INSTALL} --buildimage /opt/oscar-mini/share/buildimage.answers {only(4)}")
    assert status == 0, output
    assert "Step 4 - Build OSCAR Client Image" in output
    image = "/var/lib/systemimager/images/oscarimage"
    wanted = ["bin/busybox", "boot/initrd.img", "boot/vmlinuz", "etc/init.d/rcS", "lib/modules/$(uname -r)",
              "sbin/init", "usr/sbin/dropbear"]
    listing = conn.check_output(f"cd {image} && ls -d {' '.join(wanted)}").split()
    assert listing[:4] + listing[5:] == wanted[:4] + wanted[5:]
    assert listing[4].startswith("lib/modules/6.")
    assert "POST_ACTION=reboot" in conn.check_output(f"cat {image}/etc/systemimager/image.conf")
    assert conn.check_output(f"chroot {image} /usr/sbin/dropbear -V 2>&1; chroot {image} /bin/sh -c 'echo ok'") \
        .strip().endswith("ok")


@pytest.mark.vm
def test_a_broken_build_answer_fails_on_step_4(headnode):
    cluster, conn = headnode
    conn.check_output("sed 's/^static$/carrier-pigeon/' /opt/oscar-mini/share/buildimage.answers > /root/bad.answers")
    output = run_failing(conn, f"--buildimage /root/bad.answers {only(4)}",
                         "Failed on Step 4 - Build OSCAR Client Image")
    assert "IP assignment method 'carrier-pigeon' is not static or dhcp" in output


@pytest.mark.vm
def test_step_5_defines_clients(headnode):
    cluster, conn = headnode
    status, output = run(conn, f"{INSTALL} --defineclients /opt/oscar-mini/share/defineclients.answers {only(5)}")
    assert status == 0, output
    assert conn.check_output("cat /etc/oscar/clients") == (
        "oscarnode1 192.168.77.2 255.255.255.0 192.168.77.1 oscarimage oscardomain\n"
        "oscarnode2 192.168.77.3 255.255.255.0 192.168.77.1 oscarimage oscardomain\n")
    assert "192.168.77.3 oscarnode2.oscardomain oscarnode2\n" in conn.check_output("cat /etc/hosts")


@pytest.mark.vm
@pytest.mark.parametrize("edit, message", [
    ("/^4$/{n;s/.*/two/}", "count must be a whole number, not 'two'"),
    ("s/^oscarimage$/noimage/", "image noimage does not exist (build it in step 4)"),
    ("s/^192.168.77.2$/192.168.777.2/", "startip '192.168.777.2' is not an IPv4 address"),
])
def test_a_broken_define_answer_fails_on_step_5(headnode, edit, message):
    cluster, conn = headnode
    conn.check_output(f"sed '{edit}' /opt/oscar-mini/share/defineclients.answers > /root/bad-define.answers")
    output = run_failing(conn, f"--defineclients /root/bad-define.answers {only(5)}",
                         "Failed on Step 5 - Define OSCAR Clients")
    assert f"ERROR: {message}" in output


INPUTS = "/var/lib/oscarvt/inputs"
SHARE = "/opt/oscar-mini/share"
ALL_INPUTS = (f"--buildimage {SHARE}/buildimage.answers --defineclients {SHARE}/defineclients.answers "
              f"--networkclients {SHARE}/networkclients.answers")


@pytest.mark.vm
def test_a_bad_mac_file_fails_on_step_6(headnode):
    cluster, conn = headnode
    conn.check_output(f"mkdir -p {INPUTS} && printf 'oscarnode1 52:54:00:zz:00:01\\n' > {INPUTS}/client.macs")
    output = run_failing(conn, f"{ALL_INPUTS} {only(4, 5, 6)}", "Failed on Step 6 - Setup Networking")
    assert f"ERROR: {INPUTS}/client.macs line 1: '52:54:00:zz:00:01' is not a MAC address" in output


@pytest.mark.vm
def test_a_boot_script_that_fails_stops_before_step_7(headnode):
    cluster, conn = headnode
    run_failing(conn, f"--bootscript /bin/false {only(7)}",
                "Failed to confirm client node boot before Step 7 - Complete Cluster Setup")
