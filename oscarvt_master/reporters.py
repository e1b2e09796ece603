"""Mail by blame: the product's results to its developers, the harness's trouble to the admins.

A build's result says who is at fault (see ``oscarvt.errors``): SUCCESS and FAILURE are
the product's, and go to ``mail.to`` as ``mail.mode`` asks; EXCEPTION (bad input, or
infrastructure trouble after its retries) and RETRY (infrastructure trouble, the build runs
again) go to ``mail.admins`` only, never to the developers. A FAILURE whose clean-up then
failed too (the ``harness_trouble`` property: a VM left running) goes to both. Each mail
names the blame, and has the build's timeline attached (``timeline.png`` from its uploaded logs,
``oscarvt.timeline``) when there is one: a PNG of at most ``PICTURE_MAX`` bytes, read without
following links (``oscarvt_master.uploaded``).
"""

from __future__ import annotations

from email.message import Message
from email.mime.image import MIMEImage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path
from typing import Any

from buildbot.plugins import reporters
from buildbot.process.results import EXCEPTION, RETRY
from buildbot.reporters.generators.build import BuildStatusGenerator
from buildbot.reporters.message import MessageFormatter
from twisted.internet import defer

from oscarvt.timeline import TIMELINE
from oscarvt_master.settings import Mail
from oscarvt_master.uploaded import read_uploaded

MAIL_LOGS = ["attach-logs.oscarinstall.log", "attach-logs.failing console", "attach-logs.summary.txt"]
MAIL_SUBJECT = "oscarvt {{ result_names[results] }}: {{ buildername }} build {{ build['number'] }}"
MAIL_TEMPLATE = """\
{{ summary }}
{% if build['properties'].get('blame') %}Blame: {{ build['properties']['blame'][0] }}
{% endif %}{% if build['properties'].get('harness_trouble') %}Infrastructure, for the admins: \
{{ build['properties']['harness_trouble'][0] }}
{% endif %}
Build: {{ build_url }}
Builder: {{ buildername }}   Worker: {{ workername }}
{% for step in build['steps'] if step['results'] not in (None, 0, 3) -%}
Step {{ step['name'] }}: {{ step['state_string'] }}
{% endfor %}
The OSCAR log, the failing node's console, the phase summary and the build's timeline (a picture) are attached.
"""
HARNESS_RESULTS = (EXCEPTION, RETRY)
PNG = b"\x89PNG\r\n\x1a\n"
PICTURE_MAX = 5 * 1024 * 1024


class ProductMail(BuildStatusGenerator):
    """The settings' modes, for the product's results only (never an EXCEPTION or RETRY)."""

    def is_message_needed_by_results(self, build: dict[str, Any]) -> bool:
        return build["results"] not in HARNESS_RESULTS and super().is_message_needed_by_results(build)


class HarnessMail(BuildStatusGenerator):
    """Every build that ended in EXCEPTION or RETRY (bad input or infrastructure trouble), and
    a FAILURE whose clean-up failed too."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(mode="all", **kwargs)

    def is_message_needed_by_results(self, build: dict[str, Any]) -> bool:
        return build["results"] in HARNESS_RESULTS or "harness_trouble" in build.get("properties", {})


class PictureMail(reporters.MailNotifier):  # type: ignore[name-defined,misc]
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
    found = [_notifier(mail, host, int(port), mail.to, ProductMail(mode=mode, builders=builders,
                                                                   message_formatter=_formatter()), logs_folder)]
    if mail.admins:
        found.append(_notifier(mail, host, int(port), mail.admins,
                               HarnessMail(builders=builders, message_formatter=_formatter()), logs_folder))
    return found


def _formatter() -> MessageFormatter:
    return MessageFormatter(template=MAIL_TEMPLATE, template_type="plain", want_logs_content=MAIL_LOGS,
                            want_properties=True, subject=MAIL_SUBJECT)


def _notifier(mail: Mail, host: str, port: int, to: list[str], generator: BuildStatusGenerator,
              logs_folder: str | None) -> Any:
    return PictureMail(fromaddr=mail.sender, relayhost=host, smtpPort=port, sendToInterestedUsers=False,
                       extraRecipients=to, generators=[generator], logs_folder=logs_folder)
