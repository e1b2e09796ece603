"""KVM only when a probe guest really boots under it; otherwise TCG, with the reason printed."""

from __future__ import annotations

import time

import pytest
from conftest import oscarvt, spec_data, write_spec

from oscarvt.accel import choose_accel
from oscarvt.errors import OscarvtError

PROBE_TIMEOUT = 4


def test_tcg_when_the_spec_asks_for_it():
    choice = choose_accel("tcg", None, PROBE_TIMEOUT)
    assert (choice.name, choice.reason) == ("tcg", "the spec asks for TCG")


def test_probe_boots_a_real_kernel_within_its_timeout(guest):
    started = time.monotonic()
    choice = choose_accel("auto", guest.kernel, PROBE_TIMEOUT)
    assert time.monotonic() - started < PROBE_TIMEOUT + 3
    if choice.name == "kvm":
        assert choice.reason == "a probe guest booted under KVM"
    else:
        assert choice.name == "tcg"
        assert any(words in choice.reason for words in (
            "no /dev/kvm", "cannot open /dev/kvm", "did not boot under KVM", "QEMU with KVM failed"))


def test_kvm_asked_for_but_not_working_is_an_error(guest):
    if choose_accel("auto", guest.kernel, PROBE_TIMEOUT).name == "kvm":
        pytest.skip("KVM works on this host")
    with pytest.raises(OscarvtError, match="^the spec asks for KVM, but "):
        choose_accel("kvm", guest.kernel, PROBE_TIMEOUT)


@pytest.mark.vm
def test_boot_headnode_says_which_accelerator_and_why(clusters, guest, tmp_path):
    cluster = clusters(tmp_path / "c")
    spec = write_spec(tmp_path / "spec.yaml", spec_data(guest, accel="auto", nodes={"count": 0},
                                                         timeouts={"kvm_probe": PROBE_TIMEOUT}))
    assert oscarvt("copy-vm-image", "--cluster", cluster.path, "--spec", spec).returncode == 0
    result = oscarvt("boot-headnode", "--cluster", cluster.path)
    assert result.returncode == 0, result.output
    lines = [line for line in result.stdout.splitlines() if "accelerator:" in line]
    assert len(lines) == 1
    accel = cluster.load().accel
    assert accel is not None and lines[0].endswith(f"accelerator: {accel.name.upper()} ({accel.reason})")


def test_a_probe_is_remembered_and_a_changed_timeout_probes_again(guest, tmp_path, monkeypatch):
    monkeypatch.setenv("OSCARVT_CACHE", str(tmp_path / "cache"))
    first = choose_accel("auto", guest.kernel, PROBE_TIMEOUT)
    records = list((tmp_path / "cache" / "kvm-probe").glob("*.json"))  # none where nothing was probed
    started = time.monotonic()
    again = choose_accel("auto", guest.kernel, PROBE_TIMEOUT)
    assert time.monotonic() - started < 1
    assert again.name == first.name
    if first.name == "kvm" or not records:
        assert again.reason == first.reason
        return
    assert len(records) == 1
    assert again.reason.startswith(first.reason + "; probed at ") and again.reason.endswith(", kept for an hour")
    other = choose_accel("auto", guest.kernel, PROBE_TIMEOUT + 1)
    assert "probed at" not in other.reason
    assert len(list(records[0].parent.glob("*.json"))) == 2
