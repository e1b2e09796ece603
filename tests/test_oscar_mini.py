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


def read_menu(tmp_path: Path, text: str, valued: str, ending: str) -> subprocess.CompletedProcess[str]:
    answers = tmp_path / "answers.txt"
    answers.write_text(text)
    return subprocess.run(["bash", "-c", f'. "$0/lib/common.sh"; read_menu "$1" "{valued}" "{ending}"',
                           str(SUITE), str(answers)], capture_output=True, text=True)


def test_menu_replay_reads_lines_as_oscars_perl_menus_do(tmp_path):
    # '#', blank and "0" lines passed over; " 4" and "4x" are 4; the value is the very next line,
    # a comment included; 8 (build) ends the reading
    text = "# build the image\n0\n1\noscarimage\n\n 7\n# reboot\n4x\n/repo\n8\n9\n1\nlater\n"
    result = read_menu(tmp_path, text, "1 2 3 4 5 6 7", "8 9")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1\toscarimage\n7\t# reboot\n4\t/repo\n8\t\n"


def test_menu_replay_ignores_what_oscar_ignores_and_refuses_what_it_cannot_read(tmp_path):
    result = read_menu(tmp_path, "build\n12\n9\n", "1 2 3 4 5 6 7", "8 9")
    assert (result.returncode, result.stdout) == (0, "9\t\n")
    path = tmp_path / "answers.txt"
    assert result.stderr.splitlines() == [
        f"oscar-mini: WARNING: {path} line 1: 'build' is not a menu item; OSCAR ignores it",
        f"oscar-mini: WARNING: {path} line 2: '12' is not a menu item; OSCAR ignores it"]
    result = read_menu(tmp_path, "7\nreboot\n1\n", "1 2 3 4 5 6 7", "8 9")
    assert (result.returncode, result.stderr.strip()) == (
        1, f"ERROR: {path}: menu item 1 needs a value on the next line (OSCAR would read none and go on)")
    result = read_menu(tmp_path, "1\r\noscarimage\r\n", "1 2 3 4 5 6 7", "8 9")
    assert result.returncode == 1 and "line 2: the value has a carriage return" in result.stderr


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
    ("1i1\\noscarimage", "menu item 1 (Image Name) in an answer file makes OSCAR's define_oscar_clients_cli "
                         "loop forever; leave it out (OSCAR takes the first image built, here oscarimage)"),
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


OLD_NETWORK_ANSWERS = f"1\\n{INPUTS}/client.macs\\n3\\nsystemimager-rsync\\n4\\n6\\n8\\n9\\n10\\n"


def leases(conn: Connection) -> list[str]:
    return conn.check_output("cat /etc/oscar/dhcp-hosts").splitlines()


@pytest.mark.vm
def test_the_old_mac_file_and_answers_fail_as_in_oscar(headnode):
    """oscarvt's old input files: "NAME MAC" lines, no assignment method, OSCAR's old install mode name."""
    cluster, conn = headnode
    conn.check_output(f"mkdir -p {INPUTS} && printf 'oscarnode1 52:54:00:aa:00:02\\noscarnode2 52:54:00:aa:00:03\\n'"
                      f" > {INPUTS}/client.macs && printf '{OLD_NETWORK_ANSWERS}' > /root/old-network.answers")
    flags = ALL_INPUTS.replace(f"{SHARE}/networkclients.answers", "/root/old-network.answers")
    status, output = run(conn, f"{INSTALL} {flags} {only(4, 5, 6)}")
    assert status == 0, output  # OSCAR's step 6 never fails on its answers: the nodes get no address later
    step6 = output[output.index("Step 6 - Setup Networking"):]
    expected = ["[ERROR - main_cli] Unable to read macs from file.",  # the first hex run of "oscarnode1" is "ca"
                "There are no unassigned MACs.",
                "File 3 does not exist",  # the answer after the file name is read as another file name
                "[ERROR - main_cli] Failed to enable installation mode: systemimager-rsync",
                "oscar-mini: WARNING: OSCAR ends Setup Networking here"]
    positions = [step6.find(line) for line in expected]
    assert -1 not in positions and positions == sorted(positions), step6
    assert leases(conn) == []
    # The right MAC file without the assignment method: "3" is read as "Return to previous menu".
    conn.check_output(f"printf '52:54:00:aa:00:02\\t# oscarnode1\\n52:54:00:aa:00:03\\n' > {INPUTS}/client.macs")
    status, output = run(conn, f"{INSTALL} {flags} {only(6)}")
    assert status == 0, output
    assert "Assigning MAC" not in output and "clients without a MAC address: oscarnode1 oscarnode2" not in output
    assert leases(conn) == []


@pytest.mark.vm
def test_oscars_mac_file_and_answers_give_each_client_its_mac(headnode):
    cluster, conn = headnode
    conn.check_output(f"mkdir -p {INPUTS} && printf '# MACs\\n52:54:00:aa:00:02\\t# oscarnode1\\n525400AA0003\\n'"
                      f" > {INPUTS}/client.macs")
    status, output = run(conn, f"{INSTALL} {ALL_INPUTS} {only(4, 5, 6)}")
    assert status == 0, output
    assert "[INFO - main_cli] Assigning MAC: 52:54:00:AA:00:02 to client: oscarnode1" in output
    assert "[INFO - main_cli] Assigning MAC: 52:54:00:AA:00:03 to client: oscarnode2" in output
    assert "[INFO - main_cli] Successfully enabled installation mode: Rsync" in output
    assert leases(conn) == ["52:54:00:aa:00:02,192.168.77.2,oscarnode1", "52:54:00:aa:00:03,192.168.77.3,oscarnode2"]
    assert "WARNING" not in output[output.index("Step 6 - Setup Networking"):]


@pytest.mark.vm
def test_networking_answers_that_would_hang_oscar_fail(headnode):
    cluster, conn = headnode
    conn.check_output("printf '3\\nRsync\\n4\\n6\\n' > /root/short.answers")
    output = run_failing(conn, f"--networkclients /root/short.answers {only(6)}", "Failed on Step 6 - Setup Networking")
    assert ("ERROR: /root/short.answers ends while OSCAR waits for a menu choice (10 finishes); "
            "OSCAR's CLI_MAC.pm would wait forever") in output


@pytest.mark.vm
def test_a_boot_script_that_fails_stops_before_step_7(headnode):
    cluster, conn = headnode
    run_failing(conn, f"--bootscript /bin/false {only(7)}",
                "Failed to confirm client node boot before Step 7 - Complete Cluster Setup")
