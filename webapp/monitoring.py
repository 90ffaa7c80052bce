"""What the agents see: storing their reports, the timeline of changes, the live topology.

The service layer between the agent API and the pure ``reports`` and ``topology`` modules.
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import select

from . import inventory, planning, reports, topology
from .extensions import db
from .models import Node, NodeReport, TopologyChange, utcnow

# A node keeps this many timeline entries; older ones are pruned as new ones arrive.
TIMELINE_LIMIT = 500


def _stored_report(node: Node) -> NodeReport | None:
    return db.session.execute(select(NodeReport).where(NodeReport.node_id == node.id)).scalar_one_or_none()


def record_report(node: Node, payload: object, *, now: datetime | None = None) -> list[reports.TopologyEvent]:
    """Validate and keep ``node``'s report; returns (and records) what changed since the last one.

    Raises ``ValidationError`` for a malformed report, before anything is written. Once it is
    stored, replans if its measurements call for it (``planning.replan_after_report``).
    """
    report = reports.parse_report(payload, node_name=node.name)
    now = now or utcnow()
    stored = _stored_report(node)
    previous = reports.parse_report(json.loads(stored.payload), node_name=node.name) if stored else None
    events = reports.topology_events(previous, report)
    if stored is None:
        stored = NodeReport(node_id=node.id)
        db.session.add(stored)
    stored.received_at = now
    stored.payload = json.dumps(payload, separators=(",", ":"))
    stored.config_version = report.config_version
    node.last_seen_at = now
    for event in events:
        db.session.add(
            TopologyChange(node_id=node.id, at=now, kind=event.kind, port=event.port, old=event.old, new=event.new)
        )
    if events:
        _prune_timeline(node)
    db.session.commit()
    planning.replan_after_report(node, report, now=now)
    return events


def _prune_timeline(node: Node) -> None:
    keep = (
        select(TopologyChange.id)
        .where(TopologyChange.node_id == node.id)
        .order_by(TopologyChange.at.desc(), TopologyChange.id.desc())
        .limit(TIMELINE_LIMIT)
    )
    db.session.execute(
        db.delete(TopologyChange).where(TopologyChange.node_id == node.id, TopologyChange.id.not_in(keep))
    )


def latest_reports() -> dict[str, topology.ReceivedReport]:
    """Every node's latest parsed report, by node name."""
    rows = db.session.execute(select(Node.name, NodeReport.payload, NodeReport.received_at).join(NodeReport.node))
    return {
        name: topology.ReceivedReport(reports.parse_report(json.loads(payload), node_name=name), received_at)
        for name, payload, received_at in rows
    }


def current_topology(now: datetime | None = None) -> topology.Topology:
    """The network as the agents last reported it, joined with the desired links."""
    network = inventory.get_network()
    plan = planning.stored_plan(network)
    nodes = [topology.NodeInfo(node.name, node.public_key) for node in inventory.list_nodes()]
    links = [
        topology.LinkInfo(
            link.node_a.name, link.node_b.name, link.vni, planning.effective_cost(link, network, plan), link.enabled
        )
        for link in inventory.list_links()
    ]
    return topology.compute_topology(
        nodes, links, latest_reports(), report_interval=network.report_interval, now=now or utcnow()
    )


def timeline(limit: int = 100) -> list[TopologyChange]:
    """The latest topology changes across the network, newest first."""
    query = select(TopologyChange).order_by(TopologyChange.at.desc(), TopologyChange.id.desc()).limit(limit)
    return list(db.session.execute(query).scalars())
