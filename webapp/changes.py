"""Desired-state changes: the network's generation counter and a per-process change notifier.

Writers (``webapp.inventory``) call ``bump_generation()`` first in every transaction that can change
a host's HostConfig, and stamp the nodes whose HostConfig changes with the new generation
(``Node.config_generation``). On PostgreSQL the bump also queues ``NOTIFY privnet_changes``, which
the server delivers to listeners only when the transaction commits (never if it rolls back).

Readers (the agent config long-poll) use the notifier of their database::

    notifier = notifier_for(db.engine)
    mark = notifier.mark(node.id)   # before reading the node's desired state
    ...read it, find nothing new...
    notifier.wait(mark, timeout)    # True once that node's desired state may have changed

One watcher thread per process and database observes commits: on PostgreSQL it ``LISTEN``s on a
dedicated psycopg connection (reconnecting on failure); on SQLite it polls every
``POLL_INTERVAL`` seconds, only while someone waits. On each change it asks the database, in one
query, which nodes were stamped since the generation it saw last, and wakes only the waiters of
those nodes (everyone when it cannot tell: first look, reconnect after a reset, generation went
back). Writers commit in generation order (they queue on the network row), so a generation seen
means every earlier one is visible too. The thread starts on first use (after gunicorn forked its
workers), never at import or in ``create_app``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import create_engine, insert, text, update
from sqlalchemy.engine import Engine

from .extensions import db
from .models import Network

CHANNEL = "privnet_changes"
# SQLite: how often the one watcher per process looks while anyone waits.
POLL_INTERVAL = 0.2
# PostgreSQL: how long the listener waits for a notification before checking its connection.
LISTEN_CHECK_SECONDS = 10.0
RECONNECT_MAX_SECONDS = 10.0
# application_name of the listening connections (visible in pg_stat_activity).
LISTENER_NAME = "privnet-listener"

# The network's generation and the nodes stamped after ``last``, in one snapshot.
CHANGES_SINCE = (
    "SELECT network.generation, node.id FROM network"
    " LEFT JOIN node ON node.config_generation > {last} WHERE network.id = 1"
)

log = logging.getLogger(__name__)

Rows = list[tuple[int, int | None]]


def bump_generation() -> int:
    """Add one to the network's generation in the current transaction; returns it.

    Call it before the write touches any other row: every writer of desired state queues on this
    one row lock, so writers are serialized (committing in generation order) and never deadlock on
    node rows. The session's pending ORM changes are not flushed here (Core statement).
    """
    connection = db.session.connection()
    table = Network.__table__
    generation = connection.execute(
        update(table).where(table.c.id == 1).values(generation=table.c.generation + 1).returning(table.c.generation)
    ).scalar_one_or_none()
    if generation is None:  # no network row yet: create it with the seed's defaults
        connection.execute(insert(table).values(id=1, generation=1))
        generation = 1
    for instance in list(db.session.identity_map.values()):
        if isinstance(instance, Network):
            db.session.expire(instance, ["generation"])
    if connection.dialect.name == "postgresql":
        notify = text("SELECT pg_notify(:channel, :payload)")
        connection.execute(notify, {"channel": CHANNEL, "payload": str(generation)})
    return generation


def lock_network() -> None:
    """Take the network row's lock, the one ``bump_generation`` takes, without a new generation.

    For writers that may find nothing to change (a replan): they queue behind inventory writes and
    other replans the same way, and bump only if they do change a host's desired state. On SQLite
    the statement opens the write transaction, so every read after it sees the latest commit.
    """
    table = Network.__table__
    db.session.connection().execute(update(table).where(table.c.id == 1).values(generation=table.c.generation))


@dataclass(frozen=True)
class Mark:
    """Where the change counts stood when a waiter read its state."""

    key: int | None
    everyone: int
    own: int


class ChangeNotifier:
    """Waiters block on a condition until the watcher reports a change of their node, or time out."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._everyone = 0  # changes that concern every waiter
        self._by_key: dict[int, int] = {}  # changes per node id
        self._waiting = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_generation: int | None = None

    # --- the waiters' side -----------------------------------------------------------------------

    def mark(self, key: int | None = None) -> Mark:
        """The change counts for node ``key``; take it *before* reading the state you will wait on."""
        self._ensure_started()
        with self._condition:
            return Mark(key, self._everyone, self._by_key.get(key, 0) if key is not None else 0)

    def _moved(self, mark: Mark) -> bool:
        if self._everyone != mark.everyone:
            return True
        return mark.key is not None and self._by_key.get(mark.key, 0) != mark.own

    def wait(self, mark: Mark, timeout: float) -> bool:
        """Block until a change after ``mark`` or ``timeout`` seconds; True if there was a change."""
        self._ensure_started()
        with self._condition:
            self._waiting += 1
            self._condition.notify_all()  # an idle poller starts polling
            try:
                self._condition.wait_for(lambda: self._moved(mark) or self._stopping.is_set(), max(timeout, 0.0))
                return self._moved(mark)
            finally:
                self._waiting -= 1

    @property
    def waiting(self) -> int:
        """How many threads of this process wait right now."""
        return self._waiting

    @property
    def stopped(self) -> bool:
        """True once ``stop`` ran: waits return at once (the process is shutting down)."""
        return self._stopping.is_set()

    # --- the watcher's side ----------------------------------------------------------------------

    def changed(self, keys: Iterable[int] | None = None) -> None:
        """Wake the waiters of these node ids (everyone: None)."""
        with self._condition:
            if keys is None:
                self._everyone += 1
            else:
                for key in keys:
                    self._by_key[key] = self._by_key.get(key, 0) + 1
            self._condition.notify_all()

    def observe(self, rows: Rows) -> None:
        """Wake whom a ``CHANGES_SINCE`` answer concerns, and remember its generation."""
        generation = rows[0][0] if rows else None
        last, self._last_generation = self._last_generation, generation
        if generation is None or last is None or generation < last:
            if generation != last:  # first look, no network row, or a reset: tell everyone
                self.changed()
            return
        if generation > last:
            stamped = {node_id for _, node_id in rows if node_id is not None}
            if stamped:
                self.changed(stamped)

    def _since_clause(self) -> str:
        return CHANGES_SINCE.format(last=int(self._last_generation if self._last_generation is not None else -1))

    def _ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._condition:
            if self._thread is None and not self._stopping.is_set():
                self._thread = threading.Thread(target=self._run, name=f"privnet-{type(self).__name__}", daemon=True)
                self._thread.start()

    def _wait_for_waiters(self) -> bool:
        """Block while nobody waits; False once stopping."""
        with self._condition:
            self._condition.wait_for(lambda: self._waiting > 0 or self._stopping.is_set())
        return not self._stopping.is_set()

    def _run(self) -> None:
        raise NotImplementedError

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the watcher thread and release every waiter (tests, shutdown)."""
        self._stopping.set()
        with self._condition:
            self._condition.notify_all()
        if self._thread is not None and timeout > 0:
            self._thread.join(timeout)


class PollingNotifier(ChangeNotifier):
    """Asks the database every ``interval`` seconds while someone waits (SQLite, other databases)."""

    def __init__(self, query: Callable[[str], Rows], interval: float = POLL_INTERVAL) -> None:
        super().__init__()
        self._query = query
        self._interval = interval

    def _run(self) -> None:
        while self._wait_for_waiters():
            try:
                self.observe(self._query(self._since_clause()))
            except Exception as error:  # the tables may not exist yet; keep polling
                log.debug("change poller: cannot read changes (%s)", type(error).__name__)
            self._stopping.wait(self._interval)


class TickingNotifier(ChangeNotifier):
    """For an in-memory SQLite database no other connection can see: wake everyone every interval."""

    def __init__(self, interval: float = POLL_INTERVAL) -> None:
        super().__init__()
        self._interval = interval

    def _run(self) -> None:
        while self._wait_for_waiters():
            self.changed()
            self._stopping.wait(self._interval)


class ListeningNotifier(ChangeNotifier):
    """``LISTEN privnet_changes`` on a dedicated psycopg connection; reconnects on failure."""

    def __init__(self, connect: Callable[[], object]) -> None:
        super().__init__()
        self._connect = connect

    def _run(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                with self._connect() as connection:
                    connection.execute(f"LISTEN {CHANNEL}")
                    # (Re)connected: catch up with what committed while nobody listened.
                    self.observe(connection.execute(self._since_clause()).fetchall())
                    backoff = 0.5
                    while not self._stopping.is_set():
                        notified = False
                        for _ in connection.notifies(timeout=LISTEN_CHECK_SECONDS):
                            notified = True
                            break
                        if notified:
                            for _ in connection.notifies(timeout=0):  # take the rest of a burst at once
                                pass
                            self.observe(connection.execute(self._since_clause()).fetchall())
                        else:
                            connection.execute("SELECT 1")  # a dead connection raises here
            except Exception as error:
                log.warning("change listener: %s; reconnecting in %.1f s", type(error).__name__, backoff)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, RECONNECT_MAX_SECONDS)


def _postgres_connector(engine: Engine) -> Callable[[], object]:
    import psycopg

    _, params = engine.dialect.create_connect_args(engine.url)
    params = {key: value for key, value in params.items() if key != "context"} | {"application_name": LISTENER_NAME}

    def connect():
        return psycopg.connect(autocommit=True, **params)

    return connect


def _changes_reader(engine: Engine) -> Callable[[str], Rows]:
    own = create_engine(engine.url, pool_size=1, max_overflow=0)

    def read(statement: str) -> Rows:
        with own.connect() as connection:
            return [tuple(row) for row in connection.execute(text(statement))]

    return read


def _make_notifier(engine: Engine) -> ChangeNotifier:
    url = engine.url
    if url.get_backend_name() == "postgresql":
        return ListeningNotifier(_postgres_connector(engine))
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        return TickingNotifier()
    return PollingNotifier(_changes_reader(engine))


_notifiers: dict[tuple[int, str], ChangeNotifier] = {}
_registry_lock = threading.Lock()


def notifier_for(engine: Engine) -> ChangeNotifier:
    """This process's notifier for ``engine``'s database (one watcher thread per process and URL)."""
    key = (os.getpid(), engine.url.render_as_string(hide_password=False))
    with _registry_lock:
        notifier = _notifiers.get(key)
        if notifier is None:
            notifier = _notifiers[key] = _make_notifier(engine)
    return notifier


def notifier() -> ChangeNotifier:
    """The notifier of the current app's database."""
    return notifier_for(db.engine)


def release_waiters() -> None:
    """This process is stopping: answer every waiting long-poll now (``gunicorn.conf.py``, SIGTERM)."""
    with _registry_lock:
        mine = [notifier for (pid, _), notifier in _notifiers.items() if pid == os.getpid()]
    for notifier in mine:
        notifier.stop(timeout=0)
