"""The build logs the workers upload, served read-only over HTTP by the master itself.

Each build's upload-logs step puts its log folder under ``public_html/logs/BUILDER/NUMBER``
in the master's folder and links it from the build page; this service makes those links work
without another web server (``logs_port``; or point ``logs_url`` at your own server).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from buildbot.util import service
from twisted.internet import defer, reactor
from twisted.web import server, static


class LogServer(service.BuildbotService):
    """Serve ``folder`` (created if missing) on ``port`` (all interfaces, or ``interface``)."""

    name = "oscarvt-logs"
    listening: Any = None

    def checkConfig(self, port: int, folder: str, interface: str = "", **kwargs: Any) -> None:  # noqa: N802
        pass

    @defer.inlineCallbacks
    def reconfigService(self, port: int, folder: str, interface: str = "", **kwargs: Any) -> Any:  # noqa: N802
        yield self._stop_listening()
        Path(folder).mkdir(parents=True, exist_ok=True)
        self.port = port
        tcp: Any = reactor
        self.listening = tcp.listenTCP(port, server.Site(static.File(folder)), interface=interface)
        yield super().reconfigService(**kwargs)

    @defer.inlineCallbacks
    def stopService(self) -> Any:  # noqa: N802
        yield self._stop_listening()
        yield super().stopService()

    def _stop_listening(self) -> Any:
        listening: Any = getattr(self, "listening", None)
        self.listening = None
        return listening.stopListening() if listening is not None else defer.succeed(None)
