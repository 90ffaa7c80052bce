"""Link forms."""

from flask_wtf import FlaskForm
from wtforms import SelectField, StringField
from wtforms.validators import Length

COST_HELP = "1-65535, pinned: used as is; empty: derived by privnet from the measured RTT (100 in seed mode)"


class LinkForm(FlaskForm):
    a = SelectField("From", validate_choice=False)
    b = SelectField("To", validate_choice=False)
    cost = StringField("Path cost", validators=[Length(max=10)], description=COST_HELP)


class LinkEditForm(FlaskForm):
    cost = StringField("Path cost", validators=[Length(max=10)], description=COST_HELP)
