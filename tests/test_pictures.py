"""The pictures, drawn from a real run's data (``tests/data/phases-cdrom.json``: grab-logs' phases.json
of a passing `oscarvt run` with two nodes booted from CD): the timeline's bars and lanes are where
the records put them, in the colours the legend says; the trend sums each build's phases; what the
master reads from uploads is refused through links; a timeline sent through a real SMTP server
arrives as a PNG attachment; the state keeps a bounded history of each node's statuses."""

from __future__ import annotations

import copy
import email
import email.policy
import io
import json
import smtplib
from email.message import Message
from email.mime.text import MIMEText
from pathlib import Path
from typing import Any

import dacite
import pytest
from conftest import SmtpSink
from PIL import Image

from oscarvt import log, monitor
from oscarvt.phases.logs import draw_timeline
from oscarvt.phases.nodes import Node, take_in
from oscarvt.plotting import phase_colour, write_png
from oscarvt.state import HISTORY, ClusterState, NodeRecord, PhaseRecord, StateError, StatusSeen
from oscarvt.timeline import STAGES, TIMELINE, _imaging_shade, node_changes, timeline_figure
from oscarvt.waiting import wait_for
from oscarvt_master.reporters import PNG, attach_picture, timeline_of
from oscarvt_master.trend import TREND, last_builds, trend_figure, write_trend
from oscarvt_master.uploaded import read_uploaded

DATA = json.loads((Path(__file__).parent / "data" / "phases-cdrom.json").read_text())
WHITE = (255, 255, 255)


def records(data: dict[str, Any]) -> tuple[list[PhaseRecord], dict[str, NodeRecord]]:
    strict = dacite.Config(strict=True)
    return ([dacite.from_dict(PhaseRecord, p, config=strict) for p in data["phases"]],
            {name: dacite.from_dict(NodeRecord, n, config=strict) for name, n in data["nodes"].items()})


def rgb(colour: str) -> tuple[int, int, int]:
    value = colour.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def pale(colour: str, alpha: float = 0.35) -> tuple[int, int, int]:
    """``colour`` drawn with ``alpha`` over white."""
    return tuple(round(alpha * c + (1 - alpha) * 255) for c in rgb(colour))  # type: ignore[return-value]


def near(found: tuple[int, ...], wanted: tuple[int, int, int], slack: int = 3) -> bool:
    return all(abs(a - b) <= slack for a, b in zip(found[:3], wanted, strict=True))


class Drawn:
    """A figure written as a PNG and read back, with its axes' data mapped to the PNG's pixels."""

    def __init__(self, fig: Any, path: Path) -> None:
        write_png(fig, path)
        self.fig = fig
        self.image = Image.open(path).convert("RGB")

    def at(self, axes: Any, x: float, y: float) -> tuple[int, int, int]:
        px, py = axes.transData.transform((x, y))
        return self.image.getpixel((int(px), int(self.image.height - py)))


def test_the_real_run_data_holds_every_stage_the_timeline_draws():
    """The data itself: phases with their product's part, and each node's statuses as the driver saw them."""
    phases, nodes = records(DATA)
    assert [p.phase for p in phases][:7] == ["copy-vm-image", "boot-headnode", "checkout-oscar", "start-oscar",
                                             "boot-compute-nodes", "wait-for-nodes", "finish-oscar"]
    for node in nodes.values():
        codes = [seen.status for seen in node.history]
        assert codes[0] == 0 and codes[-1] == monitor.BOOTED and monitor.IMAGED in codes, codes
        assert any(0 < code < 100 for code in codes) and "restarted" in node.times and node.started
        assert [seen.time for seen in node.history] == sorted(seen.time for seen in node.history)


def test_the_timeline_draws_each_phase_and_each_node_stage_where_the_records_put_them(tmp_path):
    phases, nodes = records(DATA)
    now = max(p.end or p.start for p in phases) + 3
    drawn = Drawn(timeline_figure(phases, nodes, now, "cluster 3: 2 nodes, TCG"), tmp_path / TIMELINE)
    assert (tmp_path / TIMELINE).read_bytes().startswith(PNG)
    assert drawn.image.width == 1400 and 400 < drawn.image.height < 1000
    top, lanes = drawn.fig.axes
    names = [label.get_text() for label in top.get_yticklabels()]
    assert names == list(dict.fromkeys(p.phase for p in phases))
    origin = phases[0].start
    for record in phases:
        start, end = record.start - origin, (record.end or now) - origin
        row = names.index(record.phase)
        harness_end = end - (record.product_seconds or 0)
        if _pixels(top, harness_end - start) >= 8:  # its own time is pale
            assert near(drawn.at(top, (start + harness_end) / 2, row), pale(phase_colour(record.phase))), record
        if _pixels(top, record.product_seconds or 0) >= 20:  # the product's part is solid, hatched in white
            strip = [drawn.at(top, harness_end + (end - harness_end) * k / 40, row) for k in range(1, 40)]
            assert any(near(pixel, rgb(phase_colour(record.phase))) for pixel in strip), record
            assert any(near(pixel, WHITE, 40) for pixel in strip), record
    assert [label.get_text() for label in lanes.get_yticklabels()] == list(nodes)
    for row, node in enumerate(nodes.values()):
        changes = node_changes(node, origin)
        assert changes[0].stage == "booted" and changes[-1].stage == "booted from its disk"
        for change, following in zip(changes, changes[1:], strict=False):
            if _pixels(lanes, following.at - change.at) < 5:
                continue  # too narrow to sample between its marks
            wanted = _imaging_shade(change.percent) if change.stage == "imaging" else STAGES[change.stage]
            assert near(drawn.at(lanes, (change.at + following.at) / 2, row), rgb(wanted)), (change, following)
        end_of_lane = (now - origin + changes[-1].at) / 2
        assert near(drawn.at(lanes, end_of_lane, row), rgb(STAGES["booted from its disk"]))


def test_a_failed_phase_is_outlined_in_red_and_named_in_the_title(tmp_path):
    data = copy.deepcopy(DATA)
    data["phases"][5].update(result="failed", message="oscarnode2: no progress for 600s (last: imaging 40%)")
    phases, nodes = records(data)
    fig = timeline_figure(phases, nodes, phases[-1].start + 3, "cost $5 $x^2$")  # text drawn as it is
    drawn = Drawn(fig, tmp_path / "failed.png")
    top = drawn.fig.axes[0]
    assert top.get_title(loc="left") == "cost $5 $x^2$: failed in wait-for-nodes"
    record = phases[5]
    x = (record.start + (record.end or 0)) / 2 - phases[0].start
    column = [drawn.at(top, x, 5 + dy / 100) for dy in range(-40, 41)]
    assert any(near(pixel, rgb("#d62728"), 10) for pixel in column)  # the red outline above and below


def test_a_state_without_node_records_draws_the_phases_alone(tmp_path):
    phases, _ = records(DATA)
    drawn = Drawn(timeline_figure(phases[:3], {}, phases[3].start, "cluster 9: 0 nodes"), tmp_path / "t.png")
    assert len(drawn.fig.axes) == 1 and drawn.image.height < 400


def build_folder(root: Path, data: list[tuple[int, dict[str, Any] | str]]) -> Path:
    """A builder's uploaded logs: ``BUILDER/NUMBER/phases.json`` for each (number, content)."""
    builder = root / "b1"
    for number, content in data:
        (builder / str(number)).mkdir(parents=True)
        text = content if isinstance(content, str) else json.dumps(content)
        (builder / str(number) / "phases.json").write_text(text)
    return builder


def test_the_trend_sums_each_builds_phases_and_leaves_out_what_is_not_a_build(tmp_path):
    failed = copy.deepcopy(DATA)
    failed["phases"][6]["result"] = "failed"
    slow = copy.deepcopy(DATA)
    slow["phases"][5]["seconds"] *= 2
    odd = copy.deepcopy(DATA)
    odd["phases"][1]["seconds"] = 1e12  # past a week: not taken
    odd["phases"][2]["phase"] = "<b>x</b>"  # not a phase name: not taken
    builder = build_folder(tmp_path, [(3, DATA), (4, failed), (5, "{not json"), (11, slow), (12, odd),
                                      (13, {"phases": "no"})])
    (builder / "14").symlink_to(builder / "3")  # a link is no build
    (builder / "15").mkdir()
    (builder / "15" / "phases.json").symlink_to(builder / "3" / "phases.json")
    (builder / "latest").mkdir()
    builds = last_builds(builder)
    assert [b.number for b in builds] == [3, 4, 11, 12]
    assert [b.failed for b in builds] == [False, True, False, False]

    def summed(data: dict[str, Any]) -> float:
        return sum(p["seconds"] for p in data["phases"] if p["seconds"] is not None and p["seconds"] < 7 * 86400
                   and p["phase"] != "<b>x</b>")
    assert [round(sum(b.seconds.values()), 2) for b in builds] == [round(summed(d), 2) for d in (DATA, failed, slow,
                                                                                                odd)]
    assert builds[0].product == pytest.approx(sum(p["product_seconds"] or 0 for p in DATA["phases"]))
    assert write_trend(builder, "b1") == 4 and (builder / TREND).read_bytes().startswith(PNG)
    assert [b.number for b in last_builds(builder, count=2)] == [11, 12]

    fig = trend_figure("b1", builds)
    drawn = Drawn(fig, tmp_path / "trend.png")
    axes = fig.axes[0]
    labels = axes.get_xticklabels()
    assert [label.get_text() for label in labels] == ["#3", "#4", "#11", "#12"]
    assert [label.get_color() for label in labels] == ["black", "#d62728", "black", "black"]
    for x, build in enumerate(builds):
        low = 0.0
        for name in [n for n in build.seconds if n in builds[0].seconds]:
            high = low + build.seconds[name]
            if _pixels_y(axes, high - low) >= 6:  # the product's line may cross one side of the bar
                assert any(near(drawn.at(axes, x + side, (low + high) / 2), rgb(phase_colour(name)))
                           for side in (-0.25, 0.25)), (build.number, name)
            low = high
        assert near(drawn.at(axes, x + 0.25, sum(build.seconds.values()) * 1.03), WHITE, 30)  # above its bar


def test_the_master_reads_uploads_only_as_small_regular_files_without_links(tmp_path):
    root = tmp_path / "logs"
    (root / "b1" / "1").mkdir(parents=True)
    (root / "b1" / "1" / "timeline.png").write_bytes(PNG + b"rest")
    (root / "b2").symlink_to(root / "b1")
    (root / "b1" / "2").mkdir()
    (root / "b1" / "2" / "timeline.png").symlink_to(root / "b1" / "1" / "timeline.png")
    (root / "b1" / "3").mkdir()
    (root / "b1" / "3" / "timeline.png").write_bytes(b"<svg onload=alert(1)>")
    assert read_uploaded(root, "b1/1/timeline.png", 100) == PNG + b"rest"
    assert read_uploaded(root, "b1/1/timeline.png", 5) is None  # larger than asked for
    for relative in ("b2/1/timeline.png", "b1/2/timeline.png", "b1/1", "b1/../b1/1/timeline.png", "b1/9/x"):
        assert read_uploaded(root, relative, 100) is None, relative
    assert timeline_of(root, {"builder": {"name": "b1"}, "number": 1}) == PNG + b"rest"
    assert timeline_of(root, {"builder": {"name": "b1"}, "number": 3}) is None  # not a PNG
    assert timeline_of(root, {"builder": {"name": ".."}, "number": 1}) is None


def test_a_timeline_attached_to_a_mail_arrives_through_smtp_as_a_png(tmp_path, smtp_sink: SmtpSink):
    phases, nodes = records(DATA)
    write_png(timeline_figure(phases, nodes, phases[-1].start + 3, "cluster 3"), tmp_path / TIMELINE)
    picture = (tmp_path / TIMELINE).read_bytes()
    plain = Message()  # Buildbot's form of a mail without attachments
    plain.set_payload("Build: http://127.0.0.1/#/builders/1/builds/3\n".encode(), "utf-8")
    plain.set_type("text/plain")
    plain["Subject"] = "oscarvt success: b1 build 3"
    plain["From"] = "oscarvt@example.org"
    message = attach_picture(plain, picture, TIMELINE)
    message["To"] = "dev@example.org"
    host, port = smtp_sink.address.split(":")
    with smtplib.SMTP(host, int(port), timeout=30) as smtp:
        smtp.send_message(message)
    arrived = wait_for(lambda: smtp_sink.received[0] if smtp_sink.received else None, timeout=30, what="the mail")
    mail = email.message_from_bytes(arrived.as_bytes(), policy=email.policy.default)
    assert str(mail["Subject"]) == "oscarvt success: b1 build 3"
    assert "builds/3" in mail.get_body(("plain",)).get_content()
    parts = {part.get_filename(): part for part in mail.walk() if part.get_filename()}
    assert parts[TIMELINE].get_content_type() == "image/png"
    assert parts[TIMELINE].get_payload(decode=True) == picture
    multipart = attach_picture(MIMEText("body"), PNG, "x.png")
    assert multipart.is_multipart() and len(multipart.get_payload()) == 2  # type: ignore[arg-type]


def _pixels(axes: Any, seconds: float) -> float:
    left, right = axes.get_xlim()
    return seconds / (right - left) * axes.bbox.width


def _pixels_y(axes: Any, seconds: float) -> float:
    low, high = axes.get_ylim()
    return seconds / (high - low) * axes.bbox.height


def state_text(nodes: dict[str, Any]) -> str:
    return json.dumps({"cluster_id": 3, "spec": {}, "nodes": nodes, "vms": {
        "headnode": {"role": "headnode", "index": 0, "mac": "52:54:00:03:03:01", "ip": "192.168.77.1"}}})


def test_a_state_from_before_the_history_loads_and_a_damaged_history_is_named():
    old = {name: {"status": node["status"], "times": node["times"]} for name, node in DATA["nodes"].items()}
    state = ClusterState.from_json(state_text(old))
    assert all(node.history == [] and node.started is None for node in state.nodes.values())
    assert ClusterState.from_json(state_text(DATA["nodes"])).nodes["oscarnode1"].history[0] == StatusSeen(
        DATA["nodes"]["oscarnode1"]["history"][0]["time"], 0)
    damaged = copy.deepcopy(DATA["nodes"])
    damaged["oscarnode2"]["history"][3]["status"] = "40"
    with pytest.raises(StateError, match=r'"nodes.history.status"'):
        ClusterState.from_json(state_text(damaged))


def test_a_guest_that_reports_without_end_leaves_the_first_and_last_changes_only():
    """A node whose installer flips between two statuses a thousand times: the history keeps 200."""
    line = "2026-12-03 09:14:16 mac=52:54:00:55:d9:02:ip=192.168.77.2:host=oscarnode1:kernel=6.1.0:ncpus=1:status={}"
    node = Node("oscarnode1", "192.168.77.2", started=1.0, console_offset=0, mac="52:54:00:55:d9:02")
    statuses = [1 + k % 2 for k in range(1000)]
    take_in([line.format(status) for status in statuses], [], {"oscarnode1": node})
    assert len(node.history) == HISTORY and node.status == statuses[-1]
    kept = [seen.status for seen in node.history]
    assert kept == statuses[:HISTORY // 2] + statuses[-HISTORY // 2:]
    take_in([line.format(statuses[-1])] * 5, [], {"oscarnode1": node})  # the same status again is no change
    assert len(node.history) == HISTORY and node.history[-1].status == statuses[-1]


def test_a_timeline_that_cannot_be_drawn_is_one_progress_line_and_no_picture(tmp_path, monkeypatch):
    """grab-logs goes on without the picture: a folder that is not there, a state whose times are not numbers
    (an earlier grab's picture is removed, not left to stand for this one)."""
    printed = io.StringIO()
    monkeypatch.setattr(log, "_stream", printed)  # the progress lines
    state = ClusterState.from_json(state_text(DATA["nodes"]))
    state.phases = records(DATA)[0]
    draw_timeline(state, tmp_path / "gone" / TIMELINE)
    assert "timeline.png not drawn: FileNotFoundError" in printed.getvalue()
    (tmp_path / TIMELINE).write_bytes(PNG + b"an earlier grab's")
    state.phases[0].start = float("nan")
    draw_timeline(state, tmp_path / TIMELINE)
    lines = [line for line in printed.getvalue().splitlines() if "not drawn" in line]
    assert len(lines) == 2 and "timeline.png not drawn: ValueError" in lines[1], lines
    assert not (tmp_path / TIMELINE).exists() and list(tmp_path.iterdir()) == []  # no temporary file left either


def test_a_status_that_is_no_status_code_is_passed_over_not_a_crash():
    """The monitor's lines are the guest's: 5000 digits, a superscript two or Arabic digits are no status."""
    line = "2026-12-03 09:14:16 mac=52:54:00:55:d9:02:ip=192.168.77.2:host=oscarnode1:kernel=6.1.0:ncpus=1:status={}"
    node = Node("oscarnode1", "192.168.77.2", started=1.0, console_offset=0, mac="52:54:00:55:d9:02")
    take_in([line.format("9" * 5000), line.format("\u00b2"), line.format("\u0663"), line.format("40")], [],
            {"oscarnode1": node})
    assert node.status == 40 and [seen.status for seen in node.history] == [40]


def test_a_power_cycled_node_is_marked_where_its_second_network_boot_began(tmp_path):
    """wait-for-nodes power-cycles a node silent after its network boot (``times["power-cycled"]``, from its
    first start): its lane shows a second "booted" mark there, its statuses after it."""
    data = copy.deepcopy(DATA)
    name, node = next(iter(data["nodes"].items()))
    node["started"] -= 120.0  # first powered on 120 s earlier, and silent until the power-cycle
    node["times"] = {stage: seconds + 120.0 for stage, seconds in node["times"].items()}
    node["times"]["power-cycled"] = 120.0
    phases, nodes = records(data)
    origin = phases[0].start
    changes = node_changes(nodes[name], origin)
    assert [(c.stage, c.label) for c in changes[:2]] == [("booted", "booted"), ("booted", "power-cycled")]
    assert changes[1].at - changes[0].at == pytest.approx(120.0)
    assert changes[2].at > changes[1].at
    fig = timeline_figure(phases, nodes, phases[-1].end or phases[-1].start, "power-cycled")
    drawn = Drawn(fig, tmp_path / "cycled.png")
    labels = [text.get_text() for text in drawn.fig.axes[1].texts]
    assert labels.count("power-cycled") == 1 and labels.count("booted") == len(nodes), labels
