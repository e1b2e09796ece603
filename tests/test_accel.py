"""KVM only when a probe guest really boots under it; otherwise TCG, with the reason printed.

A probe's outcome is kept for the host boot (no expiry), decided at once without /dev/kvm, and
probed once by runs that start together. The tests after the real probe's replace the probe
(``accel._probe``, the only part that starts QEMU) by one that counts its calls, and point the
boot id and /dev/kvm at files of their own.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
from conftest import oscarvt, spec_data, write_spec

from oscarvt import accel
from oscarvt.accel import EARLIER_RUN, THIS_RUN, choose_accel, probe_record
from oscarvt.errors import InfraError, InputError, OscarvtError

PROBE_TIMEOUT = 4
HANGS = "a probe guest did not boot under KVM within 4s (nested KVM?)"
HOUR = 3600


def test_tcg_when_the_spec_asks_for_it():
    choice = choose_accel("tcg", None, PROBE_TIMEOUT)
    assert (choice.name, choice.reason) == ("tcg", "the spec asks for TCG")


def test_probe_boots_a_real_kernel_and_its_outcome_is_kept(guest, tmp_path, monkeypatch):
    monkeypatch.setenv("OSCARVT_CACHE", str(tmp_path / "cache"))
    choice = choose_accel("auto", guest.kernel, PROBE_TIMEOUT)
    if choice.reason.endswith("decided at once, no probe guest started"):
        assert choice.name == "tcg"
        assert not (tmp_path / "cache" / "kvm-probe").exists()
        return
    assert choice.decided_by == THIS_RUN and choice.reason.endswith(" by this run, kept for this host boot")
    if choice.name == "kvm":
        assert choice.reason.startswith("a probe guest booted under KVM; probed ")
    else:
        assert choice.reason.startswith(("a probe guest did not boot under KVM within 4s", "QEMU with KVM failed"))
    record = probe_record()
    assert record is not None and json.loads(record.read_text())["problem"] == (
        None if choice.name == "kvm" else choice.reason.split("; probed ")[0])


def test_kvm_asked_for_but_not_working_is_an_error(guest, tmp_path, monkeypatch):
    monkeypatch.setenv("OSCARVT_CACHE", str(tmp_path / "cache"))
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
    accel_kept = cluster.load().accel
    assert accel_kept is not None and lines[0].endswith(f"accelerator: {accel_kept.name.upper()} ({accel_kept.reason})")


@dataclass
class Host:
    """A host of the test's own: its boot id file, its /dev/kvm, a probe kernel, the probes made."""

    boot_id: Path
    kvm: Path
    kernel: Path
    probes: list[float] = field(default_factory=list)  # each probe's timeout
    during_first_probe: list[Callable[[], object]] = field(default_factory=list)

    def reboot(self) -> None:
        self.boot_id.write_text(f"{uuid.uuid4()}\n")

    def record(self) -> Path:
        record = probe_record()
        assert record is not None
        return record


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Host:
    """A host where /dev/kvm opens but a probe guest hangs, whose probe answers at once."""
    made = Host(tmp_path / "boot_id", tmp_path / "kvm", tmp_path / "vmlinuz")
    made.reboot()
    made.kvm.write_bytes(b"")
    made.kernel.write_bytes(b"")
    monkeypatch.setenv("OSCARVT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(accel, "BOOT_ID", made.boot_id)
    monkeypatch.setattr(accel, "KVM_DEVICE", made.kvm)

    def probe(kernel: Path, timeout: float, arch: object) -> str:
        made.probes.append(timeout)
        for call in made.during_first_probe if len(made.probes) == 1 else []:
            call()
        return HANGS

    monkeypatch.setattr(accel, "_probe", probe)
    return made


def test_a_probe_is_kept_for_the_host_boot_not_for_an_hour(host):
    first = choose_accel("auto", host.kernel, PROBE_TIMEOUT)
    assert (first.name, first.decided_by, first.waited) == ("tcg", THIS_RUN, 0.0)
    assert first.reason.startswith(f"{HANGS}; probed ")
    assert first.reason.endswith(" by this run, kept for this host boot")
    record = host.record()
    kept = json.loads(record.read_text())
    kept["at"] -= HOUR + 60
    record.write_text(json.dumps(kept))
    again = choose_accel("auto", host.kernel, PROBE_TIMEOUT + 10)  # another timeout: the same host's KVM
    assert host.probes == [PROBE_TIMEOUT]
    assert (again.name, again.decided_by, again.decided_at, again.waited) == ("tcg", EARLIER_RUN, kept["at"], 0.0)
    assert again.reason.startswith(f"{HANGS}; probed ")
    assert again.reason.endswith(" by an earlier run of this host boot")
    asked = f"^the spec asks for KVM, but {re.escape(HANGS)}; probed .* by an earlier run of this host boot$"
    with pytest.raises(InputError, match=asked):
        choose_accel("kvm", host.kernel, PROBE_TIMEOUT)
    assert host.probes == [PROBE_TIMEOUT]


def test_a_damaged_record_is_probed_anew(host):
    choose_accel("auto", host.kernel, PROBE_TIMEOUT)
    host.record().write_text('{"problem": 7, "at": "')
    assert choose_accel("auto", host.kernel, PROBE_TIMEOUT).decided_by == THIS_RUN
    assert len(host.probes) == 2 and json.loads(host.record().read_text())["problem"] == HANGS


def test_a_new_boot_probes_again_and_drops_the_last_boots_records(host):
    choose_accel("auto", host.kernel, PROBE_TIMEOUT)
    last_boot = host.record().parent
    hourly = last_boot.parent / "0123456789abcdef.json"  # an older version's record, kept for an hour
    hourly.write_text('{"problem": null, "at": 0}')
    host.reboot()
    choice = choose_accel("auto", host.kernel, PROBE_TIMEOUT)
    assert choice.decided_by == THIS_RUN and len(host.probes) == 2
    assert host.record().parent != last_boot and not last_boot.exists() and not hourly.exists()


def test_without_dev_kvm_tcg_is_decided_at_once_and_nothing_is_kept(host, tmp_path, monkeypatch):
    monkeypatch.setattr(accel, "KVM_DEVICE", tmp_path / "no-kvm")
    choice = choose_accel("auto", host.kernel, PROBE_TIMEOUT)
    missing = f"there is no {tmp_path}/no-kvm"
    assert (choice.name, choice.reason) == ("tcg", f"{missing}; decided at once, no probe guest started")
    assert choice.decided_by == THIS_RUN and host.probes == []
    assert not (tmp_path / "cache").exists()
    with pytest.raises(InputError, match=f"^the spec asks for KVM, but {re.escape(missing)}; decided at once"):
        choose_accel("kvm", host.kernel, PROBE_TIMEOUT)


@pytest.fixture
def blocked(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Set when a run finds the probe's lock held (and waits for its turn)."""
    event = threading.Event()
    real_flock = fcntl.flock

    def flock(fd: int, operation: int) -> None:
        try:
            real_flock(fd, operation)
        except BlockingIOError:
            event.set()
            raise

    monkeypatch.setattr(accel.fcntl, "flock", flock)
    return event


def test_two_runs_at_once_probe_once(host, blocked):
    """The second run starts while the first probes (threads: each opens the lock file, as processes do)."""
    choices: dict[str, accel.Accel] = {}
    second = threading.Thread(target=lambda: choices.update(second=choose_accel("auto", host.kernel, PROBE_TIMEOUT)))
    host.during_first_probe += [second.start, lambda: blocked.wait(30)]
    choices["first"] = choose_accel("auto", host.kernel, PROBE_TIMEOUT)
    second.join(30)
    assert blocked.is_set() and host.probes == [PROBE_TIMEOUT]
    first, other = choices["first"], choices["second"]
    assert (first.decided_by, other.decided_by) == (THIS_RUN, EARLIER_RUN)
    assert (other.name, other.decided_at) == (first.name, first.decided_at)
    assert other.waited > 0 and f", which this run waited {other.waited:.1f}s for" in other.reason


HOLD_THE_LOCK = """
import fcntl, os, sys, time
lock = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(lock, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(600)
"""


def test_a_run_that_dies_holding_the_lock_does_not_block_the_next(host, blocked):
    lock = host.record().with_suffix(".lock")
    lock.parent.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, lock], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        choices: list[accel.Accel] = []
        run = threading.Thread(target=lambda: choices.append(choose_accel("auto", host.kernel, 1)))
        run.start()
        assert blocked.wait(30)
        holder.kill()  # dies with its probe unfinished and nothing kept
    finally:
        holder.kill()
        holder.wait()
    run.join(30)
    assert host.probes == [1]  # had the lock stayed held, the run would have given up without a probe
    assert choices[0].decided_by == THIS_RUN and choices[0].waited > 0


def test_a_run_that_holds_the_lock_too_long_gives_tcg_for_this_run_only(host, monkeypatch):
    monkeypatch.setattr(accel, "PROBE_GRACE", 0.1)
    lock_path = host.record().with_suffix(".lock")
    lock_path.parent.mkdir(parents=True)
    lock = os.open(lock_path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        choice = choose_accel("auto", host.kernel, 0.1)
        with pytest.raises(InfraError, match="^cannot tell whether KVM works: another run's KVM probe held "):
            choose_accel("kvm", host.kernel, 0.1)
    finally:
        os.close(lock)
    assert choice.name == "tcg" and choice.reason.startswith("cannot tell whether KVM works: ")
    assert choice.reason.endswith("; nothing kept") and host.probes == [] and not host.record().exists()
