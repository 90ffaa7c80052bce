"""The network as STP sees it: root bridge, link states, stale nodes, partitions, tree paths.

Pure domain code: dataclasses in, dataclasses out; no HTTP, no database. ``compute_topology``
joins the desired links with each node's latest report in time linear in nodes + links + ports;
``Topology.to_dict()`` is the body of ``GET /api/v1/topology`` (design §4).

Rules:

- A report is *fresh* when received within ``STALE_INTERVALS`` report intervals; a node without a
  fresh report is *stale* (also one that never reported).
- The root is the node whose bridge id equals the designated root most fresh reports name (ties:
  the lowest bridge id, as STP would pick). Fresh reports naming different roots are a partition,
  listed in ``disagreements`` (briefly also normal while STP reconverges).
- A link is ``down`` when disabled, or when a fresh end lacks the bridge, the port, or (if the peer's
  public key is known) a WireGuard handshake within ``HANDSHAKE_FRESH_SECONDS`` of its report, or
  its port is ``disabled``; else ``blocking`` at the end whose port is blocking (or still listening
  or learning: no frames cross it yet); else ``forwarding`` when both ends are fresh and
  forwarding; else ``unknown`` (an end without a fresh report).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime

from .errors import NotFoundError
from .reports import AgentReport, BridgeStatus, PeerStatus, PortStatus

STALE_INTERVALS = 3
# WireGuard rejects a session's keys 180 s after its handshake (REJECT_AFTER_TIME); a live tunnel
# carrying STP hellos re-handshakes every 120 s, so an older handshake means a dead tunnel.
HANDSHAKE_FRESH_SECONDS = 180
LINK_STATES = ("forwarding", "blocking", "down", "unknown")
_NOT_FORWARDING_YET = {"blocking": 0, "listening": 1, "learning": 2}  # the first found wins the blame


@dataclass(frozen=True)
class NodeInfo:
    """A node as stored; ``public_key`` (WireGuard) enables the handshake check of its links."""

    name: str
    public_key: str | None = None


@dataclass(frozen=True)
class LinkInfo:
    """A desired link between nodes ``a`` and ``b``."""

    a: str
    b: str
    vni: int
    cost: int
    enabled: bool = True


@dataclass(frozen=True)
class ReceivedReport:
    """A node's latest parsed report and when the app received it (timezone-aware)."""

    report: AgentReport
    received_at: datetime


@dataclass(frozen=True)
class NodeView:
    """One node on the map, with its bridge and ports table (``brctl showstp``) when it reported."""

    name: str
    stale: bool
    is_root: bool
    last_report_at: datetime | None
    config_version: str | None
    bridge: BridgeStatus | None
    ports: tuple[PortStatus, ...]


@dataclass(frozen=True)
class LinkView:
    """A link's state; ``blocked_at`` names the blocking end, ``reason`` says why down or unknown."""

    a: str
    b: str
    vni: int
    cost: int
    state: str
    blocked_at: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Disagreement:
    """Fresh nodes that agree on one designated root; ``root`` is its node, if known."""

    designated_root: str
    root: str | None
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class Topology:
    root: str | None
    root_bridge_id: str | None
    nodes: tuple[NodeView, ...]
    links: tuple[LinkView, ...]
    stale: tuple[str, ...]
    disagreements: tuple[Disagreement, ...]

    def to_dict(self) -> dict:
        """JSON-ready: ``{root, root_bridge_id, nodes, links, stale, disagreements}``."""
        return {
            "root": self.root,
            "root_bridge_id": self.root_bridge_id,
            "nodes": [_node_dict(node) for node in self.nodes],
            "links": [_link_dict(link) for link in self.links],
            "stale": list(self.stale),
            "disagreements": [
                {"designated_root": group.designated_root, "root": group.root, "nodes": list(group.nodes)}
                for group in self.disagreements
            ],
        }


def _plain(item: object, names: tuple[str, ...]) -> dict:
    return {name: getattr(item, name) for name in names}


_BRIDGE_FIELDS = tuple(field.name for field in fields(BridgeStatus))
_PORT_FIELDS = tuple(field.name for field in fields(PortStatus))


def _node_dict(node: NodeView) -> dict:
    return {
        "name": node.name,
        "stale": node.stale,
        "root": node.is_root,
        "last_report_at": node.last_report_at.isoformat() if node.last_report_at else None,
        "config_version": node.config_version,
        "bridge": _plain(node.bridge, _BRIDGE_FIELDS) if node.bridge else None,
        "ports": [_plain(port, _PORT_FIELDS) for port in node.ports],
    }


def _link_dict(link: LinkView) -> dict:
    data: dict = {"a": link.a, "b": link.b, "vni": link.vni, "cost": link.cost, "state": link.state}
    if link.blocked_at is not None:
        data["blocked_at"] = link.blocked_at
    if link.reason is not None:
        data["reason"] = link.reason
    return data


class _End:
    """What one fresh node's report says, indexed for O(1) lookups per link."""

    __slots__ = ("bridge", "peers", "ports", "timestamp")

    def __init__(self, report: AgentReport) -> None:
        self.bridge = report.bridge
        self.timestamp = report.timestamp
        self.ports: dict[str, PortStatus] = {port.name: port for port in report.ports}
        self.peers: dict[str, PeerStatus] | None = (
            None if report.peers is None else {peer.public_key: peer for peer in report.peers}
        )


def compute_topology(
    nodes: Iterable[NodeInfo],
    links: Iterable[LinkInfo],
    reports: Mapping[str, ReceivedReport],
    *,
    report_interval: float,
    now: datetime,
) -> Topology:
    """The topology from desired ``nodes`` and ``links`` and each node's latest report (by name)."""
    node_list = list(nodes)
    keys = {node.name: node.public_key for node in node_list}
    oldest_fresh = now.timestamp() - STALE_INTERVALS * report_interval
    fresh: dict[str, _End] = {}
    for node in node_list:
        received = reports.get(node.name)
        if received is not None and received.received_at.timestamp() >= oldest_fresh:
            fresh[node.name] = _End(received.report)

    # Bridge id → node, from every known report (a stale node can still be the root others see).
    node_by_bridge_id = {
        received.report.bridge.bridge_id: name
        for name, received in reports.items()
        if name in keys and received.report.bridge is not None
    }
    votes = Counter(end.bridge.designated_root for end in fresh.values() if end.bridge is not None)
    root_bridge_id = min(votes, key=lambda bridge_id: (-votes[bridge_id], bridge_id)) if votes else None
    root = node_by_bridge_id.get(root_bridge_id) if root_bridge_id else None
    disagreements: tuple[Disagreement, ...] = ()
    if len(votes) > 1:
        groups: dict[str, list[str]] = {}
        for name, end in fresh.items():
            if end.bridge is not None:
                groups.setdefault(end.bridge.designated_root, []).append(name)
        disagreements = tuple(
            Disagreement(bridge_id, node_by_bridge_id.get(bridge_id), tuple(sorted(groups[bridge_id])))
            for bridge_id in sorted(groups, key=lambda bridge_id: (-len(groups[bridge_id]), bridge_id))
        )

    node_views = []
    for node in node_list:
        received = reports.get(node.name)
        report = received.report if received else None
        node_views.append(
            NodeView(
                name=node.name,
                stale=node.name not in fresh,
                is_root=node.name == root,
                last_report_at=received.received_at if received else None,
                config_version=report.config_version if report else None,
                bridge=report.bridge if report else None,
                ports=report.ports if report else (),
            )
        )
    return Topology(
        root=root,
        root_bridge_id=root_bridge_id,
        nodes=tuple(node_views),
        links=tuple(_link_view(link, fresh, keys) for link in links),
        stale=tuple(node.name for node in node_list if node.name not in fresh),
        disagreements=disagreements,
    )


def _down_reason(node: str, peer: str, end: _End, peer_key: str | None) -> str | None:
    """Why the link from ``node`` to ``peer`` is down as ``node`` sees it, or None."""
    if end.bridge is None:
        return f"{node} has no bridge"
    port = end.ports.get(peer)
    if port is None:
        return f"{node} has no port {peer} on its bridge"
    if port.state == "disabled":
        return f"port {peer} on {node} is disabled"
    if peer_key is None:
        return None
    if end.peers is None:
        return f"{node} cannot read its WireGuard interface"
    wireguard_peer = end.peers.get(peer_key)
    if wireguard_peer is None:
        return f"{node} has no WireGuard peer for {peer}"
    if wireguard_peer.latest_handshake == 0:
        return f"{node} never completed a WireGuard handshake with {peer}"
    age = end.timestamp - wireguard_peer.latest_handshake
    if age > HANDSHAKE_FRESH_SECONDS:
        return f"{node}'s last WireGuard handshake with {peer} was {age:.0f} s before its report"
    return None


_SETTLED = frozenset({"forwarding", "blocking"})


def _hellos_lost(link: LinkInfo, end_a: _End, end_b: _End) -> str | None:
    """Why no STP hellos cross the link, or None: on a live link both ends name one designated bridge.

    A VXLAN never loses carrier: when the underlay between two hosts fails, each end stops hearing
    the other and, after max age, makes itself the link's designated bridge and forwards, so the
    kernel shows a forwarding port at both ends of a dead wire. Ports still listening or learning
    may not have heard the other end yet (and the two reports are up to an interval apart): only
    settled ports count.
    """
    port_a, port_b = end_a.ports[link.b], end_b.ports[link.a]
    if port_a.state in _SETTLED and port_b.state in _SETTLED and port_a.designated_bridge != port_b.designated_bridge:
        return f"no STP hellos cross it: {link.a} and {link.b} each are its designated bridge"
    return None


def _link_view(link: LinkInfo, fresh: Mapping[str, _End], keys: Mapping[str, str | None]) -> LinkView:
    def view(state: str, blocked_at: str | None = None, reason: str | None = None) -> LinkView:
        return LinkView(link.a, link.b, link.vni, link.cost, state, blocked_at, reason)

    if not link.enabled:
        return view("down", reason="link disabled")
    end_a, end_b = fresh.get(link.a), fresh.get(link.b)
    if end_a is None and end_b is None:
        return view("unknown", reason=f"no fresh report from {link.a} or {link.b}")
    sides = [(node, peer, end) for node, peer, end in ((link.a, link.b, end_a), (link.b, link.a, end_b)) if end]
    for node, peer, end in sides:
        reason = _down_reason(node, peer, end, keys.get(peer))
        if reason:
            return view("down", reason=reason)
    if end_a is not None and end_b is not None:
        reason = _hellos_lost(link, end_a, end_b)
        if reason:
            return view("down", reason=reason)
    held = [(node, end.ports[peer].state) for node, peer, end in sides if end.ports[peer].state in _NOT_FORWARDING_YET]
    if held:
        node, state = min(held, key=lambda item: _NOT_FORWARDING_YET[item[1]])
        return view("blocking", blocked_at=node, reason=None if state == "blocking" else f"port on {node} is {state}")
    if len(sides) == 2:
        return view("forwarding")
    silent = link.b if end_b is None else link.a
    return view("unknown", reason=f"no fresh report from {silent}")


def tree_path(topology: Topology, a: str, b: str) -> list[str]:
    """Nodes from ``a`` to ``b`` along forwarding links (the spanning tree); ``[]`` if none."""
    names = {node.name for node in topology.nodes}
    for field_name, name in (("a", a), ("b", b)):
        if name not in names:
            raise NotFoundError(field_name, f"node '{name}' is not in the topology")
    adjacent: dict[str, list[str]] = {}
    for link in topology.links:
        if link.state == "forwarding":
            adjacent.setdefault(link.a, []).append(link.b)
            adjacent.setdefault(link.b, []).append(link.a)
    came_from: dict[str, str | None] = {a: None}
    queue = deque([a])
    while queue:
        current = queue.popleft()
        if current == b:
            path = [current]
            while (previous := came_from[path[-1]]) is not None:
                path.append(previous)
            return path[::-1]
        for neighbour in adjacent.get(current, ()):
            if neighbour not in came_from:
                came_from[neighbour] = current
                queue.append(neighbour)
    return []
