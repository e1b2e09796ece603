"""Run the external programs the driver relies on (qemu-img, mmdebstrap, cpio, ...)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from oscarvt.errors import InfraError

# Debian packages that provide each program, named in "not installed" errors.
PACKAGES = {"qemu-img": "qemu-utils", "mmdebstrap": "mmdebstrap", "mke2fs": "e2fsprogs",
            "xorriso": "xorriso", "cpio": "cpio", "openssl": "openssl", "dpkg-deb": "dpkg"}
TOOL_TIMEOUT = 1800.0  # seconds any program may run (mmdebstrap on a slow mirror takes minutes)


def run_tool(argv: list[str], what: str, hint: str = "", stdin: str | None = None,
             cwd: Path | None = None, timeout: float = TOOL_TIMEOUT) -> str:
    """Run ``argv`` and return its standard output.

    A missing program, a non-zero exit or running past ``timeout`` seconds is one
    OscarvtError: ``WHAT failed: <its first "E:"/"error" line, else its last line>
    (HINT)``; the lines are its standard error's, or its output's if it wrote no error.
    """
    try:
        result = subprocess.run(argv, input=stdin, capture_output=True, cwd=cwd, text=True, timeout=timeout)
    except FileNotFoundError:
        package = PACKAGES.get(argv[0])
        raise InfraError(f"{what}: {argv[0]} is not installed"
                           + (f" (Debian package {package})" if package else "")) from None
    except subprocess.TimeoutExpired:
        raise InfraError(f"{what} failed: still running after {timeout:.0f}s"
                           + (f" ({hint})" if hint else "")) from None
    if result.returncode == 0:
        return result.stdout
    output = result.stderr if result.stderr.strip() else result.stdout
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("E:", "error", "Error"))]
    # The first error line says what went wrong; later ones tend to say only that it did.
    detail = errors[0] if errors else lines[-1] if lines else f"exit status {result.returncode}"
    if "No space left on device" in output:
        detail = "no space left on the device"
    raise InfraError(f"{what} failed: {detail}" + (f" ({hint})" if hint else ""))
