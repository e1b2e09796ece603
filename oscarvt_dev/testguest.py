"""A tiny guest that boots in seconds under TCG, for tests and benchmarks.

Built from Debian packages: the Debian cloud kernel (downloaded with
``apt-get download`` and unpacked, never installed on the host) and an initramfs
holding busybox-static, dropbear and the virtio modules. At boot it

- gives every NIC an address: with ``oscarvt.lan=A.B.C`` on the kernel command
  line, ``A.B.C.<last byte of the MAC>/24`` statically; otherwise by DHCP
  (the user-mode NAT NIC gets 10.0.2.15 that way);
- runs dropbear on port 22 (root, with the guest's password or key);
- prints ``oscarvt-guest: ready`` on the serial console.

The result is cached under ``cache_root()/testguest/<recipe hash>``.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import paramiko

from oscarvt.cache import cached_build, recipe_key
from oscarvt.errors import InfraError
from oscarvt.tools import run_tool

PASSWORD = "oscarvt-test"
READY_MARKER = "oscarvt-guest: ready"

# Kernel modules the guest loads, with what they depend on (read from the modules).
MODULES = ["virtio_pci", "virtio_net", "virtio_blk", "virtio-rng"]

INIT = r"""#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /tmp /run /var/log
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m.ko; done
arg() { sed -n "s/.*oscarvt\.$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
name=$(arg name); hostname "${name:-guest}"
lan=$(arg lan)
ip link set lo up
for i in 1 2 3 4 5 6 7 8 9 10; do ls /sys/class/net | grep -q eth && break; sleep 0.2; done
for dev in $(ls /sys/class/net | grep -v '^lo$'); do
    ip link set "$dev" up
    mac=$(cat /sys/class/net/$dev/address)
    if [ -n "$lan" ]; then
        ip addr add "$lan.$((0x${mac##*:}))/24" dev "$dev"
    else
        udhcpc -f -S -i "$dev" -s /etc/udhcpc.script >/dev/null 2>&1 &
    fi
    echo "oscarvt-guest: $dev $mac"
done
mkdir -p /etc/dropbear
dropbear -R -F -E -p 22 2>/var/log/dropbear.log &
echo "__READY__"
while :; do sleep 3600; done
"""

UDHCPC_SCRIPT = r"""#!/bin/sh
case "$1" in
    deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
    bound|renew)
        ip addr flush dev "$interface"
        ip addr add "$ip/${mask:-24}" dev "$interface"
        [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
        ;;
esac
exit 0
"""

ISOLINUX_CFG = """serial 0 115200
default guest
prompt 0
timeout 1
label guest
  kernel /vmlinuz
  append initrd=/initrd.gz {append}
"""


@dataclass(frozen=True)
class TestGuest:
    """A built test guest: kernel, initramfs, and the credentials it accepts."""

    folder: Path

    @property
    def kernel(self) -> Path:
        return self.folder / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.folder / "initrd.gz"

    @property
    def key(self) -> Path:
        """Private key (ECDSA, OpenSSH PEM) that root's authorized_keys accepts."""
        return self.folder / "id_ecdsa"

    @property
    def password(self) -> str:
        return PASSWORD

    def build_iso(self, iso: Path, append: str) -> Path:
        """Write a bootable CD (isolinux) that starts this guest with ``append``."""
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            (root / "isolinux").mkdir()
            shutil.copy(self.kernel, root / "vmlinuz")
            shutil.copy(self.initrd, root / "initrd.gz")
            shutil.copy("/usr/lib/ISOLINUX/isolinux.bin", root / "isolinux")
            shutil.copy("/usr/lib/syslinux/modules/bios/ldlinux.c32", root / "isolinux")
            (root / "isolinux" / "isolinux.cfg").write_text(
                ISOLINUX_CFG.format(append=f"console=ttyS0 {append}".strip())
            )
            _run(["xorriso", "-as", "mkisofs", "-quiet", "-o", str(iso),
                  "-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat",
                  "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table", str(root)])
        return iso


def kernel_package() -> str:
    """The versioned Debian cloud kernel package that linux-image-cloud-amd64 points to."""
    out = _run(["apt-cache", "depends", "linux-image-cloud-amd64"])
    for line in out.splitlines():
        word = line.split(":")[-1].strip()
        if line.strip().startswith("Depends:") and word.startswith("linux-image-"):
            return word
    raise InfraError("apt-cache knows no linux-image-cloud-amd64; run 'apt-get update'")


def build_test_guest(force: bool = False) -> TestGuest:
    """Build the test guest, or return the cached one for the same recipe."""
    package = kernel_package()
    versions = _run(["dpkg-query", "-W", "busybox-static", "dropbear-bin"])
    key = recipe_key(Path(__file__).read_text(), package, versions)
    folder, _ = cached_build("testguest", key, lambda out: _build(out, package), force)
    return TestGuest(folder)


def _build(out: Path, package: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        _run(["apt-get", "download", package], cwd=tmpdir)
        (deb,) = tmpdir.glob("*.deb")
        unpacked = tmpdir / "kernel"
        _run(["dpkg-deb", "-x", str(deb), str(unpacked)])
        (vmlinuz,) = (unpacked / "boot").glob("vmlinuz-*")
        shutil.copy(vmlinuz, out / "vmlinuz")
        root = tmpdir / "root"
        _fill_root(root, next((unpacked / "lib" / "modules").iterdir()), out)
        files = _run(["find", "."], cwd=root)
        cpio = subprocess.run(["cpio", "--quiet", "-o", "-H", "newc", "-R", "0:0"], cwd=root,
                              input=files.encode(), capture_output=True)
        if cpio.returncode != 0:
            raise InfraError(f"test guest build: cpio failed: {cpio.stderr.decode().strip()}")
        (out / "initrd.gz").write_bytes(gzip.compress(cpio.stdout, compresslevel=6))
    (out / "guest.json").write_text(json.dumps({"kernel_package": package}) + "\n")


def _fill_root(root: Path, modules: Path, out: Path) -> None:
    for sub in ["bin", "lib/modules", "etc", "root/.ssh", "proc", "sys", "dev", "usr/lib"]:
        (root / sub).mkdir(parents=True, exist_ok=True)
    for link, target in [("sbin", "bin"), ("usr/bin", "../bin"), ("usr/sbin", "../bin")]:
        (root / link).symlink_to(target)
    shutil.copy("/bin/busybox", root / "bin" / "busybox")
    for applet in _run(["/bin/busybox", "--list"]).split():
        if not (root / "bin" / applet).exists():
            (root / "bin" / applet).symlink_to("busybox")
    for binary, dest in [("/usr/sbin/dropbear", "bin/dropbear"),
                         ("/usr/lib/openssh/sftp-server", "usr/lib/sftp-server")]:
        if Path(binary).exists():
            shutil.copy(binary, root / dest)
            _copy_libraries(binary, root)
    order = _module_load_order(modules, MODULES)
    for name, path in order.items():
        shutil.copy(path, root / "lib" / "modules" / f"{name}.ko")
    _write(root / "lib" / "modules" / "order", " ".join(order) + "\n", 0o644)
    init = INIT.replace("__READY__", READY_MARKER)
    _write(root / "init", init, 0o755)
    _write(root / "etc" / "udhcpc.script", UDHCPC_SCRIPT, 0o755)
    _write(root / "etc" / "passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644)
    _write(root / "etc" / "group", "root:x:0:\n", 0o644)
    _write(root / "etc" / "shells", "/bin/sh\n", 0o644)
    hashed = _run(["openssl", "passwd", "-6", PASSWORD]).strip()
    _write(root / "etc" / "shadow", f"root:{hashed}:19000:0:99999:7:::\n", 0o600)
    key = paramiko.ECDSAKey.generate(bits=256)
    key.write_private_key_file(str(out / "id_ecdsa"))
    _write(root / "root" / ".ssh" / "authorized_keys",
           f"{key.get_name()} {key.get_base64()} oscarvt-test\n", 0o600)
    (root / "root" / ".ssh").chmod(0o700)
    (root / "root").chmod(0o700)


def _module_load_order(modules: Path, wanted: list[str]) -> dict[str, Path]:
    """Map each wanted module and its dependencies to its file, dependencies first."""
    files = {p.name.removesuffix(".ko"): p for p in modules.rglob("*.ko")}
    order: dict[str, Path] = {}

    def visit(name: str) -> None:
        if name in order:
            return
        if name not in files:
            raise InfraError(f"test guest build: kernel has no module {name}")
        found = re.search(rb"depends=([\w,-]*)", files[name].read_bytes())
        for dep in filter(None, (found.group(1).decode() if found else "").split(",")):
            visit(dep)
        order[name] = files[name]

    for name in wanted:
        visit(name)
    return order


def _copy_libraries(binary: str, root: Path) -> None:
    for line in _run(["ldd", binary]).splitlines():
        parts = line.split()
        path = parts[2] if "=>" in parts and len(parts) > 2 else parts[0]
        if path.startswith("/"):
            dest = root / path.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, dest)


def _write(path: Path, text: str, mode: int) -> None:
    path.write_text(text)
    path.chmod(mode)


def _run(argv: list[str], cwd: Path | None = None) -> str:
    return run_tool(argv, f"test guest build: {argv[0]}", cwd=cwd)


if __name__ == "__main__":
    print(build_test_guest().folder)
