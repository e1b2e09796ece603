"""The ``reproduce`` step: one command that rebuilds this build on a host with oscarvt, and keeps its cluster.

A build checks the revision out on the worker, writes the builder's spec with the build's node count
and boot method (``spec.yaml``) and runs every phase with ``--source``. The command does the same by
hand: it checks the same revision out of the same repository into ``oscar``, takes the spec as used
(kept with the build's uploaded logs as ``spec.yaml``, fetched from the log server; inline, in
base64, where the master has none) and runs ``oscarvt run --source oscar --keep``, so that the person gets the
cluster to log into (``oscarvt ssh``) and destroys it when done (``oscarvt destroy``).

The step runs on the master after the upload, whatever happened before. It writes the spec into the
build's uploaded logs (never through a link a worker's upload left there), adds the log ``reproduce``
(the command, then the spec), links the spec from the build page and sets the properties ``reproduce``,
which the mail quotes, and ``spec_sha256`` (the spec's hash, which triage compares). A repository
login is not part of the command: a person uses their own.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from buildbot.process.buildstep import BuildStep
from buildbot.process.results import SUCCESS, WARNINGS

SPEC = "spec.yaml"
CHECKOUT = "oscar"  # the folder the command checks the revision out into


def checkout_command(vcs: str, url: str, revision: str | None) -> str:
    """The shell command that checks ``revision`` (None: the newest) of ``url`` out into ``CHECKOUT``."""
    if vcs == "svn":
        at = ["-r", revision] if revision else []
        return shlex.join(["svn", "checkout", "-q", *at, url, CHECKOUT])
    clone = shlex.join(["git", "clone", "-q", url, CHECKOUT])
    return f"{clone} && {shlex.join(['git', '-C', CHECKOUT, 'checkout', '-q', revision])}" if revision else clone


def spec_command(spec: str, spec_url: str | None) -> str:
    """The shell command that writes the spec as used into ``SPEC``: fetched from ``spec_url``, else inline
    (in base64, so that the command stays one line)."""
    if spec_url:
        return shlex.join(["curl", "-fsS", "-o", SPEC, spec_url])
    return f"echo {base64.b64encode(spec.encode()).decode()} | base64 -d > {SPEC}"


def reproduce_command(vcs: str, url: str, revision: str | None, spec: str, spec_url: str | None,
                      cluster: str, oscarvt: str = "oscarvt") -> str:
    """The one command that rebuilds a build: the checkout, the spec, and ``oscarvt run --keep``."""
    run = shlex.join([oscarvt, "run", "--cluster", cluster, "--spec", SPEC, "--source", CHECKOUT, "--keep"])
    return " && ".join([checkout_command(vcs, url, revision), spec_command(spec, spec_url), run])


def write_spec(folder: Path, spec: str) -> None:
    """Write ``spec`` as ``folder/SPEC``, replacing whatever is there without following a link."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / SPEC
    if target.is_symlink() or target.exists():
        target.unlink()
    handle = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(handle, "w") as file:
        file.write(spec)


class Reproduce(BuildStep):  # type: ignore[misc]  # buildbot has no type hints
    """Say how to rebuild this build by hand: ``spec`` (renderable: the build's spec as YAML) of the
    repository ``url`` (``vcs``: git or svn) at the build's revision; the spec is kept in ``masterdest``
    (renderable: the build's uploaded logs) and fetched from ``logs_url`` (renderable; None: inline)."""

    name = "reproduce"
    renderables = ["spec", "masterdest", "logs_url"]

    def __init__(self, spec: Any, vcs: str, url: str, masterdest: Any, logs_url: Any = None,
                 **kwargs: Any) -> None:
        kwargs.setdefault("alwaysRun", True)
        super().__init__(**kwargs)
        self.spec = spec
        self.vcs = vcs
        self.url = url
        self.masterdest = masterdest
        self.logs_url = logs_url

    def revision(self) -> str | None:
        """The revision the build checked out, else the one it was asked for (None: the newest)."""
        for name in ("got_revision", "revision"):
            value = self.getProperty(name)
            if isinstance(value, str) and value:
                return value
        return None

    async def run(self) -> int:
        spec = str(self.spec)
        result: int = SUCCESS
        spec_url = urljoin(str(self.logs_url), SPEC) if self.logs_url else None
        try:
            write_spec(Path(str(self.masterdest)), spec)
        except OSError as exc:
            spec_url, result = None, WARNINGS  # the spec goes inline instead
            self.descriptionDone = [f"spec not kept: {exc}"[:200]]
        cluster = f"{self.getProperty('buildername')}-{self.getProperty('buildnumber')}"
        command = reproduce_command(self.vcs, self.url, self.revision(), spec, spec_url, cluster)
        self.setProperty("reproduce", command, "reproduce")
        self.setProperty("spec_sha256", hashlib.sha256(spec.encode()).hexdigest()[:16], "reproduce")  # for triage
        await self.addCompleteLog("reproduce", f"{command}\n\n# the spec as used ({SPEC}):\n{spec}")
        if spec_url:
            await self.addURL(SPEC, spec_url)
        if result == SUCCESS:
            self.descriptionDone = ["oscarvt run --keep of this revision and spec: see its log"]
        return result
