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


def test_live_config_migration_keeps_every_row_that_refers_to_a_node(migration_url: str):
    """Making ``private_key_encrypted`` nullable copies the node table on SQLite: nothing may cascade."""
    app = create_app(TestingConfig, {"SQLALCHEMY_DATABASE_URI": migration_url})
    counts = "SELECT (SELECT count(*) FROM node), (SELECT count(*) FROM link), (SELECT count(*) FROM token)"
    with app.app_context():
        upgrade(revision="d7f92bf7bc77")
        with db.engine.begin() as connection:
            connection.execute(sa.text(
                "INSERT INTO network (id, name, underlay_cidr, overlay_cidr, bridge_name, vxlan_port, listen_port,"
                " stp_hello_time, stp_forward_delay, stp_max_age, report_interval)"
                " VALUES (1, 'p', '10.88.88.0/24', '10.99.99.0/24', 'internet', 4789, 56560, 1, 2, 6, 10)"
            ))  # fmt: skip
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
