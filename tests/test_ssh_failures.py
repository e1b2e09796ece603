"""When SSH to a VM fails, the verdict says why and whether the VM's QEMU is still there.

A server that takes the connection and closes it at once (as a guest's sshd does when its VM is
killed mid-handshake) makes paramiko raise exceptions that say nothing (EOFError): the reason is
then the exception's type, never empty. No VM is needed: the VM's fate is read from its files.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Iterator

import pytest

from oscarvt.backends import qemu
from oscarvt.backends.qemu import VmFiles
from oscarvt.errors import SshFailed, reason
from oscarvt.ssh import Credentials, connect


@pytest.fixture
def closing_server() -> Iterator[int]:
    """A TCP port on loopback whose server closes every connection as soon as it is made."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.close()
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        done.set()
        server.close()
        thread.join(5)


def vm_files(tmp_path: Path, pid: int | None, console: str = "") -> VmFiles:
    files = VmFiles(pidfile=tmp_path / "run" / "headnode.pid", qmp=tmp_path / "run" / "headnode.qmp",
                    console=tmp_path / "consoles" / "headnode.log")
    files.pidfile.parent.mkdir(parents=True, exist_ok=True)
    files.console.parent.mkdir(parents=True, exist_ok=True)
    files.console.write_text(console)
    if pid is not None:
        files.pidfile.write_text(f"{pid}\n")
    return files


def test_an_exception_that_says_nothing_is_named_by_its_type():
    assert reason(EOFError()) == "EOFError"
    assert reason(OSError("No route to host")) == "No route to host"


def test_a_connection_closed_at_once_names_a_reason(closing_server):
    with pytest.raises(SshFailed) as failed:
        connect("127.0.0.1", closing_server, Credentials("root", "pw"), "headnode", timeout=5)
    said = str(failed.value)
    assert said.startswith("headnode: SSH failed: ") and said != "headnode: SSH failed: ", said


def test_a_vm_whose_qemu_is_gone_leads_the_message(closing_server, tmp_path):
    files = vm_files(tmp_path, pid=None)
    with pytest.raises(SshFailed) as failed:
        connect("127.0.0.1", closing_server, Credentials("root", "pw"), "headnode", timeout=5,
                fate=lambda: qemu.vm_fate(files))
    said = str(failed.value)
    assert said.startswith(f"headnode: its QEMU is gone (killed or crashed; console {files.console}); "
                           "headnode: SSH failed: "), said
    assert failed.value.blame == "infrastructure"


def test_a_pidfile_of_another_process_is_no_live_qemu(tmp_path):
    """A pidfile naming a live process that is not this VM's QEMU (a PID reused after a kill)."""
    gone, said = qemu.vm_fate(vm_files(tmp_path, pid=1))
    assert gone and said.startswith("its QEMU is gone (killed or crashed; console "), said


def test_a_guest_that_rebooted_says_so(tmp_path):
    console = "Will now restart.\n" + qemu.REBOOTED_LINE + "\n"
    gone, said = qemu.vm_fate(vm_files(tmp_path, pid=None, console=console))
    assert gone and said.startswith("its QEMU is gone (the guest rebooted; console "), said


def test_a_vm_whose_qemu_is_still_there_says_so_after_the_failure(closing_server, tmp_path):
    with pytest.raises(SshFailed) as failed:
        connect("127.0.0.1", closing_server, Credentials("root", "pw"), "headnode", timeout=5,
                fate=lambda: (False, "its QEMU (pid 4242) is still running"))
    said = str(failed.value)
    assert said.startswith("headnode: SSH failed: ") and said.endswith(
        " (headnode: its QEMU (pid 4242) is still running)"), said
