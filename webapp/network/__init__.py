"""The network settings page."""

from flask import Blueprint

bp = Blueprint("network", __name__, url_prefix="/network")

from . import routes  # noqa: E402,F401
