"""A headnode's own identity, given by the driver over a virtio-serial port at each start.

Every headnode of a template starts from the same disk, and a warm start (``oscarvt.warm``)
from the same memory too: the same random pool, clock, machine-id and SSH host keys, and the
MACs of the state's first headnode. So a template that ``oscarvt image build`` made waits
for its identity on the port ``org.oscarvt.identity`` (a virtio-serial port whose host side
is a unix socket the driver listens on; QEMU connects to it as it starts):

1. the guest, booted (``systemctl is-system-running --wait``), writes ``ready``; a warm
   start's saved state was saved right after that, waiting for step 2;
2. the driver writes ``identity SEED EPOCH MACHINE_ID ED25519 ED25519_PUB ECDSA ECDSA_PUB MACS``:
   32 random bytes in hex, the host's clock (UNIX seconds), a new machine-id, two new SSH host
   keys (OpenSSH's private key files and the public keys, in base64) and, for each private NIC
   whose address the saved state has wrong, ``OLD>NEW`` (``;`` between pairs, ``-`` for none);
3. the guest mixes SEED into its random pool and makes the kernel reseed (``RNDRESEEDCRNG``;
   on amd64 QEMU's ``vmgenid`` device has already made Linux reseed when the state was
   restored), sets its clock, MACs, machine-id and host keys, has sshd load them (SIGHUP), and
   writes ``done``.

The driver made the host keys, so it knows the headnode's key before its first login: no
connection to a headnode ever takes an unknown key. A template booted by hand, without the
port, keeps the host keys it made at first boot. What the guest writes is read as untrusted:
lines of at most ``MAX_LINE`` bytes, of which only the two words above count.
"""

from __future__ import annotations

import base64
import os
import select
import socket
import time
from pathlib import Path
from typing import Callable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from oscarvt.errors import InfraError

PORT_NAME = "org.oscarvt.identity"
MAX_LINE = 64  # bytes of a guest's line that are read; the rest is dropped
DONE_TIMEOUT = 60.0  # seconds from the identity to "done" (key generation and sshd under TCG)

GUEST = Path(__file__).parent / "guest"  # the guest's side, installed in every template by image.py
GUEST_FILES = {  # where each goes in the template's root: file name in GUEST -> (path, mode)
    "oscarvt-identity": ("usr/local/sbin/oscarvt-identity", 0o755),
    "oscarvt-identity.service": ("etc/systemd/system/oscarvt-identity.service", 0o644),
}


class IdentityChannel:
    """The driver's end of one headnode's identity port: a unix socket QEMU connects to."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.unlink(missing_ok=True)
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen(1)
        self._conn: socket.socket | None = None
        self._pending = b""

    def close(self) -> None:
        for sock in (self._conn, self._server):
            if sock is not None:
                sock.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> IdentityChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait_for(self, word: str, timeout: float, give_up: Callable[[], str | None]) -> None:
        """Wait until the guest writes the line ``word``; InfraError after ``timeout`` or when ``give_up`` says why."""
        deadline = time.monotonic() + timeout
        while True:
            reason = give_up()
            if reason:
                raise InfraError(f"gave up waiting for the headnode's '{word}' on its identity port: {reason}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise InfraError(f"timed out after {timeout:.0f}s waiting for the headnode's '{word}' "
                                 "on its identity port")
            line = self._read_line(min(left, 1.0))
            if line == word:
                return

    def send_identity(self, macs: dict[str, str]) -> str:
        """Give the guest its seed, the clock, a machine-id, new SSH host keys and its MACs (``macs``: the
        saved state's address -> the profile's); return its SSH host key as ``TYPE BASE64``."""
        pairs = ";".join(f"{old}>{new}" for old, new in sorted(macs.items()) if old != new) or "-"
        ed25519_key, ed25519_public = _host_key(ed25519.Ed25519PrivateKey.generate())
        ecdsa_key, ecdsa_public = _host_key(ec.generate_private_key(ec.SECP256R1()))
        line = (f"identity {os.urandom(32).hex()} {int(time.time())} {os.urandom(16).hex()} "
                f"{ed25519_key} {ed25519_public.split()[1]} {ecdsa_key} {ecdsa_public.split()[1]} {pairs}\n")
        conn = self._connection(5.0)
        if conn is None:
            raise InfraError("QEMU did not connect to the headnode's identity port")
        try:
            conn.sendall(line.encode())
        except OSError as exc:
            raise InfraError(f"could not write to the headnode's identity port: {exc}") from None
        return ed25519_public

    def _connection(self, timeout: float) -> socket.socket | None:
        """QEMU's connection to the port, waiting up to ``timeout`` seconds for it; None if it has not come."""
        if self._conn is None:
            ready, _, _ = select.select([self._server], [], [], timeout)
            if ready:
                self._conn, _ = self._server.accept()
        return self._conn

    def _read_line(self, timeout: float) -> str | None:
        """One line the guest wrote within ``timeout`` seconds (cut at ``MAX_LINE`` bytes), or None."""
        conn = self._connection(timeout)
        if conn is None:
            return None
        if b"\n" not in self._pending:
            ready, _, _ = select.select([conn], [], [], timeout)
            if not ready:
                return None
            data = conn.recv(4096)
            if not data:
                raise InfraError("QEMU closed the headnode's identity port")
            self._pending += data
        if b"\n" not in self._pending:
            self._pending = self._pending[-MAX_LINE:]
            return None
        line, self._pending = self._pending.split(b"\n", 1)
        return line[:MAX_LINE].decode("ascii", errors="replace").strip()


def _host_key(key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> tuple[str, str]:
    """An SSH host key: its OpenSSH private key file in base64, and its public key as ``TYPE BASE64``."""
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return base64.b64encode(private).decode(), public.decode()
