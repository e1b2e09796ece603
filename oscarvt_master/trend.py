"""A builder's trend as a picture: how long each phase took over its last builds.

The ``pictures`` step (``oscarvt_master.pictures``) draws it after each build from the
``phases.json`` that grab-logs wrote into each build's uploaded logs (``public_html/logs/BUILDER/
NUMBER``), the last ``BUILDS`` of them, as ``public_html/logs/BUILDER/trend.png``: a bar per
build stacked by phase (the timeline's colours), a line for the seconds the build waited on OSCAR
and its nodes, and the numbers of failed builds in red. What it reads came from a worker: a file
is read only as ``oscarvt_master.uploaded`` allows (no links, at most ``MAX_FILE`` bytes), and of
it only phase names (short, lower case), seconds (0 to a week) and results.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oscarvt.phase_table import PHASES
from oscarvt.plotting import figure, phase_colour, write_png
from oscarvt_master.uploaded import read_uploaded

if TYPE_CHECKING:
    from matplotlib.figure import Figure

BUILDS = 30
MAX_FILE = 1 << 20
MAX_SECONDS = 7 * 86400
TREND = "trend.png"
PHASE_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}")
FAILED = "#d62728"


@dataclass
class BuildTimes:
    """One build's seconds per phase (a phase run twice counts both), of which the product's, and its result."""

    number: int
    seconds: dict[str, float] = field(default_factory=dict)
    product: float = 0.0
    failed: bool = False


def last_builds(folder: Path, count: int = BUILDS) -> list[BuildTimes]:
    """The last ``count`` builds under the builder's ``folder`` with a readable ``phases.json``, oldest first."""
    numbers = sorted(int(path.name) for path in folder.iterdir()
                     if path.name.isascii() and path.name.isdigit() and len(path.name) < 10)
    found: list[BuildTimes] = []
    for number in reversed(numbers):
        build = read_build(folder, number)
        if build is not None:
            found.insert(0, build)
            if len(found) == count:
                break
    return found


def read_build(folder: Path, number: int) -> BuildTimes | None:
    """Build ``number``'s times from its ``phases.json``; None if it has none that makes sense."""
    data = read_uploaded(folder, f"{number}/phases.json", MAX_FILE)
    try:
        phases = json.loads(data or b"null")["phases"]
    except (ValueError, TypeError, KeyError, RecursionError):
        return None
    if not isinstance(phases, list):
        return None
    build = BuildTimes(number)
    for phase in phases:
        name, seconds = _field(phase, "phase"), _seconds(_field(phase, "seconds"))
        if not isinstance(name, str) or not PHASE_NAME.fullmatch(name) or seconds is None:
            continue  # grab-logs wrote it while running (no seconds yet), or it is not a phase
        build.seconds[name] = build.seconds.get(name, 0.0) + seconds
        build.product += min(_seconds(_field(phase, "product_seconds")) or 0.0, seconds)
        build.failed |= _field(phase, "result") == "failed"
    return build if build.seconds else None


def write_trend(folder: Path, builder: str, count: int = BUILDS, note: str = "") -> int:
    """Draw the trend of the builder whose uploaded logs are in ``folder`` as ``folder/trend.png`` (``note``
    under its title, e.g. the pass rate); return how many builds it shows (none: nothing is drawn)."""
    builds = last_builds(folder, count)
    if builds:
        write_png(trend_figure(builder, builds, note), folder / TREND)
    return len(builds)


def trend_figure(builder: str, builds: list[BuildTimes], note: str = "") -> Figure:
    """Stacked bars of each build's phase seconds, the product's seconds as a line, failed builds in red."""
    fig = figure(max(900, 140 + 34 * len(builds) + 310), 560)
    axes = fig.add_axes((90 / fig.bbox.width, 0.14, 1 - 400 / fig.bbox.width, 0.76))
    known = list(PHASES)
    names = sorted({name for b in builds for name in b.seconds},
                   key=lambda name: (known.index(name) if name in known else len(known), name))
    xs = range(len(builds))
    below = [0.0] * len(builds)
    for name in names:
        heights = [b.seconds.get(name, 0.0) for b in builds]
        axes.bar(xs, heights, bottom=below, width=0.7, color=phase_colour(name), label=name)
        below = [low + high for low, high in zip(below, heights, strict=True)]
    axes.plot(xs, [b.product for b in builds], color="black", marker="o", markersize=4, linewidth=1.2,
              label="waiting on OSCAR and its nodes")
    axes.set_xticks(list(xs), [f"#{b.number}" for b in builds], rotation=90 if len(builds) > 15 else 0)
    for label, build in zip(axes.get_xticklabels(), builds, strict=True):
        if build.failed:
            label.set_color(FAILED)
            label.set_fontweight("bold")
    axes.set_xlim(-0.6, max(len(builds), 4) - 0.4)  # a first build is not one wide bar
    axes.set_ylim(0, max(below) * 1.08 or 1.0)
    axes.set_ylabel("seconds")
    axes.set_xlabel("build (failed builds in red)")
    axes.grid(axis="y", color="#dddddd", linewidth=0.8)
    axes.set_axisbelow(True)
    last = f"last {len(builds)} builds" if len(builds) > 1 else "its first build with logs"
    title = f"{builder}: seconds per phase, {last}" + (f"\n{note}" if note else "")
    axes.set_title(title, loc="left", fontsize=12, parse_math=False)
    handles, labels = axes.get_legend_handles_labels()
    axes.legend(handles[::-1], labels[::-1], loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    return fig


def _field(phase: Any, key: str) -> Any:
    return phase.get(key) if isinstance(phase, dict) else None


def _seconds(value: Any) -> float | None:
    """``value`` if it is a number of seconds from 0 to a week, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) and 0 <= value <= MAX_SECONDS else None
