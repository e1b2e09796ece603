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
from buildbot.worker.local import LocalWorker

from oscarvt_master.bisect import PROBE_PRIORITY
from oscarvt_master.config import master_config
from oscarvt_master.reporters import HarnessMail, ProductMail
from oscarvt_master.secret_files import hashed_line
from oscarvt_master.settings import BISECT, BISECT_WORKER, SettingsError, settings_from_dict

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
    (lambda s: s["builders"][0].update(name=BISECT), f"key 'builders': the name {BISECT!r} is oscarvt's own "
     "(the bisection's)"),
    (lambda s: (s["workers"][0].update(name=BISECT_WORKER), s["builders"][0].update(workers=[BISECT_WORKER])),
     f"key 'workers': the name {BISECT_WORKER!r} is oscarvt's own (the bisection's)"),
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


# ---------------------------------------------------------------- the matrix


def test_the_example_matrix_is_a_builder_per_cell():
    settings = settings_from_dict(example())
    cells = {b.name: b for b in settings.builders if b.name != "bookworm-amd64-4nodes-bigger"}
    assert list(cells) == ["bullseye-amd64-cdrom", "bookworm-amd64-cdrom", "bookworm-amd64-network",
                           "trixie-amd64-cdrom", "trixie-amd64-network"]  # bullseye network excluded
    trixie = cells["trixie-amd64-network"]
    assert (trixie.distribution, trixie.arch, trixie.boot, trixie.nodes) == ("debian-13", "amd64", "network", 2)
    assert trixie.spec == {"nodes": {"memory": 384, "disk": "1G"}, "template": {"suite": "trixie", "arch": "amd64"}}
    assert [name for name, b in cells.items() if b.commit] == ["bookworm-amd64-cdrom", "bookworm-amd64-network"]


def two_hosts() -> dict:
    settings = example()
    settings["workers"] = [{"name": "hv1", "arches": ["amd64"]},
                           {"name": "hv2", "arches": ["amd64", "arm64"], "max_clusters": 2}]
    settings["matrix"] = {"repository": "oscar", "suites": ["bookworm", "trixie"], "arches": ["amd64", "arm64"]}
    del settings["builders"]
    return settings


def test_cells_go_to_the_workers_that_run_their_arch_and_commits_build_one_per_arch(tmp_path):
    settings = settings_from_dict(two_hosts())
    assert {b.name: (b.workers, b.commit) for b in settings.builders} == {
        "bookworm-amd64-cdrom": (["hv1", "hv2"], True), "bookworm-arm64-cdrom": (["hv2"], True),
        "trixie-amd64-cdrom": (["hv1", "hv2"], False), "trixie-arm64-cdrom": (["hv2"], False)}
    folder = master_dir(tmp_path, two_hosts())
    (folder / "secrets" / "worker-hv2").write_text("another-password")
    (folder / "secrets" / "worker-hv2").chmod(0o600)
    config = master_config(folder / "settings.yaml", folder)
    names = {s.name: sorted(s.builderNames) for s in config["schedulers"]}
    assert names["commit-oscar"] == ["bookworm-amd64-cdrom", "bookworm-arm64-cdrom"]
    assert names["nightly-oscar"] == sorted(b.name for b in settings.builders)
    assert {b.name: b.workernames for b in config["builders"]}["trixie-arm64-cdrom"] == ["hv2"]
    lock = config["builders"][0].locks[0].lockid
    assert (lock.maxCount, lock.maxCountForWorker) == (1, {"hv1": 1, "hv2": 2})
    assert {w.workername: w.max_builds for w in config["workers"]} == {"hv1": 1, "hv2": 2, BISECT_WORKER: None}
    assert isinstance(next(w for w in config["workers"] if w.workername == BISECT_WORKER), LocalWorker)
    bisect = next(b for b in config["builders"] if b.name == BISECT)
    assert bisect.workernames == [BISECT_WORKER] and not bisect.locks  # it takes no cluster of a host
    assert {name: names[name] for name in names if name.startswith("probe-")} == {
        f"probe-{b.name}": [b.name] for b in settings.builders}
    assert all(s._config_kwargs["priority"] == PROBE_PRIORITY  # Buildbot keeps it for reconfigService
               for s in config["schedulers"] if s.name.startswith("probe-"))
    result = checkconfig(folder)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("edit, message", [
    (lambda s: s["workers"][1].update(arches=["sparc"]), "key 'workers[1].arches': 'sparc' is not one of amd64, arm64"),
    (lambda s: s["workers"][1].update(arches=["amd64"]),
     "key 'matrix': no worker runs the cell bookworm-arm64-cdrom (workers[].arches)"),
    (lambda s: s["matrix"].update(spec={"accel": "kvm"}),
     "key 'matrix': no worker runs the cell bookworm-amd64-cdrom (workers[].arches, kvm)"),
    (lambda s: s["matrix"].update(spec={"template": "/x.qcow2"}),
     "key 'matrix.spec.template': the matrix sets the template of each cell (suite, arch)"),
    (lambda s: s["matrix"].update(exclude=[{"boot": "cdrom"}]), "key 'matrix.exclude' leaves no cell to build"),
    (lambda s: s["matrix"].update(commit=[{"suite": "sid"}]), "key 'matrix.commit[0]' matches no cell of the matrix"),
    (lambda s: s["matrix"].update(exclude=[{"colour": "red"}]), "unknown key 'matrix.exclude[0].colour'"),
    (lambda s: s["matrix"].update(boots=["cdrom", "cdrom"]), "key 'matrix.boots' names a value twice"),
    (lambda s: s["matrix"].update(suites=["Bookworm!"]),
     "key 'matrix.suites': 'Bookworm!' is not a Debian suite name like bookworm"),
    (lambda s: s["matrix"].update(spec={"nodes": {"count": "two"}}),
     "key 'matrix.spec': key 'nodes.count' must be a whole number, not 'two'"),
    (lambda s: s.pop("matrix"), "key 'matrix' or 'builders' is required"),
    (lambda s: s.update(builders=[{**example()["builders"][0], "workers": ["hv1"], "arch": "arm64"}]),
     "key 'builders[0].arch' is 'arm64', but its spec's template.arch is amd64"),
    (lambda s: s.update(builders=[{**{k: v for k, v in example()["builders"][0].items() if k != "arch"},
                                   "workers": ["hv1"], "spec": {"template": {"suite": "bookworm", "arch": "arm64"}}}]),
     "key 'builders[0].workers': hv1 does not run arm64 clusters (its arches: amd64, no kvm)"),
])
def test_matrix_errors_name_the_key(edit, message):
    settings = two_hosts()
    edit(settings)
    with pytest.raises(SettingsError) as error:
        settings_from_dict(settings)
    assert str(error.value) == message
