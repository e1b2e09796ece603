"""Bisection of an SVN repository on a real master and worker, with oscar-mini on virtual clusters as
OSCAR: trunk is green at r1, then r2..r9 come in of which r6 breaks OSCAR's step 4; the red build of r9
starts a bisection that names r6 within ceil(log2 8) + 1 = 4 probe builds, on the red build's page and
in the developers' mail. Then the force form bisects between r4 and r8 by hand: without a red build to
compare with, it builds r8 first to learn how it fails, and names r6 again.

Marked ``long`` (about ten builds, 10 to 15 minutes under TCG): ``make test-long`` runs it, ``make test``
does not (see the README's table)."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
from buildbot.process.results import FAILURE, SUCCESS
from conftest import qemu_pids_of, template_spec_data
from test_bisect import BREAKING, force, is_probe, probes
from test_buildbot import ADMIN, Master, farm_settings

from oscarvt.image import build_template
from oscarvt.waiting import wait_for
from oscarvt_dev import local
from oscarvt_master.bisect import BISECT_FORM

SUITE = Path(__file__).parent.parent / "examples" / "oscar-mini"
SUBJECT = "client image: a missing package"

pytestmark = [pytest.mark.vm, pytest.mark.long]


def settings(template_spec: dict[str, Any], svn: str, master: Master) -> dict[str, Any]:
    return farm_settings(
        "oscarvt svn bisect", master,
        [{"name": "oscar", "vcs": "svn", "url": svn, "poll_interval": 3600}],  # builds are forced
        [{"name": "b1", "repository": "oscar", "workers": ["hv1"], "nodes": 1, "boot": "cdrom", "spec": template_spec}])


@pytest.fixture(scope="module")
def master(tmp_path_factory) -> Iterator[Master]:
    template, _ = build_template()
    root = tmp_path_factory.mktemp("bisect-svn")
    svn, checkout = local.svn_repo(SUITE, root)  # r1: the import
    running = Master.create(root, svn_checkout=checkout)
    with running.started(settings(template_spec_data(template), svn, running), {}):
        yield running


def svn_commit(checkout: Path, path: str, old: str, new: str, message: str) -> None:
    file = checkout / path
    text = file.read_text()
    assert old in text
    file.write_text(text.replace(old, new, 1))
    subprocess.run(["svn", "commit", "-q", "-m", message, str(checkout)], check=True)


def bisection(master: Master, number: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``number``-th bisect build, once it ended, and its properties."""
    build = master.wait_build("bisect", number, timeout=2400)
    return build, master.rest.get(f"builds/{build['buildid']}/properties")["properties"][0]


def test_an_svn_red_build_is_bisected_to_the_revision_that_broke_it(master):
    green = force(master)
    assert green["results"] == SUCCESS
    for number in range(2, 10):  # r2..r9
        if number == BREAKING:
            svn_commit(master.svn_checkout, "share/client.pkglist", "dropbear-bin", "no-such-package", SUBJECT)
        else:
            svn_commit(master.svn_checkout, "README.md", "oscar-mini", f"oscar-mini ({number})",
                       f"README: note {number}")
    red = force(master)
    assert red["results"] == FAILURE
    red_properties = master.rest.get(f"builds/{red['buildid']}/properties")["properties"][0]
    assert red_properties["got_revision"][0] == "9"
    triage = red_properties["triage"][0]
    assert triage[0].startswith(f"since green build {green['number']}: 8 commits"), triage
    assert f"  6 root: {SUBJECT}" in triage, triage  # SVN's author: the committing user

    bisect, properties = bisection(master, 1)
    result = properties["bisection"][0]
    assert result.startswith(f"first bad commit: 6 by root: {SUBJECT} ("), result
    assert 1 <= probes(result) <= math.ceil(math.log2(8)) + 1, result
    assert bisect["results"] == SUCCESS and properties["good"][0] == "1" and properties["bad"][0] == "9"
    probe_builds = [b for b in master.rest.builds("b1") if is_probe(master, b)]
    assert len(probe_builds) == probes(result)  # none was retried here
    revisions = {master.rest.get(f"builds/{b['buildid']}/properties")["properties"][0]["got_revision"][0]
                 for b in probe_builds}
    assert revisions <= {str(r) for r in range(2, 10)}, revisions  # each probe built a revision of the range

    # on the red build's page and in the developers' mail (SVN knows no address: no mail to the author)
    assert master.rest.get(f"builds/{red['buildid']}/properties")["properties"][0]["bisection"][0] == result
    mail = wait_for(lambda: next((m for m in master.mail.received if "first bad commit" in str(m["Subject"])), None),
                    timeout=60, what="the bisection's mail")
    assert mail["To"] == "dev@example.org" and "6 by root" in str(mail["Subject"]), (mail["To"], mail["Subject"])
    assert qemu_pids_of(master.root / "worker") == []


def test_the_force_form_bisects_between_two_revisions(master):
    before = len([b for b in master.rest.builds("b1") if is_probe(master, b)])
    status, reply = master.rest.rpc(f"forceschedulers/{BISECT_FORM}", "force",
                                    {"builderNames": ["bisect"], "bisect_builder": "b1", "good": "4", "bad": "8"},
                                    user=ADMIN)
    assert status == 200, reply
    bisect, properties = bisection(master, 2)
    result = properties["bisection"][0]
    assert result.startswith(f"first bad commit: 6 by root: {SUBJECT} ("), result
    # r8 built first to learn how it fails (not counted), then at most ceil(log2 4) + 1 = 3 probes of r5..r8
    assert 1 <= probes(result) <= math.ceil(math.log2(4)) + 1, result
    log = next(log for log in master.rest.step_logs(bisect, "bisection"))["content"]
    assert "no red build to compare with: building 8 to learn how it fails" in log, log
    forced_probes = [b for b in master.rest.builds("b1") if is_probe(master, b)][before:]
    assert len(forced_probes) == probes(result) + 1, (result, len(forced_probes))
    assert qemu_pids_of(master.root / "worker") == []
