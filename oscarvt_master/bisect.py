"""Bisection: the first bad commit, found by probe builds, when a builder goes from green to red.

``StartBisection``, the last step of every build, acts on a red build that is the product's fault
and not itself a probe: it takes the builder's last green build (probes left out) that triage
(``oscarvt_master.triage``) found just before and, if that built an older revision, starts a build
of the ``bisect`` builder with both revisions and the red build's failure (its first failed phase and
message).

The ``bisect`` builder runs on a worker inside the master (``BISECT_WORKER``, a Buildbot
``LocalWorker``: it needs no host of its own and takes no cluster). Its one step, ``Bisect``, lists
the commits in between (``oscarvt_master.revisions``: a mirror of the git repository in the
master's ``MIRRORS`` folder, or ``svn log``) and builds, one at a time, the revisions the search
(``oscarvt_master.bisection``) names, as builds of the red build's builder with its node count and
boot method, through that builder's probe scheduler (``probe-BUILDER``) at ``PROBE_PRIORITY``:
commit and nightly builds go first. A probe's verdict is read from its properties (``blame`` and
the ``phase_*`` records): infrastructure trouble is asked for again, a failure other than the red
build's is set aside. The result, "first bad commit: REV by AUTHOR: SUBJECT (N probes, M minutes)",
is the bisect build's summary and property ``bisection``, the red build's property ``bisection``
and a link from its start-bisection step, and a mail (``oscarvt_master.reporters``) to the
developers and to the commit's author where git knows an address.

The force form ``bisect-force`` starts one by hand: a builder and two revisions, the older one taken as
green. Without a red build to compare with, the newer revision is built first to learn how it
fails; if it passes, there is nothing to look for.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

from buildbot.plugins import schedulers, util
from buildbot.process.buildstep import BuildStep
from buildbot.process.factory import BuildFactory
from buildbot.process.properties import Properties
from buildbot.process.results import CANCELLED, EXCEPTION, FAILURE, RETRY, SKIPPED, SUCCESS
from buildbot.reporters.utils import getURLForBuild

from oscarvt.errors import INFRASTRUCTURE, PRODUCT, OscarvtError, guest_line
from oscarvt.phase_table import PHASES
from oscarvt_master.bisection import MAX_RETRIES, Bisection, Failure, Outcome, Probe, Result, judge
from oscarvt_master.recent import PROBE_OF
from oscarvt_master.revisions import Commit
from oscarvt_master.settings import BISECT, BISECT_WORKER, Repository, Settings
from oscarvt_master.triage import listed_commits
from oscarvt_steps.steps import phase_property

BISECT_FORM = "bisect-force"  # the bisect builder's force form (BISECT: the builder and its triggerable scheduler)
PROBE_PRIORITY = -10  # below commit and nightly builds (0)
MIRRORS = "bisect-mirrors"  # git mirrors, in the master's folder
NOT_BUILT = (EXCEPTION, RETRY, CANCELLED)  # a probe with these and no product blame could not be judged


def probe_scheduler(builder: str) -> str:
    """The name of the scheduler that starts ``builder``'s probe builds."""
    return f"probe-{builder}"


def first_failure(properties: Mapping[str, Any]) -> tuple[str | None, Failure | None]:
    """A build's blame and its first failed phase (in the phase table's order) with its message, from its
    properties (name to value); (None, None) for a build whose phases all passed."""
    for name in PHASES:
        record = properties.get(phase_property(name))
        if isinstance(record, dict) and record.get("result") == "failed":
            blame = record.get("blame")
            return (str(blame) if blame else None), Failure(name, str(record.get("message") or ""))
    blame = properties.get("blame")
    return (str(blame) if blame else None), None


def bisect_schedulers(settings: Settings) -> list[Any]:
    """The bisect builder's triggerable scheduler and force form, and each builder's probe scheduler."""
    names = [b.name for b in settings.builders]
    found: list[Any] = [schedulers.Triggerable(name=BISECT, builderNames=[BISECT])]
    found += [schedulers.Triggerable(name=probe_scheduler(name), builderNames=[name], priority=PROBE_PRIORITY)
              for name in names]
    if names:
        found.append(schedulers.ForceScheduler(
            name=BISECT_FORM, builderNames=[BISECT], buttonName="Bisect", label="Bisect between two revisions",
            codebases=[util.CodebaseParameter("", hide=True)],
            properties=[util.ChoiceStringParameter(name="bisect_builder", label="Builder", choices=names,
                                                   default=names[0]),
                        util.StringParameter(name="good", label="Green revision (older)", required=True, size=45),
                        util.StringParameter(name="bad", label="Red revision (newer)", required=True, size=45)]))
    return found


def bisect_builder(settings: Settings, basedir: Path) -> util.BuilderConfig:
    """The bisect builder, on the master's own worker."""
    repos = {r.name: r for r in settings.repositories}
    factory = BuildFactory()
    factory.addStep(Bisect(repositories={b.name: repos[b.repository] for b in settings.builders},
                           mirrors=str(basedir / MIRRORS)))
    return util.BuilderConfig(name=BISECT, workernames=[BISECT_WORKER], factory=factory, tags=[BISECT])


def wants_bisection(step: Any) -> bool:
    """Whether the build is red by the product's fault and not a probe: StartBisection's condition."""
    return (step.build.results == FAILURE and step.getProperty("blame") == PRODUCT
            and not step.getProperty(PROBE_OF))


class StartBisection(BuildStep):  # type: ignore[misc]  # buildbot has no type hints
    """Start a bisect build from the builder's last green build to this red one (see the module)."""

    name = "start-bisection"

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("alwaysRun", True)
        kwargs.setdefault("doStepIf", wants_bisection)
        kwargs.setdefault("hideStepIf", lambda results, step: results == SKIPPED)
        super().__init__(**kwargs)

    async def run(self) -> int:
        bad = self.getProperty("got_revision")
        _, failure = first_failure({name: value for name, (value, _) in self.build.getProperties().asDict().items()})
        if not isinstance(bad, str) or not bad or failure is None:
            self.descriptionDone = ["nothing to bisect: the build has no revision or no failed phase"]
            return SKIPPED  # type: ignore[no-any-return]  # buildbot has no type hints
        green = self.getProperty("last_green")  # triage's, just before
        if not isinstance(green, dict) or not green.get("revision"):
            self.descriptionDone = ["nothing to bisect: the builder has no green build before this one"]
            return SUCCESS  # type: ignore[no-any-return]
        good, number = str(green["revision"]), int(green["number"])
        if good == bad:
            self.descriptionDone = [f"not a commit: build {number} passed on this revision (the template, spec, "
                                    "oscarvt or the host changed)"]
            return SUCCESS  # type: ignore[no-any-return]
        props = Properties()
        values = {"bisect_builder": self.getProperty("buildername"), "good": good, "bad": bad,
                  "red_build": self.build.buildid, "red_number": self.build.number, "red_step": self.stepid,
                  "red_phase": failure.phase, "red_message": failure.message,
                  "nodes": self.getProperty("nodes"), "boot": self.getProperty("boot"),
                  "reason": f"bisect {self.getProperty('buildername')} build {self.build.number}"}
        for key, value in values.items():
            props.setProperty(key, value, "start-bisection")
        scheduler = self.master.scheduler_manager.namedServices[BISECT]
        ids, _ = scheduler.trigger(waited_for=False, sourcestamps=[], set_props=props,
                                   parent_buildid=self.build.buildid, parent_relationship="bisection")
        await ids
        self.descriptionDone = [f"bisecting from build {number} ({good[:12]}) to this one ({bad[:12]})"]
        return SUCCESS  # type: ignore[no-any-return]


class Bisect(BuildStep):  # type: ignore[misc]  # buildbot has no type hints
    """Find the first bad commit between the properties ``good`` and ``bad`` of ``bisect_builder`` by probe
    builds (see the module); ``repositories``: each builder's repository; ``mirrors``: the git mirrors' folder."""

    name = "bisect"

    def __init__(self, repositories: Mapping[str, Repository], mirrors: str, **kwargs: Any) -> None:
        kwargs.setdefault("updateBuildSummaryPolicy", True)  # the result is the bisect build's summary too
        super().__init__(**kwargs)
        self.repositories = dict(repositories)
        self.mirrors = mirrors
        self.lines: list[str] = []

    async def run(self) -> int:
        builder = str(self.getProperty("bisect_builder"))
        repository = self.repositories.get(builder)
        good, bad = str(self.getProperty("good") or "").strip(), str(self.getProperty("bad") or "").strip()
        if repository is None or not good or not bad:
            self.descriptionDone = [f"no builder {guest_line(builder, 80)} or no revisions to bisect between"]
            return FAILURE  # type: ignore[no-any-return]
        started = time.monotonic()
        try:
            commits = await listed_commits(repository, self.mirrors, good, bad)
        except OscarvtError as exc:
            self.descriptionDone = [f"{exc.blame}: {exc}"[:300]]
            return EXCEPTION if exc.blame == INFRASTRUCTURE else FAILURE  # type: ignore[no-any-return]
        await self.say(f"{len(commits.commits)} commits of {builder} after {commits.base}"
                       + (f"; {commits.note()}" if commits.note() else ""))
        by_revision = {c.revision: c for c in commits.commits}
        for commit in commits.commits:
            await self.say(f"  {commit.revision} {commit.author}: {commit.subject}")
        if not commits.commits:
            self.descriptionDone = ["no commit between the two revisions"]
            return SUCCESS  # type: ignore[no-any-return]
        red = await self.red_failure(builder, repository, commits.commits[-1].revision)
        if red is None:
            return SUCCESS  # type: ignore[no-any-return]
        if len(commits.commits) == 1 and self.getProperty("red_phase"):
            only = commits.commits[0].revision
            figures = "the only commit since the green build; 0 probes"
            await self.report(f"first bad commit: {self.named(by_revision, only)} ({figures})", figures, only,
                              by_revision, repository)
            return SUCCESS  # type: ignore[no-any-return]
        search = Bisection(commits.base, list(by_revision))
        while (revision := search.next_probe()) is not None:
            probe = await self.probe(builder, repository, revision, red)
            search.record(revision, probe)
            await self.say(f"probe {search.builds}: {self.named(by_revision, revision)}: {probe.outcome.value}"
                           + (f" ({probe.failure.phase}: {probe.failure.message})" if probe.failure else ""))
        result = search.result
        assert result is not None  # the search is over
        minutes = (time.monotonic() - started) / 60
        figures = f"{result.probes} probe{'' if result.probes == 1 else 's'}, {minutes:.0f} minutes"
        await self.report(self.result_text(result, by_revision, figures), figures,
                          result.revision if result.verdict == "first bad commit" else None, by_revision, repository)
        return SUCCESS if result.verdict != "undecided" else FAILURE  # type: ignore[no-any-return]

    async def red_failure(self, builder: str, repository: Repository, bad: str) -> Failure | None:
        """How the red build failed: from the properties the red build gave, or (forced) by building ``bad``."""
        phase, message = self.getProperty("red_phase"), self.getProperty("red_message")
        if phase:
            return Failure(str(phase), str(message or ""))
        await self.say(f"no red build to compare with: building {bad} to learn how it fails")
        for _ in range(MAX_RETRIES):
            probe = await self.probe(builder, repository, bad, None)
            if probe.outcome is not Outcome.INFRASTRUCTURE:
                break
        if probe.outcome is not Outcome.BAD or probe.failure is None:
            self.descriptionDone = [f"nothing to bisect: {bad} did not fail by the product's fault "
                                    f"({probe.outcome.value})"]
            return None
        return probe.failure

    async def probe(self, builder: str, repository: Repository, revision: str, red: Failure | None) -> Probe:
        """Build ``revision`` of ``builder`` as a probe and judge how it went (against ``red``, if given)."""
        props = Properties()
        for key, value in {PROBE_OF: self.getProperty("red_number") or self.build.number,
                           "nodes": self.getProperty("nodes"), "boot": self.getProperty("boot"),
                           "reason": f"bisect probe of {revision}"}.items():
            if value is not None:
                props.setProperty(key, value, "bisect")
        source = {"codebase": "", "repository": repository.url, "project": "", "revision": revision,
                  "branch": repository.branch if repository.vcs == "git" else None}
        scheduler = self.master.scheduler_manager.namedServices[probe_scheduler(builder)]
        ids, results = scheduler.trigger(waited_for=True, sourcestamps=[source], set_props=props,
                                         parent_buildid=self.build.buildid, parent_relationship="bisect probe")
        _, brids = await ids
        outcome, _ = await results
        properties: dict[str, Any] = {}
        for brid in brids.values():
            builds = await self.master.db.builds.getBuilds(buildrequestid=brid)
            if builds:
                stored = await self.master.db.builds.getBuildProperties(builds[-1].id)
                properties = {name: value for name, (value, _) in stored.items()}
        blame, failure = first_failure(properties)
        if outcome == SUCCESS:
            failure = None
        elif failure is None or (outcome in NOT_BUILT and blame != PRODUCT):
            blame, failure = INFRASTRUCTURE, failure or Failure("build", f"ended {outcome}")
        if red is not None:
            return judge(red, blame, failure)
        if failure is None:  # building the red revision to learn how it fails (a forced bisection)
            return Probe(Outcome.GOOD)
        return Probe(Outcome.INFRASTRUCTURE if blame == INFRASTRUCTURE else
                     Outcome.BAD if blame == PRODUCT else Outcome.OTHER, failure)

    async def say(self, line: str) -> None:
        """Add ``line`` to the step's log ``bisection`` and show it as the step's summary while it runs."""
        self.lines.append(guest_line(line, 500))
        self.descriptionDone = [self.lines[-1][:200]]
        self.updateSummary()

    @staticmethod
    def named(by_revision: Mapping[str, Commit], revision: str) -> str:
        commit = by_revision.get(revision)
        return f"{revision} by {commit.author}: {commit.subject}" if commit else revision

    def result_text(self, result: Result, by_revision: Mapping[str, Commit], figures: str) -> str:
        if result.verdict == "first bad commit" and result.revision:
            return f"first bad commit: {self.named(by_revision, result.revision)} ({figures})"
        return f"{result.verdict}: {result.why} ({figures})"

    async def report(self, text: str, figures: str, first_bad: str | None, by_revision: Mapping[str, Commit],
                     repository: Repository) -> None:
        """The result on this build, on the red build, in the properties the bisection mail reads and, for a
        repository on GitHub, in ``first_bad`` (the commit, its repository, a description) for its status."""
        self.lines.append(text)
        await self.addCompleteLog("bisection", "\n".join(self.lines) + "\n")
        self.descriptionDone = [text[:300]]
        self.setProperty("bisection", text, BISECT)
        red_number = self.getProperty("red_number")
        self.setProperty("bisection_mail", "\n".join([
            text, "", f"Builder {self.getProperty('bisect_builder')}, from {self.getProperty('good')} (green) to "
            f"{self.getProperty('bad')} (red{f', build {red_number}' if red_number else ''}).", "", *self.lines[:-1]]),
            BISECT)
        if first_bad and repository.github is not None:
            self.setProperty("first_bad", {"revision": first_bad, "github": repository.github,
                                           "description": f"first bad commit for {self.getProperty('bisect_builder')}"
                                                          f" ({figures})"}, BISECT)
        commit = by_revision.get(first_bad or "")
        if commit is not None and commit.email:
            self.setProperty("owners", [commit.email], BISECT)  # the mail's interested user: the author
        red_build, red_step = self.getProperty("red_build"), self.getProperty("red_step")
        if red_build:
            await self.master.data.updates.setBuildProperty(red_build, "bisection", text, BISECT)
        if red_step:
            builderid = await self.build.builder.getBuilderId()
            await self.master.data.updates.addStepURL(red_step, text[:200], getURLForBuild(
                self.master, builderid, self.build.number))
