"""Administrators: accounts, passwords and API tokens."""

from __future__ import annotations

import secrets

from flask import current_app
from sqlalchemy import func, select

from . import tokens
from .errors import ConflictError, NotFoundError, ValidationError
from .extensions import db
from .models import User

MIN_PASSWORD_LENGTH = 10


def _hash_method() -> str:
    return current_app.config["PRIVNET_PASSWORD_HASH"]


def _check_password_rule(password: object) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError("password", f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    return password


def admin_count() -> int:
    return db.session.execute(select(func.count(User.id))).scalar_one()


def random_password() -> str:
    """A password for a first admin: 16 URL-safe characters (96 bits)."""
    return secrets.token_urlsafe(12)


def set_admin_password(name: str, password: str) -> User:
    """Change an admin's password. Commits."""
    user = db.session.execute(select(User).where(User.name == name)).scalar_one_or_none()
    if user is None:
        raise NotFoundError("name", f"no admin is called '{name}'")
    user.set_password(_check_password_rule(password), _hash_method())
    db.session.commit()
    return user


def create_admin(name: str, password: str) -> User:
    """A new administrator. Commits."""
    if not isinstance(name, str) or not 1 <= len(name) <= 64 or not name.isprintable() or name != name.strip():
        raise ValidationError("name", "name must be 1-64 printable characters without surrounding spaces")
    _check_password_rule(password)
    if db.session.execute(select(User.id).where(User.name == name)).first():
        raise ConflictError("name", f"an admin called '{name}' already exists")
    user = User(name=name)
    user.set_password(password, _hash_method())
    db.session.add(user)
    db.session.commit()
    return user


def issue_admin_token(name: str) -> str:
    """A new API token for the admin ``name``; the secret is returned once. Commits."""
    user = db.session.execute(select(User).where(User.name == name)).scalar_one_or_none()
    if user is None:
        raise NotFoundError("name", f"no admin is called '{name}'")
    secret, _ = tokens.issue_token("admin", user=user)
    db.session.commit()
    return secret


def check_credentials(name: str, password: str) -> User | None:
    """The admin with this name and password, or None (same work either way)."""
    user = db.session.execute(select(User).where(User.name == name)).scalar_one_or_none()
    if user is None:
        # Hash anyway, so a wrong name costs as long as a wrong password (no user enumeration).
        User(name=name).set_password(password, _hash_method())
        return None
    return user if user.check_password(password) else None


def load_user(user_id: str) -> User | None:
    """The admin behind a session's user id."""
    return db.session.get(User, int(user_id)) if user_id.isdigit() else None


def user_of_api_token(secret: str | None) -> User | None:
    """The admin an API token belongs to, if the token is live."""
    token = tokens.find_valid_token(secret, "admin")
    return token.user if token is not None else None
