"""Link pages: thin views over ``webapp.inventory`` and ``webapp.planning``."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, url_for
from flask_login import login_required

from .. import inventory, planning
from ..errors import DomainError, NotFoundError
from ..formtools import form_values, show_domain_error
from ..nodes.forms import ConfirmForm
from . import bp
from .forms import LinkEditForm, LinkForm


def _link_or_404(a: str, b: str):
    try:
        return inventory.find_link(a, b)
    except NotFoundError as error:
        abort(404, description=error.message)


def _facts(links) -> dict[int, planning.LinkFacts]:
    network = inventory.get_network()
    plan = planning.stored_plan(network)
    return {link.id: planning.link_facts(link, network, plan) for link in links}


@bp.route("/", methods=["GET", "POST"])
@login_required
def list_links():
    nodes = inventory.list_nodes()
    form = LinkForm()
    choices = [(node.name, f"{node.name}{'' if node.endpoint else ' (no endpoint)'}") for node in nodes]
    form.a.choices = form.b.choices = choices
    if form.validate_on_submit():
        try:
            link = inventory.create_link(**form_values(form, ("a", "b", "cost")))
        except DomainError as error:
            show_domain_error(form, error)
        else:
            flash(f"Link {link.node_a.name} – {link.node_b.name} created with VNI {link.vni}.")
            return redirect(url_for("links.list_links"))
    links = inventory.list_links()
    network = inventory.get_network()
    return render_template(
        "links/list.html",
        links=links,
        facts=_facts(links),
        status=planning.plan_status(network),
        form=form,
        confirm_form=ConfirmForm(),
        has_nodes=len(nodes) > 1,
    )


@bp.route("/<a>/<b>/edit", methods=["GET", "POST"])
@login_required
def edit_link(a: str, b: str):
    link = _link_or_404(a, b)
    form = LinkEditForm(data={"cost": str(link.cost) if link.cost_pinned else ""})
    if form.validate_on_submit():
        cost = form_values(form, ("cost",))["cost"]
        try:
            # An empty cost unpins it: privnet derives it again.
            inventory.update_link(link, {"cost": cost} if cost else {"cost_pinned": False})
        except DomainError as error:
            show_domain_error(form, error)
        else:
            facts = _facts([link])[link.id]
            how = "pinned" if facts.pinned else "derived by privnet"
            flash(f"Link {a} – {b} now costs {facts.cost} ({how}).")
            return redirect(url_for("links.list_links"))
    return render_template("links/edit.html", link=link, facts=_facts([link])[link.id], form=form)


@bp.route("/<a>/<b>/delete", methods=["POST"])
@login_required
def delete_link(a: str, b: str):
    link = _link_or_404(a, b)
    if not ConfirmForm().validate_on_submit():
        abort(400, description="The form expired; reload the page and try again.")
    vni = link.vni
    inventory.delete_link(link)
    flash(f"Link {a} – {b} deleted; VNI {vni} is free again.")
    return redirect(url_for("links.list_links"))
