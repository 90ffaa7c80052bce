"""The agent's parsers, formatting and backoff, without a kernel (no root needed)."""

from __future__ import annotations

import base64
import io
import json
import socket
import urllib.error

from bootstrap import agent
from webapp.reports import parse_report

KEY_A = bytes(range(32))
KEY_B = bytes(range(32, 64))
PRIVATE = bytes([7]) * 32

UAPI_ANSWER = (
    f"private_key={PRIVATE.hex()}\nlisten_port=51820\n"
    f"public_key={KEY_A.hex()}\nendpoint=198.51.100.2:51820\nlast_handshake_time_sec=1767225600\n"
    "last_handshake_time_nsec=5\ntx_bytes=1000\nrx_bytes=2000\npersistent_keepalive_interval=25\n"
    "allowed_ip=10.88.88.2/32\nprotocol_version=1\n"
    f"public_key={KEY_B.hex()}\nlast_handshake_time_sec=0\nlast_handshake_time_nsec=0\ntx_bytes=0\nrx_bytes=0\n"
    "persistent_keepalive_interval=0\nallowed_ip=10.88.88.3/32\nprotocol_version=1\n"
    "errno=0\n\n"
)


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def test_uapi_answer_parses_and_drops_the_private_key() -> None:
    peers = agent.parse_uapi(UAPI_ANSWER)
    assert peers == [
        {
            "public_key": b64(KEY_A),
            "endpoint": "198.51.100.2:51820",
            "latest_handshake": 1767225600,
            "rx_bytes": 2000,
            "tx_bytes": 1000,
        },
        {"public_key": b64(KEY_B), "endpoint": None, "latest_handshake": 0, "rx_bytes": 0, "tx_bytes": 0},
    ]
    assert PRIVATE.hex() not in json.dumps(peers) and b64(PRIVATE) not in json.dumps(peers)


def test_uapi_error_raises() -> None:
    try:
        agent.parse_uapi("errno=19\n\n")
    except OSError as error:
        assert "errno=19" in str(error)
    else:
        raise AssertionError("errno=19 was accepted")


def test_wg_dump_parses_and_skips_the_interface_line() -> None:
    dump = (
        f"{b64(PRIVATE)}\t{b64(KEY_B)}\t51820\toff\n"
        f"{b64(KEY_A)}\t(none)\t[2001:db8::1]:51820\t10.88.88.2/32\t1767225600\t2000\t1000\t25\n"
        f"{b64(KEY_B)}\t(none)\t(none)\t10.88.88.3/32\t0\t0\t0\toff\n"
    )
    assert agent.parse_wg_dump(dump) == [
        {
            "public_key": b64(KEY_A),
            "endpoint": "[2001:db8::1]:51820",
            "latest_handshake": 1767225600,
            "rx_bytes": 2000,
            "tx_bytes": 1000,
        },
        {"public_key": b64(KEY_B), "endpoint": None, "latest_handshake": 0, "rx_bytes": 0, "tx_bytes": 0},
    ]


def test_bridge_id_priority_is_put_back_in_network_order() -> None:
    decoded = {"prio": socket.ntohs(0x8000), "addr": "A6:2B:08:0A:86:54"}  # what pyroute2 hands us
    assert agent.format_bridge_id(decoded) == "8000.a62b080a8654"
    assert agent.format_bridge_id({"prio": socket.ntohs(0x1000), "addr": "02:00:00:00:00:01"}) == "1000.020000000001"
    assert agent.format_bridge_id(None) is None


def test_backoff_grows_is_capped_and_jittered() -> None:
    for failures, ceiling in ((1, 10), (2, 20), (3, 40), (6, 300), (60, 300)):
        delays = [agent.backoff_delay(failures, 10, 300) for _ in range(200)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(set(delays)) > 1


def test_topology_change_counter_counts_rising_edges() -> None:
    counter = agent.TopologyChangeCounter()
    assert [counter.observe(flag) for flag in (False, True, True, False, True, False)] == [0, 1, 1, 1, 2, 2]


def test_error_descriptions_are_one_line() -> None:
    refused = urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))
    assert agent.describe_error(refused) == "cannot reach the app: Connection refused"
    assert agent.describe_error(agent.ReportRejected(401, "agent token revoked")) == (
        "app answered HTTP 401: agent token revoked"
    )
    assert "\n" not in agent.describe_error(ValueError("two\nlines"))


def test_http_error_detail_is_the_apps_error_sentence() -> None:
    body = io.BytesIO(json.dumps({"error": "token\nrevoked", "field": "token"}).encode())
    error = urllib.error.HTTPError("http://127.0.0.1/x", 401, "Unauthorized", {}, body)  # type: ignore[arg-type]
    assert agent._error_detail(error) == "token revoked"


class FakeBridges(agent.BridgeReader):
    def read(self, bridge_name: str):
        bridge = {
            "name": bridge_name,
            "stp_state": 1,
            "bridge_id": "8000.020000000002",
            "designated_root": "1000.020000000001",
            "root_port": 1,
            "root_path_cost": 100,
            "hello_time": 1.0,
            "max_age": 6.0,
            "forward_delay": 2.0,
            "topology_change": True,
            "topology_change_detected": False,
        }
        port = {
            "name": "rho",
            "port_id": 0x8001,
            "port_no": 1,
            "state": "forwarding",
            "path_cost": 100,
            "priority": 32,
            "designated_root": "1000.020000000001",
            "designated_bridge": "1000.020000000001",
            "designated_port": 0x8002,
            "designated_cost": 0,
        }
        return bridge, [port]


class FakeWireGuard(agent.WireGuardReader):
    def read(self):
        return agent.parse_uapi(UAPI_ANSWER)


def test_collected_report_passes_the_apps_validation() -> None:
    config = {"node": "epsilon", "bridge_name": "internet", "version": "0123456789abcdef"}
    report = agent.collect_report(config, bridges=FakeBridges(), wireguard=FakeWireGuard())
    parsed = parse_report(json.loads(json.dumps(report)), node_name="epsilon")
    assert parsed.bridge is not None and parsed.bridge.topology_change_count == 1
    assert parsed.config_version == "0123456789abcdef" and parsed.agent_version == agent.AGENT_VERSION
    assert parsed.peers is not None and len(parsed.peers) == 2


def test_report_without_bridge_or_wireguard_passes_validation(tmp_path) -> None:
    config = {"node": "epsilon", "bridge_name": "nosuchbridge"}
    wireguard = agent.WireGuardReader(interface="nosuchwg", socket_dir=str(tmp_path))
    report = agent.collect_report(config, wireguard=wireguard)
    assert report["bridge"] is None and report["ports"] == [] and report["peers"] is None
    assert parse_report(report, node_name="epsilon").config_version is None


def test_a_malformed_token_is_refused_without_echoing_it(tmp_path, caplog) -> None:
    secret = "abc\r\nX-Injected: 1"
    token = tmp_path / "agent.token"
    token.write_text(secret)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"node": "epsilon", "app_url": "http://127.0.0.1:9", "report_interval": 1}))
    wireguard = agent.WireGuardReader(socket_dir=str(tmp_path))
    runner = agent.Agent(str(config), str(token), max_backoff=1, wireguard=wireguard)
    with caplog.at_level("INFO", logger="privnet-agent"):
        delay = runner.cycle()
    assert 0.5 <= delay <= 1.0 and runner.failures == 1
    assert "holds characters no token has" in caplog.text
    assert "X-Injected" not in caplog.text and "abc" not in caplog.text
