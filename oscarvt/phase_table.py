"""The phase table: every verb that works on a cluster folder, written once.

Each entry is a phase's name (the CLI verb, the Buildbot step, the state's phase record),
its help text, the function that runs it and its command-line options. ``oscarvt.cli``
makes one verb of each entry, ``run`` runs ``RUN_PHASES`` and then ``CLEANUP_PHASES``, the
Buildbot steps take their names from here and ``oscarvt.limits`` bounds each one.

A phase's function takes the ``ClusterDir`` and, as keywords, the values of its options
(an option left out, as ``run`` leaves out ``--iso``, is None).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping

from oscarvt.paths import flag_path

if TYPE_CHECKING:
    from oscarvt.cluster import ClusterDir


@dataclass(frozen=True)
class Option:
    """A command-line option: its flags and argparse's settings for it."""

    flags: tuple[str, ...]
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def dest(self) -> str:
        """The keyword the phase's function takes this option's value as."""
        return str(self.settings.get("dest") or self.flags[0].lstrip("-").replace("-", "_"))


@dataclass(frozen=True)
class Phase:
    """One phase: name, help, ``module:function`` (imported when the phase runs), options.

    ``lock``: "existing" holds the cluster folder's lock; "create" makes the folder first; None: no lock.
    """

    name: str
    help: str
    target: str
    options: tuple[Option, ...] = ()
    lock: Literal["existing", "create"] | None = "existing"

    def function(self) -> Callable[..., str]:
        module, _, name = self.target.partition(":")
        function: Callable[..., str] = getattr(importlib.import_module(module), name)
        return function

    def call(self, cluster: ClusterDir, values: Mapping[str, Any]) -> str:
        """Run the phase on ``cluster`` with the values its options name; its verdict text."""
        return self.function()(cluster, **{option.dest: values.get(option.dest) for option in self.options})


SPEC = Option(("--spec",), {"type": flag_path, "required": True, "metavar": "FILE", "help": "cluster spec (YAML)"})
CHECKOUT = (
    Option(("--source",), {"type": flag_path, "metavar": "DIR",
                           "help": "push this tree from the host, exactly as it is"}),
    Option(("--url",), {"metavar": "URL", "help": "check this git or SVN URL out inside the headnode"}),
    Option(("--revision",), {"metavar": "REV", "help": "revision to check out (with --url)"}),
    Option(("--vcs",), {"choices": ["git", "svn"],
                        "help": "version control of --url (default: svn for svn:// URLs, else git)"}),
)
INPUTS = Option(("--inputs",), {"type": flag_path, "metavar": "DIR",
                                "help": "input files that replace the generated ones (buildimage, defineclients, "
                                "networkclients, client.macs, configurator: step 2's stdin) or add to them "
                                "(opkgselector)"})

CLAIM = Phase("claim", "wait for room on this host for a new cluster (a worker's max_clusters), then claim it",
              "oscarvt.phases.host:claim", (
                  Option(("--under",), {"type": flag_path, "required": True, "metavar": "DIR",
                                        "help": "the folder whose clusters count (the worker's)"}),
                  Option(("--max-clusters",), {"type": int, "required": True, "metavar": "N",
                                               "help": "clusters the host runs at once, kept ones included"}),
                  Option(("--wait",), {"type": float, "metavar": "S",
                                       "help": "seconds to wait for room (default: an hour)"}),
              ), lock=None)
COPY_VM_IMAGE = Phase("copy-vm-image", "create a cluster: profiles, template overlay, node disks",
                      "oscarvt.phases.create:copy_vm_image", (SPEC,), lock="create")
BOOT_HEADNODE = Phase("boot-headnode", "start the headnode and wait for SSH", "oscarvt.phases.boot:boot_headnode")
CHECKOUT_OSCAR = Phase("checkout-oscar", "put the OSCAR revision under test on the headnode",
                       "oscarvt.phases.checkout:checkout_oscar", CHECKOUT)
START_OSCAR = Phase("start-oscar", "start install_cluster on the headnode, up to its boot hook",
                    "oscarvt.phases.oscar:start_oscar", (INPUTS,))
BOOT_COMPUTE_NODES = Phase(
    "boot-compute-nodes", "start the compute nodes", "oscarvt.phases.boot:boot_compute_nodes", (
        Option(("--boot",), {"choices": ["cdrom", "network", "disk"], "help": "boot device (default: spec)"}),
        Option(("--iso",), {"type": flag_path, "metavar": "FILE", "help": "CD image to boot from (with --boot cdrom)"}),
        Option(("--node",), {"action": "append", "dest": "only", "metavar": "NAME",
                             "help": "start only this node (repeatable), e.g. to restart one from its disk"}),
    ))
WAIT_FOR_NODES = Phase(
    "wait-for-nodes", "follow the nodes' imaging; release OSCAR's boot hook", "oscarvt.phases.nodes:wait_for_nodes",
    (Option(("--timeout",), {"type": float, "metavar": "S",
                             "help": "seconds for all nodes (default: timeouts.install)"}),))
FINISH_OSCAR = Phase("finish-oscar", "let OSCAR finish post-install and its tests; its status is the verdict",
                     "oscarvt.phases.oscar:finish_oscar")
GRAB_LOGS = Phase("grab-logs", "collect every log into a folder and a tarball", "oscarvt.phases.logs:grab_logs",
                  (Option(("--dest",), {"type": flag_path, "required": True, "metavar": "DIR",
                                        "help": "folder for the logs"}),))
SEND_LOGS = Phase("send-logs", "mail a summary with the logs attached", "oscarvt.phases.mail:send_logs", (
    Option(("--to",), {"nargs": "+", "required": True, "metavar": "ADDR", "help": "recipients"}),
    Option(("--smtp",), {"default": "localhost:25", "metavar": "HOST:PORT",
                         "help": "mail relay (default: localhost:25)"}),
    Option(("--sender",), {"metavar": "ADDR", "help": "From: address (default: oscarvt@HOSTNAME)"}),
))
RUN = Phase("run", "every phase in order; grab-logs and destroy always run at the end", "oscarvt.phases.run:run", (
    SPEC, *CHECKOUT,
    Option(("--inputs",), {"type": flag_path, "metavar": "DIR", "help": "input files for start-oscar"}),
    Option(("--boot",), {"choices": ["cdrom", "network"], "help": "node boot method (default: spec)"}),
    Option(("--logs",), {"type": flag_path, "metavar": "DIR",
                         "help": "where grab-logs puts the logs (default: DIR/logs)"}),
    Option(("--keep",), {"action": "store_true", "help": "leave a failed cluster running for a person to log into"}),
), lock="create")
KEEP = Phase("keep", "leave the cluster running for a person: 'reap' leaves it alone, 'destroy' when done",
             "oscarvt.phases.host:keep",
             (Option(("--reason",), {"metavar": "TEXT", "help": "who keeps it and why (shown by reap)"}),))
DESTROY = Phase("destroy", "stop every VM and remove the disks (safe to repeat)", "oscarvt.phases.destroy:destroy")

RUN_PHASES = (COPY_VM_IMAGE, BOOT_HEADNODE, CHECKOUT_OSCAR, START_OSCAR, BOOT_COMPUTE_NODES, WAIT_FOR_NODES,
              FINISH_OSCAR)
"""What ``run`` does, in order (the paper's Listing 1); then ``CLEANUP_PHASES``, whatever happened."""
CLEANUP_PHASES = (GRAB_LOGS, DESTROY)
PHASES = {phase.name: phase for phase in (*RUN_PHASES, GRAB_LOGS, SEND_LOGS, RUN, CLAIM, KEEP, DESTROY)}
"""Every phase by name, in the order ``oscarvt --help`` lists them."""
