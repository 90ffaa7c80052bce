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
