"""Race-free allocation: concurrent creates never share an address or a VNI (PostgreSQL)."""

from __future__ import annotations

import threading

import pytest

from tests.conftest import require
from webapp import inventory
from webapp.config import TestingConfig
from webapp.errors import ConflictError
from webapp.models import Link, Node

pytestmark = pytest.mark.postgres

THREADS = 8
NODES_PER_THREAD = 6


def run_in_threads(app, work, count: int = THREADS) -> list[BaseException]:
    """Run ``work(index)`` in ``count`` threads released at once, each in its own app context."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def runner(index: int) -> None:
        with app.app_context():
            barrier.wait()
            try:
                work(index)
            except BaseException as error:
                errors.append(error)
            finally:
                from webapp.extensions import db

                db.session.remove()

    threads = [threading.Thread(target=runner, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return errors


@pytest.fixture
def postgres_app(app, database_url):
    require(database_url.startswith("postgresql"), "needs PostgreSQL: run with TEST_DATABASE_URL (make test does)")
    return app


def test_concurrent_node_creates_get_distinct_addresses(postgres_app, db):
    inventory.get_network()

    def create_nodes(index: int) -> None:
        for number in range(NODES_PER_THREAD):
            inventory.create_node(
                name=f"n{index}-{number}", endpoint=f"h{index}.example:1", secret_key=TestingConfig.SECRET_KEY
            )

    assert run_in_threads(postgres_app, create_nodes) == []
    nodes = db.session.execute(db.select(Node)).scalars().all()
    assert len(nodes) == THREADS * NODES_PER_THREAD
    assert len({node.underlay_ip for node in nodes}) == len(nodes)
    assert len({node.overlay_ip for node in nodes}) == len(nodes)
    # lowest-free held under contention: exactly .1 .. .48, no gaps
    assert sorted(int(node.underlay_ip.rsplit(".", 1)[1]) for node in nodes) == list(range(1, len(nodes) + 1))


def test_concurrent_link_creates_get_distinct_vnis(postgres_app, db):
    names = [f"n{index}" for index in range(THREADS + 1)]
    for name in names:
        inventory.create_node(name=name, endpoint=f"{name}.example:1", secret_key=TestingConfig.SECRET_KEY)

    def create_links(index: int) -> None:
        for other in names[index + 1 :]:
            inventory.create_link(a=names[index], b=other)

    assert run_in_threads(postgres_app, create_links) == []
    links = db.session.execute(db.select(Link)).scalars().all()
    expected = len(names) * (len(names) - 1) // 2
    assert len(links) == expected
    assert sorted(link.vni for link in links) == list(range(1, expected + 1))


def test_concurrent_same_name_creates_one_node(postgres_app, db):
    outcomes: list[str] = []

    def create_same(index: int) -> None:
        try:
            inventory.create_node(name="rho", secret_key=TestingConfig.SECRET_KEY)
            outcomes.append("created")
        except ConflictError:
            outcomes.append("conflict")

    assert run_in_threads(postgres_app, create_same) == []
    assert sorted(outcomes) == ["conflict"] * (THREADS - 1) + ["created"]
