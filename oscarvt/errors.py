"""Failures by who is at fault: bad input, infrastructure, or the product under test.

Every error the driver raises is one of the three classes below. The CLI prints it as
one line (``FAIL: VERB: BLAME: message``), without a traceback, and exits with the class's
status; the Buildbot steps read the blame from the verdict event (see ``oscarvt.events``):

=================  ======  ==========================================================  ==========
class              status  what                                                        Buildbot
=================  ======  ==========================================================  ==========
``ProductError``   1       OSCAR's step failed, a node's installer reported an error,  FAILURE
                           a node never reported, a cluster test failed
``InputError``     2       spec, profile, flag, input file, settings, cluster folder   EXCEPTION
``InfraError``     3       host, QEMU, disk, memory, SSH transport, the harness's own  RETRY, then
                           timeouts, a guest paused by an I/O error                    EXCEPTION
=================  ======  ==========================================================  ==========

Timeouts on the system under test's own progress (``timeouts.oscar``, ``timeouts.node``,
``timeouts.install``) are the product's; timeouts on the driver's own operations (an SSH
command, a copy, QMP, an external program) are infrastructure.
"""

from __future__ import annotations

import errno
import reprlib
from typing import Any, Final, Literal

Blame = Literal["product", "bad input", "infrastructure"]
PRODUCT: Final = "product"
BAD_INPUT: Final = "bad input"
INFRASTRUCTURE: Final = "infrastructure"
"""The blame words: in the verdict line, the verdict event and the Buildbot steps (one spelling)."""


class OscarvtError(Exception):
    """Base of the three kinds below; not raised itself."""

    blame: Blame = INFRASTRUCTURE
    exit_status = 3

    def __init__(self, message: str, vm: str | None = None, logs: str | None = None) -> None:
        super().__init__(message)
        self.vm = vm  # the VM the failure is about, if one (its console is the one to read)
        self.logs = logs  # where to read more (``see its output, ... or grab-logs``), if anywhere


class ProductError(OscarvtError):
    """The system under test failed: the failures its developers must see."""

    blame: Blame = PRODUCT
    exit_status = 1


class InputError(OscarvtError):
    """Bad input a person can fix: a spec, profile, flag, input file, settings or cluster folder."""

    blame: Blame = BAD_INPUT
    exit_status = 2


class InfraError(OscarvtError):
    """Trouble of the host or the harness, not of the product: retried in Buildbot."""

    blame: Blame = INFRASTRUCTURE
    exit_status = 3


class SshFailed(InfraError):
    """The SSH transport to a VM broke or never came up (not a refused login, not a command's own
    failure); the message says whether the VM's QEMU is still there (``oscarvt.ssh``)."""


def reason(exc: BaseException) -> str:
    """What an exception says, or its type's name when it says nothing (paramiko's EOFError)."""
    return str(exc) or type(exc).__name__


class _Shown(reprlib.Repr):
    def __init__(self) -> None:
        super().__init__()
        self.maxstring = self.maxother = 60
        self.maxlevel = 2
        self.maxlist = self.maxtuple = self.maxdict = self.maxset = 4

    def repr_int(self, x: int, level: int) -> str:
        return super().repr_int(x, level) if x.bit_length() < 1000 else f"<a number of {x.bit_length()} bits>"


def shown(value: Any) -> str:
    """``value`` as an error message quotes it: its repr, cut short (a YAML bomb's too)."""
    return _Shown().repr(value)


def guest_line(text: str, limit: int = 300) -> str:
    """Text a guest sent (the code under test's), as a message quotes it: one printable line as it
    is, anything else as its repr (control characters escaped), either cut after ``limit`` characters."""
    quoted = text if text.isprintable() else repr(text[:limit + 1])
    return quoted if len(quoted) <= limit else quoted[:limit] + "..."


def from_os_error(exc: OSError) -> OscarvtError:
    """An OSError that escaped the driver, blamed: a path a person gave is bad input, the rest the host's."""
    where = f"{exc.filename}: " if exc.filename else ""
    text = f"{where}{exc.strerror or exc}"
    if exc.errno in _INPUT_ERRNOS:
        return InputError(text)
    return InfraError(text)


_INPUT_ERRNOS = {errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR, errno.ENOENT, errno.EROFS,
                 errno.EEXIST, errno.ENAMETOOLONG, errno.ELOOP, errno.ENOTEMPTY}
