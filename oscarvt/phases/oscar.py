"""start-oscar and finish-oscar: run OSCAR's install_cluster on the headnode, in the background.

start-oscar writes the input files, installs the driver's boot hook as ``--bootscript`` and
starts ``install_cluster --cli IFACE`` detached from the SSH session, its output going to
``OUTPUT`` on the headnode and its exit status to ``STATUS``. The hook tells the driver OSCAR
is waiting for the nodes (``REACHED``) and waits until wait-for-nodes writes ``RELEASE``
(``0``: every node booted; ``1``: give up, and OSCAR fails as it does when its boot script
fails). finish-oscar follows OSCAR to its end; OSCAR's exit status is the verdict.
"""

from __future__ import annotations

import io
import re
import shlex
import tarfile
import time
from pathlib import Path

from lxml import etree

from oscarvt import events, timing
from oscarvt.cluster import ClusterDir
from oscarvt.errors import InfraError, InputError, OscarvtError, ProductError
from oscarvt.lines import complete_lines
from oscarvt.log import progress
from oscarvt.monitor import MONITOR_LOG, RSYNCD_LOG
from oscarvt.phase_table import FINISH_OSCAR, START_OSCAR
from oscarvt.phases.access import open_headnode
from oscarvt.phases.inputs import FLAG_FILES, INPUTS_DIR, input_files
from oscarvt.ssh import Connection, LogReader
from oscarvt.state import OscarRun
from oscarvt.waiting import wait_for

WORK = "/var/lib/oscarvt"
HOOK = f"{WORK}/boot_hook"
REACHED = f"{WORK}/hook.reached"
RELEASE = f"{WORK}/hook.release"
OUTPUT = f"{WORK}/install_cluster.out"
STATUS = f"{WORK}/install_cluster.status"
PIDFILE = f"{WORK}/install_cluster.pgid"  # its process group, to stop it
OSCAR_LOG = "/var/log/oscar/oscarinstall.log"
TEST_REPORT = "/var/log/oscar/cluster_tests.xml"
# OSCAR's failure lines (scripts/cli/main_cli's die messages; Perl adds " at SCRIPT line N.").
FAILURE_GREP = "Failed (on )?Step [0-9]+ - |Failed to confirm client node boot before Step 7 - "
FAILURE = re.compile(r"(Failed (?:on )?Step [0-9]+ - .+?|Failed to confirm client node boot before Step 7 - .+?)"
                     r"(?: at \S+ line [0-9]+\.)?\s*$")
STEP = re.compile(r"(Step [0-9]+ - .*)$")  # main_cli's line as it starts a step
STOP_OSCAR = f"if [ -s {PIDFILE} ]; then kill -TERM -- -$(cat {PIDFILE}) 2>/dev/null; fi; rm -f {PIDFILE}"
MISSING = 97  # prepare's exit status when install_cluster is not there
POLL = 0.5         # seconds between looks at what the followed output brought (no SSH request)
WATCH_ROUND = 30   # seconds a watch for OSCAR's end runs on the headnode before the driver asks again
HOOK_FAIL_WAIT = 30  # seconds for OSCAR to exit once its boot hook failed

HOOK_SCRIPT = f"""#!/bin/sh
# oscarvt's boot hook (install_cluster --bootscript): tell the driver OSCAR waits for the
# nodes, then wait until wait-for-nodes releases the hook (0) or gives up (1).
date +%s > {REACHED}
while [ ! -s {RELEASE} ]; do sleep 1; done
exit "$(cat {RELEASE})"
"""


def start_oscar(cluster: ClusterDir, inputs: Path | None = None) -> str:
    """Start install_cluster on the headnode; return once it reaches the boot hook."""
    with cluster.phase(START_OSCAR.name) as state:
        spec = cluster.spec(state)
        files = input_files(spec, state, inputs)
        iface = state.vms[state.headnode_name()].iface
        if not iface:
            raise InputError("the headnode's private interface is unknown (run 'oscarvt boot-headnode')")
        with open_headnode(cluster, state) as conn:
            install = f"{spec.oscar.dir}/install_cluster"
            monitor_offset, rsyncd_offset = prepare(conn, install, files)
            flags = " ".join(f"--{flag} {INPUTS_DIR}/{flag}" for flag in FLAG_FILES if flag in files)
            command = f"{shlex.quote(install)} --cli {shlex.quote(iface)} {flags} --bootscript {HOOK}"
            progress(f"starting OSCAR: {command}")
            record = OscarRun(command=command, started=time.time(),
                              monitor_offset=monitor_offset, rsyncd_offset=rsyncd_offset)  # logs are read from here on
            state.oscar = record
            cluster.save(state)
            detached = (f"echo $$ > {PIDFILE}; cd {shlex.quote(spec.oscar.dir)} && {command} > {OUTPUT} 2>&1; "
                        f"echo $? > {STATUS}; rm -f {PIDFILE}")
            conn.check_output(f"setsid sh -c {shlex.quote(detached)} < /dev/null > /dev/null 2>&1 &")
            with timing.spent_on_product():
                status = follow_oscar(conn, record, spec.timeouts.oscar, until=REACHED)
            if status:
                print_log_tail(conn)
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
                                 (HOOK, HOOK_SCRIPT, 0o755)]:
            data = text.encode()
            entry = tarfile.TarInfo(path.lstrip("/"))
            entry.size, entry.mode, entry.mtime = len(data), mode, int(time.time())
            archive.addfile(entry, io.BytesIO(data))
    script = (f"test -x {shlex.quote(install)} || exit {MISSING}; {STOP_OSCAR}; "
              f"rm -rf {INPUTS_DIR} {REACHED} {RELEASE} {OUTPUT} {STATUS} && mkdir -p {INPUTS_DIR} "
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
    """Follow OSCAR's post-install and cluster tests to its end; its exit status is the verdict."""
    with cluster.phase(FINISH_OSCAR.name) as state:
        spec = cluster.spec(state)
        record = state.oscar
        if record is None:
            raise InputError("OSCAR has not been started (run 'oscarvt start-oscar')")
        with open_headnode(cluster, state) as conn:
            if conn.run(f"test -s {RELEASE} || test -s {STATUS}") != 0:
                raise InputError("the boot hook still waits for the nodes (run 'oscarvt wait-for-nodes')")
            with timing.spent_on_product():
                status = follow_oscar(conn, record, spec.timeouts.oscar, until=None)
            assert status is not None
            if status:
                print_log_tail(conn)
            report = conn.check_output(f"cat {TEST_REPORT} 2>/dev/null || true")
        results = junit_results(report)
        record.tests = results
        for result in results:
            progress(f"test {result['result'].upper()}: {result['class']} {result['name']}"
                     + (f": {result['message']}" if result["message"] else ""))
            events.emit("test", **result)
        passed = sum(1 for r in results if r["result"] == "passed")
        message = oscar_ended(record, status)
        return f"{message}; cluster tests {passed}/{len(results)} passed"


def follow_oscar(conn: Connection, record: OscarRun, timeout: float, until: str | None) -> int | None:
    """Print OSCAR's new output lines until it exits (its status) or the file ``until`` exists (None).

    The output is followed as it is written (``Connection.follow``) and the end awaited by a loop
    on the headnode that looks once a second (``end_watch``): asking over SSH each second took a
    third of the headnode's CPU from OSCAR's own steps under TCG. On a timeout OSCAR is stopped, so
    that nothing is left running on the headnode.
    """
    deadline = time.monotonic() + timeout
    output = LogReader(OUTPUT, record.offset)
    try:
        while True:
            watch = conn.start(end_watch(until, min(WATCH_ROUND, max(1, int(deadline - time.monotonic())))))
            try:
                while not watch.ended():
                    lines = output.read(conn)
                    record.offset = output.offset
                    take_output(record, lines)
                    time.sleep(POLL)
            finally:
                watch.close()
            status, reached = oscar_state(conn, until)
            if status or reached:
                break
            if time.monotonic() > deadline:
                stop_oscar(conn)
                what = "reach the boot hook" if until else "finish"
                raise ProductError(f"OSCAR did not {what} within {timeout:.0f}s (timeouts.oscar); it was stopped "
                                   f"(its output: {OUTPUT} on the headnode)")
    finally:
        output.close()
    if not status:
        print_output(conn, record)
        return None
    time.sleep(1)  # its output may still be passing through a pipe (tee)
    print_output(conn, record, final=True)  # all it wrote before exiting is in the file by now
    if record.failure is None:
        last = conn.check_output(f"grep -hE '{FAILURE_GREP}' {OSCAR_LOG} 2>/dev/null | tail -n 1 || true")
        if last.strip():
            found = FAILURE.search(last)
            if found:
                record.failure = found.group(1)
    return int(status) if status.lstrip("-").isdigit() else 1


def end_watch(until: str | None, seconds: int) -> str:
    """A loop for the headnode that ends when OSCAR has exited (or ``until`` exists), or after ``seconds``."""
    ended = f"[ -s {STATUS} ]" + (f" || [ -e {shlex.quote(until)} ]" if until else "")
    return f"n=0; until {ended} || [ $n -ge {seconds} ]; do sleep 1; n=$((n + 1)); done"


def oscar_state(conn: Connection, until: str | None) -> tuple[str, bool]:
    """OSCAR's exit status as written (empty while it runs), and whether ``until`` exists."""
    reached = f"[ -e {shlex.quote(until)} ] && r=1; " if until else ""
    answer = conn.check_output(f"s=; r=0; [ -s {STATUS} ] && read -r s < {STATUS}; {reached}echo \"$r $s\"")
    flag, _, status = answer.strip().partition(" ")
    return status.strip(), flag == "1"


def print_output(conn: Connection, record: OscarRun, final: bool = False) -> None:
    """Print OSCAR's output lines after ``record.offset`` and move the offset past them."""
    data = conn.check_output_bytes(f"tail -c +{record.offset + 1} {OUTPUT} 2>/dev/null || true")
    lines, used = complete_lines(data, final)
    record.offset += used
    take_output(record, lines)


def take_output(record: OscarRun, lines: list[str]) -> None:
    """Print lines of OSCAR's output; note its failure line if one passes, and each step it starts."""
    for line in lines:
        progress(f"oscar| {line}")
        found = FAILURE.search(line)
        if found:
            record.failure = found.group(1)
        step = STEP.search(line)
        if step and "Skipping" not in line and not found:
            events.emit("oscar_step", step=step.group(1))


def stop_oscar(conn: Connection) -> None:
    """Stop an install_cluster this driver started (its whole process group), if one runs."""
    conn.check_output(STOP_OSCAR)


def oscar_ended(record: OscarRun, status: int) -> str:
    """The verdict once install_cluster has exited with ``status``: an error unless it is 0."""
    record.status = status
    if status == 0:
        return "OSCAR finished (exit 0)"
    failure = record.failure or f"install_cluster exited with status {status}"
    raise ProductError(f"OSCAR failed: {failure} (see {OSCAR_LOG} on the headnode, or grab-logs)")


def print_log_tail(conn: Connection, lines: int = 15) -> None:
    """Print the last ``lines`` of OSCAR's own log on the headnode."""
    for line in conn.check_output(f"tail -n {lines} {OSCAR_LOG} 2>/dev/null || true").splitlines():
        progress(f"{OSCAR_LOG}| {line}")


def release_hook(conn: Connection, ok: bool) -> None:
    """Let OSCAR go on past its boot hook (``ok``), or make the hook fail.

    A failed hook ends OSCAR; this waits (up to ``HOOK_FAIL_WAIT`` seconds) until it has
    exited, so that the logs grabbed next hold its last line ("Failed to confirm ...").
    """
    conn.check_output(f"echo {0 if ok else 1} > {RELEASE}.tmp && mv {RELEASE}.tmp {RELEASE}")
    if not ok:
        try:
            wait_for(lambda: True if conn.run(f"test -s {STATUS}") == 0 else None,
                     timeout=HOOK_FAIL_WAIT, what="OSCAR to stop after its boot hook failed", interval=0.5)
        except OscarvtError as exc:
            progress(str(exc))


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
