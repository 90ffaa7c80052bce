"""Link pages: thin views over ``webapp.inventory``."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, url_for
from flask_login import login_required

from .. import inventory
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
    return render_template(
        "links/list.html", links=inventory.list_links(), form=form, confirm_form=ConfirmForm(), has_nodes=len(nodes) > 1
    )


@bp.route("/<a>/<b>/edit", methods=["GET", "POST"])
@login_required
def edit_link(a: str, b: str):
    link = _link_or_404(a, b)
    form = LinkEditForm(data={"cost": str(link.cost)})
    if form.validate_on_submit():
        try:
            inventory.update_link(link, form_values(form, ("cost",)))
        except DomainError as error:
            show_domain_error(form, error)
        else:
            flash(f"Link {a} – {b} now costs {link.cost}.")
            return redirect(url_for("links.list_links"))
    return render_template("links/edit.html", link=link, form=form)


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
