"""Network settings form; the domain validates every value."""

from flask_wtf import FlaskForm
from wtforms import SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length

FAST_FAILOVER_CHOICES = [
    SelectChoice("true", "On: a silent peer's port leaves the bridge within about a second"),
    SelectChoice("false", "Off: a dead tunnel is left to STP (max age)"),
]
TREE_MODE_CHOICES = [
    SelectChoice("latency", "Latency-aware (privnet plans it)"),
    SelectChoice("seed", "Seed settings (fixed costs and priorities)"),
]


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
    # The domain refuses other values with its own message (validate_choice=False).
    tree_mode = SelectField(
        "Spanning tree",
        choices=TREE_MODE_CHOICES,
        validate_choice=False,
        description="Latency-aware: costs and priorities you leave empty follow the RTTs the agents measure; "
        "seed: every link costs 100 and every bridge has priority 32768 unless you set them.",
    )
    fast_failover = SelectField(
        "Fast failover",
        choices=FAST_FAILOVER_CHOICES,
        validate_choice=False,
        description="The agents probe each peer 5 times a second over its tunnel; a new link joins the bridge "
        "only once its peer answers.",
    )
