"""OSCAR's cluster test results read from its step 8 output (``oscarvt.oscar_tests``).

The samples in tests/data/oscar_*.txt are OSCAR's own output (repository oscar-cluster/oscar at
0c35a10c), captured by running its testing/test_cluster, testprint, ssh_user_tests and the
packages' test scripts (maui test_root; openmpi and torque test_user, torque pbs_test) with
stdin /dev/null as oscarvt runs OSCAR, under /tmp/o8: the cluster was stubbed (SIS and ODA
modules, ``getpwnam("oscartst")`` in a scratch home, ``ssh``, ``ping``, ``su``, maui's init
script; test_cluster's two absolute paths, /usr/lib/oscar/testing and /bin/su, pointed at the
scratch), APItest (repository oscar-cluster/oscar-apitest) ran for real. Before and after,
main_cli's lines as OSCAR's Logger prints them at OSCAR_VERBOSE=3 and its ``die`` (main_cli
218-224):

- oscar_step8_passing.txt: base and maui selected, all well (test_cluster exit 0);
- oscar_step8_failing.txt: maui down, oscarnode2's /home not mounted, the node cannot ssh
  back, torque's qmgr missing, Open MPI not installed (skipped), pvm's APItests failing (exit 1);
- oscar_step8_no_term.txt: TERM unset (an SSH command without a terminal), testprint dies;
- oscar_testprint_terminal.txt: testprint on a terminal 100 columns wide (``script``);
- oscar_test_cluster_wait.txt: ``test_cluster --wait`` (as the GUI runs it), with its summary.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from oscarvt.oscar_tests import MAX_LINES, MAX_RESULTS, MAX_TEXT, MESSAGE_CHARS, NAME_CHARS, oscar_test_results

DATA = Path(__file__).parent / "data"
SUITE = Path(__file__).parent.parent / "examples" / "oscar-mini"
STTY = "\x1b[1Gstty: 'standard input': Inappropriate ioctl for device\n"


def sample(name: str) -> bytes:
    return (DATA / name).read_bytes()


def result(klass: str, name: str, outcome: str, message: str = "") -> dict[str, str]:
    return {"class": klass, "name": name, "result": outcome, "message": message, "seconds": ""}


def check_fields(results: list[dict[str, str]]) -> None:
    """Every field is one printable line of bounded length; the result one of three words."""
    for entry in results:
        assert set(entry) == {"class", "name", "result", "message", "seconds"}
        assert entry["result"] in ("passed", "failed", "skipped")
        assert entry["seconds"] == ""
        for key, limit in (("class", NAME_CHARS), ("name", NAME_CHARS), ("message", MESSAGE_CHARS)):
            assert entry[key].isprintable() and len(entry[key]) <= limit, entry


def test_a_passing_run_gives_each_testprint_result_with_the_script_that_printed_it():
    results = oscar_test_results(sample("oscar_step8_passing.txt"))
    assert results == [
        result("maui", "Maui service check:ma", "passed"),  # the label as testprint cut it (21 columns)
        result("test_cluster", "/home mounts", "passed"),
        result("ssh_user_tests", "SSH ping test", "passed"),
        result("ssh_user_tests", "SSH server->node", "passed"),
        result("ssh_user_tests", "SSH node->server", "passed"),
    ]


def test_a_failing_run_gives_failures_with_what_the_test_said_skips_and_apitest_results():
    results = oscar_test_results(sample("oscar_step8_failing.txt"))
    check_fields(results)
    assert results[:7] == [
        result("maui", "Maui service check:ma", "failed",
               "Starting maui: failed | Could not start maui, please check configuration and rerun tests"),
        result("test_cluster", "/home mounts", "failed", "1 nodes failed"),  # the status column
        result("ssh_user_tests", "SSH ping test", "passed"),
        result("ssh_user_tests", "SSH server->node", "passed"),
        result("ssh_user_tests", "SSH node->server", "failed"),  # stty's noise is no message
        result("test_user", "TORQUE default queue", "failed",
               "/tmp/o8/home/oscartst/torque/test_user: 1: /opt/pbs/bin/qmgr: not found"),
        # what pbs_test printed before Open MPI's test began (its progress line) is not Open MPI's
        result("test_user", "Open MPI (via TORQUE)", "skipped"),
    ]
    apitests = results[7:]
    assert [r["name"] for r in apitests] == [
        "pvmd-path-ls.apt", "modulecmd-path-ls.apt", "pvm-module-list.apt", "pvm-module-show.apb", "pvm-module.apb",
        "pvmd-path-which.apt", "envvar-pvm_root.apt", "envvar-pvm_arch.apt", "envvar.apb", "install_tests.apb"]
    assert {(r["class"], r["result"]) for r in apitests} == {("pvm", "failed")}
    assert apitests[2]["message"] == ("FAILDEP: failed dependency(s).' PREREQ: 'modulecmd-path-ls.apt' "
                                      "Expected: PASS, Actual: FAIL")
    assert apitests[0]["message"] == ""


def test_an_apitest_pass_is_passed():
    text = ("\nRunning Validation tests for munge\n"
            "[\x1b[00;32mPASS\x1b[0m]       2026-12-07 10:03:31   munge_local.apt\n"
            "[\x1b[01;33mTIMEDOUT\x1b[0m]   2026-12-07 10:03:32   munge_remunge.apt\n")
    assert oscar_test_results(text) == [result("munge", "munge_local.apt", "passed"),
                                        result("munge", "munge_remunge.apt", "failed", "TIMEDOUT")]


def test_on_a_terminal_the_progress_is_overwritten_and_the_columns_are_wider():
    results = oscar_test_results(sample("oscar_testprint_terminal.txt"))  # CR LF line ends
    assert results == [
        result("test_cluster", "TORQUE default queue definition", "passed"),  # 41 columns: not cut
        result("test_cluster", "TORQUE Shell Test", "failed"),  # after its countdown (--status 60, 59)
        result("test_cluster", "Open MPI (via TORQUE)", "skipped"),
    ]


def test_testprint_pads_and_cuts_bytes():
    # testing/testprint line 81 under Perl without 'use utf8': columns of 21 bytes
    text = (b"\x1b[1GCaf\xc3\xa9 r\xc3\xa9seau         n\xc5\x93ud1 \xc3\xa9chou\xc3\xa9      "
            b"[\x1b[1m\x1b[31mFAILED\x1b[0m]\n"
            b"\x1b[1GV\xc3\xa9rification des n\xc5\x93                      [\x1b[1m\x1b[33mSKIPPED\x1b[0m]\n")
    assert oscar_test_results(text) == [result("test_cluster", "Café réseau", "failed", "nœud1 échoué"),
                                        result("test_cluster", "Vérification des nœ", "skipped")]


def test_without_term_testprint_dies_and_that_is_one_failure():
    results = oscar_test_results(sample("oscar_step8_no_term.txt"))
    assert results == [result("testprint", "testprint", "failed",
                              "testprint died 12 times, so those tests printed no result: TERM not set")]


def test_summary_lines_are_no_results():
    # test_cluster --wait (lines 69-87): its summary counts failed scripts; main_cli's lines (221-224)
    wait = oscar_test_results(sample("oscar_test_cluster_wait.txt"))
    assert [(r["class"], r["name"], r["result"]) for r in wait] == [
        ("maui", "Maui service check:ma", "failed"), ("test_cluster", "/home mounts", "passed"),
        ("ssh_user_tests", "SSH ping test", "passed"), ("ssh_user_tests", "SSH server->node", "passed"),
        ("ssh_user_tests", "SSH node->server", "passed")]
    summaries = ("\nAll tests passed, your OSCAR cluster is now ready to compute!\n\n"
                 "There are 3 failed/skipped tests (see above).\n"
                 "---------------- Step 8 - Successfully tested the cluster setup ----------------\n"
                 "Failed on Step 8 - Test Cluster Setup at ./main_cli line 224.\n")
    assert oscar_test_results(summaries) == []
    assert len(oscar_test_results(sample("oscar_step8_failing.txt"))) == 17  # its die line is none either


def test_a_verbose_header_names_the_package_of_user_tests():
    # OSCAR_VERBOSE=5: lib/OSCAR/Package.pm 294 prints "About to run SCRIPT as USER" as a subsection
    text = ("Performing user tests...\n"
            "------------ About to run /home/oscartst/torque/test_user as oscartst ------------\n"
            + STTY + "TORQUE default queue                       [\x1b[1m\x1b[32mPASSED\x1b[0m]\n")
    assert oscar_test_results(text) == [result("torque", "TORQUE default queue", "passed")]


def test_control_characters_escapes_and_odd_bytes_never_reach_a_field():
    text = ("\x1b]0;owned\x07\x1b[2J\x1b[?25l" + "bell\x07 nul\x00 del\x7f".ljust(21) + " " + "x\x1b" .ljust(21)
            + "[\x1b[1m\x1b[31mFAILED\x1b[0m]\n"
            + "nbsp\xa0test".ljust(21) + " " + "\ud800 lone".ljust(21) + "[PASSED]\n"
            + "tab\there".ljust(21) + " " + "".ljust(21) + "[SKIPPED]\n")
    results = oscar_test_results(text)
    check_fields(results)
    assert [r["result"] for r in results] == ["failed", "passed", "skipped"]
    assert results[0]["name"] == repr("bell\x07 nul\x00 del\x7f")  # quoted as errors.shown quotes
    assert results[2]["name"] == "tab here"
    raw = (b"\xff\xfe garbage \xc3\x28\n" + b"\x1b[1G" + b"ok \xe2\x82".ljust(21) + b" " + b"".ljust(21)
           + b"[\x1b[1m\x1b[32mPASSED\x1b[0m]\n")
    results = oscar_test_results(raw)
    check_fields(results)
    assert [r["result"] for r in results] == ["passed"]


def test_a_terminal_shows_backspaces_and_carriage_returns_so_does_the_reader():
    text = ("SSH ping test".ljust(21) + " " + "".ljust(21) + "[FAILED]\b\b\b\b\b\b\bPASSED]\n"
            "spinner |\r" + "SSH server->node".ljust(21) + " " + "".ljust(21) + "[FAILED]\n")
    assert [(r["name"], r["result"]) for r in oscar_test_results(text)] == [
        ("SSH ping test", "passed"), ("SSH server->node", "failed")]


def test_credentials_in_a_message_are_masked():
    text = "fetch https://user:secret@repo.example/x failed\n" + "repo".ljust(21) + " " + "".ljust(21) + "[FAILED]\n"
    assert oscar_test_results(text)[0]["message"] == "fetch https://user:***@repo.example/x failed"


@pytest.mark.parametrize("text", [
    "About to run " + "a" * 200_000 + " a",
    "[" + "A" * 200_000 + "] 2026-12-07 10:03:31 ",
    "[PASS] " + " " * 200_000 + "2026-12-07 10:03:31" + " " * 200_000,
    " at " * 100_000 + "testprint line 1.",
    "x at /testprint line 1, <" + "<" * 200_000 + "> line 1.",
    "\x1b[" + "0" * 200_000,
    "\x1b]" + "x" * 200_000,
    "\b" * 200_000 + "x" * 200_000,
    ("a" * 20 + "\x1b[1G") * 20_000,
    " " * 400_000 + "[PASSED]",
    "-" * 200_000 + " About to run",
])
def test_hostile_lines_cost_bounded_time(text):
    for copies in (1, 20):  # one line, and many (the text is cut at MAX_TEXT)
        started = time.monotonic()
        results = oscar_test_results("\n".join([text] * copies))
        assert time.monotonic() - started < 5
        check_fields(results)


def test_results_are_bounded():
    line = "t".ljust(21) + " " + "".ljust(21) + "[PASSED]\n"
    started = time.monotonic()
    results = oscar_test_results(line * (MAX_RESULTS + 1000))
    assert len(results) == MAX_RESULTS
    died = "TERM not set at /usr/lib/oscar/testing/testprint line 63.\n"
    many = oscar_test_results("x" * 50_000 + "\n" + died * (MAX_LINES + 10))
    assert len(many) == 1 and many[0]["message"].startswith(f"testprint died {MAX_LINES} times")  # the last lines
    for text in ("\n" * (MAX_TEXT + 10), "x\n" * MAX_TEXT, b"\xff\n" * MAX_TEXT):
        assert oscar_test_results(text) == []
    assert time.monotonic() - started < 10


@pytest.fixture
def mini_step8(tmp_path: Path):
    """oscar-mini's step 8 script, run on this host with two clients and ``ssh`` stubbed
    (NODE_DOWN: a node that does not answer); its output and exit status."""
    suite = tmp_path / "suite"
    (suite / "testing").mkdir(parents=True)
    (suite / "lib").mkdir()
    shutil.copy(SUITE / "testing" / "test_cluster", suite / "testing")
    common = (SUITE / "lib" / "common.sh").read_text()
    for old, new in (("OSCAR_LOG_DIR=/var/log/oscar", f"OSCAR_LOG_DIR={tmp_path}/log"),
                     ("OSCAR_CONF_DIR=/etc/oscar", f"OSCAR_CONF_DIR={tmp_path}/etc")):
        assert old in common
        common = common.replace(old, new)
    (suite / "lib" / "common.sh").write_text(common)
    for folder in ("etc", "log", "bin"):
        (tmp_path / folder).mkdir()
    (tmp_path / "etc" / "clients").write_text(
        "oscarnode1 192.168.77.11 255.255.255.0 192.168.77.1 oscarimage cluster\n"
        "oscarnode2 192.168.77.12 255.255.255.0 192.168.77.1 oscarimage cluster\n")
    (tmp_path / "etc" / "oscar.conf").write_text("OSCAR_SERVER_ADDRESS = 192.168.77.1/24\n")
    ssh = tmp_path / "bin" / "ssh"
    ssh.write_text("""#!/bin/bash
while [ $# -gt 0 ]; do case "$1" in -o) shift 2 ;; -*) shift ;; *) break ;; esac; done
node=${1#root@}; shift
[ "$node" != "$NODE_DOWN" ] || { echo "ssh: connect to host $node port 22: Connection timed out" >&2; exit 255; }
case "$*" in
  hostname) echo "$node" ;;
  "cat /etc/hosts") printf '192.168.77.11 oscarnode1\\n192.168.77.12 oscarnode2\\n' ;;
  ping*) echo "1 packets transmitted, 1 received, 0% packet loss, time 0ms" ;;
  *uname*) echo "$node 6.1.0-28-cloud-amd64" ;;
esac
""")
    ssh.chmod(0o755)

    def run(down: str = "") -> tuple[int, str]:
        env = {"PATH": f"{tmp_path}/bin:/usr/bin:/bin", "OSCAR_HOME": str(suite), "NODE_DOWN": down}
        done = subprocess.run(["bash", str(suite / "testing" / "test_cluster")], env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=60)
        return done.returncode, (done.stdout + done.stderr).decode(errors="replace")

    return run, tmp_path / "log" / "cluster_tests.xml"


def test_oscar_minis_step_8_prints_its_results_as_oscar_does(mini_step8):
    run, report = mini_step8
    status, output = run()
    assert status == 0, output
    assert output.startswith("Performing root tests...\n\x1b[1Goscarnode1 ssh" + " " * 29 + "[\x1b[1m\x1b[32mPASSED")
    assert oscar_test_results(output) == [
        result("test_cluster", f"{node} {test}", "passed")
        for node in ("oscarnode1", "oscarnode2") for test in ("ssh", "hosts", "server")
    ] + [result("test_cluster", "command-on-all", "passed")]
    assert report.read_text().count("<testcase ") == 7  # its JUnit report, as before

    status, output = run(down="oscarnode2")
    assert status == 1
    results = oscar_test_results(output)
    assert [(r["name"], r["result"]) for r in results] == [
        ("oscarnode1 ssh", "passed"), ("oscarnode1 hosts", "passed"), ("oscarnode1 server", "passed"),
        ("oscarnode2 ssh", "failed"), ("oscarnode2 hosts", "failed"), ("oscarnode2 server", "failed"),
        ("command-on-all", "failed")]
    assert results[3]["message"] == ("expected 'oscarnode2', got: ssh: connect to host oscarnode2 port 22: "
                                     "Connection timed out")
    assert results[6]["message"] == "no answer from: oscarnode2"
    assert 'failure message="no answer from: oscarnode2"' in report.read_text()
