"""The map page and the ``topology show`` command: thin views over ``webapp.monitoring``."""

from __future__ import annotations

import click
from flask import render_template
from flask_login import login_required

from .. import monitoring
from ..models import utcnow
from . import bp
from .text import render_node_text, render_topology_text


@bp.route("/")
@login_required
def show_map():
    """The graph (drawn by ``static/topology.js``) over server-rendered tables that work without JS."""
    now = utcnow()
    return render_template(
        "topology/map.html", topology=monitoring.current_topology(now), now=now, showstp=render_node_text
    )


@bp.cli.command("show")
def show_command() -> None:
    """Print the root, each link's state, stale nodes, partitions and every bridge's showstp table."""
    now = utcnow()
    click.echo(render_topology_text(monitoring.current_topology(now), now), nl=False)
