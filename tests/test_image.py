"""``oscarvt image build``: a Debian headnode template that boots, answers SSH, and stays unchanged.

The template is built by ``make test`` before the tests enter their network
namespace (mmdebstrap needs the package registry); here the same command must
find it in the cache, and a build that cannot reach the registry must fail cleanly.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import in_private_netns, oscarvt, write_spec

from oscarvt import image
from oscarvt.errors import OscarvtError
from oscarvt.spec import spec_from_dict

pytestmark = pytest.mark.vm


MAKEFILE = Path(__file__).resolve().parents[1] / "Makefile"


def make_targets() -> list[tuple[str, str]]:
    """The (suite, arch) of each template ``make test`` builds first: the Makefile's TEMPLATES."""
    line = re.search(r"^TEMPLATES \?= (.*)$", MAKEFILE.read_text(), re.M)
    assert line is not None
    return [tuple(target.split(":")) for target in line.group(1).split()]  # type: ignore[misc]


def make_mirrors() -> dict[str, list[str]]:
    """The ``--mirror`` flags the Makefile gives a suite's build (MIRRORS_<suite>): part of the recipe."""
    makefile = MAKEFILE.read_text().replace("\\\n", " ")
    return {suite: shlex.split(flags) for suite, flags in re.findall(r"^MIRRORS_(\w+) \?= (.*)$", makefile, re.M)}


TARGETS = make_targets()
MIRRORS = make_mirrors()


@pytest.fixture(scope="module", params=TARGETS, ids=[f"{s}-{a}" for s, a in TARGETS])
def template(request) -> dict[str, Any]:
    """The spec lines ``image build`` prints for one target, found in the cache."""
    suite, arch = request.param
    result = oscarvt("image", "build", "--suite", suite, "--arch", arch, *MIRRORS.get(suite, ()))
    assert result.returncode == 0, result.output
    assert result.last_line.endswith("(from the cache)"), "run 'make test', which builds the templates first"
    lines = yaml.safe_load(result.stdout)
    assert lines["template"]["arch"] == arch
    return lines


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_template_has_no_ssh_host_keys_and_its_logins_skip_the_motd_and_the_reexec(template, tmp_path):
    raw = tmp_path / "root.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", template["template"]["disk"], str(raw)], check=True)
    listing = subprocess.run(["debugfs", "-R", "ls /etc/ssh", str(raw)],
                             capture_output=True, text=True, check=True).stdout
    assert "sshd_config" in listing
    assert "ssh_host_" not in listing
    pam = subprocess.run(["debugfs", "-R", "cat /etc/pam.d/sshd", str(raw)],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert any(line.startswith("# oscarvt: session") and "pam_motd.so" in line for line in pam), pam
    assert not [line for line in pam if not line.startswith("#") and ("pam_motd" in line or "pam_mail" in line)]
    assert any(line.startswith("@include common-session") for line in pam)  # the rest of the session stays
    defaults = subprocess.run(["debugfs", "-R", "cat /etc/default/ssh", str(raw)],
                              capture_output=True, text=True, check=True).stdout.splitlines()
    session = subprocess.run(["debugfs", "-R", "stat /usr/lib/openssh/sshd-session", str(raw)],
                             capture_output=True, text=True).stdout
    options = [line for line in defaults if line.startswith("SSHD_OPTS=")]
    # OpenSSH 9.8 and later (trixie's) execute sshd-session for each login whatever the options say
    assert options == (["SSHD_OPTS="] if "Inode:" in session else ["SSHD_OPTS=-r"]), (defaults, session[:80])


def test_headnode_from_the_template_boots_and_answers_ssh(template, clusters, tmp_path):
    """The lines ``image build`` printed, pasted into a spec as they are, boot a headnode."""
    before = sha256(template["template"]["disk"])
    spec = tmp_path / "spec.yaml"
    printed = oscarvt("image", "build", "--suite", template_suite(template), "--arch", template["template"]["arch"],
                      *MIRRORS.get(template_suite(template), ())).stdout
    spec.write_text(printed + "nodes: {count: 0}\naccel: tcg\n")
    cluster = clusters(tmp_path / "c")
    assert oscarvt("copy-vm-image", "--cluster", cluster.path, "--spec", spec).returncode == 0
    boot = oscarvt("boot-headnode", "--cluster", cluster.path)
    assert boot.returncode == 0, boot.output
    result = oscarvt("ssh", "--cluster", cluster.path, "headnode", "--",
                     "ls /etc/ssh/ssh_host_ed25519_key && git --version && svn --version --quiet"
                     " && rsync --version | head -1 && dpkg --print-architecture && . /etc/os-release"
                     " && echo $VERSION_CODENAME && systemctl is-system-running --wait"
                     " && tr '\\0' ' ' </proc/$(cat /run/sshd.pid)/cmdline && echo"
                     " && lsinitramfs /boot/initrd.img-$(uname -r)"
                     " | grep -Eo '[^/]+\\.ko' | sort")
    assert result.returncode == 0, result.output
    lines = [line for line in result.stdout.splitlines() if not line.endswith(".ko")]
    drivers = [line for line in result.stdout.splitlines() if line.endswith(".ko")]
    # It booted from an initrd of the virtio drivers and what they need (image.INITRAMFS_HOOK; 10 to 17
    # modules on the four templates): initramfs-tools' default (MODULES=most) puts about 200 there.
    assert "virtio_blk.ko" in drivers and len(drivers) <= 25, drivers
    assert lines[0] == "/etc/ssh/ssh_host_ed25519_key"
    assert lines[1].startswith("git version ")
    assert lines[-4:-1] == [template["template"]["arch"], template_suite(template), "running"]
    # the listening sshd's title ("sshd: /usr/sbin/sshd -D -r [listener] ..."), after the identity's HUP
    # restarted it: no re-exec per login but on trixie (image._logins_without_reexec)
    sshd = lines[-1]
    assert "sshd" in sshd and ("-r" in sshd.split()) == (template_suite(template) != "trixie"), sshd
    assert oscarvt("destroy", "--cluster", cluster.path).returncode == 0
    assert sha256(template["template"]["disk"]) == before


def template_suite(lines: dict[str, Any]) -> str:
    return json.loads((Path(lines["template"]["disk"]).parent / "template.json").read_text())["suite"]


def test_a_spec_finds_the_template_by_suite_and_arch(template, tmp_path):
    suite, arch = template_suite(template), template["template"]["arch"]
    spec = spec_from_dict({"template": {"suite": suite, "arch": arch}}, tmp_path)
    assert str(spec.template.disk) == template["template"]["disk"]
    assert (str(spec.template.kernel), spec.template.append) == (template["template"]["kernel"],
                                                                  template["template"]["append"])
    assert str(spec.ssh.key) == template["ssh"]["key"]
    assert spec_from_dict(spec.to_dict(), tmp_path, stored=True) == spec  # as a cluster's state keeps it


def test_a_target_without_a_template_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("OSCARVT_CACHE", str(tmp_path / "cache"))
    spec = write_spec(tmp_path / "spec.yaml", {"template": {"suite": "trixie", "arch": "arm64"}})
    result = oscarvt("copy-vm-image", "--cluster", tmp_path / "c", "--spec", spec)
    assert result.returncode == 2
    assert result.output.strip() == (f"FAIL: copy-vm-image: bad input: {spec}: key 'template': no trixie arm64 "
                                     "template on this host: run 'oscarvt image build --suite trixie --arch arm64'")
    assert not (tmp_path / "c").exists()


@pytest.mark.skipif(not in_private_netns(), reason="needs the test namespace, where no registry is reachable")
def test_unreachable_registry_fails_cleanly_and_leaves_nothing(tmp_path, monkeypatch):
    # The test namespace has no network: mmdebstrap cannot reach the registry.
    monkeypatch.setenv("OSCARVT_CACHE", str(tmp_path / "cache"))
    result = oscarvt("image", "build", timeout=300)
    assert result.returncode == 3
    assert result.last_line.startswith("FAIL: image build: infrastructure: mmdebstrap failed: ")
    assert result.last_line.endswith("(is the Debian package registry reachable?)")
    assert "Traceback" not in result.output
    assert list((tmp_path / "cache" / "templates").iterdir()) == []


def test_too_little_free_space_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(image, "FREE_SPACE_NEEDED", 1 << 60)
    monkeypatch.setenv("OSCARVT_CACHE", str(tmp_path))
    with pytest.raises(OscarvtError, match=r"templates has [0-9.]+ GiB free, needs 1073741824 GiB"):
        image.build_template()
