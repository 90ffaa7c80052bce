"""Issue 4 end to end: the real app, the real setup scripts, `curl | sh` in every lab host.

One triangle lab for the module (tests run in file order: read-only checks first, then the ones
that re-run, change or remove things).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from lab.netns import namespace_pids
from lab.testing import lab_fixture, require_lab

pytestmark = [pytest.mark.lab, require_lab()]

triangle = lab_fixture("triangle")


def port_states(lab, host: str) -> dict[str, int]:
    """The kernel's STP state of each bridge port of ``host`` (4 = blocking)."""
    script = 'for f in /sys/class/net/*/brport/state; do [ -e "$f" ] && echo "$f $(cat "$f")"; done; true'
    out = lab.run(host, ["sh", "-c", script]).stdout
    return {line.split("/")[4]: int(line.split()[1]) for line in out.splitlines()}


def wait_for_converged_tree(lab, *, blocking: int, timeout: float = 30.0) -> dict[str, dict[str, int]]:
    """Port states once STP settled: no port listening or learning, ``blocking`` ports blocked,
    and the same states for 3 s (a loop broken for good, not a snapshot of a reconvergence)."""
    deadline = time.monotonic() + timeout
    stable_since, last = None, None
    while True:
        states = {host: port_states(lab, host) for host in lab.host_names}
        values = [state for ports in states.values() for state in ports.values()]
        settled = all(state in (3, 4) for state in values) and values.count(4) == blocking
        if settled and states == last:
            if time.monotonic() - stable_since >= 3:
                return states
        else:
            stable_since = time.monotonic()
        last = states if settled else None
        if time.monotonic() > deadline:
            raise TimeoutError(f"STP did not settle with {blocking} blocking port(s): {states}")
        time.sleep(0.5)


def overlay_ip(lab, host: str) -> str:
    return lab.status()["hosts"][host]["overlay_ip"]


def vxlans(lab, host: str) -> list[str]:
    out = lab.run(host, ["ip", "-j", "link", "show", "type", "vxlan"]).stdout
    return sorted(link["ifname"] for link in json.loads(out))


def wg_peers(lab, host: str) -> list[str]:
    return lab.run(host, ["wg", "show", "wg0", "peers"]).stdout.split()


def rerun(lab, host: str) -> str:
    """Run the host's setup script again (same enrollment link) and return its output."""
    lab.enroll([host])
    return (lab.state_dir / "logs" / f"enroll-{host}.log").read_text().rsplit("$ curl", 1)[-1]


def test_every_host_reaches_every_other_over_the_overlay(triangle):
    triangle.wait_for_overlay(timeout=60)


def test_stp_blocks_exactly_one_port_in_the_network(triangle):
    states = wait_for_converged_tree(triangle, blocking=1)
    assert sum(len(ports) for ports in states.values()) == 6


def test_a_1500_byte_frame_crosses_the_overlay(triangle):
    triangle.wait_for_overlay(timeout=60)
    target = overlay_ip(triangle, "b")
    result = triangle.run("a", ["ping", "-n", "-c", "3", "-W", "2", "-M", "dont", "-s", "1472", target], check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    # and the bridge really carries full-size frames: every port's MTU is 1500
    out = triangle.run("a", ["ip", "-j", "link", "show", "type", "vxlan"]).stdout
    assert {link["mtu"] for link in json.loads(out)} == {1500}


def test_ten_megabytes_over_tcp_arrive_intact(triangle):
    triangle.wait_for_overlay(timeout=60)
    payload_size = 10 * 1024 * 1024
    target = overlay_ip(triangle, "c")
    receiver_code = (
        "import hashlib, socket, sys\n"
        "server = socket.create_server((sys.argv[1], 5201)); print('ready', flush=True)\n"
        "connection, _ = server.accept(); digest = hashlib.sha256(); size = 0\n"
        "while chunk := connection.recv(65536):\n    digest.update(chunk); size += len(chunk)\n"
        "print(size, digest.hexdigest(), flush=True)\n"
    )
    sender_code = (
        "import hashlib, os, socket, sys\n"
        "data = os.urandom(int(sys.argv[2])); print(hashlib.sha256(data).hexdigest(), flush=True)\n"
        "with socket.create_connection((sys.argv[1], 5201), timeout=60) as connection:\n"
        "    connection.sendall(data)\n"
    )
    receiver = triangle.popen("c", [sys.executable, "-c", receiver_code, target], stdout=subprocess.PIPE, text=True)
    try:
        assert receiver.stdout.readline().strip() == "ready"
        sent = triangle.run("a", [sys.executable, "-c", sender_code, target, str(payload_size)], timeout=120)
        size, digest = receiver.stdout.readline().split()
        receiver.wait(timeout=30)
    finally:
        receiver.kill()
    assert int(size) == payload_size
    assert digest == sent.stdout.strip()


def test_a_second_run_changes_nothing(triangle):
    output = rerun(triangle, "a")
    assert "privnet: no changes" in output, output


def test_unknown_and_revoked_tokens_get_404_from_a_host(triangle):
    url = triangle.status()["app_url"]
    for token in ("x" * 43, "../../etc/passwd", "short"):
        result = triangle.run("a", ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"{url}/enroll/{token}"])
        assert result.stdout == "404"
    old = triangle.state["hosts"]["b"]["enroll_command"].split()[2]
    triangle.fresh_enroll_command("b")
    result = triangle.run("b", ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", old])
    assert result.stdout == "404"


def test_injection_never_reaches_a_script(triangle):
    api = triangle.api()
    for payload in (
        {"name": "x;reboot"},
        {"name": "x$(id)"},
        {"name": "evil", "endpoint": "$(reboot):1"},
        {"name": "evil", "endpoint": "a.example:1\nreboot"},
        {"name": "evil", "location": "Paris\n'; reboot; '"},
    ):
        status, answer = api.request("POST", "/api/v1/nodes", payload)
        assert status == 400, (payload, answer)
    assert "evil" not in [node["name"] for node in api.call("GET", "/api/v1/nodes")["nodes"]]


def test_removing_a_link_and_rerunning_removes_its_vxlan_and_peer(triangle):
    assert vxlans(triangle, "a") == ["b", "c"]
    triangle.api().call("DELETE", "/api/v1/links/a/c", expect=(204,))
    for host in ("a", "c"):
        rerun(triangle, host)
    assert vxlans(triangle, "a") == ["b"]
    assert vxlans(triangle, "c") == ["b"]
    assert len(wg_peers(triangle, "a")) == 1
    # the network is a line now: still connected, nothing blocked
    triangle.wait_for_overlay(timeout=60)
    states = wait_for_converged_tree(triangle, blocking=0)
    assert sum(len(ports) for ports in states.values()) == 4


def test_reboot_restores_the_host(triangle):
    triangle.reboot("b")
    assert vxlans(triangle, "b") == []
    triangle.run("b", ["/etc/privnet/up"])  # what the systemd unit runs at boot
    triangle.wait_for_overlay(timeout=60)


def test_uninstall_leaves_no_trace(triangle):
    triangle.run("c", ["/etc/privnet/uninstall"])
    links = json.loads(triangle.run("c", ["ip", "-j", "link", "show"]).stdout)
    assert sorted(link["ifname"] for link in links) == ["eth0", "lo"]
    assert list((triangle.host_dir("c") / "etc/privnet").iterdir()) == []
    assert namespace_pids(triangle.netns("c")) == []
    assert list((triangle.host_dir("c") / "etc/systemd/system").iterdir()) == []
