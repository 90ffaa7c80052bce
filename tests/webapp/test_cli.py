"""``flask admin create|token|ensure|password``."""

import pytest

from webapp import accounts
from webapp.models import Token


def test_admin_create_reads_password_from_environment(app, monkeypatch):
    monkeypatch.setenv("PRIVNET_ADMIN_PASSWORD", "a long enough password")
    result = app.test_cli_runner().invoke(args=["admin", "create", "alice"])
    assert result.exit_code == 0, result.output
    assert accounts.check_credentials("alice", "a long enough password") is not None


def test_admin_create_prompts_and_refuses_short_passwords(app, monkeypatch):
    monkeypatch.delenv("PRIVNET_ADMIN_PASSWORD", raising=False)
    result = app.test_cli_runner().invoke(args=["admin", "create", "bob"], input="short\nshort\n")
    assert result.exit_code != 0
    assert "at least 10 characters" in result.output
    assert accounts.admin_count() == 0


def test_admin_token_prints_a_working_token(app, admin, client, db):
    result = app.test_cli_runner().invoke(args=["admin", "token", "admin"])
    secret = result.output.strip()
    assert len(secret) == 43
    assert client.get("/api/v1/nodes", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    assert db.session.execute(db.select(Token.token_hash)).scalar_one() != secret


def test_admin_token_for_unknown_admin_fails(app):
    result = app.test_cli_runner().invoke(args=["admin", "token", "nobody"])
    assert result.exit_code != 0
    assert "no admin is called 'nobody'" in result.output


def test_ensure_creates_the_first_admin_once(app, monkeypatch):
    monkeypatch.delenv("PRIVNET_ADMIN_PASSWORD", raising=False)
    runner = app.test_cli_runner()
    first = runner.invoke(args=["admin", "ensure", "admin"])
    password = first.output.split("password: ")[1].split()[0]
    assert accounts.check_credentials("admin", password) is not None
    second = runner.invoke(args=["admin", "ensure", "admin"])
    assert "exists already" in second.output
    assert accounts.admin_count() == 1


def test_production_refuses_to_start_without_a_secret_key():
    from webapp import create_app
    from webapp.config import ConfigError, ProductionConfig

    with pytest.raises(ConfigError, match="SECRET_KEY is not set"):
        create_app(ProductionConfig, {"SECRET_KEY": None, "SQLALCHEMY_DATABASE_URI": "sqlite://"})
