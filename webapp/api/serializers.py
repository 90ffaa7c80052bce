"""Models to JSON for the API. Private keys never appear here."""

from __future__ import annotations

from datetime import datetime

from ..inventory import NETWORK_FIELDS, Enrollment
from ..liveconfig import SyncStatus
from ..models import Link, Network, Node


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def node_to_json(node: Node, sync: SyncStatus) -> dict:
    """A node; ``sync`` says whether its host runs its desired state (``liveconfig.sync_status``)."""
    return {
        "name": node.name,
        "location": node.location,
        "endpoint": node.endpoint,
        "listen_port": node.listen_port,
        "underlay_ip": node.underlay_ip,
        "overlay_ip": node.overlay_ip,
        "public_key": node.public_key,
        "bridge_priority": node.bridge_priority,
        "created_at": _time(node.created_at),
        "enrolled_at": _time(node.enrolled_at),
        "last_seen_at": _time(node.last_seen_at),
        "key_rotation": (
            {"requested_at": _time(node.key_rotation_requested_at)} if node.key_rotation_nonce is not None else None
        ),
        "sync": sync.to_dict(),
    }


def enrollment_to_json(enrollment: Enrollment) -> dict:
    return {"url": enrollment.url, "command": enrollment.command, "expires_at": _time(enrollment.expires_at)}


def link_to_json(link: Link) -> dict:
    return {
        "a": link.node_a.name,
        "b": link.node_b.name,
        "vni": link.vni,
        "cost": link.cost,
        "enabled": link.enabled,
    }


def network_to_json(network: Network) -> dict:
    return {field: getattr(network, field) for field in NETWORK_FIELDS}
