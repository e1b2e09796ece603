"""Flakiness in numbers: the force form's "repeat" field, and each builder's pass rate.

A flaky failure shows only over several builds of one revision. The force form's field "repeat"
(``RepeatedForce``) starts that many builds of the same revision at once, each with the property
``repeat`` ("2 of 5"), which also keeps Buildbot from collapsing them into one. ``pass_rate`` counts a
builder's recent builds that reached a verdict on OSCAR (passed, or failed by the product's fault;
probe builds and infrastructure trouble left out); the pictures step shows it beside the trend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from buildbot.plugins import schedulers
from buildbot.process.properties import Properties
from buildbot.process.results import FAILURE, SUCCESS
from buildbot.schedulers.forcesched import ValidationError

from oscarvt_master.recent import recent_builds

MAX_REPEAT = 20  # builds one press of the force form may start
RECENT = 20  # builds the pass rate counts


@dataclass(frozen=True)
class PassRate:
    """Of a builder's ``counted`` recent builds with a verdict on OSCAR, ``passed`` passed."""

    passed: int
    counted: int

    def text(self) -> str:
        """In words: "pass rate 80% (8 of 10 recent builds)"."""
        if not self.counted:
            return "no pass rate yet (no build with a verdict on OSCAR)"
        return f"pass rate {100 * self.passed // self.counted}% ({self.passed} of {self.counted} recent builds)"


async def pass_rate(master: Any, builderid: int, count: int = RECENT) -> PassRate:
    """The pass rate over the builder's newest ``count`` complete builds that passed or failed by the product's
    fault, probe builds left out."""
    passed = counted = 0
    async for build, _ in recent_builds(master, builderid, 5 * count,
                                        lambda b: b["complete"] and b["results"] in (SUCCESS, FAILURE)):
        counted += 1
        passed += build["results"] == SUCCESS
        if counted == count:
            break
    return PassRate(passed, counted)


class RepeatedForce(schedulers.ForceScheduler):  # type: ignore[misc]  # buildbot has no type hints
    """Buildbot's force form, whose property ``repeat`` (1 to ``MAX_REPEAT``) starts that many builds."""

    async def addBuildsetForSourceStampsWithDefaults(self, reason: str, sourcestamps: Any = None,  # noqa: N802
                                                     properties: Properties | None = None, **kwargs: Any) -> Any:
        times = properties.getProperty("repeat", 1) if properties is not None else 1
        if not isinstance(times, int) or not 1 <= times <= MAX_REPEAT:
            raise ValidationError(f"repeat: from 1 to {MAX_REPEAT} builds, not {times!r}")
        result = None
        for index in range(1, times + 1):
            each = Properties()
            if properties is not None:
                each.updateFromProperties(properties)
            each.setProperty("repeat", f"{index} of {times}", "Force Build Form")
            result = await super().addBuildsetForSourceStampsWithDefaults(reason, sourcestamps, properties=each,
                                                                          **kwargs)
        return result
