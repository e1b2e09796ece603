"""What finding the first bad commit costs, as JSON: probes and minutes for 8 and 32 commits.

    bench/bisection.py [--build-seconds 70]

For each range of ``n`` commits (the red build's revision the last) and every position of the first
bad commit in it, the search of ``oscarvt_master.bisection`` runs against outcomes made up from that
position (no builds): the probes it needed (max and mean over the positions), the issue's bound
ceil(log2 n) + 1, and the minutes those probes take at one build's seconds each. Also the probes
for a range where no commit is bad (the last green revision fails now too, or the red one passes now).

A build's seconds are ``--build-seconds``, else the warm oscar-mini build in Buildbot that
docs/performance.md states (``the demo's build in Buildbot, CD``), else 100; ``build_seconds_from``
says which. Needs no VM and no network.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
from pathlib import Path
from typing import Any

from oscarvt_master.bisection import Bisection, Outcome, Probe

SIZES = (8, 32)
PERFORMANCE = Path(__file__).parent.parent / "docs" / "performance.md"
BUILD_ROW = "| the demo's build in Buildbot"  # its measured column begins with the build's seconds
DEFAULT_BUILD_SECONDS = 100.0


def probes_needed(count: int, first_bad: int) -> int:
    """The probes the search needs over ``count`` commits whose first bad revision is at ``first_bad``
    (0: the last green one; count + 1: none)."""
    names = [f"rev{index}" for index in range(count + 1)]
    search = Bisection(names[0], names[1:])
    while (revision := search.next_probe()) is not None:
        bad = names.index(revision) >= first_bad
        search.record(revision, Probe(Outcome.BAD if bad else Outcome.GOOD))
    return search.probes


def build_seconds(given: float | None) -> tuple[float, str]:
    """A build's seconds and where they come from."""
    if given is not None:
        return given, "--build-seconds"
    try:
        lines = PERFORMANCE.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        if line.startswith(BUILD_ROW):
            columns = line.split("|")
            found = re.match(r"\s*(\d+(?:\.\d+)?) s\b", columns[3]) if len(columns) > 3 else None
            if found:
                row = columns[1].strip()
                return float(found.group(1)), f"docs/performance.md: {row} (oscar-mini 1+2, warm headnode)"
    return DEFAULT_BUILD_SECONDS, "default: docs/performance.md states no warm oscar-mini build"


def range_figures(count: int, seconds: float) -> dict[str, Any]:
    """The probes and minutes over every position of the first bad commit in ``count`` commits."""
    probes = [probes_needed(count, first_bad) for first_bad in range(1, count + 1)]
    return {
        "commits": count,
        "bound": math.ceil(math.log2(count)) + 1,
        "probes_max": max(probes),
        "probes_mean": round(statistics.mean(probes), 2),
        "minutes_max": round(max(probes) * seconds / 60, 1),
        "minutes_mean": round(statistics.mean(probes) * seconds / 60, 1),
        "probes_no_bad_commit": {"last_green_fails_too": probes_needed(count, 0),
                                 "red_passes_now": probes_needed(count, count + 1)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build-seconds", type=float, help="one probe build's seconds")
    seconds, source = build_seconds(parser.parse_args().build_seconds)
    print(json.dumps({"build_seconds": seconds, "build_seconds_from": source,
                      "ranges": [range_figures(count, seconds) for count in SIZES]}, indent=2))


if __name__ == "__main__":
    main()
