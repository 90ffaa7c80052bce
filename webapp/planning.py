"""The spanning tree in the app: measurements from the agents, the stored plan, and what hosts get.

No HTTP here. ``webapp.treeplan`` chooses the tree; this module feeds it the network as stored and
the RTTs the agents report (report schema 2, ``probes``), keeps its latest plan on the network row
(so hysteresis holds across requests and gunicorn workers), and decides the *effective* STP
settings every host's HostConfig carries.

Rules:

- **Tree modes** (``Network.tree_mode``): ``latency``, privnet's default: a link's port path cost and
  a node's bridge priority come from the plan, unless the admin pinned them; ``seed``, the seed
  blog's settings: every link's own cost (default 100) and node's own priority (default 32768), no
  planning applied (the stored plan is kept, unused, as the previous plan for a switch back).
- **Effective values** (``effective_cost``, ``effective_priority``): pinned → the admin's value;
  mode ``seed`` → the admin's value; mode ``latency`` → the plan's value, or the admin's value while
  there is no plan yet or the link or node is not in it.
- **Measurements** (``measurements_from_reports``): one per (node, peer) from the latest report of
  every node that is not stale (a report within 3 report intervals, as on the topology map), for
  probes with an RTT, and only for peers the node is linked to now. The planner averages the two
  ends of a link. A dead peer's probe (state ``down``) still counts, with its loss: the agents
  already route around a dead tunnel within seconds, and replanning at once would push new costs
  to every host in the middle of that failover; a link that stays lossy loses its place in the
  tree through the loss penalty, within the planner's hysteresis.
- **When**: every inventory write that changes the graph, a pin or the tree mode replans in its own
  transaction (``PlannedChange``). A stored report replans (``replan_after_report``) when its probes
  change which peers its node measures, compared with what the planner last saw from that node;
  otherwise at most once per ``report_interval / 2`` (judged by ``planned_at``), and only when one of
  its measurements moved by more than ``MOVED_TOLERANCE`` from what the planner last saw: below
  that the planner's hysteresis keeps the settings anyway, and a network of 1,000 nodes takes
  seconds to plan (``plan_tree`` is roughly quadratic). ``POST /api/v1/plan`` replans at once.
- **Applying**: a replan stores the plan whatever it says; only when the effective cost of some
  enabled link or the effective priority of some node changes does it bump the network generation
  and stamp exactly the nodes concerned (a node's priority, both ends of a link's cost), as inventory
  writes do, so those hosts' agents' long-polls return the new config at once.
- **Concurrency**: a replan reads and plans without a lock, then takes the network row's lock (the
  one every inventory write takes first) and stores only if neither the graph nor the stored plan
  moved meanwhile; else it plans again (under the lock at the last attempt; the background planner
  gives up instead, as whatever moved the graph asked it for another run). Two workers replanning
  at once thus store two plans in turn, the second planned from the first.
- **Large networks**: above ``INLINE_PLAN_NODES`` nodes, planning leaves the request: this process's
  background planner replans soon after (an inventory write commits with the previous plan's values
  meanwhile; a link or node not in it gets its own value until then).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Flask, current_app
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import aliased

from . import changes
from .extensions import db
from .models import TREE_MODES, Link, Network, Node, NodeReport, utcnow
from .reports import AgentReport
from .topology import STALE_INTERVALS
from .treeplan import LinkMeasurement, PlanLink, PlanNode, PlanSettings, TreePlan, link_key, plan_tree

LATENCY, SEED = TREE_MODES
# A report's measurement must move this much from what the planner last saw to replan (see above).
MOVED_TOLERANCE = 0.10
MOVED_FLOOR_MS = 1.0  # ... and by this much: sub-millisecond RTTs (a LAN, the lab) jitter by far more than 10 %
# Up to this many nodes, plan_tree takes ~0.1 s here (1,000 nodes: ~1-3 s): plan within the request.
INLINE_PLAN_NODES = 200
# Optimistic attempts before a replan plans under the network row's lock.
ATTEMPTS = 3

PINNED_REASON = "pinned by admin"
SEED_COST_REASON = "seed settings: the link's own cost"
SEED_PRIORITY_REASON = "seed settings: the node's own priority"
UNPLANNED_COST_REASON = "not planned yet: the link's own cost"
UNPLANNED_PRIORITY_REASON = "not planned yet: the node's own priority"

log = logging.getLogger(__name__)


# --- effective values ------------------------------------------------------------------------


def _pick(own: int, pinned: bool, mode: str, planned: int | None) -> int:
    return own if pinned or mode != LATENCY or planned is None else planned


def _planned_cost(plan: TreePlan | None, a: str, b: str) -> int | None:
    found = plan.find_link(a, b) if plan is not None else None
    return found.cost if found is not None else None


def _planned_priority(plan: TreePlan | None, name: str) -> int | None:
    found = plan.find_node(name) if plan is not None else None
    return found.priority if found is not None else None


def effective_cost(link: Link, network: Network, plan: TreePlan | None) -> int:
    """The port path cost both ends of ``link`` get (see the module docstring)."""
    planned = _planned_cost(plan, link.node_a.name, link.node_b.name)
    return _pick(link.cost, link.cost_pinned, network.tree_mode, planned)


def effective_priority(node: Node, network: Network, plan: TreePlan | None) -> int:
    """The bridge priority ``node``'s host gets (see the module docstring)."""
    return _pick(node.bridge_priority, node.priority_pinned, network.tree_mode, _planned_priority(plan, node.name))


@dataclass(frozen=True)
class LinkFacts:
    """A link as pages and the API show it: effective cost, whether pinned, its place in the plan."""

    cost: int
    pinned: bool
    in_tree: bool | None  # None: not planned (mode "seed", or no plan yet)
    reason: str
    rtt_ms: float | None  # the planning RTT its cost encodes


@dataclass(frozen=True)
class NodeFacts:
    """A node as pages and the API show it: effective priority, whether pinned, its role."""

    priority: int
    pinned: bool
    role: str | None  # root, backup root, bridge, isolated; None: not planned
    reason: str


def link_facts(link: Link, network: Network, plan: TreePlan | None) -> LinkFacts:
    """``link``'s effective cost and why."""
    planned = plan.find_link(link.node_a.name, link.node_b.name) if plan and network.tree_mode == LATENCY else None
    if link.cost_pinned:
        # The plan's sentence says more ("tree link: cost pinned by admin (RTT …)") if it saw this pin.
        fresh = planned is not None and planned.pinned and planned.cost == link.cost
        reason = planned.reason if fresh and planned is not None else PINNED_REASON
    elif network.tree_mode != LATENCY:
        reason = SEED_COST_REASON
    else:
        reason = planned.reason if planned is not None else UNPLANNED_COST_REASON
    return LinkFacts(
        cost=effective_cost(link, network, plan),
        pinned=link.cost_pinned,
        in_tree=planned.in_tree if planned is not None else None,
        reason=reason,
        rtt_ms=planned.planning_rtt_ms if planned is not None else None,
    )


def node_facts(node: Node, network: Network, plan: TreePlan | None) -> NodeFacts:
    """``node``'s effective priority, its role and why."""
    planned = plan.find_node(node.name) if plan and network.tree_mode == LATENCY else None
    if node.priority_pinned:
        fresh = planned is not None and planned.priority == node.bridge_priority
        reason = planned.reason if fresh and planned is not None else PINNED_REASON
    elif network.tree_mode != LATENCY:
        reason = SEED_PRIORITY_REASON
    else:
        reason = planned.reason if planned is not None else UNPLANNED_PRIORITY_REASON
    return NodeFacts(
        priority=effective_priority(node, network, plan),
        pinned=node.priority_pinned,
        role=planned.role if planned is not None else None,
        reason=reason,
    )


# --- the stored plan ---------------------------------------------------------------------------

# The last plan this process parsed, by its JSON text: every config read needs the plan, and a
# 1,000-node plan takes milliseconds to parse. (A tuple: replaced whole, safe across threads.)
_parsed_plan: tuple[str, TreePlan] | None = None
# What the planner last saw, by planned_at: {node: {peer: planning RTT}} (see replan_after_report).
_parsed_inputs: tuple[datetime, dict[str, dict[str, float]]] | None = None


def _parse_plan(text: str | None) -> TreePlan | None:
    global _parsed_plan
    if text is None:
        return None
    cached = _parsed_plan
    if cached is not None and cached[0] == text:
        return cached[1]
    try:
        plan = TreePlan.from_dict(json.loads(text))
    except (ValueError, KeyError, TypeError):  # written by another version: plan again instead
        log.warning("the stored plan cannot be read; the next replan replaces it")
        return None
    _parsed_plan = (text, plan)
    return plan


def stored_plan(network: Network) -> TreePlan | None:
    """The network's latest plan (in either tree mode), or None before the first."""
    return _parse_plan(network.plan)


# --- the network as the planner sees it --------------------------------------------------------


@dataclass(frozen=True)
class _NodeRow:
    id: int
    name: str
    priority: int
    pinned: bool


@dataclass(frozen=True)
class _LinkRow:
    id: int
    a_id: int
    b_id: int
    a: str
    b: str
    cost: int
    pinned: bool
    enabled: bool


@dataclass(frozen=True)
class _Graph:
    """Nodes, links and the tree mode, read with Core (the database's values, not the session's)."""

    mode: str
    nodes: tuple[_NodeRow, ...]
    links: tuple[_LinkRow, ...]

    def plan_nodes(self) -> list[PlanNode]:
        return [PlanNode(node.name, pinned_priority=node.priority if node.pinned else None) for node in self.nodes]

    def plan_links(self) -> list[PlanLink]:
        return [
            PlanLink(link.a, link.b, pinned_cost=link.cost if link.pinned else None, enabled=link.enabled)
            for link in self.links
        ]


def _read_graph() -> _Graph:
    end_a, end_b = aliased(Node), aliased(Node)
    mode = db.session.execute(select(Network.tree_mode).where(Network.id == 1)).scalar_one_or_none()
    nodes = db.session.execute(
        select(Node.id, Node.name, Node.bridge_priority, Node.priority_pinned).order_by(Node.name)
    )
    links = db.session.execute(
        select(Link.id, Link.node_a_id, Link.node_b_id, end_a.name, end_b.name, Link.cost, Link.cost_pinned,
               Link.enabled)
        .join(end_a, Link.node_a_id == end_a.id)
        .join(end_b, Link.node_b_id == end_b.id)
        .order_by(Link.id)
    )  # fmt: skip
    return _Graph(
        mode or LATENCY,
        tuple(_NodeRow(*row) for row in nodes),
        tuple(_LinkRow(*row) for row in links),
    )


def _stored_plan_text() -> str | None:
    return db.session.execute(select(Network.plan).where(Network.id == 1)).scalar_one_or_none()


@dataclass(frozen=True)
class _Settings:
    """The effective settings hosts get: priority by node id, (ends, cost) by enabled link id."""

    priorities: Mapping[int, int]
    costs: Mapping[int, tuple[int, int, int]]


def _settings(graph: _Graph, plan: TreePlan | None) -> _Settings:
    return _Settings(
        {node.id: _pick(node.priority, node.pinned, graph.mode, _planned_priority(plan, node.name))
         for node in graph.nodes},
        {link.id: (link.a_id, link.b_id, _pick(link.cost, link.pinned, graph.mode, _planned_cost(plan, link.a, link.b)))
         for link in graph.links if link.enabled},
    )  # fmt: skip


def _concerned(before: _Settings, after: _Settings) -> set[int]:
    """Ids of the nodes whose HostConfig differs between two settings (a node's priority, a link's ends)."""
    nodes = {key for key in before.priorities.keys() | after.priorities.keys()
             if before.priorities.get(key) != after.priorities.get(key)}  # fmt: skip
    for key in before.costs.keys() | after.costs.keys():
        old, new = before.costs.get(key), after.costs.get(key)
        if old != new:
            for ends in (old, new):
                if ends is not None:
                    nodes.update(ends[:2])
    return nodes


# --- measurements ------------------------------------------------------------------------------


def planning_rtt(rtt_ms: float, loss: float) -> float:
    """The RTT the planner plans a measurement at (its loss penalty included)."""
    return rtt_ms * (1 + PlanSettings.loss_penalty * min(1.0, max(0.0, loss)))


def _usable(probe: Mapping) -> bool:
    return probe["rtt_ms"] is not None


def measurements_from_reports(*, now: datetime | None = None) -> list[LinkMeasurement]:
    """Per (node, peer): the RTT and loss in the node's latest fresh report, for linked peers only."""
    now = now or utcnow()
    interval = db.session.execute(select(Network.report_interval).where(Network.id == 1)).scalar_one_or_none()
    cutoff = now - timedelta(seconds=STALE_INTERVALS * (interval or 10))
    end_a, end_b = aliased(Node), aliased(Node)
    linked = {
        link_key(a, b)
        for a, b in db.session.execute(
            select(end_a.name, end_b.name)
            .join(Link, Link.node_a_id == end_a.id)
            .join(end_b, Link.node_b_id == end_b.id)
        )
    }
    rows = db.session.execute(
        select(Node.name, NodeReport.payload).join(NodeReport.node).where(NodeReport.received_at >= cutoff)
    )
    found = []
    for name, payload in rows:
        # Stored reports were validated on arrival (reports.parse_report); only probes matter here.
        for probe in json.loads(payload).get("probes") or ():
            if _usable(probe) and link_key(name, probe["peer"]) in linked:
                found.append(LinkMeasurement(name, probe["peer"], float(probe["rtt_ms"]), float(probe["loss"])))
    return sorted(found, key=lambda measurement: (measurement.a, measurement.b))


def _inputs_json(measurements: Iterable[LinkMeasurement]) -> str:
    return json.dumps({"measurements": [[m.a, m.b, m.rtt_ms, m.loss] for m in measurements]}, separators=(",", ":"))


def _seen_by_planner(planned_at: datetime) -> dict[str, dict[str, float]]:
    """What the planner last saw: {node: {peer: planning RTT}} (parsed once per plan and process)."""
    global _parsed_inputs
    cached = _parsed_inputs
    if cached is not None and cached[0] == planned_at:
        return cached[1]
    text = db.session.execute(select(Network.plan_inputs).where(Network.id == 1)).scalar_one_or_none()
    seen: dict[str, dict[str, float]] = {}
    try:
        for a, b, rtt_ms, loss in json.loads(text)["measurements"] if text else ():
            seen.setdefault(a, {})[b] = planning_rtt(rtt_ms, loss)
    except (ValueError, KeyError, TypeError):
        seen = {}
    _parsed_inputs = (planned_at, seen)
    return seen


# --- replanning --------------------------------------------------------------------------------


def _plan(graph: _Graph, measurements: list[LinkMeasurement], previous: TreePlan | None) -> TreePlan:
    return plan_tree(graph.plan_nodes(), graph.plan_links(), measurements, previous)


def _apply(
    before: _Settings,
    graph: _Graph,
    plan: TreePlan | None,
    *,
    store: tuple[list[LinkMeasurement], datetime] | None,
    generation: int | None,
) -> bool:
    """Store ``plan`` (with its measurements and time, if ``store``) and stamp the nodes whose settings
    changed from ``before``, bumping the generation unless the caller already did. Holds the lock."""
    concerned = _concerned(before, _settings(graph, plan))
    if concerned:
        if generation is None:
            generation = changes.bump_generation()
        stamped = store[1] if store else utcnow()
        db.session.execute(
            update(Node).where(Node.id.in_(sorted(concerned))).values(config_generation=generation,
                                                                        config_changed_at=stamped)
        )  # fmt: skip
    if store is not None and plan is not None:
        measurements, now = store
        db.session.execute(
            update(Network)
            .where(Network.id == 1)
            .values(plan=json.dumps(plan.to_dict(), separators=(",", ":")),
                    plan_inputs=_inputs_json(measurements), planned_at=now)
        )  # fmt: skip
    return bool(concerned)


@dataclass(frozen=True)
class ReplanResult:
    """What a replan did: whether it planned (mode ``latency``) and whether hosts' settings changed."""

    planned: bool
    changed: bool


def replan(*, now: datetime | None = None, insist: bool = True) -> ReplanResult:
    """Plan from the current measurements, store the plan, and push changed settings to the hosts.

    Commits. Plans without holding a lock or a snapshot; stores under the network row's lock only if
    nothing it planned from moved meanwhile (see the module docstring). When writes keep moving the
    graph, the last attempt plans under the lock if ``insist``; else it gives up (``planned`` False):
    the background planner does, since every write that moved the graph asked it to plan again.
    """
    for attempt in range(ATTEMPTS):
        locked = insist and attempt == ATTEMPTS - 1
        if locked:
            changes.lock_network()
        graph, text = _read_graph(), _stored_plan_text()
        measurements = measurements_from_reports(now=now)
        if graph.mode != LATENCY:
            db.session.rollback()
            return ReplanResult(planned=False, changed=False)
        if not locked:
            db.session.commit()  # end the read transaction: plan_tree may take seconds on a large network
        previous = _parse_plan(text)
        plan = _plan(graph, measurements, previous)
        if not locked:
            changes.lock_network()
            if _read_graph() != graph or _stored_plan_text() != text:
                db.session.rollback()  # another write or replan came first: plan again from it
                continue
        when = now or utcnow()
        changed = _apply(_settings(graph, previous), graph, plan, store=(measurements, when), generation=None)
        db.session.commit()
        return ReplanResult(planned=True, changed=changed)
    return ReplanResult(planned=False, changed=False)


def _node_count() -> int:
    return db.session.execute(select(func.count(Node.id))).scalar_one()


def request_replan(*, now: datetime | None = None) -> ReplanResult | None:
    """Replan now on a small network; on a large one ask this process's background planner (None)."""
    if _node_count() <= INLINE_PLAN_NODES:
        return replan(now=now)
    background_planner().request(current_app._get_current_object())
    return None


class PlannedChange:
    """Replanning inside an inventory write, in its transaction and generation.

    Create it right after ``changes.bump_generation()`` (under the network row's lock, before the
    write changes anything); call ``finish()`` after the write, before its commit. ``finish`` plans
    the changed network (or, on a large one, asks the background planner to after the commit) and
    stamps every node whose effective settings the write changed, with the write's generation.
    """

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.graph = _read_graph()
        self.text = _stored_plan_text()

    def finish(self, *, now: datetime | None = None) -> None:
        db.session.flush()
        graph = _read_graph()
        previous = _parse_plan(self.text)
        before = _settings(self.graph, previous)
        if graph.mode != LATENCY:
            _apply(before, graph, previous, store=None, generation=self.generation)
        elif len(graph.nodes) > INLINE_PLAN_NODES:
            _apply(before, graph, previous, store=None, generation=self.generation)
            # It waits for this write's commit on the lock, and plans again if it read before.
            background_planner().request(current_app._get_current_object())
        else:
            measurements = measurements_from_reports(now=now)
            plan = _plan(graph, measurements, previous)
            _apply(before, graph, plan, store=(measurements, now or utcnow()), generation=self.generation)


def replan_after_report(node: Node, report: AgentReport, *, now: datetime | None = None) -> bool:
    """After ``node``'s report was stored: replan if its measurements call for it (module docstring).

    Returns whether a replan was made or requested. A planning failure is logged, never raised: the
    report is stored already and the agent must not resend it.
    """
    now = now or utcnow()
    try:
        state = db.session.execute(
            select(Network.tree_mode, Network.report_interval, Network.planned_at).where(Network.id == 1)
        ).one_or_none()
        if state is None or state.tree_mode != LATENCY:
            return False
        if not _calls_for_replan(node, report, state.report_interval, state.planned_at, now):
            return False
        request_replan(now=now)
        return True
    except Exception:
        db.session.rollback()
        log.exception("replanning after %s's report failed; the next report tries again", node.name)
        return False


def _calls_for_replan(
    node: Node, report: AgentReport, report_interval: int, planned_at: datetime | None, now: datetime
) -> bool:
    if planned_at is None:
        return True
    peers = db.session.execute(
        select(Node.name).join(Link, or_(Link.node_a_id == Node.id, Link.node_b_id == Node.id))
        .where(or_(Link.node_a_id == node.id, Link.node_b_id == node.id), Node.id != node.id)
    ).scalars()  # fmt: skip
    linked = set(peers)
    current = {
        probe.peer: planning_rtt(probe.rtt_ms, probe.loss)
        for probe in report.probes
        if probe.rtt_ms is not None and probe.peer in linked
    }
    seen = _seen_by_planner(planned_at).get(node.name, {})
    if current.keys() != seen.keys():
        return True
    if (now - planned_at).total_seconds() < report_interval / 2:
        return False
    return any(abs(current[peer] - seen[peer]) > max(MOVED_TOLERANCE * seen[peer], MOVED_FLOOR_MS) for peer in current)


# --- the plan as the API shows it ----------------------------------------------------------------


@dataclass(frozen=True)
class PlanStatus:
    """``GET /api/v1/plan``: the tree mode, the plan in effect (None in mode ``seed``), what it sees."""

    tree_mode: str
    planned_at: datetime | None
    plan: TreePlan | None
    measurements: tuple[LinkMeasurement, ...]


def plan_status(network: Network) -> PlanStatus:
    """The plan in effect and the agents' current measurements."""
    applied = stored_plan(network) if network.tree_mode == LATENCY else None
    return PlanStatus(network.tree_mode, network.planned_at, applied, tuple(measurements_from_reports()))


# --- the background planner (large networks) ---------------------------------------------------


class BackgroundPlanner:
    """One thread per process that replans on request, requests arriving meanwhile coalesced."""

    def __init__(self) -> None:
        self._wanted = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._app: Flask | None = None

    def request(self, app: Flask) -> None:
        """Replan soon (after whatever replan runs now), in ``app``'s context."""
        with self._lock:
            self._app = app
            self._idle.clear()
            self._wanted.set()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="privnet-planner", daemon=True)
                self._thread.start()

    def wait_idle(self, timeout: float) -> bool:
        """Block until no replan is wanted or running (tests); False on timeout."""
        return self._idle.wait(timeout)

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            app = self._app
            if app is not None:
                with app.app_context():
                    try:
                        replan(insist=False)
                    except Exception:
                        log.exception("background replan failed; the next report or change tries again")
                    finally:
                        db.session.remove()
            with self._lock:
                if not self._wanted.is_set():
                    self._idle.set()


_planners: dict[int, BackgroundPlanner] = {}
_planners_lock = threading.Lock()


def background_planner() -> BackgroundPlanner:
    """This process's background planner (its thread starts on the first request, after any fork)."""
    with _planners_lock:
        return _planners.setdefault(os.getpid(), BackgroundPlanner())
