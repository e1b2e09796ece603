"""checkout-oscar: put the OSCAR revision under test on the headnode, at the spec's ``oscar.dir``.

Either push the host's tree exactly as it is (works offline, uncommitted changes included),
or check out a git or SVN URL from inside the headnode (it must reach the URL; the host's
own 127.0.0.1 is 10.0.2.2 from the headnode's NAT NIC).
"""

from __future__ import annotations

import posixpath
import shlex
import subprocess
from pathlib import Path

from oscarvt.access import open_headnode
from oscarvt.cluster import ClusterDir
from oscarvt.errors import InfraError, InputError, shown
from oscarvt.log import progress
from oscarvt.masking import mask_credentials
from oscarvt.phase_names import CHECKOUT_OSCAR
from oscarvt.session import Session
from oscarvt.state import Checkout

VCS = ("git", "svn")
CHECKOUT_TIMEOUT = 1800.0  # seconds for a VCS checkout inside the headnode


def guess_vcs(url: str) -> str:
    """``svn`` for svn:// and svn+ssh:// URLs, else ``git``."""
    return "svn" if url.lower().startswith(("svn://", "svn+ssh://")) else "git"


def check_url_flags(url: str | None, revision: str | None) -> None:
    """Refuse a ``--url`` or ``--revision`` the VCS would take for an option, or that is not one line."""
    for flag, value in (("--url", url), ("--revision", revision)):
        if value is None:
            continue
        shown_value = shown(mask_credentials(value))
        if not value or not value.isprintable():
            raise InputError(f"{flag} must be one line of printable text, not {shown_value}")
        if value.startswith("-"):
            raise InputError(f"{flag} must not start with '-' (git and svn would take it for an option): {shown_value}")


def checkout_oscar(cluster: ClusterDir, source: Path | None = None, url: str | None = None,
                   revision: str | None = None, vcs: str | None = None) -> str:
    """Push ``source`` or check out ``url`` (at ``revision``) into the headnode's OSCAR folder.

    Only the VCS is given ``url`` as it is: what is printed and recorded has its credentials masked.
    """
    if (source is None) == (url is None):
        raise InputError("give one of --source DIR or --url URL")
    if source is not None and (revision or vcs):
        raise InputError("--revision and --vcs go with --url, not --source")
    if source is not None and not source.is_dir():
        raise InputError(f"--source: no such folder {source}")
    check_url_flags(url, revision)
    with Session.phase(cluster, CHECKOUT_OSCAR) as session:
        target = posixpath.normpath(session.spec.oscar.dir)
        quoted = shlex.quote(target)
        with open_headnode(session) as conn:
            if source is not None:
                progress(f"pushing {source} to the headnode's {target}")
                conn.put(source.resolve(), posixpath.dirname(target), posixpath.basename(target), replace=True)
                revision_text = local_revision(source)
                where = str(source)
            else:
                assert url is not None
                kind = vcs or guess_vcs(url)
                if kind not in VCS:
                    raise InputError(f"--vcs must be one of {', '.join(VCS)}, not {kind!r}")
                where = mask_credentials(url)
                progress(f"{kind} checkout of {where}{f' at {revision}' if revision else ''} on the headnode")
                chunks: list[bytes] = []
                clear = f"rm -rf {quoted} && mkdir -p {shlex.quote(posixpath.dirname(target))} && "
                command = clear + checkout_command(kind, url, target, revision)
                try:
                    status = conn.run(command, chunks.append, timeout=CHECKOUT_TIMEOUT)
                except InfraError as exc:  # its message holds the command, and so the URL
                    raise InfraError(mask_credentials(str(exc))) from None
                output = mask_credentials(b"".join(chunks).decode(errors="replace").strip())
                if status != 0:
                    raise InfraError(f"{kind} checkout of {where} failed on the headnode: "
                                     f"{(output.splitlines() or ['(no output)'])[-1]}")
                revision_text = (output.splitlines() or [""])[-1]
        session.state.checkout = Checkout(source=where, revision=revision_text, dir=target)
    return f"{where} ({revision_text or 'no revision'}) is in the headnode's {target}"


def checkout_command(kind: str, url: str, target: str, revision: str | None) -> str:
    """The shell command that checks ``url`` out into ``target`` and prints the revision it got.

    Every value is quoted; the URL and folder come after ``--``; git's ``checkout REV --`` takes
    REV for a branch, tag or commit, never a path. A revision before ``--`` would still be read
    as an option if it started with '-': ``check_url_flags`` has refused those.
    """
    url_q, target_q = shlex.quote(url), shlex.quote(target)
    if kind == "svn":
        at = f" -r {shlex.quote(revision)}" if revision else ""
        return f"svn checkout --quiet --non-interactive{at} -- {url_q} {target_q} && svnversion -- {target_q}"
    at = f" && git -C {target_q} checkout --quiet {shlex.quote(revision)} --" if revision else ""
    return f"git clone --quiet -- {url_q} {target_q}{at} && git -C {target_q} rev-parse HEAD"


def local_revision(source: Path) -> str:
    """The host tree's git revision (``-dirty`` if changed), or '' if it is not a git checkout."""
    try:
        result = subprocess.run(["git", "-C", str(source), "describe", "--always", "--dirty", "--abbrev=12"],
                                capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""
