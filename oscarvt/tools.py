"""Run the external programs the driver relies on (qemu-img, mmdebstrap, cpio, ...)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from oscarvt.errors import InfraError

# Debian packages that provide each program, named in "not installed" errors.
PACKAGES = {"qemu-img": "qemu-utils", "mmdebstrap": "mmdebstrap", "mke2fs": "e2fsprogs",
            "xorriso": "xorriso", "cpio": "cpio", "openssl": "openssl", "dpkg-deb": "dpkg"}
TOOL_TIMEOUT = 1800.0  # seconds any program may run (mmdebstrap on a slow mirror takes minutes)
STOP_WAIT = 30.0       # seconds a program stopped early has to clean up (mmdebstrap unmounts) before SIGKILL


def run_tool(argv: list[str], what: str, hint: str = "", stdin: str | None = None,
             cwd: Path | None = None, timeout: float = TOOL_TIMEOUT) -> str:
    """Run ``argv`` and return its standard output.

    A missing program, a non-zero exit or running past ``timeout`` seconds is one
    OscarvtError: ``WHAT failed: <its first "E:"/"error" line, else its last line>
    (HINT)``; the lines are its standard error's, or its output's if it wrote no error.

    The program runs in its own process group. Stopped early (timeout, Ctrl-C, SIGTERM),
    the whole group gets SIGTERM and ``STOP_WAIT`` seconds to clean up, then SIGKILL:
    nothing it started is left running.
    """
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, text=True,
                                start_new_session=True)
    except FileNotFoundError:
        package = PACKAGES.get(argv[0])
        raise InfraError(f"{what}: {argv[0]} is not installed"
                           + (f" (Debian package {package})" if package else "")) from None
    try:
        stdout, stderr = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop_group(proc)
        raise InfraError(f"{what} failed: still running after {timeout:.0f}s"
                           + (f" ({hint})" if hint else "")) from None
    except BaseException:
        _stop_group(proc)
        raise
    if proc.returncode == 0:
        return stdout
    output = stderr if stderr.strip() else stdout
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("E:", "error", "Error"))]
    # The first error line says what went wrong; later ones tend to say only that it did.
    detail = errors[0] if errors else lines[-1] if lines else f"exit status {proc.returncode}"
    if "No space left on device" in output:
        detail = "no space left on the device"
    raise InfraError(f"{what} failed: {detail}" + (f" ({hint})" if hint else ""))


def _stop_group(proc: subprocess.Popen[str]) -> None:
    """SIGTERM to the program's process group, SIGKILL to what is left after ``STOP_WAIT``."""
    for sig, wait in ((signal.SIGTERM, STOP_WAIT), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.communicate(timeout=wait)
            if sig == signal.SIGTERM:
                os.killpg(proc.pid, signal.SIGKILL)  # whatever it left behind in the group
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue
