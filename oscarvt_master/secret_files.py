"""The files in the master's ``secrets_dir``: private modes, and hashed passwords for people.

``worker-NAME`` holds a worker's password (Buildbot reads it through SecretInAFile).
``www-users`` (the admins who log in to the web UI) and ``change-hook-users`` (who may post
to the change hook) hold ``USER:HASH`` lines, where HASH is a bcrypt hash as ``htpasswd -B``
writes it; a password in clear is refused, naming the file and the line, never the password.
Every secret file must be private to the master's user (no group or other permissions).
Buildbot's own HTPasswdAuth compares passwords in clear, so logins are checked here
(:class:`HashedPasswords`), with HTTP Basic authentication: put TLS in front (README).

``python -m oscarvt_master.secret_files USER`` asks for a password and prints the line.
"""

from __future__ import annotations

import getpass
import re
import stat
import sys
from pathlib import Path
from typing import Any

import bcrypt
from buildbot.www.auth import CustomAuth
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, threads

from oscarvt.errors import shown

WWW_USERS = "www-users"
CHANGE_HOOK_USERS = "change-hook-users"
_BCRYPT = re.compile(r"\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}")
_USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]*")
_LIMIT = 1 << 20  # a users file is a few lines


class SecretFileError(ValueError):
    """A secret file that must not be used; the message names the file (and line)."""


def check_private(path: Path) -> None:
    """Refuse a secret file that is not a regular file or that its group or others may read or write."""
    try:
        info = path.lstat()
    except OSError as exc:
        raise SecretFileError(f"{path}: {exc.strerror.lower() if exc.strerror else exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise SecretFileError(f"{path}: not a regular file")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise SecretFileError(f"{path}: mode {mode:04o} lets its group or others in; "
                              f"a secret must be private (chmod 600 {path})")


def read_users(path: Path) -> dict[str, bytes]:
    """The ``USER:HASH`` lines of a private users file, each HASH a bcrypt hash."""
    check_private(path)
    data = path.read_bytes()[:_LIMIT + 1]
    if len(data) > _LIMIT:
        raise SecretFileError(f"{path}: over {_LIMIT} bytes, not a users file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretFileError(f"{path}: not UTF-8 text") from None
    users: dict[str, bytes] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        user, colon, secret = line.partition(":")
        if not colon or not _USER.fullmatch(user):
            raise SecretFileError(f"{path} line {number}: not USER:HASH (a user name, a colon, a bcrypt hash)")
        if not _BCRYPT.fullmatch(secret):
            raise SecretFileError(f"{path} line {number}: the password of {shown(user)} is not a bcrypt hash; "
                                  "this file holds hashes only (htpasswd -nB USER, or "
                                  "python -m oscarvt_master.secret_files USER, prints a line)")
        if user in users:
            raise SecretFileError(f"{path} line {number}: {shown(user)} has a line already")
        users[user] = secret.encode()
    if not users:
        raise SecretFileError(f"{path}: no USER:HASH line")
    return users


def hashed_line(user: str, password: str, rounds: int = 12) -> str:
    """A users-file line for ``user`` with ``password`` hashed by bcrypt (``rounds``: its cost)."""
    if not _USER.fullmatch(user):
        raise SecretFileError(f"not a user name: {shown(user)}")
    return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()}"


class HashedPasswords(CustomAuth):  # type: ignore[misc]  # buildbot has no type hints
    """Buildbot authentication (web UI, change hook) against a users file's bcrypt hashes.

    The file is read and checked when the configuration is loaded; a reconfig reads it again.
    The hash is checked in a thread: bcrypt is slow on purpose.
    """

    def __init__(self, path: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.users = read_users(path)

    def check_credentials(self, username: bytes, password: bytes) -> bool:
        wanted = self.users.get(username.decode("utf-8", "replace"))
        return wanted is not None and bcrypt.checkpw(password, wanted)

    def requestAvatarId(self, cred: Any) -> defer.Deferred[Any]:  # noqa: N802
        def checked(ok: bool) -> Any:
            if not ok:
                raise UnauthorizedLogin()
            return cred.username
        return threads.deferToThread(self.check_credentials, cred.username, cred.password).addCallback(checked)


def main(argv: list[str]) -> int:
    """Print a users-file line for the user named in ``argv``, with a password asked for twice."""
    if len(argv) != 1:
        print("usage: python -m oscarvt_master.secret_files USER", file=sys.stderr)
        return 2
    password = getpass.getpass(f"password for {argv[0]}: ")
    if not password or password != getpass.getpass("again: "):
        print("FAIL: secret_files: the passwords are empty or differ", file=sys.stderr)
        return 1
    try:
        print(hashed_line(argv[0], password))
    except SecretFileError as exc:
        print(f"FAIL: secret_files: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
