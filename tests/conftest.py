"""Shared fixtures: the test guest, spec files, the real ``oscarvt`` command, clusters that clean up."""

from __future__ import annotations

import socket
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any, Callable, Iterator

import buildbot.util.ssl  # noqa: F401 (see below)
import pytest
import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Message as MessageHandler

from oscarvt.access import open_vm
from oscarvt.cluster import ClusterDir
from oscarvt.image import Template
from oscarvt.network import free_tcp_port
from oscarvt.teardown import destroy
from oscarvt_dev.ping import wait_pingable
from oscarvt_dev.testguest import TestGuest, build_test_guest

LAN_PREFIX = "192.168.77"
# buildbot.util.ssl is imported above, before any test module imports buildbot.test: that package
# turns every warning into an error from then on, and Twisted 26.10 deprecates a name buildbot.util.ssl
# uses (imported by Buildbot's mail reporter and force scheduler, so by oscarvt_master.config).


# The modules that take longest (measured with --durations, 2 cores, TCG), longest first: `make test`
# runs the suite in two processes (pytest-xdist, a module per process at a time), which end together
# when the long modules start first. Modules not named here follow, in their usual order.
LONG_MODULES = ["test_driver", "test_buildbot", "test_bad_inputs", "test_bisect", "test_matrix_build", "test_faults",
                "test_targets", "test_postgresql", "test_warm", "test_oscar_mini", "test_oscar_failures",
                "test_client_names", "test_worker_host",
                "test_image", "test_retention", "test_networks"]

LEFT_OUT_MARKS = ("matrix", "long")  # tests left out of a run whose -m does not name their mark


def _module_rank(item: pytest.Item) -> int:
    name = item.module.__name__ if isinstance(item, pytest.Function) else ""
    return LONG_MODULES.index(name) if name in LONG_MODULES else len(LONG_MODULES)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The long modules first (``LONG_MODULES``). Tests marked ``matrix`` (the long runs of every
    target) or ``long`` (other runs too long for it) are left out of the default run, which ``make test``
    must finish in time; a ``-m`` expression that names the mark runs them (``-m matrix``, ``-m long``)."""
    items.sort(key=_module_rank)  # stable: a module's tests keep their order
    named = config.getoption("markexpr") or ""
    for mark in (m for m in LEFT_OUT_MARKS if m not in named):
        left_out = [item for item in items if item.get_closest_marker(mark) is not None]
        if left_out:
            config.hook.pytest_deselected(items=left_out)
            items[:] = [item for item in items if item.get_closest_marker(mark) is None]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def last_line(self) -> str:
        lines = self.output.strip().splitlines()
        return lines[-1] if lines else ""


def oscarvt(*args: str | Path, timeout: float = 600) -> Result:
    """Run the real ``oscarvt`` command line (as a user would) and capture what it prints."""
    proc = subprocess.run([sys.executable, "-m", "oscarvt", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="session")
def guest() -> TestGuest:
    return build_test_guest()


@pytest.fixture(scope="session")
def node_iso(guest: TestGuest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A boot CD for compute nodes: the test guest, private address from its MAC."""
    return guest.build_iso(tmp_path_factory.mktemp("iso") / "node.iso", f"oscarvt.lan={LAN_PREFIX}")


def spec_data(guest: TestGuest, **sections: Any) -> dict[str, Any]:
    """A spec for a small test-guest cluster; ``sections`` replace or extend the defaults."""
    data: dict[str, Any] = {
        "template": {"kernel": str(guest.kernel), "initrd": str(guest.initrd),
                     "append": "console=ttyS0 quiet"},
        "headnode": {"memory": 256},
        "nodes": {"count": 2, "memory": 256, "disk": "64M"},
        "network": {"subnet": f"{LAN_PREFIX}.0/24"},
        "ssh": {"password": guest.password},
        "accel": "tcg",
        "timeouts": {"ssh": 120},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


def template_spec_data(template: Template, **sections: Any) -> dict[str, Any]:
    """A spec for a headnode from the Debian template and two small blank nodes."""
    data: dict[str, Any] = {**template.spec_data(), "nodes": {"count": 2, "memory": 384, "disk": "1G"},
                            "accel": "tcg"}
    data.update(sections)
    return data


def write_spec(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def clusters() -> Iterator[Callable[[Path], ClusterDir]]:
    """Register cluster folders; every one is destroyed at teardown, pass or fail."""
    made: list[ClusterDir] = []

    def register(path: Path) -> ClusterDir:
        made.append(ClusterDir(path))
        return made[-1]

    yield register
    for cluster in made:
        destroy(cluster)


def wait_reachable(cluster: ClusterDir, ips: list[str], timeout: float = 120) -> None:
    """Wait until the headnode pings every address in ``ips`` over the private LAN."""
    state = cluster.load()
    conn, opened = open_vm(cluster, state, "headnode")
    try:
        wait_pingable(conn, ips, timeout)
    finally:
        for c in opened:
            c.close()


@contextmanager
def headnode_booted(spec: Path, cluster_path: Path) -> Iterator[ClusterDir]:
    """A cluster made from ``spec`` with its headnode booted by the driver (so its SSH host key is
    recorded); destroyed after, whatever happened, and no QEMU of it left."""
    cluster = ClusterDir(cluster_path)
    try:
        for args in (["copy-vm-image", "--spec", spec], ["boot-headnode"]):
            result = oscarvt(args[0], "--cluster", cluster.path, *args[1:])
            assert result.returncode == 0, result.output
        yield cluster
    finally:
        destroy(cluster)
        assert qemu_pids_of(cluster.path) == []


SUITE = Path(__file__).parent.parent / "examples" / "oscar-mini"


def suite_line(path: str, text: str) -> int:
    """The number of the first line of oscar-mini's ``path`` that holds ``text``."""
    return next(n for n, line in enumerate((SUITE / path).read_text().splitlines(), start=1) if text in line)


def qemu_pids_of(cluster_path: Path) -> list[int]:
    """PIDs of live QEMU processes whose command line points into ``cluster_path``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if b"qemu-system" in cmdline and str(cluster_path).encode() in cmdline and state != "Z":
            found.append(int(proc.name))
    return found


def links(*args: str) -> list[str]:
    """Interface names ``ip -o link show ARGS`` lists in this network namespace."""
    out = subprocess.run(["ip", "-o", "link", "show", *args], capture_output=True, text=True).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]


def in_private_netns() -> bool:
    """True inside the test command's network namespace (only ``lo``, created by ``make test``)."""
    return sorted(links()) == ["lo"]


class SmtpSink:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps every message it receives."""

    def __init__(self) -> None:
        self.received: list[Message] = []
        self.port = free_tcp_port()
        sink = self

        class Keep(MessageHandler):
            def handle_message(self, message: Message) -> None:
                sink.received.append(message)

        self.controller = Controller(Keep(), hostname="127.0.0.1", port=self.port)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.controller.start()
    try:
        yield sink
    finally:
        sink.controller.stop()


def port_open(port: int) -> bool | None:
    """True if something accepts TCP connections on 127.0.0.1:``port`` (None otherwise, for wait_for)."""
    with socket.socket() as probe:
        return True if probe.connect_ex(("127.0.0.1", port)) == 0 else None
