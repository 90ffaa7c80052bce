"""The topology map page (``/topology/``) and its terminal twin ``flask --app wsgi topology show``."""

from flask import Blueprint

bp = Blueprint("topology", __name__, url_prefix="/topology", cli_group="topology")

from . import routes  # noqa: E402,F401
