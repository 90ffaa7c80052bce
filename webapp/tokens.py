"""Bearer tokens: random secrets handed out once and stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta

from sqlalchemy.orm import joinedload

from .extensions import db
from .models import Node, Token, User, utcnow

# token_urlsafe(32): 256 bits, and only [A-Za-z0-9_-], so a token is safe in a URL and a shell word.
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{43}$")


def hash_token(secret: str) -> str:
    """The stored form of a token. Tokens are 256 random bits, so a fast hash is enough."""
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_token(
    kind: str, *, node: Node | None = None, user: User | None = None, ttl: timedelta | None = None
) -> tuple[str, Token]:
    """A new token of ``kind``; returns the secret (shown once) and the stored row (not committed)."""
    secret = secrets.token_urlsafe(32)
    token = Token(
        kind=kind,
        token_hash=hash_token(secret),
        node=node,
        user=user,
        expires_at=utcnow() + ttl if ttl else None,
    )
    db.session.add(token)
    return secret, token


def find_valid_token(secret: str | None, kind: str, *, now: datetime | None = None) -> Token | None:
    """The live token of ``kind`` with this secret, or None if unknown, revoked or expired."""
    if not secret or not TOKEN_PATTERN.fullmatch(secret):
        return None
    token = db.session.execute(
        db.select(Token)
        .where(Token.token_hash == hash_token(secret), Token.kind == kind)
        .options(joinedload(Token.node))  # callers want the node: one query, not two
    ).scalar_one_or_none()
    if token is None or token.revoked_at is not None:
        return None
    if token.expires_at is not None and token.expires_at <= (now or utcnow()):
        return None
    return token


def revoke_tokens(kind: str, *, node: Node | None = None, user: User | None = None) -> int:
    """Revoke every live token of ``kind`` for a node or user; returns how many."""
    query = db.select(Token).where(Token.kind == kind, Token.revoked_at.is_(None))
    if node is not None:
        query = query.where(Token.node_id == node.id)
    if user is not None:
        query = query.where(Token.user_id == user.id)
    tokens = db.session.execute(query).scalars().all()
    for token in tokens:
        token.revoked_at = utcnow()
    return len(tokens)
