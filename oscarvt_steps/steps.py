"""One Buildbot step per oscarvt driver phase.

Each step runs ``oscarvt PHASE --cluster cluster ...`` on the worker, in the build directory,
and reads the driver's events (``oscarvt.events``: JSON lines in a file named by
``OSCARVT_EVENTS``, shown as the step's ``events`` log) as they come, to keep the step's
summary current ("2/4 nodes installed", "failed: oscarnode2: Kernel panic ..."). The
verdict event's blame sets the result (see ``oscarvt.errors``): a product failure is
FAILURE; bad input is EXCEPTION; infrastructure trouble is RETRY (Buildbot runs the build
again on the same builder) while the build request has had fewer than ``retries`` retries,
then EXCEPTION. A step that ends without a verdict (killed, crashed) is infrastructure.

The phase's verdict is the build property ``phase_<phase>`` (``{"result": "passed"|"failed",
"blame": ..., "message": ..., "vm": ...}``) and a failure's blame is ``blame``. A stopped
build sends the running oscarvt a SIGTERM (SIGKILL 60 s later), which cleans up as after
Ctrl-C; the log steps and ``Destroy`` are ``alwaysRun``. Each step's ``timeout`` and
``maxTime`` are the phase's limit (``oscarvt.limits``) plus a margin.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Generator

from buildbot.plugins import util
from buildbot.process import buildstep, logobserver
from buildbot.process.results import CANCELLED, EXCEPTION, FAILURE, RETRY, SKIPPED, SUCCESS, WARNINGS

from oscarvt import events
from oscarvt import phase_table as table
from oscarvt.errors import BAD_INPUT, INFRASTRUCTURE, PRODUCT
from oscarvt_steps.capped_logs import CappedLog, read_capped

CLUSTERS = "clusters"  # the builder's cluster folders, relative to the build directory, one per build
CLUSTER = util.Interpolate(f"{CLUSTERS}/%(prop:buildnumber)s")  # this build's (a kept one stays beside it)
LOGS = "logs"        # where GrabLogs puts the logs on the worker
EVENTS = ".events"   # the steps' event files, relative to the build directory
CLEANUP = {phase.name for phase in (*table.CLEANUP_PHASES, table.KEEP)}  # these never retry the build
RESULTS = {PRODUCT: FAILURE, BAD_INPUT: EXCEPTION}  # infrastructure: RETRY or EXCEPTION
PHASE_SECONDS = "phase_seconds"  # build property: each phase's seconds and the product's part of them


def phase_property(phase: str) -> str:
    """The build property that holds ``phase``'s verdict (see the module): ``phase_`` and the name, ``_`` for ``-``."""
    return f"phase_{phase.replace('-', '_')}"
def command_arguments(phase: table.Phase, options: dict[str, Any]) -> list[Any]:
    """The command line's flags and values for ``options`` of ``phase``, spelled as its table says."""
    known = {option.dest: option for option in phase.options}
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"oscarvt {phase.name} has no option {', '.join(unknown)} (it has: "
                         f"{', '.join(known) or 'none'})")
    arguments: list[Any] = []
    for dest, value in options.items():
        arguments += [known[dest].flags[0], *(value if isinstance(value, list) else [value])]
    return arguments


class OscarvtPhase(buildstep.ShellMixin, buildstep.BuildStep):  # type: ignore[misc]
    """Run one ``oscarvt`` verb against the build's cluster; subclasses follow its events."""

    phase = ""
    renderables = ["arguments", "cluster"]

    def __init__(self, options: dict[str, Any] | None = None, oscarvt: str = "oscarvt", retries: int = 0,
                 **kwargs: Any) -> None:
        """``options``: the verb's options by the phase table's names (``max_clusters`` for
        ``--max-clusters``), values renderable; an option the table does not know is an error here,
        at checkconfig, not on the worker."""
        kwargs.setdefault("name", self.phase)
        kwargs.setdefault("sigtermTime", 60)  # a stop: SIGTERM, oscarvt cleans up, SIGKILL after 60 s
        kwargs.setdefault("haltOnFailure", True)  # a failed phase ends the build (but for alwaysRun steps)
        events_file = f"{EVENTS}/{kwargs['name']}.jsonl"
        kwargs["env"] = {**kwargs.get("env", {}), events.ENV: events_file}
        kwargs["logfiles"] = {**kwargs.get("logfiles", {}), "events": events_file}
        kwargs = self.setupShellMixin(kwargs, prohibitArgs=["command"])
        super().__init__(**kwargs)
        self.arguments = command_arguments(table.PHASES[self.phase], options or {})
        self.cluster: Any = CLUSTER
        self.oscarvt = oscarvt
        self.retries = retries
        self.verdict: dict[str, Any] | None = None
        self.seconds: tuple[float, float] | None = None  # the phase's, and of those the product's
        self.last_line = ""
        self.addLogObserver("events", logobserver.LineConsumerLogObserver(self._read_events))

    def _read_events(self) -> Generator[None, tuple[str, str], None]:
        while True:
            _, line = yield
            event = events.parse(line)
            if event is None:
                continue
            if event["event"] == "verdict":
                self.verdict = event
            elif event["event"] == "phase" and isinstance(event.get("seconds"), (int, float)):
                self.seconds = (float(event["seconds"]), float(event.get("product_seconds") or 0))
            elif event["event"] == "progress":
                self.last_line = str(event.get("text", ""))
            self.on_event(event)
            self.updateSummary()

    def on_event(self, event: dict[str, Any]) -> None:
        """Take in one event (subclasses pick out what matters to them)."""

    @property
    def blame(self) -> str:
        """Who is at fault if the phase failed: the verdict's, or infrastructure without one."""
        return str((self.verdict or {}).get("blame") or INFRASTRUCTURE)

    def message(self) -> str:
        """The verdict's message (what follows ``PASS: verb:`` or ``FAIL: verb: blame:``, without the pointer to
        the logs, which the event carries as ``logs``: the build page has the logs)."""
        if self.verdict is None:
            return "oscarvt ended without a verdict (killed?)"
        return str(self.verdict.get("message", ""))

    def running_summary(self) -> str:
        return self.last_line[:80]

    def passed_summary(self) -> str:
        return self.message()[:80] or "passed"

    def getCurrentSummary(self) -> dict[str, str]:
        return {"step": self.running_summary() or f"{self.phase} ..."}

    def getResultSummary(self) -> dict[str, str]:
        if self.results == SUCCESS:
            return {"step": self.passed_summary()}
        if self.results == CANCELLED:
            return {"step": "cancelled"}
        if self.results == SKIPPED:
            return {"step": "skipped"}
        summary = f"failed: {self.message() or 'see stdio'}"[:120]
        retry = " (the build is retried)" if self.results == RETRY else ""
        return {"step": summary, "build": f"{self.blame}: {self.phase} {summary}{retry}"[:160]}

    async def run(self) -> int:
        command = [self.oscarvt, self.phase, "--cluster", self.cluster, *self.arguments]
        cmd = await self.makeRemoteShellCommand(command=command)
        capped = [CappedLog(cmd.logs[name]) for name in ("stdio", "events")]  # OSCAR's output comes from a guest
        cmd.logs.update((log.getName(), log) for log in capped)
        try:
            await self.runCommand(cmd)
        finally:
            for log in capped:
                await log.write_tail()  # the verdict is the events' last line
        if self.seconds is not None:
            times = dict(self.getProperty(PHASE_SECONDS) or {})
            times[self.phase] = {"seconds": self.seconds[0], "product_seconds": self.seconds[1]}
            self.setProperty(PHASE_SECONDS, times, "oscarvt")
        if self.stopped:
            return CANCELLED  # type: ignore[no-any-return]
        ok = not cmd.didFail() and self.verdict is not None and self.verdict.get("ok") is True
        result = SUCCESS if ok else await self.failure_result()
        self.setProperty(phase_property(self.phase),
                         {"result": "passed" if ok else "failed", "blame": None if ok else self.blame,
                          "message": self.message(), "vm": None if ok else (self.verdict or {}).get("vm")},
                         "oscarvt")
        if not ok and self.after_product_failure():
            self.setProperty("harness_trouble", f"{self.phase}: {self.message()}", "oscarvt")
        elif not ok:
            self.setProperty("blame", self.blame, "oscarvt")
        return result

    def after_product_failure(self) -> bool:
        """A clean-up step in a build that OSCAR already failed: that failure stays the verdict."""
        return self.phase in CLEANUP and self.build.results == FAILURE

    async def failure_result(self) -> int:
        """FAILURE for the product, EXCEPTION for bad input, RETRY for infrastructure while retries last.

        A clean-up step never retries the build: bad input there (no cluster was made) is a
        warning, infrastructure trouble (a VM left running) an EXCEPTION for the admins; but
        after OSCAR's own failure it is a warning, so that the build stays a FAILURE for the
        developers, and the ``harness_trouble`` property sends the admins their mail too.
        """
        if self.phase in CLEANUP:
            return WARNINGS if self.blame == BAD_INPUT or self.after_product_failure() else EXCEPTION  # type: ignore[no-any-return]
        if self.blame in RESULTS:
            return RESULTS[self.blame]  # type: ignore[no-any-return]
        return RETRY if await self.retries_so_far() < self.retries else EXCEPTION  # type: ignore[no-any-return]

    async def retries_so_far(self) -> int:
        """How many times Buildbot already ran this build's request again (earlier builds of it)."""
        counts = []
        for request in self.build.requests:
            builds = await self.master.data.get(("buildrequests", request.id, "builds"))
            counts.append(sum(1 for b in builds if b["buildid"] != self.build.buildid))
        return max(counts, default=0)


class Claim(OscarvtPhase):
    """Wait for room on the worker for this build's cluster (kept clusters count); clear the builder's leftovers."""

    phase = table.CLAIM.name


class CopyVmImage(OscarvtPhase):
    """Create the cluster from the spec: profiles, the template's overlay, blank node disks; the template and
    oscarvt's version become the build's properties ``template`` and ``oscarvt_version`` (for triage)."""

    phase = table.COPY_VM_IMAGE.name

    def on_event(self, event: dict[str, Any]) -> None:
        if event["event"] == "cluster":
            for key, name in (("template", "template"), ("oscarvt", "oscarvt_version")):
                if isinstance(event.get(key), str):
                    self.setProperty(name, event[key][:100], "oscarvt")


class BootHeadnode(OscarvtPhase):
    """Boot the headnode and wait for SSH; the summary says KVM or TCG, when and by which run that was decided."""

    phase = table.BOOT_HEADNODE.name

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.accelerator = ""  # e.g. "TCG, decided 10:04:11 by an earlier run (waited 6.1s for it)"

    def on_event(self, event: dict[str, Any]) -> None:
        if event["event"] == "accel":
            name = str(event.get("name", "")).upper()
            self.setProperty("accelerator", name, "oscarvt")
            self.accelerator = name + self.decided(event)

    @staticmethod
    def decided(event: dict[str, Any]) -> str:
        """When and by which run an ``accel`` event's choice was made, in words ('' from an older driver)."""
        at, by, waited = event.get("decided_at"), event.get("decided_by"), event.get("waited")
        if not isinstance(at, (int, float)) or not 0 < at < 1e11:  # 1e11: localtime's range
            return ""
        words = f", decided {time.strftime('%H:%M:%S', time.localtime(at))} by {str(by or 'this run')[:40]}"
        if isinstance(waited, (int, float)) and waited > 0:
            words += f" (waited {waited:.1f}s for it)"
        return words

    def passed_summary(self) -> str:
        passed = super().passed_summary()
        return f"{passed}; {self.accelerator}" if self.accelerator else passed


class CheckoutOscar(OscarvtPhase):
    """Push the checked-out revision (or clone a URL) into the headnode."""

    phase = table.CHECKOUT_OSCAR.name


class StartOscar(OscarvtPhase):
    """Start OSCAR's install_cluster; the summary follows its steps up to the boot hook."""

    phase = table.START_OSCAR.name

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.oscar_step = ""

    def on_event(self, event: dict[str, Any]) -> None:
        if event["event"] == "oscar_step":
            self.oscar_step = str(event.get("step", ""))

    def running_summary(self) -> str:
        return f"OSCAR {self.oscar_step}" if self.oscar_step else "starting OSCAR"

    def passed_summary(self) -> str:
        return "OSCAR waits for the nodes"


class BootComputeNodes(OscarvtPhase):
    """Boot the compute nodes from OSCAR's boot CD or the network."""

    phase = table.BOOT_COMPUTE_NODES.name


class WaitForNodes(OscarvtPhase):
    """Follow the nodes' imaging: "2/4 nodes installed"; fails naming the node."""

    phase = table.WAIT_FOR_NODES.name
    renderables = ["arguments", "cluster", "nodes"]

    def __init__(self, nodes: Any = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.nodes = nodes
        self.installed: set[str] = set()
        self.booted: set[str] = set()

    def on_event(self, event: dict[str, Any]) -> None:
        if event["event"] == "node" and event.get("state") in ("installed", "booted"):
            (self.installed if event["state"] == "installed" else self.booted).add(str(event.get("vm")))
            self.setProperty("nodes_installed", len(self.installed), "oscarvt")

    def running_summary(self) -> str:
        total = int(self.nodes or 0) or "?"
        return f"{len(self.installed)}/{total} nodes installed, {len(self.booted)} booted"

    def passed_summary(self) -> str:
        return f"{len(self.booted)} nodes installed and booted"


class FinishOscar(OscarvtPhase):
    """Let OSCAR finish; the summary counts its cluster tests, and each test that passed or failed is a
    test result of the build (Buildbot's test result set "OSCAR cluster tests", pass/fail), named
    ``CLASS NAME`` from OSCAR's JUnit report, with its duration when the report gives one."""

    phase = table.FINISH_OSCAR.name
    TEST_SET = ("OSCAR cluster tests", "pass_fail", "boolean")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tests = {"PASSED": 0, "FAILED": 0, "SKIPPED": 0}
        self.test_set: int | None = None

    async def addTestResultSets(self) -> None:  # noqa: N802 (Buildbot's name)
        self.test_set = await self.addTestResultSet(*self.TEST_SET)

    def on_event(self, event: dict[str, Any]) -> None:
        result = str(event.get("result", "")).upper()
        if event["event"] != "test" or result not in self.tests:
            return
        self.tests[result] += 1
        if result != "SKIPPED" and self.test_set is not None:  # pass/fail has no value for a skipped test
            name = f"{event.get('class', '')} {event.get('name', '')}".strip()[:200]
            self.addTestResult(self.test_set, "1" if result == "PASSED" else "0", test_name=name,
                               duration_ns=duration_ns(event.get("seconds")))

    def passed_summary(self) -> str:
        return f"OSCAR finished; tests {self.tests['PASSED']}/{sum(self.tests.values())} passed"

    async def run(self) -> int:
        result = await super().run()
        self.setProperty("cluster_tests", dict(self.tests), "oscarvt")
        return result


DURATION_NS_MAX = 2**31 - 1  # Buildbot 4.3 stores duration_ns as a 32-bit integer on PostgreSQL (int4)


def duration_ns(seconds: Any) -> int | None:
    """A JUnit ``time`` (text from the guest) in nanoseconds, if it is a duration Buildbot can store in
    every database: 0 to 2.147 s (a longer one would make PostgreSQL refuse the whole batch of results)."""
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        return None
    return int(value * 1e9) if 0 <= value * 1e9 <= DURATION_NS_MAX else None


class GrabLogs(OscarvtPhase):
    """Collect every log into ``logs/`` and ``logs.tar.gz`` on the worker (always runs)."""

    phase = table.GRAB_LOGS.name

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("alwaysRun", True)
        kwargs.setdefault("options", {"dest": LOGS})
        super().__init__(**kwargs)


class Destroy(OscarvtPhase):
    """Stop every VM and remove the disks (always runs, also after a stop); then say the harness's share of
    the build: its time not spent waiting on OSCAR and its nodes, oscarvt's own and Buildbot's (property
    ``harness_share``, and the build's summary)."""

    phase = table.DESTROY.name

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("alwaysRun", True)
        super().__init__(**kwargs)
        self.share = ""

    async def run(self) -> int:
        result = await super().run()
        build = await self.master.data.get(("builds", self.build.buildid))
        started = build["started_at"].timestamp() if build and build.get("started_at") else None
        if started is not None:
            self.share = self.harness_share(time.time() - started)
        return result

    def harness_share(self, wall: float) -> str:
        """The build's time (``wall`` seconds so far) by who spent it, as a property and in words."""
        times = (self.getProperty(PHASE_SECONDS) or {}).values()
        phases = sum(float(t["seconds"]) for t in times)
        product = sum(float(t["product_seconds"]) for t in times)
        buildbot = max(0.0, wall - phases)
        harness = max(0.0, wall - product)
        share = harness / wall if wall else 0.0
        self.setProperty("harness_share", {"seconds": round(wall, 1), "product_seconds": round(product, 1),
                                           "oscarvt_seconds": round(phases - product, 1),
                                           "buildbot_seconds": round(buildbot, 1), "harness_share": round(share, 3)},
                         "oscarvt")
        return (f"harness {harness:.0f}s of {wall:.0f}s: {100 * share:.0f}%; oscarvt {phases - product:.0f}s, "
                f"Buildbot {buildbot:.0f}s")

    def getResultSummary(self) -> dict[str, str]:
        summary = super().getResultSummary()
        if self.share:  # Buildbot puts it after "build successful", or after the failed steps' summaries
            summary["build"] = f"{summary['build']} ({self.share})" if "build" in summary else f"({self.share})"
        return summary


class Keep(OscarvtPhase):
    """Mark a failed build's cluster as kept for a person (the worker's reap leaves it running)."""

    phase = table.KEEP.name

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("alwaysRun", True)
        super().__init__(**kwargs)


class AttachLogs(buildstep.BuildStep):  # type: ignore[misc]
    """On the master: OSCAR's log, the monitor log, each VM's console and the console of the
    node a failed phase names ("failing console", for the mail) as step logs, each capped
    (``capped_logs``: head and tail) and never read through a link.

    Reads the folder the upload step put on the master (``masterdest``, renderable).
    """

    name = "attach-logs"
    renderables = ["masterdest"]
    FILES = {"oscarinstall.log": "headnode/var/log/oscar/oscarinstall.log",
             "si_monitor.log": "headnode/var/log/systemimager/si_monitor.log",
             "summary.txt": "summary.txt"}

    def __init__(self, masterdest: Any, **kwargs: Any) -> None:
        kwargs.setdefault("alwaysRun", True)
        super().__init__(**kwargs)
        self.masterdest = masterdest

    async def run(self) -> int:
        folder = Path(self.masterdest)
        attached = 0
        wanted = dict(self.FILES)
        wanted.update({f"console {p.stem}": f"consoles/{p.name}" for p in sorted(folder.glob("consoles/*.log"))})
        failing = self.failing_node(sorted(p.stem for p in folder.glob("consoles/*.log")))
        if failing:
            wanted["failing console"] = f"consoles/{failing}.log"
        for name, relative in wanted.items():
            path = folder / relative
            if path.is_file() and not path.is_symlink():
                await self.addCompleteLog(name, read_capped(path))
                attached += 1
        self.descriptionDone = [f"{attached} logs attached" + (f", {failing} failed" if failing else "")]
        return SUCCESS  # type: ignore[no-any-return]

    def failing_node(self, vms: list[str]) -> str | None:
        """The VM a failed phase's verdict is about (its ``phase_*`` property's ``vm``), if one."""
        for name, (value, _) in self.build.getProperties().asDict().items():
            if name.startswith("phase_") and isinstance(value, dict) and value.get("result") == "failed":
                if value.get("vm") in vms:
                    return str(value["vm"])
        return None
