"""The Buildbot package end to end: a real master (master.cfg + settings) and a real worker
process, a git and an SVN repository of the example suite polled for commits, builds on real
virtual clusters, mail to an aiosmtpd sink, the waterfall in headless Chromium."""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from base64 import b64encode
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from buildbot.process.results import CANCELLED, RETRY, SUCCESS
from conftest import SmtpSink, oscarvt, qemu_pids_of, template_spec_data
from PIL import Image
from test_pictures import rgb

from oscarvt.image import build_template
from oscarvt.network import free_tcp_port
from oscarvt.plotting import phase_colour
from oscarvt.waiting import wait_for
from oscarvt_dev import local
from oscarvt_dev.local import Rest
from oscarvt_master.secret_files import hashed_line

ROOT = Path(__file__).parent.parent
SUITE = ROOT / "examples" / "oscar-mini"
ARTIFACTS = ROOT / "test-artifacts"
ADMIN = ("admin", "admin-password")
HOOK = ("svn-hook", "hook-password")  # the SVN post-commit hook's user for the change hook
SCRIPT = "<script>document.title='owned'</script>"  # what a commit prints on each node's console
PHASE_STEPS = ["copy-vm-image", "boot-headnode", "checkout-oscar", "start-oscar", "boot-compute-nodes",
               "wait-for-nodes", "finish-oscar", "grab-logs", "upload-logs", "reproduce", "attach-logs", "pictures",
               "keep", "destroy", "triage", "start-bisection"]


@dataclass
class Master:
    """A running master and worker, and what the tests need to talk to them."""

    root: Path
    rest: Rest
    repo: Path
    svn_checkout: Path
    mail: SmtpSink
    www_port: int
    worker_port: int
    pids: list[int] = field(default_factory=list)

    @classmethod
    def create(cls, root: Path, repo: Path | None = None, svn_checkout: Path | None = None) -> Master:
        """A master to be started in ``root``: its mail sink, web and worker ports, and the test's git
        repository and SVN working copy (``root/unused`` for one it has not)."""
        www_port = free_tcp_port()
        return cls(root, Rest(f"http://127.0.0.1:{www_port}/"), repo or root / "unused",
                   svn_checkout or root / "unused", SmtpSink(), www_port, free_tcp_port())

    @contextmanager
    def started(self, settings: dict[str, Any], secrets: dict[str, str]) -> Iterator[Master]:
        """Start the master (``root/master``, with ``settings`` and ``secrets``: the admin's login is added) and
        its worker hv1 (``root/worker``, password ``worker-password``) until the block ends; then stop them, reap
        what the worker left and stop the mail sink, even when the block failed."""
        self.mail.controller.start()
        try:
            local.create_master(self.root / "master", settings,
                                {"worker-hv1": "worker-password", "www-users": hashed_line(*ADMIN, rounds=4) + "\n",
                                 **secrets})
            self.pids.append(local.start_master(self.root / "master"))
            local.create_worker(self.root / "worker", "hv1", int(settings["worker_port"]), "worker-password")
            self.pids.append(local.start_worker(self.root / "worker"))
            wait_for(self.rest.worker_connected, timeout=60, what="the worker to connect")
            yield self
        finally:
            for pid in reversed(self.pids):
                local.stop(pid)
            oscarvt("reap", "--under", self.root / "worker", "--stop-drivers")
            self.mail.controller.stop()

    def wait_build(self, builder: str, count: int, timeout: float = 900) -> dict[str, Any]:
        """Wait until ``builder`` has its ``count``-th build complete; return it."""
        def done() -> dict[str, Any] | None:
            builds = self.rest.builds(builder)
            return builds[count - 1] if len(builds) >= count and builds[count - 1]["complete"] else None
        return wait_for(done, timeout=timeout, what=f"build {count} of {builder} to finish", interval=3)

    def force_until(self, step: str) -> dict[str, Any]:
        """Force a 1-node CD build of b1 as the admin; return it once its ``step`` runs."""
        count = len(self.rest.builds("b1"))
        status, reply = self.rest.rpc("forceschedulers/force", "force",
                                      {"builderNames": ["b1"], "nodes": "1", "boot": "cdrom", "keep_on_failure": False},
                                      user=ADMIN)
        assert status == 200, reply
        build = self.next_build(count, timeout=60, what="the forced build")
        wait_for(lambda: True if any(s["name"] == step and s["started_at"] for s in self.rest.steps(build))
                 else None, timeout=600, what=f"the forced build to start {step}")
        return build

    def next_build(self, count: int, timeout: float, what: str) -> dict[str, Any]:
        """Wait until b1 has a build after its first ``count``; return that build (running or not)."""
        return wait_for(lambda: (self.rest.builds("b1")[count:] or [None])[0], timeout=timeout, what=what)

    def stop_build(self, build: dict[str, Any], number: int) -> None:
        """Stop ``build`` of b1 as the admin; it must end cancelled as b1's ``number``-th build."""
        status, _ = self.rest.rpc(f"builds/{build['buildid']}", "stop", {"reason": "the test is done"}, user=ADMIN)
        assert status == 200
        assert self.wait_build("b1", number, timeout=300)["results"] == CANCELLED

    def wait_logged(self, text: str, times: int) -> None:
        local.wait_logged(self.root / "master", text, times)

    def build_of_commit(self, path: str, old: str, new: str, message: str) -> dict[str, Any]:
        """Commit an edit of ``path`` to the git repository once the poller knows it; return the
        build of b1 that the commit starts, when it is complete."""
        self.wait_logged(f'gitpoller: processing changes from "{self.repo}"', times=2)
        count = len(self.rest.builds("b1"))
        file = self.repo / path
        text = file.read_text()
        assert old in text
        file.write_text(text.replace(old, new))
        local.git(self.repo, "commit", "-q", "-am", message)
        return self.wait_build("b1", count + 1)


def farm_settings(title: str, master: Master, repositories: list[dict[str, Any]],
                  builders: list[dict[str, Any]], **more: Any) -> dict[str, Any]:
    """A test farm's settings: ``master`` on its ports, its worker hv1 (a cluster at a time), the admin, mail
    to its sink (all of it), one retry; ``more`` adds or replaces keys."""
    mail, www_port = master.mail, master.www_port
    return {
        "title": title, "url": f"http://127.0.0.1:{www_port}/", "www_port": www_port,
        "worker_port": master.worker_port, "logs_port": free_tcp_port(), "oscarvt": str(local.BIN / "oscarvt"),
        "admins": ["admin"], "repositories": repositories, "workers": [{"name": "hv1", "max_clusters": 1}],
        "builders": builders,
        "mail": {"relay": mail.address, "from": "oscarvt@example.org", "to": ["dev@example.org"],
                 "admins": ["admin@example.org"], "mode": ["all"]},
        "retries": 1, **more,
    }


def settings(template_spec: dict[str, Any], repo: Path, svn: str, master: Master) -> dict[str, Any]:
    return farm_settings(
        "oscarvt test", master,
        [{"name": "oscar", "vcs": "git", "url": str(repo), "branch": "main", "poll_interval": 2},
         {"name": "oscar-svn", "vcs": "svn", "url": svn, "poll_interval": 3600}],  # the webhook polls
        [{"name": "b1", "repository": "oscar", "workers": ["hv1"], "nodes": 2, "boot": "cdrom", "spec": template_spec},
         {"name": "b2-svn", "repository": "oscar-svn", "workers": ["hv1"], "nodes": 2, "boot": "cdrom",
          "spec": template_spec}],
        change_hook=True)


@pytest.fixture(scope="module")
def master(tmp_path_factory) -> Iterator[Master]:
    template, _ = build_template()
    root = tmp_path_factory.mktemp("bb")
    repo = local.git_repo(SUITE, root / "repo")
    svn, checkout = local.svn_repo(SUITE, root)
    running = Master.create(root, repo, checkout)
    with running.started(settings(template_spec_data(template), repo, svn, running),
                         {"change-hook-users": hashed_line(*HOOK, rounds=4) + "\n"}):
        yield running


@pytest.fixture(autouse=True)
def nothing_left_building(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test, even a failed one, no build runs or waits for the next test: Buildbot's retry of
    a build a test failed in would hold the worker while the next test waits for its own build."""
    yield
    if "master" not in request.fixturenames:
        return
    master: Master = request.getfixturevalue("master")
    for waiting in master.rest.get("buildrequests?complete=false")["buildrequests"]:
        master.rest.rpc(f"buildrequests/{waiting['buildrequestid']}", "cancel", {"reason": "the test is over"},
                        user=ADMIN)
    for running in master.rest.get("builds?complete=false")["builds"]:
        master.rest.rpc(f"builds/{running['buildid']}", "stop", {"reason": "the test is over"}, user=ADMIN)
    wait_for(lambda: None if master.rest.get("builds?complete=false")["builds"] else True, timeout=300,
             what="the builds a test left to end")


def mail_for(master: Master, builder: str, number: int) -> Message:
    subject = f": {builder} build {number}"
    found = wait_for(lambda: next((m for m in master.mail.received if subject in str(m["Subject"])), None),
                     timeout=60, what=f"the mail about {builder} build {number}")
    return email.message_from_bytes(found.as_bytes(), policy=email.policy.default)


def rendered(chromium: list[str], page: str, wanted: str, tries: int = 5) -> str:
    """The page's DOM once it shows ``wanted`` (the web UI fills a page from the REST API as its answers
    come; on a busy host a load can end before they do), at most ``tries`` loads; the last DOM otherwise."""
    dom = ""
    for attempt in range(tries):
        time.sleep(3 * attempt)
        dom = subprocess.run([*chromium, "--dump-dom", page], capture_output=True, text=True, timeout=120).stdout
        if wanted in dom:
            break
    return dom


@pytest.mark.vm
def test_a_commit_builds_every_phase_on_a_virtual_cluster(master):
    anchor = "log_subsection \"$name: /etc/hosts and root's key installed\""
    greeting = anchor + f'\n        node_ssh "$ip" "echo \\"{SCRIPT}\\" > /dev/console" < /dev/null'
    build = master.build_of_commit("scripts/post_install", anchor, greeting,
                                   "post-install: greet each node's console (with a script tag)")
    steps = master.rest.steps(build)
    names = [s["name"] for s in steps]
    assert build["results"] == 0, [(s["name"], s["state_string"]) for s in steps]
    assert "checkout" in names and names[-len(PHASE_STEPS):] == PHASE_STEPS, names
    by_name = {s["name"]: s for s in steps}
    assert by_name["wait-for-nodes"]["state_string"] == "2 nodes installed and booted"
    assert by_name["finish-oscar"]["state_string"].startswith("OSCAR finished; tests 7/7 passed")
    properties = master.rest.get(f"builds/{build['buildid']}/properties")["properties"][0]
    assert properties["phase_wait_for_nodes"][0]["result"] == "passed"
    assert properties["cluster_tests"][0] == {"PASSED": 7, "FAILED": 0, "SKIPPED": 0}
    share = properties["harness_share"][0]  # the build's time by who spent it (the Destroy step)
    assert 0 < share["product_seconds"] < share["seconds"] and share["buildbot_seconds"] >= 0
    assert abs(share["seconds"] - (build["complete_at"] - build["started_at"])) < 30
    assert set(properties["phase_seconds"][0]) >= {"boot-headnode", "start-oscar", "wait-for-nodes", "finish-oscar"}
    assert re.fullmatch(r"build successful \(harness [0-9]+s of [0-9]+s: [0-9]+%; oscarvt [0-9]+s, Buildbot [0-9]+s\)",
                        build["state_string"]), build["state_string"]
    assert qemu_pids_of(master.root / "worker") == []
    link = by_name["upload-logs"]["urls"][0]["url"]
    with urllib.request.urlopen(link, timeout=30) as listing:  # the master serves the uploaded logs
        assert "phases.json" in listing.read().decode()
    with urllib.request.urlopen(f"{link}headnode/var/log/oscar/cluster_tests.xml", timeout=30) as report:
        assert b'failures="0"' in report.read()
    console = f"{link}consoles/oscarnode1.log"  # what the commit printed there, served inert
    with urllib.request.urlopen(console, timeout=30) as reply:
        assert SCRIPT.encode() in reply.read()
        assert (reply.headers["Content-Type"], reply.headers["Content-Security-Policy"]) == \
            ("text/plain; charset=utf-8", "sandbox")

    mail = mail_for(master, "b1", build["number"])
    assert str(mail["Subject"]).startswith("oscarvt success: b1 build")
    attachments = {part.get_filename(): part.get_payload(decode=True) for part in mail.walk() if part.get_filename()}
    assert "== Build OSCAR Client Image" in attachments["attach-logs.oscarinstall.log"].decode()
    assert "finish-oscar" in attachments["attach-logs.summary.txt"].decode()
    timeline_part = next(part for part in mail.walk() if part.get_filename() == "timeline.png")
    assert timeline_part.get_content_type() == "image/png"
    pictures = {url["name"]: url["url"] for url in by_name["pictures"]["urls"]}
    assert pictures == {"timeline": f"{link}timeline.png", "trend": f"{link.rstrip('/').rsplit('/', 1)[0]}/trend.png"}
    assert by_name["pictures"]["state_string"].startswith("timeline; trend of ")
    with urllib.request.urlopen(pictures["timeline"], timeout=30) as reply:  # the same picture as the mail's
        assert reply.headers["Content-Type"] == "image/png" and reply.headers["Content-Security-Policy"] == "sandbox"
        assert reply.read() == attachments["timeline.png"]
    with urllib.request.urlopen(pictures["trend"], timeout=30) as reply:
        assert reply.headers["Content-Type"] == "image/png" and reply.read().startswith(b"\x89PNG")

    ARTIFACTS.mkdir(exist_ok=True)
    chromium = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=20000",
                "--window-size=1400,900"]
    page = f"{master.rest.url}#/builders/{build['builderid']}"
    dom = rendered(chromium, page, f'href="#/builders/{build["builderid"]}/builds/{build["number"]}"')
    (ARTIFACTS / "builder-page.html").write_text(dom)
    assert f'href="#/builders/{build["builderid"]}/builds/{build["number"]}"' in dom, "see builder-page.html"
    build_page = f"{master.rest.url}#/builders/{build['builderid']}/builds/{build['number']}"
    dom = rendered(chromium, build_page, f'href="{pictures["trend"]}"')
    (ARTIFACTS / "build-page.html").write_text(dom)
    for name, url in pictures.items():  # the build page links both pictures
        assert f'href="{url}"' in dom and name in dom, f"{name}: see build-page.html"
    subprocess.run([*chromium[:-1], "--window-size=1400,1800", f"--screenshot={ARTIFACTS / 'build-page.png'}",
                    build_page], capture_output=True, timeout=120)  # tall enough for every step and its links
    for name, url in pictures.items():  # each picture as a browser shows it, from the log server
        shot = ARTIFACTS / f"{name}-in-chromium.png"
        subprocess.run([*chromium[:-1], "--window-size=1500,1000", f"--screenshot={shot}", url], capture_output=True,
                       timeout=120)
        with Image.open(shot) as seen:
            colours = {colour for _, colour in seen.convert("RGB").getcolors(maxcolors=1 << 20) or []}
        assert rgb(phase_colour("wait-for-nodes")) in colours, f"see {shot}"
    dom = subprocess.run([*chromium, "--dump-dom", console], capture_output=True, text=True, timeout=120).stdout
    assert "<title>owned</title>" not in dom and "&lt;script&gt;document.title" in dom, dom[:1000]
    attached = (f"{master.rest.url}#/builders/{build['builderid']}/builds/{build['number']}/steps/"
                f"{by_name['attach-logs']['number']}/logs/console_oscarnode1")  # Buildbot's own log view
    dom = rendered(chromium, attached, "document.title='owned'")
    (ARTIFACTS / "console-log-page.html").write_text(dom)
    assert "<title>owned</title>" not in dom and "document.title='owned'" in dom, "see console-log-page.html"
    shot = ARTIFACTS / "waterfall.png"
    subprocess.run([*chromium, f"--screenshot={shot}", f"{master.rest.url}#/waterfall"], capture_output=True,
                   timeout=120)
    assert shot.stat().st_size > 10_000


@pytest.mark.vm
def test_anonymous_users_may_not_force_but_the_admin_may_stop_a_build(master):
    status, reply = master.rest.rpc("forceschedulers/force", "force", {"builderNames": ["b1"]})
    assert status == 403 and "admins" in json.dumps(reply)
    count = len(master.rest.builds("b1"))
    build = master.force_until("start-oscar")
    spec = yaml.safe_load((master.root / "worker" / "b1" / "spec.yaml").read_text())
    assert (spec["nodes"]["count"], spec["nodes"]["boot"]) == (1, "cdrom")  # the force form's nodes
    status, _ = master.rest.rpc(f"builds/{build['buildid']}", "stop", {"reason": "test stops it"})
    assert status == 403
    status, _ = master.rest.rpc(f"builds/{build['buildid']}", "stop", {"reason": "test stops it"}, user=ADMIN)
    assert status == 200
    build = master.wait_build("b1", count + 1, timeout=300)
    by_name = {s["name"]: s for s in master.rest.steps(build)}
    assert build["results"] == 6  # cancelled
    assert by_name["destroy"]["results"] == 0 and by_name["grab-logs"]["results"] == 0
    assert qemu_pids_of(master.root / "worker") == []


@pytest.mark.vm
def test_a_commit_that_breaks_step_4_fails_in_start_oscar(master):
    build = master.build_of_commit("share/client.pkglist", "dropbear-bin", "no-such-package",
                                   "client image: a missing package")
    by_name = {s["name"]: s for s in master.rest.steps(build)}
    assert build["results"] == 2
    # as in OSCAR, a failed build ends step 4 with status 0, and step 5 finds no image
    assert by_name["start-oscar"]["state_string"] == \
        "failed: OSCAR failed in step 5 - Define OSCAR Clients: You must build at least one image!"
    assert "boot-compute-nodes" not in by_name  # the build stopped at the failing phase
    assert by_name["grab-logs"]["results"] == 0 and by_name["destroy"]["results"] == 0
    mail = mail_for(master, "b1", build["number"])
    assert str(mail["Subject"]).startswith("oscarvt failure: b1 build")
    assert mail["To"] == "dev@example.org"  # the product's failure: to its developers, not the admins
    body = mail.get_body().get_content()
    assert "Step start-oscar: failed: OSCAR failed in step 5 - Define OSCAR Clients: You must build at least " \
           "one image!" in body and "Blame: product" in body
    assert qemu_pids_of(master.root / "worker") == []
    reproduce_by_hand(master, build, body)


def reproduce_by_hand(master: Master, build: dict[str, Any], body: str) -> None:
    """Run the command the red build's mail gives, as a person would: it must fail as the build did, in
    start-oscar, and keep the cluster running."""
    lines = body.splitlines()
    command = lines[next(i for i, line in enumerate(lines) if line.startswith("Reproduce it")) + 1]
    properties = master.rest.get(f"builds/{build['buildid']}/properties")["properties"][0]
    assert command == properties["reproduce"][0]  # the mail's is the build page's
    revision = properties["got_revision"][0]
    assert f"git -C oscar checkout -q {revision}" in command and "--keep" in command
    spec_url = next(url["url"] for step in master.rest.steps(build) if step["name"] == "reproduce"
                    for url in step["urls"] if url["name"] == "spec.yaml")
    assert f"curl -fsS -o spec.yaml {spec_url}" in command
    person = master.root / f"by-hand-{build['number']}"
    person.mkdir()
    cluster = person / f"b1-{build['number']}"
    env = {**os.environ, "PATH": f"{local.BIN}:{os.environ['PATH']}"}
    try:
        ran = subprocess.run(command, shell=True, cwd=person, env=env, capture_output=True, text=True, timeout=900)
        verdict = ran.stdout.strip().splitlines()[-1] if ran.stdout.strip() else ran.stderr
        assert ran.returncode == 1, (ran.returncode, ran.stdout[-3000:], ran.stderr[-3000:])
        assert verdict.startswith("FAIL: run: product: failed in start-oscar"), verdict
        assert "OSCAR failed in step 5 - Define OSCAR Clients: You must build at least one image!" in verdict, verdict
        status = json.loads(oscarvt("status", "--cluster", cluster, "--json").stdout)
        head = next(vm for vm in status["vms"].values() if vm["role"] == "headnode")
        assert head["state"] == "running", status["vms"]  # kept for the person
        assert qemu_pids_of(cluster)
    finally:
        oscarvt("destroy", "--cluster", cluster)
    assert qemu_pids_of(cluster) == []


@pytest.mark.vm
def test_a_headnode_killed_by_the_host_is_retried_once_and_mailed_to_the_admins_only(master):
    """The commit that mends step 4 builds; the host kills its headnode during start-oscar: the build is
    retried (its headnode booted again), and only the admins hear of the first attempt."""
    master.wait_logged(f'gitpoller: processing changes from "{master.repo}"', times=2)
    count = len(master.rest.builds("b1"))
    pkglist = master.repo / "share" / "client.pkglist"
    pkglist.write_text(pkglist.read_text().replace("no-such-package", "dropbear-bin"))
    local.git(master.repo, "commit", "-q", "-am", "client image: dropbear-bin again")
    build = master.next_build(count, timeout=120, what="the commit's build")
    wait_for(lambda: True if any(s["name"] == "start-oscar" and s["started_at"] for s in master.rest.steps(build))
             else None, timeout=300, what="the build to start OSCAR")
    pidfile = master.root / "worker" / "b1" / "clusters" / str(build["number"]) / "run" / "headnode.pid"
    os.kill(int(pidfile.read_text()), signal.SIGKILL)  # as the host's OOM killer would
    first = master.wait_build("b1", count + 1, timeout=600)
    assert first["results"] == RETRY, first  # the infrastructure's trouble, not OSCAR's
    assert first["state_string"].startswith("retry infrastructure: start-oscar failed: headnode: "), first
    by_name = {s["name"]: s for s in master.rest.steps(first)}
    assert by_name["start-oscar"]["state_string"].startswith("failed: headnode: "), by_name["start-oscar"]
    assert by_name["destroy"]["results"] == SUCCESS
    mail = mail_for(master, "b1", first["number"])
    assert str(mail["Subject"]) == f"oscarvt retry: b1 build {first['number']}"
    assert mail["To"] == "admin@example.org"  # the harness's trouble: to the admins, not the developers
    assert "Blame: infrastructure" in mail.get_body().get_content()
    # Buildbot runs the same request again; once it made its cluster, it is stopped (the commit's whole
    # build passing is test_a_commit_builds_every_phase_on_a_virtual_cluster's, and takes minutes).
    second = master.next_build(count + 1, timeout=120, what="the retry")
    assert second["buildrequestid"] == first["buildrequestid"]
    wait_for(lambda: True if any(s["name"] == "boot-headnode" and s["results"] == SUCCESS
                                 for s in master.rest.steps(second)) else None,
             timeout=600, what="the retry's headnode")
    master.stop_build(second, count + 2)
    assert not [m for m in master.mail.received if f": b1 build {first['number']}" in str(m["Subject"])
                and "dev@example.org" in str(m["To"])]  # the developers never heard of the retry
    assert qemu_pids_of(master.root / "worker") == []


@pytest.mark.vm
def test_a_worker_stopped_during_wait_for_nodes_destroys_the_left_cluster_when_it_starts(master):
    """The host stops the worker process mid-build (a restart, a crash); the cluster outlives it.
    Started again, the worker first destroys it (``oscarvt reap``), then Buildbot retries the build."""
    count = len(master.rest.builds("b1"))
    build = master.force_until("wait-for-nodes")
    worker = master.root / "worker"
    local.stop(master.pids[1])  # the worker process, as systemd stops it
    wait_for(lambda: None if master.rest.worker_connected() else True, timeout=60, what="the worker to be gone")
    assert qemu_pids_of(worker), "the build's VMs outlive their worker"
    master.pids[1] = local.start_worker(worker)  # reaps before it connects
    assert qemu_pids_of(worker) == []
    assert not list((worker / "b1" / "clusters" / str(build["number"]) / "disks").glob("*"))
    lost = master.wait_build("b1", count + 1, timeout=120)
    assert lost["results"] == RETRY, lost  # Buildbot's own verdict on a worker lost mid-build
    again = master.next_build(count + 1, timeout=120, what="the retry")
    wait_for(lambda: True if any(s["name"] == "copy-vm-image" and s["started_at"] for s in master.rest.steps(again))
             else None, timeout=300, what="the retry to make its cluster")
    master.stop_build(again, count + 2)
    assert qemu_pids_of(worker) == []


@pytest.mark.vm
def test_an_svn_commit_triggers_a_build_through_svnpoller_and_the_webhook(master):
    """The SVN poller only polls when its post-commit webhook is called (its interval is an hour)."""
    hook = urllib.request.Request(f"{master.rest.url}change_hook/poller?poller=oscar-svn", data=b"")
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(hook, timeout=30)
    assert anonymous.value.code == 401  # the change hook takes posts from its users only
    anonymous.value.read()  # every answer read to its end (see local.Rest)
    hook.add_header("Authorization", "Basic " + b64encode(f"{HOOK[0]}:{HOOK[1]}".encode()).decode())
    with urllib.request.urlopen(hook, timeout=30) as reply:
        assert reply.status == 200 and reply.read() is not None  # the first poll records where the repository is
    master.wait_logged("SVNPoller: starting at change", times=1)
    checkout = master.svn_checkout
    readme = checkout / "README.md"
    readme.write_text(readme.read_text() + "\nA new SVN revision.\n")
    subprocess.run(["svn", "commit", "-q", "-m", "README: a new SVN revision", str(checkout)], check=True)
    with urllib.request.urlopen(hook, timeout=30) as reply:
        assert reply.status == 200 and reply.read() is not None  # what a post-commit hook does
    build = wait_for(lambda: (master.rest.builds("b2-svn") or [None])[0], timeout=300, what="a build of b2-svn")
    assert build["number"] == 1
    changes = master.rest.get(f"builds/{build['buildid']}/changes")["changes"]
    assert changes and changes[0]["comments"] == "README: a new SVN revision"
    master.rest.rpc(f"builds/{build['buildid']}", "stop", {"reason": "the trigger was the test"}, user=ADMIN)
    master.wait_build("b2-svn", 1, timeout=300)
    assert qemu_pids_of(master.root / "worker") == []


@pytest.mark.vm
def test_the_force_form_repeats_a_revision_for_flakiness_and_refuses_too_many(master):
    form = {"builderNames": ["b1"], "nodes": "1", "boot": "cdrom", "keep_on_failure": False}
    status, reply = master.rest.rpc("forceschedulers/force", "force", {**form, "repeat": "21"}, user=ADMIN)
    assert "repeat: from 1 to 20 builds, not 21" in json.dumps(reply), (status, reply)
    before = {r["buildsetid"] for r in master.rest.get("buildrequests")["buildrequests"]}
    status, reply = master.rest.rpc("forceschedulers/force", "force", {**form, "repeat": "3"}, user=ADMIN)
    assert status == 200, reply
    requests = [r for r in master.rest.get("buildrequests")["buildrequests"] if r["buildsetid"] not in before]
    repeats = sorted(master.rest.get(f"buildsets/{r['buildsetid']}/properties")["properties"][0]["repeat"][0]
                     for r in requests)
    assert repeats == ["1 of 3", "2 of 3", "3 of 3"]  # three builds of one revision, none collapsed into another
    # (the pass rate beside the trend: tests/test_bisect.py; the builds are stopped after this test)
