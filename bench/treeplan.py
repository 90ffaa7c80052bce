"""Tree planning benchmark: how long does choosing the tree take, and how good is the tree?

First the seed's world (issue 7): epsilon↔vorke over the tree and the mean stretch with the seed's
settings (all costs 100, default priorities, bob's MAC the lowest), with the best shortest-path tree
from a European root (cost ∝ RTT), and with privnet's plan. Stretch = tree path RTT ÷ direct link
RTT (linked pairs), and ÷ shortest path RTT over all links (all pairs).

Then ``plan_tree`` on networks of 5 (the seed's), 10, 50 and 200 nodes: random points on a plane,
RTT growing with distance, each node linked to its 3 nearest plus one random link per 2 nodes.
Prints the median planning time and its ratio to the 5-node case, the method (exact up to 12
nodes, heuristic beyond), and the objective (sum of pairwise tree RTTs) against the best
shortest-path tree over all roots (Wong's 2-approximation, the heuristic's start). At 10 nodes it
also runs the heuristic alone, to show how far it is from the proved optimum.

    .venv/bin/python bench/treeplan.py
"""

from __future__ import annotations

import math
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from webapp.treeplan import (
    LinkKey,
    LinkMeasurement,
    PlanLink,
    PlanNode,
    PlanSettings,
    TreePlan,
    best_shortest_path_tree,
    link_key,
    plan_tree,
    routing_cost,
    shortest_path_tree,
    stp_tree,
    tree_distances,
    tree_stretch,
)

SEED_RTT = {
    link_key(a, b): rtt
    for (a, b), rtt in {
        ("epsilon", "vorke"): 20.0,
        ("epsilon", "bob"): 75.0,
        ("vorke", "bob"): 85.0,
        ("epsilon", "rho"): 85.0,
        ("vorke", "rho"): 95.0,
        ("bob", "rho"): 10.0,
        ("rho", "pi0"): 15.0,
    }.items()
}
SEED_MACS = {"bob": "16500a8e632a", "rho": "3a3bee4c8584", "vorke": "42031e2df8ce", "epsilon": "5299c5e0d97b"}
SIZES = (5, 10, 50, 200)
NEAREST = 3


def synthetic_network(size: int, seed: int = 1) -> dict[LinkKey, float]:
    """A connected network on a 100 × 50 plane: RTT 1 ms + distance × 1.0–1.4, k-nearest links."""
    rng = random.Random(seed)
    points = [(rng.uniform(0, 100), rng.uniform(0, 50)) for _ in range(size)]
    pairs: set[tuple[int, int]] = set()
    for index in range(size):
        others = sorted(
            (other for other in range(size) if other != index),
            key=lambda other: math.dist(points[index], points[other]),
        )
        pairs.update(tuple(sorted((index, other))) for other in others[:NEAREST])
        if index:  # keep it connected: link to the nearest earlier node
            pairs.add((min(range(index), key=lambda other: math.dist(points[index], points[other])), index))
    for _ in range(size // 2):
        pairs.add(tuple(sorted(rng.sample(range(size), 2))))
    return {
        link_key(f"n{a:03d}", f"n{b:03d}"): round(1 + math.dist(points[a], points[b]) * rng.uniform(1.0, 1.4), 1)
        for a, b in sorted(pairs)
    }


def plan(rtt: dict[LinkKey, float], settings: PlanSettings | None = None) -> TreePlan:
    names = sorted({name for key in rtt for name in key})
    return plan_tree(
        [PlanNode(name) for name in names],
        [PlanLink(a, b) for a, b in rtt],
        [LinkMeasurement(a, b, value) for (a, b), value in rtt.items()],
        settings=settings,
    )


def timed(rtt: dict[LinkKey, float], repeats: int, settings: PlanSettings | None = None) -> tuple[TreePlan, float]:
    """The plan and the median planning time in ms."""
    times = []
    result = plan(rtt, settings)
    for _ in range(repeats):
        started = time.perf_counter()
        plan(rtt, settings)
        times.append(time.perf_counter() - started)
    return result, statistics.median(times) * 1000


def seed_world() -> None:
    names = sorted({name for key in SEED_RTT for name in key})
    ev = link_key("epsilon", "vorke")
    seed_tree = stp_tree(names, SEED_RTT, dict.fromkeys(SEED_RTT, 100), dict.fromkeys(names, 32768), SEED_MACS)
    europe = min(
        (shortest_path_tree(SEED_RTT, root) for root in ("bob", "rho", "pi0")),
        key=lambda tree: routing_cost(tree, SEED_RTT),
    )
    privnet = plan(SEED_RTT)
    print("Seed's world (RTTs of issue 7; vorke–rho 95 ms)")
    print(f"{'tree':<34}{'eps↔vorke ms':>13}{'× wire':>8}{'mean stretch':>14}{'(vs shortest)':>15}{'sum ms':>8}")
    rows = (
        ("seed: costs 100, bob lowest MAC", seed_tree),
        ("best SPT rooted in Europe", europe),
        (f"privnet ({privnet.method}, root {privnet.root})", privnet.tree),
    )
    for label, tree in rows:
        stretch = tree_stretch(tree, SEED_RTT)
        us_canada = tree_distances(tree, SEED_RTT)[ev]
        print(
            f"{label:<34}{us_canada:>13.1f}{us_canada / SEED_RTT[ev]:>8.2f}{stretch.mean_vs_link:>14.3f}"
            f"{stretch.mean_vs_shortest:>15.3f}{routing_cost(tree, SEED_RTT):>8.0f}"
        )
    print("privnet's settings:")
    for node in privnet.nodes:
        print(f"  {node.name:<8} priority {node.priority:>5}  {node.reason}")
    for link in privnet.links:
        print(f"  {link.a + '–' + link.b:<14} cost {link.cost:>5}  {link.reason}")


def sizes() -> None:
    print("\nplan_tree: median ms; objective = sum of pairwise tree RTTs; SPT = best shortest-path tree")
    header = ("nodes", 6), ("links", 7), ("method", 11), ("plan ms", 10), ("× 5 nodes", 11), ("objective", 12)
    print("".join(f"{title:>{width}}" for title, width in header) + f"{'best SPT':>11}{'÷ SPT':>8}")
    baseline = None
    for size in SIZES:
        rtt = SEED_RTT if size == 5 else synthetic_network(size)
        repeats = 50 if size <= 10 else 5 if size <= 50 else 3
        result, elapsed = timed(rtt, repeats)
        baseline = baseline or elapsed
        spt = routing_cost(best_shortest_path_tree(rtt), rtt)
        print(
            f"{size:>6}{len(rtt):>7}{result.method:>11}{elapsed:>10.2f}{elapsed / baseline:>11.1f}"
            f"{result.objective_ms:>12.0f}{spt:>11.0f}{result.objective_ms / spt:>8.3f}"
        )
    rtt = synthetic_network(10)
    exact = plan(rtt)
    heuristic, elapsed = timed(rtt, 50, PlanSettings(exact_max_nodes=0))
    print(
        f"10 nodes, heuristic alone: {elapsed:.2f} ms, objective {heuristic.objective_ms:.0f} = "
        f"{heuristic.objective_ms / exact.objective_ms:.3f} × the {exact.method} optimum"
    )


def main() -> None:
    seed_world()
    sizes()


if __name__ == "__main__":
    main()
