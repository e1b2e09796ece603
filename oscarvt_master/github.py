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
``SUITE-ARCH-BOOT``) and the blame of a failure in the description.
"""

from __future__ import annotations

import hmac
from hashlib import sha256
from typing import Any

from buildbot.plugins import reporters, util
from buildbot.process.properties import Properties
from buildbot.reporters.generators.build import BuildStartEndStatusGenerator
from buildbot.reporters.generators.buildrequest import BuildRequestGenerator
from buildbot.reporters.message import MessageFormatterRenderable
from buildbot.www.hooks.github import GitHubEventHandler
from twisted.internet import defer

from oscarvt_master.settings import Repository, Settings

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
    """A commit status per build of each builder whose repository is on GitHub (if ``github.statuses``)."""
    if settings.github is None or not settings.github.statuses:
        return []
    names = [b.name for b in settings.builders if b.repository in on_github(settings)]
    return [reporters.GitHubStatusPush(
        token=util.Secret(TOKEN), context=util.Interpolate(CONTEXT), baseURL=settings.github.api_url,
        generators=[BuildRequestGenerator(builders=names, formatter=MessageFormatterRenderable("Build pending.")),
                    BuildStartEndStatusGenerator(
                        builders=names, start_formatter=MessageFormatterRenderable("Build started."),
                        end_formatter=MessageFormatterRenderable(util.Interpolate(DONE)))])]
