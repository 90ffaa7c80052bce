"""The topology page without JavaScript, and ``flask topology show``.

``triangle`` (also used by the browser test) stores, through ``monitoring.record_report``, the
reports of three nodes: alpha is the root, bravo blocks its port to charlie, charlie is stale.
"""

from __future__ import annotations

import re
import zlib
from datetime import UTC, datetime, timedelta

import pytest

from tests.factories import make_link, make_node
from webapp.models import Node
from webapp.reports import AgentReport, BridgeStatus, PortStatus
from webapp.topology import LinkInfo, NodeInfo, ReceivedReport, compute_topology
from webapp.topology_map.text import render_node_text, render_topology_text

ROOT_PRIORITY = 0x1000
NAMES = ("alpha", "bravo", "charlie")


def bridge_id(name: str, priority: int = 0x8000) -> str:
    """A stable bridge id for ``name``: priority, then a locally administered MAC."""
    return f"{priority:04x}.02{zlib.crc32(name.encode()):08x}00"


def report_payload(node: Node, root: str, ports: dict[str, str], peers: dict[str, str], timestamp: float) -> dict:
    """Schema 1 report of ``node`` seeing ``root`` as root; ``ports`` {peer: state}, ``peers`` {peer: key}."""
    own = bridge_id(node.name, ROOT_PRIORITY if node.name == root else 0x8000)
    root_id = bridge_id(root, ROOT_PRIORITY)
    root_port = 0 if node.name == root else 1 + list(ports).index(root)
    return {
        "schema": 1,
        "node": node.name,
        "agent_version": "0.1.0",
        "config_version": None,
        "timestamp": timestamp,
        "bridge": {
            "name": "internet",
            "stp_state": 1,
            "bridge_id": own,
            "designated_root": root_id,
            "root_port": root_port,
            "root_path_cost": 0 if node.name == root else 100,
            "hello_time": 1.0,
            "max_age": 6.0,
            "forward_delay": 2.0,
            "topology_change": False,
            "topology_change_detected": False,
            "topology_change_count": 2,
        },
        "ports": [
            {
                "name": peer,
                "port_id": 0x8000 | number,
                "port_no": number,
                "state": state,
                "path_cost": 100,
                "priority": 32,
                "designated_root": root_id,
                "designated_bridge": root_id if peer == root else own,
                "designated_port": 0x8000 | number,
                "designated_cost": 0 if root in (peer, node.name) else 100,
            }
            for number, (peer, state) in enumerate(ports.items(), start=1)
        ],
        "peers": [
            {
                "public_key": key,
                "endpoint": None,
                "latest_handshake": int(timestamp) - 5,
                "rx_bytes": 1000,
                "tx_bytes": 2000,
            }
            for key in peers.values()
        ],
    }


def triangle(db) -> dict[str, Node]:
    """alpha, bravo, charlie, all linked; alpha is root, bravo blocks towards charlie, charlie is stale."""
    from webapp import monitoring
    from webapp.models import utcnow

    nodes = {name: make_node(db, name=name, endpoint=f"192.0.2.{n}:56560") for n, name in enumerate(NAMES, 1)}
    for a, b in (("alpha", "bravo"), ("alpha", "charlie"), ("bravo", "charlie")):
        make_link(db, a, b, cost=100)  # pinned: the reports below show ports at cost 100
    keys = {name: node.public_key for name, node in nodes.items()}
    now = utcnow()
    hour_ago = now - timedelta(hours=1)
    for name, ports, received in (
        ("alpha", {"bravo": "forwarding", "charlie": "forwarding"}, now),
        ("bravo", {"alpha": "forwarding", "charlie": "blocking"}, now),
        ("charlie", {"alpha": "forwarding", "bravo": "forwarding"}, hour_ago),
    ):
        payload = report_payload(
            nodes[name], "alpha", ports, {peer: keys[peer] for peer in ports}, received.timestamp()
        )
        monitoring.record_report(nodes[name], payload, now=received)
    return nodes


def cells(html: str, table_id: str) -> list[list[str]]:
    """The text of each body row's cells of the table ``table_id``."""
    table = re.search(rf'<table id="{table_id}">.*?<tbody>(.*?)</tbody>', html, re.S).group(1)
    return [
        [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)
    ]


def test_the_map_needs_a_session(client):
    response = client.get("/topology/")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_the_map_is_in_the_nav(auth):
    html = auth.get("/nodes/").text
    assert '<a href="/topology/"' in html
    assert 'href="/topology/" aria-current="page"' in auth.get("/topology/").text


def test_the_page_shows_link_states_without_javascript(auth, db):
    triangle(db)
    html = auth.get("/topology/").text
    assert cells(html, "topology-links") == [
        ["alpha – bravo", "1", "100", "forwarding", "", ""],
        ["alpha – charlie", "2", "100", "unknown", "", "no fresh report from charlie"],
        ["bravo – charlie", "3", "100", "blocking", "bravo", ""],
    ]
    nodes = cells(html, "topology-nodes")
    assert [row[:2] for row in nodes] == [["alpha", "root, fresh"], ["bravo", "fresh"], ["charlie", "stale"]]
    assert nodes[0][3] == bridge_id("alpha", ROOT_PRIORITY)
    assert re.search(r'id="topology-root">\s*alpha\s*<', html)
    assert re.search(r'id="topology-stale">\s*charlie\s*<', html)
    assert re.search(r'id="topology-partition"[^>]*hidden', html)
    # Each bridge's showstp table, server-rendered.
    assert "designated bridge" in html and f"{bridge_id('bravo')}" in html
    # The graph's assets and the API it polls.
    assert 'data-api="/api/v1/topology"' in html
    assert "/static/vendor/cytoscape/cytoscape.min.js" in html and "/static/topology.js" in html


def test_the_page_of_an_empty_network(auth, db):
    html = auth.get("/topology/").text
    assert cells(html, "topology-links") == [["No links yet."]]
    assert cells(html, "topology-nodes") == [["No nodes yet."]]
    assert re.search(r'id="topology-root">\s*unknown\s*<', html)


def test_the_vendored_graph_library_is_served_with_its_licence(auth):
    script = auth.get("/static/vendor/cytoscape/cytoscape.min.js")
    assert script.status_code == 200 and len(script.data) > 100_000
    licence = auth.get("/static/vendor/cytoscape/LICENSE")
    assert licence.status_code == 200 and b"Cytoscape Consortium" in licence.data
    script.close()
    licence.close()


def test_cli_topology_show(app, db):
    triangle(db)
    result = app.test_cli_runner().invoke(args=["topology", "show"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.startswith(f"root: alpha (bridge id {bridge_id('alpha', ROOT_PRIORITY)})\n")
    assert re.search(r"alpha - bravo\s+vni 1\s+cost 100\s+forwarding\n", out)
    assert re.search(r"alpha - charlie\s+vni 2\s+cost 100\s+unknown \(no fresh report from charlie\)\n", out)
    assert re.search(r"bravo - charlie\s+vni 3\s+cost 100\s+blocking at bravo\n", out)
    assert re.search(r"stale nodes: charlie \(last report \S+ \S+ UTC, 36\d\d s ago\)\n", out)
    assert "disagreements: none\n" in out
    assert "== alpha (root, fresh, last report" in out
    assert "== charlie (stale, last report" in out
    # bravo's showstp: the root port leads to alpha, the port to charlie blocks.
    bravo = out[out.index("== bravo") : out.index("== charlie")]
    assert re.search(r" root port\s+1 \(alpha\)\s+path cost\s+100\n", bravo)
    assert re.search(r"\ncharlie \(2\)\n port id\s+8002\s+state\s+blocking\n", bravo)


# --- the text rendering on its own ---------------------------------------------------------------

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def _report(node: str, root: str, ports: dict[str, str], *, flags: bool = False) -> AgentReport:
    own, root_id = bridge_id(node), bridge_id(root, ROOT_PRIORITY if root != node else 0x8000)
    return AgentReport(
        schema=1,
        node=node,
        agent_version="0.1.0",
        config_version=None,
        timestamp=NOW.timestamp(),
        bridge=BridgeStatus("internet", 1, own, root_id, 1, 100, 1.0, 6.0, 2.0, flags, flags, 3),
        ports=tuple(
            PortStatus(peer, 0x8000 | n, n, state, 100, 32, root_id, own, 0x8000 | n, 0)
            for n, (peer, state) in enumerate(ports.items(), start=1)
        ),
        peers=None,
    )


def test_text_shows_partitions_down_links_and_nodes_without_reports():
    reports = {
        "east": ReceivedReport(_report("east", "east", {"west": "disabled"}, flags=True), NOW),
        "west": ReceivedReport(_report("west", "west", {"east": "forwarding"}), NOW),
    }
    topology = compute_topology(
        [NodeInfo("east"), NodeInfo("west"), NodeInfo("north")],
        [LinkInfo("east", "west", 7, 250), LinkInfo("east", "north", 8, 100)],
        reports,
        report_interval=10,
        now=NOW,
    )
    text = render_topology_text(topology)
    assert "east - west   vni 7        cost 250    down (port west on east is disabled)" in text
    assert "stale nodes: north (never reported)" in text
    assert "disagreements: partition: east see root east" in text and "west see root west" in text
    assert "== north (stale, never reported)\n" in text
    assert " flags" in text and "TOPOLOGY_CHANGE TOPOLOGY_CHANGE_DETECTED" in text


@pytest.mark.parametrize("bridge", [True, False])
def test_node_text_without_ports_or_bridge(bridge):
    report = _report("solo", "solo", {})
    if not bridge:
        report = AgentReport(1, "solo", "0.1.0", None, NOW.timestamp(), None, (), None)
    topology = compute_topology(
        [NodeInfo("solo")], [], {"solo": ReceivedReport(report, NOW)}, report_interval=10, now=NOW
    )
    text = render_node_text(topology.nodes[0], NOW + timedelta(seconds=4))
    assert text.startswith("== solo (")
    assert "last report 2026-01-01 12:00:00 UTC, 4 s ago" in text
    assert ("(no ports)" in text) is bridge
    assert ("no bridge: the host reports none" in text) is not bridge
