"""OSCAR's input files, written from the cluster spec and state in the form OSCAR's CLI reads.

start-oscar writes them into ``INPUTS_DIR`` on the headnode, one per install_cluster flag:

- ``defineclients`` (step 5): domain, base name, number of hosts, first number, padding,
  first address, netmask, gateway, then 10 (add the clients). No item 1: in file mode OSCAR's
  define_oscar_clients_cli never gets past it; without it OSCAR takes the first image it built.
- ``buildimage`` (step 4): 8 alone, which builds the image with OSCAR's defaults (name
  ``oscarimage``, static addresses, reboot after the install). Without a file OSCAR runs the
  menu on stdin and reprints it forever.
- ``networkclients`` (step 6): 1 (import the MAC file ``client.macs``, then 1: assign the MACs
  automatically, in file order, to the clients in name order; the DHCP server is set up
  there, dynamic DHCP being on), 3 (installation mode, the spec's ``oscar.install_mode``),
  8 (the boot CD), 9 (network boot), then 4 (enable the install mode), which ends OSCAR's menu
  when it succeeds, and 10 (finish), which OSCAR reads only when 4 fails. Item 6 (configure
  DHCP) is left out: OSCAR does nothing with it before a 4, and reads nothing after one.
- ``configurator`` (step 2, on install_cluster's stdin): ``quit`` and a carriage return, as a
  person types it at the configurator's prompt. main_cli runs scripts/cli/configurator_cli
  with no file (main_cli line 139), and its prompt (Term::Complete, configurator_cli line
  102) reads characters until a carriage return: without one it reads forever.
- ``client.macs``: one MAC a line, the node's name as a ``#`` comment after it, in the nodes'
  order, which is OSCAR's client order (base name, then number).

A file of the same name in the user's ``--inputs`` folder replaces the generated one; an
``opkgselector`` there is passed as it is. Answer files are
replayed as OSCAR reads them first (:mod:`oscarvt.oscar_menus`), so that one OSCAR would hang
on is refused here, naming the file and line.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from oscarvt.errors import InputError, shown
from oscarvt.oscar_menus import BUILD_IMAGE, DEFINE_CLIENTS, MENUS, SETUP_NETWORKING, perl_number, replay, write_answers
from oscarvt.spec import ClusterSpec
from oscarvt.state import ClusterState

INPUTS_DIR = "/var/lib/oscarvt/inputs"
MAC_FILE = "client.macs"
CONSOLE_FILE = "configurator"  # install_cluster's stdin: what step 2's prompt reads
CONFIGURATOR_QUIT = "quit\r"
FLAG_FILES = ("opkgselector", "buildimage", "defineclients", "networkclients")
AUTOMATIC = "1"  # MAC assignment method: automatically, in file order


def mac_file(state: ClusterState) -> str:
    """The MAC file step 6 imports: ``MAC # NAME`` a line, in client order."""
    return "# MAC addresses of the compute node VMs, written by oscarvt\n" + "".join(
        f"{vm.mac}\t# {name}\n" for name, vm in state.node_vms().items())


def define_clients(spec: ClusterSpec, state: ClusterState) -> str:
    """Answers for step 5: the spec's number of nodes, base name and addresses."""
    nodes = list(state.node_vms().values())
    if not nodes:
        raise InputError("the cluster has no compute nodes to define (nodes.count is 0)")
    subnet = ipaddress.ip_network(spec.network.subnet)
    head = state.vms[state.headnode_name()]
    return write_answers(DEFINE_CLIENTS, [
        (2, [spec.oscar.domain]), (3, [spec.nodes.name]), (4, [str(len(nodes))]), (5, ["1"]),
        (6, ["0"]), (7, [nodes[0].ip]), (8, [str(subnet.netmask)]), (9, [head.ip]), (10, [])],
        "written by oscarvt from the cluster spec; no item 1, OSCAR takes the first image")


def build_image() -> str:
    """Answers for step 4: build the image with OSCAR's defaults."""
    return write_answers(BUILD_IMAGE, [(8, [])], "written by oscarvt: build the image with OSCAR's defaults")


def network_clients(spec: ClusterSpec) -> str:
    """Answers for step 6: import and assign the MACs, install mode, boot CD, network boot, then enable."""
    return write_answers(SETUP_NETWORKING, [
        (1, [f"{INPUTS_DIR}/{MAC_FILE}", AUTOMATIC]), (3, [spec.oscar.install_mode]), (8, []), (9, []),
        (4, []), (10, [])],
        "written by oscarvt; item 1 is followed by the file name and the assignment method; a successful "
        "item 4 ends OSCAR's menu, so it comes last, and 10 is read only if it fails")


def input_files(spec: ClusterSpec, state: ClusterState, overrides: Path | None) -> dict[str, str]:
    """Every input file by name (flag files and the MAC file), overrides applied and checked."""
    files = {"buildimage": build_image(), "defineclients": define_clients(spec, state),
             "networkclients": network_clients(spec), MAC_FILE: mac_file(state), CONSOLE_FILE: CONFIGURATOR_QUIT}
    if overrides is not None:
        files.update(read_overrides(overrides))
        if (overrides / "defineclients").is_file():
            check_clients(files["defineclients"], f"--inputs: {overrides / 'defineclients'}", spec, state)
    return files


def check_clients(text: str, where: str, spec: ClusterSpec, state: ClusterState) -> None:
    """A user's define-clients answers must define one client per node VM (OSCAR gives the MAC file's
    MACs to its clients one for one), at addresses of the cluster's private LAN that are not the
    headnode's: otherwise a node would only show as one that never reports, blamed on OSCAR."""
    answers = {answer.item: answer.value for answer in replay(DEFINE_CLIENTS, text, where)}
    nodes = len(state.node_vms())
    count = perl_number(answers.get(4) or "1")  # OSCAR's default is one host (define_oscar_clients_cli 79)
    if count != nodes:
        raise InputError(f"{where}: item 4 (Number of Hosts) defines {count:g} clients, but the cluster has "
                         f"{nodes} nodes (nodes.count); OSCAR gives each client one node's MAC")
    first = answers.get(7)
    if first is None:
        return  # OSCAR takes the address after the headnode's on its interface
    subnet = ipaddress.ip_network(spec.network.subnet)
    try:
        start = ipaddress.IPv4Address(first.strip())
    except ValueError:
        raise InputError(f"{where}: item 7 (Starting IP) {shown(first)} is not an IPv4 address") from None
    head = ipaddress.IPv4Address(state.vms[state.headnode_name()].ip)
    for offset in range(nodes):
        address = start + offset if int(start) + offset < 2**32 else None
        if address is None or address not in subnet or address in (head, subnet.network_address,
                                                                    subnet.broadcast_address):
            shown_address = address or "past 255.255.255.255"
            raise InputError(f"{where}: item 7 (Starting IP) {start} gives client {offset + 1} the address "
                             f"{shown_address}, which is not a node's on the cluster's LAN {subnet} (network.subnet; "
                             f"the headnode is {head})")


def read_overrides(overrides: Path) -> dict[str, str]:
    """The files of an ``--inputs`` folder by name, checked (answer files replayed as OSCAR reads them)."""
    if not overrides.is_dir():
        raise InputError(f"--inputs: {'not a folder' if overrides.exists() else 'no such folder'}: "
                         f"{shown(str(overrides))}")
    files = {}
    for path in sorted(overrides.iterdir()):
        if path.name not in (*FLAG_FILES, MAC_FILE, CONSOLE_FILE):
            raise InputError(f"--inputs: {path}: not an input file "
                             f"(expected {', '.join((*FLAG_FILES, MAC_FILE, CONSOLE_FILE))})")
        if not path.is_file():  # a folder, or a FIFO that would never end
            raise InputError(f"--inputs: {path}: not a regular file")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"--inputs: {path}: cannot read it: {exc}") from None
        if "\0" in text:
            line = text.count("\n", 0, text.index("\0")) + 1
            raise InputError(f"--inputs: {path} line {line}: a NUL character (OSCAR reads text)")
        if path.name in MENUS:
            replay(MENUS[path.name], text, f"--inputs: {path}")
        if path.name == CONSOLE_FILE and "\r" not in text:
            raise InputError(f"--inputs: {path}: no carriage return: step 2's prompt (Term::Complete, "
                             "scripts/cli/configurator_cli line 102) ends a command there, and would read forever")
        files[path.name] = text
    return files
