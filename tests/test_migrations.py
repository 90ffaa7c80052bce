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
