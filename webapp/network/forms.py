"""Network settings form; the domain validates every value."""

from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import Length


class NetworkForm(FlaskForm):
    name = StringField("Name", validators=[Length(max=100)])
    underlay_cidr = StringField("Underlay (WireGuard) network", validators=[Length(max=64)])
    overlay_cidr = StringField("Overlay (bridge) network", validators=[Length(max=64)])
    bridge_name = StringField("Bridge name", validators=[Length(max=64)])
    vxlan_port = StringField("VXLAN UDP port", validators=[Length(max=10)])
    listen_port = StringField("Default WireGuard listen port", validators=[Length(max=10)])
    stp_hello_time = StringField("STP hello time (s)", validators=[Length(max=10)], description="1-10")
    stp_forward_delay = StringField("STP forward delay (s)", validators=[Length(max=10)], description="2-30")
    stp_max_age = StringField("STP max age (s)", validators=[Length(max=10)], description="6-40")
    report_interval = StringField("Agent report interval (s)", validators=[Length(max=10)], description="2-3600")
