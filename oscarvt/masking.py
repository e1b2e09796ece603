"""Credentials in URLs, masked wherever the driver writes text: output, events, state, logs, mail.

``https://user:secret@host/oscar.git`` becomes ``https://user:***@host/oscar.git`` and a token
alone (``https://TOKEN@host/...``) becomes ``***``. A user name alone in an SSH URL
(``svn+ssh://user@host/...``, ``ssh://git@host/...``) is a login name, not a secret, and stays.
Only the VCS inside the headnode is given the real URL (``oscarvt.phases.checkout``).
"""

from __future__ import annotations

import re

MASK = "***"
SSH_SCHEMES = ("ssh", "git+ssh", "ssh+git", "svn+ssh")  # a bare user name there is a login, not a token
# "://", then the userinfo: up to the authority's last '@' (a password may hold one). Matches never
# overlap ('/' ends a userinfo), so a hostile guest's long output line costs linear time.
_USERINFO = re.compile(r"://(?P<userinfo>[^/?#\s]*)@")
_SCHEME = re.compile(r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,14}\Z")  # a whole scheme just before "://"


def mask_credentials(text: str) -> str:
    """``text`` with the password (or token) of every URL in it replaced by ``***``."""
    return _USERINFO.sub(lambda found: _masked(text, found), text)


def _masked(text: str, found: re.Match[str]) -> str:
    user, colon, _ = found.group("userinfo").partition(":")
    if colon:
        return f"://{user}:{MASK}@"
    scheme = _SCHEME.search(text, max(0, found.start() - 16), found.start())
    if scheme is not None and scheme.group(0).lower() in SSH_SCHEMES:
        return found.group(0)
    return f"://{MASK}@"
