"""What the lab hosts' bridges do, read from their kernels (sysfs), and RTTs measured with ping.

Shared by the lab tests and ``bench/latency.py``:

    snapshot = wait_settled(lab, quiet_seconds=5)   # every bridge agrees on the root, no port in transit
    tree_links(snapshot)                            # [("bob", "rho"), ...]: both ends forwarding
    ping_ms(lab, "epsilon", "10.99.99.3")           # median RTT of 5 pings, ms
"""

from __future__ import annotations

import itertools
import re
import signal
import statistics
import subprocess
import time

from .core import Lab

FORWARDING, BLOCKING, DISABLED = "3", "4", "0"  # /sys/class/net/<port>/brport/state
BRIDGE = "internet"

# A host's view: (its bridge's root id, {port (named after the peer): state}).
Snapshot = dict[str, tuple[str, dict[str, str]]]


def stp_snapshot(lab: Lab, bridge: str = BRIDGE) -> Snapshot:
    """Per host: its bridge's root id and each port's state, from sysfs."""
    script = (f'cd /sys/class/net/{bridge}/brif 2>/dev/null || exit 0; cat ../bridge/root_id; '
              'for port in *; do [ -e "$port" ] && echo "$port $(cat "$port/state")"; done')  # fmt: skip
    snapshot = {}
    for host in lab.host_names:
        lines = lab.run(host, ["sh", "-c", script]).stdout.split("\n")
        ports = dict(line.split() for line in lines[1:] if line.strip())
        snapshot[host] = (lines[0].strip(), ports)
    return snapshot


def calm(snapshot: Snapshot) -> bool:
    """One root for all, and every port forwarding, blocking or disabled (none listening or learning)."""
    roots = {root for root, _ in snapshot.values()}
    states = [state for _, ports in snapshot.values() for state in ports.values()]
    return len(roots) == 1 and all(state in (FORWARDING, BLOCKING, DISABLED) for state in states)


def wait_settled(lab: Lab, quiet_seconds: float, timeout: float = 180.0) -> Snapshot:
    """The snapshot once it is calm and unchanged for ``quiet_seconds``; TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    stable_since, last = None, None
    while time.monotonic() < deadline:
        snapshot = stp_snapshot(lab)
        if calm(snapshot) and snapshot == last:
            stable_since = stable_since or time.monotonic()
            if time.monotonic() - stable_since >= quiet_seconds:
                return snapshot
        else:
            stable_since = None
        last = snapshot
        time.sleep(0.5)
    raise TimeoutError(f"STP did not settle within {timeout:.0f} s: {last}")


def tree_links(snapshot: Snapshot) -> list[tuple[str, str]]:
    """Links whose ports forward at both ends, as sorted pairs."""
    links = set()
    for host, (_, ports) in snapshot.items():
        for peer, state in ports.items():
            if state == FORWARDING and snapshot.get(peer, ("", {}))[1].get(host) == FORWARDING:
                links.add(tuple(sorted((host, peer))))
    return sorted(links)


def root_host(lab: Lab, snapshot: Snapshot, bridge: str = BRIDGE) -> str | None:
    """The host whose bridge is the root everyone sees."""
    root_id = next(iter(snapshot.values()))[0]
    for host in lab.host_names:
        if lab.run(host, ["cat", f"/sys/class/net/{bridge}/bridge/bridge_id"]).stdout.strip() == root_id:
            return host
    return None


def ping_ms(lab: Lab, source: str, address: str, count: int = 5, reachable_within: float = 0.0) -> float | None:
    """The median RTT of ``count`` pings from ``source`` to ``address``, ms; None if none came back.

    ``reachable_within``: first wait up to this long for one answer. Right after STP settles the
    bridges may still hold forwarding entries for the old tree (aged out after forward delay).
    """
    deadline = time.monotonic() + reachable_within
    probe = ["ping", "-n", "-q", "-c", "1", "-W", "1", address]
    while time.monotonic() < deadline and lab.run(source, probe, check=False).returncode != 0:
        time.sleep(0.5)
    result = lab.run(source, ["ping", "-n", "-c", str(count), "-i", "0.2", "-W", "2", address], check=False)
    times = [float(line.split("time=")[1].split()[0]) for line in result.stdout.splitlines() if "time=" in line]
    return statistics.median(times) if times else None


class Pinger:
    """``ping -D -i INTERVAL`` from a lab host to an address, in the background; ``stop()`` tells the outage.

    The outage is the longest silence between two answers (minus one interval), from the answers'
    own timestamps: counting lost pings would understate it if ping slowed down while unanswered.
    """

    def __init__(self, lab: Lab, source: str, address: str, interval: float = 0.1) -> None:
        argv = ["ping", "-n", "-D", "-W", "1", "-i", str(interval), address]
        self.interval = interval
        self.process = lab.popen(source, argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def stop(self) -> tuple[int, int, float]:
        """``(sent, received, outage seconds)``."""
        self.process.send_signal(signal.SIGINT)  # ping prints its statistics
        output, _ = self.process.communicate(timeout=10)
        match = re.search(r"(\d+) packets transmitted, (\d+) received", output)
        if match is None:
            raise RuntimeError(f"ping printed no statistics: {output[-200:]}")
        answers = [float(stamp) for stamp in re.findall(r"^\[(\d+\.\d+)\] \d+ bytes from", output, re.MULTILINE)]
        gaps = [later - earlier for earlier, later in itertools.pairwise(answers)]
        outage = max(0.0, max(gaps, default=0.0) - self.interval)
        return int(match.group(1)), int(match.group(2)), outage

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
