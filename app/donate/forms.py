"""The donation form (Flask-WTF, CSRF on): field rules and the conversion of
what a reader typed into a `Gift` for app.donate.checkout.

Amounts are parsed with app.money into minor units (Decimal at the edge, never
floats). Every rule that can fail puts its message on its own field.
"""

from __future__ import annotations

import secrets
from typing import Any

from flask_babel import get_locale, gettext
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, RadioField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import (
    DataRequired,
    Email,
    InputRequired,
    Length,
    Optional,
    Regexp,
    ValidationError,
)

from app.donate.checkout import Gift
from app.i18n.views import identifier_of
from app.money import MoneyError, charge_step, format_money, parse_amount, parse_plain
from app.settings import FREQUENCIES

ATTRIBUTION_FIELDS = ("campaign", "utm_source", "utm_medium", "utm_content", "utm_term")
FREQUENCY_LABELS = {"once": _l("Once"), "month": _l("Monthly"), "year": _l("Annually")}


def page_locale(config: dict[str, Any]) -> str:
    """The page's language (Flask-Babel's choice), as amounts are read in it."""
    locale = get_locale()
    return identifier_of(locale) if locale is not None else str(config["LANGUAGES"][0])


def new_nonce() -> str:
    return secrets.token_urlsafe(24)


def email_field() -> Any:
    """The donor's email, asked the same way by every donor form (the gift, the
    magic link of /manage): trimmed, at most 254 characters, no DNS look-up."""
    return StringField(
        _l("Email"),
        filters=[lambda value: value.strip() if isinstance(value, str) else value],
        validators=[
            DataRequired(_l("Enter your email address.")),
            Length(max=254, message=_l("That email address is too long.")),
            Email(
                _l("Enter a valid email address, like name@example.org."),
                check_deliverability=False,
            ),
        ],
    )


class DonationForm(FlaskForm):
    class Meta:
        # CSRFProtect (app.extensions) checks every POST's token before any
        # view and answers a failure itself (the form again, with its notice);
        # the template writes the token with csrf_token(). A field of the
        # form's own would sign a token and check it a second time per post.
        csrf = False

    # Every field has a label of its own, even those never shown: for a missing
    # one WTForms translates a default ("Nonce"), and for that Flask-WTF loads
    # WTForms' catalog from disk once per request (profiled on POST /donate).
    nonce = HiddenField(
        "Nonce",
        validators=[
            InputRequired(_l("This form is incomplete; please reload the page.")),
            Regexp(r"^[A-Za-z0-9_-]{16,64}$", message=_l("Please reload the page.")),
        ],
    )
    currency = SelectField(
        _l("Currency"),
        validators=[InputRequired(_l("Choose a currency."))],
        filters=[lambda value: value.strip().lower() if isinstance(value, str) else value],
    )
    frequency = RadioField(
        _l("How often"),
        choices=[SelectChoice(f, FREQUENCY_LABELS[f]) for f in FREQUENCIES],
        validators=[InputRequired(_l("Choose how often to give."))],
    )
    # A preset button (major units, as shown) or a typed amount; typed wins.
    preset = StringField("Preset", validators=[Optional(), Length(max=20)])
    amount = StringField(_l("Other amount"), validators=[Optional(), Length(max=20)])
    email = email_field()
    name = StringField(
        _l("Name"),
        validators=[
            DataRequired(_l("Enter your name.")),
            Length(max=200, message=_l("Use at most 200 characters.")),
        ],
    )
    cover_fees = BooleanField(_l("Cover the processing fee"))
    dedication_kind = RadioField(
        _l("Dedicate this gift"),
        choices=[
            SelectChoice("", _l("No dedication")),
            SelectChoice("honour", _l("In honour of")),
            SelectChoice("memory", _l("In memory of")),
        ],
        default="",
        validators=[Optional()],
    )
    dedication_name = StringField(
        _l("Their name"), validators=[Length(max=200, message=_l("Use at most 200 characters."))]
    )
    anonymous = BooleanField(_l("Don't show my name publicly"))
    comment = TextAreaField(
        _l("Comment"), validators=[Length(max=1000, message=_l("Use at most 1000 characters."))]
    )
    campaign = HiddenField("Campaign", validators=[Length(max=100)])
    utm_source = HiddenField("Utm Source", validators=[Length(max=100)])
    utm_medium = HiddenField("Utm Medium", validators=[Length(max=100)])
    utm_content = HiddenField("Utm Content", validators=[Length(max=100)])
    utm_term = HiddenField("Utm Term", validators=[Length(max=100)])
    nudge = HiddenField("Nudge", validators=[Optional(), Regexp(r"^(switch|invite)$")])

    def __init__(self, *args: Any, config: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._config = config
        self.currency.choices = [SelectChoice(c, c.upper()) for c in config["CURRENCIES"]]
        self.amount_minor: int | None = None

    # WTForms calls validate_<field> after the field's own validators.
    def validate_dedication_name(self, field: StringField) -> None:
        if self.dedication_kind.data and not (field.data or "").strip():
            raise ValidationError(_l("Enter the name of the person you dedicate this gift to."))

    def validate(self, extra_validators: Any = None) -> bool:
        valid = super().validate(extra_validators)
        # WTForms' own "Not a valid choice" says too little.
        if self.currency.errors:
            self.currency.errors = [_l("Choose one of the currencies offered.")]
        if self.frequency.errors:
            self.frequency.errors = [_l("Choose once, monthly or annually.")]
        if self.currency.errors or self.frequency.errors:
            return False
        return self._validate_amount() and valid

    def _validate_amount(self) -> bool:
        try:
            self.amount_minor = self.chosen_amount(self.currency.data, page_locale(self._config))
        except MoneyError as exc:
            self.amount.errors = [*self.amount.errors, gettext(exc.message, **exc.values)]
            return False
        return True

    def chosen_amount(self, currency: str, locale: str) -> int:
        """The amount chosen, in minor units: typed (in the page's language)
        or else a preset (plain, "25.00"), within the currency's limits and
        charge step. Raises MoneyError with the message for the amount field.
        Adds no errors, so the button label can ask too."""
        typed = (self.amount.data or "").strip()
        preset = (self.preset.data or "").strip()
        if not typed and not preset:
            raise MoneyError(str(_l("Choose or enter an amount.")))
        minor = parse_amount(typed, currency, locale) if typed else parse_plain(preset, currency)
        limits = self._config["CURRENCY_LIMITS"][currency]
        if minor < limits["min"]:
            raise MoneyError(
                str(
                    _l(
                        "The smallest gift is %(amount)s.",
                        amount=format_money(limits["min"], currency, locale),
                    )
                )
            )
        if minor > limits["max"]:
            raise MoneyError(
                str(
                    _l(
                        "The largest gift online is %(amount)s.",
                        amount=format_money(limits["max"], currency, locale),
                    )
                )
            )
        if minor % charge_step(currency):
            raise MoneyError(str(_l("This currency takes whole amounts only.")))
        return minor

    def to_gift(self, *, locale: str, fee_cover_minor: int) -> Gift:
        """The validated choices; call only after validate() returned True."""
        assert self.amount_minor is not None

        def text(value: str | None) -> str | None:
            value = (value or "").strip()
            return value or None

        return Gift(
            nonce=self.nonce.data,
            email=self.email.data.strip(),
            name=self.name.data.strip(),
            frequency=self.frequency.data,
            currency=self.currency.data,
            amount_minor=self.amount_minor,
            fee_cover_minor=fee_cover_minor if self.cover_fees.data else 0,
            dedication_kind=self.dedication_kind.data or None,
            dedication_name=text(self.dedication_name.data) if self.dedication_kind.data else None,
            anonymous=bool(self.anonymous.data),
            comment=text(self.comment.data),
            locale=locale,
            campaign=text(self.campaign.data),
            utm_source=text(self.utm_source.data),
            utm_medium=text(self.utm_medium.data),
            utm_content=text(self.utm_content.data),
            utm_term=text(self.utm_term.data),
            nudge=text(self.nudge.data),
        )
