"""OSCAR's input files, written from the cluster spec and state.

start-oscar writes them into ``INPUTS_DIR`` on the headnode, one per install_cluster flag:
``defineclients`` (from the spec's nodes and subnet), ``networkclients`` (importing the MAC
file ``client.macs`` made from the node profiles), and the MAC file itself. A file of the
same name in the user's ``--inputs`` folder replaces the generated one; other flag files
there (``opkgselector``, ``buildimage``) are passed as they are.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from oscarvt.errors import OscarvtError
from oscarvt.phases.access import headnode_name, node_vms
from oscarvt.spec import ClusterSpec

INPUTS_DIR = "/var/lib/oscarvt/inputs"
MAC_FILE = "client.macs"
FLAG_FILES = ("opkgselector", "buildimage", "defineclients", "networkclients")


def mac_file(state: dict[str, Any]) -> str:
    """The MAC file step 6 imports: ``NAME MAC`` a line, as the node profiles say."""
    return "".join(f"{name} {vm['mac']}\n" for name, vm in node_vms(state).items())


def define_clients(spec: ClusterSpec, state: dict[str, Any]) -> str:
    """Answers for step 5: the spec's number of nodes, base name and addresses."""
    nodes = list(node_vms(state).values())
    if not nodes:
        raise OscarvtError("the cluster has no compute nodes to define (nodes.count is 0)")
    subnet = ipaddress.ip_network(spec.network.subnet)
    head = state["vms"][headnode_name(state)]
    answers = [("1", spec.oscar.image, "image name"), ("2", spec.oscar.domain, "domain name"),
               ("3", spec.nodes.name, "base host name"), ("4", str(len(nodes)), "number of hosts"),
               ("5", "1", "starting number"), ("6", "0", "padding"),
               ("7", nodes[0]["ip"], "starting IP"), ("8", str(subnet.netmask), "netmask"),
               ("9", head["ip"], "gateway"), ("10", None, "add the clients"), ("11", None, "quit")]
    return _menu("Define OSCAR Clients", answers)


def network_clients() -> str:
    """Answers for step 6: import the MAC file, static DHCP, boot CD and network boot."""
    answers = [("1", f"{INPUTS_DIR}/{MAC_FILE}", "import MACs from a file"),
               ("3", "systemimager-rsync", "installation mode"), ("4", None, "enable install mode"),
               ("6", None, "configure the DHCP server"), ("8", None, "build the AutoInstall CD"),
               ("9", None, "set up network boot"), ("10", None, "finish")]
    return _menu("Setup Networking", answers)


def input_files(spec: ClusterSpec, state: dict[str, Any], overrides: Path | None) -> dict[str, str]:
    """Every input file by name (flag files and the MAC file), overrides applied."""
    files = {"defineclients": define_clients(spec, state), "networkclients": network_clients(),
             MAC_FILE: mac_file(state)}
    if overrides is not None:
        if not overrides.is_dir():
            raise OscarvtError(f"--inputs: no such folder {overrides}")
        for path in sorted(overrides.iterdir()):
            if path.name not in (*FLAG_FILES, MAC_FILE):
                raise OscarvtError(f"--inputs: {path}: not an input file "
                                   f"(expected {', '.join((*FLAG_FILES, MAC_FILE))})")
            files[path.name] = path.read_text()
    return files


def _menu(title: str, answers: list[tuple[str, str | None, str]]) -> str:
    lines = [f"# {title}, written by oscarvt from the cluster spec"]
    for item, value, what in answers:
        lines += [f"# {what}", item] + ([value] if value is not None else [])
    return "\n".join(lines) + "\n"
