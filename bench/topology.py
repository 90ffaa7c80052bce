"""Topology benchmark: does computing the map grow no faster than the network?

Builds a synthetic network of N nodes and 3·N links (a ring plus random chords), a converged
spanning tree (node n0 is root; each non-tree link blocked at its deeper end) and one fresh
report per node, then times ``compute_topology``, ``Topology.to_dict`` (the API body),
``tree_path`` between two far nodes, and re-parsing every node's stored report with
``parse_report`` (what an endpoint does if it keeps reports as JSON). Prints medians for 10/30
and 1,000/3,000 and their ratio (the network grows 100×: linear cost means a ratio near 100), and
for 3,000/9,000 against 1,000/3,000 (3×). Per-item cost rises from 10 to 1,000 nodes because the
working set leaves the CPU caches (a bare dict-lookup loop does the same here), not because any
step scans all reports per link; the 3× column shows it.

    .venv/bin/python bench/topology.py
"""

from __future__ import annotations

import base64
import random
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from webapp.reports import AgentReport, BridgeStatus, PeerStatus, PortStatus, parse_report
from webapp.topology import LinkInfo, NodeInfo, ReceivedReport, compute_topology, tree_path

SIZES = (10, 1000, 3000)
LINKS_PER_NODE = 3
REPEATS = 15
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def bridge_id(index: int, priority: int) -> str:
    return f"{priority:04x}.02{index:010x}"


def public_key(index: int) -> str:
    return base64.b64encode(index.to_bytes(32, "big")).decode()


def synthetic_network(size: int, seed: int = 1) -> tuple[list[NodeInfo], list[LinkInfo], dict[str, ReceivedReport]]:
    """Nodes, links and converged reports for a random connected graph of ``size`` nodes."""
    rng = random.Random(seed)
    names = [f"n{index}" for index in range(size)]
    pairs: set[tuple[int, int]] = {(index, (index + 1) % size) for index in range(size)}
    while len(pairs) < min(LINKS_PER_NODE * size, size * (size - 1) // 2):
        a, b = rng.sample(range(size), 2)
        if (b, a) not in pairs:
            pairs.add((a, b))
    edges = sorted(pairs)
    neighbours: dict[int, list[int]] = {index: [] for index in range(size)}
    for a, b in edges:
        neighbours[a].append(b)
        neighbours[b].append(a)
    depth = {0: 0}
    parent: dict[int, int] = {}
    queue = deque([0])
    while queue:
        current = queue.popleft()
        for other in neighbours[current]:
            if other not in depth:
                depth[other], parent[other] = depth[current] + 1, current
                queue.append(other)
    tree = {(child, up) for child, up in parent.items()} | {(up, child) for child, up in parent.items()}

    root_id = bridge_id(0, 0x1000)
    timestamp = NOW.timestamp()
    reports = {}
    for index, name in enumerate(names):
        own_id = bridge_id(index, 0x1000 if index == 0 else 0x8000)
        ports, peers = [], []
        for number, other in enumerate(neighbours[index], start=1):
            blocked = (index, other) not in tree and (depth[index], index) > (depth[other], other)
            state = "blocking" if blocked else "forwarding"
            ports.append(PortStatus(names[other], 0x8000 | number, number, state, 100, 32, root_id, own_id, 0x8001, 0))
            peers.append(
                PeerStatus(public_key(other), f"198.51.100.{other % 250 + 1}:56560", int(timestamp) - 30, 1, 1)
            )
        root_port = 0 if index == 0 else neighbours[index].index(parent[index]) + 1
        bridge = BridgeStatus("internet", 1, own_id, root_id, root_port, 100 * depth[index], 1.0, 6.0, 2.0,
                              False, False, 0)  # fmt: skip
        report = AgentReport(1, name, "0.1.0", None, timestamp, bridge, tuple(ports), tuple(peers))
        reports[name] = ReceivedReport(report, NOW - timedelta(seconds=2))
    nodes = [NodeInfo(name, public_key(index)) for index, name in enumerate(names)]
    links = [LinkInfo(names[a], names[b], number, 100) for number, (a, b) in enumerate(edges, start=1)]
    return nodes, links, reports


def median_ms(action: Callable[[], object]) -> float:
    action()  # warm-up
    samples = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def measure(size: int) -> dict[str, float]:
    nodes, links, reports = synthetic_network(size)
    stored = {name: received.report.to_dict() for name, received in reports.items()}

    def compute():
        return compute_topology(nodes, links, reports, report_interval=10, now=NOW)

    topology = compute()
    blocked = sum(link.state == "blocking" for link in topology.links)
    assert topology.root == "n0" and not topology.stale and blocked == len(links) - (size - 1), "synthetic net wrong"
    far = max(reports, key=lambda name: reports[name].report.bridge.root_path_cost)
    assert tree_path(topology, far, "n0")[-1] == "n0"
    return {
        "compute_topology": median_ms(compute),
        "to_dict (API body)": median_ms(topology.to_dict),
        "tree_path (farthest)": median_ms(lambda: tree_path(topology, far, "n0")),
        "parse all reports": median_ms(lambda: [parse_report(data, node_name=name) for name, data in stored.items()]),
    }


def main() -> None:
    results = {size: measure(size) for size in SIZES}
    small, large, larger = SIZES
    for step in ("compute_topology", "to_dict (API body)"):
        for size in SIZES:
            results[size].setdefault("build (compute+to_dict)", 0.0)
            results[size]["build (compute+to_dict)"] += results[size][step]
    print(f"topology: median of {REPEATS} runs, ms; nodes/links {small}/{small * LINKS_PER_NODE}, "
          f"{large}/{large * LINKS_PER_NODE}, {larger}/{larger * LINKS_PER_NODE}")  # fmt: skip
    header = (
        f"{'step':<25}{small:>9}{large:>10}{larger:>10}"
        f"{f'{large}/{small}':>11}{'÷100':>7}{f'{larger}/{large}':>11}{'÷3':>7}"
    )
    print(header)
    print("-" * len(header))
    for step in results[small]:
        a, b, c = (results[size][step] for size in SIZES)
        grow, grow_more = large / small, larger / large
        print(
            f"{step:<25}{a:>9.3f}{b:>10.3f}{c:>10.3f}"
            f"{b / a:>11.1f}{b / a / grow:>7.2f}{c / b:>11.2f}{c / b / grow_more:>7.2f}"
        )


if __name__ == "__main__":
    main()
