"""Pages for links: list, create, delete."""

from flask import Blueprint

bp = Blueprint("links", __name__, url_prefix="/links")

from . import routes  # noqa: E402,F401
