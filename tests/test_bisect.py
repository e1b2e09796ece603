"""Bisection on a real master and worker, with oscar-mini on virtual clusters as OSCAR. First a red
build whose cause is not a commit: after a green build the builder's spec gives the nodes a disk too
small for the image; that red build is triaged as the same revision with the spec changed, and nothing
is bisected. Then, with the spec as before, the builder goes from green to red over eight commits of
which the fifth breaks OSCAR's step 4 (they reach it as one build: the admin pauses the worker while
they come in), and the bisect builder finds that commit by probe builds, within ceil(log2 n) + 1 of
them, while the host kills the headnode of one probe (the probe is retried by Buildbot, not counted
against a commit). The result is on the bisect build, on the red build's page, in a mail to the
developers and the commit's author, and a failure status of the commit on GitHub (a local stand-in
for its API)."""

from __future__ import annotations

import math
import os
import signal
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from buildbot.process.results import FAILURE, RETRY, SUCCESS
from conftest import qemu_pids_of, template_spec_data
from test_buildbot import ADMIN, Master, farm_settings
from test_github import TOKEN, FakeGitHubApi

from oscarvt.image import build_template
from oscarvt.waiting import wait_for
from oscarvt_dev import local
from oscarvt_master.recent import PROBE_OF

SUITE = Path(__file__).parent.parent / "examples" / "oscar-mini"
BREAKING = 6  # of commits 2..9 (1 is the import), this one breaks OSCAR's step 4
GITHUB = "oscar-cluster/oscar"  # the repository's project on GitHub, for the statuses
SMALL_DISK = "16M"  # a node disk the image does not fit: oscar-mini's installer fails its rsync (SystemImager's too)


def settings(template_spec: dict[str, Any], repo: Path, master: Master, github_api: str) -> dict[str, Any]:
    return farm_settings(
        "oscarvt bisect", master,
        [{"name": "oscar", "vcs": "git", "url": str(repo), "branch": "main", "poll_interval": 2, "github": GITHUB}],
        [{"name": "b1", "repository": "oscar", "workers": ["hv1"], "nodes": 1, "boot": "cdrom", "spec": template_spec}],
        github={"statuses": True, "api_url": github_api})


@pytest.fixture(scope="module")
def github() -> Iterator[FakeGitHubApi]:
    with FakeGitHubApi() as api:
        yield api


@pytest.fixture(scope="module")
def master(tmp_path_factory, github) -> Iterator[Master]:
    template, _ = build_template()
    root = tmp_path_factory.mktemp("bisect")
    repo = local.git_repo(SUITE, root / "repo")
    running = Master.create(root, repo=repo)
    with running.started(settings(template_spec_data(template), repo, running, github.url),
                         {"github-token": TOKEN + "\n"}):
        yield running


def commit(repo: Path, path: str, old: str, new: str, message: str) -> str:
    """Commit an edit of ``path`` on the checked-out branch; its hash."""
    file = repo / path
    text = file.read_text()
    assert old in text
    file.write_text(text.replace(old, new, 1))
    local.git(repo, "commit", "-q", "-am", message)
    return local.git(repo, "rev-parse", "HEAD").strip()


def eight_commits(repo: Path) -> dict[int, str]:
    """Commits 2..9 on a side branch, the 6th breaking OSCAR's client image; by number."""
    local.git(repo, "checkout", "-q", "-b", "work")
    made = {}
    for number in range(2, 10):
        if number == BREAKING:
            made[number] = commit(repo, "share/client.pkglist", "dropbear-bin", "no-such-package",
                                  "client image: a missing package")
        else:
            made[number] = commit(repo, "README.md", "oscar-mini", f"oscar-mini ({number})",
                                  f"README: note {number}")
    local.git(repo, "checkout", "-q", "main")
    return made


def kill_the_first_probes_headnode(master: Master) -> int:
    """Once the first probe build of b1 boots its headnode, SIGKILL its QEMUs as the host would; the probe's
    build number."""
    def first_probe() -> dict[str, Any] | None:
        for build in master.rest.builds("b1"):
            props = master.rest.get(f"builds/{build['buildid']}/properties")["properties"][0]
            if PROBE_OF in props and any(s["name"] == "checkout-oscar" and s["started_at"]
                                           for s in master.rest.steps(build)):
                return build
        return None
    probe = wait_for(first_probe, timeout=900, what="the first probe build to boot its headnode", interval=2)
    pids = wait_for(lambda: qemu_pids_of(master.root / "worker") or None, timeout=60, what="the probe's QEMU")
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    return int(probe["number"])


def is_probe(master: Master, build: dict[str, Any]) -> bool:
    return PROBE_OF in master.rest.get(f"builds/{build['buildid']}/properties")["properties"][0]


def probes(result: str) -> int:
    """N of a bisection's result "... (N probes, M minutes)"."""
    return int(result.rsplit("(", 1)[1].split(" probe")[0])


def force(master: Master) -> dict[str, Any]:
    """Force a build of b1 (main's newest commit) as the admin and wait for it to end."""
    count = len(master.rest.builds("b1"))
    status, reply = master.rest.rpc("forceschedulers/force", "force", {"builderNames": ["b1"]}, user=ADMIN)
    assert status == 200, reply
    return master.wait_build("b1", count + 1)


def reconfigure(master: Master, settings_text: str) -> None:
    """Write the master's settings file and have the master read it again (SIGHUP), as an admin would."""
    log = master.root / "master" / "twistd.log"
    done = log.read_text().count("configuration update complete")
    (master.root / "master" / "settings.yaml").write_text(settings_text)
    os.kill(master.pids[0], signal.SIGHUP)
    master.wait_logged("configuration update complete", times=done + 1)


def control_worker(master: Master, action: str) -> None:
    """Pause or unpause the worker hv1 as the admin."""
    workerid = master.rest.get("workers/hv1")["workers"][0]["workerid"]
    status, reply = master.rest.rpc(f"workers/{workerid}", action, {"reason": "the test"}, user=ADMIN)
    assert status == 200, reply


@pytest.mark.vm
def test_a_red_build_from_a_spec_change_is_triaged_as_such_and_blames_no_commit(master):
    green = force(master)
    assert green["results"] == SUCCESS
    revision = master.rest.get(f"builds/{green['buildid']}/properties")["properties"][0]["got_revision"][0]

    # the admin gives the builder's nodes a disk too small for the image, and reconfigures the master
    settings_file = master.root / "master" / "settings.yaml"
    before = settings_file.read_text()
    changed = yaml.safe_load(before)
    changed["builders"][0]["spec"]["nodes"]["disk"] = SMALL_DISK
    reconfigure(master, yaml.safe_dump(changed, sort_keys=False))
    try:
        red = force(master)
    finally:
        reconfigure(master, before)  # the spec as it was, for the next test
    assert red["results"] == FAILURE
    properties = master.rest.get(f"builds/{red['buildid']}/properties")["properties"][0]
    assert properties["blame"][0] == "product" and properties["got_revision"][0] == revision
    assert "rsync of image" in properties["phase_wait_for_nodes"][0]["message"]
    triage = properties["triage"][0]
    assert triage[0] == (f"since green build {green['number']}: the same revision {revision}, so not a commit; "
                         "the spec changed"), triage
    assert any(line.startswith("the spec changed: ") for line in triage), triage
    assert "unchanged: the template, oscarvt's version, the worker" in triage
    start = next(s for s in master.rest.steps(red) if s["name"] == "start-bisection")
    assert start["state_string"].startswith(f"not a commit: build {green['number']} passed on this revision"), start
    assert "bisection" not in properties and master.rest.builds("bisect") == []
    assert qemu_pids_of(master.root / "worker") == []


@pytest.mark.vm
def test_a_red_build_over_eight_commits_is_bisected_to_the_commit_that_broke_it(master, github):
    earlier = master.rest.builds("b1")
    assert [b["results"] for b in earlier] == [SUCCESS, FAILURE]  # the test above: green, then red by the spec
    green_revision = master.rest.get(f"builds/{earlier[0]['buildid']}/properties")["properties"][0]["got_revision"][0]
    master.wait_logged(f'gitpoller: processing changes from "{master.repo}"', times=2)
    control_worker(master, "pause")  # the eight commits' requests wait, and then are one build
    made = eight_commits(master.repo)
    local.git(master.repo, "merge", "-q", "--ff-only", "work")  # all eight reach main at once
    def one_request_per_commit_and_one_waiting() -> bool | None:  # Buildbot collapses each into the next
        requests = master.rest.get(f"buildrequests?builderid__eq={earlier[0]['builderid']}")["buildrequests"]
        waiting = [r for r in requests if not r["complete"]]
        return True if len(requests) == len(earlier) + len(made) and len(waiting) == 1 else None
    wait_for(one_request_per_commit_and_one_waiting, timeout=60, what="a build request per commit, one waiting")
    control_worker(master, "unpause")

    def red_build() -> dict[str, Any] | None:
        return next((b for b in master.rest.builds("b1")[len(earlier):] if b["complete"] and b["results"] == FAILURE
                     and not is_probe(master, b)), None)
    killed = kill_the_first_probes_headnode(master)
    red = wait_for(red_build, timeout=60, what="the red commit build")
    bisect = wait_for(lambda: next((b for b in master.rest.builds("bisect") if b["complete"]), None),
                      timeout=1800, what="the bisection to end", interval=5)
    properties = master.rest.get(f"builds/{bisect['buildid']}/properties")["properties"][0]
    red_properties = master.rest.get(f"builds/{red['buildid']}/properties")["properties"][0]
    good = properties["good"][0]
    assert good == green_revision and properties["bad"][0] == red_properties["got_revision"][0] == made[9]
    commits = len(made)  # 2..9, one red build: the paused worker's requests were collapsed into one
    result = properties["bisection"][0]
    assert result.startswith(f"first bad commit: {made[BREAKING]} by oscarvt: client image: a missing package ("), \
        result
    assert 1 <= probes(result) <= math.ceil(math.log2(commits)) + 1, (result, commits)
    step = next(s for s in master.rest.steps(bisect) if s["name"] == "bisect")
    assert bisect["results"] == SUCCESS and step["state_string"] == result and bisect["state_string"].endswith(result)

    # the probe whose headnode the host killed was retried by Buildbot; the search counted it once
    retried = master.rest.builds("b1")[killed - 1]
    assert retried["results"] == RETRY
    probe_builds = [b for b in master.rest.builds("b1") if is_probe(master, b)]
    assert len([b for b in probe_builds if b["results"] != RETRY]) == probes(result)

    # triage: what changed since the last green build, on the red build's page and at the top of its mail
    green_number = red_properties["last_green"][0]["number"]
    assert red_properties["last_green"][0]["revision"] == good
    triage = red_properties["triage"][0]
    assert triage[0] == f"since green build {green_number}: {commits} commit{'' if commits == 1 else 's'}", triage
    assert "unchanged: the template, the spec, oscarvt's version, the worker" in triage
    assert f"  {made[BREAKING]} oscarvt: client image: a missing package" in triage
    new_error = next(line for line in triage if line.startswith("first error line the green build did not have: "))
    assert "package no-such-package is not installed" in new_error, new_error  # oscar-mini's step 4, as OSCAR says
    log = next(log for log in master.rest.step_logs(red, "triage"))
    assert log["content"].splitlines() == triage
    red_mail = wait_for(lambda: next((m for m in master.mail.received
                                      if str(m["Subject"]).startswith(f"oscarvt failure: b1 build {red['number']}:")),
                                     None), timeout=60, what="the red build's mail")
    plain = next(part for part in red_mail.walk() if part.get_content_type() == "text/plain")
    body = plain.get_payload(decode=True).decode()
    assert body.splitlines()[:2] == [f"OSCAR failed on b1 build {red['number']}.", triage[0]], body[:500]

    # the pass rate the red build's pictures step gave: the builds before it with a verdict, probes left out
    before = [b for b in master.rest.builds("b1") if b["number"] < red["number"] and b["results"] in (SUCCESS, FAILURE)]
    passed = sum(b["results"] == SUCCESS for b in before)
    pictures = next(s for s in master.rest.steps(red) if s["name"] == "pictures")
    assert f"pass rate {100 * passed // len(before)}% ({passed} of {len(before)} recent builds)" in \
        pictures["state_string"], pictures["state_string"]

    # on the red build's page and in the developers' (and the author's) mail
    assert red_properties["bisection"][0] == result
    start = next(s for s in master.rest.steps(red) if s["name"] == "start-bisection")
    assert any(url["name"] == result[:200] for url in start["urls"]), start["urls"]
    mail = wait_for(lambda: next((m for m in master.mail.received if "first bad commit" in str(m["Subject"])), None),
                    timeout=60, what="the bisection's mail")
    assert mail["To"] == "oscarvt@example.org" and mail["CC"] == "dev@example.org"  # the author, the developers
    assert made[BREAKING] in str(mail["Subject"])
    probe_numbers = {b["number"] for b in probe_builds}
    assert not [m for m in master.mail.received if "oscarvt failure: b1 build" in str(m["Subject"])
                and int(str(m["Subject"]).split("b1 build ")[1].split(":")[0]) in probe_numbers]

    # on GitHub: the first bad commit's own failure status, linked to the bisect build
    status = wait_for(lambda: next((body for path, _, body in github.posts
                                    if path == f"/repos/{GITHUB}/statuses/{made[BREAKING]}"
                                    and body["context"] == "oscarvt/b1/bisection"), None),
                      timeout=60, what="the first bad commit's status")
    assert status["state"] == "failure" and status["target_url"].endswith(f"/builders/{bisect['builderid']}/builds/"
                                                                           f"{bisect['number']}"), status
    assert status["description"] == f"first bad commit for b1 ({result.rsplit(' (', 1)[1]}", status
    assert qemu_pids_of(master.root / "worker") == []
