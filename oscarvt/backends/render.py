"""``oscarvt profile render``: a profile as one back end's configuration."""

from __future__ import annotations

import shlex
from pathlib import Path

from oscarvt.backends import qemu
from oscarvt.backends.libvirt import render_libvirt
from oscarvt.backends.xen import render_xen
from oscarvt.profile import load_profile

EXAMPLE_SSH_PORT = 2222


def render(path: Path, backend: str) -> str:
    """Render the profile at ``path`` for ``backend`` (qemu, libvirt or xen)."""
    profile = load_profile(path)
    if backend == "libvirt":
        return render_libvirt(profile)
    if backend == "xen":
        return render_xen(profile)
    # At boot the driver puts these in the cluster folder and picks a free SSH port.
    stem = path.with_suffix("")
    files = qemu.VmFiles(pidfile=stem.with_suffix(".pid"), qmp=stem.with_suffix(".qmp"),
                         console=stem.with_suffix(".console.log"))
    accel = "kvm" if profile.type == "Kvm" else "tcg"
    return shlex.join(qemu.qemu_command(profile, files, accel, ssh_port=EXAMPLE_SSH_PORT)) + "\n"
