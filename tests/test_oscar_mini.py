"""examples/oscar-mini, the OSCAR-compatible suite: its CLI, its steps and their failures on a real
headnode, each failure read as oscarvt reads OSCAR's (oscarvt.oscar_output). All eight steps with
node VMs installing from the CD and the network: tests/test_driver.py; OSCAR's own bugs reproduced
and reported through the driver: tests/test_oscar_failures.py."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest
from conftest import SUITE, headnode_booted, suite_line, template_spec_data, write_spec

from oscarvt.access import open_vm
from oscarvt.cluster import ClusterDir
from oscarvt.image import build_template
from oscarvt.oscar_output import RepeatWatch, describe_failure
from oscarvt.ssh import Connection


def read_menu(tmp_path: Path, text: str, valued: str, ending: str) -> subprocess.CompletedProcess[str]:
    answers = tmp_path / "answers.txt"
    answers.write_text(text)
    result = subprocess.run(["bash", "-c", f'. "$0/lib/common.sh"; read_menu "$1" "{valued}" "{ending}"',
                             str(SUITE), str(answers)], capture_output=True)
    return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(),
                                       result.stderr.decode())  # bytes as they are: a DOS line end stays


def test_menu_replay_reads_lines_as_oscars_perl_menus_do(tmp_path):
    # '#', blank and "0" lines passed over; " 4" and "4x" are 4; the value is the very next line,
    # a comment included; 8 (build) ends the reading
    text = "# build the image\n0\n1\noscarimage\n\n 7\n# reboot\n4x\n/repo\n8\n9\n1\nlater\n"
    result = read_menu(tmp_path, text, "1 2 3 4 5 6 7", "8 9")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1\toscarimage\n7\t# reboot\n4\t/repo\n8\t\n"


def test_menu_replay_ignores_what_oscar_ignores_and_keeps_what_oscar_keeps(tmp_path):
    result = read_menu(tmp_path, "build\n12\n9\n", "1 2 3 4 5 6 7", "8 9")
    assert (result.returncode, result.stdout) == (0, "9\t\n")
    path = tmp_path / "answers.txt"
    assert result.stderr.splitlines() == [
        f"oscar-mini: WARNING: {path} line 1: 'build' is not a menu item; OSCAR ignores it",
        f"oscar-mini: WARNING: {path} line 2: '12' is not a menu item; OSCAR ignores it"]
    # an item on the last line: OSCAR asks for its value on stdin (build_oscar_image_cli 253, 331-345)
    assert read_menu(tmp_path, "7\nreboot\n1\n", "1 2 3 4 5 6 7", "8 9").stdout == "7\treboot\n1\n"
    # a DOS line end stays in the value, as in Perl's chomp
    assert read_menu(tmp_path, "1\r\noscarimage\r\n", "1 2 3 4 5 6 7", "8 9").stdout.encode() \
        == b"1\toscarimage\r\n"


@pytest.fixture(scope="module")
def headnode(tmp_path_factory) -> tuple[ClusterDir, Connection]:
    template, _ = build_template()
    root = tmp_path_factory.mktemp("mini")
    spec = write_spec(root / "spec.yaml", template_spec_data(template, nodes={"count": 0}))
    with headnode_booted(spec, root / "c") as cluster:
        conn, opened = open_vm(cluster, cluster.load(), "headnode")
        conn.put(SUITE, "/opt")
        yield cluster, conn
        for c in opened:
            c.close()


def run(conn: Connection, command: str) -> tuple[int, str]:
    chunks: list[bytes] = []
    status = conn.run(command, chunks.append, timeout=300)
    return status, b"".join(chunks).decode(errors="replace")


def install(flags: str, verbosity: int = 3) -> str:
    """install_cluster as oscarvt starts it: from its folder, banners on, step 2's prompt answered."""
    return f"cd /opt/oscar-mini && printf 'quit\\r' | OSCAR_VERBOSE={verbosity} ./install_cluster --cli eth1 {flags}"


SKIP_FLAGS = {1: "--skipselector", 3: "--skipinstall", 4: "--skipbuild", 5: "--skipdefine", 6: "--skipnet",
              7: "--skipcomplete", 8: "--skiptest"}


def only(*steps: int) -> str:
    """The flags that skip every step but ``steps`` (step 2 always runs, as in OSCAR)."""
    return " ".join(flag for step, flag in SKIP_FLAGS.items() if step not in steps)


def run_failing(conn: Connection, flags: str, verdict: str) -> str:
    """Run install_cluster with ``flags``: it must fail as OSCAR does, ending with install_cluster's own
    line, and oscarvt must read ``verdict`` from its output. Returns the output."""
    status, output = run(conn, install(flags))
    assert status != 0, output
    lines = output.strip().splitlines()
    assert lines[-1].startswith("Oscar Wizard failed to run successfully at ./install_cluster line "), output
    assert describe_failure(lines, None, status) == verdict, output
    return output


def loops(conn: Connection, command: str, marker: str, seconds: int = 15) -> None:
    """Run ``command`` for ``seconds``: it must be cut off still printing ``marker`` again and again, and
    oscarvt must see a loop in what it printed."""
    status, output = run(conn, f"timeout {seconds} sh -c {shlex.quote(command)} | head -c 4000000")
    assert output.count(marker) >= RepeatWatch.REPEATS, output[-2000:]
    watch = RepeatWatch()
    repeated = next((line for line in output.splitlines() if watch.take(line, now=0.0)), None)
    assert repeated is not None and repeated in output, output[-2000:]


@pytest.mark.vm
def test_steps_1_to_3_make_an_imaging_server(headnode):
    cluster, conn = headnode
    conn.check_output("printf 'base\\n# comment\\nssh-keys\\n' > /root/opkgs.txt")
    status, output = run(conn, install(f"--opkgselector /root/opkgs.txt {only(1, 3)}"))
    assert status == 0, output
    for text in ("Running command: /opt/oscar-mini/scripts/cli/oscar-selector --file /root/opkgs.txt",
                 "== Beginning the OSCAR Configurator", "configurator> ", "== Installing OSCAR Server Packages",
                 "== Packages Successfully Installed"):
        assert text in output, text
    assert "Test Cluster Setup" not in output  # a skipped step says nothing, as in OSCAR
    assert conn.check_output("cat /etc/oscar/selected_opkgs") == "base\nssh-keys\n"
    assert "OSCAR_SERVER_ADDRESS = 192.168.77.1/24" in conn.check_output("cat /etc/oscar/oscar.conf")
    assert "== Installing OSCAR Server Packages" in conn.check_output("cat /var/log/oscar/oscarinstall.log")
    listening = conn.check_output("cat /proc/net/tcp /proc/net/udp")
    assert ":0369 " in listening  # rsync daemon, TCP 873
    assert ":1FF5 " in listening  # monitor, TCP 8181
    assert ":0043 " in listening  # DHCP, UDP 67
    line = "mac=52:54:00:aa:bb:02:ip=192.168.77.2:host=oscarnode1:status=40:speed=100"
    conn.check_output(f"echo '{line}' > /dev/tcp/127.0.0.1/8181; sleep 0.5")
    assert line in conn.check_output("cat /var/log/systemimager/si_monitor.log")
    clients = conn.check_output("cat /var/lib/systemimager/clients.xml")
    assert 'host="oscarnode1"' in clients and 'mac="52:54:00:aa:bb:02"' in clients and 'status="40"' in clients
    # at OSCAR's default verbosity no step says a word; an older log is kept as oscarinstall.log_N
    status, quiet = run(conn, install(only(), verbosity=1))
    assert status == 0 and "==" not in quiet and "Running command" not in quiet, quiet
    assert conn.run("test -s /var/log/oscar/oscarinstall.log_1") == 0


@pytest.mark.vm
def test_bad_package_selection_fails_on_step_1(headnode):
    cluster, conn = headnode
    conn.check_output("printf 'base\\nmpich\\n' > /root/bad-opkgs.txt")
    run_failing(conn, f"--opkgselector /root/bad-opkgs.txt {only(1, 3)}",
                "OSCAR failed in step 1 - Select Packages: ERROR: /root/bad-opkgs.txt: no OSCAR package named "
                "'mpich' (available: base cluster-tests hosts ssh-keys)")


@pytest.mark.vm
def test_invalid_interface_is_refused_with_usage(headnode):
    cluster, conn = headnode
    status, output = run(conn, "cd /opt/oscar-mini && ./install_cluster --cli eth9")
    assert status == 1
    assert "The interface eth9 specified is invalid.\nUsage: main_cli [FLAGS] interface" in output


@pytest.mark.vm
def test_started_from_elsewhere_it_says_so_as_oscar_would(headnode):
    cluster, conn = headnode
    status, output = run(conn, f"cd / && printf 'quit\\r' | /opt/oscar-mini/install_cluster --cli eth1 {only()}")
    assert status == 0, output
    assert "[ERROR - install_cluster] You MUST execute the program from within the OSCAR top level directory!" in output


@pytest.mark.vm
def test_step_4_builds_a_client_image(headnode):
    cluster, conn = headnode
    status, output = run(conn, install(f"--buildimage /opt/oscar-mini/share/buildimage.answers {only(4)}"))
    assert status == 0, output
    assert "Running command: /opt/oscar-mini/scripts/cli/build_oscar_image_cli --file " in output
    assert "== Build OSCAR Client Image" in output
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
def test_a_failed_build_ends_step_4_well_and_step_5_fails_as_in_oscar(headnode):
    """build_oscar_image_cli in file mode ends with status 0 whatever happened (lines 92-99): the
    failure shows at step 5, which finds no image."""
    cluster, conn = headnode
    conn.check_output("mv /etc/oscar/images /root/images.saved && "
                      "sed 's|^/opt/oscar-mini/share/client.pkglist$|/no/such/list|' "
                      "/opt/oscar-mini/share/buildimage.answers > /root/bad.answers")
    try:
        output = run_failing(conn, f"--buildimage /root/bad.answers --defineclients "
                                   f"/opt/oscar-mini/share/defineclients.answers {only(4, 5)}",
                             "OSCAR failed in step 5 - Define OSCAR Clients: You must build at least one image!")
    finally:
        conn.check_output("mv /root/images.saved /etc/oscar/images")
    assert "ERROR: /no/such/list: cannot read the package list" in output
    assert 'Failed building image "oscarimage' in output
    # an IP method OSCAR does not know is not taken (build_oscar_image_cli 497-508): the default stays
    conn.check_output("sed 's/^static$/carrier-pigeon/' /opt/oscar-mini/share/buildimage.answers > /root/odd.answers")
    status, output = run(conn, install(f"--buildimage /root/odd.answers {only(4)}"))
    assert status == 0 and "Successfully created image" in output, output


@pytest.mark.vm
def test_step_5_defines_clients(headnode):
    cluster, conn = headnode
    status, output = run(conn, install(f"--defineclients /opt/oscar-mini/share/defineclients.answers {only(5)}"))
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
    run_failing(conn, f"--defineclients /root/bad-define.answers {only(5)}",
                f"OSCAR failed in step 5 - Define OSCAR Clients: ERROR: {message}")


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
    status, output = run(conn, install(f"{flags} {only(4, 5, 6)}", verbosity=5))
    assert status == 0, output  # OSCAR's step 6 never fails on its answers: the nodes get no address later
    step6 = output[output.index("== Running step 6 of the OSCAR wizard: Setup networking"):]
    expected = ["[ERROR - main_cli] Unable to read macs from file.",  # the first hex run of "oscarnode1" is "ca"
                "There are no unassigned MACs.",
                "File 3 does not exist",  # the answer after the file name is read as another file name
                "[ERROR - main_cli] Failed to enable installation mode: systemimager-rsync",
                "oscar-mini: WARNING: clients without a MAC address: oscarnode1 oscarnode2"]
    positions = [step6.find(line) for line in expected]
    assert -1 not in positions and positions == sorted(positions), step6
    assert leases(conn) == []
    # The right MAC file without the assignment method: "3" is read as "Return to previous menu".
    conn.check_output(f"printf '52:54:00:aa:00:02\\t# oscarnode1\\n52:54:00:aa:00:03\\n' > {INPUTS}/client.macs")
    status, output = run(conn, install(f"{flags} {only(6)}", verbosity=5))
    assert status == 0, output
    assert "Assigning MAC" not in output and "clients without a MAC address: oscarnode1 oscarnode2" in output
    assert leases(conn) == []


@pytest.mark.vm
def test_oscars_mac_file_and_answers_give_each_client_its_mac(headnode):
    cluster, conn = headnode
    conn.check_output(f"mkdir -p {INPUTS} && printf '# MACs\\n52:54:00:aa:00:02\\t# oscarnode1\\n525400AA0003\\n'"
                      f" > {INPUTS}/client.macs")
    status, output = run(conn, install(f"{ALL_INPUTS} {only(4, 5, 6)}", verbosity=5))
    assert status == 0, output
    assert "[INFO - main_cli] Assigning MAC: 52:54:00:AA:00:02 to client: oscarnode1" in output
    assert "[INFO - main_cli] Assigning MAC: 52:54:00:AA:00:03 to client: oscarnode2" in output
    assert "\toscarnode2 (eth0) [192.168.77.3] <52:54:00:AA:00:03>" in output  # each round shows the assignments
    assert "[INFO - main_cli] Successfully enabled installation mode: Rsync" in output
    assert leases(conn) == ["52:54:00:aa:00:02,192.168.77.2,oscarnode1", "52:54:00:aa:00:03,192.168.77.3,oscarnode2"]
    # a successful 4 ends the menu (CLI_MAC.pm 216-220): 10 is never read, so step 6 never says it completed
    assert "Step 6: Completed successfully" not in output
    assert conn.run("test -s /tmp/oscar_bootcd.iso && test -s /tftpboot/pxelinux.0") == 0  # 8 and 9 came first


@pytest.mark.vm
def test_items_after_a_successful_4_are_never_read_as_in_oscar(headnode):
    cluster, conn = headnode
    conn.check_output("rm -f /tmp/oscar_bootcd.iso && printf '3\\nRsync\\n4\\n8\\n10\\n' > /root/late-cd.answers")
    status, output = run(conn, install(f"--networkclients /root/late-cd.answers {only(6)}"))
    assert status == 0, output
    assert "AutoInstall CD" not in output and conn.run("test -e /tmp/oscar_bootcd.iso") != 0


@pytest.mark.vm
def test_steps_without_their_answers_print_their_menus_forever_as_in_oscar(headnode):
    cluster, conn = headnode
    cli = "cd /opt/oscar-mini/scripts/cli && OSCAR_HOME=/opt/oscar-mini"
    conn.check_output("mkdir -p /etc/oscar && cd /etc/oscar && { [ -s images ] || echo oscarimage > images; } && "
                      "{ [ -s clients ] || echo 'oscarnode1 192.168.77.2 255.255.255.0 192.168.77.1 oscarimage d' "
                      "> clients; }")  # what steps 4 and 5 leave, for the menus of 5 and 6
    loops(conn, f"{cli} ./build_oscar_image_cli eth1 < /dev/null", "8) Build Image\n")
    loops(conn, f"{cli} ./define_oscar_clients_cli eth1 < /dev/null", "10) Add Clients\n")
    loops(conn, f"{cli} ./setup_networking eth1 < /dev/null", "10) Finish\n")
    # networking answers that end before 10 or 4: CLI_MAC.pm reads past the end forever (lines 172-175)
    conn.check_output("printf '5\\n' > /root/short.answers")
    loops(conn, f"{cli} ./setup_networking --file /root/short.answers eth1", "Current client assignments:\n")
    loops(conn, f"{cli} ./configurator_cli < /dev/null", "configurator> ")
    loops(conn, f"{cli} ./simple_complete < /dev/null", "type 'continue' and press Enter")
    assert conn.run("pgrep -f '[o]scar-mini/scripts|[s]cripts/cli'") != 0  # the timeout stopped each of them


@pytest.mark.vm
def test_a_boot_script_that_fails_stops_before_step_7(headnode):
    cluster, conn = headnode
    failure = "Failed to confirm client node boot before Step 7 - Complete Cluster Setup"
    line = suite_line("scripts/cli/main_cli", 'perl_die "' + failure)
    run_failing(conn, f"--bootscript /bin/false {only(7)}",
                f"OSCAR failed in step 7 - Complete Cluster Setup: {failure} at ./main_cli line {line}.")


