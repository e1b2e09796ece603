"""The Buildbot steps with Buildbot's own step test helpers: each step's command, summaries,
properties and failure handling, against the output oscarvt really prints."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from buildbot.process.results import FAILURE, SUCCESS
from buildbot.test.reactor import TestReactorMixin
from buildbot.test.steps import ExpectShell, TestBuildStepMixin
from twisted.trial import unittest

from oscarvt_steps import steps

CLUSTER = ["--cluster", "cluster"]


def oscarvt(*args: str) -> list[str]:
    return ["oscarvt", args[0], *CLUSTER, *args[1:]]


class StepTest(TestBuildStepMixin, TestReactorMixin, unittest.TestCase):
    def setUp(self):
        self.setup_test_reactor()
        return self.setup_test_build_step()


class TestPhases(StepTest):
    async def test_boot_headnode_records_the_accelerator_and_its_verdict(self):
        self.setup_step(steps.BootHeadnode())
        self.expect_commands(ExpectShell(workdir="wkdir", command=oscarvt("boot-headnode"), sigterm_time=60)
                             .stdout("[    4.1s] accelerator: TCG (a probe guest did not boot under KVM within 8s)\n"
                                     "PASS: boot-headnode: headnode up, SSH on 127.0.0.1:40001\n")
                             .exit(0))
        self.expect_outcome(result=SUCCESS, state_string="headnode up, SSH on 127.0.0.1:40001")
        self.expect_property("accelerator", "TCG")
        self.expect_property("phase_boot_headnode",
                             {"result": "passed", "message": "headnode up, SSH on 127.0.0.1:40001"})
        await self.run_step()

    async def test_start_oscar_failure_names_oscars_step(self):
        self.setup_step(steps.StartOscar())
        failure = ("FAIL: start-oscar: OSCAR failed: Failed on Step 4 - Build OSCAR Client Image "
                   "(see /var/log/oscar/oscarinstall.log on the headnode, or grab-logs)\n")
        self.expect_commands(ExpectShell(workdir="wkdir", command=oscarvt("start-oscar"), sigterm_time=60)
                             .stdout("[   20.0s] oscar| 2026-11-24 00:32:48 Step 4 - Build OSCAR Client Image\n"
                                     "[   21.0s] oscar| ERROR: Failed on Step 4 - Build OSCAR Client Image\n" + failure)
                             .exit(1))
        self.expect_outcome(result=FAILURE,
                            state_string="failed: OSCAR failed: Failed on Step 4 - Build OSCAR Client Image")
        self.expect_property("phase_start_oscar", {"result": "failed", "message": failure[19:].strip()})
        await self.run_step()

    async def test_start_oscar_summary_follows_oscars_steps_while_it_runs(self):
        self.setup_step(steps.StartOscar())
        step = self.get_nth_step(0)
        step.on_line("oscar| 2026-11-24 00:32:48 Step 4 - Build OSCAR Client Image")
        step.on_line("oscar| --> Skipping Step 5 - Define OSCAR Clients")
        self.assertEqual(step.getCurrentSummary(), {"step": "OSCAR Step 4 - Build OSCAR Client Image"})

    async def test_wait_for_nodes_counts_nodes_and_takes_extra_args(self):
        self.setup_step(steps.WaitForNodes(nodes=2, extra_args=["--timeout", "900"]))
        self.expect_commands(ExpectShell(workdir="wkdir", command=oscarvt("wait-for-nodes", "--timeout", "900"),
                                         sigterm_time=60)
                             .stdout("[ 10.0s] oscarnode1: imaging 40%\n[ 30.0s] oscarnode1: installed\n"
                                     "[ 31.0s] oscarnode2: installed\n[ 40.0s] oscarnode1: booted from its disk\n"
                                     "[ 41.0s] oscarnode2: booted from its disk\n"
                                     "PASS: wait-for-nodes: 2 nodes imaged and booted from their disks\n")
                             .exit(0))
        self.expect_outcome(result=SUCCESS, state_string="2 nodes installed and booted")
        self.expect_property("nodes_installed", 2)
        await self.run_step()

    async def test_wait_for_nodes_failure_names_the_node(self):
        self.setup_step(steps.WaitForNodes(nodes=4))
        self.expect_commands(ExpectShell(workdir="wkdir", command=oscarvt("wait-for-nodes"), sigterm_time=60)
                             .stdout("[ 30.0s] oscarnode1: installed\n[ 31.0s] oscarnode2: installed\n"
                                     "FAIL: wait-for-nodes: oscarnode2: Kernel panic - not syncing: VFS\n")
                             .exit(1))
        self.expect_outcome(result=FAILURE,
                            state_string="failed: oscarnode2: Kernel panic - not syncing: VFS")
        await self.run_step()
        self.assertEqual(self.get_nth_step(0).getCurrentSummary(), {"step": "2/4 nodes installed, 0 booted"})

    async def test_finish_oscar_counts_the_cluster_tests(self):
        self.setup_step(steps.FinishOscar())
        self.expect_commands(ExpectShell(workdir="wkdir", command=oscarvt("finish-oscar"), sigterm_time=60)
                             .stdout("[ 5.0s] test PASSED: oscarnode1 ssh\n[ 5.1s] test FAILED: oscarnode2 ssh: x\n"
                                     "FAIL: finish-oscar: OSCAR failed: Failed on Step 8 - Test Cluster Setup\n")
                             .exit(1))
        self.expect_outcome(result=FAILURE,
                            state_string="failed: OSCAR failed: Failed on Step 8 - Test Cluster Setup")
        self.expect_property("cluster_tests", {"PASSED": 1, "FAILED": 1, "SKIPPED": 0})
        await self.run_step()

    async def test_grab_logs_and_destroy_always_run(self):
        self.assertTrue(steps.GrabLogs().alwaysRun and steps.Destroy().alwaysRun)
        self.setup_step(steps.GrabLogs())
        self.expect_commands(ExpectShell(workdir="wkdir", command=oscarvt("grab-logs", "--dest", "logs"),
                                         sigterm_time=60)
                             .stdout("PASS: grab-logs: 21 files in /b/logs and logs.tar.gz\n").exit(0))
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
                               {"result": "failed", "message": "oscarnode2: Kernel panic"}, "oscarvt")
        self.expect_outcome(result=SUCCESS, state_string="4 logs attached, oscarnode2 failed")
        self.expect_log_file("oscarinstall.log", "Step 1 - Select Packages\n")
        self.expect_log_file("console oscarnode2", "Kernel panic\n")
        self.expect_log_file("failing console", "Kernel panic\n")
        await self.run_step()


class TestSimplePhases(StepTest):
    """The phases whose summary is oscarvt's own verdict: command, summary, property, failure."""

    async def check(self, step, args, stdout, rc, result, state):
        self.setup_step(step)
        self.expect_commands(ExpectShell(workdir=".", command=oscarvt(*args), sigterm_time=60)
                             .stdout(stdout).exit(rc))
        self.expect_outcome(result=result, state_string=state)
        self.expect_property(f"phase_{args[0].replace('-', '_')}",
                             {"result": "passed" if result == SUCCESS else "failed",
                              "message": stdout.strip().split(": ", 2)[-1]})
        await self.run_step()

    async def test_copy_vm_image(self):
        await self.check(steps.CopyVmImage(extra_args=["--spec", "spec.yaml"], workdir="."),
                         ["copy-vm-image", "--spec", "spec.yaml"],
                         "PASS: copy-vm-image: 3 profiles and disks in /b/cluster\n", 0, SUCCESS,
                         "3 profiles and disks in /b/cluster")

    async def test_checkout_oscar(self):
        await self.check(steps.CheckoutOscar(extra_args=["--source", "oscar"], workdir="."),
                         ["checkout-oscar", "--source", "oscar"],
                         "FAIL: checkout-oscar: --source: no such folder oscar\n", 1, FAILURE,
                         "failed: --source: no such folder oscar")

    async def test_boot_compute_nodes(self):
        await self.check(steps.BootComputeNodes(extra_args=["--boot", "network"], workdir="."),
                         ["boot-compute-nodes", "--boot", "network"],
                         "PASS: boot-compute-nodes: 2 nodes started from network\n", 0, SUCCESS,
                         "2 nodes started from network")

    async def test_destroy(self):
        await self.check(steps.Destroy(workdir="."), ["destroy"],
                         "PASS: destroy: 3 VMs stopped, 3 disks removed, no VM of cluster running\n", 0, SUCCESS,
                         "3 VMs stopped, 3 disks removed, no VM of cluster running")
