"""The build logs the workers upload, served read-only and inert over HTTP by the master itself.

Each build's upload-logs step puts its log folder under ``public_html/logs/BUILDER/NUMBER``
in the master's folder and links it from the build page; this service makes those links work
without another web server (``logs_port`` on ``logs_listen``; or point ``logs_url`` at your
own server, which should send the same headers).

What it serves came out of a guest that runs the code under test, so nothing in it may act in
a browser: every file is ``text/plain; charset=utf-8`` (a ``.tar.gz`` is a download) but a
``.png`` (the pictures: ``oscarvt.timeline``, ``oscarvt_master.trend``), which is ``image/png``,
and a browser only decodes it as a picture since the type is never sniffed (an SVG, whose scripts
could run, is text like the rest); every answer carries ``X-Content-Type-Options: nosniff`` and
``Content-Security-Policy: sandbox``, no ``index.html`` stands in for a folder's listing, and a
symbolic link is never followed (404), whether it is the file asked for or a folder on the way to it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from buildbot.util import service
from twisted.internet import defer, reactor
from twisted.web import pages, resource, server, static

TEXT = "text/plain; charset=utf-8"
HEADERS = {b"X-Content-Type-Options": b"nosniff", b"Content-Security-Policy": b"sandbox",
           b"Referrer-Policy": b"no-referrer"}
DOWNLOADS = {".gz": "application/gzip"}  # the logs tarball
PICTURES = {".png": "image/png"}  # the timeline and the trend; everything else is text


class InertFiles(static.File):
    """A folder served as plain text: no content sniffing, no index pages, no symbolic links."""

    contentTypes = {**DOWNLOADS, **PICTURES}
    contentEncodings: dict[str, str] = {}  # a .gz is a file to download, not a compressed page
    indexNames: list[str] = []
    childNotFound: Any = pages.notFound()
    forbidden: Any = pages.forbidden()

    def __init__(self, path: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(path, TEXT, *args[1:], **kwargs)

    def getChild(self, path: bytes, request: Any) -> Any:  # noqa: N802
        try:
            if os.path.islink(os.path.join(self.path, path.decode("utf-8"))):
                return self.childNotFound
        except (UnicodeDecodeError, ValueError):
            return self.childNotFound
        return super().getChild(path, request)  # type: ignore[no-untyped-call]  # twisted's, unannotated

    def render_GET(self, request: Any) -> Any:  # noqa: N802
        if os.path.islink(self.path):
            return self.childNotFound.render(request)
        if self.basename().endswith(tuple(DOWNLOADS)):
            request.setHeader(b"Content-Disposition", b"attachment")
        return super().render_GET(request)  # type: ignore[no-untyped-call]  # twisted's, unannotated

    render_HEAD = render_GET

    def openForReading(self) -> Any:  # noqa: N802
        """The file, opened without following a link put there after the check."""
        return os.fdopen(os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW), "rb")


class InertSite(server.Site):
    """A site that sends the inert headers with every answer, errors and listings included."""

    def getResourceFor(self, request: Any) -> resource.IResource:  # noqa: N802
        for name, value in HEADERS.items():
            request.setHeader(name, value)
        return super().getResourceFor(request)  # type: ignore[no-untyped-call,no-any-return]  # twisted's


class LogServer(service.BuildbotService):  # type: ignore[misc]  # buildbot has no type hints
    """Serve ``folder`` (created if missing) on ``port`` at ``interface`` (an address)."""

    name = "oscarvt-logs"
    listening: Any = None

    def checkConfig(self, port: int, folder: str, interface: str = "127.0.0.1", **kwargs: Any) -> None:  # noqa: N802
        pass

    @defer.inlineCallbacks
    def reconfigService(self, port: int, folder: str, interface: str = "127.0.0.1",  # noqa: N802
                        **kwargs: Any) -> Any:
        yield self._stop_listening()
        Path(folder).mkdir(parents=True, exist_ok=True)
        self.port = port
        tcp: Any = reactor
        root = InertFiles(str(Path(folder).resolve()))
        site = InertSite(root)  # type: ignore[no-untyped-call]  # twisted's Site, unannotated
        self.listening = tcp.listenTCP(port, site, interface=interface)
        yield super().reconfigService(**kwargs)

    @defer.inlineCallbacks
    def stopService(self) -> Any:  # noqa: N802
        yield self._stop_listening()
        yield super().stopService()

    def _stop_listening(self) -> Any:
        listening: Any = getattr(self, "listening", None)
        self.listening = None
        return listening.stopListening() if listening is not None else defer.succeed(None)
