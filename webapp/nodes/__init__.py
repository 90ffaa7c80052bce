"""Pages for nodes: list, detail, create, edit, delete, enrollment."""

from flask import Blueprint

bp = Blueprint("nodes", __name__, url_prefix="/nodes")

from . import routes  # noqa: E402,F401
