"""Network settings: one form over ``inventory.update_network``."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_login import login_required

from .. import inventory
from ..errors import DomainError
from ..formtools import form_values, show_domain_error
from . import bp
from .forms import NetworkForm


@bp.route("/", methods=["GET", "POST"])
@login_required
def edit_network():
    network = inventory.get_network()
    current = {field: str(getattr(network, field)) for field in inventory.NETWORK_FIELDS}
    form = NetworkForm(data=current | {"fast_failover": str(network.fast_failover).lower()})
    if form.validate_on_submit():
        values: dict[str, object] = form_values(form, inventory.NETWORK_FIELDS)
        switch = {"true": True, "false": False}
        values["fast_failover"] = switch.get(str(values["fast_failover"]), values["fast_failover"])
        try:
            inventory.update_network(values)
        except DomainError as error:
            show_domain_error(form, error)
        else:
            flash("Network settings saved. Each host's agent applies them within seconds.")
            return redirect(url_for("network.edit_network"))
    return render_template("network/edit.html", form=form)
