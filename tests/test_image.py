"""``oscarvt image build``: a Debian headnode template that boots, answers SSH, and stays unchanged.

The template is built by ``make test`` before the tests enter their network
namespace (mmdebstrap needs the package registry); here the same command must
find it in the cache, and a build that cannot reach the registry must fail cleanly.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from conftest import in_private_netns, oscarvt, write_spec

from oscarvt import image
from oscarvt.errors import OscarvtError

pytestmark = pytest.mark.vm


def template_lines(output: str) -> dict[str, str]:
    """The ``key: value`` lines ``image build`` prints for the spec."""
    found = {}
    for line in output.splitlines():
        key, _, value = line.strip().partition(": ")
        if key in ("disk", "kernel", "initrd", "append", "template"):
            found[key] = value
    return found


@pytest.fixture(scope="module")
def template() -> dict[str, str]:
    result = oscarvt("image", "build")
    assert result.returncode == 0, result.output
    assert result.last_line.endswith("(from the cache)"), "run 'make test', which builds the template first"
    return template_lines(result.stdout)


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_template_has_no_ssh_host_keys(template, tmp_path):
    raw = tmp_path / "root.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", template["disk"], str(raw)], check=True)
    listing = subprocess.run(["debugfs", "-R", "ls /etc/ssh", str(raw)],
                             capture_output=True, text=True, check=True).stdout
    assert "sshd_config" in listing
    assert "ssh_host_" not in listing


def test_headnode_from_the_template_boots_and_answers_ssh(template, clusters, tmp_path):
    before = sha256(template["disk"])
    key = Path(template["template"]) / "id_ecdsa"
    spec = write_spec(tmp_path / "spec.yaml", {
        "template": {k: template[k] for k in ("disk", "kernel", "initrd", "append")},
        "nodes": {"count": 0}, "ssh": {"key": str(key)}, "accel": "tcg"})
    cluster = clusters(tmp_path / "c")
    assert oscarvt("copy-vm-image", "--cluster", cluster.path, "--spec", spec).returncode == 0
    boot = oscarvt("boot-headnode", "--cluster", cluster.path)
    assert boot.returncode == 0, boot.output
    result = oscarvt("ssh", "--cluster", cluster.path, "headnode", "--",
                     "ls /etc/ssh/ssh_host_ed25519_key && git --version && svn --version --quiet"
                     " && rsync --version | head -1 && systemctl is-system-running --wait")
    assert result.returncode == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "/etc/ssh/ssh_host_ed25519_key"
    assert lines[1].startswith("git version ")
    assert lines[-1] == "running"
    assert oscarvt("destroy", "--cluster", cluster.path).returncode == 0
    assert sha256(template["disk"]) == before


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
