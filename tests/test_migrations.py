"""Migrations: upgrade from empty, downgrade to base, and no drift from the models."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from webapp import create_app
from webapp.config import TestingConfig
from webapp.extensions import db


@pytest.fixture
def migration_url(database_url: str, tmp_path) -> str:
    """An empty database of the same backend as the suite's, only for this test."""
    if not database_url.startswith("postgresql"):
        return f"sqlite:///{tmp_path / 'migrations.sqlite3'}"
    url = sa.engine.make_url(database_url)
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sa.text("DROP DATABASE IF EXISTS privnet_migrations"))
        connection.execute(sa.text("CREATE DATABASE privnet_migrations"))
    engine.dispose()
    return url.set(database="privnet_migrations").render_as_string(hide_password=False)


def test_upgrade_downgrade_and_no_pending_changes(migration_url: str):
    app = create_app(TestingConfig, {"SQLALCHEMY_DATABASE_URI": migration_url})
    with app.app_context():
        upgrade()
        tables = set(sa.inspect(db.engine).get_table_names())
        assert {"network", "node", "link", "user", "token"} <= tables
        with db.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, db.metadata) == []
        downgrade(revision="base")
        assert set(sa.inspect(db.engine).get_table_names()) <= {"alembic_version"}
        upgrade()
        db.engine.dispose()


def insert_network(connection: sa.Connection) -> None:
    """The network row as the revisions before tree planning have it."""
    connection.execute(sa.text(
        "INSERT INTO network (id, name, underlay_cidr, overlay_cidr, bridge_name, vxlan_port, listen_port,"
        " stp_hello_time, stp_forward_delay, stp_max_age, report_interval)"
        " VALUES (1, 'p', '10.88.88.0/24', '10.99.99.0/24', 'internet', 4789, 56560, 1, 2, 6, 10)"
    ))  # fmt: skip


def test_live_config_migration_keeps_every_row_that_refers_to_a_node(migration_url: str):
    """Making ``private_key_encrypted`` nullable copies the node table on SQLite: nothing may cascade."""
    app = create_app(TestingConfig, {"SQLALCHEMY_DATABASE_URI": migration_url})
    counts = "SELECT (SELECT count(*) FROM node), (SELECT count(*) FROM link), (SELECT count(*) FROM token)"
    with app.app_context():
        upgrade(revision="d7f92bf7bc77")
        with db.engine.begin() as connection:
            insert_network(connection)
            for number, name in ((1, "a"), (2, "b")):
                connection.execute(
                    sa.text(
                        "INSERT INTO node (id, name, location, listen_port, underlay_ip, overlay_ip, public_key,"
                        " private_key_encrypted, bridge_priority, created_at) VALUES (:id, :name, '', 1, :u, :o, :k,"
                        " :p, 32768, :t)"
                    ),
                    {"id": number, "name": name, "u": f"10.88.88.{number}", "o": f"10.99.99.{number}",
                     "k": name * 44, "p": b"sealed", "t": "2026-01-01T00:00:00+00:00"},
                )  # fmt: skip
            connection.execute(sa.text(
                "INSERT INTO link (id, node_a_id, node_b_id, vni, cost, enabled, created_at)"
                " VALUES (1, 1, 2, 1, 100, true, '2026-01-01T00:00:00+00:00')"
            ))  # fmt: skip
            connection.execute(sa.text(
                "INSERT INTO token (id, kind, token_hash, node_id, created_at)"
                " VALUES (1, 'agent', 'h', 1, '2026-01-01T00:00:00+00:00')"
            ))  # fmt: skip
        upgrade()
        with db.engine.begin() as connection:
            assert tuple(connection.execute(sa.text(counts)).one()) == (2, 1, 1)
            connection.execute(sa.text("UPDATE node SET private_key_encrypted = NULL WHERE id = 2"))
        with pytest.raises(SystemExit):  # Flask-Migrate logs the RuntimeError and exits
            downgrade(revision="d7f92bf7bc77")
        with db.engine.begin() as connection:
            connection.execute(sa.text("UPDATE node SET private_key_encrypted = :p WHERE id = 2"), {"p": b"sealed"})
        downgrade(revision="d7f92bf7bc77")
        with db.engine.begin() as connection:
            assert tuple(connection.execute(sa.text(counts)).one()) == (2, 1, 1)
        db.engine.dispose()


def test_tree_planning_migration_pins_what_admins_set(migration_url: str):
    """Costs other than 100 and priorities other than 32768 were chosen by an admin: they stay as they are."""
    app = create_app(TestingConfig, {"SQLALCHEMY_DATABASE_URI": migration_url})
    counts = "SELECT (SELECT count(*) FROM node), (SELECT count(*) FROM link), (SELECT count(*) FROM token)"
    with app.app_context():
        upgrade(revision="3f7161630922")
        with db.engine.begin() as connection:
            insert_network(connection)
            for number, (name, priority) in enumerate((("a", 32768), ("b", 4096), ("c", 32768)), start=1):
                connection.execute(
                    sa.text(
                        "INSERT INTO node (id, name, location, listen_port, underlay_ip, overlay_ip, underlay_int,"
                        " overlay_int, public_key, private_key_encrypted, bridge_priority, created_at) VALUES (:id,"
                        " :name, '', 1, :u, :o, :ui, :oi, :k, :p, :priority, :t)"
                    ),
                    {"id": number, "name": name, "u": f"10.88.88.{number}", "o": f"10.99.99.{number}",
                     "ui": 0x0A585800 + number, "oi": 0x0A636300 + number, "k": name * 44, "p": b"sealed",
                     "priority": priority, "t": "2026-01-01T00:00:00+00:00"},
                )  # fmt: skip
            for number, (a, b, cost) in enumerate(((1, 2, 100), (1, 3, 250), (2, 3, 100)), start=1):
                connection.execute(
                    sa.text(
                        "INSERT INTO link (id, node_a_id, node_b_id, vni, cost, enabled, created_at)"
                        " VALUES (:id, :a, :b, :id, :cost, true, '2026-01-01T00:00:00+00:00')"
                    ),
                    {"id": number, "a": a, "b": b, "cost": cost},
                )
            connection.execute(sa.text(
                "INSERT INTO token (id, kind, token_hash, node_id, created_at)"
                " VALUES (1, 'agent', 'h', 1, '2026-01-01T00:00:00+00:00')"
            ))  # fmt: skip
        upgrade()
        with db.engine.begin() as connection:
            pinned_links = connection.execute(sa.text("SELECT id FROM link WHERE cost_pinned ORDER BY id")).scalars()
            assert list(pinned_links) == [2]
            pinned_nodes = connection.execute(sa.text("SELECT name FROM node WHERE priority_pinned")).scalars()
            assert list(pinned_nodes) == ["b"]
            mode, plan = connection.execute(sa.text("SELECT tree_mode, plan FROM network")).one()
            assert (mode, plan) == ("latency", None)
            with pytest.raises(sa.exc.IntegrityError), connection.begin_nested():  # only the two modes
                connection.execute(sa.text("UPDATE network SET tree_mode = 'fastest'"))
            assert tuple(connection.execute(sa.text(counts)).one()) == (3, 3, 1)
        downgrade(revision="3f7161630922")
        with db.engine.begin() as connection:
            assert tuple(connection.execute(sa.text(counts)).one()) == (3, 3, 1)
            assert "cost_pinned" not in {column["name"] for column in sa.inspect(connection).get_columns("link")}
        db.engine.dispose()
