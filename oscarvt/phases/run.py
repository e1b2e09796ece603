"""run: the paper's Listing 1 in order, on a fresh cluster, always ending with logs and cleanup.

copy-vm-image, boot-headnode, checkout-oscar, start-oscar, boot-compute-nodes, wait-for-nodes,
finish-oscar; then grab-logs and destroy run whatever happened, unless ``keep`` leaves a
failed cluster up for a person to log into.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from oscarvt.cluster import ClusterDir
from oscarvt.errors import InfraError, InputError, OscarvtError
from oscarvt.log import progress
from oscarvt.phases.boot import boot_compute_nodes, boot_headnode
from oscarvt.phases.checkout import checkout_oscar
from oscarvt.phases.create import copy_vm_image
from oscarvt.phases.destroy import destroy, signals_held
from oscarvt.phases.logs import grab_logs
from oscarvt.phases.nodes import wait_for_nodes
from oscarvt.phases.oscar import finish_oscar, start_oscar


def run(cluster: ClusterDir, spec: Path, source: Path | None = None, url: str | None = None,
        revision: str | None = None, vcs: str | None = None, inputs: Path | None = None,
        boot: str | None = None, logs: Path | None = None, keep: bool = False) -> str:
    """Run every phase; the verdict names the phase that failed."""
    if (source is None) == (url is None):
        raise InputError("give one of --source DIR or --url URL")
    if cluster.exists():
        raise InputError(f"{cluster.path} already holds a cluster (destroy it, or pick a new folder)")
    logs = logs or cluster.path / "logs"
    phases: list[tuple[str, Callable[[], str]]] = [
        ("copy-vm-image", lambda: copy_vm_image(cluster, spec)),
        ("boot-headnode", lambda: boot_headnode(cluster)),
        ("checkout-oscar", lambda: checkout_oscar(cluster, source, url, revision, vcs)),
        ("start-oscar", lambda: start_oscar(cluster, inputs)),
        ("boot-compute-nodes", lambda: boot_compute_nodes(cluster, boot)),
        ("wait-for-nodes", lambda: wait_for_nodes(cluster)),
        ("finish-oscar", lambda: finish_oscar(cluster)),
    ]
    started = time.monotonic()
    failure: tuple[str, OscarvtError] | None = None
    try:
        for name, phase in phases:
            progress(f"=== {name}")
            try:
                progress(f"=== {phase()}")
            except OscarvtError as exc:
                failure = (name, exc)
                progress(f"=== {name} failed: {exc.blame}: {exc}")
                break
    finally:  # also after an interrupt or a bug: the logs, then the cluster goes
        cleanup_failure = _clean_up(cluster, logs, keep and failure is not None)
    took = time.monotonic() - started
    if failure is not None:
        phase_name, error = failure
        raise type(error)(f"failed in {phase_name} after {took:.0f}s: {error} (logs: {logs})", vm=error.vm)
    if cleanup_failure is not None:
        raise cleanup_failure
    return f"run: every phase passed in {took:.0f}s (logs: {logs})"


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
        progress(f"=== {grab_logs(cluster, logs)}")
    except Exception as exc:  # noqa: BLE001 (destroy must run whatever went wrong here)
        progress(f"=== grab-logs failed: {exc}")
    if keep:
        progress(f"=== --keep: the cluster stays up in {cluster.path} ('oscarvt destroy' when done)")
        return None
    try:
        progress(f"=== {destroy(cluster)}")
    except OscarvtError as exc:
        progress(f"=== destroy failed: {exc}")
        return InfraError(f"destroy failed: {exc}")
    return None
