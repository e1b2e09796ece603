"""GitHub: its push webhook brings the commits, and each build goes back to the commit as a status.

The hook (``github.hook``) is Buildbot's ``github`` change hook dialect at
``/change_hook/github``, in strict mode with the shared secret from ``secrets_dir/github-webhook-secret``:
a post must carry GitHub's signatures of its body, ``X-Hub-Signature-256`` (HMAC-SHA256, checked
here) and ``X-Hub-Signature`` (HMAC-SHA1, which Buildbot 4.3 checks); an unsigned or wrongly signed
post is refused (400). A repository with ``github: OWNER/NAME`` then has no poller: the hook brings
its commits.

The statuses (``github.statuses``) are Buildbot's GitHubStatusPush with the token from
``secrets_dir/github-token``: pending, started, then the result of each build of a builder whose
repository is on GitHub, with the context ``oscarvt/BUILDER`` (a matrix cell's builder is
``SUITE-ARCH-BOOT``) and the blame of a failure in the description. A bisection's probe builds are builds
of that builder and get their statuses too; the first bad commit a bisection finds gets one more,
``failure`` with the context ``oscarvt/BUILDER/bisection``, linked to the bisect build
(``BisectionStatus``).
"""

from __future__ import annotations

import hmac
from hashlib import sha256
from typing import Any

from buildbot.plugins import reporters, util
from buildbot.process.properties import Properties
from buildbot.reporters.generators.build import BuildStartEndStatusGenerator, BuildStatusGenerator
from buildbot.reporters.generators.buildrequest import BuildRequestGenerator
from buildbot.reporters.message import MessageFormatterRenderable
from buildbot.www.hooks.github import GitHubEventHandler
from twisted.internet import defer
from twisted.python import log

from oscarvt_master.settings import BISECT, Repository, Settings

WEBHOOK_SECRET = "github-webhook-secret"  # secret files in secrets_dir
TOKEN = "github-token"
SIGNATURE_256 = b"X-Hub-Signature-256"
CONTEXT = "oscarvt/%(prop:buildername)s"
DONE = "Build done.%(prop:blame:+ Blame: )s%(prop:blame:-)s"


class SignedEvents(GitHubEventHandler):  # type: ignore[misc]  # buildbot has no type hints
    """Buildbot's GitHub event handler, which (strict) requires and checks the HMAC-SHA1 signature;
    this first requires and checks the HMAC-SHA256 one that GitHub sends beside it."""

    @defer.inlineCallbacks
    def process(self, request: Any) -> Any:
        body = request.content.read()
        request.content.seek(0)
        properties = Properties()
        properties.master = self.master
        secret = yield properties.render(self._secret)
        wanted = b"sha256=" + hmac.new(secret.encode(), body, sha256).hexdigest().encode()
        if not hmac.compare_digest(request.getHeader(SIGNATURE_256) or b"", wanted):
            raise ValueError("X-Hub-Signature-256 is missing or does not match the body")
        result = yield super().process(request)
        return result


def on_github(settings: Settings) -> dict[str, Repository]:
    """The repositories on GitHub, by name."""
    return {r.name: r for r in settings.repositories if r.github is not None}


def github_hook(settings: Settings) -> dict[str, Any]:
    """The change hook dialect for GitHub's webhook (empty unless ``github.hook``)."""
    if settings.github is None or not settings.github.hook:
        return {}
    return {"github": {"class": SignedEvents, "secret": util.Secret(WEBHOOK_SECRET), "strict": True,
                       "github_api_endpoint": settings.github.api_url}}


def status_push(settings: Settings) -> list[Any]:
    """A commit status per build of each builder whose repository is on GitHub (if ``github.statuses``),
    and one for the first bad commit each bisection finds."""
    if settings.github is None or not settings.github.statuses:
        return []
    names = [b.name for b in settings.builders if b.repository in on_github(settings)]
    if not names:
        return []
    token, api = util.Secret(TOKEN), settings.github.api_url
    builds = reporters.GitHubStatusPush(
        token=token, context=util.Interpolate(CONTEXT), baseURL=api,
        generators=[BuildRequestGenerator(builders=names, formatter=MessageFormatterRenderable("Build pending.")),
                    BuildStartEndStatusGenerator(
                        builders=names, start_formatter=MessageFormatterRenderable("Build started."),
                        end_formatter=MessageFormatterRenderable(util.Interpolate(DONE)))])
    bisections = BisectionStatus(token=token, baseURL=api, generators=[BuildStatusGenerator(
        builders=[BISECT], mode="all", message_formatter=MessageFormatterRenderable("bisected"))])
    return [builds, bisections]


class BisectionStatus(reporters.GitHubStatusPush):  # type: ignore[misc]  # buildbot has no type hints
    """The first bad commit a bisect build found (its property ``first_bad``: revision, ``github`` project
    OWNER/NAME and a description), as a ``failure`` status of that commit with the context
    ``oscarvt/BUILDER/bisection``, linked to the bisect build. A bisect build without one sends nothing."""

    name = "GitHubBisectionStatus"  # a service's name: GitHubStatusPush is the builds' reporter

    def sendMessage(self, reports: list[dict[str, Any]]) -> defer.Deferred[None]:  # noqa: N802  # Buildbot's name
        return defer.ensureDeferred(self._send(reports[0]["builds"][0]))

    async def _send(self, build: dict[str, Any]) -> None:
        props = Properties.fromDict(build["properties"])
        props.master = self.master
        found = props.getProperty("first_bad")
        if not build["complete"] or not isinstance(found, dict) or "/" not in str(found.get("github", "")):
            return
        owner, name = str(found["github"]).split("/", 1)
        builder = props.getProperty("bisect_builder")
        response = await self.createStatus(
            repo_user=owner, repo_name=name, sha=str(found["revision"]), state="failure", props=props,
            target_url=build["url"], context=f"oscarvt/{builder}/bisection",
            description=str(found.get("description", ""))[:140])
        if not self.is_status_2xx(response.code):
            log.msg(f"oscarvt: the first bad commit's status for {found['github']} at {found['revision']}: "
                    f"GitHub answered {response.code}")
