"""Latency and failover benchmark on the seed's world (``lab/topologies/blog.toml``), in one run.

The lab brings up the blog's five hosts behind the WAN emulator (its RTT matrix: epsilon–vorke
20 ms, bob–rho 10 ms, the Atlantic 75–95 ms), enrolled as a user would. Then, twice:

1. **seed settings**: what the seed's author ran — every link cost 100, default bridge priorities,
   the kernel's default STP timers (hello 2 s, max age 20 s, forward delay 15 s) and no dead-peer
   detection (``tree_mode`` "seed", ``fast_failover`` off);
2. **privnet**: the latency-aware tree planned from the agents' probes, the kernel's minimum timers
   (1 s, 6 s, 2 s) and the agents' dead-peer detection.

For each it measures, once STP has settled: every pair's overlay RTT (median of 5 pings between
their 10.99.99.x addresses) against the direct RTT between the two hosts' public addresses (the
baseline, measured in the same run), the stretch (overlay ÷ direct), and for each tree link
between the four well-connected hosts the failover outage: the link is cut in the WAN emulator
while its two ends ping each other 10 times a second, and the outage is the longest silence
between two answers.
pi0's single link is not cut (nothing can route around it).

    sudo .venv/bin/python bench/latency.py        # about 10 minutes; BENCH_LATENCY_CUTS=0 skips failover

Goals (issue 7): epsilon↔vorke within 1.3× its direct RTT, mean stretch under 1.1, failover ≤ 7 s.
"""

from __future__ import annotations

import itertools
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lab.core import Lab  # noqa: E402
from lab.stp import Pinger, ping_ms, root_host, tree_links, wait_settled  # noqa: E402
from lab.testing import unique_prefix  # noqa: E402

CUTS = int(os.environ.get("BENCH_LATENCY_CUTS", 3))  # tree links cut per setting
PING_INTERVAL = 0.1
SEED = {"tree_mode": "seed", "fast_failover": False, "stp_hello_time": 2, "stp_max_age": 20, "stp_forward_delay": 15}
PRIVNET = {"tree_mode": "latency", "fast_failover": True, "stp_hello_time": 1, "stp_max_age": 6,
           "stp_forward_delay": 2}  # fmt: skip
CORE = ("bob", "epsilon", "rho", "vorke")


@dataclass
class Setting:
    """What one setting measured."""

    label: str
    overlay_ms: dict[tuple[str, str], float] = field(default_factory=dict)
    tree: list[tuple[str, str]] = field(default_factory=list)
    root: str | None = None
    outages: dict[tuple[str, str], float] = field(default_factory=dict)


def direct_rtts(lab: Lab) -> dict[tuple[str, str], float]:
    """Each pair's RTT between public addresses (a NATed host pings out: nothing reaches it in)."""
    hosts = lab.state["hosts"]
    rtts = {}
    for a, b in itertools.combinations(sorted(hosts), 2):
        source, target = (b, a) if hosts[b]["nat"] and not hosts[a]["nat"] else (a, b)
        rtt = ping_ms(lab, source, hosts[target]["public_ip"])
        if rtt is not None:
            rtts[(a, b)] = rtt
    return rtts


def overlay_rtts(lab: Lab) -> dict[tuple[str, str], float]:
    hosts = lab.state["hosts"]
    rtts = {}
    for a, b in itertools.combinations(sorted(hosts), 2):
        rtt = ping_ms(lab, a, hosts[b]["overlay_ip"], reachable_within=20)
        if rtt is not None:
            rtts[(a, b)] = rtt
    return rtts


def outage_seconds(lab: Lab, a: str, b: str, recovery_timeout: float) -> float:
    """Cut a–b while a pings b 10 times a second; the longest silence between answers, seconds."""
    address = lab.state["hosts"][b]["overlay_ip"]
    pinger = Pinger(lab, a, address, PING_INTERVAL)
    try:
        time.sleep(2)
        lab.cut(a, b)
        cut_at = time.monotonic()
        # Wait for the outage to start and end: five pings answered in a row.
        time.sleep(3)
        deadline = cut_at + recovery_timeout
        while time.monotonic() < deadline:
            time.sleep(3)
            answered = lab.run(a, ["ping", "-n", "-q", "-c", "5", "-i", "0.2", "-W", "1", address], check=False)
            if answered.returncode == 0:
                break
        time.sleep(1)
    finally:
        _sent, _received, outage = pinger.stop()
        lab.restore(a, b)
    return outage


def plan_steady(lab: Lab, quiet_seconds: float, timeout: float = 120.0) -> None:
    """Wait until the plan's costs and priorities stay the same for ``quiet_seconds`` (at once in seed mode)."""
    deadline, last, since = time.monotonic() + timeout, None, time.monotonic()
    while time.monotonic() < deadline:
        plan = lab.api().call("GET", "/api/v1/plan")["plan"]
        settings = plan and ([(link["a"], link["b"], link["cost"]) for link in plan["links"]],
                             [(node["name"], node["priority"]) for node in plan["nodes"]])  # fmt: skip
        if settings != last:
            last, since = settings, time.monotonic()
        elif time.monotonic() - since >= quiet_seconds or settings is None:
            return
        time.sleep(1)
    raise TimeoutError("the plan kept changing")


def measure(lab: Lab, label: str, settings: dict, quiet_seconds: float) -> Setting:
    print(f"-- {label}: {settings}", flush=True)
    lab.api().call("PATCH", "/api/v1/network", settings)
    plan_steady(lab, quiet_seconds=3 * 2)  # three report intervals
    snapshot = wait_settled(lab, quiet_seconds)
    result = Setting(label, overlay_rtts(lab), tree_links(snapshot), root_host(lab, snapshot))
    print(f"   root {result.root}, tree {', '.join('–'.join(link) for link in result.tree)}", flush=True)
    recovery = 3 * (settings["stp_max_age"] + 2 * settings["stp_forward_delay"])
    for a, b in [link for link in result.tree if set(link) <= set(CORE)][:CUTS]:
        result.outages[(a, b)] = outage_seconds(lab, a, b, recovery)
        print(f"   cut {a}–{b}: {result.outages[(a, b)]:.1f} s without answers", flush=True)
        plan_steady(lab, quiet_seconds=3 * 2)
        wait_settled(lab, quiet_seconds)
    return result


def stretch(overlay: dict, direct: dict) -> dict[tuple[str, str], float]:
    return {pair: overlay[pair] / direct[pair] for pair in overlay if direct.get(pair)}


def print_report(direct: dict, results: list[Setting]) -> None:
    seed, privnet = results
    seed_stretch, privnet_stretch = stretch(seed.overlay_ms, direct), stretch(privnet.overlay_ms, direct)
    print("\n| pair | direct ms | seed overlay ms | seed stretch | privnet overlay ms | privnet stretch |")
    print("|---|---|---|---|---|---|")
    for pair in sorted(direct):
        cells = [f"{direct[pair]:.1f}"]
        for result, ratios in ((seed, seed_stretch), (privnet, privnet_stretch)):
            overlay = result.overlay_ms.get(pair)
            cells += [f"{overlay:.1f}" if overlay else "-", f"{ratios[pair]:.2f}" if pair in ratios else "-"]
        print(f"| {pair[0]}–{pair[1]} | " + " | ".join(cells) + " |")
    for result, ratios in ((seed, seed_stretch), (privnet, privnet_stretch)):
        if ratios:
            worst = max(ratios, key=ratios.get)
            print(f"\n{result.label}: root {result.root}; mean stretch {statistics.mean(ratios.values()):.2f}, "
                  f"worst {ratios[worst]:.2f} ({'–'.join(worst)}); epsilon–vorke "
                  f"{ratios.get(('epsilon', 'vorke'), float('nan')):.2f}")  # fmt: skip
    print("\n| tree link cut | outage, seed settings (s) | outage, privnet (s) |")
    print("|---|---|---|")
    for link in sorted(set(seed.outages) | set(privnet.outages)):
        cells = [f"{result.outages[link]:.1f}" if link in result.outages else "(not in its tree)" for result in results]
        print(f"| {'–'.join(link)} | " + " | ".join(cells) + " |")
    for result in results:
        if result.outages:
            values = list(result.outages.values())
            print(f"{result.label}: failover mean {statistics.mean(values):.1f} s, worst {max(values):.1f} s")


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("bench/latency.py needs root (the lab)")
    lab = Lab(unique_prefix("bl"))
    try:
        lab.up("blog", enroll=False)
        lab.api().call("PATCH", "/api/v1/network", {"report_interval": 2})
        lab.enroll()
        lab.wait_for_overlay(timeout=120)
        direct = direct_rtts(lab)
        seed = measure(lab, "seed settings", SEED, quiet_seconds=5)
        privnet = measure(lab, "privnet", PRIVNET, quiet_seconds=8)
        print_report(direct, [seed, privnet])
    finally:
        lab.down()


if __name__ == "__main__":
    main()
