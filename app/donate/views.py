"""Donor-facing pages: the donation form (GET/POST /donate) and the thanks
page (GET /donate/thanks?session_id=).

Bad input is a 400 with the form and a message at each field, and changes
nothing; Stripe trouble is a friendly page to try again, never a stack trace.
This view commits the checkout record once, after Stripe answered.

Why one module: the form, its re-renders after bad input and the thanks page
share one form context; the next split is the thanks page into its own module.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import quote

from babel.numbers import format_percent
from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import select
from werkzeug.wrappers import Response

from app.brand.page import Page
from app.db import on_raw_cursor
from app.donate.checkout import CheckoutSettings, start_checkout
from app.donate.forms import (
    ATTRIBUTION_FIELDS,
    FREQUENCY_LABELS,
    DonationForm,
    new_nonce,
    page_locale,
)
from app.donate.models import Checkout
from app.donate.statements import CoreStatements, CursorStatements
from app.extensions import csrf_token, database, db_session
from app.guard.gate import captcha_site_key, screen_submission
from app.i18n.views import url_language
from app.money import (
    FeeCover,
    MoneyError,
    NumberSymbols,
    charge_step,
    decimal_places,
    format_input,
    format_plain,
    format_short,
    parse_plain,
)
from app.observe.metrics import CHECKOUT_ERRORS
from app.payments import Payments, PaymentsError
from app.settings import FREQUENCIES

bp = Blueprint("donate", __name__)
T = TypeVar("T")
log = logging.getLogger(__name__)

# Placeholders in a cached form page (letters and digits: nothing escapes them).
NONCE_MARK = "nonce" + secrets.token_hex(16)
CSRF_MARK = "csrf" + secrets.token_hex(16)
PAGES_KEPT = 256  # distinct (language, link) pages kept per process


class FormPages:
    """Rendered form pages by (language, prefill, link), the oldest dropped first."""

    def __init__(self, size: int = PAGES_KEPT) -> None:
        self.size = size
        self.pages: OrderedDict[Any, str] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: Any) -> str | None:
        with self.lock:
            page = self.pages.get(key)
            if page is not None:
                self.pages.move_to_end(key)
            return page

    def put(self, key: Any, page: str) -> None:
        with self.lock:
            self.pages[key] = page
            while len(self.pages) > self.size:
                self.pages.popitem(last=False)


SESSION_ID = re.compile(r"cs_(test|live)_[A-Za-z0-9_]{1,250}", re.ASCII)


def _payments() -> Payments | None:
    payments: Payments | None = current_app.extensions.get("donations.payments")
    return payments


def _locale() -> str:
    return page_locale(current_app.config)


def prefill() -> dict[str, Any]:
    """Values from the query string; anything unusable falls back to defaults
    (also read by app.appeals, which counts the nudge a cached page shows)."""
    config = current_app.config
    # First values as a plain dict: a missing key of Werkzeug's MultiDict
    # raises (and builds) an HTTP exception inside .get, nine a request here.
    args = request.args.to_dict()
    currency = (args.get("currency") or "").strip().lower()
    if currency not in config["CURRENCIES"]:
        currency = config["CURRENCIES"][0]
    frequency = (args.get("frequency") or "").strip().lower()
    if frequency not in FREQUENCIES:
        frequency = config["DEFAULT_FREQUENCY"]
    data: dict[str, Any] = {"currency": currency, "frequency": frequency, "nonce": new_nonce()}
    amount_text = (args.get("amount") or "").strip()[:20]
    if amount_text:
        try:
            minor = parse_plain(amount_text, currency)  # links carry plain amounts
        except MoneyError:
            minor = None
        if minor is not None:
            if minor in config["PRESETS"][currency].get(frequency, []):
                data["preset"] = format_plain(minor, currency)
            else:  # typed, so as the reader would type it in this language
                data["amount"] = format_input(minor, currency, _locale())
    for field in ATTRIBUTION_FIELDS:
        value = args.get(field) or (args.get("utm_campaign") if field == "campaign" else None)
        if value:
            data[field] = value.strip()[:100]
    return data


def _form_context(form: DonationForm, **extra: Any) -> dict[str, Any]:
    config = current_app.config
    locale = _locale()
    currency = (
        form.currency.data
        if form.currency.data in config["CURRENCIES"]
        else config["CURRENCIES"][0]
    )
    frequency = (
        form.frequency.data if form.frequency.data in FREQUENCIES else config["DEFAULT_FREQUENCY"]
    )
    settings = CheckoutSettings.from_config(config)
    presets = {
        code: {
            freq: [
                {"value": format_plain(m, code), "label": format_short(m, code, locale)}
                for m in config["PRESETS"][code].get(freq, [])
            ]
            for freq in FREQUENCIES
        }
        for code in config["CURRENCIES"]
    }
    fee_cover = {
        code: {
            "rate_bp": settings.fee_cover(code).rate_bp,
            "fixed": settings.fee_cover(code).fixed_minor,
            "note": _fee_note(settings.fee_cover(code), code, locale),
        }
        for code in config["CURRENCIES"]
    }
    keep = {
        k: v for k, v in request.args.items() if k in ATTRIBUTION_FIELDS or k.startswith("utm_")
    }
    currency_links = [
        (code.upper(), url_for("donate.form", currency=code, frequency=frequency, **keep))
        for code in config["CURRENCIES"]
        if code != currency
    ]
    js_labels = {
        "once": _("Give %(amount)s", amount="{amount}"),
        "month": _("Give %(amount)s every month", amount="{amount}"),
        "year": _("Give %(amount)s every year", amount="{amount}"),
        "total": _("You will give %(total)s in all.", total="{total}"),
        **{f"neutral_{f}": label for f, label in _neutral_labels().items()},
    }
    # What static/donate.js needs to read an amount exactly as the server does
    # (app.money.parse_amount) and to name nothing the server would refuse.
    symbols = NumberSymbols.of(locale)
    limits = {
        code: {
            "min": config["CURRENCY_LIMITS"][code]["min"],
            "max": config["CURRENCY_LIMITS"][code]["max"],
            "step": charge_step(code),
        }
        for code in config["CURRENCIES"]
    }
    return {
        "form": form,
        "currency": currency,
        "currency_links": currency_links,
        "places": {code: decimal_places(code) for code in config["CURRENCIES"]},
        "js_labels": js_labels,
        "number_symbols": symbols,
        "limits": limits,
        "frequency": frequency,
        "presets": presets,
        "fee_cover": fee_cover,
        "frequency_labels": FREQUENCY_LABELS,
        "button_label": _button_label(form, currency, frequency, locale),
        "locale": locale,
        **extra,
    }


def _fee_note(fee: FeeCover, currency: str, locale: str) -> str:
    rate = format_percent(Decimal(fee.rate_bp).scaleb(-4), "#,##0.##%", locale=locale)
    if not fee.fixed_minor:
        return _("Adds %(rate)s so that we receive your whole gift.", rate=rate)
    return _(
        "Adds %(rate)s + %(fixed)s so that we receive your whole gift.",
        rate=rate,
        fixed=format_short(fee.fixed_minor, currency, locale),
    )


def _neutral_labels() -> dict[str, str]:
    return {"once": _("Give once"), "month": _("Give every month"), "year": _("Give every year")}


def _button_label(form: DonationForm, currency: str, frequency: str, locale: str) -> str:
    """The amount that will be charged (with a covered fee), its currency and
    frequency; or none of them when the amount is not one we would charge."""
    try:
        minor = form.chosen_amount(currency, locale)
    except MoneyError:
        return _neutral_labels()[frequency]
    if form.cover_fees.data:
        minor += (
            CheckoutSettings.from_config(current_app.config).fee_cover(currency).extra_for(minor)
        )
    amount = format_short(minor, currency, locale)
    if frequency == "month":
        return _("Give %(amount)s every month", amount=amount)
    if frequency == "year":
        return _("Give %(amount)s every year", amount=amount)
    return _("Give %(amount)s", amount=amount)


def _render_form(form: DonationForm, status: int = 200, **extra: Any) -> tuple[str, int]:
    return render_template("donate/form.html", **_form_context(form, **extra)), status


def render_donation_form(form: DonationForm, status: int = 200, **extra: Any) -> tuple[str, int]:
    """The donation form as filled in `form`, for another feature's route
    (app.appeals: the nudge's switch to monthly)."""
    return _render_form(form, status, **extra)


@bp.get("/donate")
def form() -> tuple[str, int]:
    """The same language, link and CAPTCHA choice give the same page but for the
    nonce and the CSRF token: it is rendered once with placeholders (profiled: Babel's
    formatting of every preset and WTForms' widgets were nine tenths of the
    request) and each request fills in its own. A visit without a query string
    (the usual one) is keyed without reading the prefill at all."""
    key = (
        captcha_site_key(),  # app.guard: the CAPTCHA widget, when this address needs it
        _locale(),
        _link_key() if request.query_string else None,
    )
    pages: FormPages | None = current_app.extensions.get("donations.donate_pages")
    if pages is None:
        pages = current_app.extensions.setdefault("donations.donate_pages", FormPages())
    page = pages.get(key)
    if page is None:
        donation_form = DonationForm(
            data={**prefill(), "nonce": NONCE_MARK}, config=current_app.config, formdata=None
        )
        page = render_template(
            "donate/form.html", **_form_context(donation_form), csrf_token=lambda: CSRF_MARK
        )
        pages.put(key, page)
    return fill_page(page, csrf_token()), 200


def fill_page(page: str, token: str) -> str:
    """A cached form page with this request's nonce and CSRF token."""
    return page.replace(NONCE_MARK, new_nonce()).replace(CSRF_MARK, token)


def plain_page(app: Flask, locale: str) -> str | None:
    """The cached page `form` serves in `locale` to a visit without a query
    string when no CAPTCHA widget is shown (its key there), if it has been
    rendered (app.donate.first_visit serves it without Flask)."""
    pages: FormPages | None = app.extensions.get("donations.donate_pages")
    return pages.get(("", locale, None)) if pages is not None else None


def _link_key() -> tuple[Any, ...]:
    """What of the query string the page shows: the prefill and the attribution kept in its links."""
    return (
        tuple(sorted((k, str(v)) for k, v in prefill().items() if k != "nonce")),
        tuple(
            sorted(
                (k, v)
                for k, v in request.args.items()
                if k in ATTRIBUTION_FIELDS or k.startswith("utm_")
            )
        ),
    )


@bp.post("/donate")
def submit() -> Response | tuple[str, int]:
    donation_form = DonationForm(config=current_app.config)
    screening = screen_submission()  # app.guard: the honeypot, the CAPTCHA thresholds
    if screening.bot:  # quietly: the same form again, nothing written, nobody called
        donation_form.validate()
        return _render_form(donation_form, 200, notice="check")
    if not donation_form.validate():
        return _render_form(donation_form, 400)
    if not screening.captcha_passed():  # before any Stripe call
        return _render_form(donation_form, 400, notice="captcha")
    payments = _payments()
    if payments is None:
        return _render_form(donation_form, 503, notice="not_configured")

    settings = CheckoutSettings.from_config(current_app.config, _locale(), _)
    currency = donation_form.currency.data
    fee_minor = settings.fee_cover(currency).extra_for(donation_form.amount_minor or 0)
    gift = donation_form.to_gift(locale=_locale(), fee_cover_minor=fee_minor)
    try:
        checkout = start_checkout(_run_committed, payments, gift, settings)
    except PaymentsError as exc:
        log.warning("checkout not started: provider error kind=%s", exc.kind)
        CHECKOUT_ERRORS.labels(exc.kind).inc()
        status = 503 if exc.retryable else 502
        return _render_form(donation_form, status, notice="provider_error")
    if checkout is None or not checkout.url:
        abort(500)
    return redirect(checkout.url, code=303)


def _run_committed(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(statements, ...)` (app.donate.checkout.Statements), committed. On
    PostgreSQL a raw psycopg connection of the engine without pre-ping, in
    autocommit (a round trip each time, more than the statement's own on
    this path), so a checkout is two round trips with no ORM session and no
    SQLAlchemy connection or result (they cost more CPU than the statements,
    profiled), as the webhook route stores an event. A connection the
    database dropped fails the statement, which is then run once more on a
    fresh one (both of a checkout's are idempotent). On SQLite, a transaction
    on the engine's connection, committed here. What the offline sandbox
    wrote in the request's session as Stripe (its sessions) is committed
    first: on SQLite that session holds the write lock."""
    if "db_session" in g:
        db_session().commit()
    engine = database().single_statement_engine
    if engine.dialect.name != "postgresql":
        with engine.connect() as connection:
            result = fn(CoreStatements(connection), *args, **kwargs)
            connection.commit()
        return result
    return on_raw_cursor(
        engine, lambda cursor: fn(CursorStatements(cursor, engine.dialect), *args, **kwargs)
    )


@bp.get("/donate/thanks")
def thanks() -> tuple[str, int]:
    session_id = request.args.get("session_id", "")
    if not SESSION_ID.fullmatch(session_id):
        abort(404)
    checkout = (
        db_session()
        .scalars(select(Checkout).where(Checkout.stripe_checkout_session_id == session_id))
        .first()
    )
    payments = _payments()
    if checkout is None or payments is None:
        abort(404)
    # In the language of the URL (/ru/donate/thanks), else the one the gift was given in.
    language = url_language() or checkout.locale
    if language not in current_app.config["LANGUAGES"]:
        language = _locale()
    with force_locale(language):
        return _thanks_page(checkout, payments, session_id)


def _thanks_page(checkout: Checkout, payments: Payments, session_id: str) -> tuple[str, int]:
    try:
        stripe_session = payments.retrieve_checkout_session(session_id)
    except PaymentsError as exc:
        if exc.kind == "not_found":
            abort(404)
        log.warning("thanks page: provider error kind=%s", exc.kind)
        return render_template("donate/thanks.html", checkout=checkout, state="unknown"), 503
    return render_template(
        "donate/thanks.html",
        checkout=checkout,
        state=payment_state(stripe_session),
        amount_minor=stripe_session.get("amount_total") or checkout.total_minor,
        currency=stripe_session.get("currency") or checkout.currency,
        locale=_locale(),
        **_next_steps(),
    ), 200


def _next_steps() -> dict[str, Any]:
    """Where the thanks page sends a donor next: /manage (once that page
    exists), a page to share (the newsroom's, or this form) and a mail to a friend."""
    config = current_app.config
    page = Page.for_language(config, _locale())
    share_url = page.share_url or config["PUBLIC_BASE_URL"] + url_for("donate.form")
    subject = _("I support %(organisation)s", organisation=page.name)
    body = _(
        "I gave to %(organisation)s to keep its journalism independent. You can too: %(url)s",
        organisation=page.name,
        url=share_url,
    )
    has_manage = any(rule.rule == "/manage" for rule in current_app.url_map.iter_rules())
    return {
        "manage_url": f"{request.script_root}/manage" if has_manage else None,
        "share_url": share_url,
        "share_mailto": f"mailto:?subject={quote(subject)}&body={quote(body)}",
    }


def payment_state(stripe_session: dict[str, Any]) -> str:
    """paid, processing (a bank debit on its way), or unpaid (open, expired, failed)."""
    status = stripe_session.get("status")
    payment_status = stripe_session.get("payment_status")
    intent = stripe_session.get("payment_intent")
    intent_status = intent.get("status") if isinstance(intent, dict) else None
    if status == "complete" and payment_status in ("paid", "no_payment_required"):
        return "paid"
    if status == "complete" or intent_status == "processing":
        return "processing"
    if status == "expired":
        return "expired"
    return "unpaid"


def render_after_csrf_failure() -> tuple[str, int] | None:
    """A missing or stale CSRF token on POST /donate: the form again, filled in,
    with a fresh token and a message, instead of a bare 400."""
    if request.endpoint != "donate.submit":
        return None
    donation_form = DonationForm(config=current_app.config, meta={"csrf": False})
    donation_form.validate()
    return _render_form(donation_form, 400, notice="csrf")


def render_after_bad_input(fields: list[str], cleaned: Any) -> tuple[str, int] | None:
    """Control characters or a non-form body on POST /donate (app.factory
    refuses them before any view): the form again, `cleaned` of them, with a
    message at each field that held them. Nothing is sent or written."""
    if request.endpoint != "donate.submit":
        return None
    donation_form = DonationForm(formdata=cleaned, config=current_app.config, meta={"csrf": False})
    donation_form.validate()
    for name in fields:
        if name in donation_form:
            field = donation_form[name]
            field.errors = [*field.errors, _("Remove the unusual characters from this field.")]
    return _render_form(donation_form, 400)
