"""What each kind of mail says: a success, a product failure (with and without a failing node),
infrastructure trouble (retried and not), bad input and clean-up trouble after OSCAR's failure. The
master's mails are made by Buildbot's own MailNotifier (``oscarvt_master.reporters.mail_reporters``)
from a build in Buildbot's fake master (``buildbot.test``: ReporterTestMixin's build, with oscarvt's
steps, logs and properties added); the driver's mail by ``send-logs``' own ``compose``. A control
character in a verdict's message, a step's summary or a log line is shown escaped, never sent."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import shutil
import tarfile
import tempfile
import time
from email.message import EmailMessage, Message
from pathlib import Path
from typing import Any

from buildbot.process.results import EXCEPTION, FAILURE, RETRY, SUCCESS, WARNINGS
from buildbot.test import fakedb
from buildbot.test.fake import fakemaster
from buildbot.test.reactor import TestReactorMixin
from buildbot.test.util.reporter import ReporterTestMixin
from test_phases import STATE
from twisted.internet import defer
from twisted.trial import unittest

from oscarvt.cluster import ClusterDir
from oscarvt.phases.mail import compose
from oscarvt.state import Checkout, Logs, PhaseRecord
from oscarvt.timeline import TIMELINE
from oscarvt_master.reporters import PNG, mail_reporters
from oscarvt_master.settings import Mail

DEVELOPERS, ADMINS = "dev@example.org", "admin@example.org"
PRODUCT_LINE = "oscarnode2: oscar-installer: ERROR: fdisk /dev/vda failed"
STEP_5 = "OSCAR failed in step 5 - Define OSCAR Clients: You must build at least one image!"
KILLED = "headnode: QEMU exited (killed by signal 9) during start-oscar"
BAD_SPEC = "spec.yaml: key 'nodes.count' must be from 1 to 64, not 0"
LEFT = "headnode: QEMU did not stop in 60 s; its disks are left"
HOSTILE = "oscarnode2: \x1b[31mKernel panic\x1b[0m\r\nSubject: forged\n\x07"


def phase(name: str, results: int, summary: str, blame: str | None = None, message: str = "",
          vm: str | None = None) -> dict[str, Any]:
    """A phase step as the build ran it: its result and summary, and its ``phase_*`` property."""
    record = {"result": "passed" if blame is None else "failed", "blame": blame, "message": message, "vm": vm}
    return {"name": name, "results": results, "summary": summary, "record": record}


PASSED = [phase("boot-headnode", SUCCESS, "headnode up; TCG"), phase("start-oscar", SUCCESS, "OSCAR started"),
          phase("wait-for-nodes", SUCCESS, "2 nodes installed and booted"),
          phase("finish-oscar", SUCCESS, "OSCAR finished; tests 7/7 passed")]
CLEANED = [phase("grab-logs", SUCCESS, "logs grabbed"), phase("destroy", SUCCESS, "destroyed")]
NODE_FAILED = [*PASSED[:2], phase("wait-for-nodes", FAILURE, f"failed: {PRODUCT_LINE}", "product",
                                  PRODUCT_LINE, "oscarnode2"), *CLEANED]


class BuildMails(ReporterTestMixin, TestReactorMixin, unittest.TestCase):
    """The mails the master's MailNotifiers send about Builder0's build 0, by recipient."""

    def setUp(self) -> Any:  # noqa: N802
        return defer.ensureDeferred(self.set_up())

    async def set_up(self) -> None:
        self.setup_test_reactor()
        self.setup_reporter_test()
        self.master = await fakemaster.make_master(self, wantData=True, wantDb=True, wantMq=True)
        await self.master.startService()
        self.addCleanup(self.master.stopService)
        self.logs_folder = Path(tempfile.mkdtemp(prefix="oscarvt-mail-"))  # the uploaded logs (trial's mktemp
        self.addCleanup(shutil.rmtree, self.logs_folder)                       # would write under the cwd)
        self.sent: dict[str, Message] = {}
        mail = Mail(relay="127.0.0.1:25", to=[DEVELOPERS], admins=[ADMINS], mode=["all"])
        self.notifiers = mail_reporters(mail, ["Builder0"], str(self.logs_folder))
        for notifier in self.notifiers:
            notifier.sendMail = self.keep  # what would go to the relay
            await notifier.setServiceParent(self.master)

    def keep(self, message: Message, recipients: list[str]) -> None:
        self.assertNotIn(",".join(recipients), self.sent)
        self.sent[",".join(recipients)] = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)

    async def mails(self, results: int, phases: list[dict[str, Any]], failing_console: bool = False,
                    **properties: Any) -> dict[str, Message]:
        """The mails about build 0 that ran ``phases`` (and attach-logs) and ended in ``results``."""
        properties["phase_seconds"] = {p["name"]: {"seconds": 30.4, "product_seconds": 20.0} for p in phases}
        properties.update((f"phase_{p['name'].replace('-', '_')}", p["record"]) for p in phases)
        self.reporter_test_props.update(properties)
        await self.insert_test_data([results], results)
        rows: list[Any] = []
        for number, step in enumerate(phases, start=10):
            rows.append(fakedb.Step(id=number, buildid=20, number=number, name=step["name"],
                                    results=step["results"], state_string=step["summary"]))
        logs = {"oscarinstall.log": "== Setup Networking\n", "summary.txt": "phase result\n"}
        logs.update({"failing console": "oscar-installer: ERROR\n"} if failing_console else {})
        rows.append(fakedb.Step(id=90, buildid=20, number=90, name="attach-logs", results=SUCCESS,
                                state_string=f"{len(logs)} logs attached"))
        for logid, (name, text) in enumerate(logs.items(), start=90):
            rows += [fakedb.Log(id=logid, stepid=90, name=name, slug=name.replace(" ", "_"), complete=1,
                                num_lines=1),
                     fakedb.LogChunk(logid=logid, first_line=0, last_line=0, content=text)]
        await self.master.db.insert_test_data(rows)
        build = await self.master.data.get(("builds", 20))
        for notifier in self.notifiers:
            await notifier._got_event(("builds", 20, "finished"), build)
        return self.sent

    def attachments(self, mail: Message) -> set[str]:
        return {str(part.get_filename()) for part in mail.walk() if part.get_filename()}

    def text(self, mail: Message) -> str:
        return mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]

    async def test_a_success_says_what_passed_and_what_is_attached_and_no_word_of_failure(self):
        (self.logs_folder / "Builder0" / "0").mkdir(parents=True)
        (self.logs_folder / "Builder0" / "0" / TIMELINE).write_bytes(PNG + b"picture")
        mails = await self.mails(SUCCESS, [*PASSED, *CLEANED], cluster_tests={"PASSED": 7, "FAILED": 0, "SKIPPED": 0},
                                 harness_share={"seconds": 300.0, "product_seconds": 240.0, "oscarvt_seconds": 45.0,
                                                "buildbot_seconds": 15.0, "harness_share": 0.2})
        self.assertEqual(list(mails), [DEVELOPERS])
        mail = mails[DEVELOPERS]
        self.assertEqual(mail["Subject"], "oscarvt success: Builder0 build 0")
        text = self.text(mail)
        self.assertTrue(text.startswith("OSCAR passed on Builder0 build 0: every phase passed.\n"), text)
        for line in ("  wait-for-nodes       passed    30s  2 nodes installed and booted",
                     "OSCAR's cluster tests: 7 of 7 passed",
                     "Time: 300s in all; OSCAR and its nodes 240s; harness 60s (20%): oscarvt 45s, Buildbot 15s",
                     "Revision: d34db33fd43db33f",
                     "Attached: OSCAR's log (attach-logs.oscarinstall.log), the phase summary "
                     "(attach-logs.summary.txt), the build's timeline (timeline.png)."):
            self.assertIn(line + "\n", text)
        self.assertEqual(self.attachments(mail), {"attach-logs.oscarinstall.log", "attach-logs.summary.txt", TIMELINE})
        for word in ("fail", "console", "blame", "step "):
            self.assertNotIn(word, text.lower())

    async def test_a_product_failure_names_the_phase_the_failing_node_and_its_attached_console(self):
        mails = await self.mails(FAILURE, NODE_FAILED, failing_console=True, blame="product")
        self.assertEqual(list(mails), [DEVELOPERS])  # the product's failure: its developers only
        mail = mails[DEVELOPERS]
        self.assertEqual(mail["Subject"], f"oscarvt failure: Builder0 build 0: wait-for-nodes: {PRODUCT_LINE}")
        text = self.text(mail)
        self.assertTrue(text.startswith(
            "OSCAR failed on Builder0 build 0.\nBlame: product (OSCAR or its nodes)\n"
            f"Failed in wait-for-nodes: {PRODUCT_LINE}\n"
            "Failing node: oscarnode2; its console is attached (attach-logs.failing console).\n"), text)
        self.assertIn(f"Step wait-for-nodes: failed: {PRODUCT_LINE}\n", text)
        self.assertIn("Attached: OSCAR's log (attach-logs.oscarinstall.log), the phase summary "
                      "(attach-logs.summary.txt), the failing node's console (attach-logs.failing console).\n", text)
        self.assertEqual(self.attachments(mail),
                         {"attach-logs.oscarinstall.log", "attach-logs.summary.txt", "attach-logs.failing console"})

    async def test_a_product_failure_leads_with_what_changed_since_green_and_ends_with_how_to_reproduce_it(self):
        triage = ["since green build 12: 3 commits; the spec changed", "the spec changed: 0a1b -> 2c3d",
                  "unchanged: the template, oscarvt's version, the worker\x1b[31m", "commits, oldest first:"]
        command = "git clone -q /srv/oscar.git oscar && oscarvt run --cluster Builder0-0 --spec spec.yaml --keep"
        mails = await self.mails(FAILURE, NODE_FAILED, blame="product", triage=triage, reproduce=command)
        text = self.text(mails[DEVELOPERS])
        lines = text.splitlines()
        self.assertEqual(lines[:3], ["OSCAR failed on Builder0 build 0.", *triage[:2]])
        self.assertEqual(lines[4:7], ["commits, oldest first:", "", "Blame: product (OSCAR or its nodes)"])
        self.assertIn("\\x1b", lines[3])  # a guest's control character, shown escaped
        self.assertNotIn("\x1b", text)
        self.assertIn("\nReproduce it on a host with oscarvt (the cluster Builder0-0 is kept for you; 'oscarvt destroy "
                      f"--cluster Builder0-0' when done):\n{command}\n", text)

    async def test_a_product_failure_without_a_failing_node_speaks_of_no_node(self):
        failed = phase("start-oscar", FAILURE, f"failed: {STEP_5}", "product", STEP_5)
        mails = await self.mails(FAILURE, [PASSED[0], failed, *CLEANED], blame="product")
        mail = mails[DEVELOPERS]
        self.assertEqual(mail["Subject"], f"oscarvt failure: Builder0 build 0: start-oscar: {STEP_5}"[:160])
        text = self.text(mail)
        self.assertIn(f"Blame: product (OSCAR or its nodes)\nFailed in start-oscar: {STEP_5}\n\nBuild: ", text)
        self.assertNotIn("node:", text)
        self.assertNotIn("console", text)

    async def test_infrastructure_trouble_that_is_retried_goes_to_the_admins_and_says_so(self):
        failed = phase("start-oscar", RETRY, f"failed: {KILLED}", "infrastructure", KILLED)
        mails = await self.mails(RETRY, [PASSED[0], failed, *CLEANED], blame="infrastructure")
        self.assertEqual(list(mails), [ADMINS])  # the developers never hear of it
        mail = mails[ADMINS]
        self.assertEqual(mail["Subject"], "oscarvt retry: Builder0 build 0")  # not final: a short subject
        self.assertTrue(self.text(mail).startswith(
            "Infrastructure trouble in Builder0 build 0: the build is retried.\n"
            "Blame: infrastructure (the host or the harness, not OSCAR)\n"
            f"Failed in start-oscar: {KILLED}\nRetried: Buildbot runs the build again, on a new cluster.\n"))

    async def test_infrastructure_trouble_after_its_retries_names_the_cause_and_what_to_do(self):
        failed = phase("start-oscar", EXCEPTION, f"failed: {KILLED}", "infrastructure", KILLED)
        mails = await self.mails(EXCEPTION, [PASSED[0], failed, *CLEANED], blame="infrastructure")
        self.assertEqual(list(mails), [ADMINS])
        mail = mails[ADMINS]
        self.assertEqual(mail["Subject"], f"oscarvt exception: Builder0 build 0: infrastructure: start-oscar: {KILLED}")
        self.assertIn(f"Failed in start-oscar: {KILLED}\nNot retried: the build had its retries (settings: retries). "
                      "See to the host, then force a build.\n", self.text(mail))

    async def test_bad_input_goes_to_the_admins_with_the_file_and_the_problem(self):
        failed = phase("copy-vm-image", EXCEPTION, f"failed: {BAD_SPEC}", "bad input", BAD_SPEC)
        mails = await self.mails(EXCEPTION, [failed, phase("destroy", SUCCESS, "nothing to destroy")],
                                 blame="bad input")
        self.assertEqual(list(mails), [ADMINS])
        mail = mails[ADMINS]
        self.assertEqual(mail["Subject"], f"oscarvt exception: Builder0 build 0: bad input: copy-vm-image: {BAD_SPEC}")
        self.assertTrue(self.text(mail).startswith(
            "Bad input stopped Builder0 build 0.\n"
            "Blame: bad input (a spec, flag, file or setting; not OSCAR's failure)\n"
            f"Failed in copy-vm-image: {BAD_SPEC}\n"
            "Not retried: it would fail the same way. Fix it, then force a build.\n"))

    async def test_clean_up_trouble_after_a_product_failure_goes_to_both_each_its_own_text(self):
        destroy = phase("destroy", WARNINGS, f"failed: {LEFT}", "infrastructure", LEFT)
        mails = await self.mails(FAILURE, [*NODE_FAILED[:-1], destroy], failing_console=True, blame="product",
                                 harness_trouble=f"destroy: {LEFT}")
        self.assertEqual(sorted(mails), [ADMINS, DEVELOPERS])
        developers, admins = mails[DEVELOPERS], mails[ADMINS]
        self.assertEqual(developers["Subject"], f"oscarvt failure: Builder0 build 0: wait-for-nodes: {PRODUCT_LINE}")
        self.assertIn(f"Clean-up trouble too, mailed to the admins: destroy: {LEFT}\n", self.text(developers))
        self.assertEqual(admins["Subject"], f"oscarvt failure: Builder0 build 0: infrastructure: destroy: {LEFT}")
        self.assertTrue(self.text(admins).startswith(
            "Clean-up trouble in Builder0 build 0, after OSCAR's failure.\n"
            "Blame: infrastructure (the host or the harness, not OSCAR)\n"
            f"Failed in destroy: {LEFT}\n"
            "Not retried: clean-up never is. See to the worker: a VM or its disks may be left.\n"
            f"The build stays OSCAR's failure, mailed to its developers: wait-for-nodes: {PRODUCT_LINE}\n"),
            self.text(admins))

    async def test_control_characters_in_a_message_are_shown_escaped_in_one_subject_line(self):
        failed = phase("wait-for-nodes", FAILURE, f"failed: {HOSTILE}", "product", HOSTILE, "oscarnode2")
        mails = await self.mails(FAILURE, [*PASSED[:2], failed, *CLEANED], blame="product")
        mail = mails[DEVELOPERS]
        self.assertEqual(mail.get_all("Subject"), [mail["Subject"]])
        self.assertIsNone(mail["forged"])
        subject, text = str(mail["Subject"]), self.text(mail)
        self.assertTrue(subject.startswith("oscarvt failure: Builder0 build 0: wait-for-nodes: 'oscarnode2: \\x1b[31m"),
                        subject)
        self.assertTrue(subject.endswith("\\r\\nSubject: forged\\n\\x07'"), subject)
        self.assertIn("\nFailed in wait-for-nodes: 'oscarnode2: \\x1b[31m", text)
        self.assertIn("\nStep wait-for-nodes: 'failed: oscarnode2: \\x1b[31", text)
        self.assertTrue(subject.isprintable(), subject)
        self.assertTrue(all(c.isprintable() or c == "\n" for c in text), text)


# ---------------------------------------------------------------- the driver's own mail (send-logs)


def cluster_with(tmp_path: Path, phases: list[PhaseRecord], oscar_log: str = "Step 6 - Setup Networking\n"
                 ) -> ClusterDir:
    """A cluster folder after grab-logs: its state, OSCAR's log, each node's console and the tarball."""
    cluster = ClusterDir(tmp_path / "c")
    logs = cluster.path / "logs"
    (logs / "consoles").mkdir(parents=True)
    for node in ("oscarnode1", "oscarnode2"):
        (logs / "consoles" / f"{node}.log").write_text(f"{node} login:\n")
    (logs / "headnode" / "var/log/oscar").mkdir(parents=True)
    (logs / "headnode" / "var/log/oscar/oscarinstall.log").write_text(oscar_log)
    with tarfile.open(cluster.path / "logs.tar.gz", "w:gz") as tar:
        tar.add(logs, arcname="logs")
    cluster.save(dataclasses.replace(STATE, logs=Logs(dir=str(logs), tarball=str(cluster.path / "logs.tar.gz")),
                                     checkout=Checkout("https://example.org/oscar.git", "d34db33f", "/opt/oscar"),
                                     phases=phases))
    return cluster


def sent(cluster: ClusterDir) -> tuple[Message, str]:
    """The send-logs mail as it would arrive, and its text."""
    message: EmailMessage = compose(cluster, cluster.load(), [DEVELOPERS], "oscarvt@example.org")
    mail = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    return mail, next(part for part in mail.walk() if not part.is_multipart()).get_payload(decode=True).decode()


def record(name: str, result: str = "passed", message: str = "") -> PhaseRecord:
    now = time.time()
    return PhaseRecord(name, start=now, end=now, result=result, message=message, seconds=30.0)  # type: ignore[arg-type]


def test_send_logs_on_a_passing_cluster_speaks_of_no_failure_nor_console(tmp_path):
    mail, text = sent(cluster_with(tmp_path, [record("boot-headnode"), record("wait-for-nodes", message="2 nodes")]))
    assert mail["Subject"] == "oscarvt PASS: c"
    assert text.startswith(f"Verdict: PASS\nCluster: {tmp_path / 'c'}\n"
                           "OSCAR: https://example.org/oscar.git (d34db33f)\n")
    assert "--- OSCAR's log, last 1 lines (oscarinstall.log) ---\nStep 6 - Setup Networking\n" in text
    for word in ("fail", "console", "oscarnode"):
        assert word not in text.lower(), word


def test_send_logs_shows_control_characters_escaped_in_the_subject_the_text_and_the_logs(tmp_path):
    phases = [record("boot-headnode", "failed", "headnode: \x1b]0;owned\x07 no SSH"),  # an earlier run's record
              record("boot-headnode"), record("wait-for-nodes", "failed", HOSTILE)]
    mail, text = sent(cluster_with(tmp_path, phases, oscar_log="\x1b[32mStep 6\x1b[0m done\n"))
    assert mail.get_all("Subject") == [mail["Subject"]] and mail["forged"] is None
    subject = str(mail["Subject"])
    assert subject.startswith("oscarvt FAIL: c: wait-for-nodes: 'oscarnode2: \\x1b[31mKernel ")
    assert subject.isprintable()
    assert subject.endswith("\\r\\nSubject: forged\\n\\x07'"), subject
    assert "\nFailed in wait-for-nodes: 'oscarnode2: \\x1b[31mKernel " in text
    assert "'headnode: \\x1b]0;owned\\x07 no SSH'" in text  # the earlier run's message, in the phase table
    assert "'\\x1b[32mStep 6\\x1b[0m done'" in text  # OSCAR's log line
    assert "--- oscarnode2's console, last 1 lines (oscarnode2.log) ---\noscarnode2 login:\n" in text
    assert all(c.isprintable() or c == "\n" for c in text), text
