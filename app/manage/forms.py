"""The manage pages' forms (Flask-WTF, CSRF on every one): the email for a
magic link, the confirmation that opens a link, and one form per change,
each carrying a single-use token so a double submit is one change.
"""

from __future__ import annotations

import secrets
from typing import Any

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import HiddenField, RadioField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length, Regexp

from app.donate.forms import email_field
from app.manage.actions import REASON_MAX_CHARS
from app.money import MoneyError, charge_step, format_money, parse_amount

INTERVAL_LABELS = {"month": _l("Monthly"), "year": _l("Annually")}


def new_action_token() -> str:
    return secrets.token_urlsafe(24)


class LinkRequestForm(FlaskForm):
    email = email_field()


class OpenLinkForm(FlaskForm):
    """The confirmation that uses a link up (CSRF only)."""


class SignOutForm(FlaskForm):
    """Ends the donor's session (CSRF only)."""


class ActionForm(FlaskForm):
    action_token = HiddenField(
        validators=[
            InputRequired(_l("This form is incomplete; please reload the page.")),
            Regexp(r"^[A-Za-z0-9_-]{16,64}$", message=_l("Please reload the page.")),
        ]
    )


class CancelForm(ActionForm):
    reason = TextAreaField(
        _l("Why are you cancelling? (optional)"),
        validators=[
            Length(
                max=REASON_MAX_CHARS,
                message=_l("Use at most %(max)d characters.", max=REASON_MAX_CHARS),
            )
        ],
    )


class ChangeForm(ActionForm):
    amount = StringField(
        _l("Amount"),
        validators=[
            InputRequired(_l("Enter an amount.")),
            Length(max=20, message=_l("Enter an amount in digits, such as 25.")),
        ],
    )
    interval = RadioField(
        _l("How often"),
        choices=[SelectChoice(key, label) for key, label in INTERVAL_LABELS.items()],
        validators=[InputRequired(_l("Choose monthly or annually."))],
    )

    def amount_minor(self, currency: str, locale: str, limits: dict[str, Any] | None) -> int | None:
        """The amount in minor units within the currency's limits, or None
        with the message on the amount field."""
        try:
            minor = parse_amount(self.amount.data or "", currency, locale)
        except MoneyError:
            self.amount.errors = [*self.amount.errors, _l("Enter an amount in digits, such as 25.")]
            return None
        if limits and minor < int(limits["min"]):
            message = _l(
                "The smallest amount is %(amount)s.",
                amount=format_money(int(limits["min"]), currency, locale),
            )
        elif limits and minor > int(limits["max"]):
            message = _l(
                "The largest amount online is %(amount)s.",
                amount=format_money(int(limits["max"]), currency, locale),
            )
        elif minor % charge_step(currency):
            message = _l("This currency takes whole amounts only.")
        else:
            return minor
        self.amount.errors = [*self.amount.errors, message]
        return None
