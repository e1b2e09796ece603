"""The ``triage`` step: what changed since the builder was last green, on every build that is not.

It runs on the master at the end of a build that did not pass (probe builds excepted) and compares it
with the builder's newest green build before it (``last_green``; probes left out):

- the commits in between (revision, author, subject; ``oscarvt_master.revisions``: a git mirror in
  the master's ``bisect-mirrors`` folder, or ``svn log``), or that it is the same revision;
- whether the template (``template``: the recipe key of the built template), the spec
  (``spec_sha256``), oscarvt's version (``oscarvt_version``) or the worker changed;
- each phase whose time left the builder's usual spread (its last ``GREENS`` green builds' fastest and
  slowest, by more than a quarter and ``SLACK`` seconds);
- the first error line (``ERROR_LINE``) of OSCAR's output, OSCAR's log or a node's console, in the
  build's uploaded logs, that the green build's same file did not have (lines compared with what varies
  between runs masked, as bisection compares failures). Both are read as anything a worker uploaded
  (``oscarvt_master.uploaded``: no links, at most ``SCAN_LIMIT`` bytes a file).

Its lines are the step's log ``triage`` and the property ``triage``; its first line is the step's
summary and the top of the mail (``oscarvt_master.reporters``). The property ``last_green`` (number
and revision) is what start-bisection starts from. Nothing of it fails a build.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any, Mapping

from buildbot.process.buildstep import BuildStep
from buildbot.process.results import SKIPPED, SUCCESS
from twisted.internet import defer, threads

from oscarvt.errors import OscarvtError, guest_line
from oscarvt.oscar_run import OSCAR_LOG, OUTPUT
from oscarvt_master.bisection import masked
from oscarvt_master.recent import PROBE_OF, recent_builds
from oscarvt_master.revisions import Commits, git_commits, svn_commits
from oscarvt_master.settings import Repository
from oscarvt_master.uploaded import read_uploaded

GREENS = 10  # green builds whose phase times make the usual spread
LOOKBACK = 200  # builds of a builder searched for green ones
SLACK = 10.0  # seconds beyond the spread (and a quarter of it) before a phase counts as slower or faster
COMPARED = (("template", "the template"), ("spec_sha256", "the spec"), ("oscarvt_version", "oscarvt's version"),
            ("workername", "the worker"))
SHOWN_COMMITS = 50  # commits listed in the log (the count says the rest)
ERROR_LINE = re.compile(r"\b(?:errors?|failed|failure|fatal|cannot|can't|no such|not found)\b", re.IGNORECASE)
SCANNED = (f"headnode{OUTPUT}", f"headnode{OSCAR_LOG}")  # then consoles/*.log, in the uploaded logs
SCAN_LIMIT = 8 << 20  # bytes of a file read for error lines


_mirror_locks: dict[str, defer.DeferredLock] = {}


async def listed_commits(repository: Repository, mirrors: str, good: str, bad: str) -> Commits:
    """The commits of ``repository`` after ``good`` up to ``bad``, listed in a thread; one listing at a time
    per git mirror (triage and bisections share them)."""
    if repository.vcs != "git":
        listed: Commits = await threads.deferToThread(svn_commits, repository.url, good, bad)
        return listed
    mirror = Path(mirrors) / repository.name
    lock = _mirror_locks.setdefault(str(mirror), defer.DeferredLock())
    await lock.acquire()
    try:
        listed = await threads.deferToThread(git_commits, repository.url, mirror, good, bad)
        return listed
    finally:
        lock.release()


async def green_builds(master: Any, builderid: int, before: int, count: int) -> list[tuple[int, dict[str, Any]]]:
    """The builder's newest ``count`` green builds numbered below ``before``, probes left out, newest first:
    (number, properties as name to value)."""
    found: list[tuple[int, dict[str, Any]]] = []
    async for build, properties in recent_builds(master, builderid, LOOKBACK,
                                                 lambda b: b["number"] < before and b["results"] == SUCCESS):
        found.append((int(build["number"]), properties))
        if len(found) == count:
            break
    return found


def changed(this: Mapping[str, Any], green: Mapping[str, Any]) -> dict[str, str]:
    """What of ``COMPARED`` differs between two builds' properties: a line for each, by property."""
    lines = {}
    for key, what in COMPARED:
        before, now = green.get(key), this.get(key)
        if before is not None and now is not None and before != now:
            lines[key] = f"{what} changed: {guest_line(str(before), 80)} -> {guest_line(str(now), 80)}"
    return lines


def slow_phases(this: Mapping[str, Any], greens: list[Mapping[str, Any]]) -> list[str]:
    """Each phase whose seconds left the spread of ``greens`` (their ``phase_seconds``), one line each."""
    now = this.get("phase_seconds")
    if not isinstance(now, dict):
        return []
    lines = []
    for phase, seconds in now.items():
        usual = [float(g["phase_seconds"][phase]) for g in greens if isinstance(g.get("phase_seconds"), dict)
                 and isinstance(g["phase_seconds"].get(phase), (int, float))]
        if not usual or not isinstance(seconds, (int, float)):
            continue
        low, high = min(usual), max(usual)
        if seconds > high * 1.25 + SLACK or seconds < low * 0.75 - SLACK:
            way = "slower" if seconds > high else "faster"
            lines.append(f"{guest_line(str(phase), 40)} {way}: {seconds:.0f} s, usually {low:.0f}-{high:.0f} s "
                         f"({len(usual)} green builds)")
    return lines


def scanned_files(folder: Path) -> list[str]:
    """The files of a build's uploaded logs that may hold error lines: OSCAR's output and log, then each
    console (``consoles/*.log``, no links)."""
    found = list(SCANNED)
    try:
        if stat.S_ISDIR((folder / "consoles").lstat().st_mode):
            with os.scandir(folder / "consoles") as entries:
                found += sorted(f"consoles/{e.name}" for e in entries if e.name.endswith(".log")
                                and e.is_file(follow_symlinks=False))
    except OSError:
        pass
    return found


def first_new_error(this: Path, green: Path) -> str | None:
    """The first error line in the uploaded logs ``this`` whose file in ``green`` had no such line (masked);
    "FILE: LINE", or None."""
    for relative in scanned_files(this):
        data = read_uploaded(this, relative, SCAN_LIMIT)
        if data is None:
            continue
        before = (read_uploaded(green, relative, SCAN_LIMIT) or b"").decode(errors="replace").splitlines()
        known = {masked(line) for line in before if ERROR_LINE.search(line)}
        for line in data.decode(errors="replace").splitlines():
            if ERROR_LINE.search(line) and masked(line) not in known:
                return f"{relative}: {guest_line(line.strip(), 300)}"
    return None


def commit_lines(commits: Commits) -> list[str]:
    """The commits as listed in the log: newest last, at most ``SHOWN_COMMITS``."""
    shown = commits.commits[-SHOWN_COMMITS:]
    lines = [f"  {c.revision} {c.author}: {c.subject}" for c in shown]
    left = len(commits.commits) - len(shown) + commits.left_out
    return ([f"  ... and {left} older"] if left else []) + lines


class Triage(BuildStep):  # type: ignore[misc]  # buildbot has no type hints
    """Compare this build with the builder's last green one (see the module); ``repository``: the builder's,
    ``mirrors``: the folder of git mirrors on the master."""

    name = "triage"

    def __init__(self, repository: Repository, mirrors: str, logs_folder: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("alwaysRun", True)
        kwargs.setdefault("doStepIf", lambda step: step.build.results != SUCCESS and not step.getProperty(PROBE_OF))
        kwargs.setdefault("hideStepIf", lambda results, step: results == SKIPPED)
        kwargs.setdefault("updateBuildSummaryPolicy", [SUCCESS])  # its first line is in the build's summary
        super().__init__(**kwargs)
        self.repository = repository
        self.mirrors = mirrors
        self.logs_folder = logs_folder

    async def run(self) -> int:
        this = {name: value for name, (value, _) in self.build.getProperties().asDict().items()}
        builderid = await self.build.builder.getBuilderId()
        greens = await green_builds(self.master, builderid, self.build.number, GREENS)
        if not greens:
            lines = ["no green build of this builder before this one to compare with"]
        else:
            lines = [line for line in await self.compare(this, greens) if line]
        self.setProperty("triage", lines, "triage")
        await self.addCompleteLog("triage", "\n".join(lines) + "\n")
        self.descriptionDone = [lines[0][:200]]
        return SUCCESS  # type: ignore[no-any-return]

    async def compare(self, this: dict[str, Any], greens: list[tuple[int, dict[str, Any]]]) -> list[str]:
        """The triage's lines: a summary, then what changed, the phases out of their spread, the commits."""
        number, green = greens[0]
        good, bad = green.get("got_revision"), this.get("got_revision")
        if isinstance(good, str) and good:
            self.setProperty("last_green", {"number": number, "revision": good}, "triage")
        summary, commits = await self.commits_since(f"since green build {number}", good, bad)
        differs = changed(this, green)
        slow = slow_phases(this, [g for _, g in greens])
        summary += [line.split(":")[0] for line in [*differs.values(), *slow]]
        same = [what for key, what in COMPARED if key not in differs]
        error = await self.new_error(number)
        return ["; ".join(summary), *differs.values(), f"unchanged: {', '.join(same)}" if same else "", *slow,
                "" if slow else "phase times within the builder's usual spread",
                f"first error line the green build did not have: {error}" if error else "", *commits]

    async def new_error(self, green: int) -> str | None:
        """``first_new_error`` between this build's uploaded logs and green build ``green``'s, if both are kept."""
        builder = str(self.getProperty("buildername"))
        if not self.logs_folder or "/" in builder or builder in (".", ".."):
            return None
        folder = Path(self.logs_folder) / builder
        found: str | None = await threads.deferToThread(first_new_error, folder / str(self.build.number),
                                                        folder / str(green))
        return found

    async def commits_since(self, head: str, good: Any, bad: Any) -> tuple[list[str], list[str]]:
        """The summary's start and the commits' lines, from the green build's revision to this one's."""
        if not (isinstance(good, str) and isinstance(bad, str) and good and bad):
            return [f"{head}: the revisions are not known"], []
        if good == bad:
            return [f"{head}: the same revision {guest_line(bad, 40)}, so not a commit"], []
        try:
            commits = await listed_commits(self.repository, self.mirrors, good, bad)
        except OscarvtError as exc:
            return [f"{head}: commits not listed ({exc.blame}: {guest_line(str(exc), 200)})"], []
        count = len(commits.commits) + commits.left_out
        return [f"{head}: {count} commit{'' if count == 1 else 's'}"], ["commits, oldest first:",
                                                                        *commit_lines(commits)]
