"""Configuration classes; the only module that reads ``os.environ``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

INSTANCE_DIR = Path(__file__).resolve().parent.parent / "instance"


class ConfigError(RuntimeError):
    """The configuration cannot work (e.g. no SECRET_KEY in production)."""


def _sqlite_default() -> str:
    return f"sqlite:///{INSTANCE_DIR / 'privnet.sqlite3'}"


class Config:
    """Settings shared by every environment."""

    SECRET_KEY = os.environ.get("SECRET_KEY")
    SQLALCHEMY_DATABASE_URI = os.environ.get("DATABASE_URL") or _sqlite_default()
    SQLALCHEMY_ENGINE_OPTIONS: ClassVar[dict] = {"pool_pre_ping": True}
    PRIVNET_URL = os.environ.get("PRIVNET_URL", "http://127.0.0.1:5000").rstrip("/")
    # Seconds an enrollment link stays valid.
    PRIVNET_ENROLLMENT_TTL = int(os.environ.get("PRIVNET_ENROLLMENT_TTL", 24 * 3600))
    PRIVNET_LOGIN_RATE_LIMIT = os.environ.get("PRIVNET_LOGIN_RATE_LIMIT", "10 per minute")
    # werkzeug's scrypt (N=2^15); see TestingConfig for why the tests use less.
    PRIVNET_PASSWORD_HASH = "scrypt"  # noqa: S105 (a method name, not a password)
    RATELIMIT_STORAGE_URI = os.environ.get("RATELIMIT_STORAGE_URI", "memory://")
    RATELIMIT_HEADERS_ENABLED = True
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    WTF_CSRF_TIME_LIMIT = None
    # Largest request body the app accepts (agent reports are the biggest).
    MAX_CONTENT_LENGTH = 1024 * 1024

    @staticmethod
    def check(settings: Mapping) -> None:
        """Refuse to start with settings that would be unsafe."""
        if not settings.get("SECRET_KEY"):
            raise ConfigError("SECRET_KEY is not set: set it in the environment before starting privnet")


class DevelopmentConfig(Config):
    """``make run``: a fixed development key is tolerated, with a warning in the README."""

    # Only for `make run` on 127.0.0.1; production refuses to start without SECRET_KEY.
    SECRET_KEY = os.environ.get("SECRET_KEY") or "privnet-development-key-change-me"


class ProductionConfig(Config):
    """gunicorn behind a real URL: everything must come from the environment."""

    SESSION_COOKIE_SECURE = os.environ.get("PRIVNET_URL", "").startswith("https://")


class TestingConfig(Config):
    """The test suite: ``TEST_DATABASE_URL`` (PostgreSQL in ``make test``) or else a file the fixtures pick."""

    TESTING = True
    SECRET_KEY = "test-secret-key"  # noqa: S105
    SQLALCHEMY_DATABASE_URI = os.environ.get("TEST_DATABASE_URL") or "sqlite://"
    WTF_CSRF_ENABLED = False
    # A cheap scrypt keeps each test's login fast; the hashing code path is the same.
    PRIVNET_PASSWORD_HASH = "scrypt:1024:8:1"  # noqa: S105 (a method name)
    RATELIMIT_ENABLED = False
    PRIVNET_URL = "http://privnet.test"


CONFIGS = {
    "development": DevelopmentConfig,
    "production": ProductionConfig,
    "testing": TestingConfig,
}


def config_from_environment() -> type[Config]:
    """The config class named by ``PRIVNET_ENV`` (default: development)."""
    name = os.environ.get("PRIVNET_ENV", "development")
    if name not in CONFIGS:
        raise ConfigError(f"PRIVNET_ENV must be one of {', '.join(CONFIGS)}, not {name!r}")
    return CONFIGS[name]
