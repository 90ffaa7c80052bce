"""Bootstrap benchmark: how fast does `curl … | sh` bring a host in, and what does the overlay cost?

Three measurements in one run (needs root, `wireguard-go`, `iperf3`; the lab tears itself down):

1. Enrollment, triangle lab (`running_lab("triangle", enroll=False)`): the hosts enroll one
   after another, in topology order. For each, the clock starts when its
   `curl -fsSL <app>/enroll/<token> | sh` starts; meanwhile the host pings the overlay address
   (10.99.99.x) of every host enrolled before it, a new `ping -c 1` every 0.1 s, and the figure is
   the time to the first answer from any of them. The first host has nobody to ping yet: only its
   script time is shown. The network's STP timers (from `GET /api/v1/network`) go with the figure:
   a new bridge port forwards only after listening + learning, 2 × forward_delay.
2. Rendering one setup script (`render_setup_script`, HostConfig built directly, no app) in a
   network of 10 and of 1,000 nodes: for a node with 3 links (what the script depends on is the
   node's own links, so this should not change) and for a node linked to every other node
   (9 vs 999 links). Median of 30 renders after a warm-up; ratio 1,000 vs 10.
3. iperf3 TCP throughput (5 s, one stream) between two hosts of the lab whose direct link STP
   left forwarding: over WireGuard alone (the peer's 10.88.88.x on wg0, MTU 1420) and over the
   overlay (10.99.99.x: bridge → VXLAN → wg0, 1500-byte frames), alternating, 5 rounds each;
   medians and the ratio overlay / WireGuard (goal ≥ 0.9). The plain underlay (veth + bridge,
   no encryption) is measured once for scale. Counters taken around every run say why: how
   many packets (and of what size) reach wg0, how many IP fragments are made and reassembled,
   the CPU seconds wireguard-go (both ends) and the whole machine spend per GB; then the
   offloads of the VXLAN device and wg0, the route (with any learned path MTU) to the overlay
   peer and `ping -M do/dont` probes.
   The lab shares the machine's CPUs with anything else running: figures vary run to run.

    .venv/bin/python bench/bootstrap.py
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab.core import Lab, LabError, enroll_shell_command, tail
from lab.testing import lab_unavailable_reason, running_lab
from webapp.hostconfig import KEEPALIVE_SECONDS, VXLAN_MTU, HostConfig, LinkConfig, PeerConfig
from webapp.keys import generate_keypair
from webapp.rendering import render_setup_script

PING_INTERVAL = 0.1
PING_TIMEOUT = 90.0
RENDER_REPEATS = 30
SIZES = (10, 1000)
IPERF_SECONDS = 5
IPERF_ROUNDS = 5
IPERF_PORT = 5201
GOAL_RATIO = 0.9


# --- 1. enrollment to first overlay ping -----------------------------------------------------


def first_ping(lab: Lab, host: str, targets: list[str], started: float, process: subprocess.Popen) -> float | None:
    """Seconds from `started` to the first answered ping from `host` to any of `targets` (None: timeout).

    A new `ping -c 1 -W 1` to each target every PING_INTERVAL (overlapping), run with plain
    `ip netns exec` so the probing stays cheap next to the setup script.
    """
    in_host = ["ip", "netns", "exec", lab.netns(host)]
    pending: list[subprocess.Popen] = []
    next_launch = started
    try:
        while time.monotonic() - started < PING_TIMEOUT:
            now = time.monotonic()
            if now >= next_launch:
                for target in targets:
                    argv = [*in_host, "ping", "-n", "-q", "-c", "1", "-W", "1", target]
                    pending.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                next_launch += PING_INTERVAL
            still = []
            for probe in pending:
                code = probe.poll()
                if code == 0:
                    return time.monotonic() - started
                if code is None:
                    still.append(probe)
            pending = still
            if process.poll() not in (None, 0):
                return None  # the script failed: no ping will come
            time.sleep(0.005)
        return None
    finally:
        for probe in pending:
            probe.kill()
            probe.wait()


def enroll_timed(lab: Lab, host: str, targets: list[str]) -> tuple[float, float | None]:
    """Run the host's enroll command; (seconds the script ran, seconds to the first overlay ping)."""
    command = enroll_shell_command(lab.state["hosts"][host]["enroll_command"])
    log_path = lab.state_dir / "logs" / f"enroll-{host}.log"
    with open(log_path, "ab") as log:
        log.write(f"$ {command}\n".encode())
        log.flush()
        started = time.monotonic()
        # bash for pipefail only (as lab.enroll does): a failed curl fails the run; the script runs under sh.
        process = lab.popen(
            host, ["bash", "-o", "pipefail", "-c", command],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        ended: list[float] = []
        waiter = threading.Thread(target=lambda: (process.wait(), ended.append(time.monotonic())))
        waiter.start()
        ping = first_ping(lab, host, targets, started, process) if targets else None
        waiter.join(timeout=300)
        code = process.poll()
        script = ended[0] - started if ended else float("nan")
    if code != 0:
        raise LabError(f"setup script failed on {host} (exit {code}); {log_path} ends with:\n{tail(log_path)}")
    if targets and ping is None:
        raise LabError(f"{host} never pinged {', '.join(targets)} within {PING_TIMEOUT:.0f} s")
    return script, ping


def bench_enrollment(lab: Lab, network: dict) -> None:
    status = lab.status()
    rows = []
    enrolled: list[str] = []
    for host in lab.host_names:
        targets = [status["hosts"][name]["overlay_ip"] for name in enrolled]
        script, ping = enroll_timed(lab, host, targets)
        rows.append((host, status["hosts"][host]["overlay_ip"], ", ".join(enrolled) or "-", script, ping))
        enrolled.append(host)
    hello, delay, age = network["stp_hello_time"], network["stp_forward_delay"], network["stp_max_age"]
    print("\n1. curl | sh to first overlay ping, triangle lab, hosts enrolled one after another")
    print(f"   STP timers: hello_time {hello} s, forward_delay {delay} s, max_age {age} s "
          f"(a new port forwards after 2 × forward_delay = {2 * delay} s)")  # fmt: skip
    print(f"{'host':<6}{'overlay ip':<14}{'pings any of':<14}{'script ends s':>14}{'first ping s':>14}")
    for host, address, peers, script, ping in rows:
        ping_text = f"{ping:>14.2f}" if ping is not None else f"{'(no peer)':>14}"
        print(f"{host:<6}{address:<14}{peers:<14}{script:>14.2f}{ping_text}")
    wireguard = "wireguard-go" if "wireguard-go" in (lab.state_dir / "logs" / "enroll-a.log").read_text() else "kernel"
    print(f"   WireGuard implementation the scripts chose: {wireguard}")


# --- 2. rendering the setup script -----------------------------------------------------------


def synthetic_config(size: int, degree: int, keys: list[str]) -> HostConfig:
    """Node n0 of a network of `size` nodes, linked to n1 … n<degree>; every value of a real node's shape."""
    prefix = 24 if size < 250 else 16

    def underlay(index: int) -> str:
        return f"10.88.{index // 250}.{index % 250 + 1}" if prefix == 16 else f"10.88.88.{index + 1}"

    peers, links = [], []
    for index in range(1, degree + 1):
        name = f"n{index}"
        peers.append(
            PeerConfig(
                name=name,
                public_key=keys[index],
                allowed_ip=f"{underlay(index)}/32",
                endpoint=f"198.51.100.{index % 250 + 1}:{50000 + index}" if index % 4 else None,
                keepalive=None if index % 4 else KEEPALIVE_SECONDS,
            )
        )
        links.append(LinkConfig(name=name, vni=index, local=underlay(0), remote=underlay(index), cost=100))
    return HostConfig(
        node="n0",
        network="privnet",
        app_url="https://privnet.example.com",
        listen_port=56560,
        underlay_ip=underlay(0),
        underlay_prefix=prefix,
        overlay_ip="10.99.99.1" if prefix == 24 else "10.99.0.1",
        overlay_prefix=prefix,
        bridge_name="internet",
        bridge_priority=32768,
        vxlan_port=4789,
        mtu=VXLAN_MTU,
        stp_hello_time=1,
        stp_forward_delay=2,
        stp_max_age=6,
        report_interval=10,
        peers=tuple(peers),
        links=tuple(links),
        version=secrets.token_hex(8),
    )


def time_render(config: HostConfig, private_key: str, token: str) -> tuple[float, int]:
    """(median ms of one render, script bytes)."""
    script = render_setup_script(config, private_key=private_key, agent_token=token)  # warm-up
    times = []
    for _ in range(RENDER_REPEATS):
        started = time.perf_counter()
        render_setup_script(config, private_key=private_key, agent_token=token)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000, len(script.encode())


def bench_rendering() -> None:
    keys = [generate_keypair().public_key for _ in range(max(SIZES))]
    private_key = generate_keypair().private_key
    token = secrets.token_urlsafe(32)
    cases = {
        "node with 3 links": {size: synthetic_config(size, 3, keys) for size in SIZES},
        "node linked to all": {size: synthetic_config(size, size - 1, keys) for size in SIZES},
    }
    print(f"\n2. render_setup_script, median ms over {RENDER_REPEATS} renders (network of 10 vs 1,000 nodes)")
    print(f"{'case':<20}{'links':>11}{'10 nodes':>10}{'1000 nodes':>12}{'ratio':>8}{'script KiB':>14}")
    for label, configs in cases.items():
        small, small_bytes = time_render(configs[SIZES[0]], private_key, token)
        large, large_bytes = time_render(configs[SIZES[1]], private_key, token)
        links = f"{len(configs[SIZES[0]].links)}/{len(configs[SIZES[1]].links)}"
        kib = f"{small_bytes / 1024:.0f}/{large_bytes / 1024:.0f}"
        print(f"{label:<20}{links:>11}{small:>10.2f}{large:>12.2f}{large / small:>8.2f}{kib:>14}")


# --- 3. iperf3 over the overlay vs WireGuard alone --------------------------------------------


def port_state(lab: Lab, host: str, bridge: str, port: str) -> str:
    """The kernel's STP state of `port` on `host`'s bridge (forwarding, blocking, …)."""
    out = lab.run(host, ["bridge", "-j", "link", "show", "dev", port]).stdout
    entries = [entry for entry in json.loads(out or "[]") if entry.get("master") == bridge]
    return entries[0]["state"] if entries else "absent"


def forwarding_pair(lab: Lab, bridge: str) -> tuple[str, str]:
    """Two hosts whose direct VXLAN link forwards at both ends (so the overlay path is one hop)."""
    hosts = lab.host_names
    for index, a in enumerate(hosts):
        for b in hosts[index + 1 :]:
            if port_state(lab, a, bridge, b) == "forwarding" and port_state(lab, b, bridge, a) == "forwarding":
                return a, b
    raise LabError("no link forwards at both ends")


def link_counters(lab: Lab, host: str, device: str) -> dict[str, int]:
    data = json.loads(lab.run(host, ["ip", "-s", "-j", "link", "show", "dev", device]).stdout)[0]
    stats = data.get("stats64", data.get("stats"))
    return {"tx_packets": stats["tx"]["packets"], "tx_bytes": stats["tx"]["bytes"], "mtu": data["mtu"]}


def ip_counters(lab: Lab, host: str) -> dict[str, int]:
    """The namespace's /proc/net/snmp `Ip:` line (FragCreates, FragOKs, ReasmOKs, …)."""
    lines = [line.split() for line in lab.run(host, ["cat", "/proc/net/snmp"]).stdout.splitlines()]
    names, values = [line for line in lines if line[0] == "Ip:"][:2]
    return dict(zip(names[1:], map(int, values[1:]), strict=True))


def wireguard_go_cpu(lab: Lab, host: str) -> float:
    """CPU seconds (user + system) the host's wireguard-go processes have used so far."""
    pids = subprocess.run(["ip", "netns", "pids", lab.netns(host)], capture_output=True, text=True, check=True)
    seconds = 0.0
    for pid in pids.stdout.split():
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() != "wireguard-go":
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return seconds


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent not idle (every CPU, every process, kernel included)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def snapshot(lab: Lab, client: str, server: str) -> dict:
    """Counters on both ends: client's VXLAN dev (named after the server) and wg0, IP stats, wireguard-go CPU."""
    return {
        "vxlan": link_counters(lab, client, server),
        "wg0": link_counters(lab, client, "wg0"),
        "ip": {host: ip_counters(lab, host) for host in (client, server)},
        "cpu": sum(wireguard_go_cpu(lab, host) for host in (client, server)),
        "busy": machine_busy_seconds(),
    }


def measured(lab: Lab, client: str, server: str, address: str) -> tuple[dict, dict]:
    """One iperf3 run and what the counters say about it (differences over the run)."""
    before = snapshot(lab, client, server)
    result = iperf(lab, client, server, address)
    after = snapshot(lab, client, server)
    delta = {
        "vxlan_tx": after["vxlan"]["tx_packets"] - before["vxlan"]["tx_packets"],
        "wg_tx": after["wg0"]["tx_packets"] - before["wg0"]["tx_packets"],
        "wg_bytes": after["wg0"]["tx_bytes"] - before["wg0"]["tx_bytes"],
        "frag_oks": after["ip"][client]["FragOKs"] - before["ip"][client]["FragOKs"],
        "frag_creates": after["ip"][client]["FragCreates"] - before["ip"][client]["FragCreates"],
        "reasm_oks": after["ip"][server]["ReasmOKs"] - before["ip"][server]["ReasmOKs"],
        "cpu": after["cpu"] - before["cpu"],
        "busy": after["busy"] - before["busy"],
        "mtu": {"vxlan": after["vxlan"]["mtu"], "wg0": after["wg0"]["mtu"]},
    }
    return result, delta


def iperf(lab: Lab, client: str, server: str, address: str) -> dict:
    """One iperf3 TCP test from `client` to `server` listening on `address`: Gbit/s, bytes, retransmits, MSS."""
    daemon = lab.popen(
        server, ["iperf3", "-s", "-1", "-B", address, "-p", str(IPERF_PORT)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        argv = ["iperf3", "-c", address, "-p", str(IPERF_PORT), "-t", str(IPERF_SECONDS), "-J"]
        for _ in range(50):
            result = lab.run(client, argv, check=False)
            # iperf3 3.12 exits 0 with -J even when it could not connect: the JSON's "error" says so
            answer = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
            if result.returncode == 0 and "error" not in answer:
                break
            if daemon.poll() is not None:
                raise LabError(f"iperf3 server on {server} exited ({daemon.returncode})")
            time.sleep(0.1)  # the server is not listening yet
        else:
            raise LabError(f"iperf3 {client} -> {address} failed:\n{result.stdout}{result.stderr}")
        daemon.wait(timeout=10)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    end = answer["end"]
    return {
        "gbps": end["sum_received"]["bits_per_second"] / 1e9,
        "bytes": end["sum_received"]["bytes"],
        "retransmits": end["sum_sent"].get("retransmits", 0),
        "mss": answer["start"].get("tcp_mss_default", 0),
    }


def ping_probe(lab: Lab, host: str, address: str, size: int, df: str) -> str:
    argv = ["ping", "-n", "-q", "-c", "1", "-W", "2", "-M", df, "-s", str(size), address]
    result = lab.run(host, argv, check=False)
    return "crosses" if result.returncode == 0 else "fails"


def offloads(lab: Lab, host: str, device: str) -> str:
    """The offloads that decide whether TCP reaches `device` as 64 KB super-packets or one segment at a time."""
    wanted = ("tx-checksumming", "tcp-segmentation-offload", "generic-segmentation-offload")
    lines = lab.run(host, ["ethtool", "-k", device]).stdout.splitlines()
    found = dict(line.split(": ", 1) for line in lines if ": " in line)
    short = {"tx-checksumming": "tx-csum", "tcp-segmentation-offload": "tso", "generic-segmentation-offload": "gso"}
    return " ".join(f"{short[key]} {found.get(key, '?').split()[0]}" for key in wanted)


def bench_throughput(lab: Lab, network: dict) -> None:
    lab.wait_for_overlay(timeout=120)
    status = lab.status()["hosts"]
    client, server = forwarding_pair(lab, network["bridge_name"])
    overlay_ip, underlay_ip, wan_ip = (status[server][key] for key in ("overlay_ip", "underlay_ip", "wan_ip"))

    raw = iperf(lab, client, server, wan_ip)
    runs: dict[str, list[dict]] = {"wireguard": [], "overlay": []}
    deltas: dict[str, list[dict]] = {"wireguard": [], "overlay": []}
    for _ in range(IPERF_ROUNDS):  # alternating, so drift in the machine's load hits both alike
        for kind, address in (("wireguard", underlay_ip), ("overlay", overlay_ip)):
            result, delta = measured(lab, client, server, address)
            runs[kind].append(result)
            deltas[kind].append(delta)

    def median(kind: str) -> float:
        return statistics.median(run["gbps"] for run in runs[kind])

    wireguard, overlay = median("wireguard"), median("overlay")
    print(
        f"\n3. iperf3 TCP {client} -> {server}, {IPERF_SECONDS} s, one stream, {IPERF_ROUNDS} alternating rounds "
        f"(link {client}-{server} forwards at both ends)"
    )
    print(f"{'path':<44}{'MSS at connect':>15}{'Gbit/s median':>15}{'runs':>32}{'retransmits':>13}")
    rows = [
        (f"underlay, no encryption ({wan_ip})", [raw]),
        (f"WireGuard alone, wg0 ({underlay_ip})", runs["wireguard"]),
        (f"overlay, bridge>VXLAN>wg0 ({overlay_ip})", runs["overlay"]),
    ]
    for label, results in rows:
        text = " ".join(f"{run['gbps']:.2f}" for run in results)
        retransmits = sum(run["retransmits"] for run in results)
        gbps = statistics.median(run["gbps"] for run in results)
        print(f"{label:<44}{results[0]['mss']:>15}{gbps:>15.3f}{text:>32}{retransmits:>13}")
    verdict = "meets" if overlay / wireguard >= GOAL_RATIO else "below"
    print(
        f"ratio overlay / WireGuard: {overlay / wireguard:.2f} ({verdict} the goal of {GOAL_RATIO}; "
        f"a hand-built setup gets 0.7-0.86)"
    )

    mtu = deltas["overlay"][0]["mtu"]
    print(
        f"\n   why, on {client} (sums over the {IPERF_ROUNDS} runs of each path; "
        f"VXLAN dev {server} MTU {mtu['vxlan']}, wg0 MTU {mtu['wg0']}):"
    )
    print(
        f"   {'path':<11}{'VXLAN frames':>13}{'wg0 packets':>13}{'wg0 B/packet':>14}{'IP frags made':>15}"
        f"{'reassembled':>13}{'wireguard-go CPU s/GB':>23}{'machine CPU s/GB':>19}"
    )
    for kind in ("wireguard", "overlay"):
        total = {key: sum(delta[key] for delta in deltas[kind]) for key in deltas[kind][0] if key != "mtu"}
        gigabytes = sum(run["bytes"] for run in runs[kind]) / 1e9
        frames = total["vxlan_tx"] if kind == "overlay" else 0
        per_packet = total["wg_bytes"] / max(total["wg_tx"], 1)
        print(
            f"   {kind:<11}{frames:>13}{total['wg_tx']:>13}{per_packet:>14.0f}{total['frag_creates']:>15}"
            f"{total['reasm_oks']:>13}{total['cpu'] / gigabytes:>23.2f}{total['busy'] / gigabytes:>19.2f}"
        )
    vxlan_offloads, wg_offloads = offloads(lab, client, server), offloads(lab, client, "wg0")
    print(f"   offloads on {client}: VXLAN dev {server}: {vxlan_offloads}; wg0: {wg_offloads}")
    route_words = lab.run(client, ["ip", "-o", "route", "get", overlay_ip]).stdout.split()
    route = " ".join(word for word in route_words if word != "\\")
    probes = [
        ("overlay 1500 B DF", overlay_ip, 1472, "do"),
        ("overlay 1500 B no DF", overlay_ip, 1472, "dont"),
        ("wg0 1420 B DF", underlay_ip, 1392, "do"),
        ("wg0 1421 B DF", underlay_ip, 1393, "do"),
    ]
    results = []
    for label, address, size, df in probes:
        before = snapshot(lab, client, server)
        outcome = ping_probe(lab, client, address, size, df)
        after = snapshot(lab, client, server)
        if address == overlay_ip and outcome == "crosses":
            frames = after["vxlan"]["tx_packets"] - before["vxlan"]["tx_packets"]
            fragments = after["ip"][client]["FragCreates"] - before["ip"][client]["FragCreates"]
            outcome += f" (as {frames} VXLAN frames; {fragments} IP fragments made on {client})"
        results.append(f"{label}: {outcome}")
    print(f"   route to {overlay_ip} after the runs: {route}")
    print(f"   ping probes: {'; '.join(results)}")


def main() -> None:
    reason = lab_unavailable_reason()
    if reason:
        sys.exit(f"bench/bootstrap.py: {reason}")
    started = time.monotonic()
    with running_lab("triangle", enroll=False) as lab:
        network = lab.api().call("GET", "/api/v1/network")
        bench_enrollment(lab, network)
        bench_rendering()
        bench_throughput(lab, network)
    print(f"\ntotal {time.monotonic() - started:.0f} s (lab up and down included)")


if __name__ == "__main__":
    main()
