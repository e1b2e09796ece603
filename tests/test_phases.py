"""The driver phases' pieces that need no VM: input files, monitor lines, test reports, the mail
(sent for real to an aiosmtpd sink on 127.0.0.1), and their errors."""

from __future__ import annotations

import email
import json
import tarfile
import time
from pathlib import Path

import pytest
from conftest import oscarvt

from oscarvt import monitor
from oscarvt.cluster import ClusterDir
from oscarvt.errors import OscarvtError
from oscarvt.phases.inputs import define_clients, input_files, mac_file, network_clients
from oscarvt.phases.oscar import junit_results
from oscarvt.spec import spec_from_dict

STATE = {"vms": {
    "headnode": {"role": "headnode", "ip": "192.168.77.1", "mac": "52:54:00:12:34:01"},
    "oscarnode1": {"role": "node", "ip": "192.168.77.2", "mac": "52:54:00:12:34:02"},
    "oscarnode2": {"role": "node", "ip": "192.168.77.3", "mac": "52:54:00:12:34:03"},
}}


def spec():
    return spec_from_dict({"template": "/x.qcow2", "ssh": {"password": "pw"}, "oscar": {"image": "img7"}},
                          Path("/"), check_files=False)


def answers(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_define_clients_answers_follow_the_spec():
    assert answers(define_clients(spec(), STATE)) == [
        "1", "img7", "2", "oscardomain", "3", "oscarnode", "4", "2", "5", "1", "6", "0",
        "7", "192.168.77.2", "8", "255.255.255.0", "9", "192.168.77.1", "10", "11"]


def test_the_mac_file_and_networking_answers_name_every_node():
    assert mac_file(STATE) == "oscarnode1 52:54:00:12:34:02\noscarnode2 52:54:00:12:34:03\n"
    assert answers(network_clients())[:2] == ["1", "/var/lib/oscarvt/inputs/client.macs"]


def test_input_overrides_replace_and_add(tmp_path):
    (tmp_path / "defineclients").write_text("11\n")
    (tmp_path / "buildimage").write_text("9\n")
    files = input_files(spec(), STATE, tmp_path)
    assert files["defineclients"] == "11\n" and files["buildimage"] == "9\n"
    assert "client.macs" in files and "networkclients" in files
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(OscarvtError, match=r"notes.txt: not an input file"):
        input_files(spec(), STATE, tmp_path)


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
        {"class": "n1", "name": "ssh", "result": "passed", "message": ""},
        {"class": "n2", "name": "ssh", "result": "failed", "message": "no route"}]
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
    state = {**STATE, "cluster_id": 7, "spec": {"template": "/x.qcow2", "ssh": {"password": "pw"}},
             "logs": {"dir": str(logs), "tarball": str(cluster.path / "logs.tar.gz")},
             "phases": [{"phase": "boot-headnode", "result": "passed", "start": now, "end": now, "seconds": 30.0,
                         "message": ""},
                        {"phase": "wait-for-nodes", "result": "failed", "start": now, "end": now, "seconds": 61.5,
                         "message": "oscarnode2: oscar-installer: ERROR: fdisk /dev/vda failed"}]}
    cluster.state_file.write_text(json.dumps(state))
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


def test_send_logs_errors_are_one_line(tmp_path):
    cluster = failed_cluster(tmp_path)
    result = oscarvt("send-logs", "--cluster", cluster.path, "--to", "dev@example.org", "--smtp", "nohost")
    assert (result.returncode, result.output) == (1, "FAIL: send-logs: --smtp must be HOST:PORT, not 'nohost'\n")
    result = oscarvt("send-logs", "--cluster", cluster.path, "--to", "dev@example.org", "--smtp", "127.0.0.1:9")
    assert result.returncode == 1
    assert result.output.splitlines()[-1].startswith("FAIL: send-logs: cannot send mail through 127.0.0.1:9: ")
