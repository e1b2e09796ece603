"""workers/setup-worker.sh for real, as root, in a disposable root made for the test.

The root is an overlay of this host's ``/`` (read-only below) with its writes in a tmpfs, in
private mount, PID and network namespaces (``unshare``) and chrooted into: the script adds its
user, folder, venv, worker and systemd unit there, and all of it is gone when the namespaces'
last process ends. No network: every Debian package is already installed (the script then runs
no apt-get) and pip installs from a wheelhouse that the test repacks from this interpreter's own
installed distributions (``--wheels``). The headnode template is not built (``--no-template``:
mmdebstrap needs a Debian mirror, and there is none without network).

Then systemd 252 boots in that root as PID 1 of its namespaces (a container, in a cgroup of its
own): the installed unit starts the worker, and a unit with the same sandbox boots a QEMU guest.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import importlib.metadata
import os
import re
import signal
import subprocess
import time
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pytest
import yaml
from conftest import spec_data
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from oscarvt.waiting import wait_for

if TYPE_CHECKING:
    from oscarvt_dev.testguest import TestGuest

ROOT = Path(__file__).parent.parent
SCRIPT = ROOT / "workers/setup-worker.sh"
USER = "oscarvt"
DIR = "/var/lib/oscarvt-worker"
UNIT = "/etc/systemd/system/oscarvt-worker.service"
MASTER = "127.0.0.1:9989"
PASSWORD = "s3cret worker password"
# A plain root's environment: nothing of this test's (PYTHONPATH, the venv) leaks into the script.
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="makes namespaces and mounts: needs root")

# In the new namespaces: a tmpfs for the overlay's writes, the overlay of /, /dev, /proc, /sys
# and an empty /run (so no systemd runs there yet), then chroot. PID 1 sleeps until the test kills
# it, or (with $2 = systemd) waits for a line in /run/boot and becomes systemd, the cgroup
# namespace's root its cgroup tree, its console a file.
MAKE_ROOT = r"""
set -e
base=$1
mount -t tmpfs -o mode=0700 oscarvt-test "$base"
mkdir "$base/upper" "$base/work" "$base/root"
mount -t overlay oscarvt-test -o "lowerdir=/,upperdir=$base/upper,workdir=$base/work" "$base/root"
mount --rbind /dev "$base/root/dev"
mount -t proc proc "$base/root/proc"
mount -t sysfs -o ro sysfs "$base/root/sys"
mount -t tmpfs -o mode=0755 oscarvt-test "$base/root/run"
ip link set lo up
if [ "$2" = systemd ]; then
    mount -t cgroup2 cgroup2 "$base/root/sys/fs/cgroup"
    mkfifo "$base/root/run/boot"
    echo ready
    exec chroot "$base/root" /bin/sh -c 'read line < /run/boot
        exec env container=oscarvt-test /lib/systemd/systemd --unit=multi-user.target > /run/console 2>&1'
fi
echo ready
exec chroot "$base/root" /bin/sleep infinity
"""


def cgroup2_mount() -> Path | None:
    """Where this host mounts the cgroup v2 hierarchy (/sys/fs/cgroup, or .../unified on a hybrid host)."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[fields.index("-") + 1] == "cgroup2":
            return Path(fields[4])
    return None


class DisposableRoot:
    """The overlay root in its own namespaces; ``run`` runs a command in it as root. With ``cgroup``
    (a new cgroup v2 folder), it is in that cgroup and its own cgroup namespace, ready to boot systemd."""

    def __init__(self, base: Path, cgroup: Path | None = None) -> None:
        base.mkdir()
        unshare = ["unshare", "--mount", "--pid", "--net", "--fork", "--kill-child", "--propagation", "private"]
        argv = [*unshare, "/bin/sh", "-c", MAKE_ROOT, "make-root", str(base), "sleep"]
        if cgroup is not None:
            argv = ["/bin/sh", "-c", f'echo $$ > {cgroup}/cgroup.procs && exec "$@"', "in-cgroup",
                    *unshare, "--cgroup", "/bin/sh", "-c", MAKE_ROOT, "make-root", str(base), "systemd"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
        self.init = 0
        try:
            assert self.proc.stdout is not None and self.proc.stderr is not None
            if self.proc.stdout.readline().strip() != "ready":
                self.proc.wait(timeout=30)
                raise AssertionError(f"no disposable root: {self.proc.stderr.read().strip()}")
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            self.init = int(children[0])  # PID 1 of the namespaces, chrooted into the overlay
        except BaseException:
            self.close()
            raise

    def run(self, *argv: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["nsenter", "--target", str(self.init), "--mount", "--pid", "--net", "--root",
                               "--wd", "--", *argv], capture_output=True, text=True, env=ENV, timeout=timeout)

    def out(self, *argv: str) -> str:
        result = self.run(*argv)
        assert result.returncode == 0, f"{argv}: {result.stdout}{result.stderr}"
        return result.stdout

    def close(self) -> None:
        """Kill what the test started: unshare, then the namespaces' PID 1 (the rest dies with it)."""
        for pid in (self.proc.pid, self.init):
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.proc.wait(timeout=60)


@pytest.fixture
def root(tmp_path: Path) -> Iterator[DisposableRoot]:
    made = DisposableRoot(tmp_path / "overlay")
    try:
        yield made
    finally:
        made.close()


def worker_requirements() -> list[str]:
    """What setup-worker.sh installs beside oscarvt: setup.py's install_requires and its buildbot-worker pin."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    buildbot = next(ast.literal_eval(node.value) for node in ast.walk(tree) if isinstance(node, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == "BUILDBOT" for t in node.targets))
    install = next(ast.literal_eval(node.value) for node in ast.walk(tree)
                   if isinstance(node, ast.keyword) and node.arg == "install_requires")
    return [*install, *(r for r in buildbot if r.startswith("buildbot-worker=="))]


def make_wheelhouse(folder: Path) -> Path:
    """Wheels of those requirements and all they need, repacked from this interpreter's installed
    distributions (each was installed from a wheel, whose files and WHEEL tags it keeps)."""
    folder.mkdir()
    todo = [Requirement(text) for text in worker_requirements()]
    done: set[str] = set()
    while todo:
        requirement = todo.pop()
        if canonicalize_name(requirement.name) in done:
            continue
        done.add(canonicalize_name(requirement.name))
        dist = importlib.metadata.distribution(requirement.name)
        repack(dist, folder)
        for text in dist.requires or []:
            needed = Requirement(text)
            extras = {"", *requirement.extras}
            if needed.marker is None or any(needed.marker.evaluate({"extra": extra}) for extra in extras):
                todo.append(needed)
    return folder


def repack(dist: importlib.metadata.Distribution, folder: Path) -> None:
    files = [f for f in dist.files or [] if not str(f).startswith("..") and "__pycache__" not in f.parts]
    info = next(f.parts[0] for f in files if f.parts[0].endswith(".dist-info") and f.name == "WHEEL")
    tags = [line.split(":", 1)[1].strip().split("-") for line in (dist.read_text("WHEEL") or "").splitlines()
            if line.startswith("Tag:")]
    tag = "-".join(".".join(sorted({t[part] for t in tags})) for part in range(3))  # py2.py3-none-any
    name, version = info[: -len(".dist-info")].rsplit("-", 1)
    record = []
    with zipfile.ZipFile(folder / f"{name}-{version}-{tag}.whl", "w", zipfile.ZIP_DEFLATED) as wheel:
        for f in files:
            path = Path(str(f.locate()))
            if f.parts[0] == info and f.name in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json") \
                    or not path.is_file():
                continue
            data = path.read_bytes()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            wheel.writestr(str(f), data)
            record.append(f"{f},sha256={digest},{len(data)}")
        record.append(f"{info}/RECORD,,")
        wheel.writestr(f"{info}/RECORD", "\n".join(record) + "\n")


def setup_worker(root: DisposableRoot, *args: str) -> subprocess.CompletedProcess[str]:
    return root.run("bash", str(SCRIPT), *args)


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = (result.stdout + result.stderr).strip().splitlines()
    return lines[-1] if lines else ""


def snapshot(root: DisposableRoot) -> dict[str, str]:
    """What a second run must leave as it was (the venv's files are rewritten by pip: its list of
    distributions counts instead)."""
    return {
        "passwd": root.out("getent", "passwd", USER),
        "groups": root.out("id", "-nG", USER),
        "unit": root.out("cat", UNIT),
        "link": root.out("readlink", f"/etc/systemd/system/multi-user.target.wants/{Path(UNIT).name}"),
        "files": "".join(sorted(root.out("find", DIR, "-path", f"{DIR}/venv", "-prune", "-o", "-printf",
                                         "%P %M %u %g %s\n").splitlines(keepends=True))),
        "contents": root.out("sh", "-c", f"cd {DIR} && cat worker-password worker/buildbot.tac"),
        "venv": root.out("runuser", "-u", USER, "--", f"{DIR}/venv/bin/pip", "list", "--format=freeze"),
    }


def test_setup_worker_installs_a_private_hardened_worker(root: DisposableRoot, tmp_path: Path) -> None:
    wheels = make_wheelhouse(tmp_path / "wheels")
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    args = ["--master", MASTER, "--name", "hv1", "--password-file", str(secret), "--no-template",
            "--wheels", str(wheels), "--memory-max", "16G", "--arches", "amd64,arm64"]
    assert root.run("id", USER).returncode != 0, "the disposable root already has the worker's user"

    first = setup_worker(root, *args)
    assert first.returncode == 0, first.stdout + first.stderr
    assert last_line(first) == (f"PASS: setup-worker: worker hv1 for {MASTER} installed and enabled; systemd is not "
                                f"running here: it starts at boot, or now with: runuser -u {USER} -- "
                                f"{DIR}/venv/bin/buildbot-worker start {DIR}/worker")
    assert "--> Debian packages: all installed" in first.stdout  # arm64's too, so apt-get did not run

    # The user, in group kvm, its home the worker's folder.
    assert root.out("getent", "passwd", USER).split(":")[5] == DIR
    assert "kvm" in root.out("id", "-nG", USER).split()
    uid, gid = root.out("id", "-u", USER).strip(), root.out("id", "-g", USER).strip()

    # The folder is 0700 and the user's, nothing in it is anyone else's to read, the password is 0600.
    assert root.out("stat", "-c", "%a %u %g", DIR).split() == ["700", uid, gid]
    assert root.out("find", DIR, "!", "-type", "l", "-perm", "/go=rwx") == ""
    assert root.out("find", DIR, "!", "-user", USER) == ""
    assert root.out("stat", "-c", "%a %u", f"{DIR}/worker-password").split() == ["600", uid]
    assert root.out("cat", f"{DIR}/worker-password") == PASSWORD + "\n"

    # The venv has oscarvt (its own copy, not this checkout) and buildbot-worker; the worker reads
    # its password from the file and keeps the private umask, the password is in no other file.
    as_user = ["runuser", "-u", USER, "--"]
    imported = root.out(*as_user, f"{DIR}/venv/bin/python", "-c",
                        "import buildbot_worker, oscarvt; print(oscarvt.__file__, buildbot_worker.version)")
    assert imported.startswith(f"{DIR}/venv/lib/") and imported.split()[1] == "4.3.0"
    assert root.out(*as_user, f"{DIR}/venv/bin/oscarvt", "--help").startswith("usage: oscarvt")
    tac = root.out("cat", f"{DIR}/worker/buildbot.tac")
    assert root.out("stat", "-c", "%a", f"{DIR}/worker/buildbot.tac").strip() == "600"
    assert f"passwd = open('{DIR}/worker-password').read().rstrip('\\r\\n')\n" in tac
    assert "umask = 0o077\n" in tac and "buildmaster_host = '127.0.0.1'\n" in tac and "port = 9989\n" in tac
    loaded = root.out(*as_user, f"{DIR}/venv/bin/python", "-c",  # the tac's lines, not the tac (it opens a log)
                      f"exec(''.join(line for line in open('{DIR}/worker/buildbot.tac') "
                      "if line.startswith(('workername =', 'passwd =', 'umask =')))); "
                      "print(repr((workername, passwd, umask)))")
    assert loaded.strip() == repr(("hv1", PASSWORD, 0o077))
    assert root.run("grep", "-rlF", "s3cret", DIR, "--exclude=worker-password").stdout == ""

    # The unit: filled in, public, enabled offline, and systemd's own checks accept it.
    unit = root.out("cat", UNIT)
    assert "@" not in unit
    for line in (f"User={USER}", f"ReadWritePaths={DIR}", "MemoryMax=16G", "UMask=0077", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "PrivateTmp=yes", "DevicePolicy=closed", "DeviceAllow=/dev/kvm rw",
                 f"ExecStart={DIR}/venv/bin/buildbot-worker start --nodaemon {DIR}/worker"):
        assert line in unit.splitlines()
    assert root.out("stat", "-c", "%a %U", UNIT).split() == ["644", "root"]
    assert root.out("readlink", "/etc/systemd/system/multi-user.target.wants/oscarvt-worker.service") == UNIT + "\n"
    verify = root.run("systemd-analyze", "verify", UNIT)
    assert verify.returncode == 0 and verify.stdout + verify.stderr == "", verify.stdout + verify.stderr
    security = root.run("systemd-analyze", "security", "--offline=true", UNIT)
    assert security.returncode == 0, security.stdout + security.stderr
    exposure = re.search(r"Overall exposure level for oscarvt-worker.service: (\d+\.\d) (\w+)", security.stdout)
    assert exposure is not None, security.stdout
    assert float(exposure[1]) <= 4.0 and exposure[2] == "OK", exposure[0]

    # A second run: the same verdict, and nothing changed.
    before = snapshot(root)
    second = setup_worker(root, *args)
    assert second.returncode == 0, second.stdout + second.stderr
    assert last_line(second) == last_line(first)
    assert snapshot(root) == before

    # A run after the checkout changed (in the overlay only) installs the new oscarvt, same version or not.
    init = ROOT / "oscarvt/__init__.py"
    root.out("sh", "-c", f"echo '# changed in the disposable root' >> {init}")
    third = setup_worker(root, *args)
    assert last_line(third) == last_line(first)
    installed = root.out("cat", f"{DIR}/venv/lib/python3.11/site-packages/oscarvt/__init__.py")
    assert installed.endswith("# changed in the disposable root\n")
    assert not init.read_text().endswith("# changed in the disposable root\n")  # the host's checkout is as it was


def test_setup_worker_refuses_a_bad_folder_or_memory_cap_in_one_line(root: DisposableRoot, tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text(PASSWORD)
    common = ["--master", MASTER, "--name", "hv1", "--password-file", str(secret)]
    for flags, verdict in [
        (["--dir", "/home/worker"], "FAIL: setup-worker: --dir must be an absolute path (letters, digits, '._-') "
                                    "outside /home, /root, /tmp, /run, not '/home/worker'"),
        (["--dir", "/srv/../etc"], "FAIL: setup-worker: --dir must be an absolute path (letters, digits, '._-') "
                                   "outside /home, /root, /tmp, /run, not '/srv/../etc'"),
        (["--memory-max", "lots"], "FAIL: setup-worker: --memory-max must be a size like 16G, a percentage of the "
                                   "host's memory or infinity, not 'lots'"),
        (["--wheels", str(tmp_path)], f"FAIL: setup-worker: --wheels: no *.whl in '{tmp_path}'"),
        (["--arches", "amd64,sparc"], "FAIL: setup-worker: --arches must be amd64, arm64 or both (a,b), "
                                      "not 'amd64,sparc'"),
        (["--suites", "bookworm;reboot"], "FAIL: setup-worker: --suites must be Debian suite names like bookworm "
                                          "(a,b), not 'bookworm;reboot'"),
    ]:
        result = setup_worker(root, *common, *flags)
        assert (result.returncode, result.stdout + result.stderr) == (1, verdict + "\n")
    assert root.run("id", USER).returncode != 0  # nothing was done


# Run by a unit with the worker's sandbox (the installed unit, another ExecStart): one line per
# check, then a cluster of the test guest, booted, reached over SSH and destroyed.
PROBE = r"""#!/bin/sh
d=@DIR@
echo "umask $(umask)"
touch $d/probe-file && echo "new file mode $(stat -c %a $d/probe-file)"
touch /etc/probe 2>&1 | sed 's/^/write \/etc: /'
ls /root 2>&1 | sed 's/^/list \/root: /'
echo "own /tmp holds $(ls -A /tmp | wc -l) files"
echo "processes of other users: $(ps -e -o user= | grep -cvx @USER@)"
for dev in /dev/kvm /dev/net/tun /dev/fuse; do
    [ -e $dev ] || continue
    $d/venv/bin/python -c "import os, sys; os.close(os.open(sys.argv[1], os.O_RDWR)); print(sys.argv[1], 'opens')" \
        $dev 2>&1 | sed "s|.*Error: |$dev: |"
done
ip tuntap add dev probetap mode tap 2>&1 | sed 's/^/ip tuntap add: /'
unshare --net true 2>&1 | sed 's/^/unshare --net: /'
oscarvt=$d/venv/bin/oscarvt cluster=$d/worker/probe-builder/build/cluster
$oscarvt copy-vm-image --cluster $cluster --spec $d/probe/spec.yaml 2>&1 | tail -n 1
$oscarvt boot-headnode --cluster $cluster 2>&1 | tail -n 1
$oscarvt ssh --cluster $cluster headnode -- uname -r 2>&1 | tail -n 1
$oscarvt destroy --cluster $cluster 2>&1 | tail -n 1
echo "probe done"
"""


@pytest.fixture
def cgroup() -> Iterator[Path]:
    """A cgroup v2 folder of its own for the booted root; removed after the root's processes are gone."""
    hierarchy = cgroup2_mount()
    if hierarchy is None:
        pytest.skip("this host has no cgroup v2 hierarchy for systemd")
    own = next(line[3:] for line in Path("/proc/self/cgroup").read_text().splitlines() if line.startswith("0::"))
    folder = hierarchy / own.lstrip("/") / f"oscarvt-test-{os.getpid()}"
    try:
        folder.mkdir()
    except OSError as error:
        pytest.skip(f"cannot make a cgroup for systemd: {error}")
    try:
        yield folder
    finally:
        for _ in range(300):  # the kernel empties the tree once the namespaces' processes are reaped
            if "populated 0" in (folder / "cgroup.events").read_text():
                break
            time.sleep(0.1)
        for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            sub.rmdir()
        folder.rmdir()


@pytest.mark.vm
def test_systemd_runs_the_worker_and_qemu_inside_the_unit(tmp_path: Path, cgroup: Path, guest: TestGuest) -> None:
    root = DisposableRoot(tmp_path / "overlay", cgroup)
    try:
        secret = tmp_path / "password"
        secret.write_text(PASSWORD)
        result = setup_worker(root, "--master", MASTER, "--name", "hv1", "--password-file", str(secret),
                              "--no-template", "--wheels", str(make_wheelhouse(tmp_path / "wheels")),
                              "--memory-max", "2G")
        assert result.returncode == 0, result.stdout + result.stderr

        # The probe: the installed unit with another ExecStart, the test guest and its spec in DIR.
        probe = tmp_path / "probe"
        probe.mkdir()
        (probe / "probe.sh").write_text(PROBE.replace("@DIR@", DIR).replace("@USER@", USER))
        (probe / "spec.yaml").write_text(yaml.safe_dump(spec_data(
            guest, nodes={"count": 0}, template={"kernel": f"{DIR}/probe/{guest.kernel.name}",
                                                 "initrd": f"{DIR}/probe/{guest.initrd.name}"})))
        root.out("sh", "-c", f"cp -r {probe} {DIR}/probe && cp {guest.kernel} {guest.initrd} {DIR}/probe/ && "
                             f"chmod 0755 {DIR}/probe/probe.sh && chown -R {USER}: {DIR}/probe")
        root.out("sh", "-c", f"sed -e 's|^ExecStartPre=.*||' -e 's|^ExecStart=.*|ExecStart={DIR}/probe/probe.sh|' "
                             "-e 's|^Type=.*|Type=oneshot|' -e 's|^Restart.*||' -e 's|^\\[Install\\]||' "
                             f"-e 's|^WantedBy=.*||' {UNIT} > /etc/systemd/system/oscarvt-probe.service")
        # Only the worker among the units an admin enabled on this host (in the disposable root only).
        root.out("find", "/etc/systemd/system", "-path", "*.wants/*", "!", "-name", "oscarvt-worker.service",
                 "-delete")

        root.out("sh", "-c", "echo boot > /run/boot")
        for _ in range(600):  # systemd makes /run/systemd/system as it starts, then its bus socket for systemctl
            if root.run("test", "-d", "/run/systemd/system", "-a", "-S", "/run/systemd/private").returncode == 0:
                break
            time.sleep(0.1)
        booted = root.run("systemctl", "is-system-running", "--wait", timeout=180)
        assert booted.stdout.strip() in ("running", "degraded"), booted.stdout + root.out("cat", "/run/console")

        # The worker started at boot (the wants link), reap ran first, the cap is in place.
        show = root.out("systemctl", "show", "-p", "ActiveState,MainPID,MemoryMax,User", "oscarvt-worker")
        assert "ActiveState=active" in show and "MemoryMax=2147483648" in show and f"User={USER}" in show, show
        # Its main process is buildbot-worker (read again for a while: the PID may still be in exec, where
        # /proc/PID/cmdline is empty for a moment, under load).
        def main_command() -> str | None:
            main_pid = re.search(r"MainPID=(\d+)", root.out("systemctl", "show", "-p", "MainPID", "oscarvt-worker"))
            assert main_pid is not None
            command = root.run("cat", f"/proc/{main_pid[1]}/cmdline").stdout
            return command if "buildbot-worker" in command else None
        wait_for(main_command, timeout=20, interval=0.2, what="the worker's main process to be buildbot-worker")
        journal = root.out("journalctl", "--no-pager", "-o", "cat", "-u", "oscarvt-worker")
        assert f"PASS: reap: 0 left-behind clusters destroyed, 0 kept for a person, 0 in use, under {DIR}/worker" \
            in journal, journal

        started = root.run("systemctl", "start", "oscarvt-probe", timeout=300)
        said = root.out("journalctl", "--no-pager", "-o", "cat", "-u", "oscarvt-probe", "_UID=" +
                        root.out("id", "-u", USER).strip())
        assert started.returncode == 0, started.stderr + said
        lines = said.splitlines()
        expected = ["umask 0077", "new file mode 600",
                    "write /etc: touch: cannot touch '/etc/probe': Read-only file system",
                    "list /root: ls: cannot open directory '/root': Permission denied",
                    "own /tmp holds 0 files", "processes of other users: 0",
                    "ip tuntap add: ioctl(TUNSETIFF): Operation not permitted",
                    "unshare --net: unshare: unshare failed: Operation not permitted",
                    "/dev/net/tun opens"]
        expected += ["/dev/kvm opens"] if Path("/dev/kvm").exists() else []
        expected += ["/dev/fuse: [Errno 1] Operation not permitted: '/dev/fuse'"] if Path("/dev/fuse").exists() else []
        for line in expected:
            assert line in lines, said
        assert any(line.startswith("PASS: copy-vm-image: ") for line in lines), said
        assert any(line.startswith("PASS: boot-headnode: headnode up") for line in lines), said
        assert "PASS: ssh: headnode: 'uname -r' exited 0" in lines, said
        assert any(line.startswith("PASS: destroy: 1 VMs stopped") for line in lines), said
        assert lines[-1] == "probe done", said
    finally:
        root.close()
