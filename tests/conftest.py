"""Shared fixtures: app, db, client, auth, tokens and factories.

The database is SQLite unless ``TEST_DATABASE_URL`` names another (``make test`` runs the suite a
second time against a private PostgreSQL cluster). Tables are created once per session and emptied
after every test, which is fast on both backends.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from webapp import create_app
from webapp.config import TestingConfig
from webapp.extensions import db as _db

IN_CI = os.environ.get("CI") == "true"
ADMIN_PASSWORD = "correct horse battery"


def require(condition: bool, reason: str) -> None:
    """Skip outside CI when ``condition`` fails; under ``CI=true`` a missing capability is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI=true but this test cannot run: {reason}")
    pytest.skip(reason)


def have_command(name: str) -> bool:
    return shutil.which(name) is not None


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> str:
    if TestingConfig.SQLALCHEMY_DATABASE_URI != "sqlite://":
        return TestingConfig.SQLALCHEMY_DATABASE_URI
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"


@pytest.fixture(scope="session")
def _schema(database_url: str) -> Iterator[None]:
    app = create_app(TestingConfig, {"SQLALCHEMY_DATABASE_URI": database_url})
    with app.app_context():
        _db.drop_all()
        _db.create_all()
        yield
        _db.session.remove()
        _db.drop_all()
        _db.engine.dispose()


@pytest.fixture
def app(database_url: str, _schema) -> Iterator[Flask]:
    app = create_app(TestingConfig, {"SQLALCHEMY_DATABASE_URI": database_url})
    with app.app_context():
        yield app
        _db.session.remove()
        with _db.engine.begin() as connection:
            for table in reversed(_db.metadata.sorted_tables):
                connection.execute(table.delete())
        _db.engine.dispose()


@pytest.fixture
def db(app):
    return _db


@pytest.fixture
def client(app) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def admin(app):
    from webapp import accounts

    return accounts.create_admin("admin", ADMIN_PASSWORD)


@pytest.fixture
def auth(client: FlaskClient, admin) -> FlaskClient:
    """A client logged in as the admin through the login form."""
    response = client.post("/login", data={"name": "admin", "password": ADMIN_PASSWORD})
    assert response.status_code == 302, response.text
    return client


@pytest.fixture
def api_token(admin) -> str:
    from webapp import accounts

    return accounts.issue_admin_token("admin")


@pytest.fixture
def api(client: FlaskClient, api_token: str):
    """``api(method, path, json=None)`` with the admin's bearer token."""

    def call(method: str, path: str, json=None, **kwargs):
        headers = {"Authorization": f"Bearer {api_token}", **kwargs.pop("headers", {})}
        return client.open(path, method=method, json=json, headers=headers, **kwargs)

    return call
