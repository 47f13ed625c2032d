"""Starting a Stripe Checkout Session for a gift: the parameters Stripe
receives, the idempotency that makes a double click one session, and the
checkout record beside the ledger.

No Flask and no `stripe` here: the payments provider is passed in
(app.payments.Payments), and the caller runs each statement on a connection
of its own and commits it (the view), through app.donate.statements.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import bindparam, case, func, select

from app.brand.page import localised
from app.clock import utcnow
from app.db import insert_of
from app.donate.models import Checkout
from app.donate.statements import Statements
from app.donors import Donor, normalise_email
from app.money import FeeCover, format_plain
from app.payments import Payments


def N_(text: str) -> str:
    """Marks a message for the catalogs; `CheckoutSettings.translate` translates it."""
    return text


# What Checkout's line items say (in the gift's language: see CheckoutSettings.for_language).
DONATION_LINE = N_("%(product)s to %(organisation)s")
FEE_LINE = N_("Processing fee, covered by you")

# Locales Stripe Checkout speaks that we may offer; others fall back to "auto".
STRIPE_CHECKOUT_LOCALES = frozenset({"en", "ru", "de", "fr", "es", "it", "nl", "pt", "uk", "pl"})


@dataclass(frozen=True)
class Gift:
    """What a reader chose on the form, validated."""

    nonce: str
    email: str
    name: str
    frequency: str  # once | month | year
    currency: str
    amount_minor: int
    fee_cover_minor: int
    dedication_kind: str | None
    dedication_name: str | None
    anonymous: bool
    comment: str | None
    locale: str
    campaign: str | None
    utm_source: str | None
    utm_medium: str | None
    utm_content: str | None
    utm_term: str | None
    nudge: str | None = None  # app.appeals: "switch" or "invite"

    @property
    def total_minor(self) -> int:
        return self.amount_minor + self.fee_cover_minor

    @property
    def attribution(self) -> dict[str, str]:
        fields = {
            "campaign": self.campaign,
            "utm_source": self.utm_source,
            "utm_medium": self.utm_medium,
            "utm_content": self.utm_content,
            "utm_term": self.utm_term,
        }
        return {k: v for k, v in fields.items() if v}


@dataclass(frozen=True)
class CheckoutSettings:
    public_base_url: str
    organisation_name: str
    donation_product_name: str
    membership_product: str  # prod_... or "" for an inline product
    membership_product_name: str
    fee_covers: dict[str, FeeCover]  # per offered currency
    languages: tuple[str, ...] = ("en",)  # LANGUAGES; the first is the default
    translate: Callable[[str], str] = str  # gettext in the gift's language (default: English)

    @property
    def default_language(self) -> str:
        return self.languages[0]

    @classmethod
    def from_config(
        cls,
        config: dict[str, Any],
        language: str | None = None,
        translate: Callable[[str], str] = str,
    ) -> CheckoutSettings:
        """The settings; with `language`, the names Checkout shows as
        [localised.<language>] gives them, and `translate` for our own words."""
        language = language or (config.get("LANGUAGES") or ["en"])[0]
        return cls(
            public_base_url=config["PUBLIC_BASE_URL"],
            organisation_name=localised(config, "ORGANISATION_NAME", language),
            donation_product_name=localised(config, "DONATION_PRODUCT_NAME", language),
            membership_product=config["MEMBERSHIP_PRODUCT"],
            membership_product_name=localised(config, "MEMBERSHIP_PRODUCT_NAME", language),
            translate=translate,
            fee_covers={code: fee_cover_from_config(config, code) for code in config["CURRENCIES"]},
            languages=tuple(config.get("LANGUAGES") or ("en",)),
        )

    def fee_cover(self, currency: str) -> FeeCover:
        return self.fee_covers[currency]


def fee_cover_from_config(config: dict[str, Any], currency: str) -> FeeCover:
    """What "cover the fee" adds in `currency`: the currency's processing fee
    (processing_fees), unless fee_cover_rate_bp or fee_cover_fixed.<cur>
    override a part of it."""
    fee = FeeCover.from_table(config["PROCESSING_FEES"], currency)
    rate = config.get("FEE_COVER_RATE_BP")
    fixed = (config.get("FEE_COVER_FIXED") or {}).get(currency)
    return FeeCover(
        fee.rate_bp if rate in ("", None) else int(rate),
        fee.fixed_minor if fixed is None else int(fixed),
    )


def checkout_id_for(gift: Gift) -> str:
    """Our id for one submission: the form's single-use nonce plus every choice,
    so a double click or a retried request is the same id (one row, one
    session) and a changed choice is a new one."""
    # vars(), not asdict(): the same fields (all plain values) without its deep copy.
    material = "\x1f".join(f"{k}={v}" for k, v in sorted(vars(gift).items()))
    return "co_" + hashlib.sha256(material.encode()).hexdigest()[:32]


def idempotency_key_for(checkout_id: str) -> str:
    return f"checkout-session-create:{checkout_id}"


def language_root(gift: Gift, settings: CheckoutSettings) -> str:
    """The site's address in the gift's language: /ru for a Russian gift, none
    for the default language (app.i18n.prefix), so Stripe sends the donor back
    to pages in the language they gave in."""
    if gift.locale != settings.default_language and gift.locale in settings.languages:
        return f"{settings.public_base_url}/{gift.locale}"
    return settings.public_base_url


def cancel_url_for(gift: Gift, base_url: str) -> str:
    """Back to the form, pre-filled with the choices (never the email)."""
    query = {
        "amount": format_plain(gift.amount_minor, gift.currency),
        "currency": gift.currency,
        "frequency": gift.frequency,
        **gift.attribution,
    }
    return f"{base_url}/donate?{urlencode(query)}"


def session_params(gift: Gift, checkout_id: str, settings: CheckoutSettings) -> dict[str, Any]:
    """The Checkout Session create parameters for this gift.

    Never an existing `customer`: the email is only what someone typed, so
    reusing the customer we know for it would let a stranger's gift (and card)
    join a known donor's Stripe customer. Checkout makes a new customer each
    time; donors are joined by normalised email in the ledger."""
    metadata = {"checkout_id": checkout_id, "frequency": gift.frequency, **gift.attribution}
    recurring = gift.frequency in ("month", "year")

    def price_data(amount: int, product: dict[str, Any]) -> dict[str, Any]:
        data: dict[str, Any] = {"currency": gift.currency, "unit_amount": amount, **product}
        if recurring:
            data["recurring"] = {"interval": gift.frequency}
        return data

    if recurring and settings.membership_product:
        gift_product: dict[str, Any] = {"product": settings.membership_product}
    elif recurring:
        gift_product = {"product_data": {"name": settings.membership_product_name}}
    else:
        gift_product = {
            "product_data": {
                "name": settings.translate(DONATION_LINE)
                % {
                    "product": settings.donation_product_name,
                    "organisation": settings.organisation_name,
                }
            }
        }
    line_items = [{"price_data": price_data(gift.amount_minor, gift_product), "quantity": 1}]
    if gift.fee_cover_minor:
        fee_product = {"product_data": {"name": settings.translate(FEE_LINE)}}
        line_items.append(
            {"price_data": price_data(gift.fee_cover_minor, fee_product), "quantity": 1}
        )

    params: dict[str, Any] = {
        "mode": "subscription" if recurring else "payment",
        "line_items": line_items,
        "client_reference_id": checkout_id,
        "metadata": metadata,
        "success_url": (
            f"{language_root(gift, settings)}/donate/thanks?session_id={{CHECKOUT_SESSION_ID}}"
        ),
        "cancel_url": cancel_url_for(gift, language_root(gift, settings)),
        "locale": gift.locale if gift.locale in STRIPE_CHECKOUT_LOCALES else "auto",
    }
    params["customer_email"] = gift.email
    if recurring:
        params["subscription_data"] = {"metadata": metadata}
    else:
        params["submit_type"] = "donate"
        params["payment_intent_data"] = {"metadata": metadata}
        # A customer for every one-time donor too (subscriptions make one anyway).
        params["customer_creation"] = "always"
    return params


@dataclass(frozen=True)
class StartedCheckout:
    """A checkout's row as the donor's redirect needs it."""

    id: str
    url: str | None


# Each statement a checkout runs is built once per dialect, and on PostgreSQL
# compiled once (app.db.execute_prepared): building and compiling them per
# request cost more than running them (profiled).
@cache
def _find_statement() -> Any:
    table = Checkout.__table__
    return select(table.c.id, table.c.stripe_checkout_url).where(table.c.id == bindparam("id"))


@cache
def _donor_statement(dialect: str) -> Any:
    """The donor with this email, made if new; a name fills in a missing one
    (as app.donors.find_or_create_donor). DO UPDATE, not DO NOTHING, so that
    the donor's id comes back in the same statement whether it was made now,
    before, or by a concurrent request."""
    donors = Donor.__table__
    insert = insert_of(dialect)(donors).values(
        email=bindparam("donor_email"),
        name=bindparam("donor_name"),
        created_at=bindparam("now"),
        updated_at=bindparam("now"),
    )
    return insert.on_conflict_do_update(
        index_elements=[donors.c.email],
        set_={
            "name": func.coalesce(donors.c.name, insert.excluded.name),
            "updated_at": case(
                (donors.c.name.is_(None), insert.excluded.updated_at), else_=donors.c.updated_at
            ),
        },
    ).returning(donors.c.id)


# The checkout's own columns, each from the parameter of its name.
_CHECKOUT_COLUMNS = tuple(c.name for c in Checkout.__table__.c if c.name != "donor_id")


@cache
def _record_statement(dialect: str) -> Any:
    """The checkout's INSERT, a second one of the same submission doing
    nothing. On PostgreSQL it carries the donor's upsert as a CTE: one
    statement, one round trip, atomic in autocommit. SQLite's CTEs cannot
    write, so there the donor's id is a parameter (`_donor_statement` first)."""
    table = Checkout.__table__
    values: dict[str, Any] = {name: bindparam(f"c_{name}") for name in _CHECKOUT_COLUMNS}
    if dialect == "postgresql":
        donor = _donor_statement(dialect).cte("donor")
        values["donor_id"] = select(donor.c.id).scalar_subquery()
    else:
        values["donor_id"] = bindparam("c_donor_id")
    return (
        insert_of(dialect)(table)
        .values(values)
        .on_conflict_do_nothing()
        .returning(table.c.id, table.c.stripe_checkout_url)
    )


def find_checkout(statements: Statements, checkout_id: str) -> StartedCheckout | None:
    row = statements.first(_find_statement(), {"id": checkout_id})
    return None if row is None else StartedCheckout(row[0], row[1])


def record_checkout(
    statements: Statements,
    gift: Gift,
    checkout_id: str,
    created: dict[str, Any],
    *,
    livemode: bool,
) -> StartedCheckout | None:
    """Writes the donor (found or made) and the checkout for the session Stripe
    `created`; for a submission recorded meanwhile (the same one at once:
    Stripe returned the same session for the same key), that row."""
    dialect = statements.dialect
    now = utcnow()
    email = normalise_email(gift.email)
    expires_at = created.get("expires_at")
    values: dict[str, Any] = {
        "id": checkout_id,
        "email": email,
        "name": gift.name,
        "frequency": gift.frequency,
        "currency": gift.currency,
        "amount_minor": gift.amount_minor,
        "fee_cover_minor": gift.fee_cover_minor,
        "total_minor": gift.total_minor,
        "cover_fees": gift.fee_cover_minor > 0,
        "campaign": gift.campaign,
        "utm_source": gift.utm_source,
        "utm_medium": gift.utm_medium,
        "utm_content": gift.utm_content,
        "utm_term": gift.utm_term,
        "nudge": gift.nudge,
        "dedication_kind": gift.dedication_kind,
        "dedication_name": gift.dedication_name,
        "anonymous": gift.anonymous,
        "comment": gift.comment,
        "locale": gift.locale,
        "stripe_checkout_session_id": created["id"],
        "stripe_checkout_url": created.get("url"),
        "stripe_customer_id": None,  # Checkout makes the customer; the webhook tells it
        "livemode": bool(created.get("livemode", livemode)),
        "status": "open",
        "created_at": now,
        "updated_at": now,
        "expires_at": datetime.fromtimestamp(expires_at, UTC) if expires_at else None,
        "completed_at": None,
    }
    params = {f"c_{name}": values[name] for name in _CHECKOUT_COLUMNS}
    donor = {"donor_email": email, "donor_name": gift.name or None, "now": now}
    if dialect == "postgresql":
        params.update(donor)
    else:
        donor_row = statements.first(_donor_statement(dialect), donor)
        assert donor_row is not None  # an upsert's RETURNING
        params["c_donor_id"] = donor_row[0]
    row = statements.first(_record_statement(dialect), params)
    if row is None:
        return find_checkout(statements, checkout_id)
    return StartedCheckout(row[0], row[1])


def start_checkout(
    run: Callable[..., Any], payments: Payments, gift: Gift, settings: CheckoutSettings
) -> StartedCheckout | None:
    """The checkout for this submission: the existing one for a repeated
    submission, otherwise a new Stripe Checkout Session and its record.

    `run(fn, *args)` calls `fn(statements, *args)` on a connection of the
    caller's (`Statements`) and commits it: one statement (a round trip) before Stripe is
    called and one after, none held while Stripe answers. Stripe is called
    before anything is written, so a failure leaves no half-made row; the
    idempotency key makes a retry after a lost answer return the same
    session instead of a second one.
    """
    checkout_id = checkout_id_for(gift)
    existing: StartedCheckout | None = run(find_checkout, checkout_id)
    if existing is not None:
        return existing
    created = payments.create_checkout_session(
        session_params(gift, checkout_id, settings),
        idempotency_key=idempotency_key_for(checkout_id),
    )
    recorded: StartedCheckout | None = run(
        record_checkout, gift, checkout_id, created, livemode=payments.livemode
    )
    return recorded
