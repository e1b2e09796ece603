"""Triage's comparisons with the last green build, on files and properties as a real build leaves them
(the whole step runs on a real master in tests/test_bisect.py)."""

from __future__ import annotations

from pathlib import Path

from oscarvt_master.triage import SCANNED, changed, first_new_error, slow_phases

OSCAR_OUTPUT, OSCAR_LOG = SCANNED


def logs(folder: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return folder


def test_the_first_error_line_the_green_build_lacked_is_found_past_those_it_had(tmp_path):
    green = logs(tmp_path / "12", {OSCAR_LOG: "step 4\nERROR: mirror took 31 s at 10:12:01\n",
                                    "consoles/oscarnode1.log": "Booting\n"})
    red = logs(tmp_path / "13", {OSCAR_LOG: "step 4\nERROR: mirror took 45 s at 11:40:17\n",  # the same, masked
                                  "consoles/oscarnode1.log": "Booting\noscar-installer: ERROR: fdisk /dev/vda failed\n",
                                  })
    assert first_new_error(red, green) == "consoles/oscarnode1.log: oscar-installer: ERROR: fdisk /dev/vda failed"


def test_oscars_output_comes_before_its_log_and_the_consoles(tmp_path):
    green = logs(tmp_path / "12", {})
    red = logs(tmp_path / "13", {OSCAR_OUTPUT: "You must build at least one image! (step 5 failed)\n",
                                  "consoles/oscarnode1.log": "kernel: error 5\n"})
    assert first_new_error(red, green) == f"{OSCAR_OUTPUT}: You must build at least one image! (step 5 failed)"


def test_a_linked_console_is_not_read_and_a_control_character_is_shown_escaped(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("error: the master's own file\n")
    green = logs(tmp_path / "12", {})
    red = logs(tmp_path / "13", {"consoles/oscarnode2.log": "fatal: \x1b]0;owned\x07 disk\n"})
    (red / "consoles" / "oscarnode1.log").symlink_to(secret)
    found = first_new_error(red, green)
    assert found is not None and found.startswith("consoles/oscarnode2.log: ")
    assert "\x1b" not in found and "\\x1b" in found and "master's own" not in found


def test_no_new_error_line_is_none(tmp_path):
    same = {OSCAR_LOG: "warning: slow\nfailed to start foo.service\n"}
    assert first_new_error(logs(tmp_path / "13", same), logs(tmp_path / "12", same)) is None


def test_what_changed_and_what_left_the_usual_spread():
    green = {"template": "8d5a643b092c2ba1", "spec_sha256": "aa", "oscarvt_version": "0.1.0", "workername": "hv1"}
    this = {**green, "spec_sha256": "bb", "workername": "hv2",
            "phase_seconds": {"boot-headnode": 48.0, "start-oscar": 31.0, "wait-for-nodes": 60.0}}
    assert changed(this, green) == {"spec_sha256": "the spec changed: aa -> bb",
                                    "workername": "the worker changed: hv1 -> hv2"}
    greens = [{"phase_seconds": {"boot-headnode": seconds, "start-oscar": 30.0}} for seconds in (3.0, 4.5, 6.0)]
    assert slow_phases(this, greens) == ["boot-headnode slower: 48 s, usually 3-6 s (3 green builds)"]
