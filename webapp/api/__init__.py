"""JSON API v1 (design.md §4)."""

from flask import Blueprint

from ..extensions import csrf

bp = Blueprint("api", __name__, url_prefix="/api/v1")
# Bearer-token clients carry no CSRF token; session writes are checked in api.auth instead.
csrf.exempt(bp)

from . import agent, routes  # noqa: E402,F401
