"""Retention: what the master forgets, and when (``log_horizon``, ``build_data_horizon``).

Buildbot's JanitorConfigurator adds a builder (``__Janitor``, on a worker inside the master) that
runs every day at midnight, master's time (and when an admin forces it, scheduler
``__Janitor_force``): it deletes the step logs older than ``log_horizon`` and the build data
older than ``build_data_horizon`` from the database. With ``log_horizon`` it also prunes the
uploaded logs, ``public_html/logs/BUILDER/NUMBER``, on the same horizon: a build's folder whose
last change (its upload) is older goes, newer ones stay; the builder's own files beside them (its
``trend.png``) are left alone. Nothing under ``public_html/logs`` is
followed through a symbolic link: a link is removed as a link, and a folder is removed with
``shutil.rmtree``, which on Linux never follows a link inside it.
"""

from __future__ import annotations

import shutil
import stat
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from buildbot.configurators.janitor import JANITOR_NAME, JanitorConfigurator
from buildbot.process.buildstep import BuildStep
from buildbot.process.results import SUCCESS
from twisted.internet import threads


def is_build_folder(name: str) -> bool:
    """Whether ``name`` under ``public_html/logs/BUILDER`` is a build's (its number), not the builder's own
    file (its ``trend.png``)."""
    return name.isascii() and name.isdigit()


def prune(folder: Path, before: float) -> tuple[int, int]:
    """Remove each ``BUILDER/NUMBER`` under ``folder`` last changed before ``before`` (UNIX seconds);
    return how many went and how many stayed. Links are never followed."""
    removed = kept = 0
    if not folder.is_dir():
        return removed, kept
    for builder in sorted(folder.iterdir()):
        if not stat.S_ISDIR(builder.lstat().st_mode):
            continue  # a link or a file beside the builders' folders: not a builder's logs
        for build in sorted(builder.iterdir()):
            if not is_build_folder(build.name):
                continue
            info = build.lstat()
            if info.st_mtime >= before:
                kept += 1
                continue
            if stat.S_ISDIR(info.st_mode):
                shutil.rmtree(build)
            else:
                build.unlink()
            removed += 1
    return removed, kept


class PruneUploadedLogs(BuildStep):  # type: ignore[misc]  # buildbot has no type hints
    """Remove the uploaded log folders older than the horizon (on the master, in a thread)."""

    name = "prune-uploaded-logs"

    def __init__(self, folder: str, horizon: timedelta, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.folder = folder
        self.horizon = horizon

    async def run(self) -> int:
        removed, kept = await threads.deferToThread(prune, Path(self.folder),
                                                    time.time() - self.horizon.total_seconds())
        self.descriptionDone = [f"removed {removed} uploaded log folders older than {self.horizon}, kept {kept}"]
        return SUCCESS  # type: ignore[no-any-return]  # buildbot has no type hints


class Janitor(JanitorConfigurator):  # type: ignore[misc]  # buildbot has no type hints
    """Buildbot's janitor, with the uploaded logs in ``logs_folder`` pruned on ``log_horizon`` too."""

    def __init__(self, log_horizon: timedelta | None, build_data_horizon: timedelta | None, logs_folder: str) -> None:
        super().__init__(logHorizon=log_horizon, build_data_horizon=build_data_horizon, hour=0)
        self.logs_folder = logs_folder

    def configure(self, config_dict: dict[str, Any]) -> None:
        super().configure(config_dict)
        if self.logHorizon is not None:
            janitor = next(b for b in config_dict["builders"] if b.name == JANITOR_NAME)
            janitor.factory.addStep(PruneUploadedLogs(self.logs_folder, self.logHorizon))
