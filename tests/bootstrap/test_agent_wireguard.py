"""The agent against wireguard-go: its peers equal `wg show wg0 dump`, through the UAPI socket.

Two namespaces (`ag<hex>a`, `ag<hex>b`), each a host with its private `/run/wireguard` (lab's
`run_in_host`), run wireguard-go `wg0`; alpha knows bravo's endpoint, bravo learns alpha's from
the handshake (a node behind NAT).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.netns import add_namespace, delete_namespace, run_in_host
from tests.conftest import have_command, require
from webapp.reports import parse_report

pytestmark = pytest.mark.lab

AGENT = Path(__file__).resolve().parents[2] / "bootstrap" / "agent.py"


@dataclass
class WgHost:
    node: str
    netns: str
    state_dir: Path
    address: str
    underlay_ip: str
    private_key: str = ""
    public_key: str = ""

    def run(self, *argv: str, **kwargs) -> str:
        return run_in_host(self.netns, self.state_dir, list(argv), **kwargs).stdout


def _wg(*argv: str, stdin: str | None = None) -> str:
    return subprocess.run(["wg", *argv], input=stdin, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def wireguard_pair(tmp_path: Path) -> Iterator[tuple[WgHost, WgHost]]:
    require(os.geteuid() == 0, "needs root for network namespaces and mounts")
    require(all(have_command(tool) for tool in ("ip", "wg", "wireguard-go")), "needs ip, wg and wireguard-go")
    prefix = f"ag{secrets.token_hex(3)}"
    alpha = WgHost("alpha", f"{prefix}a", tmp_path / "alpha", "198.51.100.1", "10.88.88.1")
    bravo = WgHost("bravo", f"{prefix}b", tmp_path / "bravo", "198.51.100.2", "10.88.88.2")
    env = {key: value for key, value in os.environ.items() if key not in ("LOG_LEVEL", "WG_PROCESS_FOREGROUND")}
    try:
        for host in (alpha, bravo):
            add_namespace(host.netns)
        alpha.run("ip", "link", "add", "under0", "type", "veth", "peer", "name", "under0", "netns", bravo.netns)
        for host in (alpha, bravo):
            host.private_key = _wg("genkey")
            host.public_key = _wg("pubkey", stdin=host.private_key)
            config_dir = host.state_dir / "etc" / "privnet"
            config_dir.mkdir(parents=True, exist_ok=True)
            (config_dir / "config.json").write_text(json.dumps({"node": host.node, "bridge_name": "internet"}))
            key_file = host.state_dir / "etc" / "wireguard" / "private.key"
            key_file.parent.mkdir(parents=True, exist_ok=True)
            key_file.touch(mode=0o600)
            key_file.write_text(host.private_key)
            host.run("ip", "addr", "add", f"{host.address}/24", "dev", "under0")
            host.run("ip", "link", "set", "under0", "up")
            host.run("wireguard-go", "wg0", env=env)  # daemonizes; its socket lands in the host's /run/wireguard
        alpha.run("wg", "set", "wg0", "private-key", "/etc/wireguard/private.key", "listen-port", "51820",
                  "peer", bravo.public_key, "allowed-ips", f"{bravo.underlay_ip}/32",
                  "endpoint", f"{bravo.address}:51820")  # fmt: skip
        bravo.run("wg", "set", "wg0", "private-key", "/etc/wireguard/private.key", "listen-port", "51820",
                  "peer", alpha.public_key, "allowed-ips", f"{alpha.underlay_ip}/32")  # fmt: skip
        for host in (alpha, bravo):
            host.run("ip", "addr", "add", f"{host.underlay_ip}/24", "dev", "wg0")
            host.run("ip", "link", "set", "wg0", "up")
        yield alpha, bravo
    finally:
        for host in (alpha, bravo):
            delete_namespace(host.netns)  # also ends wireguard-go


def wg_dump_peers(host: WgHost) -> list[dict]:
    """`wg show wg0 dump`, peers only, in the report's shape."""
    peers = []
    for line in host.run("wg", "show", "wg0", "dump").splitlines()[1:]:
        key, _psk, endpoint, _allowed, handshake, rx, tx, _keepalive = line.split("\t")
        peers.append({
            "public_key": key, "endpoint": None if endpoint == "(none)" else endpoint,
            "latest_handshake": int(handshake), "rx_bytes": int(rx), "tx_bytes": int(tx),
        })  # fmt: skip
    return sorted(peers, key=lambda peer: peer["public_key"])


def agent_dump(host: WgHost, *extra: str) -> tuple[dict, str]:
    result = run_in_host(host.netns, host.state_dir, [sys.executable, str(AGENT), "--dump", *extra])
    return json.loads(result.stdout), result.stderr


def assert_agent_matches_wg(host: WgHost, *extra: str) -> dict:
    for _ in range(5):
        before = wg_dump_peers(host)
        report, log = agent_dump(host, *extra)
        if wg_dump_peers(host) == before:
            break
    else:
        raise AssertionError(f"{host.node}: WireGuard counters kept moving")
    assert report["peers"] == before
    parse_report(report, node_name=host.node)
    secret_forms = (host.private_key, base64.b64decode(host.private_key).hex())
    assert not any(secret in json.dumps(report) or secret in log for secret in secret_forms)
    return report


def test_agent_reads_wireguard_go_peers(wireguard_pair: tuple[WgHost, WgHost]) -> None:
    alpha, bravo = wireguard_pair
    assert (alpha.state_dir / "run" / "wireguard" / "wg0.sock").exists()  # the UAPI path is what is read

    before = assert_agent_matches_wg(bravo)
    assert before["peers"] == [
        {"public_key": alpha.public_key, "endpoint": None, "latest_handshake": 0, "rx_bytes": 0, "tx_bytes": 0}
    ]

    alpha.run("ping", "-c", "2", "-W", "3", bravo.underlay_ip)

    alpha_report = assert_agent_matches_wg(alpha)
    bravo_report = assert_agent_matches_wg(bravo)
    (alpha_peer,) = alpha_report["peers"]
    (bravo_peer,) = bravo_report["peers"]
    assert alpha_peer["public_key"] == bravo.public_key and alpha_peer["endpoint"] == f"{bravo.address}:51820"
    assert bravo_peer["public_key"] == alpha.public_key and bravo_peer["endpoint"] == f"{alpha.address}:51820"
    assert alpha_peer["latest_handshake"] > 0 and bravo_peer["latest_handshake"] > 0
    assert min(alpha_peer["rx_bytes"], alpha_peer["tx_bytes"], bravo_peer["rx_bytes"], bravo_peer["tx_bytes"]) > 0

    # Without the socket the agent falls back to `wg show wg0 dump` (kernel WireGuard's path).
    assert assert_agent_matches_wg(alpha, "--wireguard-socket-dir", "/nonexistent")["peers"] == alpha_report["peers"]
