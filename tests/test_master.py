"""The master configuration: `buildbot checkconfig` on the example settings, and bad settings
files rejected at checkconfig time with one line naming the key."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from buildbot.process.results import EXCEPTION, FAILURE, RETRY, SUCCESS

from oscarvt_master.reporters import HarnessMail, ProductMail
from oscarvt_master.secret_files import hashed_line
from oscarvt_master.settings import SettingsError, settings_from_dict

ROOT = Path(__file__).parent.parent
BUILDBOT = Path(sys.executable).parent / "buildbot"


def master_dir(tmp_path: Path, settings: dict) -> Path:
    """A master folder: master.cfg from the repository, the settings, a secrets folder."""
    folder = tmp_path / "master"
    folder.mkdir()
    shutil.copy(ROOT / "master.cfg", folder)
    (folder / "settings.yaml").write_text(yaml.safe_dump(settings))
    secrets = folder / "secrets"
    secrets.mkdir(mode=0o700)
    admin = hashed_line("admin", "admin-password", rounds=4)  # rounds: a quick hash for tests
    for name, text in (("worker-hv1", "worker-password"), ("www-users", admin + "\n")):
        (secrets / name).write_text(text)
        (secrets / name).chmod(0o600)
    return folder


def example() -> dict:
    return yaml.safe_load((ROOT / "master.example.yaml").read_text())


def checkconfig(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BUILDBOT), "checkconfig", str(folder)], capture_output=True, text=True, timeout=120)


def test_checkconfig_passes_on_the_example_settings(tmp_path):
    result = checkconfig(master_dir(tmp_path, example()))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Config file is good!" in result.stdout


def test_a_bad_settings_file_is_one_line_at_checkconfig(tmp_path):
    settings = example()
    settings["builders"][0]["boot"] = "floppy"
    result = checkconfig(master_dir(tmp_path, settings))
    assert result.returncode == 1
    assert result.stdout + result.stderr == (
        f"Configuration Errors:\n  {tmp_path}/master/settings.yaml: key 'builders[0].boot' must be one of "
        "cdrom, network, not 'floppy'\n")


@pytest.mark.parametrize("edit, message", [
    (lambda s: s["workers"][0].update(password="x"),
     "key 'workers[0].password': passwords go in the secrets folder (file worker-hv1), never in this file"),
    (lambda s: s["repositories"][0].update(vcs="cvs"), "key 'repositories[0].vcs' must be git or svn, not 'cvs'"),
    (lambda s: s["builders"][0].update(workers=["hv9"]),
     "key 'builders[0].workers' must name workers from 'workers' (unknown: hv9)"),
    (lambda s: s["builders"][0]["spec"].update(accel="fast"),
     "key 'builders[0].spec': key 'accel' must be one of auto, kvm, tcg, not 'fast'"),
    (lambda s: s["mail"].update(to=["devs"]), "key 'mail.to[0]' is not a mail address with a dotted domain: 'devs'"),
    (lambda s: s.update(nightly={"hour": 25}), "key 'nightly' must be a time of day, not 25:00"),
    (lambda s: s.update(colour="blue"), "unknown key 'colour'"),
])
def test_settings_errors_name_the_key(edit, message):
    settings = example()
    edit(settings)
    with pytest.raises(SettingsError) as error:
        settings_from_dict(settings)
    assert str(error.value) == message


def setup_worker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(ROOT / "workers/setup-worker.sh"), *args], capture_output=True, text=True)


def test_setup_worker_checks_the_host_and_refuses_bad_flags(tmp_path):
    result = setup_worker("--check")
    verdict = result.stdout.strip().splitlines()[-1]
    assert (result.returncode, verdict) in [(0, "PASS: setup-worker --check: this host has what oscarvt needs")] \
        or (result.returncode == 1 and verdict.startswith("FAIL: setup-worker --check: "))
    assert setup_worker("--bogus").stdout == "FAIL: setup-worker: unknown option '--bogus' (see --help)\n"
    password = tmp_path / "pw"
    password.write_text("x")
    result = setup_worker("--master", "nohost", "--name", "hv1", "--password-file", str(password))
    assert result.stdout == "FAIL: setup-worker: --master must be HOST:PORT, not 'nohost'\n"


@pytest.mark.parametrize("results, properties, developers, admins", [
    (SUCCESS, {}, True, False),
    (FAILURE, {"blame": ("product", "oscarvt")}, True, False),
    (RETRY, {"blame": ("infrastructure", "oscarvt")}, False, True),
    (EXCEPTION, {"blame": ("bad input", "oscarvt")}, False, True),
    (FAILURE, {"blame": ("product", "oscarvt"), "harness_trouble": ("destroy: headnode still runs", "oscarvt")},
     True, True),
])
def test_mail_goes_to_whom_the_blame_names(results, properties, developers, admins):
    build = {"results": results, "properties": properties, "prev_build": None}
    assert ProductMail(mode="all").is_message_needed_by_results(build) is developers
    assert HarnessMail().is_message_needed_by_results(build) is admins
