"""The home page and the app-wide error pages."""

from flask import Blueprint

bp = Blueprint("main", __name__)

from . import routes  # noqa: E402,F401  (routes attach themselves to bp)
