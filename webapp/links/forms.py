"""Link forms."""

from flask_wtf import FlaskForm
from wtforms import SelectField, StringField
from wtforms.validators import Length


class LinkForm(FlaskForm):
    a = SelectField("From", validate_choice=False)
    b = SelectField("To", validate_choice=False)
    cost = StringField("Path cost", validators=[Length(max=10)], description="1-65535; empty: 100")


class LinkEditForm(FlaskForm):
    cost = StringField("Path cost", validators=[Length(max=10)], description="1-65535")
