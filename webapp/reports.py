"""Agent reports: strict parsing into frozen dataclasses, and the topology changes between two.

No HTTP and no database here. ``parse_report`` accepts exactly the JSON below (no missing or extra
fields, exact types, bounded values and lists) or raises ``ValidationError`` whose ``field`` is a
dotted path such as ``ports[2].state``. ``topology_events`` diffs two reports of one node.

Report schema 1 (what ``bootstrap/agent.py`` POSTed to ``/api/v1/agent/report`` before its probes;
it sends schema 2, below, and both are accepted)::

    {
      "schema": 1,
      "node": NAME,                        # must be the node the agent token belongs to
      "agent_version": "0.1.0",            # 1-32 of [0-9A-Za-z.+-]
      "config_version": HEX16 | null,      # HostConfig.version the host runs, null if unknown
      "timestamp": 1767225600.123,         # host clock, unix seconds, when the report was read
      "bridge": null | {                   # null: the host has no such bridge
        "name": "internet",
        "stp_state": 1,                    # 0 off, 1 kernel STP, 2 user-space STP
        "bridge_id": BRIDGE_ID,
        "designated_root": BRIDGE_ID,
        "root_port": 0,                    # port number of the root port, 0 = this bridge is root
        "root_path_cost": 0,               # 0 .. 2^32-1
        "hello_time": 1.0,                 # timers in effect, seconds, 0 .. 256
        "max_age": 6.0,
        "forward_delay": 2.0,
        "topology_change": false,
        "topology_change_detected": false,
        "topology_change_count": 0         # episodes the agent saw since it started (the kernel keeps no count)
      },
      "ports": [                           # the bridge's VXLAN ports, at most 1024 (a bridge's limit)
        {
          "name": NAME,                    # the interface, named after the peer node; unique
          "port_id": 32769,                # (priority << 10 | port_no), 0 .. 65535
          "port_no": 1,                    # 1 .. 1023
          "state": "forwarding",           # disabled | listening | learning | forwarding | blocking
          "path_cost": 100,                # 1 .. 65535
          "priority": 32,                  # 0 .. 63
          "designated_root": BRIDGE_ID,
          "designated_bridge": BRIDGE_ID,
          "designated_port": 32769,        # 0 .. 65535
          "designated_cost": 0             # 0 .. 2^32-1
        }
      ],
      "peers": null | [                    # WireGuard peers of wg0, at most 4096; null: wg0 unreadable
        {
          "public_key": KEY,               # base64 of 32 bytes; unique
          "endpoint": "192.0.2.1:56560" | "[2001:db8::1]:56560" | null,
          "latest_handshake": 0,           # unix seconds, 0 = never
          "rx_bytes": 0,                   # 0 .. 2^64-1
          "tx_bytes": 0
        }
      ]
    }

Report schema 2 is schema 1 with ``"schema": 2`` and one more field, required (and refused in
schema 1): the agent's probes of its linked peers over their WireGuard tunnels::

      "probes": [                          # at most 1024, one per linked peer
        {
          "peer": NAME,                    # the peer node (= its VXLAN port's name); unique
          "rtt_ms": 20.13 | null,          # smoothed underlay RTT, 0 < x <= 60000; null: never answered
          "loss": 0.02,                    # fraction of the recent probes lost, 0 .. 1
          "state": "up"                    # up | down | waiting | holddown: the agent's verdict
        }
      ]

``state``: ``up``, its port is in the bridge; ``down``, dead, its port taken down; ``waiting``,
never answered since the link appeared; ``holddown``, answering again but held down until stable.

``NAME`` is ``^[a-z][a-z0-9-]{0,14}$``, ``BRIDGE_ID`` is ``^[0-9a-f]{4}\\.[0-9a-f]{12}$`` (priority
and MAC in hex, as ``brctl`` prints it), ``HEX16`` is ``^[0-9a-f]{16}$``. When ``bridge`` is null,
``ports`` must be empty.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from .errors import ValidationError

REPORT_SCHEMA = 2  # the newest; SCHEMAS lists every one accepted
SCHEMAS = (1, 2)
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,14}$")
BRIDGE_ID_PATTERN = re.compile(r"^[0-9a-f]{4}\.[0-9a-f]{12}$")
CONFIG_VERSION_PATTERN = re.compile(r"^[0-9a-f]{16}$")
AGENT_VERSION_PATTERN = re.compile(r"^[0-9A-Za-z.+-]{1,32}$")
KEY_PATTERN = re.compile(r"^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$")
ENDPOINT_PATTERN = re.compile(r"^(?:([0-9.]{7,15})|\[([0-9A-Fa-f:.]{2,45})\]):([0-9]{1,5})$")
PORT_STATES = ("disabled", "listening", "learning", "forwarding", "blocking")
PROBE_STATES = ("up", "down", "waiting", "holddown")
MAX_PORTS = 1024  # BR_MAX_PORTS: port numbers are 10 bits
MAX_PROBES = 1024  # one per linked peer, and a peer is a port of the bridge
MAX_RTT_MS = 60_000
MAX_PEERS = 4096
MIN_TIMESTAMP = 1_000_000_000  # 2001
MAX_TIMESTAMP = 4_102_444_800  # 2100
MAX_TIMER_SECONDS = 256  # 802.1D timers are 8.8 fixed point seconds
U32 = 2**32 - 1
U64 = 2**64 - 1


@dataclass(frozen=True)
class BridgeStatus:
    """The bridge as the kernel reports it."""

    name: str
    stp_state: int
    bridge_id: str
    designated_root: str
    root_port: int
    root_path_cost: int
    hello_time: float
    max_age: float
    forward_delay: float
    topology_change: bool
    topology_change_detected: bool
    topology_change_count: int

    @property
    def is_root(self) -> bool:
        return self.bridge_id == self.designated_root


@dataclass(frozen=True)
class PortStatus:
    """One VXLAN port of the bridge; ``name`` is the peer node it leads to."""

    name: str
    port_id: int
    port_no: int
    state: str
    path_cost: int
    priority: int
    designated_root: str
    designated_bridge: str
    designated_port: int
    designated_cost: int


@dataclass(frozen=True)
class PeerStatus:
    """One WireGuard peer of ``wg0``."""

    public_key: str
    endpoint: str | None
    latest_handshake: int
    rx_bytes: int
    tx_bytes: int


@dataclass(frozen=True)
class ProbeStatus:
    """The agent's probes of one linked peer (schema 2): smoothed RTT, loss and its verdict."""

    peer: str
    rtt_ms: float | None
    loss: float
    state: str


@dataclass(frozen=True)
class AgentReport:
    """One validated report of one node."""

    schema: int
    node: str
    agent_version: str
    config_version: str | None
    timestamp: float
    bridge: BridgeStatus | None
    ports: tuple[PortStatus, ...]
    peers: tuple[PeerStatus, ...] | None
    probes: tuple[ProbeStatus, ...] = ()  # empty in schema 1

    def to_dict(self) -> dict:
        """The report as JSON-ready data; ``parse_report`` accepts it back unchanged."""
        data = asdict(self)
        data["ports"] = list(data["ports"])
        if data["peers"] is not None:
            data["peers"] = list(data["peers"])
        if self.schema >= 2:
            data["probes"] = list(data["probes"])
        else:
            del data["probes"]
        return data

    def port(self, name: str) -> PortStatus | None:
        return next((port for port in self.ports if port.name == name), None)


@dataclass(frozen=True)
class TopologyEvent:
    """A change between two reports of one node.

    ``kind`` is ``root_changed`` (designated root bridge id; None = no bridge),
    ``root_port_changed`` (port name; None = this bridge became root) or ``port_state_changed``
    (``port`` named; None = the port appeared or disappeared).
    """

    kind: str
    old: str | None
    new: str | None
    port: str | None = None

    def to_dict(self) -> dict:
        data = {"kind": self.kind, "old": self.old, "new": self.new}
        if self.port is not None:
            data["port"] = self.port
        return data


# --- field checkers ----------------------------------------------------------------------------

T = TypeVar("T")


def _fields(value: object, path: str, names: tuple[str, ...]) -> Mapping[str, Any]:
    """An object with exactly ``names`` as keys."""
    if not isinstance(value, dict):
        raise ValidationError(path, f"{path} must be a JSON object")
    for key in value:
        if key not in names:
            shown = key if isinstance(key, str) and len(key) <= 40 and key.isprintable() else "?"
            raise ValidationError(_join(path, shown), f"{_join(path, shown)} is not a field of an agent report")
    for name in names:
        if name not in value:
            raise ValidationError(_join(path, name), f"{_join(path, name)} is missing")
    return value


def _join(path: str, name: str) -> str:
    return name if path == "report" else f"{path}.{name}"


def _int(value: object, path: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(path, f"{path} must be a whole number from {low} to {high}")
    return value


def _number(value: object, path: str, low: float, high: float) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        raise ValidationError(path, f"{path} must be a number from {low:g} to {high:g}")
    return float(value)


def _bool(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(path, f"{path} must be true or false")
    return value


def _text(value: object, path: str, pattern: re.Pattern[str], rule: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ValidationError(path, f"{path} must be {rule}")
    return value


def _name(value: object, path: str) -> str:
    return _text(value, path, NAME_PATTERN, "1-15 characters of a-z, 0-9 and '-', starting with a letter")


def _bridge_id(value: object, path: str) -> str:
    return _text(value, path, BRIDGE_ID_PATTERN, "a bridge id such as 8000.0a1b2c3d4e5f (lower-case hex)")


def _key(value: object, path: str) -> str:
    rule = "a WireGuard public key (base64 of 32 bytes)"
    key = _text(value, path, KEY_PATTERN, rule)
    try:
        base64.b64decode(key, validate=True)
    except binascii.Error:
        raise ValidationError(path, f"{path} must be {rule}") from None
    return key


def _endpoint(value: object, path: str) -> str | None:
    if value is None:
        return None
    rule = f"{path} must be null, IPv4:port or [IPv6]:port with a port from 1 to 65535"
    if not isinstance(value, str):
        raise ValidationError(path, rule)
    match = ENDPOINT_PATTERN.fullmatch(value)
    if not match or not 1 <= int(match.group(3)) <= 65535:
        raise ValidationError(path, rule)
    try:
        if match.group(1):
            ipaddress.IPv4Address(match.group(1))
        else:
            ipaddress.IPv6Address(match.group(2))
    except ValueError:
        raise ValidationError(path, rule) from None
    return value


def _list(value: object, path: str, limit: int, parse_item: Callable[[object, str], T]) -> tuple[T, ...]:
    if not isinstance(value, list):
        raise ValidationError(path, f"{path} must be a JSON array")
    if len(value) > limit:
        raise ValidationError(path, f"{path} must have at most {limit} entries")
    return tuple(parse_item(item, f"{path}[{index}]") for index, item in enumerate(value))


def _unique(items: tuple[Any, ...], attribute: str, path: str) -> None:
    seen: set[str] = set()
    for index, item in enumerate(items):
        value = getattr(item, attribute)
        if value in seen:
            raise ValidationError(f"{path}[{index}].{attribute}", f"{path}[{index}].{attribute} is listed twice")
        seen.add(value)


# --- the report --------------------------------------------------------------------------------

_REPORT_FIELDS = ("schema", "node", "agent_version", "config_version", "timestamp", "bridge", "ports", "peers")
_FIELDS_BY_SCHEMA = {1: _REPORT_FIELDS, 2: (*_REPORT_FIELDS, "probes")}
_BRIDGE_FIELDS = tuple(BridgeStatus.__dataclass_fields__)
_PORT_FIELDS = tuple(PortStatus.__dataclass_fields__)
_PEER_FIELDS = tuple(PeerStatus.__dataclass_fields__)
_PROBE_FIELDS = tuple(ProbeStatus.__dataclass_fields__)


def _parse_bridge(value: object, path: str) -> BridgeStatus | None:
    if value is None:
        return None
    data = _fields(value, path, _BRIDGE_FIELDS)
    return BridgeStatus(
        name=_name(data["name"], f"{path}.name"),
        stp_state=_int(data["stp_state"], f"{path}.stp_state", 0, 2),
        bridge_id=_bridge_id(data["bridge_id"], f"{path}.bridge_id"),
        designated_root=_bridge_id(data["designated_root"], f"{path}.designated_root"),
        root_port=_int(data["root_port"], f"{path}.root_port", 0, MAX_PORTS - 1),
        root_path_cost=_int(data["root_path_cost"], f"{path}.root_path_cost", 0, U32),
        hello_time=_number(data["hello_time"], f"{path}.hello_time", 0, MAX_TIMER_SECONDS),
        max_age=_number(data["max_age"], f"{path}.max_age", 0, MAX_TIMER_SECONDS),
        forward_delay=_number(data["forward_delay"], f"{path}.forward_delay", 0, MAX_TIMER_SECONDS),
        topology_change=_bool(data["topology_change"], f"{path}.topology_change"),
        topology_change_detected=_bool(data["topology_change_detected"], f"{path}.topology_change_detected"),
        topology_change_count=_int(data["topology_change_count"], f"{path}.topology_change_count", 0, U32),
    )


def _parse_port(value: object, path: str) -> PortStatus:
    data = _fields(value, path, _PORT_FIELDS)
    state = data["state"]
    if state not in PORT_STATES:
        raise ValidationError(f"{path}.state", f"{path}.state must be one of {', '.join(PORT_STATES)}")
    return PortStatus(
        name=_name(data["name"], f"{path}.name"),
        port_id=_int(data["port_id"], f"{path}.port_id", 0, 65535),
        port_no=_int(data["port_no"], f"{path}.port_no", 1, MAX_PORTS - 1),
        state=state,
        path_cost=_int(data["path_cost"], f"{path}.path_cost", 1, 65535),
        priority=_int(data["priority"], f"{path}.priority", 0, 63),
        designated_root=_bridge_id(data["designated_root"], f"{path}.designated_root"),
        designated_bridge=_bridge_id(data["designated_bridge"], f"{path}.designated_bridge"),
        designated_port=_int(data["designated_port"], f"{path}.designated_port", 0, 65535),
        designated_cost=_int(data["designated_cost"], f"{path}.designated_cost", 0, U32),
    )


def _parse_peer(value: object, path: str) -> PeerStatus:
    data = _fields(value, path, _PEER_FIELDS)
    return PeerStatus(
        public_key=_key(data["public_key"], f"{path}.public_key"),
        endpoint=_endpoint(data["endpoint"], f"{path}.endpoint"),
        latest_handshake=_int(data["latest_handshake"], f"{path}.latest_handshake", 0, MAX_TIMESTAMP),
        rx_bytes=_int(data["rx_bytes"], f"{path}.rx_bytes", 0, U64),
        tx_bytes=_int(data["tx_bytes"], f"{path}.tx_bytes", 0, U64),
    )


def _parse_probe(value: object, path: str) -> ProbeStatus:
    data = _fields(value, path, _PROBE_FIELDS)
    rtt_ms = data["rtt_ms"]
    if rtt_ms is not None:
        rule = f"{path}.rtt_ms must be null or a number of milliseconds above 0, at most {MAX_RTT_MS}"
        if isinstance(rtt_ms, bool) or not isinstance(rtt_ms, int | float) or not math.isfinite(rtt_ms):
            raise ValidationError(f"{path}.rtt_ms", rule)
        if not 0 < rtt_ms <= MAX_RTT_MS:
            raise ValidationError(f"{path}.rtt_ms", rule)
        rtt_ms = float(rtt_ms)
    state = data["state"]
    if state not in PROBE_STATES:
        raise ValidationError(f"{path}.state", f"{path}.state must be one of {', '.join(PROBE_STATES)}")
    return ProbeStatus(
        peer=_name(data["peer"], f"{path}.peer"),
        rtt_ms=rtt_ms,
        loss=_number(data["loss"], f"{path}.loss", 0, 1),
        state=state,
    )


def _schema(payload: object) -> int:
    """The report's schema number, checked before the other fields (which fields depends on it)."""
    if not isinstance(payload, dict) or "schema" not in payload:
        return 1  # _fields names what is wrong: not an object, or schema missing
    schema = payload["schema"]
    if isinstance(schema, bool) or not isinstance(schema, int) or schema not in SCHEMAS:
        raise ValidationError("schema", f"schema must be {' or '.join(map(str, SCHEMAS))}")
    return schema


def parse_report(payload: object, *, node_name: str) -> AgentReport:
    """Validate an agent's JSON report strictly; ``node_name`` is the node its token belongs to."""
    schema = _schema(payload)
    if schema == 1 and isinstance(payload, dict) and "probes" in payload:
        raise ValidationError("probes", 'probes is a field of report schema 2 only: send "schema": 2')
    data = _fields(payload, "report", _FIELDS_BY_SCHEMA[schema])
    node = _name(data["node"], "node")
    if node != node_name:
        raise ValidationError("node", "node must be the node the agent token belongs to")
    config_version = data["config_version"]
    if config_version is not None:
        _text(config_version, "config_version", CONFIG_VERSION_PATTERN, "null or 16 lower-case hex digits")
    bridge = _parse_bridge(data["bridge"], "bridge")
    ports = _list(data["ports"], "ports", MAX_PORTS, _parse_port)
    if bridge is None and ports:
        raise ValidationError("ports", "ports must be empty when bridge is null")
    _unique(ports, "name", "ports")
    _unique(ports, "port_no", "ports")
    peers = None if data["peers"] is None else _list(data["peers"], "peers", MAX_PEERS, _parse_peer)
    if peers is not None:
        _unique(peers, "public_key", "peers")
    probes = _list(data["probes"], "probes", MAX_PROBES, _parse_probe) if schema >= 2 else ()
    _unique(probes, "peer", "probes")
    return AgentReport(
        schema=schema,
        node=node,
        agent_version=_text(data["agent_version"], "agent_version", AGENT_VERSION_PATTERN, "1-32 of 0-9 A-Z a-z . + -"),
        config_version=config_version,
        timestamp=_number(data["timestamp"], "timestamp", MIN_TIMESTAMP, MAX_TIMESTAMP),
        bridge=bridge,
        ports=ports,
        peers=peers,
        probes=probes,
    )


# --- changes between two reports ---------------------------------------------------------------


def _root_port_name(report: AgentReport) -> str | None:
    if report.bridge is None or report.bridge.root_port == 0:
        return None
    port = next((port for port in report.ports if port.port_no == report.bridge.root_port), None)
    return port.name if port else f"port {report.bridge.root_port}"


def topology_events(previous: AgentReport | None, current: AgentReport) -> list[TopologyEvent]:
    """Root, root-port and port-state changes from ``previous`` to ``current`` (none for a first report)."""
    if previous is None:
        return []
    events = []
    old_root = previous.bridge.designated_root if previous.bridge else None
    new_root = current.bridge.designated_root if current.bridge else None
    if old_root != new_root:
        events.append(TopologyEvent("root_changed", old_root, new_root))
    old_root_port, new_root_port = _root_port_name(previous), _root_port_name(current)
    if old_root_port != new_root_port:
        events.append(TopologyEvent("root_port_changed", old_root_port, new_root_port))
    old_states = {port.name: port.state for port in previous.ports}
    new_states = {port.name: port.state for port in current.ports}
    for name in sorted(old_states.keys() | new_states.keys()):
        old, new = old_states.get(name), new_states.get(name)
        if old != new:
            events.append(TopologyEvent("port_state_changed", old, new, port=name))
    return events
