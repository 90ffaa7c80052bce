"""The agent against a real kernel bridge: its report equals what sysfs and `ip -d -j link` say.

Two network namespaces (`ag<hex>a`, `ag<hex>b`) joined by a veth; each has an STP bridge on the
kernel's fastest timers and two VXLANs to the other, so the two bridges form a loop and STP must
block one port on the non-root side. Changing that side's root-port cost moves the block. The
agent runs inside each namespace (`--dump`, default config path) exactly as on a host, once with
the system's `/usr/bin/python3` and its distribution pyroute2 (Debian bookworm: 0.7.2, what a
host gets from `python3-pyroute2`) and once with the venv's (0.9.x); under CI=true both must run.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.netns import add_namespace, delete_namespace, run_in_host
from tests.conftest import have_command, require
from webapp.hostconfig import HostConfig
from webapp.reports import parse_report

pytestmark = pytest.mark.lab

AGENT = Path(__file__).resolve().parents[2] / "bootstrap" / "agent.py"
STATE_NAMES = {0: "disabled", 1: "listening", 2: "learning", 3: "forwarding", 4: "blocking"}
CONVERGE_TIMEOUT = 30
SYSTEM_PYTHON = "/usr/bin/python3"  # what privnet-agent.service runs
INTERPRETERS = {"system-python": SYSTEM_PYTHON, "venv-python": sys.executable}


@dataclass
class Host:
    node: str
    netns: str
    state_dir: Path
    address: str
    priority: int
    ports: dict[str, int]  # VXLAN name (the peer) -> VNI

    def run(self, *argv: str) -> str:
        return run_in_host(self.netns, self.state_dir, list(argv)).stdout

    def ip(self, *argv: str) -> str:
        return self.run("ip", *argv)


def host_config(host: Host) -> dict:
    return HostConfig(
        node=host.node, network="privnet", app_url="http://127.0.0.1:9", listen_port=51820,
        underlay_ip=host.address, underlay_prefix=24, overlay_ip="10.99.99.1", overlay_prefix=24,
        bridge_name="internet", bridge_priority=host.priority, vxlan_port=4789, mtu=1500,
        stp_hello_time=1, stp_forward_delay=2, stp_max_age=6, report_interval=1, version="0123456789abcdef",
    ).to_dict()  # fmt: skip


def pyroute2_version(python: str) -> str | None:
    """The pyroute2 version ``python`` imports, or None when it has none."""
    code = "import importlib.metadata as m, pyroute2; print(m.version('pyroute2'))"
    try:
        result = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False, timeout=30)
    except OSError:
        return None
    return result.stdout.strip() if result.returncode == 0 else None


@pytest.fixture(params=list(INTERPRETERS), ids=list(INTERPRETERS))
def python(request: pytest.FixtureRequest) -> str:
    """The interpreter the agent runs with; each must import pyroute2 (under CI=true, or the test fails)."""
    interpreter = INTERPRETERS[request.param]
    version = pyroute2_version(interpreter)
    require(version is not None, f"{interpreter} cannot import pyroute2 (apt-get install python3-pyroute2)")
    print(f"\nagent runs with {interpreter}, pyroute2 {version}")
    return interpreter


@pytest.fixture
def stp_loop(tmp_path: Path) -> Iterator[tuple[Host, Host]]:
    require(os.geteuid() == 0, "needs root for network namespaces")
    require(have_command("ip") and have_command("unshare"), "needs iproute2 and unshare")
    prefix = f"ag{secrets.token_hex(3)}"
    alpha = Host("alpha", f"{prefix}a", tmp_path / "alpha", "198.51.100.1", 4096, {"bravo": 101, "bravo-2": 102})
    bravo = Host("bravo", f"{prefix}b", tmp_path / "bravo", "198.51.100.2", 32768, {"alpha": 101, "alpha-2": 102})
    try:
        for host in (alpha, bravo):
            add_namespace(host.netns)
        alpha.ip("link", "add", "under0", "type", "veth", "peer", "name", "under0", "netns", bravo.netns)
        for host, peer in ((alpha, bravo), (bravo, alpha)):
            (host.state_dir / "etc" / "privnet").mkdir(parents=True, exist_ok=True)
            (host.state_dir / "etc" / "privnet" / "config.json").write_text(json.dumps(host_config(host)))
            host.ip("addr", "add", f"{host.address}/24", "dev", "under0")
            host.ip("link", "set", "under0", "up")
            host.ip(
                "link", "add", "internet", "type", "bridge", "stp_state", "1", "priority", str(host.priority),
                "hello_time", "100", "max_age", "600", "forward_delay", "200",
            )  # fmt: skip
            for name, vni in host.ports.items():
                host.ip(
                    "link", "add", name, "type", "vxlan", "id", str(vni), "remote", peer.address,
                    "local", host.address, "dstport", "4789",
                )  # fmt: skip
                host.ip("link", "set", name, "master", "internet")
                host.ip("link", "set", name, "up")
            # A port that is no VXLAN (a veth): the agent must leave it out.
            host.ip("link", "add", "lan0", "type", "veth", "peer", "name", "lan1")
            host.ip("link", "set", "lan0", "master", "internet")
            host.ip("link", "set", "lan0", "up")
            host.ip("link", "set", "internet", "up")
        yield alpha, bravo
    finally:
        for host in (alpha, bravo):
            delete_namespace(host.netns)


def port_states(host: Host) -> dict[str, str]:
    links = json.loads(host.ip("-d", "-j", "link", "show", "master", "internet"))
    return {
        link["ifname"]: link["linkinfo"]["info_slave_data"]["state"] for link in links if link["ifname"] in host.ports
    }


def wait_for(condition, what: str, timeout: float = CONVERGE_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.25)


def settled(alpha: Host, bravo: Host) -> bool:
    """Root alpha forwards on both ports; bravo forwards on one and blocks the other."""
    return sorted(port_states(alpha).values()) == ["forwarding", "forwarding"] and sorted(
        port_states(bravo).values()
    ) == ["blocking", "forwarding"]


def sysfs_view(host: Host) -> dict:
    """The bridge and its VXLAN ports as sysfs shows them, in the report's shape."""
    names = " ".join(host.ports)
    script = (
        "cd /sys/class/net/internet/bridge && grep -s . bridge_id root_id root_port root_path_cost hello_time "
        "max_age forward_delay topology_change topology_change_detected stp_state; "
        f"for p in {names}; do cd /sys/class/net/$p/brport && grep -s . port_id port_no state path_cost priority "
        'designated_root designated_bridge designated_port designated_cost | sed "s|^|$p/|"; done'
    )
    values: dict[str, str] = {}
    for line in host.run("sh", "-c", script).splitlines():
        key, _, value = line.partition(":")
        values[key] = value.strip()
    bridge = {
        "name": "internet",
        "stp_state": int(values["stp_state"]),
        "bridge_id": values["bridge_id"],
        "designated_root": values["root_id"],
        "root_port": int(values["root_port"]),
        "root_path_cost": int(values["root_path_cost"]),
        "hello_time": int(values["hello_time"]) / 100,
        "max_age": int(values["max_age"]) / 100,
        "forward_delay": int(values["forward_delay"]) / 100,
        "topology_change": values["topology_change"] == "1",
        "topology_change_detected": values["topology_change_detected"] == "1",
    }
    ports = [
        {
            "name": name,
            "port_id": int(values[f"{name}/port_id"], 16),
            "port_no": int(values[f"{name}/port_no"], 16),
            "state": STATE_NAMES[int(values[f"{name}/state"])],
            "path_cost": int(values[f"{name}/path_cost"]),
            "priority": int(values[f"{name}/priority"]),
            "designated_root": values[f"{name}/designated_root"],
            "designated_bridge": values[f"{name}/designated_bridge"],
            "designated_port": int(values[f"{name}/designated_port"]),
            "designated_cost": int(values[f"{name}/designated_cost"]),
        }
        for name in host.ports
    ]
    return {"bridge": bridge, "ports": sorted(ports, key=lambda port: port["port_no"])}


def _ip_bridge_id(text: str) -> str:
    """`ip -j` prints bridge ids as 8000.a6:2b:8:a:86:54; normalise to 8000.a62b080a8654."""
    priority, _, mac = text.partition(".")
    return f"{priority}.{''.join(octet.zfill(2) for octet in mac.split(':'))}"


def ip_view(host: Host) -> dict:
    """The same facts from `ip -d -j link show`."""
    (bridge,) = json.loads(host.ip("-d", "-j", "link", "show", "dev", "internet"))
    data = bridge["linkinfo"]["info_data"]
    ports = []
    for link in json.loads(host.ip("-d", "-j", "link", "show", "master", "internet")):
        if link["linkinfo"]["info_kind"] != "vxlan":
            continue
        slave = link["linkinfo"]["info_slave_data"]
        ports.append({
            "name": link["ifname"], "port_id": int(slave["id"], 16), "port_no": int(slave["no"], 16),
            "state": slave["state"], "path_cost": slave["cost"], "priority": slave["priority"],
            "designated_root": _ip_bridge_id(slave["root_id"]), "designated_bridge": _ip_bridge_id(slave["bridge_id"]),
            "designated_port": slave["designated_port"], "designated_cost": slave["designated_cost"],
        })  # fmt: skip
    # Not data["root_id"]: iproute2 6.1 prints the bridge's own id there (sysfs root_id is right).
    return {
        "bridge": {
            "bridge_id": _ip_bridge_id(data["bridge_id"]),
            "root_port": data["root_port"],
            "root_path_cost": data["root_path_cost"],
            "hello_time": data["hello_time"] / 100,
            "max_age": data["max_age"] / 100,
            "forward_delay": data["forward_delay"] / 100,
            "stp_state": data["stp_state"],
        },
        "ports": sorted(ports, key=lambda port: port["port_no"]),
    }


def agent_report(host: Host, python: str) -> dict:
    return json.loads(host.run(python, str(AGENT), "--dump", "--wireguard-socket-dir", "/nonexistent"))


def report_and_kernel(host: Host, python: str) -> tuple[dict, dict]:
    """The agent's report with the sysfs view read just before and after it (retried until they match)."""
    for _ in range(5):
        before = sysfs_view(host)
        report = agent_report(host, python)
        if sysfs_view(host) == before:
            return report, before
    raise AssertionError(f"{host.netns}: the bridge kept changing while the agent read it")


def assert_report_matches_kernel(host: Host, python: str) -> dict:
    report, kernel = report_and_kernel(host, python)
    parse_report(report, node_name=host.node)  # the app accepts what the agent sends
    assert report["node"] == host.node and report["config_version"] == "0123456789abcdef"
    bridge = dict(report["bridge"])
    assert bridge.pop("topology_change_count") >= 0
    assert bridge == kernel["bridge"]
    assert report["ports"] == kernel["ports"]  # lan0 (a veth) is no VXLAN: left out
    ip = ip_view(host)
    assert ip["ports"] == report["ports"]
    assert {key: bridge[key] for key in ip["bridge"]} == ip["bridge"]
    return report


def test_report_equals_kernel_view_and_follows_a_cost_change(python: str, stp_loop: tuple[Host, Host]) -> None:
    alpha, bravo = stp_loop
    wait_for(lambda: settled(alpha, bravo), "STP to converge")

    alpha_report = assert_report_matches_kernel(alpha, python)
    bravo_report = assert_report_matches_kernel(bravo, python)
    root_id = alpha_report["bridge"]["bridge_id"]
    assert root_id.startswith("1000.")  # priority 4096, in network byte order
    assert alpha_report["bridge"]["designated_root"] == root_id and alpha_report["bridge"]["root_port"] == 0
    assert bravo_report["bridge"]["designated_root"] == root_id
    assert bravo_report["bridge"]["bridge_id"].startswith("8000.")
    (root_port,) = [port for port in bravo_report["ports"] if port["state"] == "forwarding"]
    (blocked,) = [port for port in bravo_report["ports"] if port["state"] == "blocking"]
    assert bravo_report["bridge"]["root_port"] == root_port["port_no"]
    assert bravo_report["bridge"]["root_path_cost"] == 100

    # Make the root port expensive: the other port becomes root port, this one blocks.
    bravo.ip("link", "set", "dev", root_port["name"], "type", "bridge_slave", "cost", "300")
    wait_for(
        lambda: port_states(bravo) == {root_port["name"]: "blocking", blocked["name"]: "forwarding"},
        "the block to move after the cost change",
    )
    after = assert_report_matches_kernel(bravo, python)
    ports = {port["name"]: port for port in after["ports"]}
    assert ports[root_port["name"]]["path_cost"] == 300 and ports[root_port["name"]]["state"] == "blocking"
    assert after["bridge"]["root_port"] == ports[blocked["name"]]["port_no"]
    assert after["bridge"]["root_path_cost"] == 100
    assert_report_matches_kernel(alpha, python)
