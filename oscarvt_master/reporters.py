"""Mail by blame: the product's results to its developers, the harness's trouble to the admins.

A build's result says who is at fault (see ``oscarvt.errors``): SUCCESS and FAILURE are
the product's, and go to ``mail.to`` as ``mail.mode`` asks; EXCEPTION (bad input, or
infrastructure trouble after its retries) and RETRY (infrastructure trouble, the build runs
again) go to ``mail.admins`` only, never to the developers. A FAILURE whose clean-up then
failed too (the ``harness_trouble`` property: a VM left running) goes to both. Each mail
names the blame.
"""

from __future__ import annotations

from typing import Any

from buildbot.plugins import reporters
from buildbot.process.results import EXCEPTION, RETRY
from buildbot.reporters.generators.build import BuildStatusGenerator
from buildbot.reporters.message import MessageFormatter

from oscarvt_master.settings import Mail

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
The OSCAR log, the failing node's console and the phase summary are attached.
"""
HARNESS_RESULTS = (EXCEPTION, RETRY)


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


def mail_reporters(mail: Mail, builders: list[str]) -> list[Any]:
    """One MailNotifier for the developers, one for the admins (if ``mail.admins`` names any), about
    the builds of ``builders`` (not the janitor's)."""
    host, port = mail.relay.rsplit(":", 1)
    mode: str | tuple[str, ...] = "all" if "all" in mail.mode else tuple(mail.mode)
    found = [_notifier(mail, host, int(port), mail.to, ProductMail(mode=mode, builders=builders,
                                                                   message_formatter=_formatter()))]
    if mail.admins:
        found.append(_notifier(mail, host, int(port), mail.admins,
                               HarnessMail(builders=builders, message_formatter=_formatter())))
    return found


def _formatter() -> MessageFormatter:
    return MessageFormatter(template=MAIL_TEMPLATE, template_type="plain", want_logs_content=MAIL_LOGS,
                            want_properties=True, subject=MAIL_SUBJECT)


def _notifier(mail: Mail, host: str, port: int, to: list[str], generator: BuildStatusGenerator) -> Any:
    return reporters.MailNotifier(fromaddr=mail.sender, relayhost=host, smtpPort=port, sendToInterestedUsers=False,
                                  extraRecipients=to, generators=[generator])
