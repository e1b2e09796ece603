"""The ``pictures`` step: on the master, after the upload, the builder's trend drawn anew and the
build page's links to the build's timeline and to the trend.

grab-logs drew the timeline on the worker (``timeline.png`` in the uploaded logs,
``oscarvt.timeline``); this step draws ``public_html/logs/BUILDER/trend.png``
(``oscarvt_master.trend``, in a thread: the master's reactor goes on) and links both, where the
master's log server (or ``logs_url``) shows them. A picture that cannot be made or found is said
in the step's summary; the step never fails a build.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from buildbot.process.buildstep import BuildStep
from buildbot.process.results import SUCCESS
from twisted.internet import threads
from twisted.python import log

from oscarvt.timeline import TIMELINE
from oscarvt_master.flakiness import PassRate, pass_rate
from oscarvt_master.trend import BUILDS, TREND, write_trend


class Pictures(BuildStep):  # type: ignore[misc]  # buildbot has no type hints
    """Draw the builder's trend from the uploaded logs beside ``masterdest`` (the build's uploaded
    logs folder, renderable) and link the timeline and the trend under ``logs_url`` (the build's
    logs folder as a browser reaches it, renderable; None: no links)."""

    name = "pictures"
    renderables = ["masterdest", "logs_url"]

    def __init__(self, masterdest: Any, logs_url: Any = None, **kwargs: Any) -> None:
        kwargs.setdefault("alwaysRun", True)
        super().__init__(**kwargs)
        self.masterdest = masterdest
        self.logs_url = logs_url

    async def run(self) -> int:
        folder = Path(self.masterdest)
        said = []
        timeline = _regular_file(folder / TIMELINE)
        said.append("timeline" if timeline else "no timeline (see grab-logs)")
        builds = 0
        rate = await self.pass_rate()
        if _real_folder(folder.parent):
            try:
                builds = await threads.deferToThread(write_trend, folder.parent, str(self.getProperty("buildername")),
                                                     BUILDS, rate.text() if rate else "")
            except Exception as exc:  # noqa: BLE001 (a picture is never worth a build's failure)
                log.err(exc, "oscarvt: the trend was not drawn")  # type: ignore[no-untyped-call]  # twisted's, unannotated
                said.append(f"trend not drawn: {type(exc).__name__}: {exc}"[:200])
        if builds:
            said.append(f"trend of {builds} build{'s' if builds > 1 else ''}")
        if rate is not None:
            said.append(rate.text())
        if self.logs_url:
            base = str(self.logs_url)
            if timeline:
                await self.addURL("timeline", urljoin(base, TIMELINE))
            if builds:
                await self.addURL("trend", urljoin(base, f"../{TREND}"))
        self.descriptionDone = ["; ".join(said)]
        return SUCCESS  # type: ignore[no-any-return]  # buildbot has no type hints


    async def pass_rate(self) -> PassRate | None:
        """The builder's pass rate (also the property ``pass_rate``); None if Buildbot's data do not say."""
        try:
            rate = await pass_rate(self.master, await self.build.builder.getBuilderId())
        except Exception as exc:  # noqa: BLE001 (a figure beside a picture is never worth a build's failure)
            log.msg(f"oscarvt: no pass rate: {exc!r}")
            return None
        self.setProperty("pass_rate", {"passed": rate.passed, "counted": rate.counted}, "pictures")
        return rate


def _regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def _real_folder(path: Path) -> bool:
    try:
        return stat.S_ISDIR(path.lstat().st_mode)
    except OSError:
        return False
