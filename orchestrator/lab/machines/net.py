"""The lab network: one Linux bridge per lab, addresses only in 198.18.0.0/15.

Address plan for a lab network N (e.g. 198.18.250.0/24): the host side of the
bridge is N[1], machine i (0-based, in the order given to `up`) is N[2 + i].
Several labs coexist on disjoint networks (198.18.0.0/24, 198.18.1.0/24, ...),
each on its own bridge.

Interface names: Linux allows 15 characters. nspawn names the host side of a
machine's veth "vb-" + machine name and, when that is longer than 15, shortens
it with a hash (systemd 252: `vb-cfmx0-aaZjEL`), which we could not predict.
So the nspawn machine name is derived from the bridge (unique on this computer)
and the machine's index, "<bridge>m<index>", and must fit 12 characters: the veth
is then exactly "vb-<bridge>m<index>", distinct across labs by construction, and
the logical hostname (site1-cs1, which two labs may share) never reaches an
interface name.

Only interfaces this module creates are ever touched: every command names the
lab's bridge or one of its veths.
"""

from __future__ import annotations

import json
import re
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, ip_network
from pathlib import Path
from typing import Any

from orchestrator.lab.machines.errors import AddressInUse, AddressOutOfRange, NamingError
from orchestrator.lab.machines.host import run

LAB_RANGE = IPv4Network("198.18.0.0/15")
IFNAMSIZ = 15
VETH_PREFIX = "vb-"
BRIDGE_RE = re.compile(r"^[a-z][a-z0-9]{0,8}$")  # <= 9: leaves room for "m<index>" in 12


def lab_network(value: IPv4Network | str) -> IPv4Network:
    """Parse and validate a lab network: inside 198.18.0.0/15, room for a host and a machine."""
    try:
        net = value if isinstance(value, IPv4Network) else ip_network(value, strict=True)
    except ValueError as exc:
        raise AddressOutOfRange(f"not an IPv4 network: {value!r} ({exc})") from exc
    if not isinstance(net, IPv4Network) or not net.subnet_of(LAB_RANGE):
        raise AddressOutOfRange(f"lab network {value} is outside {LAB_RANGE}",
                                hint="labs may only use 198.18.0.0/15 (RFC 2544), e.g. 198.18.250.0/24")
    if net.num_addresses < 4:
        raise AddressOutOfRange(f"lab network {net} is too small (needs a host and a machine address)")
    return net


def host_address(network: IPv4Network) -> IPv4Interface:
    """The bridge's (host side) address: the network's first host."""
    return IPv4Interface(f"{network[1]}/{network.prefixlen}")


def machine_address(network: IPv4Network, index: int) -> IPv4Interface:
    """Machine `index`'s address: network[2 + index], refused past the last host address."""
    if index < 0 or 2 + index >= network.num_addresses - 1:
        raise AddressOutOfRange(f"machine #{index} does not fit in {network}")
    return IPv4Interface(f"{network[2 + index]}/{network.prefixlen}")


def check_bridge_name(bridge: str) -> str:
    """A bridge name: lower-case, starts with a letter, at most 9 characters (see module doc)."""
    if not BRIDGE_RE.match(bridge):
        raise NamingError(f"bridge name {bridge!r} must match {BRIDGE_RE.pattern}",
                          hint="machine names are <bridge>m<index> and nspawn's veth vb-<machine> must fit 15")
    return bridge


def machine_name(bridge: str, index: int) -> str:
    """nspawn's -M name for machine `index` of the lab on `bridge`."""
    name = f"{check_bridge_name(bridge)}m{index}"
    if len(VETH_PREFIX) + len(name) > IFNAMSIZ:
        raise NamingError(f"machine name {name!r} is too long: {VETH_PREFIX}{name} exceeds {IFNAMSIZ} characters")
    return name


def veth_name(machine: str) -> str:
    """The host-side veth nspawn creates for `machine` with --network-bridge (exact: see module doc)."""
    name = VETH_PREFIX + machine
    if len(name) > IFNAMSIZ:
        raise NamingError(f"{name!r} exceeds {IFNAMSIZ} characters; nspawn would hash it")
    return name


def _ip_json(*args: str) -> list[dict[str, Any]]:
    out = run(["ip", "-j", *args], timeout=10, check=False)
    if out.returncode != 0 or not out.stdout.strip():
        return []
    data = json.loads(out.stdout)
    return data if isinstance(data, list) else [data]


def assigned_addresses() -> list[tuple[str, IPv4Address]]:
    """Every IPv4 address assigned on this computer, as (interface, address)."""
    found = []
    for link in _ip_json("-4", "addr", "show"):
        for info in link.get("addr_info", []):
            if info.get("family") == "inet":
                found.append((str(link["ifname"]), IPv4Address(info["local"])))
    return found


def conflicts(network: IPv4Network, count: int, bridge: str) -> list[str]:
    """Why the lab's addresses cannot be used here; empty when they can.

    An address conflicts when it is assigned on any interface but our bridge, when a
    route other than the default covers it through another interface (someone else's
    lab or VPN uses the range), or when the kernel already treats it as local (an
    AnyIP `local` route assigns addresses without `ip addr`)."""
    wanted = [host_address(network).ip] + [machine_address(network, i).ip for i in range(count)]
    problems = []
    for ifname, addr in assigned_addresses():
        if ifname != bridge and (addr in network):
            problems.append(f"{addr} is assigned on {ifname}")
    for route in _ip_json("-4", "route", "show", "table", "all"):
        dst, dev = str(route.get("dst", "")), str(route.get("dev", ""))
        if dst in ("", "default") or dev == bridge or route.get("type") in ("broadcast",):
            continue
        try:
            covered = ip_network(dst, strict=False)
        except ValueError:
            continue
        if isinstance(covered, IPv4Network) and covered.overlaps(network) and covered.prefixlen > 0:
            problems.append(f"{network} overlaps route {dst} via {dev or route.get('gateway', '?')}"
                            f" ({route.get('type', 'unicast')}, table {route.get('table', 'main')})")
    for addr in wanted:
        for got in _ip_json("-4", "route", "get", str(addr)):
            if got.get("type") == "local" and got.get("dev") != bridge and not bridge_has(bridge, addr):
                problems.append(f"{addr} is local on this computer (route get: dev {got.get('dev')})")
    return sorted(set(problems))


def refuse_conflicts(network: IPv4Network, count: int, bridge: str) -> None:
    """Raise AddressInUse listing every conflict; call before creating anything."""
    problems = conflicts(network, count, bridge)
    if problems:
        raise AddressInUse(f"lab network {network} is not free: " + "; ".join(problems),
                           hint="pick another /24 inside 198.18.0.0/15, or tear down the lab that uses it")


def link_exists(ifname: str) -> bool:
    """True when a network interface of that name exists."""
    return Path("/sys/class/net", ifname).exists()


def bridge_has(bridge: str, addr: IPv4Address) -> bool:
    """True when `addr` is assigned on `bridge`."""
    return any(ifname == bridge and a == addr for ifname, a in assigned_addresses())


def _disable_ipv6(ifname: str) -> None:
    # No IPv6 link-local chatter from lab interfaces: traffic stays on the lab's IPv4 addresses.
    knob = Path("/proc/sys/net/ipv6/conf", ifname, "disable_ipv6")
    if knob.exists():
        knob.write_text("1\n")


def create_bridge(bridge: str, network: IPv4Network) -> bool:
    """Create the lab bridge with the host address; returns False when it already existed.

    STP off and forward delay 0: ports forward as soon as a machine's veth joins, so
    the first SSH after boot is not held up for 15 s of STP listening/learning."""
    created = False
    if not link_exists(bridge):
        run(["ip", "link", "add", "name", bridge, "type", "bridge", "stp_state", "0", "forward_delay", "0"])
        created = True
    _disable_ipv6(bridge)
    # Never route what machines send beyond the bridge, even if someone turns ip_forward on
    # later: per-interface forwarding governs packets *received* on this interface.
    forwarding = Path("/proc/sys/net/ipv4/conf", bridge, "forwarding")
    if forwarding.exists():
        forwarding.write_text("0\n")
    addr = host_address(network)
    if not bridge_has(bridge, addr.ip):
        run(["ip", "addr", "add", str(addr), "dev", bridge])
    run(["ip", "link", "set", bridge, "up"])
    return created


def delete_bridge(bridge: str) -> None:
    """Remove the bridge (and with it its address and route). Absent is fine."""
    if link_exists(bridge):
        run(["ip", "link", "del", bridge], timeout=20)


def delete_veth(veth: str) -> None:
    """Remove a veth nspawn left behind (normally it goes with the machine's namespace)."""
    if veth.startswith(VETH_PREFIX) and link_exists(veth):
        run(["ip", "link", "del", veth], timeout=20, check=False)


def bridge_ports(bridge: str) -> list[str]:
    """Names of the interfaces enslaved to `bridge`."""
    return [str(link["ifname"]) for link in _ip_json("link", "show", "master", bridge)] if link_exists(bridge) else []


def set_link(veth: str, up: bool) -> None:
    """Bring a machine's host-side veth up or down (the cable-cut fault)."""
    if not veth.startswith(VETH_PREFIX):
        raise NamingError(f"refusing to touch {veth!r}: not a machine veth")
    run(["ip", "link", "set", veth, "up" if up else "down"])


def link_is_up(veth: str) -> bool:
    """True when the interface is administratively up."""
    links = _ip_json("link", "show", "dev", veth)
    return bool(links) and "UP" in links[0].get("flags", [])


def after_attach(veth: str) -> None:
    """Per-veth hygiene once nspawn created it: no IPv6 on the host side."""
    _disable_ipv6(veth)
