"""Agent report parsing: strict schema, field paths in refusals, topology events."""

from __future__ import annotations

import base64
import copy
import json

import pytest

from webapp.errors import ValidationError
from webapp.reports import (
    MAX_PEERS,
    MAX_PORTS,
    MAX_PROBES,
    AgentReport,
    TopologyEvent,
    parse_report,
    topology_events,
)

ROOT_ID = "1000.0a0000000001"
OWN_ID = "8000.0a0000000002"


def key(seed: int) -> str:
    return base64.b64encode(bytes([seed]) * 32).decode()


def port(name: str, number: int, state: str = "forwarding") -> dict:
    return {
        "name": name,
        "port_id": 0x8000 | number,
        "port_no": number,
        "state": state,
        "path_cost": 100,
        "priority": 32,
        "designated_root": ROOT_ID,
        "designated_bridge": ROOT_ID,
        "designated_port": 0x8001,
        "designated_cost": 0,
    }


def peer(seed: int, endpoint: str | None = "192.0.2.1:56560") -> dict:
    return {
        "public_key": key(seed),
        "endpoint": endpoint,
        "latest_handshake": 1_767_225_500,
        "rx_bytes": 10,
        "tx_bytes": 20,
    }


def valid_report(node: str = "epsilon") -> dict:
    return {
        "schema": 1,
        "node": node,
        "agent_version": "0.1.0",
        "config_version": "0123456789abcdef",
        "timestamp": 1_767_225_600.5,
        "bridge": {
            "name": "internet",
            "stp_state": 1,
            "bridge_id": OWN_ID,
            "designated_root": ROOT_ID,
            "root_port": 1,
            "root_path_cost": 100,
            "hello_time": 1.0,
            "max_age": 6.0,
            "forward_delay": 2.0,
            "topology_change": False,
            "topology_change_detected": False,
            "topology_change_count": 3,
        },
        "ports": [port("vorke", 1), port("bob", 2, "blocking")],
        "peers": [peer(1), peer(2, None), peer(3, "[2001:db8::1]:51820")],
    }


def test_valid_report_parses_and_round_trips() -> None:
    report = parse_report(valid_report(), node_name="epsilon")
    assert isinstance(report, AgentReport)
    assert report.bridge is not None and report.bridge.root_port == 1 and not report.bridge.is_root
    assert report.port("bob").state == "blocking"
    assert report.peers is not None and report.peers[1].endpoint is None
    again = parse_report(json.loads(json.dumps(report.to_dict())), node_name="epsilon")
    assert again == report


def test_null_bridge_and_peers_are_accepted() -> None:
    payload = valid_report()
    payload.update(bridge=None, ports=[], peers=None, config_version=None)
    report = parse_report(payload, node_name="epsilon")
    assert report.bridge is None and report.ports == () and report.peers is None


def _set(payload: dict, path: tuple, value: object) -> None:
    target = payload
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value


def _delete(payload: dict, path: tuple) -> None:
    target = payload
    for step in path[:-1]:
        target = target[step]
    del target[path[-1]]


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("schema",), 3, "schema"),
        (("schema",), 1.0, "schema"),
        (("schema",), True, "schema"),
        (("node",), "Epsilon", "node"),
        (("node",), "bob", "node"),  # another node's report
        (("agent_version",), "", "agent_version"),
        (("config_version",), "XYZ", "config_version"),
        (("timestamp",), "now", "timestamp"),
        (("timestamp",), float("nan"), "timestamp"),
        (("timestamp",), 12, "timestamp"),
        (("bridge",), [], "bridge"),
        (("bridge", "bridge_id"), "8000.0A0000000002", "bridge.bridge_id"),
        (("bridge", "bridge_id"), "8000.0a:00:00:00:00:02", "bridge.bridge_id"),
        (("bridge", "designated_root"), None, "bridge.designated_root"),
        (("bridge", "root_port"), 1024, "bridge.root_port"),
        (("bridge", "root_port"), -1, "bridge.root_port"),
        (("bridge", "root_path_cost"), 2**32, "bridge.root_path_cost"),
        (("bridge", "hello_time"), True, "bridge.hello_time"),
        (("bridge", "max_age"), 1e9, "bridge.max_age"),
        (("bridge", "stp_state"), 3, "bridge.stp_state"),
        (("bridge", "topology_change"), 0, "bridge.topology_change"),
        (("bridge", "topology_change_count"), 1.5, "bridge.topology_change_count"),
        (("ports",), {}, "ports"),
        (("ports", 1, "state"), "Forwarding", "ports[1].state"),
        (("ports", 1, "state"), 3, "ports[1].state"),
        (("ports", 0, "name"), "x" * 16, "ports[0].name"),
        (("ports", 0, "name"), "bob", "ports[1].name"),  # duplicate
        (("ports", 0, "port_no"), 2, "ports[1].port_no"),  # duplicate
        (("ports", 1, "path_cost"), 0, "ports[1].path_cost"),
        (("ports", 1, "path_cost"), 65536, "ports[1].path_cost"),
        (("ports", 1, "priority"), 64, "ports[1].priority"),
        (("ports", 1, "designated_port"), "8001", "ports[1].designated_port"),
        (("ports", 1), "vorke", "ports[1]"),
        (("peers", 2, "public_key"), "not a key", "peers[2].public_key"),
        (("peers", 2, "public_key"), base64.b64encode(b"k" * 31).decode(), "peers[2].public_key"),
        (("peers", 2, "public_key"), key(1), "peers[2].public_key"),  # duplicate
        (("peers", 0, "endpoint"), "host.example:1", "peers[0].endpoint"),
        (("peers", 0, "endpoint"), "192.0.2.300:1", "peers[0].endpoint"),
        (("peers", 0, "endpoint"), "192.0.2.1:0", "peers[0].endpoint"),
        (("peers", 0, "endpoint"), "[::g]:1", "peers[0].endpoint"),
        (("peers", 0, "rx_bytes"), -1, "peers[0].rx_bytes"),
        (("peers", 0, "tx_bytes"), 2**64, "peers[0].tx_bytes"),
        (("peers", 0, "latest_handshake"), None, "peers[0].latest_handshake"),
    ],
)
def test_malformed_value_is_refused_naming_the_field(path: tuple, value: object, field: str) -> None:
    payload = valid_report()
    _set(payload, path, value)
    with pytest.raises(ValidationError) as refused:
        parse_report(payload, node_name="epsilon")
    assert refused.value.field == field
    assert field in refused.value.message


@pytest.mark.parametrize(
    ("path", "field"),
    [
        (("timestamp",), "timestamp"),
        (("bridge", "root_port"), "bridge.root_port"),
        (("ports", 0, "state"), "ports[0].state"),
        (("peers", 1, "endpoint"), "peers[1].endpoint"),
    ],
)
def test_missing_field_is_refused(path: tuple, field: str) -> None:
    payload = valid_report()
    _delete(payload, path)
    with pytest.raises(ValidationError) as refused:
        parse_report(payload, node_name="epsilon")
    assert refused.value.field == field
    assert "missing" in refused.value.message


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ((), "private_key"),
        (("bridge",), "bridge.private_key"),
        (("ports", 1), "ports[1].private_key"),
        (("peers", 0), "peers[0].private_key"),
    ],
)
def test_extra_field_is_refused(path: tuple, field: str) -> None:
    payload = valid_report()
    target = payload
    for step in path:
        target = target[step]
    target["private_key"] = "x"
    with pytest.raises(ValidationError) as refused:
        parse_report(payload, node_name="epsilon")
    assert refused.value.field == field


@pytest.mark.parametrize("payload", [None, [], "report", 1])
def test_non_object_is_refused(payload: object) -> None:
    with pytest.raises(ValidationError) as refused:
        parse_report(payload, node_name="epsilon")
    assert refused.value.field == "report"


def test_ports_without_bridge_are_refused() -> None:
    payload = valid_report()
    payload["bridge"] = None
    with pytest.raises(ValidationError) as refused:
        parse_report(payload, node_name="epsilon")
    assert refused.value.field == "ports"


def test_oversized_lists_are_refused() -> None:
    payload = valid_report()
    payload["ports"] = [port(f"p{i}", i % 1023 + 1) for i in range(MAX_PORTS + 1)]
    with pytest.raises(ValidationError) as refused:
        parse_report(payload, node_name="epsilon")
    assert refused.value.field == "ports"
    payload = valid_report()
    payload["peers"] = [peer(1)] * (MAX_PEERS + 1)
    with pytest.raises(ValidationError) as refused:
        parse_report(payload, node_name="epsilon")
    assert refused.value.field == "peers"


def test_large_valid_report_parses() -> None:
    payload = valid_report()
    payload["ports"] = [port(f"p{i}", i + 1) for i in range(MAX_PORTS - 1)]
    payload["peers"] = [
        {**peer(0), "public_key": base64.b64encode(i.to_bytes(32, "big")).decode()} for i in range(MAX_PEERS)
    ]
    report = parse_report(payload, node_name="epsilon")
    assert len(report.ports) == MAX_PORTS - 1 and len(report.peers or ()) == MAX_PEERS


def _parsed(mutate) -> AgentReport:
    payload = copy.deepcopy(valid_report())
    mutate(payload)
    return parse_report(payload, node_name="epsilon")


def test_events_for_first_and_identical_report_are_empty() -> None:
    report = parse_report(valid_report(), node_name="epsilon")
    assert topology_events(None, report) == []
    assert topology_events(report, report) == []


def test_events_name_root_root_port_and_port_state_changes() -> None:
    before = parse_report(valid_report(), node_name="epsilon")

    def reconverge(payload: dict) -> None:
        payload["bridge"]["designated_root"] = OWN_ID
        payload["bridge"]["root_port"] = 0
        payload["ports"][1]["state"] = "listening"
        payload["ports"].append(port("rho", 3, "learning"))
        del payload["ports"][0]

    after = _parsed(reconverge)
    events = topology_events(before, after)
    assert events == [
        TopologyEvent("root_changed", ROOT_ID, OWN_ID),
        TopologyEvent("root_port_changed", "vorke", None),
        TopologyEvent("port_state_changed", "blocking", "listening", port="bob"),
        TopologyEvent("port_state_changed", None, "learning", port="rho"),
        TopologyEvent("port_state_changed", "forwarding", None, port="vorke"),
    ]
    assert events[2].to_dict() == {"kind": "port_state_changed", "port": "bob", "old": "blocking", "new": "listening"}
    assert "port" not in events[0].to_dict()


def test_events_when_the_bridge_disappears() -> None:
    before = parse_report(valid_report(), node_name="epsilon")
    after = _parsed(lambda payload: payload.update(bridge=None, ports=[]))
    kinds = [(event.kind, event.port, event.new) for event in topology_events(before, after)]
    assert kinds == [
        ("root_changed", None, None),
        ("root_port_changed", None, None),
        ("port_state_changed", "bob", None),
        ("port_state_changed", "vorke", None),
    ]


# --- schema 2: probes ----------------------------------------------------------------------------


def probe(peer: str, rtt_ms: float | None = 20.13, loss: float = 0.02, state: str = "up") -> dict:
    return {"peer": peer, "rtt_ms": rtt_ms, "loss": loss, "state": state}


def valid_report_v2(node: str = "epsilon") -> dict:
    return valid_report(node) | {
        "schema": 2,
        "probes": [probe("vorke"), probe("bob", None, 1.0, "waiting"), probe("rho", 60_000, 0, "holddown")],
    }


def test_schema_2_parses_its_probes_and_round_trips() -> None:
    report = parse_report(valid_report_v2(), node_name="epsilon")
    assert report.schema == 2
    assert [(p.peer, p.rtt_ms, p.loss, p.state) for p in report.probes] == [
        ("vorke", 20.13, 0.02, "up"),
        ("bob", None, 1.0, "waiting"),
        ("rho", 60_000.0, 0.0, "holddown"),
    ]
    data = json.loads(json.dumps(report.to_dict()))
    assert data["probes"][0] == probe("vorke")
    assert parse_report(data, node_name="epsilon") == report


def test_schema_1_has_no_probes_and_round_trips_without_them() -> None:
    report = parse_report(valid_report(), node_name="epsilon")
    assert report.probes == ()
    assert "probes" not in report.to_dict()
    assert parse_report(report.to_dict(), node_name="epsilon") == report


def test_probes_belong_to_schema_2_only() -> None:
    without = valid_report_v2()
    del without["probes"]
    with pytest.raises(ValidationError) as refused:
        parse_report(without, node_name="epsilon")
    assert (refused.value.field, "missing" in refused.value.message) == ("probes", True)
    with pytest.raises(ValidationError) as refused:
        parse_report(valid_report() | {"probes": []}, node_name="epsilon")
    assert refused.value.field == "probes"


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("probes",), None, "probes"),
        (("probes",), {}, "probes"),
        (("probes", 0), "vorke", "probes[0]"),
        (("probes", 0, "peer"), "Vorke", "probes[0].peer"),
        (("probes", 0, "peer"), "x" * 16, "probes[0].peer"),
        (("probes", 1, "peer"), "vorke", "probes[1].peer"),  # duplicate
        (("probes", 0, "rtt_ms"), 0, "probes[0].rtt_ms"),
        (("probes", 0, "rtt_ms"), -1.5, "probes[0].rtt_ms"),
        (("probes", 0, "rtt_ms"), 60_000.5, "probes[0].rtt_ms"),
        (("probes", 0, "rtt_ms"), "20", "probes[0].rtt_ms"),
        (("probes", 0, "rtt_ms"), True, "probes[0].rtt_ms"),
        (("probes", 0, "rtt_ms"), float("inf"), "probes[0].rtt_ms"),
        (("probes", 0, "loss"), 1.01, "probes[0].loss"),
        (("probes", 0, "loss"), -0.01, "probes[0].loss"),
        (("probes", 0, "loss"), None, "probes[0].loss"),
        (("probes", 0, "loss"), False, "probes[0].loss"),
        (("probes", 0, "state"), "dead", "probes[0].state"),
        (("probes", 0, "state"), "UP", "probes[0].state"),
        (("probes", 2, "state"), None, "probes[2].state"),
    ],
)
def test_malformed_probe_is_refused_naming_the_field(path: tuple, value: object, field: str) -> None:
    payload = valid_report_v2()
    _set(payload, path, value)
    with pytest.raises(ValidationError) as refused:
        parse_report(payload, node_name="epsilon")
    assert refused.value.field == field
    assert field in refused.value.message


@pytest.mark.parametrize("name", ["peer", "rtt_ms", "loss", "state"])
def test_probe_fields_are_exact(name: str) -> None:
    missing = valid_report_v2()
    del missing["probes"][1][name]
    with pytest.raises(ValidationError) as refused:
        parse_report(missing, node_name="epsilon")
    assert refused.value.field == f"probes[1].{name}"
    extra = valid_report_v2()
    extra["probes"][1]["jitter_ms"] = 1.0
    with pytest.raises(ValidationError) as refused:
        parse_report(extra, node_name="epsilon")
    assert refused.value.field == "probes[1].jitter_ms"


def test_at_most_1024_probes() -> None:
    payload = valid_report_v2()
    payload["probes"] = [probe(f"p{index}") for index in range(MAX_PROBES)]
    assert len(parse_report(payload, node_name="epsilon").probes) == MAX_PROBES
    payload["probes"].append(probe("one-more"))
    with pytest.raises(ValidationError) as refused:
        parse_report(payload, node_name="epsilon")
    assert refused.value.field == "probes"
