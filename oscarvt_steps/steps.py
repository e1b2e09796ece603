"""One Buildbot step per oscarvt driver phase.

Each step runs ``oscarvt PHASE --cluster cluster ...`` on the worker, in the build directory,
reads its progress lines as they come to keep the step's summary current ("2/4 nodes
installed", "failed: oscarnode2: Kernel panic ..."), and records the phase's verdict as the
build property ``phase_<phase>`` (``{"result": "passed"|"failed", "message": ...}``). A stopped
build sends the running oscarvt a SIGTERM (SIGKILL 60 s later), which cleans up as after Ctrl-C; the log steps and
``Destroy`` are ``alwaysRun``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Generator

from buildbot.process import buildstep, logobserver
from buildbot.process.results import FAILURE, SUCCESS

CLUSTER = "cluster"  # the cluster folder, relative to the build directory
LOGS = "logs"        # where GrabLogs puts the logs on the worker
_STAMP = re.compile(r"^\[\s*[0-9.]+s\] ")
_POINTER = re.compile(r" \((see|logs:) [^)]*\)$")
_NODE_STATE = re.compile(r"^(\S+): (installed|booted from its disk)$")


class OscarvtPhase(buildstep.ShellMixin, buildstep.BuildStep):
    """Run one ``oscarvt`` verb against the build's cluster; subclasses follow its progress."""

    phase = ""
    renderables = ["extra_args"]

    def __init__(self, extra_args: list[Any] | None = None, oscarvt: str = "oscarvt", **kwargs: Any) -> None:
        kwargs.setdefault("name", self.phase)
        kwargs.setdefault("sigtermTime", 60)  # a stop: SIGTERM, oscarvt cleans up, SIGKILL after 60 s
        kwargs.setdefault("haltOnFailure", True)  # a failed phase ends the build (but for alwaysRun steps)
        kwargs = self.setupShellMixin(kwargs, prohibitArgs=["command"])
        super().__init__(**kwargs)
        self.extra_args = list(extra_args or [])
        self.oscarvt = oscarvt
        self.verdict: str | None = None
        self.last_line = ""
        self.addLogObserver("stdio", logobserver.LineConsumerLogObserver(self._read_lines))

    def _read_lines(self) -> Generator[None, tuple[str, str], None]:
        while True:
            stream, line = yield
            if stream not in ("o", "e"):
                continue
            text = _STAMP.sub("", line.rstrip())
            if text.startswith(("PASS: ", "FAIL: ")):
                self.verdict = text
            else:
                self.on_line(text)
            self.updateSummary()

    def on_line(self, text: str) -> None:
        """Take in one progress line (subclasses pick out what matters)."""
        self.last_line = text

    def message(self) -> str:
        """The verdict's message, without ``PASS: verb:``."""
        if self.verdict is None:
            return ""
        return self.verdict.split(": ", 2)[-1] if self.verdict.count(": ") >= 2 else self.verdict[6:]

    def short_message(self) -> str:
        """The message without its pointer to the logs (the build page has them)."""
        return _POINTER.sub("", self.message())

    def running_summary(self) -> str:
        return self.last_line[:80]

    def passed_summary(self) -> str:
        return self.short_message()[:80] or "passed"

    def getCurrentSummary(self) -> dict[str, str]:
        return {"step": self.running_summary() or f"{self.phase} ..."}

    def getResultSummary(self) -> dict[str, str]:
        if self.results == SUCCESS:
            return {"step": self.passed_summary()}
        summary = f"failed: {self.short_message() or 'see stdio'}"[:120]
        return {"step": summary, "build": f"{self.phase} {summary}"[:120]}

    async def run(self) -> int:
        command = [self.oscarvt, self.phase, "--cluster", CLUSTER, *self.extra_args]
        cmd = await self.makeRemoteShellCommand(command=command)
        await self.runCommand(cmd)
        result = FAILURE if cmd.didFail() else SUCCESS
        self.setProperty(f"phase_{self.phase.replace('-', '_')}",
                         {"result": "passed" if result == SUCCESS else "failed", "message": self.message()},
                         "oscarvt")
        return result


class CopyVmImage(OscarvtPhase):
    """Create the cluster from the spec: profiles, the template's overlay, blank node disks."""

    phase = "copy-vm-image"


class BootHeadnode(OscarvtPhase):
    """Boot the headnode and wait for SSH; the summary says KVM or TCG."""

    phase = "boot-headnode"

    def on_line(self, text: str) -> None:
        super().on_line(text)
        if text.startswith("accelerator: "):
            self.setProperty("accelerator", text.split()[1], "oscarvt")


class CheckoutOscar(OscarvtPhase):
    """Push the checked-out revision (or clone a URL) into the headnode."""

    phase = "checkout-oscar"


class StartOscar(OscarvtPhase):
    """Start OSCAR's install_cluster; the summary follows its steps up to the boot hook."""

    phase = "start-oscar"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.oscar_step = ""

    def on_line(self, text: str) -> None:
        super().on_line(text)
        found = re.search(r"(Step \d+ - .*)$", text) if text.startswith("oscar| ") else None
        if found and "Skipping" not in text:
            self.oscar_step = found.group(1)

    def running_summary(self) -> str:
        return f"OSCAR {self.oscar_step}" if self.oscar_step else "starting OSCAR"

    def passed_summary(self) -> str:
        return "OSCAR waits for the nodes"


class BootComputeNodes(OscarvtPhase):
    """Boot the compute nodes from OSCAR's boot CD or the network."""

    phase = "boot-compute-nodes"


class WaitForNodes(OscarvtPhase):
    """Follow the nodes' imaging: "2/4 nodes installed"; fails naming the node."""

    phase = "wait-for-nodes"
    renderables = ["extra_args", "nodes"]

    def __init__(self, nodes: Any = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.nodes = nodes
        self.installed: set[str] = set()
        self.booted: set[str] = set()

    def on_line(self, text: str) -> None:
        super().on_line(text)
        found = _NODE_STATE.match(text)
        if found:
            (self.installed if found.group(2) == "installed" else self.booted).add(found.group(1))
            self.setProperty("nodes_installed", len(self.installed), "oscarvt")

    def running_summary(self) -> str:
        total = int(self.nodes or 0) or "?"
        return f"{len(self.installed)}/{total} nodes installed, {len(self.booted)} booted"

    def passed_summary(self) -> str:
        return f"{len(self.booted)} nodes installed and booted"


class FinishOscar(OscarvtPhase):
    """Let OSCAR finish; the summary counts its cluster tests."""

    phase = "finish-oscar"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tests = {"PASSED": 0, "FAILED": 0, "SKIPPED": 0}

    def on_line(self, text: str) -> None:
        super().on_line(text)
        found = re.match(r"test (PASSED|FAILED|SKIPPED): ", text)
        if found:
            self.tests[found.group(1)] += 1

    def passed_summary(self) -> str:
        return f"OSCAR finished; tests {self.tests['PASSED']}/{sum(self.tests.values())} passed"

    async def run(self) -> int:
        result = await super().run()
        self.setProperty("cluster_tests", dict(self.tests), "oscarvt")
        return result


class GrabLogs(OscarvtPhase):
    """Collect every log into ``logs/`` and ``logs.tar.gz`` on the worker (always runs)."""

    phase = "grab-logs"

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("alwaysRun", True)
        kwargs.setdefault("extra_args", ["--dest", LOGS])
        super().__init__(**kwargs)


class Destroy(OscarvtPhase):
    """Stop every VM and remove the disks (always runs, also after a stop)."""

    phase = "destroy"

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("alwaysRun", True)
        super().__init__(**kwargs)


class AttachLogs(buildstep.BuildStep):
    """On the master: OSCAR's log, the monitor log, each VM's console and the console of the
    node a failed phase names ("failing console", for the mail) as step logs.

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
            if path.is_file():
                await self.addCompleteLog(name, path.read_text(errors="replace"))
                attached += 1
        self.descriptionDone = [f"{attached} logs attached" + (f", {failing} failed" if failing else "")]
        return SUCCESS

    def failing_node(self, vms: list[str]) -> str | None:
        """The VM that a failed phase's message names first (from the ``phase_*`` properties)."""
        messages = [value["message"] for name, (value, _) in self.build.getProperties().asDict().items()
                    if name.startswith("phase_") and isinstance(value, dict) and value.get("result") == "failed"]
        for message in messages:
            named = [vm for vm in vms if re.search(rf"\b{re.escape(vm)}\b", message)]
            if named:
                return min(named, key=message.index)
        return None
