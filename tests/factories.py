"""Factories for tests: ``make_node(db, **overrides)``, ``make_link(db, a, b)``."""

from __future__ import annotations

from webapp.config import TestingConfig
from webapp.models import Link, Node


def make_node(db, **overrides) -> Node:
    """A node through the service layer, with seed-like defaults."""
    from webapp import inventory

    values = {"name": "rho", "endpoint": "192.0.2.10:56560"} | overrides
    return inventory.create_node(secret_key=TestingConfig.SECRET_KEY, **values)


def make_link(db, a: str, b: str, **overrides) -> Link:
    from webapp import inventory

    return inventory.create_link(a=a, b=b, **overrides)


def make_agents(db, names: tuple[str, ...], links: tuple[tuple[str, str], ...] = ()) -> dict[str, str]:
    """Nodes (each with an endpoint) and an agent token for each, plus ``links``; tokens by name."""
    from webapp import tokens

    secrets = {}
    for name in names:
        node = make_node(db, name=name, endpoint=f"{name}.example:56560")
        secrets[name], _ = tokens.issue_token("agent", node=node)
    for a, b in links:
        make_link(db, a, b)
    db.session.commit()
    return secrets
