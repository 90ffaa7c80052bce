"""The desired state of one host: the single definition the setup script and the agent share.

``build_host_config`` turns the database's view of a node into plain, validated data; the setup
script renders it and the agent applies it, so the two can never disagree. Its STP port path costs
and bridge priority are the effective ones (``webapp.planning``): the plan's, unless pinned or in
tree mode "seed"; the caller passes the stored plan, so building a config makes no query of its own.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import dataclass, field, fields

from .models import Link, Network, Node
from .planning import effective_cost, effective_priority
from .treeplan import TreePlan

# PersistentKeepalive for a tunnel where one end has no endpoint (NAT, roaming): the seed's 25 s.
KEEPALIVE_SECONDS = 25
VXLAN_MTU = 1500


@dataclass(frozen=True)
class PeerConfig:
    """One WireGuard peer of the host: a node it has a link to."""

    name: str
    public_key: str
    allowed_ip: str  # the peer's underlay address, as a /32
    endpoint: str | None  # "host:port", only when the peer is reachable
    keepalive: int | None  # seconds, when either end lacks an endpoint


@dataclass(frozen=True)
class LinkConfig:
    """One virtual wire: a VXLAN device named after the peer, a port of the bridge."""

    name: str  # the interface name, which is the peer node's name
    vni: int
    local: str  # own underlay address
    remote: str  # peer underlay address
    cost: int  # STP port path cost


@dataclass(frozen=True)
class HostConfig:
    """Everything one host must look like; ``version`` is a digest of all the rest."""

    node: str
    network: str
    app_url: str
    listen_port: int
    underlay_ip: str
    underlay_prefix: int
    overlay_ip: str
    overlay_prefix: int
    bridge_name: str
    bridge_priority: int
    vxlan_port: int
    mtu: int
    stp_hello_time: int
    stp_forward_delay: int
    stp_max_age: int
    report_interval: int
    fast_failover: bool = True  # the agent takes a silent peer's port out of the bridge
    peers: tuple[PeerConfig, ...] = ()
    links: tuple[LinkConfig, ...] = ()
    # A pending key rotation: the nonce the agent sends back with the public key of a key pair it
    # makes itself (``POST /api/v1/agent/public-key``); None when no rotation is pending.
    key_rotation: str | None = None
    version: str = field(default="")

    def to_dict(self) -> dict:
        """Plain JSON-ready data (what ``GET /api/v1/agent/config`` serves).

        Equal to ``dataclasses.asdict(self)``, built by hand: ``asdict`` deep-copies every value,
        which made listing 1,000 nodes (each with its sync state) ten times slower.
        """
        data = {name: getattr(self, name) for name in _HOST_FIELDS}
        data["peers"] = tuple(dict(vars(peer)) for peer in self.peers)
        data["links"] = tuple(dict(vars(link)) for link in self.links)
        return data


_HOST_FIELDS = tuple(item.name for item in fields(HostConfig))


def _digest(data: dict) -> str:
    data = {key: value for key, value in data.items() if key != "version"}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def build_host_config(
    node: Node, network: Network, links: list[Link], app_url: str, *, plan: TreePlan | None
) -> HostConfig:
    """The desired state of ``node``, given its links (either end may be ``node``; disabled ones are left
    out) and the network's stored plan (``planning.stored_plan``; None: none yet)."""
    underlay = ipaddress.IPv4Network(network.underlay_cidr)
    overlay = ipaddress.IPv4Network(network.overlay_cidr)
    peers: list[PeerConfig] = []
    wires: list[LinkConfig] = []
    for link in sorted(links, key=lambda link: link.peer_of(node).name):
        if not link.enabled:
            continue
        peer = link.peer_of(node)
        peers.append(
            PeerConfig(
                name=peer.name,
                public_key=peer.public_key,
                allowed_ip=f"{peer.underlay_ip}/32",
                endpoint=peer.endpoint,
                keepalive=KEEPALIVE_SECONDS if not (node.endpoint and peer.endpoint) else None,
            )
        )
        wires.append(
            LinkConfig(
                name=peer.name,
                vni=link.vni,
                local=node.underlay_ip,
                remote=peer.underlay_ip,
                cost=effective_cost(link, network, plan),
            )
        )
    config = HostConfig(
        node=node.name,
        network=network.name,
        app_url=app_url,
        listen_port=node.listen_port,
        underlay_ip=node.underlay_ip,
        underlay_prefix=underlay.prefixlen,
        overlay_ip=node.overlay_ip,
        overlay_prefix=overlay.prefixlen,
        bridge_name=network.bridge_name,
        bridge_priority=effective_priority(node, network, plan),
        vxlan_port=network.vxlan_port,
        mtu=VXLAN_MTU,
        stp_hello_time=network.stp_hello_time,
        stp_forward_delay=network.stp_forward_delay,
        stp_max_age=network.stp_max_age,
        report_interval=network.report_interval,
        fast_failover=network.fast_failover,
        peers=tuple(peers),
        links=tuple(wires),
        key_rotation=node.key_rotation_nonce,
    )
    return HostConfig(**{**config.__dict__, "version": _digest(config.to_dict())})
