"""Node pages: thin views over ``webapp.inventory``."""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, url_for
from flask_login import login_required

from .. import inventory, liveconfig, planning
from ..errors import DomainError, NotFoundError
from ..formtools import form_values, show_domain_error
from . import bp
from .forms import ConfirmForm, NodeForm

EDITABLE_FIELDS = ("location", "endpoint", "listen_port", "bridge_priority", "underlay_ip", "overlay_ip")


def _node_or_404(name: str):
    try:
        return inventory.get_node(name)
    except NotFoundError:
        abort(404, description=f"No node is called '{name}'.")


@bp.route("/")
@login_required
def list_nodes():
    nodes = inventory.list_nodes()
    network = inventory.get_network()
    plan = planning.stored_plan(network)
    return render_template(
        "nodes/list.html",
        nodes=nodes,
        network=network,
        facts={node.id: planning.node_facts(node, network, plan) for node in nodes},
        sync=liveconfig.sync_statuses(current_app.config["PRIVNET_URL"]),
    )


@bp.route("/new", methods=["GET", "POST"])
@login_required
def create_node():
    form = NodeForm()
    if form.validate_on_submit():
        try:
            node = inventory.create_node(
                secret_key=current_app.config["SECRET_KEY"],
                **form_values(form, ("name", *EDITABLE_FIELDS)),
            )
        except DomainError as error:
            show_domain_error(form, error)
        else:
            flash(f"Node {node.name} created: {node.underlay_ip} on the underlay, {node.overlay_ip} on the overlay.")
            enrollment = inventory.issue_enrollment(
                node,
                app_url=current_app.config["PRIVNET_URL"],
                ttl_seconds=current_app.config["PRIVNET_ENROLLMENT_TTL"],
            )
            return render_template("nodes/enrollment.html", node=node, enrollment=enrollment)
    return render_template("nodes/form.html", form=form, node=None)


@bp.route("/<name>")
@login_required
def show_node(name: str):
    node = _node_or_404(name)
    links = inventory.links_of(node)
    network = inventory.get_network()
    plan = planning.stored_plan(network)
    return render_template(
        "nodes/detail.html",
        node=node,
        facts=planning.node_facts(node, network, plan),
        links=links,
        link_facts={link.id: planning.link_facts(link, network, plan) for link in links},
        sync=liveconfig.sync_status(node, current_app.config["PRIVNET_URL"]),
        confirm_form=ConfirmForm(),
    )


@bp.route("/<name>/edit", methods=["GET", "POST"])
@login_required
def edit_node(name: str):
    node = _node_or_404(name)
    form = NodeForm(data={"name": node.name, **{field: _form_value(node, field) for field in EDITABLE_FIELDS}})
    if form.validate_on_submit():
        values = form_values(form, EDITABLE_FIELDS)
        if not values["bridge_priority"]:  # empty: unpinned, privnet derives it
            del values["bridge_priority"]
            values["priority_pinned"] = False
        try:
            inventory.update_node(node, values)
        except DomainError as error:
            show_domain_error(form, error)
        else:
            flash(f"Node {node.name} saved.")
            return redirect(url_for("nodes.show_node", name=node.name))
    network = inventory.get_network()
    facts = planning.node_facts(node, network, planning.stored_plan(network))
    return render_template("nodes/form.html", form=form, node=node, facts=facts)


def _form_value(node, field: str) -> str:
    if field == "bridge_priority" and not node.priority_pinned:
        return ""  # derived by privnet: the field stays empty unless the admin pins a priority
    value = getattr(node, field)
    return "" if value is None else str(value)


@bp.route("/<name>/delete", methods=["GET", "POST"])
@login_required
def delete_node(name: str):
    node = _node_or_404(name)
    form = ConfirmForm()
    if form.validate_on_submit():
        inventory.delete_node(node)
        flash(f"Node {name} and its links were deleted; its addresses and VNIs are free again.")
        return redirect(url_for("nodes.list_nodes"))
    return render_template("nodes/delete.html", node=node, links=inventory.links_of(node), form=form)


@bp.route("/<name>/enrollment", methods=["POST"])
@login_required
def issue_enrollment(name: str):
    """A fresh enrollment link, shown once: only its hash is stored."""
    node = _node_or_404(name)
    if not ConfirmForm().validate_on_submit():
        abort(400, description="The form expired; reload the page and try again.")
    enrollment = inventory.issue_enrollment(
        node, app_url=current_app.config["PRIVNET_URL"], ttl_seconds=current_app.config["PRIVNET_ENROLLMENT_TTL"]
    )
    return render_template("nodes/enrollment.html", node=node, enrollment=enrollment)


@bp.route("/<name>/rotate-key", methods=["POST"])
@login_required
def rotate_key(name: str):
    """Ask the node's agent for a new key pair (the host makes it; the app learns the public half)."""
    node = _node_or_404(name)
    if not ConfirmForm().validate_on_submit():
        abort(400, description="The form expired; reload the page and try again.")
    inventory.request_key_rotation(node)
    flash(
        f"Key rotation requested: {node.name}'s agent makes a new key pair and sends its public key; "
        "its peers switch to it then."
    )
    return redirect(url_for("nodes.show_node", name=node.name))
