"""run: the paper's Listing 1 in order, on a fresh cluster, always ending with logs and cleanup.

The phase table's ``RUN_PHASES`` (given as ``phases``), then grab-logs and destroy whatever
happened, unless ``keep`` leaves a failed cluster up for a person to log into.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence

from oscarvt import timing
from oscarvt.access import drop_reused, reused_connections
from oscarvt.cluster import ClusterDir
from oscarvt.errors import InfraError, InputError, OscarvtError
from oscarvt.inputs import read_overrides
from oscarvt.log import progress
from oscarvt.paths import folder_to_make
from oscarvt.phase_names import DESTROY, GRAB_LOGS, KEEP
from oscarvt.phases.checkout import check_url_flags
from oscarvt.phases.host import keep as keep_cluster
from oscarvt.phases.logs import grab_logs
from oscarvt.teardown import destroy, signals_held


class Phase(Protocol):
    """What ``run`` needs of a phase of the table (``oscarvt.phase_table.Phase``)."""

    @property
    def name(self) -> str: ...

    def call(self, cluster: ClusterDir, values: Mapping[str, Any]) -> str: ...


def run(cluster: ClusterDir, *, phases: Sequence[Phase], spec: Path, source: Path | None = None,
        url: str | None = None, revision: str | None = None, vcs: str | None = None, inputs: Path | None = None,
        boot: str | None = None, logs: Path | None = None, keep: bool = False) -> str:
    """Run each of ``phases`` (the table's ``RUN_PHASES``) with these values; the verdict names the phase
    that failed."""
    if (source is None) == (url is None):
        raise InputError("give one of --source DIR or --url URL")
    if source is not None and not source.is_dir():  # the flags are checked before any VM starts
        raise InputError(f"--source: no such folder {source}")
    check_url_flags(url, revision)
    if inputs is not None:
        read_overrides(inputs)
    if logs is not None:
        folder_to_make(logs, "--logs")
    if cluster.exists():
        raise InputError(f"{cluster.path} already holds a cluster (destroy it, or pick a new folder)")
    logs = logs or cluster.path / "logs"
    values = {"spec": spec, "source": source, "url": url, "revision": revision, "vcs": vcs, "inputs": inputs,
              "boot": boot}
    started, started_at = time.monotonic(), time.time()
    failure: tuple[str, OscarvtError] | None = None
    with reused_connections():  # one login to the headnode for all phases, while it works
        passed = False
        try:
            for phase in phases:
                progress(f"=== {phase.name}")
                try:
                    progress(f"=== {phase.name}: {phase.call(cluster, values)}")
                except OscarvtError as exc:
                    failure = (phase.name, exc)
                    progress(f"=== {phase.name} failed: {exc.blame}: {exc}")
                    break
            passed = failure is None
        finally:  # also after an interrupt or a bug: the logs, then the cluster goes
            if not passed:
                drop_reused()  # the clean-up logs in afresh: the connection may be what failed
            cleanup_failure = _clean_up(cluster, logs, keep and failure is not None)
    took = time.monotonic() - started
    figures = _harness_share(cluster, started_at, took)
    if failure is not None:
        phase_name, error = failure
        raise type(error)(f"failed in {phase_name} after {took:.0f}s: {error}", vm=error.vm,
                          logs=f"{error.logs}; logs: {logs}" if error.logs else f"logs: {logs}")
    if cleanup_failure is not None:
        raise cleanup_failure
    return f"every phase passed in {took:.0f}s, {figures} (logs: {logs})"


def _harness_share(cluster: ClusterDir, since: float, took: float) -> str:
    """The harness's share of this run in words (the gaps between phases are the harness's too), also printed."""
    try:
        records = [p for p in cluster.load().phases if p.start >= since and p.seconds is not None]
    except OscarvtError:
        records = []
    figures = timing.describe(timing.share(records, took))
    progress(f"=== time: {figures}")
    return figures


def _clean_up(cluster: ClusterDir, logs: Path, keep: bool) -> OscarvtError | None:
    """grab-logs, then destroy (unless ``keep``), whatever either raises; destroy's failure is returned.

    Stop signals are held off meanwhile: a second Ctrl-C or SIGTERM must not leave VMs behind.
    """
    if not cluster.exists():
        return None
    with signals_held("run's clean-up"):
        return _logs_then_destroy(cluster, logs, keep)


def _logs_then_destroy(cluster: ClusterDir, logs: Path, keep: bool) -> OscarvtError | None:
    try:
        progress(f"=== {GRAB_LOGS}: {grab_logs(cluster, logs)}")
    except Exception as exc:  # noqa: BLE001 (destroy must run whatever went wrong here)
        progress(f"=== {GRAB_LOGS} failed: {exc}")
    if keep:
        progress(f"=== {KEEP}: {keep_cluster(cluster, 'run --keep, after a failure')}")
        return None
    try:
        progress(f"=== {DESTROY}: {destroy(cluster)}")
    except OscarvtError as exc:
        progress(f"=== {DESTROY} failed: {exc}")
        return InfraError(f"{DESTROY} failed: {exc}")
    return None
