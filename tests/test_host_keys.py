"""The headnode's SSH host key: recorded once, then required before any credential is sent.

Without a VM: a paramiko SSH server on 127.0.0.1 stands in for the headnode's sshd
(tests/test_guests.py replaces the key of a real headnode's dropbear).
"""

from __future__ import annotations

import json
import socket
import threading
from typing import Iterator

import paramiko
import pytest

from oscarvt.access import open_headnode
from oscarvt.cluster import ClusterDir
from oscarvt.errors import InfraError, InputError
from oscarvt.session import Session
from oscarvt.ssh import Connection, Credentials, HostKeyChanged, connect
from oscarvt.state import ClusterState, StateError, Vm

CREDS = Credentials("root", password="the-password")


class FakeSshd(paramiko.ServerInterface):
    """An SSH server on 127.0.0.1 with one host key; it notes every login attempt."""

    def __init__(self, key: paramiko.PKey) -> None:
        self.key = key
        self.logins: list[tuple[str, str]] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.transports: list[paramiko.Transport] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:  # closed
                return
            try:
                transport = paramiko.Transport(sock)
                transport.add_server_key(self.key)
                self.transports.append(transport)
                transport.start_server(server=self)
            except Exception:  # noqa: BLE001 (a client that went away during the key exchange)
                sock.close()

    def get_allowed_auths(self, username: str) -> str:
        return "password"

    def check_auth_password(self, username: str, password: str) -> int:
        self.logins.append((username, password))
        return paramiko.AUTH_SUCCESSFUL

    def close(self) -> None:
        self.listener.close()
        for transport in self.transports:
            transport.close()


@pytest.fixture
def sshd() -> Iterator[FakeSshd]:
    server = FakeSshd(paramiko.ECDSAKey.generate(bits=256))
    yield server
    server.close()


def key_text(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.get_base64()}"


def first_contact(sshd: FakeSshd) -> str:
    with connect("127.0.0.1", sshd.port, CREDS, "headnode") as conn:
        return conn.host_key


def test_first_contact_takes_any_key_and_tells_which(sshd):
    with connect("127.0.0.1", sshd.port, CREDS, "headnode") as conn:
        assert conn.host_key == key_text(sshd.key)
        assert conn.host_key_fingerprint == f"ecdsa-sha2-nistp256 {sshd.key.fingerprint}"
    assert sshd.logins == [("root", "the-password")]


def test_the_recorded_key_lets_the_login_through(sshd):
    recorded = first_contact(sshd)
    with connect("127.0.0.1", sshd.port, CREDS, "headnode", host_key=recorded) as conn:
        assert isinstance(conn, Connection)
    assert len(sshd.logins) == 2


@pytest.mark.parametrize("other", [lambda: paramiko.ECDSAKey.generate(bits=256),  # same type, new key
                                   lambda: paramiko.ECDSAKey.generate(bits=384)])  # another type
def test_another_key_is_refused_before_any_credential_is_sent(sshd, other):
    recorded = first_contact(sshd)
    impostor = FakeSshd(other())
    try:
        with pytest.raises(HostKeyChanged) as caught:
            connect("127.0.0.1", impostor.port, CREDS, "headnode", host_key=recorded)
        assert impostor.logins == []  # neither the password nor a command reached it
    finally:
        impostor.close()
    assert isinstance(caught.value, InfraError) and caught.value.blame == "infrastructure"
    assert str(caught.value) == (
        f"headnode's SSH host key changed: recorded ecdsa-sha2-nistp256 {sshd.key.fingerprint}, "
        f"offered {impostor.key.get_name()} {impostor.key.fingerprint}; refused before logging in")


@pytest.mark.parametrize("damaged", ["ssh-ed25519 AAAA", "ssh-nonsense AAAAC3Nz", "ecdsa-sha2-nistp256 !!!"])
def test_a_damaged_recorded_key_is_one_line(sshd, damaged):
    with pytest.raises(InputError, match=r"^headnode: its recorded SSH host key \(state.json\) is not a usable '"):
        connect("127.0.0.1", sshd.port, CREDS, "headnode", host_key=damaged)
    assert sshd.logins == []


def state_with(**headnode: object) -> ClusterState:
    return ClusterState(cluster_id=7, spec={"template": "/x.qcow2", "ssh": {"password": "pw"}}, vms={
        "headnode": Vm("headnode", 0, ip="192.168.77.1", mac="52:54:00:12:34:01", **headnode)})


def test_a_state_without_the_key_loads_and_gets_no_connection(tmp_path):
    old = json.loads(state_with(ssh_port=2222).to_json())
    del old["vms"]["headnode"]["host_key"]  # a state.json from before the key was recorded
    state = ClusterState.from_json(json.dumps(old))
    assert state.vms["headnode"].host_key is None
    with pytest.raises(InputError, match=r"^headnode's SSH host key is not in the cluster state \(boot-headnode "
                                         r"records it when headnode first lets it log in\); no connection without it$"):
        open_headnode(Session(ClusterDir(tmp_path), state))


def test_the_recorded_key_survives_the_state_file_and_a_damaged_one_is_named():
    key = key_text(paramiko.ECDSAKey.generate(bits=256))
    assert ClusterState.from_json(state_with(host_key=key).to_json()).vms["headnode"].host_key == key
    with pytest.raises(StateError, match=r'^field "vms.headnode.host_key" is not an SSH host key \(TYPE BASE64\)$'):
        ClusterState.from_json(state_with(host_key="ssh-ed25519 AAAA; rm -rf /").to_json())
