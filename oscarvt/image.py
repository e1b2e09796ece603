"""``oscarvt image build``: a headnode template from Debian packages, cached by recipe.

mmdebstrap builds a Debian root (bookworm and amd64 by default; bullseye, trixie, arm64)
with the cloud kernel,
openssh-server, the version-control clients and what the example suite needs;
the root is then set up for a virtual headnode (root login by key or password,
SSH host keys made at first boot and, when the driver starts it, the clone's own
identity from the driver with new SSH host keys (``oscarvt.identity``), DHCP on the
NAT NIC only, services a headnode does not need masked), written into an ext4 file system without
mounting it (``mke2fs -d``) and converted to qcow2. The kernel and initrd are
copied beside it for direct kernel boot, and ``template.json`` says which suite and
architecture it is. The result lives in ``cache_root()/templates/<recipe hash>/``; a
second build with the same recipe returns at once, and a failed build leaves nothing
that looks finished. ``cache_root()/templates/SUITE-ARCH`` links to the newest template
of each target, so ``find_template`` needs no path or hash.

A template of another architecture than the host's (arm64 on amd64) is built the same
way: mmdebstrap runs its maintainer scripts through qemu-user-static, which the kernel's
binfmt_misc must have registered (Debian's binfmt-support does). That takes minutes more.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko

from oscarvt import arches, identity
from oscarvt.cache import cache_root, cached_build, recipe_key
from oscarvt.errors import InfraError, InputError, shown
from oscarvt.log import progress
from oscarvt.tools import run_tool

# Every headnode's; the arch adds its kernel and its boot-media tools (arches.Arch).
PACKAGES = [
    "initramfs-tools", "systemd-sysv", "udev", "openssh-server",
    "git", "subversion", "rsync", "perl", "dnsmasq", "busybox-static", "dropbear-bin",
    "xorriso", "cpio", "e2fsprogs", "iproute2", "iputils-ping", "procps", "tar", "gzip",
]
SUITES = ("bullseye", "bookworm", "trixie")  # Debian 11, 12, 13: the ones oscarvt's recipe is tested on
SUITE = re.compile(r"[a-z][a-z0-9.-]{0,30}")  # what a suite's name looks like: bookworm, trixie, stable, ...
# Not needed on a headnode under test, and slow under TCG.
MASKED_UNITS = [
    "apt-daily.timer", "apt-daily-upgrade.timer", "man-db.timer", "e2scrub_all.timer",
    "e2scrub_reap.service", "fstrim.timer", "systemd-networkd-wait-online.service",
    "getty@tty1.service", "getty-static.service", "dnsmasq.service", "systemd-timesyncd.service",
]
QUIET_LOGIN = re.compile(r"session\s+\S+\s+pam_(motd|mail)\.so\b")  # lines _quiet_logins turns off
KERNEL_APPEND = "root=/dev/vda rw console={console} net.ifnames=0 quiet"
FREE_SPACE_NEEDED = 3 * 1024**3
SIZE = re.compile(r"([1-9][0-9]{0,12})([KMGT]?)")  # mke2fs's size: bytes, or K, M, G, T
SIZE_RANGE = (1024**3, 16 * 1024**4)  # the root needs about 1G; ext4 files on the host stop at 16T
METADATA = "template.json"
MIRROR = re.compile(r"(?:deb(?: \[[^]\x00-\x1f]*\])? )?(?:https?|file)://[^\s\x00-\x1f]+(?: [a-z0-9][a-z0-9./-]*)*")
PUBLIC_KEY = re.compile(r"(?:\S+\s+)?(?:ssh-[a-z0-9-]+|ecdsa-sha2-nistp[0-9]+|sk-\S+)\s+[A-Za-z0-9+/]+=*(?:\s.*)?")

HOSTKEYS_UNIT = """[Unit]
Description=Generate SSH host keys at first boot (oscarvt; no RSA: slow under TCG)
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key
ExecStart=/usr/bin/ssh-keygen -q -t ecdsa -N "" -f /etc/ssh/ssh_host_ecdsa_key

[Install]
WantedBy=multi-user.target
"""

# initramfs-tools' default (MODULES=most) copies every disk and network driver: minutes of emulated
# modprobe/cp runs for an arm64 template. A virtual machine of oscarvt's finds its root disk through
# virtio alone (oscarvt.backends.qemu); udev in the initramfs loads these by their aliases. The nodes
# oscar-mini installs boot with the headnode's initrd, on the same virtio disks.
INITRAMFS_CONF = "# oscarvt: only the modules of /etc/initramfs-tools/hooks/oscarvt-virtio\nMODULES=list\n"
INITRAMFS_HOOK = """#!/bin/sh
# oscarvt: the drivers a virtual headnode or node needs to mount its root (the virtio disk, CD and NIC)
[ "$1" = prereqs ] && exit 0
. /usr/share/initramfs-tools/hook-functions
manual_add_modules virtio_pci virtio_mmio virtio_blk virtio_scsi sd_mod virtio_net virtio_console
"""

NAT_NETWORK = """# The headnode's first NIC is QEMU's user-mode NAT; the driver configures the private NIC.
[Match]
Name=eth0

[Network]
DHCP=ipv4
"""


@dataclass(frozen=True)
class Template:
    """A built headnode template: disk, kernel, initrd, the key root accepts, its suite and arch."""

    folder: Path

    @property
    def metadata(self) -> dict[str, str]:
        """``template.json``: suite, arch, kernel command line."""
        try:
            data = json.loads((self.folder / METADATA).read_text())
        except (OSError, ValueError) as exc:
            raise InfraError(f"{self.folder / METADATA}: cannot read the template's description: {exc}") from None
        if not isinstance(data, dict) or data.get("arch") not in arches.ARCHES:
            raise InfraError(f"{self.folder / METADATA}: not a template description")
        return {key: str(value) for key, value in data.items()}

    @property
    def suite(self) -> str:
        return self.metadata["suite"]

    @property
    def arch(self) -> str:
        return self.metadata["arch"]

    @property
    def disk(self) -> Path:
        return self.folder / "headnode.qcow2"

    @property
    def kernel(self) -> Path:
        return self.folder / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.folder / "initrd.img"

    @property
    def key(self) -> Path:
        """Private key (ECDSA) in root's authorized_keys; absent if an outside key was given."""
        return self.folder / "id_ecdsa"

    @property
    def append(self) -> str:
        return self.metadata["append"]

    @property
    def identity(self) -> bool:
        """Whether its headnodes wait for their identity on the driver's port (``oscarvt.identity``)."""
        return self.metadata.get("identity") == identity.PORT_NAME

    def spec_data(self) -> dict[str, Any]:
        """The cluster spec's ``template`` and ``ssh`` sections for a headnode of this template
        (``ssh`` only when the template has its own key)."""
        data: dict[str, Any] = {"template": {"disk": str(self.disk), "kernel": str(self.kernel),
                                             "initrd": str(self.initrd), "append": self.append, "arch": self.arch}}
        if self.key.exists():
            data["ssh"] = {"key": str(self.key)}
        return data


def build_template(suite: str = "bookworm", password: str | None = None,
                   authorized_key: Path | None = None, size: str = "8G",
                   force: bool = False, arch: str = arches.DEFAULT,
                   mirrors: tuple[str, ...] = ()) -> tuple[Template, bool]:
    """Build (or take from the cache) a headnode template; return it and whether it was cached.

    ``mirrors``: mmdebstrap's mirror arguments (URLs or ``deb URL SUITE COMPONENTS`` lines);
    none: Debian's own, with the suite's -updates and -security.
    """
    public_key = _check_recipe(suite, password, authorized_key, size, arch, mirrors)
    secret = hashlib.sha256((password or "").encode()).hexdigest()
    guest = [(identity.GUEST / name).read_text() for name in sorted(identity.GUEST_FILES)]
    key = recipe_key(Path(__file__).read_text(), *guest, suite, arch, secret, public_key or "", size, *mirrors)
    folder, cached = cached_build(
        "templates", key, lambda out: _build(out, suite, arches.arch(arch), password, public_key, size, mirrors),
        force)
    _link_target(folder, suite, arch)
    return Template(folder), cached


def find_template(suite: str, arch: str) -> Template:
    """The newest template built on this host for ``suite`` and ``arch`` (``image build`` makes it)."""
    link = cache_root() / "templates" / f"{suite}-{arch}"
    if not link.is_dir():
        raise InfraError(f"no {suite} {arch} template on this host: run 'oscarvt image build "
                         f"--suite {suite} --arch {arch}'")
    return Template(link.resolve())


def template_of(disk: Path) -> Template | None:
    """The template whose headnode image ``disk`` is, if ``oscarvt image build`` made it (described beside it)."""
    template = Template(disk.resolve().parent)
    if disk.resolve() != template.disk or not (template.folder / METADATA).is_file():
        return None
    try:
        return template if template.metadata else None
    except InfraError:
        return None


def _link_target(folder: Path, suite: str, arch: str) -> None:
    """Point ``templates/SUITE-ARCH`` at ``folder``, replacing the link in one step."""
    link = folder.parent / f"{suite}-{arch}"
    new = folder.parent / f".{suite}-{arch}.{os.getpid()}"
    new.unlink(missing_ok=True)
    new.symlink_to(folder.name)
    new.rename(link)


def _check_recipe(suite: str, password: str | None, authorized_key: Path | None, size: str,
                  arch: str, mirrors: tuple[str, ...]) -> str | None:
    """Check the flags before the cache or mmdebstrap is touched; return the public key's text."""
    if not SUITE.fullmatch(suite):
        raise InputError(f"--suite must be a Debian suite name like bookworm, not {shown(suite)}")
    if arch not in arches.ARCHES:
        raise InputError(f"--arch must be one of {', '.join(arches.ARCHES)}, not {shown(arch)}")
    for mirror in mirrors:
        if not MIRROR.fullmatch(mirror):
            raise InputError(f"--mirror must be a URL or a 'deb URL SUITE COMPONENT...' line, not {shown(mirror)}")
    match = SIZE.fullmatch(size)
    if match is None or not SIZE_RANGE[0] <= int(match.group(1)) * 1024 ** " KMGT".index(match.group(2) or " ") \
            <= SIZE_RANGE[1]:
        raise InputError(f"--size must be a size from 1G to 16T like 8G, not {shown(size)}")
    if password is not None and (not password or not password.isprintable()):
        raise InputError("--password must be printable characters on one line, and not empty")
    if authorized_key is None:
        return None
    try:
        public_key = authorized_key.read_bytes().decode("utf-8").strip()
    except (OSError, ValueError) as exc:
        raise InputError(f"--authorized-key: {authorized_key}: cannot read it: {exc}") from None
    lines = [line for line in public_key.splitlines() if line.strip()]
    if not lines or not all(line.isprintable() and PUBLIC_KEY.fullmatch(line) for line in lines):
        raise InputError(f"--authorized-key: {authorized_key}: not an SSH public key (TYPE BASE64 [COMMENT] a line)")
    return public_key


def _build(out: Path, suite: str, arch: arches.Arch, password: str | None, public_key: str | None,
           size: str, mirrors: tuple[str, ...]) -> None:
    _check_free_space(out.parent)
    if not arch.native():
        _check_emulation(arch)
    root = out / "root"
    packages = [*PACKAGES, arch.kernel_package, *arch.boot_packages]
    how_long = "about a minute" if arch.native() else "10 to 20 minutes: its scripts run emulated"
    progress(f"mmdebstrap {suite} {arch.name}: {len(packages)} packages and their dependencies ({how_long})")
    initramfs = out / "initramfs"
    initramfs.mkdir()
    _write(initramfs / "oscarvt", INITRAMFS_CONF)
    _write(initramfs / "oscarvt-virtio", INITRAMFS_HOOK, 0o755)
    try:
        run_tool(["mmdebstrap", "--variant=apt", "--format=directory", f"--architectures={arch.name}",
                  f"--include={','.join(packages)}",
                  '--setup-hook=install -d -m 0755 "$1/etc/initramfs-tools/conf.d" "$1/etc/initramfs-tools/hooks"',
                  f"--setup-hook=copy-in {initramfs / 'oscarvt'} /etc/initramfs-tools/conf.d",
                  f"--setup-hook=copy-in {initramfs / 'oscarvt-virtio'} /etc/initramfs-tools/hooks",
                  suite, str(root), *mirrors],
                 "mmdebstrap", hint="is the Debian package registry reachable?")
    finally:  # mmdebstrap killed mid-way leaves /proc, /sys, /dev/pts mounted in the root
        unmount_below(root)
    progress("setting up the root: login, SSH host keys per clone, identity port, NAT NIC, masked services")
    _set_up_root(root, out, password, public_key)
    for pattern, name in (("vmlinuz-*", "vmlinuz"), ("initrd.img-*", "initrd.img")):
        found = sorted((root / "boot").glob(pattern))
        if not found:
            raise InfraError(f"the built root has no /boot/{pattern}")
        shutil.copy(found[-1], out / name)
    raw = out / "disk.raw"
    progress(f"writing an ext4 file system of {size} (sparse) and converting it to qcow2")
    run_tool(["mke2fs", "-q", "-t", "ext4", "-L", "oscarvt-root", "-d", str(root), str(raw), size],
             "mke2fs")
    run_tool(["qemu-img", "convert", "-O", "qcow2", str(raw), str(out / "headnode.qcow2")],
             "qemu-img convert")
    raw.unlink()
    shutil.rmtree(root)
    shutil.rmtree(initramfs)
    append = KERNEL_APPEND.format(console=arch.console)
    description = {"suite": suite, "arch": arch.name, "append": append, "identity": identity.PORT_NAME}
    _write(out / METADATA, json.dumps(description, indent=2) + "\n")


def unmount_below(folder: Path) -> None:
    """Unmount every file system mounted at or below ``folder``, deepest first, so it can be removed."""
    prefix = str(folder.resolve()) if folder.exists() else str(folder)
    try:
        table = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return
    points = [_unescape(line.split()[4]) for line in table if len(line.split()) > 4]
    for point in sorted((p for p in points if p == prefix or p.startswith(prefix + "/")), reverse=True):
        run_tool(["umount", "--lazy", point], "umount")


def _unescape(field: str) -> str:
    """A mountinfo field as a path: ``\\040`` is a space, and so on (octal escapes)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _check_emulation(arch: arches.Arch) -> None:
    """A foreign arch's programs must run here through qemu-user-static, registered with binfmt_misc."""
    entry = Path("/proc/sys/fs/binfmt_misc") / f"qemu-{arch.machine_name}"
    try:
        enabled = entry.read_text().splitlines()[0] == "enabled"
    except (OSError, IndexError):
        enabled = False
    if not enabled:
        raise InfraError(f"an {arch.name} template on this {platform.machine()} host needs {arch.name} programs to run "
                         f"emulated: install qemu-user-static and binfmt-support ({entry} is missing or disabled)")


def _set_up_root(root: Path, out: Path, password: str | None, public_key: str | None) -> None:
    _write(root / "etc/fstab", "/dev/vda / ext4 defaults,noatime 0 1\n")
    _write(root / "etc/hostname", "headnode\n")
    _write(root / "etc/hosts", "127.0.0.1 localhost\n127.0.1.1 headnode\n")
    _write(root / "etc/machine-id", "")  # each clone makes its own at first boot
    login = "yes" if password else "prohibit-password"
    _write(root / "etc/ssh/sshd_config.d/oscarvt.conf",
           f"PermitRootLogin {login}\nPasswordAuthentication {'yes' if password else 'no'}\nUseDNS no\n"
           "HostKey /etc/ssh/ssh_host_ed25519_key\nHostKey /etc/ssh/ssh_host_ecdsa_key\n")
    for host_key in (root / "etc/ssh").glob("ssh_host_*"):
        host_key.unlink()
    _quiet_logins(root / "etc/pam.d/sshd")
    _logins_without_reexec(root)
    for name, (where, mode) in identity.GUEST_FILES.items():
        _write(root / where, (identity.GUEST / name).read_text(), mode)
    _write(root / "etc/systemd/system/oscarvt-hostkeys.service", HOSTKEYS_UNIT)
    _write(root / "etc/systemd/network/10-nat.network", NAT_NETWORK)
    if public_key is None:
        generated = paramiko.ECDSAKey.generate(bits=256)
        generated.write_private_key_file(str(out / "id_ecdsa"))
        public_key = f"{generated.get_name()} {generated.get_base64()} oscarvt-template"
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write(ssh_dir / "authorized_keys", public_key + "\n", 0o600)
    if password:
        run_tool(["chpasswd", "--root", str(root)], "chpasswd", stdin=f"root:{password}\n")
    run_tool(["systemctl", f"--root={root}", "enable", "oscarvt-hostkeys.service", "oscarvt-identity.service",
              "systemd-networkd.service"], "systemctl enable")
    run_tool(["systemctl", f"--root={root}", "mask", *MASKED_UNITS], "systemctl mask")
    run_tool(["systemctl", f"--root={root}", "set-default", "multi-user.target"], "systemctl set-default")


def _quiet_logins(pam_sshd: Path) -> None:
    """Leave the message of the day and the mail check out of every SSH login (the driver logs in
    for each phase): pam_motd runs the update-motd.d scripts each time, which under TCG took a
    login's first command from 0.15 s to 0.4 s."""
    if pam_sshd.exists():
        lines = pam_sshd.read_text().splitlines(keepends=True)
        pam_sshd.write_text("".join(f"# oscarvt: {line}" if QUIET_LOGIN.match(line) else line for line in lines))


def _logins_without_reexec(root: Path) -> None:
    """Let sshd serve each login from a fork of itself instead of executing itself anew (``sshd -r``,
    in ``/etc/default/ssh``, which its unit and init script read): under TCG the new sshd's start
    took a login from 0.19 s to 0.40 s (8 logins each, a warm bookworm headnode), and a build logs
    in once a step. What it gives up, a fresh address-space layout per connection, guards a
    server open to a network; this one is reached through the host's loopback and from the
    cluster's private LAN, whose other machines are the nodes OSCAR installs. OpenSSH 9.8 and
    later (trixie) always execute ``sshd-session`` for a connection and only warn about -r: left as
    they are."""
    if (root / "usr/lib/openssh/sshd-session").exists():
        return
    defaults = root / "etc/default/ssh"
    lines = defaults.read_text().splitlines() if defaults.exists() else []
    kept = [line for line in lines if not line.startswith("SSHD_OPTS=")]
    _write(defaults, "\n".join([*kept, "# oscarvt: no re-exec per login (oscarvt.image._logins_without_reexec)",
                                 "SSHD_OPTS=-r"]) + "\n")


def _check_free_space(folder: Path) -> None:
    stat = os.statvfs(folder)
    free = stat.f_bavail * stat.f_frsize
    if free < FREE_SPACE_NEEDED:
        raise InfraError(f"{folder} has {free / 1024**3:.1f} GiB free, "
                           f"needs {FREE_SPACE_NEEDED / 1024**3:.0f} GiB")


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
