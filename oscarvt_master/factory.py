"""The build: check out the revision, then every oscarvt phase on a fresh virtual cluster.

The force form (and the builder's settings) give the node count, the boot method and
"keep the cluster on failure"; the cluster spec is the builder's spec with those applied,
written into the build directory. Logs are grabbed, uploaded to the master, attached as
step logs, pictured (the build's timeline and the builder's trend, linked from the build page),
and the cluster destroyed, whatever happened before.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from buildbot.plugins import steps, util
from buildbot.process.factory import BuildFactory
from buildbot.process.results import SKIPPED

from oscarvt.limits import MARGIN, phase_limit
from oscarvt.spec import spec_from_dict
from oscarvt_master.bisect import StartBisection
from oscarvt_master.pictures import Pictures
from oscarvt_master.reproduce import Reproduce
from oscarvt_master.settings import Builder, Repository, Settings
from oscarvt_master.triage import Triage
from oscarvt_steps.steps import (
    LOGS,
    AttachLogs,
    BootComputeNodes,
    BootHeadnode,
    CheckoutOscar,
    Claim,
    CopyVmImage,
    Destroy,
    FinishOscar,
    GrabLogs,
    Keep,
    OscarvtPhase,
    StartOscar,
    WaitForNodes,
)

BUILDER_DEFAULT = "builder's"  # the force form's "use the builder's setting"
SOURCE = "oscar"  # the checkout of the revision under test; every path is relative to the
                  # builder's folder on the worker (cluster/, spec.yaml, logs/)
LOGS_FOLDER = "public_html/logs"  # the uploaded logs, in the master's folder (served by oscarvt_master.logserver)
LOGS_ON_MASTER = f"{LOGS_FOLDER}/%(prop:buildername)s/%(prop:buildnumber)s"


def build_nodes(builder: Builder) -> util.Transform:
    """The build's node count: the force form's, or the builder's (form value 0, or no form)."""
    return util.Transform(lambda forced: int(forced or 0) or builder.nodes, util.Property("nodes", default=0))


def build_boot(builder: Builder) -> util.Transform:
    """The build's boot method: the force form's, or the builder's."""
    return util.Transform(lambda forced: builder.boot if forced in (None, "", BUILDER_DEFAULT) else forced,
                          util.Property("boot", default=None))


def build_spec(builder: Builder, nodes: int, boot: str) -> dict[str, Any]:
    """The builder's cluster spec, with the build's node count and boot method."""
    spec = copy.deepcopy(builder.spec)
    spec.setdefault("nodes", {})
    spec["nodes"]["count"], spec["nodes"]["boot"] = int(nodes), boot
    return spec


def cluster_spec(builder: Builder, nodes: int, boot: str) -> str:
    """The build's cluster spec as YAML, for the worker."""
    return yaml.safe_dump(build_spec(builder, nodes, boot), sort_keys=False)


def step_limits(builder: Builder, phase: str) -> dict[str, util.Transform]:
    """The step's ``timeout`` and ``maxTime``: the phase's limit for the build's spec, plus a margin."""
    def seconds(nodes: int) -> int:
        spec = spec_from_dict(build_spec(builder, nodes, builder.boot), Path("/"), check_files=False)
        return int(phase_limit(spec, phase) + MARGIN)
    limit = util.Transform(seconds, build_nodes(builder))
    return {"timeout": limit, "maxTime": limit}


def max_clusters(settings: Settings) -> util.Transform:
    """The build's worker's ``max_clusters`` (kept clusters count against it: see ``oscarvt claim``)."""
    limits = {w.name: w.max_clusters for w in settings.workers}
    return util.Transform(lambda worker: str(limits.get(worker, 1)), util.Property("workername"))


def keep_cluster(step: Any) -> bool:
    """True when the build failed and the force form asked to keep the cluster."""
    from buildbot.process.results import SUCCESS
    return bool(step.getProperty("keep_on_failure")) and step.build.results != SUCCESS


def logs_link(settings: Settings) -> util.Interpolate | None:
    """Where a build's uploaded logs are seen: logs_url, or the master's log server."""
    base = settings.logs_url
    if base is None and settings.logs_port:
        host = urlsplit(settings.url).hostname or "localhost"
        base = f"http://{host}:{settings.logs_port}"
    return util.Interpolate(f"{base.rstrip('/')}/%(prop:buildername)s/%(prop:buildnumber)s/") if base else None


def repository_login(repo: Repository) -> tuple[str, Any] | None:
    """The repository's user and password (a Buildbot secret, masked in every step log), if it has a user."""
    return (repo.user, util.Secret(repo.password_secret)) if repo.user is not None else None


def build_factory(settings: Settings, builder: Builder, repository: Repository, mirrors: str) -> BuildFactory:
    """The build's steps (see the module); ``mirrors``: the master's folder of git mirrors, for triage."""
    factory = BuildFactory()
    if repository.vcs == "git":
        factory.addStep(steps.Git(repourl=repository.url, branch=repository.branch, workdir=SOURCE,
                                  mode="full", method="clobber", name="checkout",
                                  auth_credentials=repository_login(repository)))
    else:
        user, password = repository_login(repository) or (None, None)
        factory.addStep(steps.SVN(repourl=repository.url, workdir=SOURCE, mode="full", method="clobber",
                                  name="checkout", username=user, password=password))
    run: dict[str, Any] = {"oscarvt": settings.oscarvt, "workdir": ".", "retries": settings.retries}

    def phase(step: type[OscarvtPhase], **kwargs: Any) -> OscarvtPhase:
        return step(**run, **step_limits(builder, step.phase), **kwargs)

    factory.addSteps([
        phase(Claim, options={"under": "..", "max_clusters": max_clusters(settings)}),
        steps.RemoveDirectory(dir=LOGS, name="clean-logs"),
        steps.StringDownload(util.Transform(cluster_spec, builder, build_nodes(builder), build_boot(builder)),
                             workerdest="spec.yaml", workdir=".", name="spec"),
        phase(CopyVmImage, options={"spec": "spec.yaml"}),
        phase(BootHeadnode),
        phase(CheckoutOscar, options={"source": SOURCE}),
        phase(StartOscar),
        phase(BootComputeNodes, options={"boot": build_boot(builder)}),
        phase(WaitForNodes, nodes=build_nodes(builder)),
        phase(FinishOscar),
        phase(GrabLogs),
        steps.DirectoryUpload(workersrc=LOGS, workdir=".", masterdest=util.Interpolate(LOGS_ON_MASTER), alwaysRun=True,
                              url=logs_link(settings), urlText="logs", name="upload-logs"),
        Reproduce(spec=util.Transform(cluster_spec, builder, build_nodes(builder), build_boot(builder)),
                  vcs=repository.vcs, url=repository.url, masterdest=util.Interpolate(LOGS_ON_MASTER),
                  logs_url=logs_link(settings)),
        AttachLogs(masterdest=util.Interpolate(LOGS_ON_MASTER)),
        Pictures(masterdest=util.Interpolate(LOGS_ON_MASTER), logs_url=logs_link(settings)),
        phase(Keep, doStepIf=keep_cluster, hideStepIf=lambda results, step: results == SKIPPED,
              options={"reason": util.Interpolate("%(prop:buildername)s build %(prop:buildnumber)s, "
                                                   "kept on failure by %(prop:owner:-the force form)s")}),
        phase(Destroy, doStepIf=lambda step: not keep_cluster(step)),
        Triage(repository=repository, mirrors=mirrors, logs_folder=LOGS_FOLDER),
        StartBisection(),
    ])
    return factory
