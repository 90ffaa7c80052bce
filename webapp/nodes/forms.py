"""Node forms. Fields are text: the domain's validation owns every rule, so pages and API agree."""

from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import Length


class NodeForm(FlaskForm):
    name = StringField("Name", validators=[Length(max=64)], description="a-z, 0-9 and '-', up to 15 characters")
    location = StringField("Location", validators=[Length(max=200)])
    endpoint = StringField(
        "Endpoint", validators=[Length(max=300)], description="host:port where peers reach it; empty behind NAT"
    )
    listen_port = StringField(
        "WireGuard listen port", validators=[Length(max=10)], description="empty: network default"
    )
    bridge_priority = StringField(
        "Bridge priority",
        validators=[Length(max=10)],
        description="0-61440 in steps of 4096, pinned: used as is; empty: derived by privnet (32768 in seed mode)",
    )
    underlay_ip = StringField("Underlay address", validators=[Length(max=64)], description="empty: lowest free")
    overlay_ip = StringField("Overlay address", validators=[Length(max=64)], description="empty: lowest free")


class ConfirmForm(FlaskForm):
    """An empty form: its CSRF token is what confirms a destructive POST."""
