"""SystemImager's imaging monitor, read from the host: status lines and what they mean.

Clients send lines of colon-separated ``key=value`` fields (mac, ip, host, status, ...); the
headnode's monitor logs each one, stamped, to ``MONITOR_LOG``. At the end of imaging a client
fetches ``scripts/imaging_complete_<ip>``, which shows in the rsync daemon's ``RSYNCD_LOG``.
A report names the client by its MAC (``mac=``, the NIC it installs through) and by the name and
address OSCAR gave it (``host=``, ``ip=``); every field is the guest's word, checked before use.
"""

from __future__ import annotations

import re

from oscarvt.state import CLIENT_NAME

MONITOR_LOG = "/var/log/systemimager/si_monitor.log"
RSYNCD_LOG = "/var/log/systemimager/rsyncd"
IMAGED, FINALIZING, BOOTED, BEEPING, REBOOTING, SHUTDOWN = 100, 101, 102, 103, 104, 105
_FIELD = re.compile(r"(\w+)=(.*?)(?=:\w+=|$)")
_COMPLETE = re.compile(r"imaging_complete_([0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3})")
_HOST = re.compile(rf"{CLIENT_NAME.pattern}(\.{CLIENT_NAME.pattern}){{0,8}}")  # a host name, maybe with its domain


def parse_status_line(line: str) -> dict[str, str]:
    """The fields of one monitor log line (a time stamp before the fields is skipped)."""
    start = line.find("mac=")
    return dict(_FIELD.findall(line[start:])) if start >= 0 else {}


def mac_key(mac: str) -> str:
    """A MAC as reports are matched by: lower case, colons (OSCAR stores MACs in upper case, Linux
    reports them in lower case)."""
    return mac.strip().lower().replace("-", ":")


def client_name(host: str) -> str | None:
    """OSCAR's name for a client from a report's ``host=`` (a domain after it dropped), or None if it
    is no host name."""
    return host.split(".", 1)[0] if _HOST.fullmatch(host) else None


def describe(status: int) -> str:
    """A status code in words: ``imaging 40%``, ``installed``, ``rebooted``, ``error``, ..."""
    if status < 0:
        return "error"
    if status == 0:
        return "installer started"
    if status < IMAGED:
        return f"imaging {status}%"
    return {IMAGED: "installed", FINALIZING: "finalizing", BOOTED: "booted from its disk",
            BEEPING: "beeping", REBOOTING: "rebooting", SHUTDOWN: "shut down"}.get(status, f"status {status}")


def completed_ips(rsyncd_log: str) -> set[str]:
    """The clients that fetched their imaging_complete marker, by IP."""
    return set(_COMPLETE.findall(rsyncd_log))
