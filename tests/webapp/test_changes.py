"""The generation counter and the per-process change notifier (webapp.changes)."""

from __future__ import annotations

import threading
import time

import pytest

from tests.conftest import require
from tests.factories import make_link, make_node
from webapp import changes, inventory
from webapp.errors import DomainError
from webapp.models import Network


def generation(db) -> int:
    db.session.expire_all()
    return db.session.get(Network, 1).generation


def test_every_desired_state_write_bumps_the_generation_once(db):
    inventory.get_network()
    steps = [
        lambda: make_node(db, name="a", endpoint="a.example:1"),
        lambda: make_node(db, name="b", endpoint="b.example:1"),
        lambda: make_link(db, "a", "b"),
        lambda: inventory.update_link(inventory.find_link("a", "b"), {"cost": 5}),
        lambda: inventory.update_node(inventory.get_node("a"), {"listen_port": 4000}),
        lambda: inventory.update_network({"report_interval": 20}),
        lambda: inventory.request_key_rotation(inventory.get_node("a")),
        lambda: inventory.delete_link(inventory.find_link("a", "b")),
        lambda: inventory.delete_node(inventory.get_node("b")),
    ]
    for number, step in enumerate(steps, start=1):
        step()
        assert generation(db) == number


def test_refused_writes_leave_the_generation(db):
    make_node(db, name="a", endpoint="a.example:1")
    before = generation(db)
    for refused in (
        lambda: make_node(db, name="a"),  # name taken
        lambda: make_link(db, "a", "nobody"),
        lambda: inventory.update_node(inventory.get_node("a"), {"listen_port": 0}),
        lambda: inventory.update_network({"stp_hello_time": 0}),
    ):
        with pytest.raises(DomainError):
            refused()
        db.session.rollback()
    assert generation(db) == before


class FakeDatabase:
    """Answers ``CHANGES_SINCE`` from a generation and each node's stamp; counts the queries."""

    def __init__(self) -> None:
        self.generation = 0
        self.stamps: dict[int, int] = {}
        self.queries = 0

    def stamp(self, *node_ids: int) -> None:
        self.generation += 1
        for node_id in node_ids:
            self.stamps[node_id] = self.generation

    def query(self, statement: str) -> list[tuple[int, int | None]]:
        self.queries += 1
        last = int(statement.split("node.config_generation > ")[1].split()[0])
        ids = [node_id for node_id, stamp in self.stamps.items() if stamp > last] or [None]
        return [(self.generation, node_id) for node_id in ids]


def wait_in_thread(notifier, mark, timeout: float = 5) -> tuple[threading.Thread, list[bool]]:
    woken: list[bool] = []
    thread = threading.Thread(target=lambda: woken.append(notifier.wait(mark, timeout)))
    thread.start()
    return thread, woken


def test_polling_notifier_wakes_only_the_waiters_of_stamped_nodes():
    database = FakeDatabase()
    notifier = changes.PollingNotifier(database.query, interval=0.02)
    try:
        assert notifier.wait(notifier.mark(1), 0.5)  # the first look tells everyone
        first, second = wait_in_thread(notifier, notifier.mark(1)), wait_in_thread(notifier, notifier.mark(2))
        time.sleep(0.1)
        database.stamp(2, 3)
        second[0].join(2)
        assert second[1] == [True]
        time.sleep(0.1)
        assert first[0].is_alive()  # node 1 was not stamped: its waiter still waits
        database.stamp(1)
        first[0].join(2)
        assert first[1] == [True]
        mark = notifier.mark(1)
        started = time.monotonic()
        assert not notifier.wait(mark, 0.2)
        assert time.monotonic() - started >= 0.2
        time.sleep(0.1)
        queries = database.queries
        time.sleep(0.2)
        assert database.queries == queries  # nobody waits: no queries
    finally:
        notifier.stop()


def test_a_generation_that_goes_back_wakes_everyone():
    notifier = changes.ChangeNotifier()
    notifier.observe([(5, None)])
    mark = notifier._everyone
    notifier.observe([(7, 3)])
    assert notifier._everyone == mark and notifier._by_key == {3: 1}
    notifier.observe([(2, None)])  # the database was reset
    assert notifier._everyone == mark + 1
    notifier.observe([])  # no network row at all
    assert notifier._everyone == mark + 2
    notifier.observe([])
    assert notifier._everyone == mark + 2


def test_listening_notifier_reconnects_and_catches_up_after_a_failure():
    database = FakeDatabase()

    class Connection:
        def __init__(self, notifications: int) -> None:
            self.notifications = notifications

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            return None

        def execute(self, statement: str):
            rows = database.query(statement) if statement.startswith("SELECT network") else []

            class Cursor:
                def fetchall(self):
                    return rows

            return Cursor()

        def notifies(self, timeout: float):
            if self.notifications:
                self.notifications -= 1
                database.stamp(4)
                yield object()
                return
            if timeout:
                time.sleep(0.05)
                raise OSError("server closed the connection")

    attempts = []

    def connect():
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            raise OSError("connection refused")
        return Connection(notifications=1)

    notifier = changes.ListeningNotifier(connect)
    try:
        thread, woken = wait_in_thread(notifier, notifier.mark(4), timeout=3)
        thread.join(4)
        assert woken == [True]
        deadline = time.monotonic() + 5
        while len(attempts) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(attempts) >= 3  # refused, then dropped, then connected again
    finally:
        notifier.stop()


def test_notifiers_are_one_per_process_and_database(app, db):
    assert changes.notifier() is changes.notifier_for(db.engine)


@pytest.mark.postgres
def test_postgres_listener_survives_a_killed_connection(app, db, database_url):
    """Terminate the LISTEN backend: the notifier reconnects and the next change still wakes waiters."""
    require(database_url.startswith("postgresql"), "needs PostgreSQL: run with TEST_DATABASE_URL (make test does)")
    from sqlalchemy import text

    make_node(db, name="a", endpoint="a.example:1")
    notifier = changes.notifier()
    notifier.mark()  # starts the listener
    query = text("SELECT pid FROM pg_stat_activity WHERE application_name = :name")
    deadline = time.monotonic() + 5
    listening = []
    while not listening and time.monotonic() < deadline:
        listening = db.session.execute(query, {"name": changes.LISTENER_NAME}).scalars().all()
        db.session.rollback()
        time.sleep(0.1)
    assert listening, "no LISTEN connection"
    for pid in listening:
        db.session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    db.session.commit()
    time.sleep(1.5)  # the listener notices and reconnects (waking everyone once)
    mark = notifier.mark(inventory.get_node("a").id)
    woken = []
    waiter = threading.Thread(target=lambda: woken.append(notifier.wait(mark, 10)))
    waiter.start()
    time.sleep(0.2)
    started = time.monotonic()
    inventory.update_node(inventory.get_node("a"), {"listen_port": 4001})
    waiter.join(10)
    assert woken == [True]
    assert time.monotonic() - started < 1
