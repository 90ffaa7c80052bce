"""Choose the spanning tree and encode it as STP settings (issue 7, "Measure, then decide").

Pure domain code: dataclasses in, dataclasses out; no HTTP, no database. ``plan_tree`` takes the
nodes (with admin pins), the links, the agents' RTT measurements and the previous plan, and returns a
``TreePlan``: the tree, its root, a bridge priority per node and a port path cost per link (the same
on both ends), each with the reason it was chosen. ``simulate_stp`` predicts the tree kernel STP
builds from such settings; ``plan_tree`` checks its own settings with it.

Rules:

- **Planning RTT** of a link: smoothed RTT × (1 + ``loss_penalty`` × loss), penalty 10: a lost packet
  costs a retransmission, ~10 round trips on a WAN link (TCP's minimum RTO is 200 ms), so 1 % loss
  counts as +10 %, 10 % as ×2. Several measurements of one link (one per end) are averaged. An
  unmeasured link is planned at ``default_rtt_ms`` (100 ms) or the slowest measured link's planning
  RTT if larger, so measured links are preferred. Disabled links are never in the tree.
- **The tree**: per connected part of the enabled links, the spanning tree minimising the sum over
  all node pairs of the tree path RTT (a minimum routing cost tree, MRCT; NP-hard). Heuristic: the
  best shortest-path tree over all roots (a 2-approximation, Wong 1980), then edge swaps while the
  objective drops (each swap evaluated in O(1) from subtree sums; at most 4 × nodes swaps). Exact for
  parts of up to ``exact_max_nodes`` (12) nodes: branch and bound over spanning trees (grown from
  one node, each frontier link included or excluded, so every tree is met once), seeded with the
  heuristic's tree, bounded below by the fact that every node outside the grown part reaches all of
  it through one exit node; it gives up after ``exact_max_steps`` (100,000, ~1 s) and keeps the
  heuristic's tree, and says so (``method``).
- **The root**: the tree's latency centre, the node with the least sum (i.e. mean) of tree RTTs to
  the others (the sum, not the max: one far leaf, a roaming laptop, should not pull the root), gets
  priority 4096; the next-best centre 8192 (the backup root STP elects if the root dies); others 32768.
  Priority 0 is left to the admin. An admin-pinned root or priority wins; a pinned priority that beats
  the chosen root makes its node the root (with a warning). Every spanning tree is a shortest-path
  tree from any of its nodes under the costs below, so the root never constrains the tree.
- **Costs**: a tree link costs its planning RTT × ``cost_per_ms`` (10 per ms; rounded, ≥ 1); every
  other link costs the *tree bound* (the largest root path cost over the tree) plus its own
  RTT × ``cost_per_ms``. Any path using a non-tree link then costs more than every tree path, so
  STP's shortest-path tree from the root is exactly the chosen tree, every node's root port is
  unique (no tie-break by bridge or port id), and backups are ranked by RTT. When the largest cost
  exceeds 65535 the scale shrinks (scale × 65535 / largest, repeated; at worst every tree link costs
  1 and the bound is the tree depth). Pinned costs are used as they are; if they make STP build
  another tree, the plan reports STP's tree and a warning.
- **Hysteresis** (``previous``, unless it planned a link at a default RTT that is measured now):
  the previous tree stays while it still spans the enabled links,
  unless the best tree's objective is lower by more than ``margin`` (10 %) *and* by ``min_gain_ms``
  (2 ms) per node pair; a root or backup root stays unless the new centre's mean is lower by the same
  margins. Since 0.95 / 1.05 > 0.90, RTT noise of ±5 % can never move the tree off the one that is
  optimal for the noiseless RTTs.
  With tree and roots kept, the previous costs stay while every link's planning RTT is within
  ±``cost_tolerance`` (50 %) or ``cost_tolerance_ms`` (5 ms), whichever is wider, of the RTT its
  cost encodes. Costs need not track RTTs closely (any costs under which STP builds the chosen tree
  do; the RTTs rank only the backups), and every cost change makes STP recompute: a bridge ignores
  a worse BPDU from its designated bridge until max age, then chooses again, so a raised cost on a
  tree link can move root ports seconds later. Under load a 10 ms link here jitters by 3 ms.
  When some link moved further, the costs are computed afresh, but every other link that keeps
  its role and stays within tolerance keeps its previous cost, if STP still builds the tree.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property

LinkKey = tuple[str, str]

MAX_COST = 65535  # STP port path cost range: 1..65535
PRIORITY_STEP = 4096
MAX_PRIORITY = 61440
PORT_PRIORITY = 32  # the kernel's default port priority; port id = priority << 10 | port number
ROLES = ("root", "backup root", "bridge", "isolated")


def link_key(a: str, b: str) -> LinkKey:
    """The canonical key of the link between ``a`` and ``b`` (names in order)."""
    return (a, b) if a <= b else (b, a)


# ---- input ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanNode:
    """A node; ``pinned_root`` and ``pinned_priority`` are the admin's overrides."""

    name: str
    pinned_root: bool = False
    pinned_priority: int | None = None


@dataclass(frozen=True)
class PlanLink:
    """A link between nodes ``a`` and ``b``; ``pinned_cost`` is the admin's override."""

    a: str
    b: str
    pinned_cost: int | None = None
    enabled: bool = True

    @property
    def key(self) -> LinkKey:
        return link_key(self.a, self.b)


@dataclass(frozen=True)
class LinkMeasurement:
    """An agent's smoothed underlay RTT to a linked peer, and the fraction of probes lost."""

    a: str
    b: str
    rtt_ms: float
    loss: float = 0.0


@dataclass(frozen=True)
class PlanSettings:
    """The planner's tunables; the defaults are privnet's (see the module docstring)."""

    loss_penalty: float = 10.0
    default_rtt_ms: float = 100.0
    cost_per_ms: float = 10.0
    root_priority: int = 4096
    backup_priority: int = 8192
    bridge_priority: int = 32768
    margin: float = 0.10
    min_gain_ms: float = 2.0
    cost_tolerance: float = 0.50
    cost_tolerance_ms: float = 5.0
    exact_max_nodes: int = 12
    exact_max_steps: int = 100_000


# ---- output -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodePlan:
    """A node's bridge priority, its role (one of ``ROLES``) and why."""

    name: str
    priority: int
    role: str
    reason: str
    mean_tree_rtt_ms: float | None = None  # mean tree RTT to the other nodes of its part


@dataclass(frozen=True)
class LinkPlan:
    """A link's STP port path cost (both ends), whether it is in the tree, and why."""

    a: str
    b: str
    cost: int
    in_tree: bool
    reason: str
    planning_rtt_ms: float | None = None  # the RTT the cost encodes; None for a disabled link
    pinned: bool = False  # the cost is the admin's
    measured: bool = True  # False: planned at a default RTT, no agent had measured it

    @property
    def key(self) -> LinkKey:
        return link_key(self.a, self.b)


@dataclass(frozen=True)
class TreePlan:
    """The chosen tree and the STP settings that make kernel STP build it."""

    root: str | None  # the root of the largest part (each part of a partitioned network has one)
    tree: frozenset[LinkKey]
    nodes: tuple[NodePlan, ...]
    links: tuple[LinkPlan, ...]
    objective_ms: float  # sum over connected node pairs of the tree path planning RTT
    pairs: int  # connected node pairs
    method: str  # "exact" or "heuristic": how the best tree was found
    cost_per_ms: float  # the scale the costs were computed with
    summary: str
    warnings: tuple[str, ...] = ()

    # Lookups by name, built once per plan: the app asks for every node and link of a large plan.
    @cached_property
    def _node_index(self) -> dict[str, NodePlan]:
        return {node.name: node for node in self.nodes}

    @cached_property
    def _link_index(self) -> dict[LinkKey, LinkPlan]:
        return {link.key: link for link in self.links}

    def node(self, name: str) -> NodePlan:
        """The plan of node ``name`` (``KeyError`` if it is not in the plan)."""
        return self._node_index[name]

    def link(self, a: str, b: str) -> LinkPlan:
        """The plan of the link between ``a`` and ``b``, in either order (``KeyError`` if none)."""
        return self._link_index[link_key(a, b)]

    def find_node(self, name: str) -> NodePlan | None:
        """The plan of node ``name``, or None."""
        return self._node_index.get(name)

    def find_link(self, a: str, b: str) -> LinkPlan | None:
        """The plan of the link between ``a`` and ``b``, or None."""
        return self._link_index.get(link_key(a, b))

    @property
    def priorities(self) -> dict[str, int]:
        return {node.name: node.priority for node in self.nodes}

    @property
    def costs(self) -> dict[LinkKey, int]:
        return {link.key: link.cost for link in self.links}

    def same_settings(self, other: TreePlan | None) -> bool:
        """Whether ``other`` configures the hosts identically (same priorities and costs)."""
        return other is not None and self.priorities == other.priorities and self.costs == other.costs

    def to_dict(self) -> dict:
        """JSON-ready: ``{root, tree, objective_ms, pairs, method, cost_per_ms, summary, warnings, nodes, links}``."""
        return {
            "root": self.root,
            "tree": [list(key) for key in sorted(self.tree)],
            "objective_ms": self.objective_ms,
            "pairs": self.pairs,
            "method": self.method,
            "cost_per_ms": self.cost_per_ms,
            "summary": self.summary,
            "warnings": list(self.warnings),
            "nodes": [
                {
                    "name": node.name,
                    "priority": node.priority,
                    "role": node.role,
                    "reason": node.reason,
                    "mean_tree_rtt_ms": node.mean_tree_rtt_ms,
                }
                for node in self.nodes
            ],
            "links": [
                {
                    "a": link.a,
                    "b": link.b,
                    "cost": link.cost,
                    "in_tree": link.in_tree,
                    "reason": link.reason,
                    "planning_rtt_ms": link.planning_rtt_ms,
                    "pinned": link.pinned,
                    "measured": link.measured,
                }
                for link in self.links
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> TreePlan:
        """The plan ``to_dict`` gave (also after a JSON round trip): its exact inverse."""
        return cls(
            root=data["root"],
            tree=frozenset(link_key(a, b) for a, b in data["tree"]),
            nodes=tuple(
                NodePlan(node["name"], node["priority"], node["role"], node["reason"], node["mean_tree_rtt_ms"])
                for node in data["nodes"]
            ),
            links=tuple(
                LinkPlan(
                    link["a"],
                    link["b"],
                    link["cost"],
                    link["in_tree"],
                    link["reason"],
                    link["planning_rtt_ms"],
                    link["pinned"],
                    link.get("measured", True),  # plans stored before the field existed
                )
                for link in data["links"]
            ),
            objective_ms=data["objective_ms"],
            pairs=data["pairs"],
            method=data["method"],
            cost_per_ms=data["cost_per_ms"],
            summary=data["summary"],
            warnings=tuple(data["warnings"]),
        )


@dataclass(frozen=True)
class StpPrediction:
    """What converged 802.1D STP does: per part a root, per bridge its root path cost and root port."""

    roots: frozenset[str]
    root_path_cost: Mapping[str, int]
    root_port: Mapping[str, str | None]  # the peer the root port leads to; None on a root
    forwarding: frozenset[LinkKey]


# ---- graph algorithms on node indices ---------------------------------------------------------

# A part of the network as the algorithms see it: nodes 0..size-1, edges (u, v, weight).
Edge = tuple[int, int, float]
Adjacency = list[list[tuple[int, float, int]]]  # per node: (neighbour, weight, edge index)


def _adjacency(size: int, edges: list[Edge], chosen: Iterable[int] | None = None) -> Adjacency:
    adjacency: Adjacency = [[] for _ in range(size)]
    for index in range(len(edges)) if chosen is None else chosen:
        u, v, weight = edges[index]
        adjacency[u].append((v, weight, index))
        adjacency[v].append((u, weight, index))
    return adjacency


def _dijkstra(size: int, adjacency: Adjacency, source: int) -> tuple[list[float], list[int]]:
    """Distances from ``source`` and each node's parent edge (-1: none) in one shortest-path tree."""
    distance = [math.inf] * size
    parent_edge = [-1] * size
    distance[source] = 0.0
    done = [False] * size
    heap = [(0.0, source)]
    while heap:
        here, node = heapq.heappop(heap)
        if done[node]:
            continue
        done[node] = True
        for other, weight, index in adjacency[node]:
            there = here + weight
            if there < distance[other]:
                distance[other] = there
                parent_edge[other] = index
                heapq.heappush(heap, (there, other))
    return distance, parent_edge


class _Rooted:
    """A spanning tree hung from ``root``: parents, weighted depths, subtree sizes and distance sums.

    ``down[v]`` sums the distances from v to its subtree; ``sums[v]`` to every node; ``total`` is the
    routing cost (sum over pairs).
    """

    def __init__(self, size: int, edges: list[Edge], tree: Iterable[int], root: int = 0) -> None:
        adjacency = _adjacency(size, edges, tree)
        self.parent = [-1] * size
        self.parent_edge = [-1] * size
        self.parent_weight = [0.0] * size
        self.depth = [0.0] * size
        self.hops = [0] * size
        order = [root]
        seen = [False] * size
        seen[root] = True
        for node in order:  # breadth first: parents before children
            for other, weight, index in adjacency[node]:
                if not seen[other]:
                    seen[other] = True
                    self.parent[other], self.parent_edge[other], self.parent_weight[other] = node, index, weight
                    self.depth[other] = self.depth[node] + weight
                    self.hops[other] = self.hops[node] + 1
                    order.append(other)
        if len(order) != size:
            raise ValueError("not a spanning tree")
        self.order = order
        self.size = [1] * size
        self.down = [0.0] * size
        for node in reversed(order[1:]):
            up = self.parent[node]
            self.size[up] += self.size[node]
            self.down[up] += self.down[node] + self.size[node] * self.parent_weight[node]
        self.sums = [0.0] * size
        self.sums[root] = self.down[root]
        for node in order[1:]:
            self.sums[node] = self.sums[self.parent[node]] + self.parent_weight[node] * (size - 2 * self.size[node])
        self.total = sum(self.sums) / 2


def _routing_cost(size: int, edges: list[Edge], tree: Iterable[int]) -> float:
    return _Rooted(size, edges, tree).total if size > 1 else 0.0


def _best_spt(size: int, edges: list[Edge], adjacency: Adjacency) -> tuple[list[int], float]:
    """The shortest-path tree of least routing cost over all roots (Wong's 2-approximation)."""
    best_tree: list[int] = []
    best_cost = math.inf
    for root in range(size):
        _, parent_edge = _dijkstra(size, adjacency, root)
        tree = [index for index in parent_edge if index >= 0]
        cost = _routing_cost(size, edges, tree)
        if cost < best_cost:
            best_tree, best_cost = tree, cost
    return best_tree, best_cost


def _improve_by_swaps(size: int, edges: list[Edge], tree: list[int], max_swaps: int) -> tuple[list[int], float]:
    """Steepest descent over single edge swaps (add a non-tree edge, drop one on its cycle).

    Dropping tree edge (c, parent p) splits the tree into A (c's subtree) and B; adding f = (a∈A, b∈B)
    gives routing cost total − cut(A, B) + |B|·D_A(a) + |A|·D_B(b) + |A||B|·w_f, where D_X(x) sums
    the distances from x within X. Each term follows in O(1) from the rooted tree's sums and depths.
    """
    chosen = set(tree)
    hung = _Rooted(size, edges, chosen)
    for _ in range(max_swaps):
        best_gain, best_swap = 1e-9 * max(1.0, hung.total), None
        parent, hops, depth, sums, down, sizes = hung.parent, hung.hops, hung.depth, hung.sums, hung.down, hung.size
        for index, (u, v, weight_f) in enumerate(edges):
            if index in chosen:
                continue
            # the tree path u … lca … v
            x, y = u, v
            u_side: list[int] = []
            v_side: list[int] = []
            while x != y:
                if hops[x] >= hops[y]:
                    u_side.append(x)
                    x = parent[x]
                else:
                    v_side.append(y)
                    y = parent[y]
            lca_depth = depth[x]
            for side, a, b in ((u_side, u, v), (v_side, v, u)):
                for c in side:
                    p, weight_e = parent[c], hung.parent_weight[c]
                    inside = sizes[c]
                    outside = size - inside
                    sum_b_p = sums[p] - (inside * weight_e + down[c])
                    sum_a = sums[a] - (outside * (depth[a] - depth[c] + weight_e) + sum_b_p)
                    sum_b = sums[b] - (inside * (depth[b] + depth[p] - 2 * lca_depth + weight_e) + down[c])
                    cut = outside * down[c] + inside * outside * weight_e + inside * sum_b_p
                    gain = cut - outside * sum_a - inside * sum_b - inside * outside * weight_f
                    if gain > best_gain:
                        best_gain, best_swap = gain, (hung.parent_edge[c], index)
        if best_swap is None:
            break
        chosen.discard(best_swap[0])
        chosen.add(best_swap[1])
        hung = _Rooted(size, edges, chosen)
    return sorted(chosen), hung.total


def _exact_mrct(
    size: int, edges: list[Edge], adjacency: Adjacency, incumbent: list[int], incumbent_cost: float, max_steps: int
) -> tuple[list[int], float, bool]:
    """Branch and bound for the MRCT; returns (tree, cost, proved optimal).

    Trees grow from node 0; each step takes the cheapest link leaving the grown part S and branches on
    including it (its outer node joins S) or excluding it for good, so every spanning tree is reached
    once. Lower bound: the exact tree distances within S; for each node u outside S, the tree path
    from every node of S to u leaves S through one node x, so those distances sum to at least
    min over x of (D_S(x) + |S| · d_G(x, u)), D_S(x) being x's tree distance sum within S; graph
    distances for the pairs outside S.
    """
    graph_distance = [_dijkstra(size, adjacency, source)[0] for source in range(size)]
    graph_row = [sum(row) for row in graph_distance]
    graph_total = sum(graph_row) / 2
    tolerance = 1e-9 * max(1.0, incumbent_cost)
    best = {"cost": incumbent_cost, "tree": list(incumbent)}
    grown = [False] * size
    grown[0] = True
    members = [0]
    tree_distance = [[0.0] * size for _ in range(size)]
    sum_within = [0.0] * size  # D_S(x) for x in S
    excluded = [False] * len(edges)
    chosen: list[int] = []
    steps = 0

    def still_spannable() -> bool:
        reached = grown[:]
        stack = list(members)
        count = len(members)
        while stack:
            node = stack.pop()
            for other, _, index in adjacency[node]:
                if not reached[other] and not excluded[index]:
                    reached[other] = True
                    count += 1
                    stack.append(other)
        return count == size

    def search(within: float, graph_touching: float) -> bool:
        """Explore below the current state; False once the step budget is spent."""
        nonlocal steps
        steps += 1
        if steps > max_steps:
            return False
        grown_count = len(members)
        if grown_count == size:
            if within < best["cost"] - tolerance:
                best["cost"], best["tree"] = within, list(chosen)
            return True
        bound = within + graph_total - graph_touching
        for outer in range(size):
            if not grown[outer]:
                bound += min(sum_within[node] + grown_count * graph_distance[node][outer] for node in members)
        if bound >= best["cost"] - tolerance:
            return True
        pick, pick_weight, inner, outer = -1, math.inf, -1, -1
        for node in members:
            for other, weight, index in adjacency[node]:
                if not grown[other] and not excluded[index] and weight < pick_weight:
                    pick, pick_weight, inner, outer = index, weight, node, other
        if pick < 0:
            return True
        row = tree_distance[outer]
        added = 0.0
        touching = graph_row[outer]
        for node in members:
            distance = tree_distance[inner][node] + pick_weight
            row[node] = tree_distance[node][outer] = distance
            sum_within[node] += distance
            added += distance
            touching -= graph_distance[outer][node]
        sum_within[outer] = added
        grown[outer] = True
        members.append(outer)
        chosen.append(pick)
        going = search(within + added, graph_touching + touching)
        chosen.pop()
        members.pop()
        grown[outer] = False
        for node in members:
            sum_within[node] -= row[node]
        if not going:
            return False
        excluded[pick] = True
        if still_spannable():
            going = search(within, graph_touching)
        excluded[pick] = False
        return going

    proved = search(0.0, graph_row[0])
    return sorted(best["tree"]), best["cost"], proved


def _mrct(size: int, edges: list[Edge], settings: PlanSettings) -> tuple[list[int], float, bool]:
    """The least routing cost spanning tree found, its cost, and whether it is proved optimal."""
    if size <= 1:
        return [], 0.0, True
    adjacency = _adjacency(size, edges)
    tree, _ = _best_spt(size, edges, adjacency)
    tree, cost = _improve_by_swaps(size, edges, tree, max_swaps=4 * size)
    if size > settings.exact_max_nodes:
        return tree, cost, False
    if len(edges) == size - 1:
        return tree, cost, True
    return _exact_mrct(size, edges, adjacency, tree, cost, settings.exact_max_steps)


# ---- name-level helpers -----------------------------------------------------------------------


class _Part:
    """One connected part of the enabled links, with node indices for the algorithms."""

    def __init__(self, names: list[str], keys: list[LinkKey], rtt_ms: Mapping[LinkKey, float]) -> None:
        self.names = names
        self.index = {name: position for position, name in enumerate(names)}
        self.keys = keys
        self.edges: list[Edge] = [(self.index[a], self.index[b], rtt_ms[a, b]) for a, b in keys]

    def tree_indices(self, tree: Iterable[LinkKey]) -> list[int]:
        wanted = set(tree)
        return [position for position, key in enumerate(self.keys) if key in wanted]


def _parts(names: Iterable[str], keys: Iterable[LinkKey], rtt_ms: Mapping[LinkKey, float]) -> list[_Part]:
    """Connected parts, largest first (ties: by first name), names and keys sorted."""
    key_list = sorted(set(keys))
    up = {name: name for name in names}
    up.update({name: name for key in key_list for name in key if name not in up})

    def find(name: str) -> str:
        while up[name] != name:
            up[name] = up[up[name]]
            name = up[name]
        return name

    for a, b in key_list:
        up[find(a)] = find(b)
    groups: dict[str, list[str]] = {}
    for name in sorted(up):
        groups.setdefault(find(name), []).append(name)
    links: dict[str, list[LinkKey]] = {}
    for key in key_list:
        links.setdefault(find(key[0]), []).append(key)
    parts = [_Part(group, links.get(head, []), rtt_ms) for head, group in groups.items()]
    return sorted(parts, key=lambda part: (-len(part.names), part.names[0]))


def _canonical(rtt_ms: Mapping[LinkKey, float]) -> dict[LinkKey, float]:
    return {link_key(*key): value for key, value in rtt_ms.items()}


def routing_cost(tree: Iterable[LinkKey], rtt_ms: Mapping[LinkKey, float]) -> float:
    """Sum over node pairs joined by ``tree`` of their tree path RTT (the MRCT objective)."""
    rtt = _canonical(rtt_ms)
    keys = {link_key(*key) for key in tree}
    parts = _parts((), keys, rtt)
    return sum(_routing_cost(len(part.names), part.edges, range(len(part.keys))) for part in parts)


def tree_distances(tree: Iterable[LinkKey], rtt_ms: Mapping[LinkKey, float]) -> dict[LinkKey, float]:
    """Tree path RTT for every pair of nodes that ``tree`` joins."""
    rtt = _canonical(rtt_ms)
    keys = [link_key(*key) for key in tree]
    adjacency: dict[str, list[str]] = {}
    for a, b in keys:
        adjacency.setdefault(a, []).append(b)
        adjacency.setdefault(b, []).append(a)
    result: dict[LinkKey, float] = {}
    for source in adjacency:
        distance = {source: 0.0}
        stack = [source]
        while stack:
            node = stack.pop()
            for other in adjacency[node]:
                if other not in distance:
                    distance[other] = distance[node] + rtt[link_key(node, other)]
                    stack.append(other)
        for target, value in distance.items():
            if source < target:
                result[source, target] = value
    return result


def graph_distances(rtt_ms: Mapping[LinkKey, float]) -> dict[LinkKey, float]:
    """Shortest-path RTT over all links for every connected pair of nodes."""
    rtt = _canonical(rtt_ms)
    result: dict[LinkKey, float] = {}
    for part in _parts((), rtt, rtt):
        adjacency = _adjacency(len(part.names), part.edges)
        for source, name in enumerate(part.names):
            distance, _ = _dijkstra(len(part.names), adjacency, source)
            for target in range(source + 1, len(part.names)):
                result[name, part.names[target]] = distance[target]
    return result


def shortest_path_tree(rtt_ms: Mapping[LinkKey, float], root: str) -> frozenset[LinkKey]:
    """One shortest-path tree from ``root`` over the links of ``rtt_ms`` (ties: first found)."""
    rtt = _canonical(rtt_ms)
    part = next(part for part in _parts([root], rtt, rtt) if root in part.index)
    _, parent_edge = _dijkstra(len(part.names), _adjacency(len(part.names), part.edges), part.index[root])
    return frozenset(part.keys[index] for index in parent_edge if index >= 0)


def best_shortest_path_tree(rtt_ms: Mapping[LinkKey, float]) -> frozenset[LinkKey]:
    """The shortest-path tree (per part) of least routing cost over all roots: the baseline."""
    rtt = _canonical(rtt_ms)
    tree: set[LinkKey] = set()
    for part in _parts((), rtt, rtt):
        indices, _ = _best_spt(len(part.names), part.edges, _adjacency(len(part.names), part.edges))
        tree.update(part.keys[index] for index in indices)
    return frozenset(tree)


@dataclass(frozen=True)
class Stretch:
    """Tree path RTT ÷ a reference RTT: the direct link's (linked pairs) or the shortest path's (all pairs)."""

    mean_vs_link: float
    worst_vs_link: float
    mean_vs_shortest: float
    worst_vs_shortest: float


def tree_stretch(tree: Iterable[LinkKey], rtt_ms: Mapping[LinkKey, float]) -> Stretch:
    """How much longer the tree's paths are than the direct links and than the shortest paths."""
    rtt = _canonical(rtt_ms)
    in_tree = tree_distances(tree, rtt)
    by_link = [in_tree[key] / rtt[key] for key in rtt if key in in_tree]
    shortest = graph_distances(rtt)
    by_path = [in_tree[key] / shortest[key] for key in shortest if key in in_tree]
    return Stretch(
        mean_vs_link=sum(by_link) / len(by_link) if by_link else 1.0,
        worst_vs_link=max(by_link, default=1.0),
        mean_vs_shortest=sum(by_path) / len(by_path) if by_path else 1.0,
        worst_vs_shortest=max(by_path, default=1.0),
    )


# ---- STP ----------------------------------------------------------------------------------------


def simulate_stp(
    nodes: Iterable[str],
    links: Iterable[LinkKey],
    costs: Mapping[LinkKey, int],
    priorities: Mapping[str, int],
    macs: Mapping[str, str] | None = None,
) -> StpPrediction:
    """The converged state of 802.1D STP (as Linux runs it) on point-to-point ``links``.

    Each part elects the bridge of lowest id (priority, 32768 if not given; MAC, for which the name
    stands in when ``macs`` lacks it). A bridge's root path cost is the least sum of port path costs
    (``costs``, the same at both ends) to the root; its root port is the port of least (root path cost
    through it, the neighbour's bridge id, the neighbour's port id, its own port id). Ports are
    numbered in the order of the peers' names (as the host config lists them); port id = 0x8000 |
    number. A link forwards iff it is one end's root port.
    """
    keys = sorted({link_key(*key) for key in links})
    names = sorted(set(nodes).union(*keys))
    cost = {link_key(*key): value for key, value in costs.items()}
    mac = macs or {}
    bridge_id = {name: (priorities.get(name, 32768), mac.get(name, name)) for name in names}
    peers: dict[str, list[str]] = {name: [] for name in names}
    for a, b in keys:
        peers[a].append(b)
        peers[b].append(a)
    port_id = {
        (name, peer): (PORT_PRIORITY << 10) | number
        for name in names
        for number, peer in enumerate(sorted(peers[name]), start=1)
    }
    path_cost: dict[str, int] = {}
    root_port: dict[str, str | None] = {}
    roots: set[str] = set()
    for part in _parts(names, keys, {key: float(cost[key]) for key in keys}):
        root = min(part.names, key=lambda name: bridge_id[name])
        roots.add(root)
        distance, _ = _dijkstra(len(part.names), _adjacency(len(part.names), part.edges), part.index[root])
        for position, name in enumerate(part.names):
            path_cost[name] = int(distance[position])
        root_port[root] = None
        for name in part.names:
            if name == root:
                continue
            root_port[name] = min(
                peers[name],
                key=lambda peer, name=name: (
                    path_cost[peer] + cost[link_key(name, peer)],
                    bridge_id[peer],
                    port_id[peer, name],
                    port_id[name, peer],
                ),
            )
    forwarding = frozenset(link_key(name, peer) for name, peer in root_port.items() if peer is not None)
    return StpPrediction(frozenset(roots), path_cost, root_port, forwarding)


def stp_tree(
    nodes: Iterable[str],
    links: Iterable[LinkKey],
    costs: Mapping[LinkKey, int],
    priorities: Mapping[str, int],
    macs: Mapping[str, str] | None = None,
) -> frozenset[LinkKey]:
    """The links kernel STP forwards with these settings (see ``simulate_stp``)."""
    return simulate_stp(nodes, links, costs, priorities, macs).forwarding


# ---- planning -----------------------------------------------------------------------------------


def _ms(value: float) -> str:
    return f"{value:.1f} ms"


def _clearly_better(new: float, old: float, gain_floor: float, settings: PlanSettings) -> bool:
    """``new`` beats ``old`` by more than the margin and by at least ``gain_floor`` ms."""
    return new < old * (1 - settings.margin) and old - new >= gain_floor


def _validate(nodes: list[PlanNode], links: list[PlanLink]) -> None:
    names = [node.name for node in nodes]
    if len(set(names)) != len(names):
        raise ValueError("duplicate node names")
    known = set(names)
    seen: set[LinkKey] = set()
    for link in links:
        if link.a == link.b or link.a not in known or link.b not in known:
            raise ValueError(f"link {link.a}–{link.b} must join two different known nodes")
        if link.key in seen:
            raise ValueError(f"duplicate link {link.a}–{link.b}")
        seen.add(link.key)
        if link.pinned_cost is not None and not 1 <= link.pinned_cost <= MAX_COST:
            raise ValueError(f"pinned cost of {link.a}–{link.b} must be 1..{MAX_COST}")
    for node in nodes:
        priority = node.pinned_priority
        if priority is not None and not (0 <= priority <= MAX_PRIORITY and priority % PRIORITY_STEP == 0):
            raise ValueError(f"pinned priority of {node.name} must be 0..{MAX_PRIORITY} in steps of {PRIORITY_STEP}")


def _planning_rtts(
    links: list[PlanLink], measurements: Iterable[LinkMeasurement], settings: PlanSettings
) -> tuple[dict[LinkKey, float], dict[LinkKey, str], set[LinkKey]]:
    """Planning RTT per enabled link, how it was derived, and the links no agent measured."""
    samples: dict[LinkKey, list[LinkMeasurement]] = {}
    for measurement in measurements:
        samples.setdefault(link_key(measurement.a, measurement.b), []).append(measurement)
    rtt: dict[LinkKey, float] = {}
    why: dict[LinkKey, str] = {}
    unmeasured = []
    for link in links:
        if not link.enabled:
            continue
        found = samples.get(link.key)
        if not found:
            unmeasured.append(link.key)
            continue
        measured = sum(sample.rtt_ms for sample in found) / len(found)
        loss = min(1.0, max(0.0, sum(sample.loss for sample in found) / len(found)))
        rtt[link.key] = max(measured, 1e-3) * (1 + settings.loss_penalty * loss)
        why[link.key] = f"RTT {_ms(measured)}"
        if loss > 0:
            why[link.key] += f" with {loss:.1%} loss, planned as {_ms(rtt[link.key])}"
    default = max([settings.default_rtt_ms, *rtt.values()])
    for key in unmeasured:
        rtt[key] = default
        source = "default" if default == settings.default_rtt_ms else "the slowest measured link"
        why[key] = f"not measured: planned as {_ms(default)} ({source})"
    return rtt, why, set(unmeasured)


def _spans(tree: frozenset[LinkKey], parts: list[_Part]) -> bool:
    """Whether ``tree`` is a spanning tree of every part."""
    keys = {key for part in parts for key in part.keys}
    if not tree <= keys or len(tree) != sum(len(part.names) - 1 for part in parts):
        return False
    up: dict[str, str] = {}

    def find(name: str) -> str:
        while up.get(name, name) != name:
            name = up[name]
        return name

    for a, b in tree:
        top_a, top_b = find(a), find(b)
        if top_a == top_b:
            return False
        up[top_a] = top_b
    return True


@dataclass(frozen=True)
class _Roles:
    root: str
    priority: dict[str, int]
    role: dict[str, str]
    reason: dict[str, str]
    warnings: tuple[str, ...] = ()


def _choose_roles(
    part: _Part, sums: list[float], pins: Mapping[str, PlanNode], previous: TreePlan | None, settings: PlanSettings
) -> _Roles:
    """Root, backup root and priorities of one part (≥ 2 nodes) from its nodes' tree distance sums."""
    mean = {name: sums[position] / (len(part.names) - 1) for position, name in enumerate(part.names)}
    by_centre = sorted(part.names, key=lambda name: (mean[name], name))
    previous_role = {node.name: node.role for node in previous.nodes} if previous else {}
    warnings: list[str] = []

    def sticky(candidates: list[str], role: str) -> tuple[str, str]:
        """The best centre among ``candidates``, or the previous holder of ``role`` if not clearly beaten."""
        best = candidates[0]
        held = next((name for name in candidates if previous_role.get(name) == role), None)
        if held is None or held == best or _clearly_better(mean[best], mean[held], settings.min_gain_ms, settings):
            label = "latency centre" if role == "root" else "next-best latency centre"
            return best, f"{role}: {label}, mean tree RTT to others {_ms(mean[best])}"
        return held, (
            f"{role}: kept, mean tree RTT to others {_ms(mean[held])}; {best} ({_ms(mean[best])}) "
            f"is not better by {settings.margin:.0%} and {settings.min_gain_ms:g} ms"
        )

    pinned_roots = [name for name in part.names if pins[name].pinned_root]
    pinned = {name: pins[name].pinned_priority for name in part.names if pins[name].pinned_priority is not None}
    if pinned_roots:
        root = pinned_roots[0]
        root_reason = f"root: pinned by admin, mean tree RTT to others {_ms(mean[root])}"
        if len(pinned_roots) > 1:
            warnings.append(f"several pinned roots in one part ({', '.join(pinned_roots)}): {root} is used")
    else:
        root, root_reason = sticky(by_centre, "root")
    lowest_other = min((value for name, value in pinned.items() if name != root), default=MAX_PRIORITY + 1)
    root_priority = pinned.get(root, min(settings.root_priority, lowest_other - PRIORITY_STEP))
    if root_priority < 0 or root_priority >= lowest_other:
        planned = root
        root = min(pinned, key=lambda name: (pinned[name], name))
        root_priority = pinned[root]
        root_reason = f"root: its pinned priority is the lowest, mean tree RTT to others {_ms(mean[root])}"
        warnings.append(f"pinned priority {root_priority} of {root} beats the planned root {planned}")
        if sum(1 for value in pinned.values() if value == root_priority) > 1:
            warnings.append(f"several nodes pinned at priority {root_priority}: STP elects one of them by MAC")
    elif root in pinned:
        root_reason += ", priority pinned by admin"
    priority, role, reason = {root: root_priority}, {root: "root"}, {root: root_reason}
    candidates = [name for name in by_centre if name != root and name not in pinned]
    if candidates:
        backup, reason_backup = sticky(candidates, "backup root")
        wanted = settings.backup_priority if settings.backup_priority > root_priority else root_priority + PRIORITY_STEP
        priority[backup] = min(wanted, settings.bridge_priority)
        role[backup], reason[backup] = "backup root", reason_backup
    for name in part.names:
        if name in priority:
            continue
        role[name] = "bridge"
        if name in pinned:
            priority[name] = pinned[name]
            reason[name] = f"bridge: priority pinned by admin, mean tree RTT to others {_ms(mean[name])}"
        else:
            priority[name] = settings.bridge_priority
            reason[name] = f"bridge: default priority, mean tree RTT to others {_ms(mean[name])}"
    return _Roles(root, priority, role, reason, tuple(warnings))


def _costs(
    parts: list[_Part],
    tree: frozenset[LinkKey],
    roots: Mapping[int, str],
    rtt: Mapping[LinkKey, float],
    rtt_why: Mapping[LinkKey, str],
    pinned_cost: Mapping[LinkKey, int],
    scale: float,
) -> tuple[dict[LinkKey, int], dict[LinkKey, str], int]:
    """Costs at ``scale`` per ms, their reasons, and the largest unpinned cost (may exceed 65535)."""
    cost: dict[LinkKey, int] = {}
    reason: dict[LinkKey, str] = {}
    largest = 1

    def scaled(key: LinkKey) -> int:
        return max(1, round(rtt[key] * scale))

    for number, part in enumerate(parts):
        if len(part.names) < 2:
            continue
        in_tree = [key for key in part.keys if key in tree]
        for key in in_tree:
            cost[key] = pinned_cost.get(key, scaled(key))
        edges = [(part.index[a], part.index[b], float(cost[a, b])) for a, b in in_tree]
        bound = round(max(_Rooted(len(part.names), edges, range(len(edges)), part.index[roots[number]]).depth))
        for key in part.keys:
            why = rtt_why[key]
            if key in pinned_cost:
                cost[key] = pinned_cost[key]
                reason[key] = f"{'tree link' if key in tree else 'backup'}: cost pinned by admin ({why})"
                continue
            if key in tree:
                reason[key] = f"tree link: {why} → cost {cost[key]}"
            else:
                cost[key] = bound + scaled(key)
                reason[key] = f"backup: {why} → cost {cost[key]} = tree bound {bound} + {scaled(key)}"
            largest = max(largest, cost[key])
    return cost, reason, largest


def _within_tolerance(rtt: float, encoded: float, settings: PlanSettings) -> bool:
    return abs(rtt - encoded) <= max(settings.cost_tolerance * encoded, settings.cost_tolerance_ms)


def _steady_costs(
    before: Mapping[LinkKey, LinkPlan],
    tree: frozenset[LinkKey],
    nodes: Iterable[str],
    rtt: Mapping[LinkKey, float],
    rtt_why: Mapping[LinkKey, str],
    fresh: tuple[dict[LinkKey, int], dict[LinkKey, str], dict[LinkKey, float]],
    pinned: Mapping[LinkKey, int],
    priority: Mapping[str, int],
    settings: PlanSettings,
) -> tuple[dict[LinkKey, int], dict[LinkKey, str], dict[LinkKey, float]]:
    """``fresh`` (costs, reasons, encoded RTTs), except that each link still in its role whose RTT is
    within tolerance of the one its previous cost encodes keeps that cost, if STP still builds ``tree``.

    One link that moved (a dead one, say) then changes its own cost, not every cost in the network:
    each change makes the hosts' STP recompute, and a root port that changes costs seconds of traffic.
    """
    cost, reason, encoded = (dict(part) for part in fresh)
    for key, old in before.items():
        if key not in cost or key in pinned or old.pinned or old.in_tree != (key in tree):
            continue
        if old.planning_rtt_ms is not None and _within_tolerance(rtt[key], old.planning_rtt_ms, settings):
            cost[key], encoded[key] = old.cost, old.planning_rtt_ms
            reason[key] = _kept_reason(old, rtt[key], rtt_why[key], settings)
    if cost == fresh[0] or stp_tree(nodes, rtt, cost, priority) != tree:
        return fresh
    return cost, reason, encoded


def _kept_reason(before: LinkPlan, rtt: float, why: str, settings: PlanSettings) -> str:
    """A kept cost's reason: the one it was computed with, and what is measured now if that moved."""
    reason = before.reason.split(KEPT_SINCE, 1)[0]
    if before.planning_rtt_ms is None or math.isclose(rtt, before.planning_rtt_ms, rel_tol=1e-9):
        return reason
    tolerance = f"±{settings.cost_tolerance:.0%} or ±{settings.cost_tolerance_ms:g} ms"
    return f"{reason}{KEPT_SINCE}{why}: cost kept (within {tolerance})"


KEPT_SINCE = "; now "


def plan_tree(
    nodes: Iterable[PlanNode],
    links: Iterable[PlanLink],
    measurements: Iterable[LinkMeasurement] = (),
    previous: TreePlan | None = None,
    *,
    settings: PlanSettings | None = None,
) -> TreePlan:
    """Choose the tree, root, priorities and costs for these nodes and links (see the module docstring)."""
    settings = settings or PlanSettings()
    node_list = sorted(nodes, key=lambda node: node.name)
    link_list = sorted(links, key=lambda link: link.key)
    _validate(node_list, link_list)
    pins = {node.name: node for node in node_list}
    rtt, rtt_why, unmeasured = _planning_rtts(link_list, measurements, settings)
    # A plan that guessed a link's RTT which is measured now is no decision to hold on to: the first
    # plans, made before the agents reported, would otherwise keep a tree up to 10 % worse.
    guessed = {link.key for link in previous.links if not link.measured} if previous is not None else set()
    if guessed - unmeasured:
        previous = None
    parts = _parts(pins, rtt, rtt)
    pairs = sum(len(part.names) * (len(part.names) - 1) // 2 for part in parts)

    best: set[LinkKey] = set()
    exact = True
    for part in parts:
        indices, _, proved = _mrct(len(part.names), part.edges, settings)
        best.update(part.keys[index] for index in indices)
        exact = exact and proved
    method = "exact" if exact else "heuristic"
    best_tree = frozenset(best)
    best_cost = routing_cost(best_tree, rtt)
    tree, cost_now = best_tree, best_cost
    summary = f"{method} MRCT: {_ms(best_cost)} over {pairs} pairs (mean {_ms(best_cost / max(pairs, 1))})"
    kept_tree = False
    if previous is not None and _spans(previous.tree, parts):
        previous_cost = routing_cost(previous.tree, rtt)
        if not _clearly_better(best_cost, previous_cost, settings.min_gain_ms * pairs, settings):
            tree, cost_now, kept_tree = previous.tree, previous_cost, True
            summary = (
                f"kept the previous tree: {_ms(previous_cost)} over {pairs} pairs; the {method} best, "
                f"{_ms(best_cost)}, is not better by {settings.margin:.0%} and {settings.min_gain_ms:g} ms per pair"
            )

    # roles per part
    warnings: list[str] = []
    if len(parts) > 1:
        warnings.append("the network is partitioned: " + "; ".join(", ".join(part.names) for part in parts))
    priority: dict[str, int] = {}
    role: dict[str, str] = {}
    node_reason: dict[str, str] = {}
    mean: dict[str, float | None] = {}
    roots: dict[int, str] = {}
    for number, part in enumerate(parts):
        if len(part.names) == 1:
            (name,) = part.names
            pinned_priority = pins[name].pinned_priority
            priority[name] = settings.bridge_priority if pinned_priority is None else pinned_priority
            role[name], mean[name] = "isolated", None
            node_reason[name] = "isolated: no enabled link" + (
                ", priority pinned by admin" if pinned_priority is not None else ""
            )
            continue
        hung = _Rooted(len(part.names), part.edges, part.tree_indices(tree))
        roles = _choose_roles(part, hung.sums, pins, previous, settings)
        roots[number] = roles.root
        priority.update(roles.priority)
        role.update(roles.role)
        node_reason.update(roles.reason)
        warnings.extend(roles.warnings)
        for position, name in enumerate(part.names):
            mean[name] = hung.sums[position] / (len(part.names) - 1)

    # costs: the previous ones while tree, roots, pins and RTTs hold still
    pinned_cost = {link.key: link.pinned_cost for link in link_list if link.enabled and link.pinned_cost is not None}
    before = {link.key: link for link in previous.links if link.planning_rtt_ms is not None} if previous else {}
    reuse = (
        kept_tree
        and previous is not None
        and set(roots.values()) == {node.name for node in previous.nodes if node.role == "root"}
        and set(rtt) == set(before)
        and pinned_cost == {key: link.cost for key, link in before.items() if link.pinned}
        and all(_within_tolerance(rtt[key], before[key].planning_rtt_ms, settings) for key in rtt)
    )
    if reuse and previous is not None:
        scale = previous.cost_per_ms
        cost = {key: before[key].cost for key in rtt}
        link_reason = {key: _kept_reason(before[key], rtt[key], rtt_why[key], settings) for key in rtt}
        link_rtt = {key: before[key].planning_rtt_ms for key in rtt}
    else:
        scale = settings.cost_per_ms
        for _ in range(64):
            cost, link_reason, largest = _costs(parts, tree, roots, rtt, rtt_why, pinned_cost, scale)
            if largest <= MAX_COST:
                break
            scale = float(f"{scale * MAX_COST / largest * 0.999:.3g}")
        if largest > MAX_COST:
            warnings.append("pinned costs leave no room for the backup costs: some are clamped to 65535")
            cost = {key: min(value, MAX_COST) for key, value in cost.items()}
        link_rtt = dict(rtt)
        if previous is not None and previous.cost_per_ms == scale:
            cost, link_reason, link_rtt = _steady_costs(
                before, tree, pins, rtt, rtt_why, (cost, link_reason, link_rtt), pinned_cost, priority, settings
            )

    # check against STP itself
    predicted = stp_tree(pins, rtt, cost, priority)
    if predicted != tree:
        for key in sorted(tree - predicted):
            link_reason[key] = f"planned tree link, but pinned settings make STP block it; {link_reason[key]}"
        for key in sorted(predicted - tree):
            link_reason[key] = f"planned backup, but pinned settings make STP forward it; {link_reason[key]}"
        warnings.append(
            "pinned settings make STP build another tree than planned: "
            f"{', '.join('–'.join(key) for key in sorted(predicted - tree))} forward instead of "
            f"{', '.join('–'.join(key) for key in sorted(tree - predicted))}"
        )
        tree = predicted
        cost_now = routing_cost(tree, rtt)

    link_plans = []
    for link in link_list:
        if link.key in rtt:
            link_plans.append(
                LinkPlan(
                    link.a,
                    link.b,
                    cost[link.key],
                    link.key in tree,
                    link_reason[link.key],
                    link_rtt[link.key],
                    link.key in pinned_cost,
                    link.key not in unmeasured,
                )
            )
        else:
            disabled_cost = MAX_COST if link.pinned_cost is None else link.pinned_cost
            link_plans.append(
                LinkPlan(
                    link.a,
                    link.b,
                    disabled_cost,
                    False,
                    f"disabled: never in the tree (cost {disabled_cost})",
                    pinned=link.pinned_cost is not None,
                )
            )
    node_plans = tuple(
        NodePlan(node.name, priority[node.name], role[node.name], node_reason[node.name], mean[node.name])
        for node in node_list
    )
    return TreePlan(
        root=roots.get(0),
        tree=tree,
        nodes=node_plans,
        links=tuple(link_plans),
        objective_ms=cost_now,
        pairs=pairs,
        method=method,
        cost_per_ms=scale,
        summary=summary,
        warnings=tuple(warnings),
    )
