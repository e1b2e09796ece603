"""The cluster spec: defaults, and one clear error line for each kind of bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import oscarvt, spec_data, write_spec

from oscarvt.errors import OscarvtError
from oscarvt.spec import load_spec, spec_from_dict


def test_defaults_fill_everything_but_template_and_credentials(guest, tmp_path):
    path = write_spec(tmp_path / "spec.yaml", {"template": str(guest.kernel).replace("vmlinuz", "initrd.gz"),
                                               "ssh": {"password": "x"}})
    spec = load_spec(path)
    assert spec.template.disk == guest.initrd
    assert (spec.nodes.count, spec.nodes.boot, spec.nodes.name) == (2, "cdrom", "oscarnode")
    assert (spec.network.private, spec.accel, spec.ssh.user) == ("mcast", "auto", "root")


def test_relative_paths_are_taken_from_the_spec_folder(guest, tmp_path):
    (tmp_path / "k").write_bytes(guest.kernel.read_bytes()[:16])
    spec = load_spec(write_spec(tmp_path / "spec.yaml", {"template": {"kernel": "k"}, "ssh": {"key": "k"}}))
    assert spec.template.kernel == tmp_path / "k"
    assert spec.ssh.key == tmp_path / "k"


@pytest.mark.parametrize("change, message", [
    ({"nodes": {"cuont": 2}}, "unknown key 'nodes.cuont'"),
    ({"colour": "red"}, "unknown key 'colour'"),
    ({"nodes": {"count": "two"}}, "key 'nodes.count' must be a whole number"),
    ({"nodes": {"boot": "floppy"}}, "key 'nodes.boot' must be one of cdrom, network, disk"),
    ({"nodes": {"disk": "lots"}}, "key 'nodes.disk' must be a size"),
    ({"accel": "hyperv"}, "key 'accel' must be one of auto, kvm, tcg"),
    ({"network": {"subnet": "10.0.2.0/24"}}, "must be IPv4 and not overlap 10.0.2.0/24"),
    ({"network": {"subnet": "192.168.1.0/30"}}, "is too small for 2 nodes"),
    ({"headnode": {"memory": 8}}, "key 'headnode.memory' must be at least 64"),
    ({"ssh": {"password": None}}, "key 'ssh' needs 'password' or 'key'"),
    ({"oscar": {"dir": "opt/oscar"}}, "key 'oscar.dir' must be an absolute path on the headnode"),
    ({"oscar": {"dir": "//"}}, "key 'oscar.dir' must name a path below /, not '//'"),
    ({"template": {"kernel": "/nonexistent/vmlinuz"}}, "key 'template.kernel': no such file /nonexistent/vmlinuz"),
])
def test_bad_spec_is_one_error_naming_file_and_key(guest, tmp_path, change, message):
    path = write_spec(tmp_path / "spec.yaml", spec_data(guest, **change))
    with pytest.raises(OscarvtError) as error:
        load_spec(path)
    assert str(error.value).startswith(f"{path}: ")
    assert message in str(error.value)


def test_cli_bad_spec_prints_one_line_and_leaves_nothing(guest, tmp_path):
    spec = write_spec(tmp_path / "spec.yaml", spec_data(guest, nodes={"cuont": 2}))
    result = oscarvt("copy-vm-image", "--cluster", tmp_path / "c", "--spec", spec)
    assert result.returncode == 2
    assert result.output.strip() == f"FAIL: copy-vm-image: bad input: {spec}: unknown key 'nodes.cuont'"
    assert not (tmp_path / "c").exists()


def test_cli_missing_template_is_one_line(guest, tmp_path):
    spec = write_spec(tmp_path / "spec.yaml", spec_data(guest, template="missing.qcow2"))
    result = oscarvt("copy-vm-image", "--cluster", tmp_path / "c", "--spec", spec)
    assert result.returncode == 2
    assert result.output.strip() == (f"FAIL: copy-vm-image: bad input: {spec}: key 'template.disk': "
                                     f"no such file {tmp_path / 'missing.qcow2'}")


def test_cli_spec_that_is_not_yaml(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("template: [unclosed\n")
    result = oscarvt("copy-vm-image", "--cluster", tmp_path / "c", "--spec", spec)
    assert result.returncode == 2
    assert "Traceback" not in result.output
    assert result.output.startswith(f"FAIL: copy-vm-image: bad input: {spec}: line ")


def test_cli_verb_on_a_folder_without_cluster(tmp_path: Path):
    result = oscarvt("boot-headnode", "--cluster", tmp_path)
    assert result.returncode == 2
    assert result.output.strip() == (f"FAIL: boot-headnode: bad input: {tmp_path}: no cluster here "
                                     "(run 'oscarvt copy-vm-image' first)")


def test_destroy_works_when_the_template_is_gone(guest, tmp_path):
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(guest.kernel.read_bytes())
    data = spec_data(guest)
    data["template"]["kernel"] = str(kernel)
    spec = write_spec(tmp_path / "spec.yaml", data)
    assert oscarvt("copy-vm-image", "--cluster", tmp_path / "c", "--spec", spec).returncode == 0
    kernel.unlink()
    result = oscarvt("destroy", "--cluster", tmp_path / "c")
    assert result.returncode == 0, result.output
    assert result.last_line == "PASS: destroy: 0 VMs stopped, 3 disks removed, no VM of c running"


def test_a_cluster_keeps_the_suite_beside_the_template_files_it_was_resolved_to(tmp_path):
    """A spec names a built template by suite and arch, or by its files, not both; the cluster's
    stored spec has both (the files it boots, the suite it is), and later verbs must read it."""
    data = {"template": {"suite": "trixie", "arch": "amd64", "disk": "/t/headnode.qcow2", "kernel": "/t/vmlinuz",
                         "initrd": "/t/initrd.img", "append": "root=/dev/vda console=ttyS0"},
            "ssh": {"key": "/t/id_ecdsa"}}
    with pytest.raises(OscarvtError, match="names a built template by 'suite' and 'arch', or its files"):
        spec_from_dict(data, tmp_path)
    stored = spec_from_dict(data, tmp_path, stored=True)
    assert (stored.template.suite, stored.template.disk) == ("trixie", Path("/t/headnode.qcow2"))
    assert spec_from_dict(stored.to_dict(), tmp_path, stored=True) == stored
    with pytest.raises(OscarvtError, match="not both"):  # the master checks builders' specs as user input
        spec_from_dict(data, tmp_path, check_files=False)
