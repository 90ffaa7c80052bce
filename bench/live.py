"""Live config benchmark: how fast a change reaches every agent, and what an idle network costs.

Server part (this file, today): 100 simulated agents (one node, agent token and keep-alive HTTP
connection each) long-poll ``GET /api/v1/agent/config`` against gunicorn (2 gthread workers) on
127.0.0.1 with PostgreSQL (a private cluster, ``scripts/postgres.sh``), and with SQLite. For each
of 10 changes (``PATCH /api/v1/network``, which changes every host's config) it measures the time
from sending the change to each agent holding the new config: the median agent, and the last one
("reach all"). Then it leaves the network idle and counts what the agents send and receive per
host and minute. The baseline, measured in the same run, is agents that poll every 10 s (the
report interval) with a conditional GET instead of long-polling.

Host part (``measure_kernel_apply``, needs root and the lab): the time from the API change to the
change being live in a lab host's kernel, applied by the real agent (20 link cost changes in a
triangle lab, read back from sysfs; ``BENCH_LIVE_KERNEL_CHANGES`` overrides the count).

    sudo .venv/bin/python bench/live.py            # root: for the private PostgreSQL cluster

``BENCH_LIVE_AGENTS``, ``BENCH_LIVE_CHANGES`` and ``BENCH_LIVE_IDLE`` (seconds, at least one long-poll
period) override the defaults.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appserver import free_port, start_gunicorn  # noqa: E402  (bench/appserver.py)

from webapp import accounts, create_app, inventory, tokens  # noqa: E402
from webapp.config import TestingConfig  # noqa: E402
from webapp.extensions import db  # noqa: E402

AGENTS = int(os.environ.get("BENCH_LIVE_AGENTS", 100))
CHANGES = int(os.environ.get("BENCH_LIVE_CHANGES", 10))
BASELINE_CHANGES = 3  # each takes up to a polling period
IDLE_SECONDS = float(os.environ.get("BENCH_LIVE_IDLE", 110))  # two long-poll periods
LONG_POLL_WAIT = 55  # the API's default
POLL_PERIOD = 10  # the baseline: a conditional GET every report interval
WORKERS = 2
THREADS = 128  # per worker: every long-poll holds a thread, and accepts need not be even
GUNICORN_OPTIONS = ("--worker-class", "gthread", "--workers", str(WORKERS), "--threads", str(THREADS))


# --- the app under test ------------------------------------------------------------------------


def prepare_database(database_url: str, secret_key: str) -> tuple[list[str], str]:
    """AGENTS nodes in a ring (each with two peers) and their agent tokens; returns (tokens, admin token)."""
    app = create_app(TestingConfig, {"SQLALCHEMY_DATABASE_URI": database_url, "SECRET_KEY": secret_key})
    with app.app_context():
        db.drop_all()
        db.create_all()
        agent_tokens = []
        for index in range(AGENTS):
            node = inventory.create_node(name=f"n{index}", endpoint=f"198.51.100.{index % 250 + 1}:56560",
                                         secret_key=secret_key)  # fmt: skip
            secret, _ = tokens.issue_token("agent", node=node)
            agent_tokens.append(secret)
        db.session.commit()
        for index in range(AGENTS):
            inventory.create_link(a=f"n{index}", b=f"n{(index + 1) % AGENTS}")
        accounts.create_admin("bench", "bench password")
        admin = accounts.issue_admin_token("bench")
        db.session.remove()
        db.engine.dispose()
    return agent_tokens, admin


# --- simulated agents --------------------------------------------------------------------------


class HttpConnection:
    """A minimal keep-alive HTTP/1.1 client that counts every byte it sends and receives."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: socket.socket | None = None
        self.sent = self.received = self.requests = 0

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, dict, bytes]:
        """One request; a kept-alive connection the server closed meanwhile is reopened once."""
        reused = self.sock is not None
        try:
            return self._request(method, path, headers, body)
        except ConnectionError:
            if not reused:
                raise
            return self._request(method, path, headers, body)

    def _request(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, bytes]:
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=LONG_POLL_WAIT + 30)
            self.reader = self.sock.makefile("rb")
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if body:
            lines.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        try:
            self.sock.sendall(data)
        except OSError:
            self.close()
            raise
        self.sent += len(data)
        self.requests += 1
        try:
            status_line = self.reader.readline()
            if not status_line:
                raise ConnectionResetError("the server closed the connection")
            self.received += len(status_line)
            status = int(status_line.split()[1])
            answer_headers = {}
            while (line := self.reader.readline()) not in (b"\r\n", b""):
                self.received += len(line)
                name, _, value = line.decode().partition(":")
                answer_headers[name.strip().lower()] = value.strip()
            self.received += 2
            payload = self.reader.read(int(answer_headers.get("content-length", 0)))
            self.received += len(payload)
        except OSError:
            self.close()
            raise
        except (IndexError, ValueError):
            self.close()
            raise ConnectionError(f"malformed answer: {status_line[:80]!r}") from None
        if answer_headers.get("connection", "").lower() == "close":
            self.close()
        return status, answer_headers, payload

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


@dataclass
class Fleet:
    """Every agent's latest config, when it arrived, and how many new configs each received."""

    size: int
    condition: threading.Condition = field(default_factory=threading.Condition)
    arrivals: dict[int, tuple[dict, float]] = field(default_factory=dict)
    answers: dict[int, int] = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)

    def arrived(self, agent: int, config: dict) -> None:
        with self.condition:
            self.arrivals[agent] = (config, time.monotonic())
            self.answers[agent] = self.answers.get(agent, 0) + 1
            self.condition.notify_all()

    def wait_for(self, has_it, agents: list[int] | None = None, timeout: float = 30) -> list[float]:
        """Arrival times at ``agents`` (default all) of a config for which ``has_it(config)`` holds."""
        wanted = range(self.size) if agents is None else agents
        deadline = time.monotonic() + timeout
        with self.condition:
            while not all(agent in self.arrivals and has_it(self.arrivals[agent][0]) for agent in wanted):
                if not self.condition.wait(deadline - time.monotonic()):
                    raise TimeoutError(f"the change did not reach every agent in {timeout} s")
            return [self.arrivals[agent][1] for agent in wanted]


class Agent(threading.Thread):
    """Fetches its config, then long-polls (or, as the baseline, polls every POLL_PERIOD seconds)."""

    def __init__(self, index: int, port: int, token: str, fleet: Fleet, *, long_poll: bool) -> None:
        super().__init__(daemon=True)
        self.index, self.token, self.fleet, self.long_poll = index, token, fleet, long_poll
        self.http = HttpConnection(port)
        self.errors = 0

    def run(self) -> None:
        version = None
        if not self.long_poll:  # independent hosts: each polls at its own phase
            self.fleet.stopping.wait(random.uniform(0, POLL_PERIOD))
        while not self.fleet.stopping.is_set():
            headers = {"Authorization": f"Bearer {self.token}"}
            if version:
                headers["If-None-Match"] = f'"{version}"'
            started = time.monotonic()
            wait = LONG_POLL_WAIT if self.long_poll else 0
            try:
                status, _, payload = self.http.request("GET", f"/api/v1/agent/config?wait={wait}", headers)
            except OSError:
                if self.fleet.stopping.is_set():  # the server stops at the end of the run
                    break
                self.errors += 1
                self.fleet.stopping.wait(0.5)
                continue
            if status == 200:
                config = json.loads(payload)["config"]
                version = config["version"]
                self.fleet.arrived(self.index, config)
            elif status != 304:
                self.errors += 1
                self.fleet.stopping.wait(0.5)
            if not self.long_poll:  # like a client that opens a connection per poll
                self.http.close()
                self.fleet.stopping.wait(max(0.0, POLL_PERIOD - (time.monotonic() - started)))
        self.http.close()


# --- measurements ------------------------------------------------------------------------------


@dataclass
class ServerResult:
    label: str
    reach_all: list[float]  # per change: seconds until the last agent had it
    median_agent: list[float]  # per change: seconds until the median agent had it
    requests_per_host_minute: float | None = None
    bytes_per_host_minute: float | None = None
    errors: int = 0
    link_reach: list[float] = field(default_factory=list)  # per link change: until both ends had it
    link_bystander_answers: int = 0  # new configs sent to the other agents during link changes


def patch(port: int, admin_token: str, path: str, changes: dict) -> None:
    http = HttpConnection(port)
    headers = {"Authorization": f"Bearer {admin_token}", "Content-Type": "application/json"}
    status, _, payload = http.request("PATCH", path, headers, json.dumps(changes).encode())
    http.close()
    if status != 200:
        raise RuntimeError(f"PATCH {path} answered {status}: {payload[:200]!r}")


def link_cost(config: dict, peer: str) -> int | None:
    return next((link["cost"] for link in config["links"] if link["name"] == peer), None)


def measure_link_changes(port: int, admin_token: str, fleet: Fleet, result: ServerResult, changes: int) -> None:
    """Change the cost of link n0—n1 ``changes`` times: until both ends have it; what the rest got."""
    before = sum(count for agent, count in fleet.answers.items() if agent not in (0, 1))
    for change in range(changes):
        cost = 200 + change
        started = time.monotonic()
        patch(port, admin_token, "/api/v1/links/n0/n1", {"cost": cost})
        arrivals = fleet.wait_for(
            lambda config, cost=cost: cost in (link_cost(config, "n0"), link_cost(config, "n1")), [0, 1]
        )
        result.link_reach.append(max(arrivals) - started)
        time.sleep(0.3)
    result.link_bystander_answers = sum(count for agent, count in fleet.answers.items() if agent not in (0, 1)) - before


def measure_server(label: str, database_url: str, *, long_poll: bool = True, changes: int = CHANGES,
                   idle: float | None = IDLE_SECONDS) -> ServerResult:  # fmt: skip
    """Start gunicorn on ``database_url``, run the agents, time ``changes`` changes, then idle."""
    secret_key = secrets.token_urlsafe(32)
    agent_tokens, admin_token = prepare_database(database_url, secret_key)
    port = free_port()
    server = start_gunicorn(database_url, secret_key, port, GUNICORN_OPTIONS)
    fleet = Fleet(AGENTS)
    agents = [Agent(index, port, token, fleet, long_poll=long_poll) for index, token in enumerate(agent_tokens)]
    result = ServerResult(label, [], [])
    try:
        for agent in agents:
            agent.start()
        fleet.wait_for(lambda config: config["report_interval"] == 10, timeout=60 + POLL_PERIOD)  # initial config
        time.sleep(1.0)  # and is waiting again
        for change in range(changes):
            marker = 20 + change % 2
            if not long_poll:  # a change comes at any phase of the pollers' period
                time.sleep(random.uniform(0, POLL_PERIOD))
            started = time.monotonic()
            patch(port, admin_token, "/api/v1/network", {"report_interval": marker})
            arrivals = fleet.wait_for(lambda config, marker=marker: config["report_interval"] == marker,
                                      timeout=POLL_PERIOD * 3)  # fmt: skip
            arrivals = sorted(at - started for at in arrivals)
            result.reach_all.append(arrivals[-1])
            result.median_agent.append(statistics.median(arrivals))
            time.sleep(0.5 if long_poll else 0)
        if long_poll:
            measure_link_changes(port, admin_token, fleet, result, changes)
        if idle:
            time.sleep(1.0)  # the last answers and the next requests are out
            sent = sum(agent.http.sent for agent in agents)
            received = sum(agent.http.received for agent in agents)
            requests = sum(agent.http.requests for agent in agents)
            time.sleep(idle)
            minutes = idle / 60
            requests = sum(agent.http.requests for agent in agents) - requests
            traffic = sum(agent.http.sent for agent in agents) - sent + sum(agent.http.received for agent in agents)
            traffic -= received
            result.requests_per_host_minute = requests / AGENTS / minutes
            result.bytes_per_host_minute = traffic / AGENTS / minutes
    finally:
        fleet.stopping.set()
        server.terminate()
        server.wait(timeout=60)
        for agent in agents:
            agent.http.close()
    result.errors = sum(agent.errors for agent in agents)
    return result


# --- host part: from the API change to the change live in a lab host's kernel ------------------
# A triangle lab (real app under gunicorn, real agents, wireguard-go). KERNEL_CHANGES cost changes
# of link a-b go through the admin API (curl in the lab's control namespace, as every lab request);
# a watcher in each end's namespace polls sysfs brport/path_cost every 2 ms and notes, on the
# machine-wide monotonic clock, when the new cost appears. A change's time runs from just before
# the request is sent (curl's start-up in the namespace included) until both ends show it.

KERNEL_CHANGES = int(os.environ.get("BENCH_LIVE_KERNEL_CHANGES", 20))
SYSFS_WATCHER = """
import sys, time
last = None
while True:
    try:
        with open(sys.argv[1]) as file:
            value = file.read().strip()
    except OSError:
        value = None
    if value != last:
        print(time.monotonic(), value, flush=True)
        last = value
    time.sleep(0.002)
"""


@dataclass
class KernelResult:
    """Time from the API change to the change being live in a host's kernel (lab, 20 changes)."""

    median: float
    maximum: float
    changes: int
    request_median: float | None = None  # of the API request alone (curl in the namespace, answered)


class SysfsWatch(threading.Thread):
    """Collects ``(monotonic time, value)`` each time a sysfs file of a lab host changes."""

    def __init__(self, lab, host: str, path: str) -> None:
        super().__init__(daemon=True)
        self.process = lab.popen(host, [sys.executable, "-c", SYSFS_WATCHER, path], stdout=subprocess.PIPE, text=True)
        self.seen: list[tuple[float, str]] = []

    def run(self) -> None:
        for line in self.process.stdout:
            at, _, value = line.strip().partition(" ")
            self.seen.append((float(at), value))

    def first(self, value: str, after: float) -> float | None:
        return next((at for at, seen in list(self.seen) if seen == value and at >= after), None)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


def measure_kernel_apply() -> KernelResult | None:
    """API change -> live in both ends' kernels, over KERNEL_CHANGES cost changes in a triangle lab."""
    from lab.testing import lab_unavailable_reason, running_lab

    reason = lab_unavailable_reason()
    if reason is not None:
        print(f"kernel apply: not measured ({reason})")
        return None
    with running_lab("triangle") as lab:
        lab.wait_for_overlay(timeout=60)
        api = lab.api()
        ends = (("a", "b"), ("b", "a"))
        watches = [SysfsWatch(lab, host, f"/sys/class/net/{peer}/brport/path_cost") for host, peer in ends]
        for watch in watches:
            watch.start()
        times, requests = [], []
        try:
            time.sleep(1.0)
            for change in range(KERNEL_CHANGES):
                cost = 300 + change
                started = time.monotonic()
                api.call("PATCH", "/api/v1/links/a/b", {"cost": cost})
                requests.append(time.monotonic() - started)
                deadline = started + 30
                while not all(watch.first(str(cost), started) for watch in watches):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"cost {cost} did not reach both kernels within 30 s")
                    time.sleep(0.01)
                times.append(max(watch.first(str(cost), started) for watch in watches) - started)
                time.sleep(0.3)
        finally:
            for watch in watches:
                watch.stop()
    return KernelResult(statistics.median(times), max(times), len(times), statistics.median(requests))


# --- report ------------------------------------------------------------------------------------


def _seconds(values: list[float], pick) -> str:
    return f"{pick(values):.3f}" if values else "—"


def print_table(results: list[ServerResult], kernel: KernelResult | None) -> None:
    print(f"\n{AGENTS} agents, gunicorn {WORKERS} gthread workers x {THREADS} threads on 127.0.0.1;"
          " a change = PATCH /api/v1/network (every host's config changes)")  # fmt: skip
    print(f"{'mode':<30}{'changes':>8}{'reach all s':>13}{'(max)':>8}{'median agent s':>16}"
          f"{'req/host/min':>14}{'bytes/host/min':>16}{'errors':>8}")  # fmt: skip
    for result in results:
        requests = f"{result.requests_per_host_minute:.2f}" if result.requests_per_host_minute is not None else "—"
        traffic = f"{result.bytes_per_host_minute:.0f}" if result.bytes_per_host_minute is not None else "—"
        print(f"{result.label:<30}{len(result.reach_all):>8}{_seconds(result.reach_all, statistics.median):>13}"
              f"{_seconds(result.reach_all, max):>8}{_seconds(result.median_agent, statistics.median):>16}"
              f"{requests:>14}{traffic:>16}{result.errors:>8}")  # fmt: skip
    for result in results:
        if result.link_reach:
            print(f"{result.label}: a link change (cost of n0—n1) reached both ends in median "
                  f"{statistics.median(result.link_reach):.3f} s (max {max(result.link_reach):.3f} s) over "
                  f"{len(result.link_reach)} changes; new configs sent to the other {AGENTS - 2} agents: "
                  f"{result.link_bystander_answers}")  # fmt: skip
    by_label = {result.label: result for result in results}
    long_poll, baseline = by_label.get("long-poll, PostgreSQL"), by_label.get("10 s polling, PostgreSQL")
    sqlite = by_label.get("long-poll, SQLite")
    if long_poll and baseline and long_poll.reach_all and baseline.reach_all:
        ratio = statistics.median(long_poll.reach_all) / statistics.median(baseline.reach_all)
        print(f"reach all, long-poll / 10 s polling: {ratio:.3f}")
    if long_poll and baseline and long_poll.requests_per_host_minute and baseline.requests_per_host_minute:
        print(f"idle requests, long-poll / 10 s polling: "
              f"{long_poll.requests_per_host_minute / baseline.requests_per_host_minute:.3f}; idle bytes: "
              f"{long_poll.bytes_per_host_minute / baseline.bytes_per_host_minute:.3f}")  # fmt: skip
    if long_poll and sqlite and long_poll.reach_all and sqlite.reach_all:
        ratio = statistics.median(long_poll.reach_all) / statistics.median(sqlite.reach_all)
        print(f"reach all, PostgreSQL (LISTEN) / SQLite (0.2 s poll): {ratio:.3f}")
    if kernel is None:
        print("kernel apply (API change -> live in the kernel): not measured here yet (measure_kernel_apply)")
    else:
        print(f"kernel apply over {kernel.changes} changes: median {kernel.median:.3f} s, max {kernel.maximum:.3f} s")
        if kernel.request_median is not None:
            print(
                f"  (from before the request; the request alone, curl in the lab's control namespace, "
                f"median {kernel.request_median:.3f} s; triangle lab, link cost via PATCH /api/v1/links/a/b)"
            )


def main() -> None:
    results = []
    postgres = os.environ.get("BENCH_SKIP_POSTGRES") != "1" and shutil.which("pg_ctlcluster") and os.geteuid() == 0
    if postgres:
        cluster = tempfile.mkdtemp(prefix="privnet-bench-pg.")
        try:
            url = subprocess.run([str(ROOT / "scripts/postgres.sh"), "start", cluster], capture_output=True, text=True,
                                 check=True).stdout.strip()  # fmt: skip
            results.append(measure_server("long-poll, PostgreSQL", url))
            results.append(measure_server("10 s polling, PostgreSQL", url, long_poll=False, changes=BASELINE_CHANGES,
                                          idle=3 * POLL_PERIOD))  # fmt: skip
        finally:
            subprocess.run([str(ROOT / "scripts/postgres.sh"), "stop", cluster], check=False)
    else:
        print("PostgreSQL: not installed or not root; skipped")
    with tempfile.TemporaryDirectory() as directory:
        results.append(measure_server("long-poll, SQLite", f"sqlite:///{directory}/live.sqlite3", idle=None))
    print_table(results, measure_kernel_apply())


if __name__ == "__main__":
    main()
