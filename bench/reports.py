"""Agent reports benchmark: how many reports per second the app accepts, on SQLite and PostgreSQL.

1,000 simulated agents (one node and agent token each, reports shaped like a converged network's,
from ``bench/topology.py``) post their reports over HTTP to gunicorn with 2 workers on
127.0.0.1, from 16 client threads with keep-alive connections, for 3 rounds. Prints accepted
reports per second per database, and the ratio PostgreSQL / SQLite. PostgreSQL runs when the
server binaries are installed and we are root (a private cluster, ``scripts/postgres.sh``).
The time to build the topology at 1,000 nodes / 3,000 links vs 10 / 30 is ``bench/topology.py``.

    sudo .venv/bin/python bench/reports.py
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from appserver import free_port, start_gunicorn  # noqa: E402  (bench/appserver.py)
from topology import synthetic_network  # noqa: E402  (bench/topology.py)

from webapp import create_app, inventory, tokens  # noqa: E402
from webapp.config import TestingConfig  # noqa: E402
from webapp.extensions import db  # noqa: E402

AGENTS = 1000
ROUNDS = 3
CLIENT_THREADS = 16
WORKERS = 2


def prepare_database(database_url: str, secret_key: str) -> dict[str, tuple[str, bytes]]:
    """Nodes and agent tokens for every simulated agent; returns name -> (token, report body)."""
    nodes, _, reports = synthetic_network(AGENTS)
    app = create_app(TestingConfig, {"SQLALCHEMY_DATABASE_URI": database_url, "SECRET_KEY": secret_key})
    agents = {}
    with app.app_context():
        db.drop_all()
        db.create_all()
        inventory.update_network({"underlay_cidr": "10.88.0.0/16", "overlay_cidr": "10.99.0.0/16"})
        for node in nodes:
            row = inventory.create_node(name=node.name, endpoint="198.51.100.1:56560", secret_key=secret_key)
            secret, _ = tokens.issue_token("agent", node=row)
            body = json.dumps(reports[node.name].report.to_dict()).encode()
            agents[node.name] = (secret, body)
        db.session.commit()
        db.engine.dispose()
    return agents


def post_reports(port: int, agents: dict[str, tuple[str, bytes]]) -> tuple[int, int, float]:
    """(accepted, refused, seconds) for ROUNDS rounds of one report per agent."""
    jobs = [item for _ in range(ROUNDS) for item in agents.items()]
    local = threading.local()
    counts = {"accepted": 0, "refused": 0}
    lock = threading.Lock()

    def send(job: tuple[str, tuple[str, bytes]]) -> None:
        _, (token, body) = job
        if not hasattr(local, "connection"):
            local.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        local.connection.request("POST", "/api/v1/agent/report", body=body, headers=headers)
        response = local.connection.getresponse()
        response.read()
        with lock:
            counts["accepted" if response.status == 202 else "refused"] += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        list(pool.map(send, jobs))
    return counts["accepted"], counts["refused"], time.perf_counter() - started


def run(label: str, database_url: str) -> float:
    secret_key = secrets.token_urlsafe(32)
    agents = prepare_database(database_url, secret_key)
    port = free_port()
    server = start_gunicorn(database_url, secret_key, port, ("-w", str(WORKERS)))
    try:
        accepted, refused, seconds = post_reports(port, agents)
    finally:
        server.terminate()
        server.wait(timeout=30)
    rate = accepted / seconds
    print(f"{label:<12}{accepted:>10}{refused:>9}{seconds:>10.2f}{rate:>14.0f}")
    return rate


def main() -> None:
    print(f"{AGENTS} agents x {ROUNDS} rounds, gunicorn {WORKERS} workers, {CLIENT_THREADS} client threads")
    print(f"{'database':<12}{'accepted':>10}{'refused':>9}{'seconds':>10}{'reports/s':>14}")
    with tempfile.TemporaryDirectory() as directory:
        sqlite_rate = run("SQLite", f"sqlite:///{directory}/reports.sqlite3")
    postgres_bin = os.environ.get("BENCH_SKIP_POSTGRES") != "1" and shutil.which("pg_ctlcluster") and os.geteuid() == 0
    if not postgres_bin:
        print("PostgreSQL: not installed or not root; skipped")
        return
    cluster = tempfile.mkdtemp(prefix="privnet-bench-pg.")
    try:
        url = subprocess.run([str(ROOT / "scripts/postgres.sh"), "start", cluster], capture_output=True, text=True,
                             check=True).stdout.strip()  # fmt: skip
        postgres_rate = run("PostgreSQL", url)
    finally:
        subprocess.run([str(ROOT / "scripts/postgres.sh"), "stop", cluster], check=False)
    print(f"ratio PostgreSQL / SQLite: {postgres_rate / sqlite_rate:.2f}")


if __name__ == "__main__":
    main()
