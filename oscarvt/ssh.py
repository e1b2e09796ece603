"""SSH to the cluster's VMs with paramiko: wait until a guest answers, run, copy files.

The headnode is reached through its forwarded port on 127.0.0.1; a compute node
through the headnode (a direct-tcpip channel to the node's private address).
Files and folders travel as a tar stream over an exec channel, so a guest needs
only ``tar`` (busybox's will do), not an SFTP server.
"""

from __future__ import annotations

import base64
import io
import logging
import posixpath
import shlex
import socket
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Callable, Sequence, cast

import paramiko

from oscarvt.errors import InfraError, InputError, OscarvtError, ProductError, SshFailed, reason, shown
from oscarvt.lines import complete_lines
from oscarvt.unpack import DamagedStream, EmptyStream, Unpacked, unpack
from oscarvt.waiting import wait_for

logging.getLogger("paramiko").setLevel(logging.CRITICAL)  # no tracebacks while sshd starts

COMMAND_TIMEOUT = 300.0  # seconds a command may take unless its caller says otherwise
OPEN_TIMEOUT = 30.0      # seconds to open a channel
IDLE_TIMEOUT = 120.0     # seconds a copy may go without moving a byte
KEEPALIVE = 15           # seconds between SSH keepalives


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str | None = None
    key: Path | None = None


Fate = Callable[[], tuple[bool, str]]
"""What became of a VM, asked when SSH to it fails: whether its QEMU is gone, and in words
(``oscarvt.backends.qemu.vm_fate``)."""


class Connection:
    """An open SSH connection to one VM."""

    def __init__(self, client: paramiko.SSHClient, label: str, fate: Fate | None = None) -> None:
        self.client = client
        self.label = label
        self.fate = fate  # what became of the VM, asked when the connection fails (``lost``)
        self.reused = False  # kept open for the next phase (``oscarvt.access.reused_connections``)

    def lost(self, what: str) -> SshFailed:
        """The error for a broken connection: ``what`` failed, and whether the VM's QEMU is still there."""
        return lost(self.label, what, self.fate)

    @property
    def active(self) -> bool:
        """True while the connection works (a dead guest or forward ends it)."""
        transport = self.client.get_transport()
        return transport is not None and transport.is_active()

    def run(self, command: str, output: Callable[[bytes], None] | None = None,
            timeout: float | None = COMMAND_TIMEOUT) -> int:
        """Run ``command``; stream its stdout and stderr (merged) to ``output``; return its status.

        It may take ``timeout`` seconds in all (None: no limit, for a person at the ``ssh`` verb);
        past that the channel is closed and an InfraError raised.
        """
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise self.lost(f"SSH connection to {self.label} is closed")
        deadline = None if timeout is None else time.monotonic() + timeout
        channel = None
        try:
            channel = transport.open_session(timeout=OPEN_TIMEOUT)
            channel.set_combine_stderr(True)
            channel.exec_command(command)
            while True:
                channel.settimeout(None if deadline is None else max(0.01, deadline - time.monotonic()))
                data = channel.recv(65536)
                if not data:
                    break
                if output is not None:
                    output(data)
            left = None if deadline is None else max(0.01, deadline - time.monotonic())
            if not channel.status_event.wait(left):
                raise socket.timeout
            return channel.recv_exit_status()
        except socket.timeout:
            raise InfraError(f"{self.label}: command timed out after {timeout}s: {command}") from None
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise self.lost(f"SSH connection to {self.label} failed: {reason(exc)}") from None
        finally:  # on a connection kept for later phases, too, no channel is left open
            if channel is not None:
                channel.close()

    def check_output(self, command: str, timeout: float | None = 120) -> str:
        """Run ``command`` and return its output; an error if it exits non-zero."""
        return self.check_output_bytes(command, timeout).decode(errors="replace")

    def check_output_bytes(self, command: str, timeout: float | None = 120) -> bytes:
        """Run ``command`` and return its output as bytes; an error if it exits non-zero."""
        chunks: list[bytes] = []
        status = self.run(command, chunks.append, timeout)
        data = b"".join(chunks)
        if status != 0:
            last = data.decode(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            raise InfraError(f"{self.label}: '{command}' exited {status}: {last[0]}")
        return data

    def start(self, command: str) -> Background:
        """Start ``command`` and return at once; its output (stdout and stderr) is taken as it comes."""
        channel = self._session(command)
        channel.set_combine_stderr(True)
        return Background(channel, self.label, command, self.fate)

    def follow(self, remote: str, offset: int) -> Background:
        """Follow the file ``remote`` from byte ``offset`` as it grows (``tail -F``), without polling the VM:
        the guest spends nothing while the file is quiet. Closing it stops the ``tail``."""
        tail = f"tail -c +{offset + 1} -F -- {shlex.quote(remote)} 2>/dev/null"
        return self.start(f"{tail} & t=$!; cat >/dev/null; kill $t 2>/dev/null")

    def write_file(self, remote: str, data: bytes, mode: int = 0o644) -> None:
        """Write ``data`` to the file ``remote`` on the VM (its folder must exist)."""
        quoted = shlex.quote(remote)
        self._stream_in(f"cat > {quoted}.tmp && chmod {mode:o} -- {quoted}.tmp && mv -- {quoted}.tmp {quoted}", data)

    def put(self, local: Path, remote_dir: str, name: str | None = None, replace: bool = False) -> None:
        """Copy a file or folder into ``remote_dir`` on the VM (created if missing), like ``scp -r``,
        in one request. ``name``: what it is called there (its own name unless given); ``replace``:
        whatever had that name there is removed first."""
        if not local.exists():
            raise InputError(f"{local}: no such file or folder to copy")
        name = name or local.name
        if "/" in name or name in ("", ".", ".."):
            raise InputError(f"cannot copy {local} to {remote_dir} as {name!r}: not a plain name")
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            tar.add(str(local), arcname=name)
        quoted = shlex.quote(remote_dir)
        if not replace:
            self._stream_in(f"mkdir -p -- {quoted} && tar -x -f - -C {quoted}", buffer.getvalue())
            return
        # the old one goes first and the new one appears whole or not at all (a copy that fails leaves none)
        target, staging = (shlex.quote(posixpath.join(remote_dir, n)) for n in (name, f".{name}.oscarvt-new"))
        self._stream_in(f"rm -rf -- {target} {staging} && mkdir -p -- {staging} && tar -x -f - -C {staging} && "
                        f"mv -- {staging}/{shlex.quote(name)} {target} && rmdir -- {staging}", buffer.getvalue())

    def get(self, remote: str, local_dir: Path) -> tuple[Path, Unpacked]:
        """Copy a file or folder from the VM into ``local_dir``: the local path, and what was written
        and refused. The guest's tar stream is checked entry by entry (``oscarvt.unpack``)."""
        path = PurePosixPath(remote)
        what = f"copy of {remote}"
        command = f"tar -c -f - -C {shlex.quote(str(path.parent))} -- {shlex.quote(path.name)}"
        unpacked, status, damaged = self._copy_out(command, local_dir, [path.name], what)
        if status > 0:
            raise InfraError(f"{self.label}: cannot copy {remote} (tar exited {status})")
        if damaged is not None:  # an empty stream too: tar sends at least the path asked for
            raise ProductError(f"{self.label}: {what}: the guest sent no usable tar stream ({damaged})")
        return local_dir / path.name, unpacked

    def get_paths(self, remotes: Sequence[str], local_dir: Path) -> tuple[Unpacked, list[str], int]:
        """Copy the absolute paths ``remotes`` from the VM, each to its own path under ``local_dir``
        (``/var/log/oscar`` to ``local_dir/var/log/oscar``), in one request, the stream checked as
        ``get``'s is: what was written and refused, which of ``remotes`` the stream did not hold (not
        there), and tar's exit status (GNU tar's 1: a file changed as it read it; what it sent is
        written all the same; -1: a cap stopped the copy)."""
        names = [posixpath.relpath(posixpath.normpath(remote), "/") for remote in remotes]
        if not names or any(not remote.startswith("/") or name == ".." or name.startswith("../") or name == "."
                            for remote, name in zip(remotes, names, strict=True)):
            raise InputError(f"cannot copy {', '.join(remotes) or 'nothing'}: give absolute paths below /")
        listed = " ".join(shlex.quote(name) for name in names)
        what = f"copy of {', '.join(remotes)}"
        command = (f'cd / || exit 1; set --; for p in {listed}; do [ -e "$p" ] && set -- "$@" "$p"; done; '
                   f'[ $# = 0 ] || exec tar -c -f - -- "$@"')  # nothing there: no stream at all
        unpacked, status, damaged = self._copy_out(command, local_dir, names, what)
        if status > 0 and damaged is not None:
            raise InfraError(f"{self.label}: cannot {what} (tar exited {status})")
        if damaged is not None and not isinstance(damaged, EmptyStream):  # no bytes: nothing there
            raise ProductError(f"{self.label}: {what}: the guest sent no usable tar stream ({damaged})")
        missing = [] if unpacked.stopped else \
            [remote for remote, name in zip(remotes, names, strict=True) if name not in unpacked.seen]
        return unpacked, missing, status

    def _copy_out(self, command: str, local_dir: Path, tops: Sequence[str],
                  what: str) -> tuple[Unpacked, int, DamagedStream | None]:
        """Run ``command``, a tar writing to its stdout, and unpack its stream into ``local_dir`` (names
        under ``tops`` only): what was written, tar's exit status (-1 when a cap stopped the copy and
        the rest was left unread) and, if the bytes were no tar stream, why (``EmptyStream``: no
        bytes at all). The channel is closed in the end."""
        channel = self._session(command)
        local_dir.mkdir(parents=True, exist_ok=True)
        try:
            try:
                with channel.makefile("rb") as stream:
                    unpacked = unpack(cast(IO[bytes], stream), local_dir, tops)  # file-like enough
                damaged = None
            except DamagedStream as exc:
                unpacked, damaged = Unpacked(), exc
            if unpacked.stopped:  # the rest is not read: the guest's tar is left to its broken pipe
                return unpacked, -1, damaged
            return unpacked, self._exit_status(channel, what), damaged
        except (socket.timeout, paramiko.SSHException, EOFError) as exc:
            raise self.lost(f"{self.label}: {what} failed: {str(exc) or 'timed out'}") from None
        finally:
            channel.close()

    @property
    def host_key(self) -> str:
        """The key the SSH server proved it holds, as known_hosts writes it: ``TYPE BASE64``."""
        key = self._server_key()
        return f"{key.get_name()} {key.get_base64()}"

    @property
    def host_key_fingerprint(self) -> str:
        """The server's key as people compare it: ``TYPE SHA256:...`` (ssh-keygen -l's hash)."""
        return _described(self._server_key())

    def close(self) -> None:
        """Close the connection, unless it is kept for the next phase (``reused``; then the block closes it)."""
        if not self.reused:
            self.client.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _server_key(self) -> paramiko.PKey:
        transport = self.client.get_transport()
        if transport is None:
            raise self.lost(f"SSH connection to {self.label} is closed")
        return transport.get_remote_server_key()

    def _session(self, command: str) -> paramiko.Channel:
        """A channel running ``command``, each read or write on it bounded by ``IDLE_TIMEOUT``."""
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise self.lost(f"SSH connection to {self.label} is closed")
        try:
            channel = transport.open_session(timeout=OPEN_TIMEOUT)
            channel.settimeout(IDLE_TIMEOUT)
            channel.exec_command(command)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise self.lost(f"SSH connection to {self.label} failed: {reason(exc)}") from None
        return channel

    def _exit_status(self, channel: paramiko.Channel, what: str) -> int:
        if not channel.status_event.wait(IDLE_TIMEOUT):
            channel.close()
            raise InfraError(f"{self.label}: {what}: no exit status within {IDLE_TIMEOUT:.0f}s")
        return channel.recv_exit_status()

    def _stream_in(self, command: str, data: bytes) -> None:
        status, output = self.feed(command, data)
        if status != 0:
            raise InfraError(f"{self.label}: copy failed ({command}): {output.strip()[-200:]}")

    def feed(self, command: str, data: bytes) -> tuple[int, str]:
        """Run ``command`` with ``data`` as its standard input: its exit status and output (merged)."""
        channel = self._session(command)
        try:
            channel.set_combine_stderr(True)
            channel.sendall(data)
            channel.shutdown_write()
            output = channel.makefile("rb").read().decode(errors="replace")
        except (socket.timeout, paramiko.SSHException, EOFError, OSError) as exc:
            channel.close()
            raise self.lost(f"{self.label}: copy failed ({command}): {str(exc) or 'timed out'}") from None
        return self._exit_status(channel, command), output


class Background:
    """A command left running on a VM (``Connection.start``): read what it has sent so far, see
    whether it has ended, close it. Reading never waits."""

    def __init__(self, channel: paramiko.Channel, label: str, command: str, fate: Fate | None = None) -> None:
        self.channel = channel
        self.label = label
        self.command = command
        self.fate = fate

    def lost(self, what: str) -> SshFailed:
        return lost(self.label, what, self.fate)

    def read(self, limit: int = 4 << 20) -> bytes:
        """What the command has sent since the last read (b"" if nothing), at most about ``limit``
        bytes (a command that floods its output is read a bounded piece at a time)."""
        chunks: list[bytes] = []
        try:
            while self.channel.recv_ready() and sum(map(len, chunks)) < limit:
                chunks.append(self.channel.recv(65536))
        except (socket.timeout, paramiko.SSHException, EOFError, OSError) as exc:
            raise self.lost(f"SSH connection to {self.label} failed: {reason(exc)}") from None
        if not chunks and self.channel.closed and not self.channel.exit_status_ready():
            raise self.lost(f"SSH connection to {self.label} closed while running: {self.command}")
        return b"".join(chunks)

    def ended(self) -> bool:
        """Whether the command has exited; an InfraError if the connection went away first."""
        if self.channel.exit_status_ready():
            return True
        transport = self.channel.get_transport()
        if transport is None or not transport.is_active() or self.channel.closed:
            raise self.lost(f"SSH connection to {self.label} closed while running: {self.command}")
        return False

    def close(self) -> None:
        """End the command's input (a ``follow`` stops there) and close the channel."""
        try:
            self.channel.shutdown_write()
        except (paramiko.SSHException, EOFError, OSError):
            pass
        self.channel.close()


MAX_LINE = 1 << 16


@dataclass
class LogReader:
    """A log on a VM, followed as it grows (``Connection.follow``: no request per look, so the
    guest's CPU stays with its own work) and taken a complete line at a time from ``offset`` on
    (a line longer than ``MAX_LINE`` bytes is taken in pieces of that size)."""

    path: str
    offset: int
    follower: Background | None = None
    pending: bytes = b""

    def read(self, conn: Connection) -> list[str]:
        if self.follower is None or self.follower.ended():  # its tail went away: follow again from the offset
            self.close()
            self.follower = conn.follow(self.path, self.offset)
        self.pending += self.follower.read()
        lines, used = complete_lines(self.pending)
        if not used and len(self.pending) > MAX_LINE:  # a line that never ends (a guest's output): cut it
            lines, used = complete_lines(self.pending[:MAX_LINE], final=True)
        self.pending = self.pending[used:]
        self.offset += used
        return lines

    def close(self) -> None:
        if self.follower is not None:
            self.follower.close()
        self.follower, self.pending = None, b""


def lost(label: str, what: str, fate: Fate | None) -> SshFailed:
    """``what`` failed on the way to the VM ``label``: led by the VM's fate if its QEMU is gone, else
    followed by it (a guest that stopped answering, a forward that broke)."""
    if fate is None:
        return SshFailed(what)
    gone, said = fate()
    return SshFailed(f"{label}: {said}; {what}" if gone else f"{what} ({label}: {said})")


def connect(host: str, port: int, creds: Credentials, label: str,
            via: Connection | None = None, timeout: float = 10, host_key: str | None = None,
            fate: Fate | None = None) -> Connection:
    """Open one SSH connection (optionally through ``via``); raise OscarvtError if it fails.

    ``host_key`` (``TYPE BASE64``, as ``Connection.host_key`` gives it): the server must prove it
    holds that key before any credential is sent, else ``HostKeyChanged``. None: any key is
    taken (a first contact; the caller records ``Connection.host_key``).
    """
    sock = None
    if via is not None:
        transport = via.client.get_transport()
        if transport is None:
            raise via.lost(f"cannot reach {label}: connection to {via.label} is closed")
        try:
            sock = transport.open_channel("direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=timeout)
        except (paramiko.SSHException, OSError) as exc:
            raise lost(label, f"cannot reach {label} at {host}:{port} through {via.label}: {reason(exc)}", fate) \
                from None
    client = paramiko.SSHClient()
    if host_key is None:
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    else:  # paramiko asks for the known key's type first and compares before logging in
        client.get_host_keys().add(_known_hosts_name(host, port), *_parse_key(host_key, label))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(host, port, username=creds.user, password=creds.password,
                       key_filename=str(creds.key) if creds.key else None, sock=sock,
                       timeout=timeout, banner_timeout=timeout, auth_timeout=timeout,
                       look_for_keys=False, allow_agent=False)
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise HostKeyChanged(f"{label}'s SSH host key changed: recorded {_described(exc.expected_key)}, "
                             f"offered {_described(exc.key)}; refused before logging in") from None
    except paramiko.AuthenticationException:
        client.close()
        raise InputError(f"{label}: SSH login as {creds.user} refused (check ssh.password/ssh.key)") from None
    except (paramiko.SSHException, OSError, EOFError) as exc:
        client.close()
        raise lost(label, f"{label}: SSH failed: {reason(exc)}", fate) from None
    transport = client.get_transport()
    if transport is not None:
        transport.set_keepalive(KEEPALIVE)  # a dead guest or forward shows as a closed connection
    return Connection(client, label, fate)


class HostKeyChanged(InfraError):
    """The SSH server offered another host key than the one recorded: the connection is refused.

    Blamed on the infrastructure. The driver cannot tell who answers with the new key: OSCAR's
    code, which runs as root on the headnode, may have replaced the key, but so may whatever
    holds the forwarded port on 127.0.0.1 now (the headnode's QEMU went away and another
    process, another cluster's QEMU say, bound the port) or anything between. Refusing keeps the
    password and the commands from an impostor, and the people who must look are the host's
    admins (an infrastructure failure mails them, after a retry on a fresh cluster: a product
    that really replaces the key fails that way again, with this line naming both keys).
    """


def _known_hosts_name(host: str, port: int) -> str:
    """The name known_hosts (and paramiko) file a server's key under: ``host``, or ``[host]:port``."""
    return host if port == 22 else f"[{host}]:{port}"


def _parse_key(text: str, label: str) -> tuple[str, paramiko.PKey]:
    """A recorded ``TYPE BASE64`` host key as paramiko takes it; InputError if it is no key."""
    kind, _, data = text.partition(" ")
    try:
        return kind, paramiko.PKey.from_type_string(kind, base64.b64decode(data, validate=True))
    except Exception:  # noqa: BLE001 (paramiko's key parsers raise many kinds of error on damaged data)
        raise InputError(f"{label}: its recorded SSH host key (state.json) is not a usable "
                         f"{shown(kind)} key") from None


def _described(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.fingerprint}"


def wait_for_ssh(host: str, port: int, creds: Credentials, label: str, timeout: float,
                 give_up: Callable[[], str | None] | None = None,
                 via: Connection | None = None, host_key: str | None = None) -> Connection:
    """Connect as soon as the guest's SSH server answers; quiet while it is not up yet.

    A refused login ends the wait at once (the guest is up, the credentials are wrong), and so
    does another host key than ``host_key`` (``connect``).
    """
    def attempt() -> Connection | None:
        try:
            return connect(host, port, creds, label, via=via, timeout=5, host_key=host_key)
        except (InputError, HostKeyChanged):
            raise
        except OscarvtError:
            return None

    return wait_for(attempt, timeout=timeout, what=f"SSH on {label}", interval=0.5, give_up=give_up)

