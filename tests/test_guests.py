"""Guests stay inside: what a virtual cluster does never reaches the worker host.

A real headnode (the test guest) whose root login shell is replaced, as code under test could
replace it, by one that answers every ``tar -c`` with a crafted stream: ``../escape``, an absolute path, a
symlink to /etc/shadow, a device node, a FIFO, a name of 300 bytes (no Linux file system makes one) and
a 2 GiB file whose data never ends.

A plain headnode whose /var/log/oscar holds what the worker must not take: a tree too deep, a path
too long, names with a terminal escape and a newline; each is refused by name and the rest arrives.

A plain headnode: a credentialed checkout URL reaches its VCS and nothing else (the verdict, the
events, state.json show it masked); then its SSH host key is replaced, and the driver refuses
to log in to it again.
"""

from __future__ import annotations

import base64
import io
import json
import posixpath
import re
import shlex
import tarfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import paramiko
import pytest
from conftest import headnode_booted, oscarvt, spec_data, write_spec

from oscarvt.access import credentials, open_vm
from oscarvt.cluster import ClusterDir
from oscarvt.errors import shown
from oscarvt.ssh import Connection, connect
from oscarvt.unpack import MAX_DEPTH, MAX_PATH
from oscarvt.waiting import wait_for

pytestmark = pytest.mark.vm


def hostile_stream() -> bytes:
    """What the hostile tar sends for the headnode's logs: one good log, then every kind of attack."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w", format=tarfile.GNU_FORMAT) as tar:
        def add(name: str, kind: bytes = tarfile.REGTYPE, body: bytes = b"", link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.size, info.linkname = kind, len(body), link
            tar.addfile(info, io.BytesIO(body) if body else None)
        add("var/log/oscar/oscarinstall.log", body=b"Step 1 - Select packages\n")
        add("var/log/oscar/\x1b[31m" + "a" * 300, body=b"too long a name\n")
        add("var/log/oscar/after-the-long-name.log", body=b"still copied\n")
        add("../escape", body=b"escaped\n")
        add("/tmp/oscarvt-escape", body=b"escaped\n")
        add("var/log/oscar/shadow", tarfile.SYMTYPE, link="/etc/shadow")
        add("var/log/oscar/console", tarfile.CHRTYPE)
        add("var/log/oscar/pipe", tarfile.FIFOTYPE)
        huge = tarfile.TarInfo("var/log/oscar/sparse.img")
        huge.size = 2 << 30  # its header, then zeros without end: the host must not wait for 2 GiB
        tar.fileobj.write(huge.tobuf(tarfile.GNU_FORMAT))  # type: ignore[union-attr]
        tar.fileobj.write(b"\0" * 4096)  # type: ignore[union-attr]
    return data.getvalue()


@contextmanager
def booted_headnode(guest, root: Path) -> Iterator[ClusterDir]:
    """A test-guest headnode booted by the driver (so its SSH host key is recorded), destroyed after."""
    spec = write_spec(root / "spec.yaml", spec_data(guest, nodes={"count": 0}))
    with headnode_booted(spec, root / "c") as cluster:
        yield cluster


@contextmanager
def headnode_connection(cluster: ClusterDir) -> Iterator[Connection]:
    """The test's own SSH connection to the cluster's headnode."""
    conn, opened = open_vm(cluster, cluster.load(), "headnode")
    try:
        yield conn
    finally:
        for c in opened:
            c.close()


@pytest.fixture(scope="module")
def hostile(guest, tmp_path_factory) -> Iterator[ClusterDir]:
    with booted_headnode(guest, tmp_path_factory.mktemp("hostile")) as cluster:
        with headnode_connection(cluster) as conn:
            conn.write_file("/root/hostile.tar", hostile_stream())
            # root's login shell answers every tar with the crafted stream and zeros without end
            conn.write_file("/root/shell", b'#!/bin/sh\ncase "$2" in *"tar -c"*) cat /root/hostile.tar; '
                            b'exec cat /dev/zero;; esac\nexec /bin/sh "$@"\n', mode=0o755)
            conn.check_output("mkdir -p /var/log/oscar && echo /root/shell >> /etc/shells && "
                              "sed -i 's#^root:\\(.*\\):[^:]*$#root:\\1:/root/shell#' /etc/passwd && "
                              "grep '^root:.*:/root/shell$' /etc/passwd")
        yield cluster


def test_grab_logs_writes_nothing_outside_its_folder_and_names_each_refused_entry(hostile, tmp_path):
    result = oscarvt("grab-logs", "--cluster", hostile.path, "--dest", tmp_path / "logs", timeout=300)
    assert result.returncode == 0, result.output
    assert result.last_line.startswith("PASS: grab-logs: ") and "(see missing.txt)" in result.last_line
    assert not Path("/tmp/oscarvt-escape").exists()
    headnode = tmp_path / "logs" / "headnode"
    assert {str(p.relative_to(headnode)) for p in headnode.rglob("*")} == {
        "var", "var/log", "var/log/oscar", "var/log/oscar/oscarinstall.log",
        "var/log/oscar/after-the-long-name.log"}  # no ../escape beside it
    copied = tmp_path / "logs" / "headnode" / "var" / "log" / "oscar"
    assert (copied / "oscarinstall.log").read_text() == "Step 1 - Select packages\n"
    assert (copied / "after-the-long-name.log").read_text() == "still copied\n"
    missing = (tmp_path / "logs" / "missing.txt").read_text()
    for refused in ("'../escape': not under the copied path", "'/tmp/oscarvt-escape': not under the copied path",
                    "'var/log/oscar/shadow': a link (to '/etc/shadow')", "'var/log/oscar/console': not a regular file",
                    "'var/log/oscar/pipe': not a regular file",
                    shown("var/log/oscar/\x1b[31m" + "a" * 300) + ": a name of 305 bytes, over the 255 a file",
                    "'var/log/oscar/sparse.img': 2048 MiB, over the 1024 MiB a file may have; copy stopped"):
        assert f"headnode: refused {refused}" in missing, missing


@pytest.fixture(scope="module")
def headnode(guest, tmp_path_factory) -> Iterator[ClusterDir]:
    """A plain test-guest headnode."""
    with booted_headnode(guest, tmp_path_factory.mktemp("headnode")) as cluster:
        yield cluster


def on_headnode(cluster: ClusterDir, command: str) -> str:
    with headnode_connection(cluster) as conn:
        return conn.check_output(command)


def refused_by_the_worker(path: str) -> list[str]:
    """The lines of missing.txt for what grab-logs must refuse of the guest's ``path``: each folder on
    the way below var/log/oscar (a guest's tar names each) and the path itself, if too deep or too long."""
    names = path.split("/")
    lines = []
    for entry in ("/".join(names[:depth]) for depth in range(4, len(names) + 1)):
        depth, size = entry.count("/") + 1, len(entry.encode())
        if depth > MAX_DEPTH:
            lines.append(f"headnode: refused {shown(entry)}: {depth} names deep, over the {MAX_DEPTH} a copy allows")
        elif size > MAX_PATH:
            lines.append(f"headnode: refused {shown(entry)}: a path of {size} bytes, over the {MAX_PATH} a copy allows")
    return lines


def test_grab_logs_refuses_what_the_worker_cannot_take_by_name_and_copies_the_rest(headnode, tmp_path):
    deep_folder = "var/log/oscar/deep\x1b[31m"  # a terminal escape in a name
    deep = deep_folder + "/d" * 40 + "/f.log"  # 45 names
    long = "var/log/oscar/" + "/".join(["line\nbreak" + "p" * 240] * 5) + "/f.log"  # 1275 bytes, names of 250
    arrive = {"var/log/oscar/" + "n" * 255: "255\n", "var/log/oscar/oscarinstall.log": "Step 1\n",
              "etc/oscar/oscar.conf": "conf\n"}  # before, among and after the refused entries in tar's order
    on_headnode(headnode, "cd / && " + " && ".join(
        f"mkdir -p {shlex.quote(posixpath.dirname(path))} && printf %s {shlex.quote(body)} > {shlex.quote(path)}"
        for path, body in [(deep, "deep\n"), (long, "long\n"), *arrive.items()]))
    result = oscarvt("grab-logs", "--cluster", headnode.path, "--dest", tmp_path / "logs", timeout=300)
    assert result.returncode == 0, result.output
    assert result.last_line.startswith("PASS: grab-logs: ") and "(see missing.txt)" in result.last_line
    copied = tmp_path / "logs" / "headnode"
    assert {path: (copied / path).read_text() for path in arrive} == arrive
    missing = (tmp_path / "logs" / "missing.txt").read_text().splitlines()
    refused = [line for line in missing if line.startswith("headnode: refused ")]
    assert sorted(refused) == sorted(refused_by_the_worker(deep) + refused_by_the_worker(long))
    assert len(refused) == (45 - MAX_DEPTH) + 2 and all(line.isprintable() for line in missing)  # escaped
    assert any(r"deep\x1b[31m/" in line for line in refused) and any(r"line\nbreak" in line for line in refused)
    assert (copied / deep_folder / ("d/" * (MAX_DEPTH - 4))).is_dir()  # as deep as a copy allows
    assert not (copied / deep_folder / ("d/" * (MAX_DEPTH - 3))).exists()  # and nothing deeper


SECRET = "s3cret-pw"
FAKE_GIT = b"""#!/bin/sh
# git as checkout-oscar runs it: 'clone --quiet -- URL DIR', then '-C DIR rev-parse HEAD'
case "$1" in
clone) printf '%s\\n' "$@" > /tmp/git-args
       case "$4" in *unreachable*) echo "fatal: unable to access '$4/': Could not resolve host" >&2; exit 128;; esac
       mkdir -p "$5";;
-C) echo 0c35a10c0c35a10c0c35a10c0c35a10c0c35a10c;;
esac
"""


def test_a_credentialed_url_reaches_the_vcs_and_nothing_else(headnode, tmp_path, monkeypatch):
    with headnode_connection(headnode) as conn:
        conn.write_file("/bin/git", FAKE_GIT, mode=0o755)  # the test guest has no git: one that echoes the URL
    events = tmp_path / "events.jsonl"
    monkeypatch.setenv("OSCARVT_EVENTS", str(events))
    failed = oscarvt("checkout-oscar", "--cluster", headnode.path,
                     "--url", f"https://oscar:{SECRET}@unreachable.example.org/oscar.git")
    assert failed.returncode == 3, failed.output
    masked = "https://oscar:***@unreachable.example.org/oscar.git"
    assert failed.last_line == (f"FAIL: checkout-oscar: infrastructure: git checkout of {masked} failed on the "
                                f"headnode: fatal: unable to access '{masked}/': Could not resolve host")
    written = [failed.output, events.read_text(), headnode.state_file.read_text()]
    assert on_headnode(headnode, "cat /tmp/git-args").splitlines() == [  # the VCS got the real URL, after '--'
        "clone", "--quiet", "--", f"https://oscar:{SECRET}@unreachable.example.org/oscar.git", "/opt/oscar"]
    passed = oscarvt("checkout-oscar", "--cluster", headnode.path,
                     "--url", f"https://oscar:{SECRET}@git.example.org/oscar.git")
    assert passed.returncode == 0, passed.output
    written += [passed.output, events.read_text(), headnode.state_file.read_text()]
    assert json.loads(written[-1])["checkout"]["source"] == "https://oscar:***@git.example.org/oscar.git"
    assert not [text for text in written if SECRET in text]


def fingerprint(key: str) -> str:
    kind, data = key.split()
    return f"{kind} {paramiko.PKey.from_type_string(kind, base64.b64decode(data)).fingerprint}"


def test_a_replaced_host_key_is_refused_by_every_later_connection(headnode, tmp_path):
    recorded = headnode.load().vms["headnode"].host_key
    port = headnode.load().vms["headnode"].ssh_port
    assert recorded and port
    creds = credentials(headnode.spec(headnode.load()))
    with connect("127.0.0.1", port, creds, "headnode") as conn:
        assert conn.host_key == recorded  # boot-headnode recorded the key the guest's dropbear has
    # As OSCAR's code could, as root: new host keys, and dropbear started again with them.
    on_headnode(headnode, "setsid sh -c 'sleep 1; kill $(pidof dropbear); rm -f /etc/dropbear/dropbear_*; "
                          "dropbear -R -E -p 22 2>>/var/log/dropbear.log' </dev/null >/dev/null 2>&1 &")

    def new_key() -> str | None:
        try:
            with connect("127.0.0.1", port, creds, "headnode", timeout=5) as conn:
                return conn.host_key if conn.host_key != recorded else None
        except Exception:  # noqa: BLE001 (dropbear is restarting)
            return None
    offered = wait_for(new_key, timeout=60, what="dropbear with a new host key", interval=1)
    line = (f"headnode's SSH host key changed: recorded {fingerprint(recorded)}, offered {fingerprint(offered)}; "
            "refused before logging in")
    result = oscarvt("ssh", "--cluster", headnode.path, "headnode", "--", "hostname")
    assert (result.returncode, result.stdout, result.last_line) == (3, "", f"FAIL: ssh: infrastructure: {line}")
    result = oscarvt("checkout-oscar", "--cluster", headnode.path, "--source", tmp_path)
    assert (result.returncode, result.last_line) == (3, f"FAIL: checkout-oscar: infrastructure: {line}")
    assert headnode.load().phases[-1].blame == "infrastructure"
    with connect("127.0.0.1", port, creds, "headnode") as conn:
        log = conn.check_output("cat /var/log/dropbear.log")
    since = log.split("Running in background", 1)[1]  # the new dropbear's log, from the probe that saw its key
    after_probe = since.split("Password auth succeeded", 1)[1]
    # Connections by client port: a probe try that timed out under load may have its exit logged only now.
    begun = re.findall(r"Child connection from [\d.]+:(\d+)", after_probe)
    logged_in = re.findall(r"Password auth succeeded for '\w+' from [\d.]+:(\d+)", after_probe)
    ended_before_auth = re.findall(r"Exit before auth from <[\d.]+:(\d+)>", after_probe)
    assert len(begun) == 3 and logged_in == begun[2:]  # the driver's two connections, then this one
    assert set(begun[:2]) <= set(ended_before_auth)  # the driver's two ended before logging in
