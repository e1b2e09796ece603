"""send-logs: a summary mail with the logs attached, for use without Buildbot.

The mail says the verdict, the phase timings and the tail of OSCAR's log; when a phase failed,
also the phase and its message (which names the node) in the subject and the text, and the tail
of that node's console. The grab-logs tarball is attached. Credentials in URLs are masked in the
subject and the text, and what came from a guest or an earlier verb's record (a message, a log's
lines, the revision, the folder's name) is quoted by ``errors.guest_line``: control characters
escaped (a newline would break the subject, an escape sequence reach a terminal).
"""

from __future__ import annotations

import dataclasses
import re
import smtplib
import socket
from email.message import EmailMessage
from pathlib import Path

from oscarvt.cluster import ClusterDir
from oscarvt.errors import InfraError, InputError, guest_line, shown
from oscarvt.log import progress
from oscarvt.masking import mask_credentials
from oscarvt.oscar_run import OSCAR_LOG, OUTPUT
from oscarvt.phase_names import SEND_LOGS
from oscarvt.state import ClusterState
from oscarvt.status import failed_phase, summary

TAIL_LINES = 30
LINE_LIMIT = 2000  # characters of one line in the mail's text


def send_logs(cluster: ClusterDir, to: list[str], smtp: str = "localhost:25", sender: str | None = None) -> str:
    """Mail the summary and the log tarball of the last grab-logs to ``to``."""
    host, _, port = smtp.rpartition(":")
    if not re.fullmatch(r"\S+", host) or not host.isprintable() or not re.fullmatch(r"[0-9]{1,9}", port):
        raise InputError(f"--smtp must be HOST:PORT, not {shown(smtp)}")
    if not 0 < int(port) < 65536:
        raise InputError(f"--smtp: port {int(port)} is not from 1 to 65535")
    for address in to:
        if not _is_address(address):
            raise InputError(f"--to: {shown(address)} is not a mail address")
    if sender is not None and not _is_address(sender):
        raise InputError(f"--sender: {shown(sender)} is not a mail address")
    with cluster.phase(SEND_LOGS) as state:
        if not state.logs or not Path(state.logs.tarball).is_file():
            raise InputError("no logs to send (run 'oscarvt grab-logs' first)")
        message = compose(cluster, state, to, sender or f"oscarvt@{socket.gethostname()}")
        progress(f"sending to {', '.join(to)} through {host}:{port}")
        try:
            with smtplib.SMTP(host, int(port), timeout=60) as server:
                server.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            raise InfraError(f"cannot send mail through {host}:{port}: {exc}") from None
    return f"mailed {message['Subject']!r} to {', '.join(to)}"


def _is_address(text: str) -> bool:
    """One address, no space or control character (a newline would add mail headers)."""
    return text.isprintable() and re.fullmatch(r"[^@\s]+@[^@\s]+", text) is not None


def compose(cluster: ClusterDir, state: ClusterState, to: list[str], sender: str) -> EmailMessage:
    """The summary mail, with the log tarball attached."""
    assert state.logs is not None
    failed = failed_phase([p for p in state.phases if p.phase != SEND_LOGS])
    verdict = "FAIL" if failed else "PASS"
    subject = f"oscarvt {verdict}: {guest_line(cluster.path.name, 60)}"
    if failed:
        subject += f": {failed.phase}: {guest_line(failed.message, 160)}"[:160]
    logs = Path(state.logs.dir)
    body = [f"Verdict: {verdict}", f"Cluster: {guest_line(str(cluster.path), LINE_LIMIT)}"]
    if checkout := state.checkout:
        revision = guest_line(checkout.revision, LINE_LIMIT) if checkout.revision else "no revision"
        body.append(f"OSCAR: {guest_line(checkout.source, LINE_LIMIT)} ({revision})")
    if failed:
        body += ["", f"Failed in {failed.phase}: {guest_line(failed.message, LINE_LIMIT)}"]
    body += ["", "Phases:", summary(quoted_messages(state))]
    # OSCAR's log, or what install_cluster printed when it died before writing its log
    body += (tail("OSCAR's log", logs / "headnode" / OSCAR_LOG.lstrip("/"))
             or tail("OSCAR's output", logs / "headnode" / OUTPUT.lstrip("/")))
    for name in state.vms:
        if failed and re.search(rf"\b{re.escape(name)}\b", failed.message):
            body += tail(f"{name}'s console", logs / "consoles" / f"{name}.log")
    message = EmailMessage()
    message["Subject"], message["From"], message["To"] = mask_credentials(subject), sender, ", ".join(to)
    message.set_content(mask_credentials("\n".join(body)) + "\n")
    tarball = Path(state.logs.tarball)
    message.add_attachment(tarball.read_bytes(), maintype="application", subtype="gzip", filename=tarball.name)
    return message


def quoted_messages(state: ClusterState) -> ClusterState:
    """``state`` with each phase's message quoted by ``guest_line`` (an earlier verb stored it as it was)."""
    return dataclasses.replace(state, phases=[dataclasses.replace(phase, message=guest_line(phase.message, LINE_LIMIT))
                                              for phase in state.phases])


def tail(title: str, path: Path) -> list[str]:
    """The last lines of a log file, titled (nothing if the file is missing), each quoted as a guest's line."""
    if not path.is_file():
        return []
    lines = path.read_text(errors="replace").splitlines()[-TAIL_LINES:]
    lines = [guest_line(line.expandtabs(), LINE_LIMIT) for line in lines]
    return ["", f"--- {title}, last {len(lines)} lines ({path.name}) ---", *lines]
