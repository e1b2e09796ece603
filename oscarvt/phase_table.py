"""The phase table: every verb that works on a cluster folder, written once.

Each entry is a phase's name (the CLI verb, the Buildbot step, the state's phase record; from
``oscarvt.phase_names``), its help text, the function that runs it and its command-line options.
``oscarvt.cli`` makes one verb of each entry, ``run`` runs ``RUN_PHASES`` and then
``CLEANUP_PHASES``, the Buildbot steps take their names from here and ``oscarvt.limits`` bounds
each one.

A phase's function takes the ``ClusterDir`` and, as keywords, the values of its options
(an option left out, as ``run`` leaves out ``--iso``, is None).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping

from oscarvt import phase_names as names
from oscarvt.paths import flag_path
from oscarvt.phases.boot import boot_compute_nodes, boot_headnode
from oscarvt.phases.checkout import checkout_oscar
from oscarvt.phases.create import copy_vm_image
from oscarvt.phases.host import claim, keep
from oscarvt.phases.logs import grab_logs
from oscarvt.phases.mail import send_logs
from oscarvt.phases.nodes import wait_for_nodes
from oscarvt.phases.oscar import finish_oscar, start_oscar
from oscarvt.run import run
from oscarvt.teardown import destroy

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
    """One phase: name, help, the function that runs it, options.

    ``lock``: "existing" holds the cluster folder's lock; "create" makes the folder first; None: no lock.
    """

    name: str
    help: str
    function: Callable[..., str]
    options: tuple[Option, ...] = ()
    lock: Literal["existing", "create"] | None = "existing"

    def call(self, cluster: ClusterDir, values: Mapping[str, Any]) -> str:
        """Run the phase on ``cluster`` with the values its options name; its verdict text."""
        return self.function(cluster, **{option.dest: values.get(option.dest) for option in self.options})


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

CLAIM = Phase(names.CLAIM, "wait for room on this host for a new cluster (a worker's max_clusters), then claim it",
              claim, (
                  Option(("--under",), {"type": flag_path, "required": True, "metavar": "DIR",
                                        "help": "the folder whose clusters count (the worker's)"}),
                  Option(("--max-clusters",), {"type": int, "required": True, "metavar": "N",
                                               "help": "clusters the host runs at once, kept ones included"}),
                  Option(("--wait",), {"type": float, "metavar": "S",
                                       "help": "seconds to wait for room (default: an hour)"}),
              ), lock=None)
COPY_VM_IMAGE = Phase(names.COPY_VM_IMAGE, "create a cluster: profiles, template overlay, node disks",
                      copy_vm_image, (SPEC,), lock="create")
BOOT_HEADNODE = Phase(names.BOOT_HEADNODE, "start the headnode and wait for SSH", boot_headnode)
CHECKOUT_OSCAR = Phase(names.CHECKOUT_OSCAR, "put the OSCAR revision under test on the headnode",
                       checkout_oscar, CHECKOUT)
START_OSCAR = Phase(names.START_OSCAR, "start install_cluster on the headnode, up to its boot hook",
                    start_oscar, (INPUTS,))
BOOT_COMPUTE_NODES = Phase(
    names.BOOT_COMPUTE_NODES, "start the compute nodes", boot_compute_nodes, (
        Option(("--boot",), {"choices": ["cdrom", "network", "disk"], "help": "boot device (default: spec)"}),
        Option(("--iso",), {"type": flag_path, "metavar": "FILE", "help": "CD image to boot from (with --boot cdrom)"}),
        Option(("--node",), {"action": "append", "dest": "only", "metavar": "NAME",
                             "help": "start only this node (repeatable), e.g. to restart one from its disk"}),
    ))
WAIT_FOR_NODES = Phase(
    names.WAIT_FOR_NODES, "follow the nodes' imaging; release OSCAR's boot hook", wait_for_nodes,
    (Option(("--timeout",), {"type": float, "metavar": "S",
                             "help": "seconds for all nodes (default: timeouts.install)"}),))
FINISH_OSCAR = Phase(names.FINISH_OSCAR, "let OSCAR finish post-install and its tests; its status is the verdict",
                     finish_oscar)
GRAB_LOGS = Phase(names.GRAB_LOGS, "collect every log into a folder and a tarball", grab_logs,
                  (Option(("--dest",), {"type": flag_path, "required": True, "metavar": "DIR",
                                        "help": "folder for the logs"}),))
SEND_LOGS = Phase(names.SEND_LOGS, "mail a summary with the logs attached", send_logs, (
    Option(("--to",), {"nargs": "+", "required": True, "metavar": "ADDR", "help": "recipients"}),
    Option(("--smtp",), {"default": "localhost:25", "metavar": "HOST:PORT",
                         "help": "mail relay (default: localhost:25)"}),
    Option(("--sender",), {"metavar": "ADDR", "help": "From: address (default: oscarvt@HOSTNAME)"}),
))
KEEP = Phase(names.KEEP, "leave the cluster running for a person: 'reap' leaves it alone, 'destroy' when done",
             keep,
             (Option(("--reason",), {"metavar": "TEXT", "help": "who keeps it and why (shown by reap)"}),))
DESTROY = Phase(names.DESTROY, "stop every VM and remove the disks (safe to repeat)", destroy)

RUN_PHASES = (COPY_VM_IMAGE, BOOT_HEADNODE, CHECKOUT_OSCAR, START_OSCAR, BOOT_COMPUTE_NODES, WAIT_FOR_NODES,
              FINISH_OSCAR)
"""What ``run`` does, in order (the paper's Listing 1); then ``CLEANUP_PHASES``, whatever happened."""
CLEANUP_PHASES = (GRAB_LOGS, DESTROY)
RUN = Phase(names.RUN, "every phase in order; grab-logs and destroy always run at the end",
            partial(run, phases=RUN_PHASES), (
    SPEC, *CHECKOUT,
    Option(("--inputs",), {"type": flag_path, "metavar": "DIR", "help": "input files for start-oscar"}),
    Option(("--boot",), {"choices": ["cdrom", "network"], "help": "node boot method (default: spec)"}),
    Option(("--logs",), {"type": flag_path, "metavar": "DIR",
                         "help": "where grab-logs puts the logs (default: DIR/logs)"}),
    Option(("--keep",), {"action": "store_true", "help": "leave a failed cluster running for a person to log into"}),
), lock="create")
PHASES = {phase.name: phase for phase in (*RUN_PHASES, GRAB_LOGS, SEND_LOGS, RUN, CLAIM, KEEP, DESTROY)}
"""Every phase by name, in the order ``oscarvt --help`` lists them."""
