"""A cluster's addresses: its private LAN, deterministic MACs and IPs, free ports, taps.

Each cluster gets a random 16-bit id when it is created. Everything else follows
from the id, so two clusters on one host never share a LAN:

- LAN (rootless): multicast group ``239.255.<id hi>.<id lo>``, UDP port
  ``20000 + id % 40000``, on 127.0.0.1 only;
- LAN (bridge): bridge ``ovt<id>`` (unless the spec names one) and a tap per NIC;
- MACs: ``52:54:00:<id hi>:<id lo>:<k+1>`` for VM k's private NIC (headnode k=0),
  ``52:54:01:<id hi>:<id lo>:01`` for the headnode's NAT NIC;
- IPs: the subnet's (k+1)-th host address for VM k (headnode first).
"""

from __future__ import annotations

import ipaddress
import random
import socket
import subprocess
from pathlib import Path

from oscarvt.errors import InfraError
from oscarvt.tools import run_tool


def new_cluster_id() -> int:
    """A random id whose multicast port no socket on this host uses yet."""
    busy = _udp_ports_in_use()
    for _ in range(1000):
        cluster_id = random.randint(1, 0xFFFE)
        if mcast_port(cluster_id) not in busy:
            return cluster_id
    raise InfraError("no free UDP port for a cluster LAN")


def mcast_group(cluster_id: int) -> str:
    """``GROUP:PORT`` of the cluster's rootless private LAN."""
    return f"239.255.{cluster_id >> 8}.{cluster_id & 0xFF}:{mcast_port(cluster_id)}"


def mcast_port(cluster_id: int) -> int:
    return 20000 + cluster_id % 40000


def private_mac(cluster_id: int, index: int) -> str:
    """MAC of VM ``index``'s private NIC (0 = headnode, 1.. = nodes)."""
    return f"52:54:00:{cluster_id >> 8:02x}:{cluster_id & 0xFF:02x}:{index + 1:02x}"


# The MAC of every headnode's NAT NIC: each NAT is the VM's own (QEMU's user-mode network), so they never
# meet; and a warm start keeps the saved state's MAC on it (QEMU's DHCP would give a new MAC a new address).
NAT_MAC = "52:54:01:00:00:01"


def private_ip(subnet: str, index: int) -> str:
    """Address of VM ``index`` on the private LAN: the subnet's (index+1)-th host."""
    return str(ipaddress.ip_network(subnet).network_address + index + 1)


def bridge_name(cluster_id: int) -> str:
    return f"ovt{cluster_id:04x}"


def tap_name(cluster_id: int, index: int) -> str:
    return f"ovt{cluster_id:04x}t{index}"


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _udp_ports_in_use() -> set[int]:
    ports: set[int] = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        ports.update(int(line.split()[1].rsplit(":", 1)[1], 16) for line in lines)
    return ports


# Bridge and tap back end (needs CAP_NET_ADMIN, e.g. root).

def ensure_bridge(name: str) -> bool:
    """Create bridge ``name`` and bring it up unless it exists; True if this call created it."""
    if link_exists(name):
        return False
    _ip("link", "add", "name", name, "type", "bridge")
    _ip("link", "set", "dev", name, "up")
    return True


def add_tap(tap: str, bridge: str) -> None:
    """Create tap ``tap`` (replacing a stale one) and attach it to ``bridge``."""
    remove_link(tap)
    _ip("tuntap", "add", "dev", tap, "mode", "tap")
    _ip("link", "set", "dev", tap, "master", bridge, "up")


def remove_link(name: str) -> None:
    """Delete a tap or bridge if it exists."""
    if link_exists(name):
        _ip("link", "del", "dev", name)


def link_exists(name: str) -> bool:
    """True if this network namespace has an interface ``name`` (asked of ip, not /sys)."""
    try:
        return subprocess.run(["ip", "link", "show", "dev", name], capture_output=True, timeout=30).returncode == 0
    except subprocess.TimeoutExpired:
        raise InfraError(f"ip link show dev {name}: no answer within 30s") from None


def _ip(*args: str) -> None:
    run_tool(["ip", *args], f"ip {' '.join(args)}", hint="the bridge back end needs root or CAP_NET_ADMIN")
