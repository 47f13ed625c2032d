"""Reader-facing appeal routes: the embed, framable only by `embed_allowed_origins`,
cookie-free and the same for every view of its URL; its beacon and loader script;
the nudge's switch to monthly; the clicks arriving on /donate. Counters are upserts
that store nothing about a reader; the embed never carries the form's CSRF token."""

from __future__ import annotations

import functools
import time
from typing import Any
from urllib.parse import urlencode

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    g,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from flask.blueprints import BlueprintSetupState
from flask_babel import force_locale

from app import extensions
from app.appeals.counters import count_event
from app.appeals.definitions import (
    SLUG,
    VARIANT_KEY,
    Appeal,
    AppealError,
    Rules,
    current_appeals,
    load_configured,
)
from app.appeals.links import allowed_origins, donate_query, normalise_article
from app.appeals.markup import render_markdown
from app.appeals.nudge import monthly_equivalent
from app.clock import utcnow
from app.donate.forms import DonationForm, page_locale
from app.donate.views import prefill, render_donation_form
from app.money import MoneyError, format_input, format_plain, format_short
from app.settings import ROOT, ConfigError

bp = Blueprint("appeals", __name__)

EMBED_PREFIX = "/embed/"
FREQUENCIES = ("once", "month", "year")
KNOWN_FOR = 10.0  # seconds the beacon trusts its last reading of the appeals


class EmbedSessionInterface(extensions.CookieSessions):
    """Flask's cookie session, except under /embed/: there no session is
    opened, so nothing can set a cookie or add `Vary: Cookie`, and every
    view of an embed URL gets the same, cacheable answer."""

    def open_session(self, app: Flask, request: Any) -> Any:
        if request.path.startswith(EMBED_PREFIX):
            return self.make_null_session(app)
        return super().open_session(app, request)


def set_up(state: BlueprintSetupState) -> None:
    """Per app: the configured appeals (a bad one stops the start), the
    embed's framing policy, the beacon's CSRF exemption, the session rule."""
    app: Flask = state.app  # type: ignore[assignment]
    rules = Rules.from_config(app.config)
    path = ROOT / str(app.config.get("APPEALS_FILE") or "config/appeals.toml")
    try:
        app.extensions["donations.appeals"] = load_configured(path, rules)
    except AppealError as exc:
        raise ConfigError(f"APPEALS_FILE: {exc}") from exc
    try:
        origins = allowed_origins(app.config.get("EMBED_ALLOWED_ORIGINS"))
    except ValueError as exc:
        raise ConfigError(f"EMBED_ALLOWED_ORIGINS: {exc}") from exc
    policy = dict(extensions.talisman.content_security_policy or {})
    policy["frame-ancestors"] = origins or "'none'"
    view = app.view_functions["appeals.embed"]

    @functools.wraps(view)
    def framable(**kwargs: Any) -> Any:
        return view(**kwargs)

    # Flask-Talisman's per-view options, on this app's own copy of the view.
    framable.talisman_view_options = {  # type: ignore[attr-defined]
        "frame_options": None,
        "content_security_policy": policy,
    }
    app.view_functions["appeals.embed"] = framable
    extensions.csrf.exempt(seen)  # a beacon from any page: it carries no session
    app.session_interface = EmbedSessionInterface()


def rules() -> Rules:
    return Rules.from_config(current_app.config)


def appeals() -> dict[str, Appeal]:
    """The appeals as they are now (the configured ones, admins' on top)."""
    found = current_appeals(
        extensions.db_session(), current_app.extensions["donations.appeals"], rules()
    )
    current_app.extensions["donations.appeals_seen"] = (time.monotonic() + KNOWN_FOR, found)
    return found


def known_appeals() -> dict[str, Appeal]:
    """The appeals for counting (beacon, clicks), as read at most KNOWN_FOR
    seconds ago here: a burst of impressions costs one write each, no read."""
    until, found = current_app.extensions.get("donations.appeals_seen", (0.0, {}))
    if time.monotonic() < until:
        return found  # type: ignore[no-any-return]
    return appeals()


def forget_appeals() -> None:
    """After an admin's save or revert (here; other processes within KNOWN_FOR s)."""
    current_app.extensions.pop("donations.appeals_seen", None)


def record(appeal: str, variant: str, event: str) -> None:
    """One counter up, in its own short write (the page's session may be a
    read-only one); the view's edge, so it commits."""
    day = utcnow().date()
    mine = g.get("db_session")
    if mine is not None and request.method not in ("GET", "HEAD"):
        # This request's session already holds the write lock (SQLite): a
        # second connection would wait for it.
        count_event(mine, appeal, variant, event, day, durable=False)
        mine.commit()
        return
    session = extensions.database().session()
    try:
        count_event(session, appeal, variant, event, day, durable=False)
        session.commit()
    finally:
        session.close()


def _language(raw: str | None) -> str:
    languages = rules().languages
    wanted = (raw or "").split("-")[0].strip().lower()
    return wanted if wanted in languages else current_app.config["LANGUAGES"][0]


def donate_path(language: str) -> str:
    """/donate, or its language's own address (/ru/donate, app.i18n's prefix)
    for a configured language other than the first, so a Russian appeal leads
    to the Russian form."""
    languages = current_app.config["LANGUAGES"]
    return f"/{language}/donate" if language in languages[1:] else "/donate"


def _cacheable(response: Response) -> Response:
    max_age = int(current_app.config.get("EMBED_MAX_AGE_SECONDS", 300))
    response.headers["Cache-Control"] = f"public, max-age={max_age}"
    response.add_etag()
    response.make_conditional(request)
    return response


@bp.get("/embed/appeals/<slug>")
def embed(slug: str) -> Response:
    config = current_app.config
    found = appeals().get(slug) if SLUG.fullmatch(slug) else None
    if found is None:
        return Response("", status=404, mimetype="text/plain")
    language = _language(request.args.get("lang"))
    layout = "banner" if request.args.get("layout") == "banner" else "appeal"
    article = normalise_article(request.args.get("article"))
    currency = (request.args.get("currency") or "").strip().lower()
    if currency not in config["CURRENCIES"]:
        currency = config["CURRENCIES"][0]
    source = (request.args.get("utm_source") or "").strip()[:100] or None
    donate = donate_path(language)
    variants = []
    for variant in found.variants:
        texts = variant.text(language, config["LANGUAGES"][0])
        sets = {}
        for frequency in FREQUENCIES:
            sets[frequency] = [
                {
                    "label": format_short(minor, currency, language),
                    "href": f"{donate}?"
                    + donate_query(
                        slug,
                        variant.key,
                        article,
                        currency=currency,
                        frequency=frequency,
                        amount_minor=minor,
                        source=source,
                    ),
                }
                for minor in found.amounts_for(variant, currency, frequency, config["PRESETS"])
            ]
        other = {
            frequency: f"{donate}?"
            + donate_query(
                slug, variant.key, article, currency=currency, frequency=frequency, source=source
            )
            for frequency in FREQUENCIES
        }
        variants.append(
            {
                "key": variant.key,
                "headline": texts.headline,
                "body": render_markdown(texts.body),
                "banner": texts.banner or texts.headline,
                "sets": sets,
                "other": other,
            }
        )
    with force_locale(language):  # the URL decides, never Accept-Language
        page = render_template(
            "appeals/embed.html",
            appeal=found,
            live=found.live_on(utcnow().date()),
            variants=variants,
            layout=layout,
            language=language,
            beacon=f"/embed/appeals/{slug}/seen",
        )
    return _cacheable(Response(page, mimetype="text/html"))


@bp.route("/embed/appeals/<slug>/seen", methods=["GET", "POST"])
def seen(slug: str) -> Response:
    """The impression beacon: one counter up for (appeal, variant, today).
    Unknown appeals and variants count nothing (no rows made up by anyone)."""
    variant = request.args.get("v", "")
    found = known_appeals().get(slug) if SLUG.fullmatch(slug) else None
    if found is not None and VARIANT_KEY.fullmatch(variant) and found.variant(variant):
        record(slug, variant, "seen")
    response = Response(status=204)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/embed/appeals.js")
def loader() -> Response:
    """The loader script for newsrooms that prefer a <script> tag."""
    response = send_from_directory(
        ROOT / "static", "appeals-loader.js", mimetype="text/javascript", conditional=True
    )
    max_age = int(current_app.config.get("EMBED_MAX_AGE_SECONDS", 300))
    response.headers["Cache-Control"] = f"public, max-age={max_age}"
    return response


# -- clicks arriving on /donate -----------------------------------------------------


@bp.before_app_request
def count_arrival() -> None:
    """A reader arriving on the form from an appeal (utm_medium=appeal) or
    from the thanks page's invitation (nudge=invite): one counter up."""
    # /donate, and its language-prefixed twins (/ru/donate) where they exist.
    if request.method != "GET" or not request.path.rstrip("/").endswith("/donate"):
        return
    if not request.query_string or not request.args:
        return  # nothing to count: no link, no prefilled gift (the usual visit)
    args = request.args
    if args.get("nudge") == "invite" and current_app.config.get("APPEALS_MEMBER_INVITE", True):
        record(_known_appeal(args.get("campaign")), "", "invite_click")
    _count_nudge_shown()
    if args.get("utm_medium") != "appeal":
        return
    slug = args.get("campaign") or ""
    variant = args.get("utm_term") or ""
    found = known_appeals().get(slug) if SLUG.fullmatch(slug) else None
    if found is not None and (not variant or found.variant(variant)):
        record(slug, variant, "click")


def _count_nudge_shown() -> None:
    """Counted before the request, from the prefilled gift: the form page itself
    is rendered once and then served from a cache (app.donate.views)."""
    data = prefill()
    if data["frequency"] == "once" and (data.get("preset") or data.get("amount")):
        form = DonationForm(data=data, config=current_app.config, formdata=None)
        offer = nudge_offer(form, data["currency"], "once")
        if offer is not None and offer["visible"]:
            appeal = (
                _known_appeal(data.get("campaign")) if data.get("utm_medium") == "appeal" else ""
            )
            record(appeal, "", "nudge_shown")


def _known_appeal(slug: str | None) -> str:
    slug = slug or ""
    return slug if SLUG.fullmatch(slug) and slug in known_appeals() else ""


# -- the nudge to recurring ---------------------------------------------------------


def _monthly_for(currency: str, once_minor: int) -> int | None:
    config = current_app.config
    return monthly_equivalent(
        once_minor,
        int(config.get("NUDGE_MONTHLY_DIVISOR", 3)),
        config["CURRENCY_LIMITS"][currency],
        list(config["PRESETS"][currency].get("month", [])),
    )


def nudge_offer(form: DonationForm, currency: str, frequency: str) -> dict[str, Any] | None:
    """What the form's one-line nudge says ("$30 once, or $10 every month?"),
    or None when it is off. Hidden unless the gift is a one-time one; its
    figures are empty until an amount is chosen (static/nudge.js fills them)."""
    config = current_app.config
    if not config.get("APPEALS_NUDGE", True):
        return None
    locale = page_locale(config)
    try:
        once = form.chosen_amount(currency, locale)
    except MoneyError:
        once = None
    monthly = _monthly_for(currency, once) if once else None
    visible = frequency == "once" and monthly is not None
    return {
        "visible": visible,
        "once": format_short(once, currency, locale) if once else "",
        "monthly": format_short(monthly, currency, locale) if monthly else "",
        "divisor": int(config.get("NUDGE_MONTHLY_DIVISOR", 3)),
        "mark": form.nudge.data or ("invite" if request.args.get("nudge") == "invite" else ""),
    }


def member_invite(checkout: Any, state: str) -> dict[str, Any] | None:
    """After a paid one-time gift: the invitation to give its monthly
    equivalent, as a link to the form pre-filled (nudge=invite)."""
    config = current_app.config
    if not config.get("APPEALS_MEMBER_INVITE", True) or checkout is None:
        return None
    if state != "paid" or checkout.frequency != "once":
        return None
    monthly = _monthly_for(checkout.currency, checkout.amount_minor)
    if monthly is None:
        return None
    query = {
        "amount": format_plain(monthly, checkout.currency),
        "currency": checkout.currency,
        "frequency": "month",
        "nudge": "invite",
    }
    for name in ("campaign", "utm_source", "utm_medium", "utm_content", "utm_term"):
        value = getattr(checkout, name)
        if value:
            query[name] = value
    record(_known_appeal(checkout.campaign), "", "invite_shown")
    return {
        "amount": format_short(monthly, checkout.currency, page_locale(config)),
        "href": url_for("donate.form") + "?" + urlencode(query),  # keeps /ru/
    }


@bp.app_context_processor
def template_helpers() -> dict[str, Any]:
    return {"nudge_offer": nudge_offer, "member_invite": member_invite}


@bp.post("/donate/monthly")
def switch_to_monthly() -> tuple[str, int]:
    """The nudge's one-click switch (a submit button, so no JavaScript is
    needed): the form again, as it was filled in, but monthly, with the
    monthly equivalent of the one-time amount."""
    config = current_app.config
    form = DonationForm(config=config)
    locale = page_locale(config)
    currency = form.currency.data if form.currency.data in config["CURRENCIES"] else None
    monthly = None
    if currency is not None:
        try:
            monthly = _monthly_for(currency, form.chosen_amount(currency, locale))
        except MoneyError:
            monthly = None
    if currency is None or monthly is None:
        form.validate()
        return render_donation_form(form, 400)
    form.frequency.data = "month"
    if monthly in config["PRESETS"][currency].get("month", []):
        form.preset.data, form.amount.data = format_plain(monthly, currency), ""
    else:
        form.preset.data, form.amount.data = "", format_input(monthly, currency, locale)
    form.nudge.data = "switch"
    appeal = _known_appeal(form.campaign.data) if form.utm_medium.data == "appeal" else ""
    record(appeal, "", "nudge_switch")
    return render_donation_form(form)


bp.record_once(set_up)  # after the routes above, so the embed's view exists
