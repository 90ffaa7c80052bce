"""Issue 5 end to end: the agents the setup scripts start report to the real app, in the triangle lab.

One lab for the module: the app's report interval is set to 2 s before the hosts enroll (the
triangle's STP timers are the kernel's floors: hello 1 s, max age 6 s, forward delay 2 s). Tests
run in file order: the read-only check first, then cutting the underlay, then stopping an agent.
What the API says is compared with what each host's kernel says (/sys/class/net/*/brport/state);
the timeline of topology changes is read with ``monitoring.timeline`` from the lab app's database.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from lab.core import Lab
from lab.netns import namespace_pids
from lab.testing import require_lab
from tests.lab.conftest import REPORT_INTERVAL
from webapp import create_app, monitoring
from webapp.config import TestingConfig
from webapp.extensions import db

pytestmark = [pytest.mark.lab, require_lab()]

STALE_INTERVALS = 3  # webapp.topology: no report for 3 intervals = stale
AGENT_PATH = "/etc/privnet/agent.py"
FORWARDING, BLOCKING = 3, 4
# max age 6 s + 2 x forward delay 2 s = 10 s for the kernel after a silent cut; a report more.
RECONVERGE_TIMEOUT = 40.0

T = TypeVar("T")

# --- what the kernel says, what the API says ----------------------------------------------------


def kernel_port_states(lab: Lab) -> dict[tuple[str, str], int]:
    """``{(host, port): state}`` for every bridge port of every host (3 forwarding, 4 blocking)."""
    script = 'for f in /sys/class/net/*/brport/state; do [ -e "$f" ] && echo "$f $(cat "$f")"; done; true'
    states = {}
    for host in lab.host_names:
        for line in lab.run(host, ["sh", "-c", script]).stdout.splitlines():
            path, state = line.split()
            states[(host, path.split("/")[4])] = int(state)
    return states


def kernel_root(lab: Lab) -> str:
    """The host whose bridge id is the root id all bridges agree on (AssertionError otherwise)."""
    script = "cd /sys/class/net/internet/bridge && cat bridge_id root_id"
    ids = {host: lab.run(host, ["sh", "-c", script]).stdout.split() for host in lab.host_names}
    roots = {root for _, root in ids.values()}
    assert len(roots) == 1, ids
    (root,) = [host for host, (own, _) in ids.items() if own in roots]
    return root


def kernel_blocked(states: dict[tuple[str, str], int]) -> list[tuple[frozenset[str], str]]:
    """``[(link, blocking host)]`` from port states: a port is named after the peer it leads to."""
    return [(frozenset((host, port)), host) for (host, port), state in states.items() if state == BLOCKING]


def topology(lab: Lab) -> dict[str, Any]:
    return lab.api().call("GET", "/api/v1/topology")


def links_by_pair(topo: dict[str, Any]) -> dict[frozenset[str], dict[str, Any]]:
    return {frozenset((link["a"], link["b"])): link for link in topo["links"]}


def api_port_states(topo: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(node["name"], port["name"]): port["state"] for node in topo["nodes"] for port in node["ports"]}


def kernel_as_api(states: dict[tuple[str, str], int]) -> dict[tuple[str, str], str]:
    names = {0: "disabled", 1: "listening", 2: "learning", 3: "forwarding", 4: "blocking"}
    return {key: names[state] for key, state in states.items()}


def wait_for(probe: Callable[[], T | None], what: str, timeout: float, interval: float = 0.25) -> tuple[T, float]:
    """``(value, seconds)`` once ``probe()`` returns something other than None; AssertionError on timeout."""
    start = time.monotonic()
    last: Any = None
    while time.monotonic() - start < timeout:
        value = probe()
        if value is not None:
            return value, time.monotonic() - start
        last = getattr(probe, "last", None)
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last seen: {last}")


def agent_pids(lab: Lab, host: str) -> list[int]:
    """Processes in the host's namespace that run the installed agent."""
    pids = []
    for pid in namespace_pids(lab.netns(host)):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if AGENT_PATH.encode() in argv:
            pids.append(pid)
    return pids


def timeline_since(lab: Lab, since: datetime) -> list[tuple[str, str, str | None, str | None, str | None]]:
    """``(node, kind, port, old, new)`` of the topology changes the app recorded at or after ``since``, oldest first.

    Read with ``monitoring.timeline`` from the lab app's SQLite database (there is no HTTP endpoint for it).
    """
    app = create_app(TestingConfig, {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{lab.state_dir / 'app.sqlite3'}"})
    with app.app_context():
        changes = [change for change in monitoring.timeline(limit=500) if change.at >= since]
        events = [(change.node.name, change.kind, change.port, change.old, change.new) for change in reversed(changes)]
        db.session.remove()
        db.engine.dispose()
    return events


# --- the tests -----------------------------------------------------------------------------------


def converged(lab: Lab) -> Callable[[], tuple[dict, dict] | None]:
    """A probe: ``(topology, kernel states)`` once every agent reported a settled tree that matches the kernel."""

    def probe() -> tuple[dict, dict] | None:
        states = kernel_port_states(lab)
        topo = topology(lab)
        probe.last = {"kernel": states, "api": topo["links"], "stale": topo["stale"], "root": topo["root"]}
        if topo["stale"] or topo["root"] is None or topo["disagreements"]:
            return None
        if any(state not in (FORWARDING, BLOCKING) for state in states.values()) or len(states) != 6:
            return None
        if api_port_states(topo) != kernel_as_api(states):
            return None  # an agent has not reported the latest change yet
        return topo, states

    probe.last = None
    return probe


def test_agents_report_and_the_api_blocks_the_link_the_kernel_blocks(triangle: Lab, record_property) -> None:
    started = time.monotonic()
    for host in triangle.host_names:  # started by /etc/privnet/up, in the background (no systemd in the lab)
        assert len(agent_pids(triangle, host)) == 1, host
    (topo, states), _ = wait_for(converged(triangle), "every agent to report the converged tree", timeout=60)
    record_property("seconds_until_api_matches_kernel", round(time.monotonic() - started, 1))

    assert sorted(node["name"] for node in topo["nodes"]) == ["a", "b", "c"]
    assert topo["stale"] == [] and not any(node["stale"] for node in topo["nodes"])
    assert topo["root"] == kernel_root(triangle)
    assert [node["name"] for node in topo["nodes"] if node["root"]] == [topo["root"]]
    ((blocked_link, blocked_at),) = kernel_blocked(states)  # the kernel blocks exactly one port
    links = links_by_pair(topo)
    assert [pair for pair, link in links.items() if link["state"] == "blocking"] == [blocked_link]
    assert links[blocked_link]["blocked_at"] == blocked_at
    assert "reason" not in links[blocked_link]  # blocking for real, not still listening or learning
    assert all(link["state"] == "forwarding" for pair, link in links.items() if pair != blocked_link), links
    for node in topo["nodes"]:
        assert node["bridge"]["stp_state"] == 1 and node["bridge"]["hello_time"] == 1.0
        assert (node["bridge"]["root_port"] == 0) == node["root"]
        assert node["config_version"]


def test_cutting_the_underlay_of_a_forwarding_link_opens_the_blocked_one(triangle: Lab, record_property) -> None:
    (topo, states), _ = wait_for(converged(triangle), "a converged tree before the cut", timeout=60)
    ((blocked_link, blocked_at),) = kernel_blocked(states)
    links = links_by_pair(topo)
    cut = min((pair for pair, link in links.items() if link["state"] == "forwarding"), key=sorted)
    a, b = sorted(cut)
    (other,) = blocked_link - {blocked_at}

    # Every report already carries the settled tree (converged() checked): no change is recorded
    # between here and the cut. The app runs on this machine's clock.
    since = datetime.now(UTC)
    triangle.cut(a, b)
    cut_at = time.monotonic()
    try:
        # The kernel: the formerly blocked port forwards once max age and 2 x forward delay passed.
        def kernel_reopened() -> bool | None:
            states = kernel_port_states(triangle)
            kernel_reopened.last = states
            ends = [states[(blocked_at, other)], states[(other, blocked_at)]]
            return True if ends == [FORWARDING, FORWARDING] else None

        kernel_reopened.last = None
        _, kernel_seconds = wait_for(kernel_reopened, "the kernel to open the blocked link", RECONVERGE_TIMEOUT)

        # The API: the new tree, as the agents report it.
        def api_shows_new_tree() -> dict | None:
            topo = topology(triangle)
            links = links_by_pair(topo)
            api_shows_new_tree.last = {"links": topo["links"], "stale": topo["stale"]}
            if topo["stale"] or links[blocked_link]["state"] != "forwarding" or links[cut]["state"] == "forwarding":
                return None
            return topo

        api_shows_new_tree.last = None
        topo, _ = wait_for(api_shows_new_tree, "the API to show the new tree", RECONVERGE_TIMEOUT)
        api_seconds = time.monotonic() - cut_at
        record_property("kernel_reconverged_seconds_after_cut", round(kernel_seconds, 1))
        record_property("api_new_tree_seconds_after_cut", round(api_seconds, 1))
        print(f"\ncut {a}-{b}: {blocked_at}-{other} opened, kernel {kernel_seconds:.1f} s, API {api_seconds:.1f} s")

        links = links_by_pair(topo)
        assert links[blocked_link]["state"] == "forwarding"
        assert links[cut]["state"] == "down", links[cut]  # a dead wire, though both its ports forward
        assert "blocked_at" not in links[blocked_link]
        assert topo["root"] == kernel_root(triangle) and not topo["disagreements"]
        # The ends of the cut link both claim it (each its designated bridge): no hellos cross it.
        bridge_ids = {node["name"]: node["bridge"]["bridge_id"] for node in topo["nodes"]}
        ports = {(node["name"], port["name"]): port for node in topo["nodes"] for port in node["ports"]}
        assert ports[(a, b)]["designated_bridge"] == bridge_ids[a]
        assert ports[(b, a)]["designated_bridge"] == bridge_ids[b]

        # The timeline recorded the blocked port opening, step by step.
        events = timeline_since(triangle, since)
        opened = [(old, new) for node, kind, port, old, new in events if (node, kind, port) == (
            blocked_at, "port_state_changed", other)]  # fmt: skip
        assert opened and opened[0][0] == "blocking" and opened[-1][1] == "forwarding", events
        assert any(kind == "root_port_changed" for _, kind, *_ in events), events
    finally:
        triangle.restore(a, b)


def test_a_stopped_agent_turns_its_node_stale_within_three_intervals(triangle: Lab, record_property) -> None:
    host = "b"
    wait_for(lambda: True if not topology(triangle)["stale"] else None, "every node fresh", timeout=30)
    (pid,) = agent_pids(triangle, host)
    triangle.run(host, ["kill", "-KILL", str(pid)])  # no goodbye: the agent just stops reporting

    def stale() -> list[str] | None:
        names = topology(triangle)["stale"]
        stale.last = names
        return names or None

    stale.last = None
    names, seconds = wait_for(stale, f"{host} to turn stale", timeout=STALE_INTERVALS * REPORT_INTERVAL * 2 + 5)
    record_property("stale_seconds_after_agent_killed", round(seconds, 1))
    print(f"\n{host}'s agent killed: stale after {seconds:.1f} s (3 intervals = {STALE_INTERVALS * REPORT_INTERVAL} s)")
    assert names == [host]
    # Its last report came at most one interval (+10 % jitter) before the kill: stale within 3 intervals of it.
    assert seconds <= STALE_INTERVALS * REPORT_INTERVAL + 2, seconds

    # What a boot without systemd does: /etc/privnet/up starts the agent again, and the node is fresh.
    output = triangle.run(host, ["/etc/privnet/up"]).stdout
    assert "privnet: agent: started in the background" in output, output
    assert len(agent_pids(triangle, host)) == 1
    wait_for(lambda: True if not topology(triangle)["stale"] else None, f"{host} fresh again", timeout=15)
