"""API benchmark: does allocation slow down as the network grows?

Times creating a node and a link through ``/api/v1`` when 10 and when 1,000 nodes exist, and
``GET /api/v1/nodes`` at both sizes, on a SQLite file database (and on PostgreSQL when
``BENCH_DATABASE_URL`` names one). Prints medians and the 1,000-vs-10 ratios; the goal for
creates is a ratio under 1.5.

    .venv/bin/python bench/api.py
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from webapp import accounts, create_app, inventory
from webapp.config import TestingConfig
from webapp.extensions import db

SIZES = (10, 1000)
REPEATS = 30


def grow_to(size: int, secret_key: str) -> None:
    """Add nodes (each with an endpoint) and a ring of links until ``size`` nodes exist."""
    existing = len(inventory.list_nodes())
    for index in range(existing, size):
        endpoint = f"198.51.100.{index % 250 + 1}:{index + 1}"
        inventory.create_node(name=f"n{index}", endpoint=endpoint, secret_key=secret_key)
        if index:
            inventory.create_link(a=f"n{index - 1}", b=f"n{index}")


def measure(client, headers: dict, size: int) -> dict[str, float]:
    """Median milliseconds for one node create, one link create and one node list."""
    create_node, create_link, list_nodes = [], [], []
    for repeat in range(REPEATS):
        name = f"b{size}x{repeat}"
        started = time.perf_counter()
        response = client.post("/api/v1/nodes", json={"name": name, "endpoint": "203.0.113.9:1"}, headers=headers)
        create_node.append(time.perf_counter() - started)
        assert response.status_code == 201, response.text
        started = time.perf_counter()
        response = client.post("/api/v1/links", json={"a": name, "b": "n0"}, headers=headers)
        create_link.append(time.perf_counter() - started)
        assert response.status_code == 201, response.text
        started = time.perf_counter()
        response = client.get("/api/v1/nodes", headers=headers)
        list_nodes.append(time.perf_counter() - started)
        assert response.status_code == 200
        # keep the size fixed: remove the node again (its link goes with it)
        client.delete(f"/api/v1/nodes/{name}", headers=headers)
    return {
        "create node": statistics.median(create_node) * 1000,
        "create link": statistics.median(create_link) * 1000,
        "GET /api/v1/nodes": statistics.median(list_nodes) * 1000,
    }


def run(database_url: str, label: str) -> None:
    app = create_app(TestingConfig, {"SQLALCHEMY_DATABASE_URI": database_url})
    with app.app_context():
        db.drop_all()
        db.create_all()
        # 1,000 nodes need more than the seed's /24s
        inventory.update_network({"underlay_cidr": "10.88.0.0/16", "overlay_cidr": "10.99.0.0/16"})
        accounts.create_admin("bench", "bench password")
        headers = {"Authorization": f"Bearer {accounts.issue_admin_token('bench')}"}
        client = app.test_client()
        results = {}
        for size in SIZES:
            grow_to(size, app.config["SECRET_KEY"])
            measure(client, headers, size)  # warm-up
            results[size] = measure(client, headers, size)
        db.drop_all()
    small, large = results[SIZES[0]], results[SIZES[1]]
    print(f"\n{label}: median ms over {REPEATS} runs")
    print(f"{'operation':<20}{'10 nodes':>10}{'1000 nodes':>12}{'ratio':>8}")
    for operation in small:
        ratio = large[operation] / small[operation]
        print(f"{operation:<20}{small[operation]:>10.2f}{large[operation]:>12.2f}{ratio:>8.2f}")


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        run(f"sqlite:///{directory}/bench.sqlite3", "SQLite")
    if os.environ.get("BENCH_DATABASE_URL"):
        run(os.environ["BENCH_DATABASE_URL"], "PostgreSQL")


if __name__ == "__main__":
    main()
