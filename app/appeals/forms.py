"""The finance area's appeal forms: an appeal's definition as TOML text
(admins; Flask-WTF, CSRF on) and the tracked-link builder (a GET form)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional, Regexp

FREQUENCY_CHOICES = [
    SelectChoice("", "(the form's default)"),
    SelectChoice("once", "Once"),
    SelectChoice("month", "Monthly"),
    SelectChoice("year", "Annually"),
]


class AppealSourceForm(FlaskForm):  # type: ignore[misc]
    slug = StringField(
        "Slug",
        validators=[
            DataRequired("Give the appeal a slug."),
            Regexp(r"^[a-z0-9][a-z0-9-]{0,39}$", message="Lower-case letters, digits and '-'."),
        ],
    )
    source = TextAreaField(
        "Definition (TOML)",
        validators=[DataRequired("The definition is empty."), Length(max=40_000)],
    )


class LinkForm(FlaskForm):  # type: ignore[misc]
    class Meta:
        csrf = False  # a GET form that only builds a link

    campaign = StringField(
        "Campaign", validators=[DataRequired("Name the campaign."), Length(max=100)]
    )
    source = StringField(
        "Source (utm_source)", validators=[DataRequired("Name the source."), Length(max=100)]
    )
    medium = StringField("Medium (utm_medium)", default="email", validators=[Length(max=100)])
    content = StringField("Content (utm_content)", validators=[Optional(), Length(max=100)])
    term = StringField("Term (utm_term)", validators=[Optional(), Length(max=100)])
    currency = SelectField("Currency", validators=[Optional()])
    frequency = SelectField("Frequency", choices=FREQUENCY_CHOICES, validators=[Optional()])
    amount = StringField("Amount (e.g. 25.00)", validators=[Optional(), Length(max=20)])
