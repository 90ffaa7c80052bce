"""Lab topologies: TOML files naming hosts, links, network settings and (for the WAN emulator) RTTs.

Format (every key but `hosts` is optional)::

    description = "free text"

    [network]              # sent as is to PATCH /api/v1/network before any node is created
    stp_hello_time = 1
    stp_max_age = 6
    stp_forward_delay = 2

    [hosts.rho]            # hosts are created in file order (the app allocates addresses in that order)
    location = "Paris, FR"
    endpoint = true        # default true: the node's endpoint is <wan ip>:<listen_port>
    listen_port = 56560    # default 56560, also sent as the node's listen_port when it has an endpoint
    nat = false            # true: behind its own NAT namespace (nftables masquerade), never an endpoint

    [[links]]
    a = "rho"
    b = "bob"
    cost = 100             # optional; the app derives one otherwise

    [rtt_ms]               # optional symmetric matrix of underlay round-trip times (issue 7);
    rho = { bob = 10 }     # each pair once, either way round; pairs not given: 0

    [wan]                  # optional: jitter and loss of the WAN emulator (lab.wan), for every host pair
    jitter_ms = 0.5        # each packet's one-way delay varies uniformly by ± this (never reordered)
    loss = 0.0             # probability that a packet is lost, drawn per packet and direction
    pairs = { rho = { pi0 = { loss = 0.02 } } }   # per-pair jitter_ms / loss overrides

With `[rtt_ms]` or `[wan]` present the lab's underlay runs through the WAN emulator (lab.wan);
without either it is a plain bridge (`python -m lab up --wan` / `--no-wan` overrides).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TOPOLOGY_DIR = Path(__file__).resolve().parent / "topologies"
DEFAULT_LISTEN_PORT = 56560
MAX_HOSTS = 253  # 192.0.2.1 … 192.0.2.253; .254 is the control namespace

HOST_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,14}$")
# Names the lab gives its own namespaces (<prefix>-control, <prefix>-wan, <prefix>-nat-<host>).
LAB_RESERVED_NAMES = frozenset({"control", "wan"})
HOST_KEYS = frozenset({"location", "endpoint", "listen_port", "nat"})
LINK_KEYS = frozenset({"a", "b", "cost"})
TOP_KEYS = frozenset({"description", "network", "hosts", "links", "rtt_ms", "wan"})
WAN_KEYS = frozenset({"jitter_ms", "loss", "pairs"})
WAN_PAIR_KEYS = frozenset({"jitter_ms", "loss"})


class TopologyError(ValueError):
    """A topology file that the lab cannot build."""


@dataclass(frozen=True)
class Host:
    """One lab host: a network namespace that enrolls as a privnet node."""

    name: str
    location: str | None = None
    endpoint: bool = True
    listen_port: int = DEFAULT_LISTEN_PORT
    nat: bool = False


@dataclass(frozen=True)
class Link:
    """A privnet link between two hosts."""

    a: str
    b: str
    cost: int | None = None


@dataclass(frozen=True)
class WanSettings:
    """The `[wan]` table: jitter and loss for every host pair, with per-pair overrides."""

    jitter_ms: float = 0.0
    loss: float = 0.0
    pairs: dict[frozenset[str], dict[str, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Topology:
    """A whole lab network as read from a topology file."""

    name: str
    hosts: tuple[Host, ...]
    links: tuple[Link, ...]
    network: dict[str, Any] = field(default_factory=dict)
    rtt_ms: dict[frozenset[str], float] = field(default_factory=dict)
    description: str = ""
    wan: WanSettings | None = None

    @property
    def emulated_wan(self) -> bool:
        """Whether the file asks for the WAN emulator (it has `[rtt_ms]` or `[wan]`)."""
        return bool(self.rtt_ms) or self.wan is not None

    def pair_settings(self, a: str, b: str) -> dict[str, float]:
        """rtt_ms, jitter_ms and loss of the underlay between hosts a and b (for lab.wan)."""
        pair = frozenset((a, b))
        wan = self.wan or WanSettings()
        settings = {"rtt_ms": self.rtt_ms.get(pair, 0.0), "jitter_ms": wan.jitter_ms, "loss": wan.loss}
        return settings | wan.pairs.get(pair, {})

    def host(self, name: str) -> Host:
        """The host called `name`; KeyError if there is none."""
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)


def topology_path(name_or_path: str | Path) -> Path:
    """A topology file: `name_or_path` itself if it is a file, else lab/topologies/<name>.toml."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if re.fullmatch(r"[A-Za-z0-9_-]+", str(name_or_path)):
        named = TOPOLOGY_DIR / f"{name_or_path}.toml"
        if named.is_file():
            return named
    known = ", ".join(sorted(p.stem for p in TOPOLOGY_DIR.glob("*.toml")))
    raise TopologyError(f"no topology file {name_or_path!r} (known names: {known})")


def load_topology(name_or_path: str | Path) -> Topology:
    """Read and check a topology given by name (lab/topologies/NAME.toml) or path."""
    path = topology_path(name_or_path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise TopologyError(f"{path}: {error}") from None
    try:
        return parse_topology(data, name=path.stem)
    except TopologyError as error:
        raise TopologyError(f"{path}: {error}") from None


def _check_keys(table: dict, allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise TopologyError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")


def _parse_host(name: str, table: Any) -> Host:
    where = f"hosts.{name}"
    if not isinstance(table, dict):
        raise TopologyError(f"{where} must be a table")
    _check_keys(table, HOST_KEYS, where)
    if not HOST_NAME_PATTERN.fullmatch(name):
        raise TopologyError(f"{where}: a host name is 1-15 characters of a-z, 0-9 and '-', starting with a letter")
    if name in LAB_RESERVED_NAMES or name.startswith("nat-"):
        raise TopologyError(f"{where}: 'control', 'wan' and names starting with 'nat-' are the lab's own")
    nat = table.get("nat", False)
    endpoint = table.get("endpoint", not nat)
    listen_port = table.get("listen_port", DEFAULT_LISTEN_PORT)
    location = table.get("location")
    if not isinstance(nat, bool) or not isinstance(endpoint, bool):
        raise TopologyError(f"{where}: nat and endpoint are true or false")
    if nat and endpoint:
        raise TopologyError(f"{where}: a host behind NAT cannot have an endpoint")
    if isinstance(listen_port, bool) or not isinstance(listen_port, int) or not 1 <= listen_port <= 65535:
        raise TopologyError(f"{where}: listen_port is a whole number from 1 to 65535")
    if location is not None and not isinstance(location, str):
        raise TopologyError(f"{where}: location is a string")
    return Host(name=name, location=location, endpoint=endpoint, listen_port=listen_port, nat=nat)


def _parse_link(index: int, table: Any, hosts: dict[str, Host]) -> Link:
    where = f"links[{index}]"
    if not isinstance(table, dict):
        raise TopologyError(f"{where} must be a table")
    _check_keys(table, LINK_KEYS, where)
    a, b, cost = table.get("a"), table.get("b"), table.get("cost")
    for end in (a, b):
        if end not in hosts:
            raise TopologyError(f"{where}: {end!r} is not a host of this topology")
    if a == b:
        raise TopologyError(f"{where}: a link joins two different hosts")
    if not hosts[a].endpoint and not hosts[b].endpoint:
        raise TopologyError(f"{where}: neither {a} nor {b} has an endpoint, so neither can reach the other")
    if cost is not None and (isinstance(cost, bool) or not isinstance(cost, int) or not 1 <= cost <= 65535):
        raise TopologyError(f"{where}: cost is a whole number from 1 to 65535")
    return Link(a=a, b=b, cost=cost)


def _parse_rtt(table: Any, hosts: dict[str, Host]) -> dict[frozenset[str], float]:
    if not isinstance(table, dict):
        raise TopologyError("rtt_ms must be a table of tables: [rtt_ms] a = { b = 10 }")
    matrix: dict[frozenset[str], float] = {}
    for a, row in table.items():
        if not isinstance(row, dict):
            raise TopologyError(f"rtt_ms.{a} must be a table: {a} = {{ other = 10 }}")
        for b, value in row.items():
            if a not in hosts or b not in hosts or a == b:
                raise TopologyError(f"rtt_ms.{a}.{b}: both must be hosts of this topology, and different")
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise TopologyError(f"rtt_ms.{a}.{b}: a round-trip time in milliseconds, ≥ 0")
            pair = frozenset((a, b))
            if pair in matrix:
                raise TopologyError(f"rtt_ms: the pair {a}–{b} is given twice")
            matrix[pair] = float(value)
    return matrix


def _wan_number(value: Any, key: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise TopologyError(f"{where}: {key} is a number ≥ 0")
    if key == "loss" and value > 1:
        raise TopologyError(f"{where}: loss is a probability from 0 to 1")
    return float(value)


def _parse_wan(table: Any, hosts: dict[str, Host]) -> WanSettings:
    if not isinstance(table, dict):
        raise TopologyError("wan must be a table: [wan] jitter_ms = 0.5")
    _check_keys(table, WAN_KEYS, "wan")
    defaults = {key: _wan_number(table[key], key, "wan") for key in ("jitter_ms", "loss") if key in table}
    pairs: dict[frozenset[str], dict[str, float]] = {}
    pair_tables = table.get("pairs", {})
    if not isinstance(pair_tables, dict):
        raise TopologyError("wan.pairs must be a table: pairs = { a = { b = { loss = 0.01 } } }")
    for a, row in pair_tables.items():
        if not isinstance(row, dict):
            raise TopologyError(f"wan.pairs.{a} must be a table: {a} = {{ other = {{ loss = 0.01 }} }}")
        for b, overrides in row.items():
            where = f"wan.pairs.{a}.{b}"
            if a not in hosts or b not in hosts or a == b:
                raise TopologyError(f"{where}: both must be hosts of this topology, and different")
            if not isinstance(overrides, dict):
                raise TopologyError(f"{where} must be a table of jitter_ms and/or loss")
            _check_keys(overrides, WAN_PAIR_KEYS, where)
            pair = frozenset((a, b))
            if pair in pairs:
                raise TopologyError(f"wan.pairs: the pair {a}–{b} is given twice")
            pairs[pair] = {key: _wan_number(value, key, where) for key, value in overrides.items()}
    return WanSettings(pairs=pairs, **defaults)


def parse_topology(data: dict[str, Any], *, name: str = "topology") -> Topology:
    """Check parsed TOML and turn it into a Topology; TopologyError names the first problem."""
    _check_keys(data, TOP_KEYS, "top level")
    host_tables = data.get("hosts")
    if not isinstance(host_tables, dict) or not host_tables:
        raise TopologyError("a topology needs at least one [hosts.NAME] table")
    if len(host_tables) > MAX_HOSTS:
        raise TopologyError(f"at most {MAX_HOSTS} hosts fit on the lab's 192.0.2.0/24 underlay")
    hosts = {host_name: _parse_host(host_name, table) for host_name, table in host_tables.items()}
    link_tables = data.get("links", [])
    if not isinstance(link_tables, list):
        raise TopologyError("links is an array of tables: [[links]] a = 'x' b = 'y'")
    links = tuple(_parse_link(index, table, hosts) for index, table in enumerate(link_tables))
    pairs = [frozenset((link.a, link.b)) for link in links]
    if len(set(pairs)) != len(pairs):
        raise TopologyError("links: at most one link per pair of hosts")
    network = data.get("network", {})
    if not isinstance(network, dict):
        raise TopologyError("network must be a table")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise TopologyError("description is a string")
    return Topology(
        name=name,
        hosts=tuple(hosts.values()),
        links=links,
        network=dict(network),
        rtt_ms=_parse_rtt(data.get("rtt_ms", {}), hosts),
        description=description,
        wan=_parse_wan(data["wan"], hosts) if "wan" in data else None,
    )
