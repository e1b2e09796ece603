"""The Buildbot steps with Buildbot's own step test helpers: each step's command, events log,
summaries, properties, and the result its verdict's blame gives (FAILURE, EXCEPTION, RETRY)."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from buildbot.process.results import EXCEPTION, FAILURE, RETRY, SKIPPED, SUCCESS, WARNINGS
from buildbot.test.reactor import TestReactorMixin
from buildbot.test.steps import ExpectShell, TestBuildStepMixin
from twisted.trial import unittest

from oscarvt import events
from oscarvt import phase_table as table
from oscarvt.errors import InfraError, InputError, ProductError
from oscarvt_master.pictures import Pictures
from oscarvt_master.reporters import PNG
from oscarvt_steps import capped_logs, steps

CLUSTER = ["--cluster", "clusters/7"]  # build 7's cluster folder


def oscarvt(*args: str) -> list[str]:
    return ["oscarvt", args[0], *CLUSTER, *args[1:]]


def event(kind: str, **fields) -> str:
    """One line of an events file, as ``oscarvt.events.emit`` writes it."""
    assert kind in events.KINDS
    return json.dumps({"event": kind, "time": 1.0, **fields}) + "\n"


def verdict(verb: str, message: str, blame: str | None = None, vm: str | None = None, logs: str | None = None) -> str:
    return event("verdict", verb=verb, ok=blame is None, blame=blame, message=message, vm=vm, logs=logs)


def shell(step_name: str, *args: str, workdir: str = "wkdir") -> ExpectShell:
    """The command a step runs, with its events file named in the environment and followed as a log."""
    name = f"{steps.EVENTS}/{step_name}.jsonl"
    return ExpectShell(workdir=workdir, command=oscarvt(*args), sigterm_time=60, env={events.ENV: name},
                       logfiles={"events": name})


class StepTest(TestBuildStepMixin, TestReactorMixin, unittest.TestCase):
    def setUp(self):
        self.setup_test_reactor()
        return self.setup_test_build_step()

    def setup_step(self, step, *args, **kwargs):
        """The step in build number 7, whose earlier steps passed."""
        super().setup_step(step, *args, **kwargs)
        self.build.setProperty("buildnumber", 7, "Build")
        self.build.results = SUCCESS  # the build so far (Buildbot's Build keeps its worst result here)

    def retried(self, count: int) -> None:
        """Pretend the build's request already ran ``count`` times before (Buildbot's data API does it for real
        in test_buildbot)."""
        async def so_far() -> int:
            return count
        self.get_nth_step(0).retries_so_far = so_far

    async def check_failure(self, step, retried: int, message: str, blame: str, result: int) -> None:
        """Run ``step`` after ``retried`` earlier runs of its build; its verdict fails with ``blame``."""
        self.setup_step(step)
        self.retried(retried)
        exit_status = next(c.exit_status for c in (ProductError, InputError, InfraError) if c.blame == blame)
        self.expect_commands(shell(step.name, step.phase, *step.arguments)
                             .log("events", stdout=verdict(step.phase, message, blame)).exit(exit_status))
        self.expect_outcome(result=result, state_string=f"failed: {message}")
        self.expect_property("blame", blame)
        await self.run_step()


class TestPhases(StepTest):
    async def test_boot_headnode_records_the_accelerator_and_its_verdict(self):
        self.setup_step(steps.BootHeadnode())
        decided = 1796641659.8
        reason = "there is no /dev/kvm; decided at once, no probe guest started"
        self.expect_commands(shell("boot-headnode", "boot-headnode")
                             .log("events", stdout=event("accel", name="tcg", reason=reason, decided_at=decided,
                                                         decided_by="this run", waited=0)
                                  + verdict("boot-headnode", "headnode up, SSH on 127.0.0.1:40001"))
                             .stdout("PASS: boot-headnode: headnode up, SSH on 127.0.0.1:40001\n")
                             .exit(0))
        clock = time.strftime("%H:%M:%S", time.localtime(decided))
        self.expect_outcome(result=SUCCESS,
                            state_string=f"headnode up, SSH on 127.0.0.1:40001; TCG, decided {clock} by this run")
        self.expect_property("accelerator", "TCG")
        self.expect_property("phase_boot_headnode", {"result": "passed", "blame": None, "vm": None,
                                                     "message": "headnode up, SSH on 127.0.0.1:40001"})
        await self.run_step()

    async def test_boot_headnode_says_an_earlier_run_decided_and_how_long_it_waited_for_it(self):
        self.setup_step(steps.BootHeadnode())
        decided = 1796641659.8
        self.expect_commands(shell("boot-headnode", "boot-headnode")
                             .log("events", stdout=event("accel", name="tcg", reason="a probe guest did not boot",
                                                         decided_at=decided, decided_by="an earlier run", waited=6.14)
                                  + verdict("boot-headnode", "headnode up"))
                             .exit(0))
        clock = time.strftime("%H:%M:%S", time.localtime(decided))
        self.expect_outcome(result=SUCCESS,
                            state_string=f"headnode up; TCG, decided {clock} by an earlier run (waited 6.1s for it)")
        self.expect_property("accelerator", "TCG")
        await self.run_step()

    async def test_boot_headnode_from_an_older_driver_names_the_accelerator_only(self):
        self.setup_step(steps.BootHeadnode())
        self.expect_commands(shell("boot-headnode", "boot-headnode")
                             .log("events", stdout=event("accel", name="kvm", reason="a probe guest booted under KVM")
                                  + verdict("boot-headnode", "headnode up"))
                             .exit(0))
        self.expect_outcome(result=SUCCESS, state_string="headnode up; KVM")
        await self.run_step()

    async def test_a_phase_that_prints_without_end_keeps_the_head_and_tail_of_its_output(self):
        self.setup_step(steps.StartOscar())
        self.retried(0)
        head, middle, tail = "h" * (capped_logs.HEAD - 1) + "\n", "m\n" * 500, "t" * (capped_logs.TAIL - 1) + "\n"
        self.expect_commands(shell("start-oscar", "start-oscar")
                             .stdout(head).stdout(middle).stdout(tail)
                             .log("events", stdout=verdict("start-oscar", "OSCAR waits for the nodes"))
                             .exit(0))
        self.expect_outcome(result=SUCCESS, state_string="OSCAR waits for the nodes")
        # the head whole, the middle left out, the tail (less what the exit-code header takes of it)
        self.expect_log_file("stdio", re.compile(re.escape(head) + "t{%d,}\n\\Z" % (capped_logs.TAIL - 100)))
        await self.run_step()
        headers = self.get_nth_step(0).logs["stdio"].header
        assert re.search(r"\[oscarvt: 10[0-9][0-9] characters left out here", headers), headers[-300:]

    async def test_a_flood_of_events_is_capped_and_the_verdict_at_its_end_still_counts(self):
        self.setup_step(steps.StartOscar())
        flood = event("progress", text="oscar| " + "x" * 1000) * (3 * capped_logs.HEAD // 1000)
        self.expect_commands(shell("start-oscar", "start-oscar")
                             .log("events", stdout=flood + verdict("start-oscar", "OSCAR waits for the nodes"))
                             .exit(0))
        self.expect_outcome(result=SUCCESS, state_string="OSCAR waits for the nodes")
        await self.run_step()
        events_log = self.get_nth_step(0).logs["events"]
        assert len(events_log.stdout) <= capped_logs.HEAD + capped_logs.TAIL, len(events_log.stdout)
        assert "characters left out here" in events_log.header

    async def test_a_product_failure_is_failure_naming_oscars_step(self):
        self.setup_step(steps.StartOscar())
        message = "OSCAR failed: Failed on Step 4 - Build OSCAR Client Image"
        self.expect_commands(shell("start-oscar", "start-oscar")
                             .log("events", stdout=event("oscar_step", step="Step 4 - Build OSCAR Client Image")
                                  + verdict("start-oscar", message, "product",
                                            logs="see /var/log/oscar/oscarinstall.log on the headnode, or grab-logs"))
                             .exit(1))
        self.expect_outcome(result=FAILURE, state_string=f"failed: {message}")  # the build page has the logs
        self.expect_property("phase_start_oscar", {"result": "failed", "blame": "product", "message": message,
                                                   "vm": None})
        self.expect_property("blame", "product")
        await self.run_step()

    async def test_infrastructure_trouble_is_retried_while_retries_last(self):
        await self.check_failure(steps.BootHeadnode(retries=1), 0, "QEMU did not start: x", "infrastructure", RETRY)

    async def test_infrastructure_trouble_after_the_retries_is_an_exception(self):
        await self.check_failure(steps.BootHeadnode(retries=1), 1, "QEMU did not start: x", "infrastructure",
                                 EXCEPTION)

    async def test_bad_input_is_an_exception_without_retry(self):
        await self.check_failure(steps.CopyVmImage(retries=5), 0, "spec.yaml: unknown key 'x'", "bad input",
                                 EXCEPTION)

    async def test_a_driver_killed_without_a_verdict_is_infrastructure(self):
        self.setup_step(steps.WaitForNodes(retries=0))
        self.retried(0)
        self.expect_commands(shell("wait-for-nodes", "wait-for-nodes")
                             .log("events", stdout=event("progress", text="oscarnode1: imaging 40%") + '{"event": "no')
                             .exit(-9))
        self.expect_outcome(result=EXCEPTION, state_string="failed: oscarvt ended without a verdict (killed?)")
        self.expect_property("blame", "infrastructure")
        await self.run_step()

    async def test_clean_up_steps_never_retry(self):
        await self.check_failure(steps.Destroy(retries=3), 0, "still running after destroy: headnode",
                                 "infrastructure", EXCEPTION)

    async def test_clean_up_trouble_after_oscars_failure_leaves_the_build_a_failure_and_tells_the_admins(self):
        step = steps.Destroy()
        self.setup_step(step)
        self.build.results = FAILURE  # OSCAR failed in an earlier step
        message = "still running after destroy: headnode"
        self.expect_commands(shell("destroy", "destroy").log("events", stdout=verdict("destroy", message,
                                                                                     "infrastructure")).exit(3))
        self.expect_outcome(result=WARNINGS, state_string=f"failed: {message}")
        self.expect_property("harness_trouble", f"destroy: {message}")
        self.expect_no_property("blame")  # the product's blame (set by its step) stays
        await self.run_step()

    async def test_destroy_says_the_harnesss_share_of_the_build(self):
        step = steps.Destroy()
        self.setup_step(step)
        self.build.setProperty(steps.PHASE_SECONDS, {"boot-headnode": {"seconds": 6.0, "product_seconds": 0.0},
                                                     "finish-oscar": {"seconds": 40.0, "product_seconds": 38.0}},
                               "oscarvt")
        began = datetime.now(timezone.utc) - timedelta(seconds=60)

        data = self.get_nth_step(0).master.data
        other_records = data.get

        async def build_record(path, *args, **kwargs):  # the build's start, as a real master's data API has it
            return {"started_at": began} if path[0] == "builds" else await other_records(path, *args, **kwargs)
        data.get = build_record
        self.expect_commands(shell("destroy", "destroy").log("events", stdout=event(
            "phase", phase="destroy", result="passed", seconds=1.5, product_seconds=0.0)
            + verdict("destroy", "3 VMs stopped")).exit(0))
        self.expect_outcome(result=SUCCESS, state_string="3 VMs stopped")
        await self.run_step()
        share = self.get_nth_step(0).getProperty("harness_share")
        self.assertEqual((share["product_seconds"], share["oscarvt_seconds"]), (38.0, 9.5))
        self.assertLess(abs(share["seconds"] - 60), 5)  # the build so far
        self.assertLess(abs(share["buildbot_seconds"] - (60 - 47.5)), 5)
        self.assertLess(abs(share["harness_share"] - (60 - 38) / 60), 0.05)
        self.assertRegex(self.get_nth_step(0).getResultSummary()["build"],
                         r"^\(harness [0-9]+s of [0-9]+s: [0-9]+%; oscarvt 10s, Buildbot [0-9]+s\)$")

    async def test_clean_up_of_a_cluster_never_made_is_a_warning(self):
        await self.check_failure(steps.GrabLogs(), 0, "cluster: no cluster here", "bad input", WARNINGS)

    async def test_start_oscar_summary_follows_oscars_steps_while_it_runs(self):
        self.setup_step(steps.StartOscar())
        step = self.get_nth_step(0)
        step.on_event(events.parse(event("oscar_step", step="Step 4 - Build OSCAR Client Image")))
        self.assertEqual(step.getCurrentSummary(), {"step": "OSCAR Step 4 - Build OSCAR Client Image"})

    async def test_wait_for_nodes_counts_nodes_and_takes_its_options(self):
        self.setup_step(steps.WaitForNodes(nodes=2, options={"timeout": "900"}))
        node_events = "".join(event("node", vm=vm, state=state, status=status) for vm, state, status in [
            ("oscarnode1", "imaging", 40), ("oscarnode1", "installed", 100), ("oscarnode2", "installed", 100),
            ("oscarnode1", "booted", 102), ("oscarnode2", "booted", 102)])
        self.expect_commands(shell("wait-for-nodes", "wait-for-nodes", "--timeout", "900")
                             .log("events", stdout=node_events + verdict("wait-for-nodes", "2 nodes imaged"))
                             .exit(0))
        self.expect_outcome(result=SUCCESS, state_string="2 nodes installed and booted")
        self.expect_property("nodes_installed", 2)
        await self.run_step()

    def test_an_option_the_phase_table_does_not_know_is_refused_when_the_step_is_made(self):
        with self.assertRaisesRegex(ValueError, r"oscarvt claim has no option max_cluster \(it has: under, "
                                                r"max_clusters, wait\)"):
            steps.Claim(options={"under": "..", "max_cluster": 2})
        self.assertEqual(steps.command_arguments(
            table.PHASES["send-logs"], {"to": ["a@example.org", "b@example.org"], "smtp": "relay:25"}),
            ["--to", "a@example.org", "b@example.org", "--smtp", "relay:25"])

    async def test_wait_for_nodes_failure_names_the_node(self):
        self.setup_step(steps.WaitForNodes(nodes=4))
        node_events = "".join(event("node", vm=vm, state="installed", status=100)
                              for vm in ("oscarnode1", "oscarnode2"))
        self.expect_commands(shell("wait-for-nodes", "wait-for-nodes")
                             .log("events", stdout=node_events + verdict(
                                 "wait-for-nodes", "oscarnode2: Kernel panic - not syncing: VFS", "product",
                                 "oscarnode2"))
                             .exit(1))
        self.expect_outcome(result=FAILURE, state_string="failed: oscarnode2: Kernel panic - not syncing: VFS")
        self.expect_property("phase_wait_for_nodes", {"result": "failed", "blame": "product", "vm": "oscarnode2",
                                                      "message": "oscarnode2: Kernel panic - not syncing: VFS"})
        await self.run_step()
        self.assertEqual(self.get_nth_step(0).getCurrentSummary(), {"step": "2/4 nodes installed, 0 booted"})

    async def test_a_skipped_keep_step_says_skipped_not_failed(self):
        self.setup_step(steps.Keep(doStepIf=False))
        self.expect_outcome(result=SKIPPED, state_string="skipped")
        await self.run_step()

    async def test_finish_oscar_counts_the_cluster_tests(self):
        self.setup_step(steps.FinishOscar())
        tests = (event("test", **{"class": "oscarnode1", "name": "ssh", "result": "passed", "message": ""})
                 + event("test", **{"class": "oscarnode2", "name": "ssh", "result": "failed", "message": "x"}))
        message = "OSCAR failed: Failed on Step 8 - Test Cluster Setup"
        self.expect_commands(shell("finish-oscar", "finish-oscar")
                             .log("events", stdout=tests + verdict("finish-oscar", message, "product"))
                             .exit(1))
        self.expect_outcome(result=FAILURE, state_string=f"failed: {message}")
        self.expect_property("cluster_tests", {"PASSED": 1, "FAILED": 1, "SKIPPED": 0})
        self.expect_test_result_sets([("OSCAR cluster tests", "pass_fail", "boolean")])
        self.expect_test_results([(1000, "1", "oscarnode1 ssh", None, None, None),  # an event without seconds
                                  (1000, "0", "oscarnode2 ssh", None, None, None)])
        await self.run_step()

    async def test_each_cluster_test_is_a_test_result_of_the_build(self):
        self.setup_step(steps.FinishOscar())
        tests = [("oscarnode1", "ssh", "passed", "", "0.25"), ("oscarnode2", "ssh", "failed", "no route", "1.5"),
                 ("oscarnode2", "hosts", "skipped", "not run", "0"), ("oscarnode1", "command", "passed", "", "nan"),
                 ("oscarnode1", "server", "passed", "", ""), ("oscarnode1", "hosts", "passed", "", "2.2")]
        lines = "".join(event("test", **{"class": c, "name": n, "result": r, "message": m, "seconds": s})
                        for c, n, r, m, s in tests)
        self.expect_commands(shell("finish-oscar", "finish-oscar")
                             .log("events", stdout=lines + verdict("finish-oscar", "OSCAR failed", "product"))
                             .exit(1))
        self.expect_outcome(result=FAILURE, state_string="failed: OSCAR failed")
        self.expect_test_result_sets([("OSCAR cluster tests", "pass_fail", "boolean")])
        self.expect_test_results([(1000, "1", "oscarnode1 ssh", None, None, 250_000_000),
                                  (1000, "0", "oscarnode2 ssh", None, None, 1_500_000_000),
                                  (1000, "1", "oscarnode1 command", None, None, None),  # a time that is no number
                                  (1000, "1", "oscarnode1 server", None, None, None),  # the skipped one left out
                                  (1000, "1", "oscarnode1 hosts", None, None, None)])  # over int4's nanoseconds
        self.expect_property("cluster_tests", {"PASSED": 4, "FAILED": 1, "SKIPPED": 1})
        await self.run_step()

    async def test_grab_logs_and_destroy_always_run(self):
        self.assertTrue(steps.GrabLogs().alwaysRun and steps.Destroy().alwaysRun)
        self.setup_step(steps.GrabLogs())
        self.expect_commands(shell("grab-logs", "grab-logs", "--dest", "logs")
                             .log("events", stdout=verdict("grab-logs", "21 files in /b/logs and logs.tar.gz"))
                             .exit(0))
        self.expect_outcome(result=SUCCESS, state_string="21 files in /b/logs and logs.tar.gz")
        await self.run_step()


class TestAttachLogs(StepTest):
    async def test_oscar_log_monitor_log_and_consoles_become_step_logs(self):
        root = Path(tempfile.mkdtemp(prefix="oscarvt-attach."))  # trial's mktemp() writes into the cwd
        self.addCleanup(shutil.rmtree, root)
        (root / "headnode/var/log/oscar").mkdir(parents=True)
        (root / "headnode/var/log/oscar/oscarinstall.log").write_text("Step 1 - Select Packages\n")
        (root / "consoles").mkdir()
        (root / "consoles/oscarnode2.log").write_text("Kernel panic\n")
        (root / "consoles/oscarnode1.log").write_text("oscar-node: oscarnode1 up\n")
        self.setup_step(steps.AttachLogs(masterdest=str(root)))
        self.build.setProperty("phase_wait_for_nodes",
                               {"result": "failed", "blame": "product", "vm": "oscarnode2",
                                "message": "oscarnode1 and oscarnode2: Kernel panic"}, "oscarvt")
        self.expect_outcome(result=SUCCESS, state_string="4 logs attached, oscarnode2 failed")
        self.expect_log_file("oscarinstall.log", "Step 1 - Select Packages\n")
        self.expect_log_file("console oscarnode2", "Kernel panic\n")
        self.expect_log_file("failing console", "Kernel panic\n")
        await self.run_step()

    async def test_a_huge_console_keeps_head_and_tail_and_a_link_is_not_followed(self):
        root = Path(tempfile.mkdtemp(prefix="oscarvt-attach."))
        self.addCleanup(shutil.rmtree, root)
        (root / "consoles").mkdir()
        head, middle, tail = "h" * capped_logs.HEAD, "m" * 1000, "t" * capped_logs.TAIL
        (root / "consoles/oscarnode1.log").write_text(head + middle + tail)
        (root / "consoles/oscarnode2.log").symlink_to("/etc/passwd")  # what a damaged upload could hold
        self.setup_step(steps.AttachLogs(masterdest=str(root)))
        self.expect_outcome(result=SUCCESS, state_string="1 logs attached")
        self.expect_log_file("console oscarnode1", head + capped_logs.left_out(1000) + tail)
        await self.run_step()


class TestPictures(StepTest):
    """The pictures step on the master: the builder's trend drawn from the uploaded phases.json files (a
    real run's, tests/data), and the build page's links to it and to the build's timeline."""

    def builder_folder(self, builds: list[int]) -> Path:
        root = Path(tempfile.mkdtemp(prefix="oscarvt-pictures."))
        self.addCleanup(shutil.rmtree, root)
        for number in builds:
            (root / "b1" / str(number)).mkdir(parents=True)
            shutil.copy(Path(__file__).parent / "data" / "phases-cdrom.json", root / "b1" / str(number) / "phases.json")
        return root / "b1"

    async def urls(self) -> dict[str, str]:
        step = await self.master.db.steps.getStep(self.get_nth_step(0).stepid)
        return {url.name: url.url for url in step.urls}

    async def test_the_trend_is_drawn_and_both_pictures_are_linked(self):
        builder = self.builder_folder([5, 6, 7])
        (builder / "7" / "timeline.png").write_bytes(PNG + b"as grab-logs drew it")
        self.setup_step(Pictures(masterdest=str(builder / "7"), logs_url="http://127.0.0.1:8011/b1/7/"))
        self.build.setProperty("buildername", "b1", "Build")
        self.expect_outcome(result=SUCCESS, state_string="timeline; trend of 3 builds")
        await self.run_step()
        self.assertTrue((builder / "trend.png").read_bytes().startswith(PNG))
        self.assertEqual(await self.urls(), {"timeline": "http://127.0.0.1:8011/b1/7/timeline.png",
                                             "trend": "http://127.0.0.1:8011/b1/trend.png"})

    async def test_a_build_without_logs_or_timeline_is_said_and_still_succeeds(self):
        builder = self.builder_folder([])
        (builder / "8").mkdir(parents=True)
        (builder / "8" / "timeline.png").symlink_to("/etc/passwd")  # what a damaged upload could hold
        self.setup_step(Pictures(masterdest=str(builder / "8"), logs_url="http://127.0.0.1:8011/b1/8/"))
        self.build.setProperty("buildername", "b1", "Build")
        self.expect_outcome(result=SUCCESS, state_string="no timeline (see grab-logs)")
        await self.run_step()
        self.assertFalse((builder / "trend.png").exists())
        self.assertEqual(await self.urls(), {})


class TestSimplePhases(StepTest):
    """The phases whose summary is oscarvt's own verdict: command, summary, property."""

    async def check(self, step, args, message, ok):
        self.setup_step(step)
        self.retried(0)
        blame = None if ok else "bad input"
        self.expect_commands(shell(args[0], *args, workdir=".")
                             .log("events", stdout=verdict(args[0], message, blame)).exit(0 if ok else 2))
        self.expect_outcome(result=SUCCESS if ok else EXCEPTION, state_string=message if ok else f"failed: {message}")
        self.expect_property(f"phase_{args[0].replace('-', '_')}",
                             {"result": "passed" if ok else "failed", "blame": blame, "message": message, "vm": None})
        await self.run_step()

    async def test_copy_vm_image(self):
        await self.check(steps.CopyVmImage(options={"spec": "spec.yaml"}, workdir="."),
                         ["copy-vm-image", "--spec", "spec.yaml"], "3 profiles and disks in /b/cluster", True)

    async def test_checkout_oscar(self):
        await self.check(steps.CheckoutOscar(options={"source": "oscar"}, workdir="."),
                         ["checkout-oscar", "--source", "oscar"], "--source: no such folder oscar", False)

    async def test_boot_compute_nodes(self):
        await self.check(steps.BootComputeNodes(options={"boot": "network"}, workdir="."),
                         ["boot-compute-nodes", "--boot", "network"], "2 nodes started from network", True)

    async def test_destroy(self):
        await self.check(steps.Destroy(workdir="."), ["destroy"],
                         "3 VMs stopped, 3 disks removed, no VM of cluster running", True)
