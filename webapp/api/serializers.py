"""Models to JSON for the API. Private keys never appear here."""

from __future__ import annotations

from datetime import datetime

from ..inventory import NETWORK_FIELDS, Enrollment
from ..liveconfig import SyncStatus
from ..models import Link, Network, Node
from ..planning import LinkFacts, NodeFacts, PlanStatus


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def node_to_json(node: Node, sync: SyncStatus, facts: NodeFacts) -> dict:
    """A node; ``sync`` says whether its host runs its desired state (``liveconfig.sync_status``),
    ``facts`` its effective bridge priority and role (``planning.node_facts``)."""
    return {
        "name": node.name,
        "location": node.location,
        "endpoint": node.endpoint,
        "listen_port": node.listen_port,
        "underlay_ip": node.underlay_ip,
        "overlay_ip": node.overlay_ip,
        "public_key": node.public_key,
        "bridge_priority": facts.priority,
        "priority_pinned": facts.pinned,
        "role": facts.role,
        "priority_reason": facts.reason,
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


def link_to_json(link: Link, facts: LinkFacts) -> dict:
    """A link; ``cost`` is the effective one (``planning.link_facts``)."""
    return {
        "a": link.node_a.name,
        "b": link.node_b.name,
        "vni": link.vni,
        "cost": facts.cost,
        "enabled": link.enabled,
        "cost_pinned": facts.pinned,
        "in_tree": facts.in_tree,
        "cost_reason": facts.reason,
        "rtt_ms": facts.rtt_ms,
    }


def network_to_json(network: Network) -> dict:
    return {field: getattr(network, field) for field in NETWORK_FIELDS}


def plan_to_json(status: PlanStatus) -> dict:
    return {
        "tree_mode": status.tree_mode,
        "planned_at": _time(status.planned_at),
        "plan": status.plan.to_dict() if status.plan is not None else None,
        "measurements": [
            {"a": item.a, "b": item.b, "rtt_ms": item.rtt_ms, "loss": item.loss} for item in status.measurements
        ],
    }
