"""A run's timeline as a picture: where its time went, phase by phase and node by node.

Above, one row per phase (in the order they first ran): a bar from its start to its end in the
phase's colour (a phase still running, like grab-logs as it draws this, ends now), outlined in
red if it failed. Its solid, hatched part is the time it waited on OSCAR and its nodes
(``product_seconds``; the state keeps how long, not when, so it is drawn at the phase's end);
the pale rest is oscarvt's own (the harness's). Below, one lane per node, coloured by what it
was doing: booted (its VM started, the installer not heard from yet), imaging (deeper blue as the
percentage grows, each change marked), installed, rebooted (its installer's reboot, then the
driver starting it from its disk), booted from its disk, an error. A lane is named as OSCAR names
the node, its VM beside it when the names differ (``node5 (VM oscarnode13)``). Seconds run from the
first phase's start.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from oscarvt import monitor
from oscarvt.plotting import figure, phase_colour, write_png
from oscarvt.state import ClusterState, NodeRecord, PhaseRecord, node_label

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

TIMELINE = "timeline.png"  # its name in a logs folder (grab-logs)
WIDTH = 1400
MAX_LANES = 40  # nodes drawn; the others are counted in a note
LANE_LABEL = 30  # characters of a lane's name shown (the margin beside the lanes holds about that many)
FAILED = "#d62728"
STAGES = {  # a node's stage: its colour in the lanes and the legend
    "booted": "#d9d9d9", "imaging": "#4a89c8", "installed": "#fdae6b", "rebooted": "#b39ddb",
    "booted from its disk": "#31a354", "error": FAILED, "other status": "#969696"}


@dataclass
class Change:
    """A node's stage from ``at`` (seconds on the timeline) on, and its mark (``label``, or none)."""

    at: float
    stage: str
    label: str = ""
    percent: int = 0


def write_timeline(state: ClusterState, path: Path, now: float | None = None) -> None:
    """Draw ``state``'s timeline into ``path`` (PNG)."""
    accel = f", {state.accel.name.upper()}" if state.accel else ""
    title = f"cluster {state.cluster_id}: {len(state.node_vms())} nodes{accel}"
    write_png(timeline_figure(state.phases, state.nodes, time.time() if now is None else now, title), path)


def timeline_figure(phases: list[PhaseRecord], nodes: dict[str, NodeRecord], now: float, title: str) -> Figure:
    """The timeline of ``phases`` and ``nodes`` (``now`` ends what has not ended) under ``title``."""
    names = list(dict.fromkeys(p.phase for p in phases))
    lanes = [name for name, node in nodes.items() if node.started is not None][:MAX_LANES]
    fig = figure(WIDTH, picture_height(len(names), len(lanes)))
    grid = fig.add_gridspec(2 if lanes else 1, 1, height_ratios=[len(names) or 1, len(lanes)] if lanes else None,
                            left=0.14, right=0.86, top=1 - 60 / fig.bbox.height, bottom=110 / fig.bbox.height,
                            hspace=70 / (fig.bbox.height / 2))
    origin = min((p.start for p in phases), default=now)
    top = fig.add_subplot(grid[0])
    top.set_xlim(0, max(now - origin, 1.0) * 1.01)
    draw_phases(top, phases, names, origin, now)
    verdict = next((f"failed in {p.phase}" for p in phases if p.result == "failed"), "no phase failed")
    top.set_title(f"{title}: {verdict}", loc="left", fontsize=12, parse_math=False)
    bottom = top
    if lanes:
        bottom = fig.add_subplot(grid[1], sharex=top)
        end = max((p.end or now for p in phases if p.phase == "wait-for-nodes"), default=now)
        draw_nodes(bottom, {name: nodes[name] for name in lanes}, origin, end, now)
        more = len([n for n in nodes.values() if n.started is not None]) - len(lanes)
        if more:
            bottom.text(1.0, -0.2, f"{more} more nodes not drawn", transform=bottom.transAxes, ha="right")
    for axes in (top, bottom):
        axes.grid(axis="x", color="#dddddd", linewidth=0.8)
        axes.set_axisbelow(True)
    top.tick_params(labelbottom=not lanes)
    bottom.set_xlabel(f"seconds since {phases[0].phase if phases else 'the start'} started")
    legend(fig, lanes)
    return fig


def picture_height(rows: int, lanes: int) -> int:
    """The timeline's height in pixels with ``rows`` phase rows and ``lanes`` node lanes."""
    return 150 + 30 * rows + (44 * lanes + 70 if lanes else 0)


def draw_phases(axes: Axes, phases: list[PhaseRecord], names: list[str], origin: float, now: float) -> None:
    """A bar per phase run, the product's part hatched at its end, its seconds and result to its right."""
    axes.set_yticks(range(len(names)), names)
    axes.set_ylim(len(names) - 0.5, -0.5)
    for record in phases:
        row = names.index(record.phase)
        start, end = record.start - origin, (record.end or now) - origin
        colour = phase_colour(record.phase)
        failed = record.result == "failed"
        axes.barh(row, end - start, left=start, height=0.6, color=colour, alpha=0.35, edgecolor=colour)
        product = min(record.product_seconds or 0.0, end - start)
        if product > 0:
            axes.barh(row, product, left=end - product, height=0.6, color=colour, hatch="//", edgecolor="white",
                      linewidth=0)
        if failed:
            axes.barh(row, end - start, left=start, height=0.6, fill=False, edgecolor=FAILED, linewidth=2)
        said = {"passed": "", "failed": " failed", "running": " (running)"}[record.result]
        axes.text(end, row, f" {end - start:.0f}s{said}", va="center", fontsize=9,
                  color=FAILED if failed else "black")


def draw_nodes(axes: Axes, nodes: dict[str, NodeRecord], origin: float, end: float, now: float) -> None:
    """A lane per node: its stages as coloured spans, each change of status marked (percentages named)."""
    axes.set_yticks(range(len(nodes)), [lane_label(name, node) for name, node in nodes.items()])
    axes.set_ylim(len(nodes) - 0.5, -0.5)
    for row, node in enumerate(nodes.values()):
        changes = node_changes(node, origin)
        last_at, last_label = -1e9, ""
        for change, following in zip(changes, [*changes[1:], None], strict=True):
            stop = following.at if following else (now if change.stage == "booted from its disk" else end) - origin
            colour = _imaging_shade(change.percent) if change.stage == "imaging" else STAGES[change.stage]
            axes.barh(row, max(stop - change.at, 0.0), left=change.at, height=0.5, color=colour, linewidth=0)
            axes.plot([change.at, change.at], [row - 0.3, row + 0.3], color="black", linewidth=0.8)
            # a label goes where it does not touch the last one (7 pt: about 5 pixels a character, centred)
            if change.label and _pixels(axes, change.at - last_at) >= 3 * (len(last_label) + len(change.label)) + 8:
                axes.text(change.at, row - 0.32, change.label, fontsize=7, ha="center", va="bottom")
                last_at, last_label = change.at, change.label


def lane_label(name: str, node: NodeRecord) -> str:
    """A lane's name: the node as OSCAR names it, its VM ``name`` beside it (``node_label``), cut to fit."""
    label = node_label(name, node.client)
    return label if len(label) <= LANE_LABEL else label[:LANE_LABEL - 3] + "..."


def node_changes(node: NodeRecord, origin: float) -> list[Change]:
    """The node's stages in time order: started, each reported status, the driver's power-cycle of a node
    silent after its network boot, its restart from its disk."""
    started = node.started or origin
    changes = [Change(started - origin, "booted", "booted")]
    if "power-cycled" in node.times:
        changes.append(Change(started + node.times["power-cycled"] - origin, "booted", "power-cycled"))
    changes += [Change(seen.time - origin, *_stage(seen.status)) for seen in node.history]
    if "restarted" in node.times:
        changes.append(Change(started + node.times["restarted"] - origin, "rebooted", "restarted"))
    changes.sort(key=lambda change: change.at)
    return changes


def legend(fig: Figure, lanes: list[str]) -> None:
    """What the colours and hatching mean, under the axes."""
    from matplotlib.patches import Patch

    handles = [Patch(facecolor="#888888", alpha=0.35, label="phase: oscarvt's own time"),
               Patch(facecolor="#888888", hatch="//", edgecolor="white", label="phase: waiting on OSCAR and its nodes"),
               Patch(facecolor="white", edgecolor=FAILED, linewidth=2, label="phase failed")]
    if lanes:
        handles += [Patch(facecolor=colour, label=f"node: {stage}") for stage, colour in STAGES.items()]
    fig.legend(handles=handles, loc="lower center", ncol=5, fontsize=9, frameon=False)


def _stage(status: int) -> tuple[str, str, int]:
    """A status code's stage, its label in the lane and its percentage."""
    if status < 0:
        return "error", "error", 0
    if status < monitor.IMAGED:
        return "imaging", f"{status}%", status
    if status in (monitor.IMAGED, monitor.FINALIZING):
        return "installed", "installed", 100
    if status == monitor.BOOTED:
        return "booted from its disk", "up from disk", 100
    if status == monitor.REBOOTING:
        return "rebooted", "rebooted", 100
    return "other status", str(status)[:6], 100


def _imaging_shade(percent: int) -> str:
    """Pale blue at 0% to the imaging colour at 99%."""
    pale, deep = (0.80, 0.88, 0.97), (0.16, 0.38, 0.67)
    share = max(0, min(percent, 99)) / 99
    return "#" + "".join(f"{round(255 * (low + (high - low) * share)):02x}"
                         for low, high in zip(pale, deep, strict=True))


def _pixels(axes: Axes, seconds: float) -> float:
    """How many pixels ``seconds`` take on ``axes``."""
    left, right = axes.get_xlim()
    return seconds / max(right - left, 1e-9) * axes.bbox.width
