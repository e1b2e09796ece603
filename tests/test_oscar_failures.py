"""OSCAR's own bugs, as its code at oscar-cluster/oscar 0c35a10c shows them, reproduced by the example
suite's BUGS switches (examples/oscar-mini/share/oscar-mini.conf), and what oscarvt makes of each on a
real headnode: a product failure that names OSCAR's step and quotes OSCAR's own line, or, for a step
that loops, the line it repeats; OSCAR stopped, nothing of it left running, its log not left to fill
the headnode's disk. Each test prints how long the verdict took after OSCAR's line (or the loop's
first repeat) appeared."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import SUITE, headnode_booted, oscarvt, suite_line, template_spec_data, write_spec

from oscarvt.access import open_headnode
from oscarvt.cluster import ClusterDir
from oscarvt.image import build_template
from oscarvt.oscar_run import OSCAR_LOG, OUTPUT
from oscarvt.phases.oscar import KEEP_BYTES
from oscarvt.session import Session

OSCAR_DIR = "/opt/oscar"  # the spec's oscar.dir (its default)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> ClusterDir:
    """A headnode and one node (never booted: every bug here ends OSCAR before the nodes)."""
    template, _ = build_template()
    root = tmp_path_factory.mktemp("bugs")
    data = template_spec_data(template, nodes={"count": 1, "memory": 384, "disk": "1G"})
    spec = write_spec(root / "spec.yaml", {**data, "timeouts": {"oscar": 300}})  # a loop must not wait it out
    with headnode_booted(spec, root / "c") as cluster:
        yield cluster


def start_with_bugs(cluster: ClusterDir, tmp_path: Path, bugs: str,
                    monkeypatch: pytest.MonkeyPatch) -> tuple[str, list[dict]]:
    """Push oscar-mini with ``BUGS="bugs"`` and start OSCAR; start-oscar's verdict line and its events."""
    suite = Path(shutil.copytree(SUITE, tmp_path / "oscar"))
    conf = suite / "share/oscar-mini.conf"
    conf.write_text(conf.read_text().replace('BUGS=""', f'BUGS="{bugs}"'))
    result = oscarvt("checkout-oscar", "--cluster", cluster.path, "--source", suite)
    assert result.returncode == 0, result.output
    events = tmp_path / "events.jsonl"
    monkeypatch.setenv("OSCARVT_EVENTS", str(events))
    result = oscarvt("start-oscar", "--cluster", cluster.path)
    monkeypatch.delenv("OSCARVT_EVENTS")
    assert result.returncode == 1, result.output  # the product's failure
    return result.last_line, [json.loads(line) for line in events.read_text().splitlines()]


def seconds_after(events: list[dict], text: str) -> float:
    """Seconds from the first output line of OSCAR holding ``text`` to the verdict."""
    first = next(e["time"] for e in events if e["event"] == "progress" and text in e["text"])
    return events[-1]["time"] - first


def check_stopped(cluster: ClusterDir) -> None:
    """Nothing of OSCAR runs on the headnode, and neither its output nor its log grew past the bounds."""
    state = cluster.load()
    with open_headnode(Session(cluster, state)) as conn:
        # (each pattern bracketed, so that pgrep's own shell, whose command line holds it, does not match)
        assert conn.run("pgrep -f '[i]nstall_cluster|[m]ain_cli|[s]cripts/cli/|[/]var/lib/oscarvt/watchdog'") != 0, \
            conn.check_output("ps -ef")
        sizes = conn.check_output(f"for f in {OUTPUT} {OSCAR_LOG}; do [ ! -e $f ] || stat -c %s $f; done").split()
    assert all(int(size) <= 2 * KEEP_BYTES + 4096 for size in sizes), sizes


@pytest.mark.vm
@pytest.mark.parametrize("bug, status, verdict", [
    # OSCAR's head, main_cli line 54: its scripts are looked for in $OSCAR_HOME/src/cli/
    ("selector-path", 2, "OSCAR failed in step 1 - Select Packages: ERROR: /opt/oscar/src/cli//oscar-selector is not "
                      "available, check OSCAR is correctly installed and bootstrapped at ./main_cli line {line}."),
    # main_cli line 156: WizardEnv::update_env(), whose package is OSCAR::WizardEnv
    ("update-env", 255, "OSCAR failed after step 3 - Install OSCAR Server Packages: Undefined subroutine "
                   "&WizardEnv::update_env called at ./main_cli line {line}."),
    # lib/OSCAR/CLI_MAC.pm line 131: ->name on the plain hashes SIS::NewDB returns
    ("mac-crash", 2, "OSCAR failed in step 6 - Setup Networking: Can't call method \"name\" on unblessed reference "
                  "at /opt/oscar/scripts/cli/setup_networking line {line}."),
])
def test_oscars_own_failure_is_named_with_its_step_and_its_line(cluster, tmp_path, monkeypatch, bug, status, verdict):
    line = {"selector-path": suite_line("scripts/cli/main_cli", 'perl_die "ERROR: $cmd is not available'),
            "update-env": suite_line("scripts/cli/main_cli", "has_bug update-env && perl_die"),
            "mac-crash": suite_line("scripts/cli/setup_networking", 'echo "Can\'t call method')}[bug]
    expected = verdict.format(line=line)
    last, events = start_with_bugs(cluster, tmp_path, bug, monkeypatch)
    assert last == (f"FAIL: start-oscar: product: {expected} (see its output, {OUTPUT} on the headnode, or "
                    f"grab-logs; install_cluster's exit status {status})")  # Perl's, as OSCAR's varies
    quoted = expected.split(": ", 1)[1]
    print(f"{bug}: the verdict came {seconds_after(events, quoted.split(' at ')[0]):.1f}s after OSCAR's line")
    assert events[-1]["message"] == expected  # the pointer to the logs is a field of its own
    assert events[-1]["logs"] == (f"see its output, {OUTPUT} on the headnode, or grab-logs; install_cluster's exit "
                                  f"status {status}")
    check_stopped(cluster)


@pytest.mark.vm
@pytest.mark.parametrize("bug, step, repeated", [
    # configurator_cli's prompt (Term::Complete) reading an empty stdin (main_cli line 139 gives it no file)
    ("configurator-loop", "step 2 - Configure Packages",
     "oscar-mini: configurator: the end of stdin, no command read"),
    # a step without its answer file reprints its menu on stdin forever
    ("lost-file-4", "step 4 - Build OSCAR Client Image", None),
    ("lost-file-5", "step 5 - Define OSCAR Clients", None),
    ("lost-file-6", "step 6 - Setup Networking", None),
])
def test_a_looping_step_is_stopped_and_named_within_seconds(cluster, tmp_path, monkeypatch, bug, step, repeated):
    last, events = start_with_bugs(cluster, tmp_path, bug, monkeypatch)
    prefix = f"FAIL: start-oscar: product: OSCAR loops in {step}: it prints '"
    assert last.startswith(prefix), last
    named = last[len(prefix):].split("' again and again", 1)[0]
    assert repeated is None or named == repeated, last
    assert last.endswith(f"; it was stopped (see its output, {OUTPUT} on the headnode, or grab-logs)"), last
    print(f"{bug}: the verdict came {seconds_after(events, named):.1f}s after the loop's first line")
    check_stopped(cluster)


@pytest.mark.vm
@pytest.mark.parametrize("flood", [
    "seq 1 1000000000",  # lines that all differ: no repeat to see, only the rate
    "yes oscar | tr -d '\\n'",  # a line that never ends
])
def test_output_that_runs_away_is_stopped_before_it_fills_the_disk(cluster, tmp_path, monkeypatch, flood):
    """Not one of OSCAR's bugs: an install_cluster that floods its output in a way no repeat shows,
    which only the watchdog beside it on the headnode stops (more than 8 MiB in 5 s)."""
    tree = tmp_path / "flood"
    tree.mkdir()
    (tree / "install_cluster").write_text(f"#!/bin/sh\necho 'flooding'\n{flood}\n")
    (tree / "install_cluster").chmod(0o755)
    assert oscarvt("checkout-oscar", "--cluster", cluster.path, "--source", tree).returncode == 0
    result = oscarvt("start-oscar", "--cluster", cluster.path)
    assert result.returncode == 1, result.output
    prefix = "FAIL: start-oscar: product: OSCAR loops before its first step: it prints, "
    assert result.last_line.startswith(prefix), result.last_line
    figures = result.last_line[len(prefix):].split("; it was stopped", 1)[0]
    window, whole = int(figures.split(" MiB in 5 s (")[0]), int(figures.split("(")[1].split(" MiB")[0])
    assert window >= 8 and whole >= window, figures
    assert "of OSCAR's output not shown]" in result.output  # the driver printed a flood's ends only
    assert len(result.output) < 4 << 20
    check_stopped(cluster)
