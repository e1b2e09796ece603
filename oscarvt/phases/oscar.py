"""start-oscar and finish-oscar: run OSCAR's install_cluster on the headnode, in the background.

start-oscar writes the input files, installs the driver's boot hook as ``--bootscript`` and
starts ``./install_cluster --cli IFACE`` from OSCAR's folder, as OSCAR asks to be started
(lib/OSCAR/Env.pm line 50), with ``OSCAR_VERBOSE=3`` so that it prints its steps' banners
(:mod:`oscarvt.oscar_output`), ``TERM=dumb`` as a terminal would set it (testing/testprint,
which prints each cluster test's result, dies without one: :mod:`oscarvt.oscar_tests`), the
answers for step 2's prompt on its stdin, detached from the
SSH session, its output going to ``OUTPUT`` on the headnode and its exit status to ``STATUS``.
A watchdog beside it (``WATCHDOG_SCRIPT``) stops it if its output runs away, before OSCAR's
log fills the headnode's disk. The hook tells the driver OSCAR is waiting for the nodes
(``REACHED``) and waits until wait-for-nodes writes ``RELEASE`` (``0``: every node booted;
``1``: give up, and OSCAR fails as it does when its boot script fails). finish-oscar follows
OSCAR to its end; OSCAR's exit status is the verdict. A failure names the step and OSCAR's own
line that says why; a loop (a menu reprinted forever) is stopped and named within seconds.
"""

from __future__ import annotations

import io
import shlex
import tarfile
import time
from pathlib import Path

from lxml import etree

from oscarvt import events, oscar_output, timing
from oscarvt.access import open_headnode
from oscarvt.cluster import ClusterDir
from oscarvt.errors import InfraError, InputError, ProductError
from oscarvt.inputs import CONSOLE_FILE, FLAG_FILES, INPUTS_DIR, input_files
from oscarvt.lines import complete_lines
from oscarvt.log import progress
from oscarvt.monitor import MONITOR_LOG, RSYNCD_LOG
from oscarvt.oscar_output import RepeatWatch, StepSeen
from oscarvt.oscar_run import HOOK, HOOK_SCRIPT, OSCAR_LOG, OUTPUT, REACHED, RELEASE, STATUS, WORK
from oscarvt.oscar_tests import MAX_TEXT, oscar_test_results
from oscarvt.phase_names import FINISH_OSCAR, START_OSCAR
from oscarvt.session import Session
from oscarvt.ssh import Connection, LogReader
from oscarvt.state import OscarRun

PIDFILE = f"{WORK}/install_cluster.pgid"  # its process group, to stop it
RUNAWAY = f"{WORK}/install_cluster.runaway"  # the watchdog's finding: "BYTES-IN-WINDOW TOTAL"
WATCHDOG = f"{WORK}/watchdog"
WATCHDOG_PID = f"{WORK}/watchdog.pid"
SEE_OUTPUT = f"see its output, {OUTPUT} on the headnode, or grab-logs"  # a verdict's pointer to the logs
TEST_REPORT = "/var/log/oscar/cluster_tests.xml"
STEP_8_BANNER = f"== {oscar_output.STEPS[8]}".encode()  # main_cli line 218, at VERBOSITY
VERBOSITY = 3  # OSCAR_VERBOSE: from 3 on, OSCAR's Logger prints the steps' banners (Logger.pm 52-66)
STOP_WAIT = 20  # half seconds for OSCAR's processes to end after a TERM, before a KILL
# Stop OSCAR's process group and wait until it is gone (KILL after STOP_WAIT), then its watchdog (a group
# as -PGID, without "--", which dash's kill does not take)
STOP_OSCAR = (f"if [ -s {PIDFILE} ]; then g=$(cat {PIDFILE}); kill -TERM -$g 2>/dev/null; n=0; "
              f"while kill -0 -$g 2>/dev/null && [ $n -lt {STOP_WAIT} ]; do sleep 0.5; n=$((n + 1)); done; "
              f"kill -KILL -$g 2>/dev/null; fi; rm -f {PIDFILE}; "
              f"p=$(cat {WATCHDOG_PID} 2>/dev/null); rm -f {WATCHDOG_PID}; "  # the PID only while it is the watchdog's
              f"if [ -n \"$p\" ] && grep -qs {WATCHDOG} /proc/$p/cmdline; then kill $p 2>/dev/null; fi")
MISSING = 97  # prepare's exit status when install_cluster is not there
POLL = 0.5         # seconds between looks at what the followed output brought (no SSH request)
WATCH_ROUND = 30   # seconds a watch for OSCAR's end runs on the headnode before the driver asks again
TAIL_BYTES = 65536  # of OSCAR's output read for the cause of a failure, or shown after a skip
SHOW_LIMIT = 1 << 20  # output left unread at the end beyond this is skipped down to its last TAIL_BYTES
SHOW_BATCH = 64 << 10  # of more than this coming at once (half a second), the first and last SHOWN_LINES are printed
SHOWN_LINES = 50
SHOWN_LINE = 2000  # characters of a line printed
KEEP_BYTES = 1 << 20  # a runaway output and OSCAR's log keep their first and last KEEP_BYTES
# The watchdog's bounds: output (and so OSCAR's log) growing faster than any install writes.
RUNAWAY_WINDOW = 5  # seconds
RUNAWAY_BYTES = 8 << 20  # in RUNAWAY_WINDOW seconds
RUNAWAY_TOTAL = 256 << 20

WATCHDOG_SCRIPT = f"""#!/bin/sh
# oscarvt's watchdog for install_cluster (process group $1): a step that reprints its menu
# forever writes megabytes a second, and OSCAR's log the same. Once the output grows by more
# than {RUNAWAY_BYTES} bytes in {RUNAWAY_WINDOW} s, or past {RUNAWAY_TOTAL} bytes, stop OSCAR before the disk fills.
# (dash's kill takes a process group as -PGID, and no "--")
pgid=$1 {" ".join(f"w{i}=0" for i in range(1, RUNAWAY_WINDOW + 1))}
trap 'rm -f {WATCHDOG_PID}' EXIT
trap 'exit 0' TERM
while [ ! -s {STATUS} ] && kill -0 "-$pgid" 2>/dev/null; do
    sleep 1
    size=$(stat -c %s {OUTPUT} 2>/dev/null) || size=0
    if [ $((size - w{RUNAWAY_WINDOW})) -gt {RUNAWAY_BYTES} ] || [ "$size" -gt {RUNAWAY_TOTAL} ]; then
        echo "$((size - w{RUNAWAY_WINDOW})) $size" > {RUNAWAY}
        kill -TERM "-$pgid" 2>/dev/null
        n=0; while kill -0 "-$pgid" 2>/dev/null && [ $n -lt 10 ]; do sleep 1; n=$((n + 1)); done
        kill -KILL "-$pgid" 2>/dev/null
        sleep 1; [ -s {STATUS} ] || echo 137 > {STATUS}
        exit 0
    fi
    {" ".join(f"w{i}=$w{i - 1}" for i in range(RUNAWAY_WINDOW, 1, -1))} w1=$size
done
"""



def start_oscar(cluster: ClusterDir, inputs: Path | None = None) -> str:
    """Start install_cluster on the headnode; return once it reaches the boot hook."""
    with Session.phase(cluster, START_OSCAR) as session:
        spec, state = session.spec, session.state
        files = input_files(spec, state, inputs)
        iface = state.vms[state.headnode_name()].iface
        if not iface:
            raise InputError("the headnode's private interface is unknown (run 'oscarvt boot-headnode')")
        with open_headnode(session) as conn:
            monitor_offset, rsyncd_offset = prepare(conn, f"{spec.oscar.dir}/install_cluster", files)
            flags = " ".join(f"--{flag} {INPUTS_DIR}/{flag}" for flag in FLAG_FILES if flag in files)
            command = (f"TERM=dumb OSCAR_VERBOSE={VERBOSITY} ./install_cluster --cli {shlex.quote(iface)} {flags} "
                       f"--bootscript {HOOK} < {INPUTS_DIR}/{CONSOLE_FILE}")
            progress(f"starting OSCAR in {spec.oscar.dir}: {command}")
            record = OscarRun(command=command, started=time.time(),
                              monitor_offset=monitor_offset, rsyncd_offset=rsyncd_offset)  # logs are read from here on
            state.oscar = record
            cluster.save(state)
            # the shell outlives a TERM to the group (its trap) to write the status; the watchdog has its own session
            detached = (f"trap true TERM; echo $$ > {PIDFILE}; setsid {WATCHDOG} $$ < /dev/null > /dev/null 2>&1 & "
                        f"echo $! > {WATCHDOG_PID}; "
                        f"cd {shlex.quote(spec.oscar.dir)} && {command} > {OUTPUT} 2>&1; "
                        f"echo $? > {STATUS}; rm -f {PIDFILE}")
            conn.check_output(f"setsid sh -c {shlex.quote(detached)} < /dev/null > /dev/null 2>&1 &")
            with timing.spent_on_product():
                status = follow_oscar(conn, record, spec.timeouts.oscar, until=REACHED)
        if status is not None:
            return oscar_ended(record, status)
        record.hook_reached = time.time()
    return "OSCAR reached the boot hook and waits for the nodes"


def prepare(conn: Connection, install: str, files: dict[str, str]) -> tuple[int, int]:
    """In one request: check ``install`` is there, stop an install_cluster from an earlier start-oscar,
    clear the last run's files, write the input files and the boot hook; the sizes of the monitor's
    and rsync's logs (their lines from here on are this run's)."""
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as archive:
        for path, text, mode in [*((f"{INPUTS_DIR}/{n}", t, 0o644) for n, t in files.items()),
                                 (HOOK, HOOK_SCRIPT, 0o755), (WATCHDOG, WATCHDOG_SCRIPT, 0o755)]:
            data = text.encode()
            entry = tarfile.TarInfo(path.lstrip("/"))
            entry.size, entry.mode, entry.mtime = len(data), mode, int(time.time())
            archive.addfile(entry, io.BytesIO(data))
    script = (f"test -x {shlex.quote(install)} || exit {MISSING}; {STOP_OSCAR}; "
              f"rm -rf {INPUTS_DIR} {REACHED} {RELEASE} {OUTPUT} {STATUS} {RUNAWAY} && mkdir -p {INPUTS_DIR} "
              f"&& tar -x -m -f - -C / && for log in {MONITOR_LOG} {RSYNCD_LOG}; do "
              "stat -c %s -- \"$log\" 2>/dev/null || echo 0; done")
    status, output = conn.feed(script, tar.getvalue())
    if status == MISSING:
        raise ProductError(f"{install} is not on the headnode (run 'oscarvt checkout-oscar')")
    sizes = output.split()[-2:]
    if status != 0 or len(sizes) != 2 or not all(size.isdigit() for size in sizes):
        raise InfraError(f"headnode: preparing OSCAR's start failed (exit {status}): {output.strip()[-200:]}")
    return int(sizes[0]), int(sizes[1])


def finish_oscar(cluster: ClusterDir) -> str:
    """Follow OSCAR's post-install and cluster tests to its end; its exit status is the verdict.
    The tests' results are read from what its step 8 printed (:mod:`oscarvt.oscar_tests`)."""
    with Session.phase(cluster, FINISH_OSCAR) as session:
        spec, state = session.spec, session.state
        record = state.oscar
        if record is None:
            raise InputError("OSCAR has not been started (run 'oscarvt start-oscar')")
        with open_headnode(session) as conn:
            if conn.run(f"test -s {RELEASE} || test -s {STATUS}") != 0:
                raise InputError("the boot hook still waits for the nodes (run 'oscarvt wait-for-nodes')")
            with timing.spent_on_product():
                status = follow_oscar(conn, record, spec.timeouts.oscar, until=None)
            assert status is not None
            results = oscar_test_results(step_8_output(conn))
            if not results:  # a JUnit report is an extra that a suite may write
                results = junit_results(conn.check_output(f"cat {TEST_REPORT} 2>/dev/null || true"))
        record.tests = results
        for result in results:
            progress(f"test {result['result'].upper()}: {result['class']} {result['name']}"
                     + (f": {result['message']}" if result["message"] else ""))
            events.emit("test", **result)
        passed = sum(1 for r in results if r["result"] == "passed")
        failed = [r for r in results if r["result"] == "failed"]
        if status and failed and record.step == 8:  # the tests that failed say more than main_cli's die
            first = failed[0]
            record.failure = (f"OSCAR failed {oscar_output.where(_step(record))}: {len(failed)} of {len(results)} "
                              f"cluster tests failed, first {first['class']} {first['name']}"
                              + (f": {first['message']}" if first["message"] else ""))
        message = oscar_ended(record, status)
        return f"{message}; cluster tests {passed}/{len(results)} passed"


def follow_oscar(conn: Connection, record: OscarRun, timeout: float, until: str | None) -> int | None:
    """Print OSCAR's new output lines until it exits (its status) or the file ``until`` exists (None).

    The output is followed as it is written (``Connection.follow``) and the end awaited by a loop
    on the headnode that looks once a second (``end_watch``): asking over SSH each second took a
    third of the headnode's CPU from OSCAR's own steps under TCG. OSCAR is stopped (so that
    nothing is left running on the headnode) on a timeout or a loop, each a ProductError; once
    it has exited with a failure, ``record.failure`` says why (:func:`explain_failure`).
    """
    deadline = time.monotonic() + timeout
    output = LogReader(OUTPUT, record.offset)
    repeats = RepeatWatch()
    try:
        while True:
            watch = conn.start(end_watch(until, min(WATCH_ROUND, max(1, int(deadline - time.monotonic())))))
            try:
                while not watch.ended():
                    lines = output.read(conn)
                    record.offset = output.offset
                    looping = take_output(record, lines, repeats)
                    if looping:
                        raise oscar_loops(conn, record, looping)
                    time.sleep(POLL)
            finally:
                watch.close()
            status, reached = oscar_state(conn, until)
            if status or reached:
                break
            if time.monotonic() > deadline:
                stop_oscar(conn)
                what = "reach the boot hook" if until else "finish"
                raise ProductError(f"OSCAR did not {what} within {timeout:.0f}s (timeouts.oscar), "
                                   f"{oscar_output.where(_step(record))}; it was stopped", logs=SEE_OUTPUT)
    finally:
        output.close()
    if not status:
        print_output(conn, record, repeats)
        return None
    time.sleep(1)  # its output may still be passing through a pipe (tee)
    looping = print_output(conn, record, repeats, final=True)  # all it wrote is in the file by now
    code = int(status) if status.lstrip("-").isdigit() else 1
    if looping:
        raise oscar_loops(conn, record, looping)
    if code:
        ran_away = conn.check_output(f"cat {RUNAWAY} 2>/dev/null || true").split()
        if len(ran_away) == 2 and all(figure.isdigit() for figure in ran_away):
            raise oscar_ran_away(conn, record, int(ran_away[0]), int(ran_away[1]))
        explain_failure(conn, record, code)
    return code


def end_watch(until: str | None, seconds: int) -> str:
    """A loop for the headnode that ends when OSCAR has exited (or ``until`` exists), or after ``seconds``;
    also when the driver closes it (the end of its input), so that none outlives the driver's watch."""
    ended = f"[ -s {STATUS} ]" + (f" || [ -e {shlex.quote(until)} ]" if until else "")
    loop = f"n=0; until {ended} || [ $n -ge {seconds} ]; do sleep 1; n=$((n + 1)); done"
    # a background list reads /dev/null, not the channel: the killer takes the channel's input as fd 3
    return f"exec 3<&0; (cat <&3 >/dev/null 2>&1; kill $$ 2>/dev/null) >/dev/null 2>&1 & {loop}"


def oscar_state(conn: Connection, until: str | None) -> tuple[str, bool]:
    """OSCAR's exit status as written (empty while it runs), and whether ``until`` exists."""
    reached = f"[ -e {shlex.quote(until)} ] && r=1; " if until else ""
    answer = conn.check_output(f"s=; r=0; [ -s {STATUS} ] && read -r s < {STATUS}; {reached}echo \"$r $s\"")
    flag, _, status = answer.strip().partition(" ")
    return status.strip(), flag == "1"


def print_output(conn: Connection, record: OscarRun, repeats: RepeatWatch, final: bool = False) -> str | None:
    """Print OSCAR's output lines after ``record.offset`` and move the offset past them; the line
    it repeats if it loops. More than ``SHOW_LIMIT`` bytes left (a runaway) are skipped down to
    the last ``TAIL_BYTES``."""
    # one request: the bytes skipped (a line), then what is shown
    data = conn.check_output_bytes(
        f"left=$(( $(stat -c %s {OUTPUT} 2>/dev/null || echo 0) - {record.offset} )); "
        f"if [ $left -gt {SHOW_LIMIT} ]; then echo $((left - {TAIL_BYTES})); tail -c {TAIL_BYTES} {OUTPUT}; "
        f"else echo 0; tail -c +{record.offset + 1} {OUTPUT} 2>/dev/null; fi || true")
    skipped, _, data = data.partition(b"\n")
    if skipped.strip() not in (b"", b"0") and skipped.strip().isdigit():
        progress(f"oscar| [oscarvt: {int(skipped)} bytes of OSCAR's output not shown]")
        record.offset += int(skipped)
    lines, used = complete_lines(data, final)
    record.offset += used
    return take_output(record, lines, repeats)


def take_output(record: OscarRun, lines: list[str], repeats: RepeatWatch) -> str | None:
    """Print lines of OSCAR's output and note each step it begins or ends (an event for each
    beginning); the line it repeats if the lines show a loop (and then the rest is not printed).
    Of more than ``SHOW_BATCH`` bytes at once (a flood) only the first and last ``SHOWN_LINES``
    lines are printed, and how many were not, and of a line its first ``SHOWN_LINE`` characters;
    all of them are read."""
    now = time.time()
    flood = sum(map(len, lines)) > SHOW_BATCH and len(lines) > 2 * SHOWN_LINES
    for number, line in enumerate(lines):
        if not flood or number < SHOWN_LINES or number >= len(lines) - SHOWN_LINES:
            cut = f" [oscarvt: {len(line) - SHOWN_LINE} more characters]" if len(line) > SHOWN_LINE else ""
            progress(f"oscar| {line[:SHOWN_LINE]}{cut}")
        elif number == SHOWN_LINES:
            progress(f"oscar| [oscarvt: {len(lines) - 2 * SHOWN_LINES} lines of OSCAR's output not shown]")
        seen = oscar_output.step_seen(line)
        if seen is not None and (seen.number, seen.ended) != (record.step, record.step_ended):
            record.step, record.step_ended = seen.number, seen.ended
            if not seen.ended:
                events.emit("oscar_step", step=oscar_output.step_title(seen.number))
        looping = repeats.take(line, now)
        if looping:
            return looping
    return None


def _step(record: OscarRun) -> StepSeen | None:
    return StepSeen(record.step, record.step_ended) if record.step is not None else None


def output_tail(conn: Connection) -> list[str]:
    """The last lines of OSCAR's output (at most ``TAIL_BYTES``), its first one, cut, left out."""
    data = conn.check_output_bytes(f"tail -c {TAIL_BYTES} {OUTPUT} 2>/dev/null || true")
    lines, _ = complete_lines(data, final=True)
    return lines[1:] if len(data) >= TAIL_BYTES else lines


def explain_failure(conn: Connection, record: OscarRun, status: int) -> None:
    """Note in ``record.failure`` where OSCAR failed and the line of its output that says why."""
    record.failure = oscar_output.describe_failure(output_tail(conn), _step(record), status)


def oscar_loops(conn: Connection, record: OscarRun, line: str | None, figures: str = "") -> ProductError:
    """Stop OSCAR, which loops printing ``line`` (``figures``: how fast, if measured); the error that
    says so. Its output and its log keep their first and last ``KEEP_BYTES`` (a loop writes
    megabytes a second)."""
    stop_oscar(conn)
    cut_runaway_logs(conn)
    said = f"it prints '{line}' again and again" if line else "it prints"
    record.failure = f"OSCAR loops {oscar_output.where(_step(record))}: {said}{figures}; it was stopped"
    return ProductError(record.failure, logs=SEE_OUTPUT)


def oscar_ran_away(conn: Connection, record: OscarRun, window: int, total: int) -> ProductError:
    """The error for an OSCAR the watchdog stopped: ``window`` bytes of output in its window, ``total`` in all."""
    return oscar_loops(conn, record, oscar_output.most_repeated(output_tail(conn)),
                       f", {window >> 20} MiB in {RUNAWAY_WINDOW} s ({total >> 20} MiB in all)")


def cut_runaway_logs(conn: Connection) -> None:
    """Keep the first and last ``KEEP_BYTES`` of OSCAR's output and log, with a line where the rest was."""
    for path in (OUTPUT, OSCAR_LOG):
        quoted = shlex.quote(path)
        conn.check_output(
            f"size=$(stat -c %s {quoted} 2>/dev/null) || exit 0; [ \"$size\" -gt {2 * KEEP_BYTES} ] || exit 0; "
            f"{{ head -c {KEEP_BYTES} {quoted}; echo; echo \"[oscarvt: $((size - {2 * KEEP_BYTES})) bytes of a "
            f"loop's output cut here]\"; tail -c {KEEP_BYTES} {quoted}; }} > {quoted}.cut && mv {quoted}.cut {quoted}")


def stop_oscar(conn: Connection) -> None:
    """Stop an install_cluster this driver started (its whole process group), if one runs."""
    conn.check_output(STOP_OSCAR)


def oscar_ended(record: OscarRun, status: int) -> str:
    """The verdict once install_cluster has exited with ``status``: an error unless it is 0."""
    record.status = status
    if status == 0:
        return "OSCAR finished (exit 0)"
    failure = record.failure or f"OSCAR failed: install_cluster exited with status {status}"
    raise ProductError(failure, logs=f"{SEE_OUTPUT}; install_cluster's exit status {status}")


def step_8_output(conn: Connection) -> bytes:
    """What OSCAR printed from its step 8 on (its cluster tests), at most the end of its output."""
    data = conn.check_output_bytes(f"tail -c {MAX_TEXT} {OUTPUT} 2>/dev/null || true")
    begins = data.rfind(b"\n" + STEP_8_BANNER)
    return data[begins + 1:] if begins >= 0 else data


def junit_results(report: str) -> list[dict[str, str]]:
    """Each test case of a JUnit report: class, name, result (passed/failed/skipped), message, seconds
    (the report's ``time``, as written there; empty if none)."""
    if not report.strip():
        return []
    try:
        root = etree.fromstring(report.encode())
    except etree.XMLSyntaxError as exc:
        raise ProductError(f"{TEST_REPORT} on the headnode is not valid XML: {exc}") from None
    results = []
    for case in root.iter("testcase"):
        problem = next((child for child in case if child.tag in ("failure", "error", "skipped")), None)
        result = "passed" if problem is None else ("skipped" if problem.tag == "skipped" else "failed")
        message = "" if problem is None else (problem.get("message") or (problem.text or "")).strip()
        results.append({"class": case.get("classname", ""), "name": case.get("name", ""),
                        "result": result, "message": message, "seconds": case.get("time", "")})
    return results
