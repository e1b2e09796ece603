"""GitHub: a real master takes GitHub's webhook posts (real GitHub payloads, signed as GitHub signs
them) and refuses unsigned or wrongly signed ones, and pushes each build's commit status to a
GitHub API (here a local one that records what it is sent); the status payloads per result are
checked with Buildbot's own reporter and HTTP test helpers. The badges are served per builder."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from base64 import b64encode
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
from buildbot.process.results import FAILURE, SUCCESS
from buildbot.reporters.utils import getDetailsForBuild
from buildbot.test.fake import fakemaster
from buildbot.test.fake.httpclientservice import HTTPClientService
from buildbot.test.reactor import TestReactorMixin
from buildbot.test.util.reporter import ReporterTestMixin
from test_master import example
from test_master_boundaries import ADMIN, HOOK, Running
from twisted.internet import defer
from twisted.trial import unittest

from oscarvt.waiting import wait_for
from oscarvt_dev import local
from oscarvt_master.github import status_push
from oscarvt_master.secret_files import hashed_line
from oscarvt_master.settings import BISECT, settings_from_dict

DATA = Path(__file__).parent / "data"
SECRET = "It's a Secret to Everybody"  # the webhook's shared secret (secrets_dir/github-webhook-secret)
TOKEN = "ghp_oscarvt-test-token"  # the status token (secrets_dir/github-token)
REPOSITORY = "oscar-cluster/oscar"


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    """The signature headers GitHub sends with a webhook's body: HMAC-SHA256 and HMAC-SHA1 of it."""
    return {"X-Hub-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
            "X-Hub-Signature": "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()}


def push_payload(sha: str, message: str, full_name: str = REPOSITORY) -> bytes:
    """A push event as GitHub sends it (tests/data/github-push.json) for one commit ``sha`` on main."""
    payload = json.loads((DATA / "github-push.json").read_text())
    owner, name = full_name.split("/")
    payload["after"] = payload["head_commit"]["id"] = payload["commits"][0]["id"] = sha
    payload["head_commit"]["message"] = payload["commits"][0]["message"] = message
    payload["repository"].update(name=name, full_name=full_name, html_url=f"https://github.com/{full_name}")
    payload["repository"]["owner"]["login"] = owner
    return json.dumps(payload).encode()


class FakeGitHubApi:
    """A local stand-in for api.github.com: it records each status post (path, token, body) and answers 201."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, str, dict[str, Any]]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                api.posts.append((self.path, self.headers["Authorization"], body))
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                # It closes each connection (HTTP/1.0); said outright, Buildbot's client pool does not send the
                # next status on it (the post then failed as "closed cleanly" when the close came first).
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeGitHubApi:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def github_master(tmp_path_factory) -> Iterator[tuple[Running, FakeGitHubApi]]:
    """A master with GitHub's hook and statuses on (the statuses to a local API), no worker."""
    root = tmp_path_factory.mktemp("github")
    running = Running(root)
    with FakeGitHubApi() as api:
        settings = {**example(), "url": running.url, "www_port": running.www, "worker_port": running.worker,
                    "logs_port": running.logs, "mail": None,
                    "github": {"hook": True, "statuses": True, "api_url": api.url}}
        local.create_master(root / "master", settings,
                            {"worker-hv1": "worker-password", "www-users": hashed_line(*ADMIN, rounds=4) + "\n",
                             "github-webhook-secret": SECRET + "\n", "github-token": TOKEN + "\n"})
        try:
            running.pid = local.start_master(root / "master")
            wait_for(lambda: True if running.get(f"{running.url}api/v2/builders").status == 200 else None,
                     timeout=60, what="the master's web UI")
            yield running, api
        finally:
            if running.pid:
                local.stop(running.pid)


def post(master: Running, body: bytes, headers: dict[str, str], event: str = "push",
         content_type: str = "application/json", login: tuple[str, str] | None = None) -> tuple[int, str]:
    """POST to /change_hook/github as GitHub does (with ``login`` in the URL: as HTTP Basic); the HTTP
    status and the answer's text."""
    if login is not None:
        headers = {**headers, "Authorization": "Basic " + b64encode(f"{login[0]}:{login[1]}".encode()).decode()}
    request = urllib.request.Request(f"{master.url}change_hook/github", data=body, headers={
        "Content-Type": content_type, "X-GitHub-Event": event, "User-Agent": "GitHub-Hookshot/044aadd",
        "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958", **headers})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode()


def listed(master: Running, path: str) -> list[dict[str, Any]]:
    """The REST API's list at ``path`` (changes, buildrequests, builders)."""
    return list(local.Rest(master.url).get(path)[path])


def changes(master: Running) -> list[dict[str, Any]]:
    return listed(master, "changes")


def wait_requests(master: Running, count: int) -> list[dict[str, Any]]:
    """The master's build requests, once there are ``count``."""
    return wait_for(lambda: (lambda found: found if len(found) == count else None)(listed(master, "buildrequests")),
                    timeout=30, what=f"{count} build requests")


@pytest.mark.vm  # it listens on ports: inside the test command's network namespace
def test_a_signed_push_is_a_change_that_builds_and_each_cell_gets_a_pending_status(github_master):
    master, api = github_master
    sha = "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"
    body = push_payload(sha, "start-oscar: wait for the boot hook")
    assert post(master, body, signed(body)) == (200, "1 change found")
    change, = changes(master)
    assert (change["revision"], change["branch"], change["project"], change["repository"], change["comments"]) == (
        sha, "main", REPOSITORY, f"https://github.com/{REPOSITORY}", "start-oscar: wait for the boot hook")
    expected = {"bookworm-amd64-cdrom", "bookworm-amd64-network", "bookworm-amd64-4nodes-bigger"}  # commit: bookworm
    requests = wait_requests(master, len(expected))
    names = {b["builderid"]: b["name"] for b in listed(master, "builders")}
    assert {names[r["builderid"]] for r in requests} == expected
    # A build that ends quickly posts its final status too: the pending ones are those before it (under load
    # the test may first look after that).
    def pending() -> list[Any] | None:
        found = [post for post in api.posts if post[2].get("state") == "pending"]
        return found if len(found) >= len(expected) else None
    posts = wait_for(pending, timeout=120, what="a pending status per builder")
    assert {path for path, _, _ in posts} == {f"/repos/{REPOSITORY}/statuses/{sha}"}
    assert {token for _, token, _ in posts} == {f"token {TOKEN}"}
    assert sorted((body["context"], body["state"], body["description"]) for _, _, body in posts) == sorted(
        (f"oscarvt/{name}", "pending", "Build pending.") for name in expected)


@pytest.mark.vm
def test_the_hook_refuses_unsigned_and_wrongly_signed_posts(github_master):
    master, _ = github_master
    before = len(changes(master))
    body = push_payload("5d1a7a3a0c0e4d7ab5c0c2b0b6d36a3f0f6a1b2c", "an unsigned commit")
    good = signed(body)
    wrong = signed(body, secret="not the secret")
    for headers, why in [({}, "X-Hub-Signature-256 is missing or does not match the body"),
                         (wrong, "X-Hub-Signature-256 is missing or does not match the body"),
                         ({**good, "X-Hub-Signature": wrong["X-Hub-Signature"]}, "Hash mismatch"),
                         ({"X-Hub-Signature-256": good["X-Hub-Signature-256"]}, "Request has no required signature"),
                         ({"X-Hub-Signature": good["X-Hub-Signature"]},
                          "X-Hub-Signature-256 is missing or does not match the body")]:
        assert post(master, body, headers) == (400, why), headers
    assert post(master, body + b" ", good)[0] == 400  # the body changed after signing
    assert len(changes(master)) == before


@pytest.mark.vm
def test_a_ping_a_form_encoded_push_and_another_repository(github_master):
    master, api = github_master
    ping = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1, "hook": {"type": "Repository"}}).encode()
    assert post(master, ping, signed(ping), event="ping") == (200, "no change found")
    before = len(listed(master, "buildrequests"))
    other = push_payload("1111111111111111111111111111111111111111", "elsewhere", full_name="someone/else")
    assert post(master, other, signed(other)) == (200, "1 change found")  # recorded, but not this project's
    sha = "9f3b6d0b8e1c4a5f2d7e6c1b0a9f8e7d6c5b4a39"
    form = urllib.parse.urlencode({"payload": push_payload(sha, "form-encoded").decode()}).encode()
    assert post(master, form, signed(form), content_type="application/x-www-form-urlencoded") == (200,
                                                                                                  "1 change found")
    assert sha in {c["revision"] for c in changes(master)}
    wait_requests(master, before + 3)  # the form-encoded push's three (its changes come after the other's)
    assert len(listed(master, "buildrequests")) == before + 3  # none for the other repository's push
    assert not [p for p in api.posts if "1111111111" in p[0]]


@pytest.mark.vm
def test_each_builder_has_a_badge(github_master):
    master, _ = github_master
    svg = master.get(f"{master.url}plugins/badges/bookworm-amd64-cdrom.svg")
    assert svg.status == 200 and svg.headers["Content-Type"] == "image/svg+xml"
    assert b"oscarvt" in svg.body and b"unknown" in svg.body  # no build has finished
    png = master.get(f"{master.url}plugins/badges/trixie-amd64-network.png")
    assert png.status == 200 and png.body.startswith(b"\x89PNG")


@pytest.mark.vm
def test_with_the_poller_hook_on_too_github_posts_need_a_hook_users_login_and_the_signatures(tmp_path):
    """Buildbot guards all of /change_hook with change-hook-users when change_hook is on (docs/master.md)."""
    running = Running(tmp_path)
    settings = {**example(), "url": running.url, "www_port": running.www, "worker_port": running.worker,
                "logs_port": 0, "mail": None, "change_hook": True, "github": {"hook": True}}
    local.create_master(tmp_path / "master", settings,
                        {"worker-hv1": "worker-password", "www-users": hashed_line(*ADMIN, rounds=4) + "\n",
                         "change-hook-users": hashed_line(*HOOK, rounds=4) + "\n", "github-webhook-secret": SECRET})
    try:
        running.pid = local.start_master(tmp_path / "master")
        wait_for(lambda: True if running.get(f"{running.url}api/v2/builders").status == 200 else None,
                 timeout=60, what="the master's web UI")
        body = push_payload("2f1e0d9c8b7a69584736251403f2e1d0c9b8a796", "behind two locks")
        assert post(running, body, signed(body))[0] == 401  # signed, but no login
        assert post(running, body, {}, login=HOOK)[0] == 400  # a login, but unsigned
        assert post(running, body, signed(body), login=HOOK) == (200, "1 change found")
    finally:
        if running.pid:
            local.stop(running.pid)


class TestStatuses(ReporterTestMixin, TestReactorMixin, unittest.TestCase):
    """What GitHubStatusPush sends per build, with Buildbot's fake master and HTTP service."""

    def setUp(self) -> Any:  # noqa: N802
        return defer.ensureDeferred(self.set_up())

    async def set_up(self) -> None:
        self.setup_test_reactor()
        self.setup_reporter_test()
        self.reporter_test_project = REPOSITORY  # the change's project: where the status goes
        self.master = await fakemaster.make_master(self, wantData=True, wantDb=True, wantMq=True,
                                                   with_secrets={"github-token": TOKEN})
        await self.master.startService()
        self.addCleanup(self.master.stopService)
        self.http = await HTTPClientService.getService(self.master, self, "https://api.github.com",
                                                       headers={"User-Agent": "Buildbot"}, debug=None, verify=None)
        settings = example()
        settings["github"] = {"statuses": True}
        settings["repositories"].append({"name": "elsewhere", "url": "/srv/elsewhere.git"})
        del settings["matrix"]
        settings["builders"] = [{**settings["builders"][0], "name": name, "repository": repository}
                                for name, repository in (("Builder0", "oscar"), ("Builder1", "elsewhere"))]
        self.push, self.bisection = status_push(settings_from_dict(settings))
        await self.push.setServiceParent(self.master)
        await self.bisection.setServiceParent(self.master)

    def expect(self, state: str, description: str) -> None:
        self.http.expect("post", f"/repos/{REPOSITORY}/statuses/{self.reporter_test_revision}",
                         json={"state": state, "description": description, "context": "oscarvt/Builder0",
                               "target_url": "http://localhost:8080/#/builders/79/builds/0"},
                         headers={"Authorization": f"token {TOKEN}"})

    async def test_a_build_is_pending_then_its_result_with_the_blame(self):
        build = await self.insert_build_new()
        self.expect("pending", "Build started.")
        await self.push._got_event(("builds", 20, "new"), build)
        build["complete"], build["results"] = True, SUCCESS
        self.expect("success", "Build done.")
        await self.push._got_event(("builds", 20, "finished"), build)

    async def test_a_failure_names_its_blame(self):
        self.reporter_test_props["blame"] = "product"
        build = await self.insert_build_finished(FAILURE)
        self.expect("failure", "Build done. Blame: product")
        await self.push._got_event(("builds", 20, "finished"), build)

    async def test_a_builder_whose_repository_is_not_on_github_gets_no_status(self):
        await self.insert_test_data([SUCCESS, SUCCESS], SUCCESS)  # builds 20 (Builder0) and 21 (Builder1)
        build = await self.master.data.get(("builds", 21))
        await self.push._got_event(("builds", 21, "finished"), build)  # no request expected: none is sent

    async def bisect_build(self, **properties: Any) -> dict[str, Any]:
        """A finished build with ``properties``, as the bisection reporter's generator hands it on (it takes only
        the bisect builder's builds; Buildbot's test data names its builders Builder0 and Builder1)."""
        assert [g.builders for g in self.bisection.generators] == [[BISECT]]
        self.reporter_test_props.update(properties)
        build = await self.insert_build_finished(SUCCESS)
        await getDetailsForBuild(self.master, build, want_properties=True)
        return build

    async def test_a_bisections_first_bad_commit_gets_a_failure_status_of_its_own(self):
        first_bad = "0123456789abcdef0123456789abcdef01234567"  # not the build's revision: it has no source stamp
        description = "first bad commit for Builder0 (3 probes, 2 minutes)"
        build = await self.bisect_build(bisect_builder="Builder0", first_bad={
            "revision": first_bad, "github": REPOSITORY, "description": description})
        self.http.expect("post", f"/repos/{REPOSITORY}/statuses/{first_bad}",
                         json={"state": "failure", "description": description,
                               "context": "oscarvt/Builder0/bisection",
                               "target_url": "http://localhost:8080/#/builders/79/builds/0"},
                         headers={"Authorization": f"token {TOKEN}"})
        await self.bisection.sendMessage([{"builds": [build], "body": "bisected"}])

    async def test_a_bisection_without_a_first_bad_commit_sends_no_status(self):
        build = await self.bisect_build(bisect_builder="Builder0")  # "no bad commit": no property first_bad
        await self.bisection.sendMessage([{"builds": [build], "body": "bisected"}])  # no request expected: none sent
