"""A builder's recent builds as triage, the pass rate and the mail see them: a bisection's probe builds
(property ``PROBE_OF``, the red build's number or the bisect build's) are not builds of the builder's own."""

from __future__ import annotations

from typing import Any, AsyncIterator, Callable

Data = dict[str, Any]  # a build as Buildbot's data API gives it; properties, name to value

PROBE_OF = "probe_of"  # build property of a probe build (set by oscarvt_master.bisect)


async def recent_builds(master: Any, builderid: int, limit: int,
                        wanted: Callable[[Data], bool]) -> AsyncIterator[tuple[Data, Data]]:
    """The builder's newest ``limit`` builds, newest first, those ``wanted`` (given Buildbot's build data) and not
    probes: each with its properties (name to value)."""
    builds = await master.data.get(("builders", builderid, "builds"), order=["-number"], limit=limit)
    for build in builds:
        if not wanted(build):
            continue
        stored = await master.db.builds.getBuildProperties(build["buildid"])
        properties = {name: value for name, (value, _) in stored.items()}
        if not properties.get(PROBE_OF):
            yield build, properties
