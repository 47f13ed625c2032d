"""The sandbox's checkout page (GET/POST /sandbox/checkout/<session id>): what
Stripe Checkout would show, with a test-card field. Registered only while the
offline sandbox stands in for Stripe.

The POST commits the payment's objects and events once, and only then
delivers the events over HTTP (so the webhook receiver, another request on
this server, never waits on our transaction). No card data is stored or logged.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, redirect, render_template
from flask_babel import force_locale, get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response
from wtforms import EmailField, StringField
from wtforms.validators import Email, InputRequired, Length, Optional

from app.clock import utcnow
from app.extensions import db_session
from app.sandbox import SandboxPayments

bp = Blueprint("sandbox", __name__, url_prefix="/sandbox")


class CardForm(FlaskForm):
    email = EmailField(_l("Email"), validators=[Optional(), Email(), Length(max=254)])
    card_number = StringField(
        _l("Card number"),
        validators=[InputRequired(_l("Enter a card number.")), Length(max=40)],
    )


def _sandbox() -> SandboxPayments:
    payments = current_app.extensions.get("donations.payments")
    if not isinstance(payments, SandboxPayments):
        abort(404)
    return payments


def _page(sandbox: SandboxPayments, session_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    page = sandbox.checkout_page(session_id)
    if page is None:
        abort(404)
    return page


def _render(
    sandbox: SandboxPayments,
    checkout_session: dict[str, Any],
    params: dict[str, Any],
    form: CardForm,
    status: int = 200,
    *,
    notice: str | None = None,
) -> tuple[str, int]:
    # In the session's `locale`, as Stripe Checkout shows itself.
    language = checkout_session.get("locale")
    if language not in current_app.config["LANGUAGES"]:
        language = str(get_locale() or "en")
    with force_locale(language):
        page = render_template(
            "sandbox/checkout.html",
            session=checkout_session,
            lines=params["line_items"],
            interval=params["interval"],
            state=_state_of(checkout_session),
            fixed_email=sandbox.known_email(checkout_session),
            form=form,
            notice=notice,
            locale=language,
        )
    return page, status


@bp.get("/checkout/<session_id>")
def checkout(session_id: str) -> tuple[str, int]:
    sandbox = _sandbox()
    checkout_session, params = _page(sandbox, session_id)
    status = 410 if _state_of(checkout_session) == "expired" else 200
    return _render(sandbox, checkout_session, params, CardForm(), status)


@bp.post("/checkout/<session_id>")
def pay(session_id: str) -> Response | tuple[str, int]:
    sandbox = _sandbox()
    checkout_session, params = _page(sandbox, session_id)
    form = CardForm()
    if not form.validate():
        return _render(sandbox, checkout_session, params, form, 400)
    email = sandbox.known_email(checkout_session) or (form.email.data or "").strip().lower()
    if not email:
        form.email.errors = [_("Enter an email address.")]
        return _render(sandbox, checkout_session, params, form, 400)

    session = db_session()
    result = sandbox.pay(session, session_id, form.card_number.data or "", email)
    session.commit()
    if result.outcome in ("paid", "declined"):
        sandbox.deliver_pending()
    if result.outcome in ("paid", "complete") and result.redirect_url:
        return redirect(result.redirect_url, code=303)
    checkout_session, params = _page(sandbox, session_id)
    if result.outcome == "declined":
        return _render(sandbox, checkout_session, params, form, 402, notice="declined")
    if result.outcome == "expired":
        return _render(sandbox, checkout_session, params, form, 410)
    form.card_number.errors = [
        _("Use a test card: 4242 4242 4242 4242 (succeeds) or 4000 0000 0000 0002 (declined).")
    ]
    return _render(sandbox, checkout_session, params, form, 400)


def _state_of(checkout_session: dict[str, Any]) -> str:
    """open, complete or expired (an open session past its expires_at is expired)."""
    status = str(checkout_session["status"])
    if status == "open" and checkout_session["expires_at"] < int(utcnow().timestamp()):
        return "expired"
    return status


@bp.get("/billing_portal/<portal_id>")
def billing_portal(portal_id: str) -> tuple[str, int]:
    """What Stripe's billing portal would show for updating a card: the sandbox
    stores no card, so this page only says so and leads back."""
    portal = _sandbox().portal_page(portal_id)
    if portal is None:
        abort(404)
    return render_template("sandbox/billing_portal.html", portal=portal), 200
