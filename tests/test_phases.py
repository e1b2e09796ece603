"""The driver phases' pieces that need no VM: input files, monitor lines, test reports, the mail
(sent for real to an aiosmtpd sink on 127.0.0.1), and their errors."""

from __future__ import annotations

import dataclasses
import email
import re
import tarfile
import time
from pathlib import Path

import pytest
from conftest import oscarvt

from oscarvt import monitor, oscar_menus
from oscarvt.cluster import ClusterDir
from oscarvt.errors import OscarvtError
from oscarvt.inputs import build_image, define_clients, input_files, mac_file, network_clients
from oscarvt.limits import phase_limit
from oscarvt.oscar_menus import replay
from oscarvt.phase_table import CLEANUP_PHASES, PHASES, RUN_PHASES
from oscarvt.phases import nodes
from oscarvt.phases.host import CLAIM_WAIT
from oscarvt.phases.oscar import junit_results
from oscarvt.session import Session
from oscarvt.spec import spec_from_dict
from oscarvt.state import ClusterState, Logs, NodeRecord, PhaseRecord, Vm

STATE = ClusterState(cluster_id=7, spec={"template": "/x.qcow2", "ssh": {"password": "pw"}}, vms={
    "headnode": Vm("headnode", 0, ip="192.168.77.1", mac="52:54:00:12:34:01"),
    "oscarnode1": Vm("node", 1, ip="192.168.77.2", mac="52:54:00:12:34:02"),
    "oscarnode2": Vm("node", 2, ip="192.168.77.3", mac="52:54:00:12:34:03"),
})


def test_every_phase_has_a_limit_that_covers_its_own_bounds():
    cluster_spec = spec()
    limits = {name: phase_limit(cluster_spec, name) for name in PHASES}
    assert all(seconds > 0 for seconds in limits.values()), limits
    assert limits["wait-for-nodes"] > cluster_spec.timeouts.install + cluster_spec.timeouts.node
    assert limits["claim"] > CLAIM_WAIT
    assert limits["run"] == sum(limits[p.name] for p in (*RUN_PHASES, *CLEANUP_PHASES))


def spec(**oscar: str):
    return spec_from_dict({"template": "/x.qcow2", "ssh": {"password": "pw"}, "oscar": oscar},
                          Path("/"), check_files=False)


# OSCAR's menus as transcribed from its code (oscar-cluster/oscar): number -> label, value or not.
# scripts/cli/define_oscar_clients_cli lines 232-245 and 164-201; lib/OSCAR/CLI_MAC.pm lines 144-153
# and 183-247, assign_macs_cli 281-285; lib/OSCAR/MAC.pm get_from_file (the MAC file).
OSCAR_DEFINE = {1: ("Image Name", True), 2: ("Domain Name", True), 3: ("Base Name", True),
                4: ("Number of Hosts", True), 5: ("Starting Number", True), 6: ("Padding", True),
                7: ("Starting IP", True), 8: ("Subnet Mask", True), 9: ("Default Gateway", True),
                10: ("Add Clients", False), 11: ("Quit", False)}
OSCAR_NETWORK = {1: "Import MACs from file", 2: "Delete MACs", 3: "Installation Mode", 4: "Enable Install Mode",
                 5: "Dynamic DHCP update", 6: "Configure DHCP Server", 7: "Enable UYOK",
                 8: "Build AutoInstall CD", 9: "Setup Network Boot", 10: "Finish"}
OSCAR_BUILD = {1: "Image name", 2: "Package file", 3: "Distro", 4: "Package Repositories",
               5: "Disk Partition File", 6: "IP Assignment Method", 7: "Post install action",
               8: "Build Image", 9: "Quit"}


def test_transcribed_menus_match_oscars_items():
    assert {i.number: (i.label, i.takes_value) for i in oscar_menus.DEFINE_CLIENTS.items} == OSCAR_DEFINE
    assert {i.number: i.label for i in oscar_menus.SETUP_NETWORKING.items} == OSCAR_NETWORK
    assert {i.number: i.label for i in oscar_menus.BUILD_IMAGE.items} == OSCAR_BUILD
    assert [i.takes_value for i in oscar_menus.BUILD_IMAGE.items] == [True] * 7 + [False] * 2


def test_define_clients_answers_are_read_by_oscar_as_meant():
    text = define_clients(spec(domain="lab"), STATE)
    replayed = [(a.item, a.value) for a in replay(oscar_menus.DEFINE_CLIENTS, text, "defineclients")]
    assert replayed == [(2, "lab"), (3, "oscarnode"), (4, "2"), (5, "1"), (6, "0"), (7, "192.168.77.2"),
                        (8, "255.255.255.0"), (9, "192.168.77.1"), (10, None)]
    lines = text.splitlines()  # each value is the very next line after its item (Perl's $file[++$i])
    assert lines[lines.index("7") + 1] == "192.168.77.2"


def test_the_mac_file_is_oscars_format_in_client_order():
    text = mac_file(STATE)
    assert text.splitlines()[1:] == ["52:54:00:12:34:02\t# oscarnode1", "52:54:00:12:34:03\t# oscarnode2"]
    # MAC.pm's get_from_file: '#' lines are passed over, the first run of [0-9a-fA-F:-] is the MAC
    macs = [re.search(r"([0-9a-fA-F:-]+)\s*#*", line).group(1) for line in text.splitlines()
            if not re.match(r"^\s*#", line)]
    assert macs == ["52:54:00:12:34:02", "52:54:00:12:34:03"]
    # the old "NAME MAC" lines gave OSCAR the MAC "ca" (from "oscarnode1"), which it refuses
    assert re.search(r"([0-9a-fA-F:-]+)\s*#*", "oscarnode1 52:54:00:12:34:02").group(1) == "ca"


def test_ten_nodes_and_more_keep_oscars_client_order_through_the_state_file():
    # state.json's keys are sorted as text (oscarnode10 before oscarnode2); OSCAR gives the MACs, in file
    # order, to its clients sorted by name prefix and then number (MAC.pm sortclients), and so must we
    vms = {"headnode": Vm("headnode", 0, ip="192.168.77.1", mac="52:54:00:12:34:01")}
    vms.update({f"oscarnode{k}": Vm("node", k, ip=f"192.168.77.{k + 1}", mac=f"52:54:00:12:34:{k + 1:02x}")
                for k in range(12, 0, -1)})
    state = ClusterState.from_json(dataclasses.replace(STATE, vms=vms, nodes={
        "oscarnode10": NodeRecord(102), "oscarnode9": NodeRecord(102)}).to_json())
    assert list(state.node_vms()) == [f"oscarnode{k}" for k in range(1, 13)]
    assert list(state.nodes) == ["oscarnode9", "oscarnode10"]
    assert [line.split("# ")[1] for line in mac_file(state).splitlines()[1:]] == list(state.node_vms())


def test_networking_answers_are_read_by_oscar_as_meant():
    # CLI_MAC.pm 216-220: a successful 4 leaves the menu, so the CD (8) and network boot (9) come
    # before it, and 10, which follows it, is read only when enabling fails
    text = network_clients(spec())
    replayed = replay(oscar_menus.SETUP_NETWORKING, text, "networkclients")
    assert [(a.item, a.value, a.extra) for a in replayed] == [
        (1, "/var/lib/oscarvt/inputs/client.macs", ("1",)), (3, "Rsync", ()), (8, None, ()), (9, None, ()),
        (4, None, ())]
    assert [line for line in text.splitlines() if not line.startswith("#")][-2:] == ["4", "10"]
    assert replay(oscar_menus.SETUP_NETWORKING, network_clients(spec(install_mode="Bittorrent")),
                  "n")[1].value == "Bittorrent"


def test_build_image_answers_build_with_oscars_defaults():
    # build_oscar_image_cli 253-261: 8 builds (add_image) and ends the reading
    assert [(a.item, a.value) for a in replay(oscar_menus.BUILD_IMAGE, build_image(), "b")] == [(8, None)]
    assert replay(oscar_menus.BUILD_IMAGE, "1\nmyimage\n7\nreboot\n8\n9\n", "b") == [
        oscar_menus.Answer(1, "myimage"), oscar_menus.Answer(7, "reboot"), oscar_menus.Answer(8)]


@pytest.mark.parametrize("menu, text, message", [
    (oscar_menus.DEFINE_CLIENTS, "2\nlab\n1\noscarimage\n10\n",
     "define line 3: menu item 1 (Image Name) makes OSCAR's scripts/cli/define_oscar_clients_cli loop forever"),
    (oscar_menus.SETUP_NETWORKING, "1\n/tmp/macs\n4\n6\n10\n",
     "define line 3: '4' is not a MAC assignment method"),
    (oscar_menus.SETUP_NETWORKING, "1\n/tmp/macs\n1\n8\n6\n",
     "define: the file ends while OSCAR waits for a menu choice (10, Finish, ends it); OSCAR's "
     "lib/OSCAR/CLI_MAC.pm would read past its end forever"),
    (oscar_menus.SETUP_NETWORKING, "3\nsystemimager-rsync\n4\n10\n",
     "define: the file ends while OSCAR waits for an installation mode (None Rsync Bittorrent Flamethrower)"),
    # what the driver wrote until 2026-12: 6, 8 and 9 after a successful 4 are never read
    (oscar_menus.SETUP_NETWORKING, "1\n/tmp/macs\n1\n3\nRsync\n4\n6\n8\n9\n10\n",
     "define line 7: '6' (Configure DHCP Server) comes after item 4 (Enable Install Mode, line 6), and OSCAR "
     "reads nothing after a successful item 4 (lib/OSCAR/CLI_MAC.pm lines 216-220"),
    (oscar_menus.SETUP_NETWORKING, "3\nRsync\n8\n# done\n4\n",
     "define line 5: item 4 (Enable Install Mode) is not followed by 10 (Finish): when enabling fails"),
    (oscar_menus.SETUP_NETWORKING, "1\n/tmp/macs\n1\n3\nRsync\n4\n10\n",
     "define line 6: the menu ends before item 8 (Build AutoInstall CD) or 9 (Setup Network Boot)"),
    (oscar_menus.BUILD_IMAGE, "1\nmyimage\n",
     "define: the file ends before item 8 (Build Image): OSCAR's scripts/cli/build_oscar_image_cli builds no "
     "image and still ends with status 0, and step 5 fails ('You must build at least one image!')"),
    (oscar_menus.BUILD_IMAGE, "# quit\n9\n8\n", "define: line 2: item 9 (Quit) ends the menu before item 8"),
    (oscar_menus.BUILD_IMAGE, "1\n", "define: the file ends before item 8"),  # 1's value would come from stdin
    (oscar_menus.DEFINE_CLIENTS, "4\n3\n11\n", "define line 3: menu item 11 (Quit) ends OSCAR's "
     "scripts/cli/define_oscar_clients_cli without adding the clients"),
])
def test_answers_oscar_would_hang_on_are_refused(menu, text, message):
    with pytest.raises(OscarvtError) as caught:
        replay(menu, text, "define")
    assert str(caught.value).startswith(message)


def test_the_old_networking_answers_were_read_one_place_off():
    old = "1\n/var/lib/oscarvt/inputs/client.macs\n3\nsystemimager-rsync\n8\n9\n4\n10\n"
    replayed = replay(oscar_menus.SETUP_NETWORKING, old, "old")
    assert [(a.item, a.value, a.extra) for a in replayed] == [
        (1, "/var/lib/oscarvt/inputs/client.macs", ("3",)),  # "3" taken as "Return to previous menu"
        (8, None, ()), (9, None, ()), (4, None, ())]  # no install mode


def test_oscar_reads_answer_lines_its_own_way():
    # Perl menus: items are numbers (" 4", "4x"), "0" and '#' lines are passed over, unknown items
    # ignored, a value is the next line even if it is a comment, and 10 ends the reading.
    text = "0\n 4\n3\n4x\n# comment\n42\n10\n2\nlater\n"
    assert [(a.item, a.value) for a in replay(oscar_menus.DEFINE_CLIENTS, text, "d")] == [
        (4, "3"), (4, "# comment"), (10, None)]
    # CLI_MAC: items compared as strings, so "4 " is ignored; blank and '#' lines passed over everywhere
    text = "4 \n1\n\n# the file\n/tmp/m\n# method\n2\naa\nn1\nquit\n3\nRsync\n0\n9\n10\n"
    assert [(a.item, a.value, a.extra) for a in replay(oscar_menus.SETUP_NETWORKING, text, "n")] == [
        (1, "/tmp/m", ("2", "aa", "n1", "quit")), (3, "Rsync", ()), (9, None, ()), (10, None, ())]


def test_input_overrides_replace_add_and_are_checked(tmp_path):
    (tmp_path / "defineclients").write_text("3\nnode\n4\n2\n")
    (tmp_path / "buildimage").write_text("1\nimg\n8\n")
    files = input_files(spec(), STATE, tmp_path)
    assert files["defineclients"] == "3\nnode\n4\n2\n" and files["buildimage"] == "1\nimg\n8\n"
    assert "client.macs" in files and "networkclients" in files
    (tmp_path / "networkclients").write_text("1\n/tmp/m\n4\n")
    with pytest.raises(OscarvtError, match=r"networkclients line 3: '4' is not a MAC assignment method"):
        input_files(spec(), STATE, tmp_path)
    (tmp_path / "networkclients").unlink()
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(OscarvtError, match=r"notes.txt: not an input file"):
        input_files(spec(), STATE, tmp_path)


@pytest.mark.parametrize("answers, message", [
    ("3\nnode\n", "item 4 (Number of Hosts) defines 1 clients, but the cluster has 2 nodes (nodes.count)"),
    ("4\n 3x\n", "item 4 (Number of Hosts) defines 3 clients, but the cluster has 2 nodes"),
    ("4\n2\n7\n192.168.77.254\n", "item 7 (Starting IP) 192.168.77.254 gives client 2 the address "
                                     "192.168.77.255, which is not a node's on the cluster's LAN 192.168.77.0/24"),
    ("4\n2\n7\n10.0.0.5\n", "gives client 1 the address 10.0.0.5, which is not a node's"),
    ("4\n2\n7\n192.168.76.255\n", "gives client 1 the address 192.168.76.255"),
    ("4\n2\n7\n192.168.77.1\n", "gives client 1 the address 192.168.77.1, which is not a node's on the "
                                   "cluster's LAN 192.168.77.0/24 (network.subnet; the headnode is 192.168.77.1)"),
    ("4\n2\n7\n255.255.255.255\n", "gives client 1 the address 255.255.255.255, which is not a node's"),
    ("4\n2\n7\nlab-net\n", "item 7 (Starting IP) 'lab-net' is not an IPv4 address"),
])
def test_user_define_clients_answers_must_fit_the_nodes(tmp_path, answers, message):
    """One client per node VM, on the cluster's LAN: else a node only shows as silent, blamed on OSCAR."""
    (tmp_path / "defineclients").write_text(answers)
    with pytest.raises(OscarvtError, match=re.escape(message)) as caught:
        input_files(spec(), STATE, tmp_path)
    assert caught.value.blame == "bad input" and str(caught.value).startswith(f"--inputs: {tmp_path}/defineclients: ")
    (tmp_path / "defineclients").write_text("2\nlab\n3\nnode\n4\n2\n6\n2\n7\n192.168.77.50\n10\n")
    assert input_files(spec(), STATE, tmp_path)["defineclients"].startswith("2\nlab\n")


def test_removed_and_checked_oscar_spec_keys():
    with pytest.raises(OscarvtError, match="key 'oscar.image' is no longer read: OSCAR's define-clients step"):
        spec_from_dict({"template": "/x", "ssh": {"password": "p"}, "oscar": {"image": "i"}}, Path("/"), False)
    with pytest.raises(OscarvtError, match="key 'oscar.install_mode' must be one of None, Rsync"):
        spec(install_mode="systemimager-rsync")


def test_monitor_lines_and_status_words():
    fields = monitor.parse_status_line(
        "2026-11-23 10:00:00 mac=52:54:00:12:34:02:ip=192.168.77.2:host=oscarnode1:status=40:speed=100")
    assert fields == {"mac": "52:54:00:12:34:02", "ip": "192.168.77.2", "host": "oscarnode1",
                      "status": "40", "speed": "100"}
    assert [monitor.describe(code) for code in (-1, 0, 40, 100, 102, 104)] == [
        "error", "installer started", "imaging 40%", "installed", "booted from its disk", "rebooting"]
    log = "x send scripts/imaging_complete_192.168.77.3 1 bytes\n"
    assert monitor.completed_ips(log) == {"192.168.77.3"}


def test_junit_reports_are_read_per_test():
    report = ('<testsuite><testcase classname="n1" name="ssh" time="1"/>'
              '<testcase classname="n2" name="ssh"><failure message="no route"/></testcase></testsuite>')
    assert junit_results(report) == [
        {"class": "n1", "name": "ssh", "result": "passed", "message": "", "seconds": "1"},
        {"class": "n2", "name": "ssh", "result": "failed", "message": "no route", "seconds": ""}]
    with pytest.raises(OscarvtError, match="not valid XML"):
        junit_results("<testsuite>")


def failed_cluster(tmp_path: Path) -> ClusterDir:
    """A cluster folder as a failed run leaves it: state, logs folder, tarball."""
    cluster = ClusterDir(tmp_path / "c")
    logs = cluster.path / "logs"
    (logs / "consoles").mkdir(parents=True)
    (logs / "consoles" / "oscarnode2.log").write_text("oscar-installer: ERROR: fdisk /dev/vda failed\n")
    (logs / "headnode" / "var/log/oscar").mkdir(parents=True)
    (logs / "headnode" / "var/log/oscar/oscarinstall.log").write_text("Step 6 - Setup Networking\n")
    with tarfile.open(cluster.path / "logs.tar.gz", "w:gz") as tar:
        tar.add(logs, arcname="logs")
    now = time.time()
    cluster.save(dataclasses.replace(
        STATE, logs=Logs(dir=str(logs), tarball=str(cluster.path / "logs.tar.gz")),
        phases=[PhaseRecord("boot-headnode", start=now, end=now, result="passed", seconds=30.0),
                PhaseRecord("wait-for-nodes", start=now, end=now, result="failed", seconds=61.5,
                            message="oscarnode2: oscar-installer: ERROR: fdisk /dev/vda failed")]))
    return cluster


def test_send_logs_mails_the_verdict_failing_node_and_logs(tmp_path, smtp_sink):
    cluster = failed_cluster(tmp_path)
    result = oscarvt("send-logs", "--cluster", cluster.path, "--to", "dev@example.org", "--smtp", smtp_sink.address)
    assert result.returncode == 0, result.output
    assert len(smtp_sink.received) == 1
    mail = email.message_from_bytes(smtp_sink.received[0].as_bytes())
    assert mail["Subject"].startswith("oscarvt FAIL: c: wait-for-nodes: oscarnode2: oscar-installer: ERROR")
    body, attachment = [part for part in mail.walk() if not part.is_multipart()]
    text = body.get_payload(decode=True).decode()
    assert "Failed in wait-for-nodes: oscarnode2" in text and "boot-headnode" in text
    assert "--- OSCAR's log, last 1 lines" in text and "--- oscarnode2's console" in text
    assert attachment.get_filename() == "logs.tar.gz"
    assert attachment.get_payload(decode=True) == (cluster.path / "logs.tar.gz").read_bytes()


def test_a_mail_quotes_oscars_output_when_it_died_before_its_log(tmp_path, smtp_sink):
    # OSCAR's head dies in lib/OSCAR/Env.pm before install_cluster opens oscarinstall.log (line 230)
    cluster = ClusterDir(tmp_path / "c")
    logs = cluster.path / "logs"
    died = ("OSCAR failed before its first step: Undefined subroutine &OSCAR::Env::oscar_log called at "
            "/opt/oscar/lib/OSCAR/Env.pm line 127.")
    (logs / "headnode" / "var/lib/oscarvt").mkdir(parents=True)
    (logs / "headnode" / "var/lib/oscarvt/install_cluster.out").write_text(died.split(": ", 1)[1] + "\n")
    with tarfile.open(cluster.path / "logs.tar.gz", "w:gz") as tar:
        tar.add(logs, arcname="logs")
    now = time.time()
    cluster.save(dataclasses.replace(
        STATE, logs=Logs(dir=str(logs), tarball=str(cluster.path / "logs.tar.gz")),
        phases=[PhaseRecord("start-oscar", start=now, end=now, result="failed", seconds=3.0, message=died)]))
    result = oscarvt("send-logs", "--cluster", cluster.path, "--to", "dev@example.org", "--smtp", smtp_sink.address)
    assert result.returncode == 0, result.output
    mail = email.message_from_bytes(smtp_sink.received[-1].as_bytes())
    assert " ".join(mail["Subject"].split()) == f"oscarvt FAIL: c: start-oscar: {died}"[:160]
    text = next(part for part in mail.walk() if not part.is_multipart()).get_payload(decode=True).decode()
    assert f"Failed in start-oscar: {died}" in text
    assert "--- OSCAR's output, last 1 lines (install_cluster.out) ---\nUndefined subroutine" in text


def test_send_logs_errors_are_one_line(tmp_path):
    cluster = failed_cluster(tmp_path)
    result = oscarvt("send-logs", "--cluster", cluster.path, "--to", "dev@example.org", "--smtp", "nohost")
    assert (result.returncode, result.output) == (
        2, "FAIL: send-logs: bad input: --smtp must be HOST:PORT, not 'nohost'\n")
    result = oscarvt("send-logs", "--cluster", cluster.path, "--to", "dev@example.org", "--smtp", "127.0.0.1:9")
    assert result.returncode == 3
    assert result.output.splitlines()[-1].startswith(
        "FAIL: send-logs: infrastructure: cannot send mail through 127.0.0.1:9: ")


@pytest.mark.parametrize("line, blame", [
    ("Kernel panic - not syncing: IO-APIC + timer doesn't work!  Boot with apic=debug", "infrastructure"),
    ("Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)", "product"),
])
def test_a_console_error_is_blamed_on_who_caused_it(tmp_path, line, blame):
    """A timer check that TCG on a busy host failed is the host's trouble; other panics are the node's."""
    cluster = ClusterDir(tmp_path)
    files = cluster.files("oscarnode1")
    files.console.parent.mkdir(parents=True)
    files.console.write_text(f"[    1.0] booting\n{line}\n")
    node = nodes.Node(name="oscarnode1", ip="10.0.0.11", started=time.time(), console_offset=0)
    with pytest.raises(OscarvtError) as error:
        nodes.watch_vm(Session(cluster, None), node, take_in_logs=lambda: None)  # type: ignore[arg-type]
    assert error.value.blame == blame and error.value.vm == "oscarnode1"
    assert str(error.value).startswith("oscarnode1: ")


def test_only_a_node_that_showed_nothing_at_all_counts_as_silent_since_power_on():
    """wait-for-nodes power-cycles a network-booted node that is silent since power-on (see its docstring):
    any console line, report or fetch means its boot went further, and it is left alone."""
    def node(**changes: object) -> nodes.Node:
        fresh = nodes.Node(name="oscarnode1", ip="10.0.0.11", started=time.time(), console_offset=0)
        return dataclasses.replace(fresh, **changes)  # type: ignore[arg-type]
    assert node().silent_since_power_on()
    assert not node(console_seen=True).silent_since_power_on()
    assert not node(status=0).silent_since_power_on()
    assert not node(times={"imaging_complete": 30.0}).silent_since_power_on()
    assert node().said() == "not heard from"
    assert node(netboots=2).said() == "not heard from, after 2 network boots"
    # No tries left, or not silent: no power-cycle, and the session is not even asked for the profile.
    assert not nodes.power_cycle_silent(None, node(netboots=nodes.NETBOOT_TRIES), 400.0)  # type: ignore[arg-type]
    assert not nodes.power_cycle_silent(None, node(console_seen=True), 400.0)  # type: ignore[arg-type]

