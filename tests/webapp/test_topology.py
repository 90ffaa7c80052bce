"""Topology from desired links and reports: root, link states, stale nodes, partitions, tree paths."""

from __future__ import annotations

import base64
import itertools
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from webapp.errors import NotFoundError
from webapp.reports import AgentReport, BridgeStatus, PeerStatus, PortStatus
from webapp.topology import (
    HANDSHAKE_FRESH_SECONDS,
    LinkInfo,
    NodeInfo,
    ReceivedReport,
    compute_topology,
    tree_path,
)

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
INTERVAL = 10


def bridge_id(name: str, priority: int = 0x8000) -> str:
    return f"{priority:04x}.0a{sum(name.encode()) % 2**40:010x}"


def key_of(name: str) -> str:
    return base64.b64encode(name.encode().ljust(32, b"\0")).decode()


def report(
    node: str,
    root: str,
    ports: dict[str, str],
    *,
    priority: int = 0x8000,
    handshakes: dict[str, int] | None = None,
    timestamp: float | None = None,
    wireguard_readable: bool = True,
) -> AgentReport:
    """A report of ``node`` seeing ``root`` as root, with ``ports`` {peer: state}.

    ``handshakes`` {peer: seconds before the report}; by default every port's peer shook hands 5 s ago.
    """
    timestamp = NOW.timestamp() if timestamp is None else timestamp
    handshakes = {peer: 5 for peer in ports} if handshakes is None else handshakes
    own_id = bridge_id(node, priority)
    root_id = bridge_id(root, 0x1000) if root != node else own_id
    # Both ends of a live link name the same designated bridge (here: the lower-named end's).
    port_list = tuple(
        PortStatus(peer, 0x8000 | n, n, state, 100, 32, root_id, bridge_id(min(node, peer)), 0x8000 | n, 0)
        for n, (peer, state) in enumerate(ports.items(), start=1)
    )
    peers = tuple(
        PeerStatus(key_of(peer), None, int(timestamp - age) if age is not None else 0, 1, 1)
        for peer, age in handshakes.items()
    )
    return AgentReport(
        schema=1,
        node=node,
        agent_version="0.1.0",
        config_version=None,
        timestamp=timestamp,
        bridge=BridgeStatus(
            "internet",
            1,
            own_id,
            root_id,
            0 if root == node else 1,
            0 if root == node else 100,
            1.0,
            6.0,
            2.0,
            False,
            False,
            0,
        ),
        ports=port_list,
        peers=peers if wireguard_readable else None,
    )


def received(rep: AgentReport, age: float = 1) -> ReceivedReport:
    return ReceivedReport(rep, NOW - timedelta(seconds=age))


NODES = [NodeInfo(name, key_of(name)) for name in ("rho", "epsilon", "vorke")]
LINKS = [LinkInfo("rho", "epsilon", 4, 100), LinkInfo("rho", "vorke", 5, 100), LinkInfo("epsilon", "vorke", 1, 100)]


def triangle(**overrides: ReceivedReport | None) -> dict[str, ReceivedReport]:
    """rho is root (priority 0x1000); vorke blocks its port to epsilon."""
    reports = {
        "rho": received(report("rho", "rho", {"epsilon": "forwarding", "vorke": "forwarding"}, priority=0x1000)),
        "epsilon": received(report("epsilon", "rho", {"rho": "forwarding", "vorke": "forwarding"})),
        "vorke": received(report("vorke", "rho", {"rho": "forwarding", "epsilon": "blocking"})),
    }
    reports.update(overrides)
    return {name: rep for name, rep in reports.items() if rep is not None}


def compute(reports: dict[str, ReceivedReport], nodes=NODES, links=LINKS):
    return compute_topology(nodes, links, reports, report_interval=INTERVAL, now=NOW)


def states(topology) -> dict[tuple[str, str], tuple[str, str | None]]:
    return {(link.a, link.b): (link.state, link.blocked_at) for link in topology.links}


def test_converged_triangle() -> None:
    topology = compute(triangle())
    assert topology.root == "rho" and topology.root_bridge_id == bridge_id("rho", 0x1000)
    assert states(topology) == {
        ("rho", "epsilon"): ("forwarding", None),
        ("rho", "vorke"): ("forwarding", None),
        ("epsilon", "vorke"): ("blocking", "vorke"),
    }
    assert topology.stale == () and topology.disagreements == ()
    assert [node.is_root for node in topology.nodes] == [True, False, False]
    assert tree_path(topology, "epsilon", "vorke") == ["epsilon", "rho", "vorke"]
    assert tree_path(topology, "vorke", "vorke") == ["vorke"]


def test_to_dict_is_the_api_shape() -> None:
    data = json.loads(json.dumps(compute(triangle()).to_dict()))
    assert set(data) == {"root", "root_bridge_id", "nodes", "links", "stale", "disagreements"}
    assert data["links"][0] == {"a": "rho", "b": "epsilon", "vni": 4, "cost": 100, "state": "forwarding"}
    assert data["links"][2]["blocked_at"] == "vorke"
    vorke = data["nodes"][2]
    assert vorke["name"] == "vorke" and vorke["stale"] is False and vorke["root"] is False
    assert vorke["bridge"]["root_port"] == 1
    assert [(port["name"], port["state"]) for port in vorke["ports"]] == [
        ("rho", "forwarding"),
        ("epsilon", "blocking"),
    ]
    assert vorke["last_report_at"] == (NOW - timedelta(seconds=1)).isoformat()


@pytest.mark.parametrize(("age", "stale"), [(29.9, False), (30, False), (30.1, True), (3600, True)])
def test_stale_after_three_intervals(age: float, stale: bool) -> None:
    reports = triangle(vorke=received(report("vorke", "rho", {"rho": "forwarding", "epsilon": "blocking"}), age))
    topology = compute(reports)
    assert ("vorke" in topology.stale) is stale
    assert topology.nodes[2].stale is stale


def test_stale_end_makes_its_links_unknown_and_never_reported_node_is_stale() -> None:
    reports = triangle(vorke=None)
    topology = compute(reports)
    assert topology.stale == ("vorke",)
    assert states(topology)[("rho", "vorke")] == ("unknown", None)
    assert states(topology)[("epsilon", "vorke")] == ("unknown", None)
    assert "vorke" in topology.links[1].reason
    assert topology.nodes[2].bridge is None and topology.nodes[2].last_report_at is None
    assert tree_path(topology, "epsilon", "vorke") == []


def test_link_with_no_fresh_end_is_unknown() -> None:
    topology = compute(triangle(rho=None, epsilon=None, vorke=None))
    assert {state for state, _ in states(topology).values()} == {"unknown"}
    assert topology.root is None and topology.root_bridge_id is None
    assert topology.stale == ("rho", "epsilon", "vorke")


def test_stale_end_still_shows_blocking_seen_by_the_fresh_end() -> None:
    reports = triangle(epsilon=received(report("epsilon", "rho", {"rho": "forwarding", "vorke": "forwarding"}), 100))
    assert states(compute(reports))[("epsilon", "vorke")] == ("blocking", "vorke")


@pytest.mark.parametrize(
    ("vorke_report", "reason_part"),
    [
        (report("vorke", "rho", {"rho": "forwarding"}), "no port epsilon"),
        (report("vorke", "rho", {"rho": "forwarding", "epsilon": "disabled"}), "disabled"),
        (
            report(
                "vorke",
                "rho",
                {"rho": "forwarding", "epsilon": "blocking"},
                handshakes={"rho": 5, "epsilon": HANDSHAKE_FRESH_SECONDS + 1},
            ),
            "handshake",
        ),
        (
            report(
                "vorke", "rho", {"rho": "forwarding", "epsilon": "blocking"}, handshakes={"rho": 5, "epsilon": None}
            ),
            "never completed",
        ),
        (
            report("vorke", "rho", {"rho": "forwarding", "epsilon": "blocking"}, handshakes={"rho": 5}),
            "no WireGuard peer",
        ),
        (report("vorke", "rho", {"rho": "forwarding", "epsilon": "blocking"}, wireguard_readable=False), "cannot read"),
    ],
)
def test_down_links(vorke_report: AgentReport, reason_part: str) -> None:
    topology = compute(triangle(vorke=received(vorke_report)))
    link = topology.links[2]
    assert (link.state, link.blocked_at) == ("down", None)
    assert reason_part in link.reason


def test_handshake_age_is_measured_on_the_host_clock() -> None:
    """A host whose clock is an hour off still counts a 5 s old handshake as fresh."""
    skewed = report("vorke", "rho", {"rho": "forwarding", "epsilon": "blocking"}, timestamp=NOW.timestamp() - 3600)
    assert states(compute(triangle(vorke=received(skewed))))[("epsilon", "vorke")] == ("blocking", "vorke")


def test_handshake_is_not_checked_without_a_public_key() -> None:
    nodes = [NodeInfo("rho"), NodeInfo("epsilon"), NodeInfo("vorke")]
    no_peers = report("vorke", "rho", {"rho": "forwarding", "epsilon": "blocking"}, handshakes={})
    assert states(compute(triangle(vorke=received(no_peers)), nodes=nodes))[("epsilon", "vorke")][0] == "blocking"


def test_disabled_link_is_down() -> None:
    links = [*LINKS[:2], LinkInfo("epsilon", "vorke", 1, 100, enabled=False)]
    link = compute(triangle(), links=links).links[2]
    assert (link.state, link.reason) == ("down", "link disabled")


def test_learning_port_counts_as_blocking_at_its_end() -> None:
    reports = triangle(epsilon=received(report("epsilon", "rho", {"rho": "learning", "vorke": "forwarding"})))
    link = compute(reports).links[0]
    assert (link.state, link.blocked_at) == ("blocking", "epsilon")
    assert "learning" in link.reason


def test_blocking_wins_over_listening_for_the_blame() -> None:
    reports = triangle(epsilon=received(report("epsilon", "rho", {"rho": "forwarding", "vorke": "listening"})))
    assert states(compute(reports))[("epsilon", "vorke")] == ("blocking", "vorke")


def test_partition_is_a_disagreement_and_majority_names_the_root() -> None:
    nodes = [*NODES, NodeInfo("bob", key_of("bob")), NodeInfo("pi0", key_of("pi0"))]
    links = [*LINKS, LinkInfo("bob", "pi0", 9, 100)]
    reports = triangle(
        bob=received(report("bob", "bob", {"pi0": "forwarding"}, priority=0x1000)),
        pi0=received(report("pi0", "bob", {"bob": "forwarding"})),
    )
    topology = compute(reports, nodes=nodes, links=links)
    assert topology.root == "rho"
    assert [(group.root, group.nodes) for group in topology.disagreements] == [
        ("rho", ("epsilon", "rho", "vorke")),
        ("bob", ("bob", "pi0")),
    ]
    assert tree_path(topology, "pi0", "rho") == []
    assert tree_path(topology, "pi0", "bob") == ["pi0", "bob"]


def test_root_tie_goes_to_the_lowest_bridge_id() -> None:
    nodes = [NodeInfo("rho"), NodeInfo("bob")]
    reports = {
        "rho": received(report("rho", "rho", {}, priority=0x1000)),
        "bob": received(report("bob", "bob", {}, priority=0x1000)),
    }
    topology = compute(reports, nodes=nodes, links=[])
    assert topology.root_bridge_id == min(bridge_id("rho", 0x1000), bridge_id("bob", 0x1000))
    assert len(topology.disagreements) == 2


def test_root_that_is_no_known_node() -> None:
    reports = triangle(rho=None)  # epsilon and vorke name rho's bridge id, but rho never reported
    topology = compute(reports)
    assert topology.root is None and topology.root_bridge_id == bridge_id("rho", 0x1000)


def test_root_is_found_from_a_stale_reports_bridge_id() -> None:
    reports = triangle(rho=received(report("rho", "rho", {"epsilon": "forwarding"}, priority=0x1000), 3600))
    topology = compute(reports)
    assert topology.root == "rho" and "rho" in topology.stale


def test_tree_path_refuses_unknown_nodes() -> None:
    topology = compute(triangle())
    with pytest.raises(NotFoundError) as refused:
        tree_path(topology, "rho", "nowhere")
    assert refused.value.field == "b"


def test_tree_path_on_a_chain() -> None:
    names = [f"n{i}" for i in range(50)]
    nodes = [NodeInfo(name) for name in names]
    links = [LinkInfo(a, b, i + 1, 100) for i, (a, b) in enumerate(itertools.pairwise(names))]
    reports = {}
    for i, name in enumerate(names):
        neighbours = {names[j]: "forwarding" for j in (i - 1, i + 1) if 0 <= j < len(names)}
        reports[name] = received(report(name, "n0", neighbours, priority=0x1000 if i == 0 else 0x8000))
    topology = compute(reports, nodes=nodes, links=links)
    assert tree_path(topology, "n49", "n0") == names[::-1]


def test_a_silently_dead_link_is_down_though_both_ends_forward() -> None:
    """After a silent cut each end makes itself the wire's designated bridge and forwards."""
    rho = received(report("rho", "rho", {"epsilon": "forwarding", "vorke": "forwarding"}))
    epsilon = report("epsilon", "rho", {"rho": "forwarding", "vorke": "forwarding"})
    vorke = report("vorke", "rho", {"rho": "forwarding", "epsilon": "forwarding"})

    def naming_itself(own: AgentReport, peer: str) -> AgentReport:
        ports = tuple(
            replace(port, designated_bridge=bridge_id(own.node)) if port.name == peer else port for port in own.ports
        )
        return replace(own, ports=ports)

    reports = {"rho": rho, "epsilon": received(epsilon), "vorke": received(vorke)}
    before = compute_topology(NODES, LINKS, reports, report_interval=INTERVAL, now=NOW)
    assert {(link.a, link.b): link.state for link in before.links}[("epsilon", "vorke")] == "forwarding"
    reports |= {
        "epsilon": received(naming_itself(epsilon, "vorke")),
        "vorke": received(naming_itself(vorke, "epsilon")),
    }
    after = compute_topology(NODES, LINKS, reports, report_interval=INTERVAL, now=NOW)
    dead = {(link.a, link.b): link for link in after.links}[("epsilon", "vorke")]
    assert dead.state == "down"
    assert "designated bridge" in dead.reason
