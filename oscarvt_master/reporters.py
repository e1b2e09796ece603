"""Mail by blame: the product's results to its developers, the harness's trouble to the admins.

A build's result says who is at fault (see ``oscarvt.errors``): SUCCESS and FAILURE are
the product's, and go to ``mail.to`` as ``mail.mode`` asks; EXCEPTION (bad input, or
infrastructure trouble after its retries) and RETRY (infrastructure trouble, the build runs
again) go to ``mail.admins`` only, never to the developers. A FAILURE whose clean-up then
failed too (the ``harness_trouble`` property: a VM left running) goes to both. Each mail
names the blame, and has the build's timeline attached (``timeline.png`` from its uploaded logs,
``oscarvt.timeline``) when there is one: a PNG of at most ``PICTURE_MAX`` bytes, read without
following links (``oscarvt_master.uploaded``).

Each kind of mail says what its reader needs (``MailText``, laid out by ``MAIL_TEMPLATE``): a
success that every phase passed, the timings and what is attached, and no word of failure; a
product failure the phase and its message, the failing node and whether its console is attached;
clean-up trouble after OSCAR's failure (to the admins) what the host did and what may be left; bad
input the phase and its message (the file or flag and the problem); infrastructure trouble what the
host did and whether the build is retried. A final failure's subject ends with the failed phase and
its message. Text from the build (messages, step summaries) is quoted by ``oscarvt.errors.guest_line``:
a control character in it is shown escaped, never breaks the subject nor reaches a reader's terminal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import Message
from email.mime.image import MIMEImage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path
from typing import Any, ClassVar, Literal, Sequence

from buildbot.plugins import reporters
from buildbot.process.results import EXCEPTION, FAILURE, RETRY, SKIPPED, SUCCESS, WARNINGS, Results
from buildbot.reporters.generators.build import BuildStatusGenerator
from buildbot.reporters.message import MessageFormatter
from twisted.internet import defer

from oscarvt.errors import guest_line
from oscarvt.timeline import TIMELINE
from oscarvt_master.recent import PROBE_OF
from oscarvt_master.settings import BISECT, Mail
from oscarvt_master.uploaded import read_uploaded
from oscarvt_steps.steps import CLEANUP, PHASE_SECONDS, phase_property

MAIL_LOGS = ["attach-logs.oscarinstall.log", "attach-logs.failing console", "attach-logs.summary.txt"]
ATTACHED = {"oscarinstall.log": "OSCAR's log", "failing console": "the failing node's console",
            "summary.txt": "the phase summary"}  # what each of MAIL_LOGS is, in words
MAIL_SUBJECT = "oscarvt {{ result_names[results] }}: {{ buildername }} build {{ build['number'] }}{{ mail.cause }}"
MAIL_TEMPLATE = """\
{{ mail.headline }}
{% for line in mail.triage %}{{ line }}
{% endfor %}{% for line in mail.verdict %}{{ line }}
{% endfor %}
Build: {{ build_url }}
Builder: {{ buildername }}   Worker: {{ workername }}
{% for line in mail.details %}{{ line }}
{% endfor %}
{{ mail.attached }}
"""
# A bisect build's mail: its property "bisection" (the result, in a line; else the build's summary) as the
# subject's end, and "bisection_mail" (what Bisect wrote for people) as its text.
BISECT_SUBJECT = "oscarvt {{ (build['properties'].get('bisection') or [build['state_string']])[0][:140] }}"
BISECT_TEMPLATE = """\
{{ (build['properties'].get('bisection_mail') or [build['state_string']])[0] }}
Bisection: {{ build_url }}
"""
SUBJECT_MAX = 160  # characters of a subject
TRIAGE_LINES = 12  # of triage's lines at the top of a mail (its log has them all)
LINE_LIMIT = 2000  # characters of a message or summary quoted in the text
TEST_COUNTS = ("PASSED", "FAILED", "SKIPPED")  # the cluster_tests property's keys
INFRASTRUCTURE = "Blame: infrastructure (the host or the harness, not OSCAR)"
CLEAN_UP_NOT_RETRIED = "Not retried: clean-up never is. See to the worker: a VM or its disks may be left."
SHARE_KEYS = ("seconds", "product_seconds", "oscarvt_seconds", "buildbot_seconds", "harness_share")
Audience = Literal["developers", "admins"]
Kind = Literal["success", "warnings", "cancelled", "product", "clean-up", "bad input", "infrastructure"]
HARNESS_RESULTS = (EXCEPTION, RETRY)
PNG = b"\x89PNG\r\n\x1a\n"
PICTURE_MAX = 5 * 1024 * 1024


class ProductMail(BuildStatusGenerator):  # type: ignore[misc]  # buildbot has no type hints
    """The settings' modes, for the product's results only (never an EXCEPTION or RETRY), and never about a
    bisection's probe build (the bisection's own mail tells its result)."""

    def is_message_needed_by_props(self, build: dict[str, Any]) -> bool:
        return not _property(build, PROBE_OF) and super().is_message_needed_by_props(build)

    def is_message_needed_by_results(self, build: dict[str, Any]) -> bool:
        return build["results"] not in HARNESS_RESULTS and super().is_message_needed_by_results(build)


class HarnessMail(BuildStatusGenerator):  # type: ignore[misc]  # buildbot has no type hints
    """Every build that ended in EXCEPTION or RETRY (bad input or infrastructure trouble), and
    a FAILURE whose clean-up failed too."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(mode="all", **kwargs)

    def is_message_needed_by_results(self, build: dict[str, Any]) -> bool:
        return build["results"] in HARNESS_RESULTS or "harness_trouble" in build.get("properties", {})


class PictureMail(reporters.MailNotifier):  # type: ignore[misc]  # buildbot has no type hints
    """Buildbot's MailNotifier that also attaches each build's timeline from the uploaded logs under
    ``logs_folder`` (``BUILDER/NUMBER/timeline.png``)."""

    def checkConfig(self, *args: Any, logs_folder: str | None = None, **kwargs: Any) -> None:  # noqa: N802
        super().checkConfig(*args, **kwargs)

    def reconfigService(self, *args: Any, logs_folder: str | None = None, **kwargs: Any) -> Any:  # noqa: N802
        self.logs_folder = logs_folder
        return super().reconfigService(*args, **kwargs)

    @defer.inlineCallbacks
    def createEmail(self, msgdict: dict[str, Any], title: str, results: Any, builds: Any = None,  # noqa: N802
                    patches: Any = None, logs: Any = None) -> Any:
        message = yield super().createEmail(msgdict, title, results, builds, patches, logs)
        if not self.logs_folder or not builds:
            return message
        for build in builds:
            picture = timeline_of(Path(self.logs_folder), build)
            if picture is not None:
                name = TIMELINE if len(builds) == 1 else f"{build['builder']['name']}.{build['number']}.{TIMELINE}"
                message = attach_picture(message, picture, name)
        return message


def timeline_of(logs_folder: Path, build: dict[str, Any]) -> bytes | None:
    """The PNG timeline in the build's uploaded logs, if there is one (a PNG, not too large, no link)."""
    try:
        builder, number = str(build["builder"]["name"]), int(build["number"])
    except (KeyError, TypeError, ValueError):
        return None
    if "/" in builder or builder in (".", ".."):
        return None
    data = read_uploaded(logs_folder, f"{builder}/{number}/{TIMELINE}", PICTURE_MAX)
    return data if data is not None and data.startswith(PNG) else None


def attach_picture(message: Message, picture: bytes, filename: str) -> Message:
    """``message`` with the PNG ``picture`` attached as ``filename`` (made multipart if it was not)."""
    if not message.is_multipart():
        mixed = MIMEMultipart()
        for key, value in message.items():
            if key.lower() not in ("content-type", "content-transfer-encoding", "mime-version"):
                mixed[key] = value
        body = message.get_payload(decode=True)
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(message.get_payload())
        mixed.attach(MIMEText(text, message.get_content_subtype(), "utf-8"))
        message = mixed
    part = MIMEImage(picture, "png")
    part.add_header("Content-Disposition", "attachment", filename=filename)
    message.attach(part)
    return message


def mail_reporters(mail: Mail, builders: list[str], logs_folder: str | None = None) -> list[Any]:
    """One MailNotifier for the developers, one for the admins (if ``mail.admins`` names any), about
    the builds of ``builders`` (not the janitor's); each attaches the build's timeline from the uploaded
    logs under ``logs_folder``."""
    host, port = mail.relay.rsplit(":", 1)
    mode: str | tuple[str, ...] = "all" if "all" in mail.mode else tuple(mail.mode)
    developers = ProductMail(mode=mode, builders=builders,
                             message_formatter=VerdictFormatter("developers", logs_folder))
    found = [_notifier(mail, host, int(port), mail.to, developers, logs_folder)]
    bisections = BuildStatusGenerator(mode="all", builders=[BISECT], message_formatter=MessageFormatter(
        template=BISECT_TEMPLATE, template_type="plain", want_properties=True, subject=BISECT_SUBJECT))
    found.append(PictureMail(fromaddr=mail.sender, relayhost=host, smtpPort=int(port), sendToInterestedUsers=True,
                             extraRecipients=mail.to, generators=[bisections]))  # the author is its owner
    if mail.admins:
        admins = HarnessMail(builders=builders, message_formatter=VerdictFormatter("admins", logs_folder))
        found.append(_notifier(mail, host, int(port), mail.admins, admins, logs_folder))
    return found


class VerdictFormatter(MessageFormatter):  # type: ignore[misc]
    """Buildbot's MessageFormatter with ``MAIL_TEMPLATE`` and ``MAIL_SUBJECT``, and in their context the
    build's ``MailText`` as ``audience`` reads it (``mail``)."""

    compare_attrs: ClassVar[Sequence[str]] = ["audience", "logs_folder"]

    def __init__(self, audience: Audience, logs_folder: str | None = None) -> None:
        super().__init__(template=MAIL_TEMPLATE, template_type="plain", want_logs_content=MAIL_LOGS,
                         want_properties=True, subject=MAIL_SUBJECT)
        self.audience = audience
        self.logs_folder = logs_folder

    def buildAdditionalContext(self, master: Any, ctx: dict[str, Any]) -> None:  # noqa: N802 (Buildbot's name)
        super().buildAdditionalContext(master, ctx)
        build = ctx["build"]  # the generators here make build mails only, never a buildset's
        timeline = bool(self.logs_folder) and timeline_of(Path(str(self.logs_folder)), build) is not None
        ctx["mail"] = mail_text(build, self.audience, timeline)


@dataclass
class FailedPhase:
    """An oscarvt phase that failed in a build: its verdict's blame, its message (quoted, without its
    pointer to the logs: they are attached) and the VM it names."""

    name: str
    blame: str
    message: str
    vm: str | None


@dataclass
class MailText:
    """What one build's mail says; ``MAIL_TEMPLATE`` and ``MAIL_SUBJECT`` lay it out."""

    headline: str
    verdict: list[str] = field(default_factory=list)  # under the headline: the blame, what failed, retried or not
    cause: str = ""  # the subject's end after "oscarvt RESULT: BUILDER build N", for a final failure
    details: list[str] = field(default_factory=list)  # under the build's link: revision, steps, phases, figures
    attached: str = ""
    triage: list[str] = field(default_factory=list)  # under the headline: what changed since green (triage)


def mail_text(build: dict[str, Any], audience: Audience, timeline: bool) -> MailText:
    """The mail about ``build`` (a build dict as Buildbot's reporters get it) for ``audience``;
    ``timeline``: the build's timeline is attached. Whatever came from the build (messages, summaries)
    is quoted by ``guest_line``: a control character never breaks the subject nor reaches a terminal."""
    where = f"{build['builder']['name']} build {build['number']}"
    text = _TEXTS[mail_kind(build, audience)](build, where, failed_phases(build))
    prefix = f"oscarvt {Results[build['results']]}: {where}"
    text.cause = text.cause[:max(0, SUBJECT_MAX - len(prefix))]
    text.details = _details(build)
    triage = _property(build, "triage")
    if isinstance(triage, list) and triage:
        text.triage = [guest_line(str(line), LINE_LIMIT) for line in triage[:TRIAGE_LINES]] + [""]
    text.attached = _attached(build, timeline)
    return text


def mail_kind(build: dict[str, Any], audience: Audience) -> Kind:
    """Which mail ``build`` makes for ``audience`` (who gets it is ``ProductMail``'s and ``HarnessMail``'s)."""
    results = build["results"]
    if results == SUCCESS:
        return "success"
    if results == WARNINGS:
        return "warnings"
    if results == FAILURE:
        return "clean-up" if audience == "admins" and _property(build, "harness_trouble") else "product"
    if results == EXCEPTION and _property(build, "blame") == "bad input":
        return "bad input"
    if results in HARNESS_RESULTS:
        return "infrastructure"
    return "cancelled"


def failed_phases(build: dict[str, Any]) -> list[FailedPhase]:
    """The build's failed oscarvt phases, in the order of its steps (from their ``phase_*`` properties)."""
    found = []
    for step in build.get("steps") or []:
        record = _property(build, phase_property(str(step["name"])))
        if isinstance(record, dict) and record.get("result") == "failed":
            message = guest_line(str(record.get("message") or ""), LINE_LIMIT)
            vm = record.get("vm")
            found.append(FailedPhase(str(step["name"]), str(record.get("blame")), message,
                                     guest_line(str(vm), LINE_LIMIT) if vm else None))
    return found


def _property(build: dict[str, Any], name: str) -> Any:
    value = (build.get("properties") or {}).get(name)
    return value[0] if value else None


def _failure(build: dict[str, Any], failed: list[FailedPhase], blame: str) -> str:
    """What failed, as "NAME: why": the first phase of ``blame``, else the first step that failed (one of
    Buildbot's own, as the checkout, or one lost with its worker), else the build's summary."""
    phase = next((phase for phase in failed if phase.blame == blame), None)
    if phase is not None:
        return f"{phase.name}: {phase.message}"
    step = next((s for s in build.get("steps") or [] if s.get("results") in (FAILURE, EXCEPTION, RETRY)), None)
    if step is not None:
        return f"{step['name']}: {guest_line(str(step.get('state_string') or ''), LINE_LIMIT)}"
    return f"the build: {guest_line(str(build.get('state_string') or ''), LINE_LIMIT)}"


def _trouble(build: dict[str, Any]) -> str:
    """The clean-up trouble after OSCAR's failure ("PHASE: message", ``harness_trouble``), quoted; "" if none."""
    trouble = _property(build, "harness_trouble")
    return guest_line(str(trouble), LINE_LIMIT) if trouble else ""


def _success(build: dict[str, Any], where: str, failed: list[FailedPhase]) -> MailText:
    return MailText(f"OSCAR passed on {where}: every phase passed.")


def _warnings(build: dict[str, Any], where: str, failed: list[FailedPhase]) -> MailText:
    return MailText(f"OSCAR passed on {where}; its clean-up warned (the steps below).")


def _cancelled(build: dict[str, Any], where: str, failed: list[FailedPhase]) -> MailText:
    return MailText(f"{where} was stopped before its verdict.")


def _product(build: dict[str, Any], where: str, failed: list[FailedPhase]) -> MailText:
    failure = _failure(build, failed, "product")
    verdict = ["Blame: product (OSCAR or its nodes)", f"Failed in {failure}"]
    vm = next((phase.vm for phase in failed if phase.blame == "product"), None)
    if vm:
        verdict.append(f"Failing node: {vm}; its console is " + (
            "attached (attach-logs.failing console)." if _has_log(build, "failing console")
            else "not attached (see the build's logs)."))
    if trouble := _trouble(build):
        verdict.append(f"Clean-up trouble too, mailed to the admins: {trouble}")
    return MailText(f"OSCAR failed on {where}.", verdict, f": {failure}")


def _clean_up(build: dict[str, Any], where: str, failed: list[FailedPhase]) -> MailText:
    trouble = _trouble(build)
    verdict = [INFRASTRUCTURE, f"Failed in {trouble}", CLEAN_UP_NOT_RETRIED,
               f"The build stays OSCAR's failure, mailed to its developers: {_failure(build, failed, 'product')}"]
    return MailText(f"Clean-up trouble in {where}, after OSCAR's failure.", verdict,
                    f": infrastructure: {trouble}")


def _bad_input(build: dict[str, Any], where: str, failed: list[FailedPhase]) -> MailText:
    failure = _failure(build, failed, "bad input")
    verdict = ["Blame: bad input (a spec, flag, file or setting; not OSCAR's failure)", f"Failed in {failure}",
               "Not retried: it would fail the same way. Fix it, then force a build."]
    return MailText(f"Bad input stopped {where}.", verdict, f": bad input: {failure}")


def _infrastructure(build: dict[str, Any], where: str, failed: list[FailedPhase]) -> MailText:
    failure = _failure(build, failed, "infrastructure")
    if build["results"] == RETRY:
        verdict = [INFRASTRUCTURE, f"Failed in {failure}", "Retried: Buildbot runs the build again, on a new cluster."]
        return MailText(f"Infrastructure trouble in {where}: the build is retried.", verdict)
    cleaning = any(phase.name in CLEANUP for phase in failed if phase.blame == "infrastructure")
    verdict = [INFRASTRUCTURE, f"Failed in {failure}", CLEAN_UP_NOT_RETRIED if cleaning else
               "Not retried: the build had its retries (settings: retries). See to the host, then force a build."]
    return MailText(f"Infrastructure trouble in {where}: the build is not retried.", verdict,
                    f": infrastructure: {failure}")


_TEXTS = {"success": _success, "warnings": _warnings, "cancelled": _cancelled, "product": _product,
          "clean-up": _clean_up, "bad input": _bad_input, "infrastructure": _infrastructure}


def _details(build: dict[str, Any]) -> list[str]:
    """The revision built, each step that did not pass (nor was skipped), each phase run, the figures."""
    revision = _property(build, "got_revision")
    lines = [f"Revision: {guest_line(revision, LINE_LIMIT)}"] if isinstance(revision, str) and revision else []
    lines += [f"Step {step['name']}: {guest_line(str(step.get('state_string') or ''), LINE_LIMIT)}"
              for step in build.get("steps") or [] if step.get("results") not in (None, SUCCESS, SKIPPED)]
    phases = _phase_lines(build)
    return lines + (["", "Phases:", *phases] if phases else []) + _figures(build) + _reproduce(build)


def _reproduce(build: dict[str, Any]) -> list[str]:
    """The command that rebuilds the build by hand (``oscarvt_master.reproduce``), if its step set it."""
    command = _property(build, "reproduce")
    if not isinstance(command, str) or not command:
        return []
    cluster = f"{build['builder']['name']}-{build['number']}"
    return ["", f"Reproduce it on a host with oscarvt (the cluster {cluster} is kept for you; "
                f"'oscarvt destroy --cluster {cluster}' when done):", guest_line(command, 4 * LINE_LIMIT)]


def _phase_lines(build: dict[str, Any]) -> list[str]:
    """Each oscarvt phase the build ran: its result, its seconds and its step's summary."""
    times = _property(build, PHASE_SECONDS)
    lines = []
    for step in build.get("steps") or []:
        name = str(step["name"])
        record = _property(build, phase_property(name))
        if not isinstance(record, dict):
            continue
        entry = times.get(name) if isinstance(times, dict) else None
        seconds = entry.get("seconds") if isinstance(entry, dict) else None
        took = f"{seconds:.0f}s" if isinstance(seconds, (int, float)) else "-"
        summary = guest_line(str(step.get("state_string") or ""), LINE_LIMIT)
        lines.append(f"  {name:<20} {str(record.get('result')):<6} {took:>6}  {summary}")
    return lines


def _figures(build: dict[str, Any]) -> list[str]:
    """The cluster tests' counts and the build's time by who spent it, for those the build has."""
    lines = []
    tests = _property(build, "cluster_tests")
    if isinstance(tests, dict) and all(isinstance(tests.get(key), int) for key in TEST_COUNTS):
        passed, failed, skipped = (tests[key] for key in TEST_COUNTS)
        said = [f"{passed} of {passed + failed + skipped} passed"]
        said += [f"{failed} failed"] if failed else []
        said += [f"{skipped} skipped"] if skipped else []
        lines.append("OSCAR's cluster tests: " + ", ".join(said))
    share = _property(build, "harness_share")
    if isinstance(share, dict) and all(isinstance(share.get(key), (int, float)) for key in SHARE_KEYS):
        wall, product, oscarvt, buildbot, part = (float(share[key]) for key in SHARE_KEYS)
        lines.append(f"Time: {wall:.0f}s in all; OSCAR and its nodes {product:.0f}s; harness {wall - product:.0f}s "
                     f"({100 * part:.0f}%): oscarvt {oscarvt:.0f}s, Buildbot {buildbot:.0f}s")
    return lines


def _has_log(build: dict[str, Any], name: str) -> bool:
    return any(log["name"] == name and "content" in log for step in build.get("steps") or []
               for log in step.get("logs") or [])


def _attached(build: dict[str, Any], timeline: bool) -> str:
    """What the mail has attached, in words, with each file's name: the logs Buildbot attaches (those of
    ``MAIL_LOGS`` the build has, with their content) and the timeline."""
    said = [f"{ATTACHED.get(log['name'], log['name'])} ({log['stepname']}.{log['name']})"
            for step in build.get("steps") or [] for log in step.get("logs") or [] if "content" in log]
    said += ["the build's timeline (timeline.png)"] if timeline else []
    return "Attached: " + ", ".join(said) + "." if said else "Nothing is attached: the build uploaded no logs."


def _notifier(mail: Mail, host: str, port: int, to: list[str], generator: BuildStatusGenerator,
              logs_folder: str | None) -> Any:
    return PictureMail(fromaddr=mail.sender, relayhost=host, smtpPort=port, sendToInterestedUsers=False,
                       extraRecipients=to, generators=[generator], logs_folder=logs_folder)
