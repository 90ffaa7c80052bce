"""Live desired state: a host's HostConfig now, waiting until it changes, and whether hosts caught up.

No HTTP here. ``wait_for_config`` is the long-poll behind ``GET /api/v1/agent/config``: it returns
the host's config as soon as its version differs from the one the host has, or None when
``timeout`` passes first. Only changes that stamped this host's node wake it (``webapp.changes``),
and a wake-up that leaves its config as it was keeps it waiting: a change to another host never
answers it. ``sync_status`` compares the desired version with the one the host's agent last
reported.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import joinedload

from . import inventory, planning
from .changes import ChangeNotifier
from .errors import ValidationError
from .extensions import db
from .hostconfig import HostConfig, build_host_config
from .models import Link, Node, NodeReport

DEFAULT_WAIT_SECONDS = 55
MAX_WAIT_SECONDS = 60

IN_SYNC = "in_sync"
BEHIND = "behind"
UNKNOWN = "unknown"  # the host's agent never reported


def validate_wait(value: object) -> int:
    """The ``wait`` parameter: whole seconds 0-60; None means the default (55)."""
    if value is None:
        return DEFAULT_WAIT_SECONDS
    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, str) and text.isascii() and text.isdigit() and len(text) <= 3:
        text = int(text)
    if isinstance(text, int) and not isinstance(text, bool) and 0 <= text <= MAX_WAIT_SECONDS:
        return text
    raise ValidationError("wait", f"wait must be whole seconds from 0 to {MAX_WAIT_SECONDS}")


def _links_with_ends(node: Node) -> list[Link]:
    query = (
        select(Link)
        .where(or_(Link.node_a_id == node.id, Link.node_b_id == node.id))
        .options(joinedload(Link.node_a), joinedload(Link.node_b))
    )
    return list(db.session.execute(query).scalars())


def desired_config(node: Node, app_url: str) -> HostConfig:
    """``node``'s HostConfig as the database says now."""
    network = inventory.get_network()
    return build_host_config(node, network, _links_with_ends(node), app_url, plan=planning.stored_plan(network))


def wait_for_config(
    node_id: int,
    load_node: Callable[[], Node],
    known_version: str | None,
    *,
    app_url: str,
    timeout: float,
    notifier: ChangeNotifier,
    clock: Callable[[], float] = time.monotonic,
) -> HostConfig | None:
    """Node ``node_id``'s config once its version differs from ``known_version``; None after ``timeout`` s.

    ``load_node`` is called before every read (it may raise, e.g. when the agent token was revoked
    meanwhile). No database connection is held while waiting.
    """
    deadline = clock() + timeout
    while True:
        mark = notifier.mark(node_id)  # before reading: a change committed after this wakes us
        config = desired_config(load_node(), app_url)
        if config.version != known_version:
            return config
        remaining = deadline - clock()
        if remaining <= 0 or notifier.stopped:  # timed out, or the server is shutting down
            return None
        db.session.close()  # give the connection back to the pool for the wait
        notifier.wait(mark, remaining)


@dataclass(frozen=True)
class SyncStatus:
    """Does the host run its desired state? ``since``: when the desired state it lacks appeared."""

    state: str  # IN_SYNC, BEHIND or UNKNOWN
    since: datetime | None
    desired_version: str
    reported_version: str | None

    def to_dict(self) -> dict:
        return {
            "state": self.state,
            "since": self.since.isoformat() if self.since else None,
            "desired_version": self.desired_version,
            "reported_version": self.reported_version,
        }


def judge_sync(
    desired_version: str, *, reported: bool, reported_version: str | None, changed_at: datetime | None
) -> SyncStatus:
    """In sync when the last report names the desired version; else behind since the last change."""
    if not reported:
        return SyncStatus(UNKNOWN, None, desired_version, None)
    if reported_version == desired_version:
        return SyncStatus(IN_SYNC, None, desired_version, reported_version)
    return SyncStatus(BEHIND, changed_at, desired_version, reported_version)


def _judge(node: Node, config: HostConfig, reports: dict[int, str | None]) -> SyncStatus:
    return judge_sync(
        config.version,
        reported=node.id in reports,
        reported_version=reports.get(node.id),
        changed_at=node.config_changed_at or node.created_at,
    )


def sync_status(node: Node, app_url: str) -> SyncStatus:
    """``node``'s sync status."""
    query = select(NodeReport.node_id, NodeReport.config_version).where(NodeReport.node_id == node.id)
    reports = {node_id: version for node_id, version in db.session.execute(query)}
    return _judge(node, desired_config(node, app_url), reports)


def sync_statuses(app_url: str) -> dict[str, SyncStatus]:
    """Every node's sync status by name, in a constant number of queries."""
    network = inventory.get_network()
    plan = planning.stored_plan(network)
    nodes = inventory.list_nodes()
    links_by_node: dict[int, list[Link]] = defaultdict(list)
    for link in db.session.execute(select(Link)).scalars():  # its ends are in the session already
        links_by_node[link.node_a_id].append(link)
        links_by_node[link.node_b_id].append(link)
    query = select(NodeReport.node_id, NodeReport.config_version)
    reports = {node_id: version for node_id, version in db.session.execute(query)}
    return {
        node.name: _judge(node, build_host_config(node, network, links_by_node[node.id], app_url, plan=plan), reports)
        for node in nodes
    }
