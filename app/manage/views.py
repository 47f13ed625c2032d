"""Donor-facing "manage my membership" pages under /manage: ask for a magic
link (the same answer, after the same work, whether or not the email is a
donor's), open it (a page that only looks, then a POST that uses the link up
and starts a short donor session), and the donor's memberships, history and
changes.

Each change commits its action row before Stripe is called, then its
outcome; membership state itself changes only through the webhooks. Never
logs an address or a token.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    url_for,
)
from flask import session as cookie
from flask_babel import get_locale
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from app.clock import utcnow
from app.extensions import db_session
from app.guard.gate import screen_submission
from app.ledger.records import Membership
from app.manage.account import is_ended, load_account, membership_of
from app.manage.actions import (
    ActionRefused,
    ActionRequest,
    claim_action,
    record_action,
    send_action,
)
from app.manage.forms import (
    INTERVAL_LABELS,
    ActionForm,
    CancelForm,
    ChangeForm,
    LinkRequestForm,
    OpenLinkForm,
    SignOutForm,
    new_action_token,
)
from app.manage.links import check_link, request_link, use_link
from app.manage.models import MembershipAction
from app.money import format_input
from app.payments import MembershipChanges, PaymentsError
from app.sandbox import SandboxPayments

bp = Blueprint("manage", __name__, url_prefix="/manage")
log = logging.getLogger(__name__)

DONOR_KEY = "manage_donor_id"
UNTIL_KEY = "manage_until"
DEFAULT_SESSION_MINUTES = 30
ACTION_FORMS: dict[str, type[ActionForm]] = {
    "cancel": CancelForm,
    "resume": ActionForm,
    "change": ChangeForm,
    "update-card": ActionForm,
}
REFUSED_STATUS = {"unknown": 404, "used": 410, "expired": 410}


@bp.after_request
def keep_private(response: Response) -> Response:
    """Nothing here is cached, and no address (a link's token) leaves as a Referer."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _locale() -> str:
    return str(get_locale() or current_app.config["LANGUAGES"][0])


def _payments() -> MembershipChanges | None:
    payments: MembershipChanges | None = current_app.extensions.get("donations.payments")
    return payments


def _donor_id() -> int | None:
    """The donor of this browser's manage session, while it lasts."""
    donor_id, until = cookie.get(DONOR_KEY), cookie.get(UNTIL_KEY)
    if not isinstance(donor_id, int) or not isinstance(until, int | float):
        return None
    if utcnow().timestamp() >= until:
        cookie.pop(DONOR_KEY, None)
        cookie.pop(UNTIL_KEY, None)
        return None
    return donor_id


def _start_session(donor_id: int) -> None:
    minutes = int(current_app.config.get("MANAGE_SESSION_MINUTES") or DEFAULT_SESSION_MINUTES)
    cookie[DONOR_KEY] = donor_id
    cookie[UNTIL_KEY] = int(utcnow().timestamp()) + minutes * 60


def _session_ended() -> Response:
    flash(_("Your session has ended. Ask for a new link to continue."), "notice")
    return redirect(url_for("manage.start"), code=303)


# -- asking for a link -------------------------------------------------------------


@bp.get("")
def start() -> tuple[str, int]:
    return render_template("manage/start.html", form=LinkRequestForm()), 200


def _sent() -> tuple[str, int]:
    minutes = int(current_app.config.get("MANAGE_LINK_MINUTES") or 30)
    return render_template("manage/sent.html", minutes=minutes), 200


@bp.post("", endpoint="request_link")
def request_link_view() -> tuple[str, int]:
    """Held by app.guard's donor-form caps (donor_form_endpoints names it)."""
    form = LinkRequestForm()
    screening = screen_submission()  # app.guard: the honeypot, the CAPTCHA thresholds
    if screening.bot:  # quietly: the usual answer, nothing written, nobody mailed
        return _sent()
    if not form.validate():
        return render_template("manage/start.html", form=form), 400
    if not screening.captcha_passed():
        return render_template("manage/start.html", form=form, notice="captcha"), 400
    session = db_session()
    request_link(session, form.email.data or "", _locale())
    session.commit()
    return _sent()


# -- opening a link ------------------------------------------------------------------


def _refused(state: str) -> tuple[str, int]:
    return render_template("manage/refused.html", state=state), REFUSED_STATUS[state]


@bp.get("/<token>")
def open_link(token: str) -> tuple[str, int]:
    """Only looks: a mail scanner that fetches the link does not use it up."""
    found = check_link(db_session(), token, utcnow())
    if found.state != "valid":
        return _refused(found.state)
    return render_template("manage/open.html", form=OpenLinkForm(), token=token), 200


@bp.post("/<token>", endpoint="use_link")
def use_link_view(token: str) -> Response | tuple[str, int]:
    form = OpenLinkForm()
    if not form.validate():
        abort(400)
    session = db_session()
    found = use_link(session, token, utcnow())
    if found.state != "valid" or found.donor_id is None:
        session.rollback()
        return _refused(found.state)
    session.commit()
    _start_session(found.donor_id)
    return redirect(url_for("manage.account"), code=303)


# -- the donor's page ------------------------------------------------------------------


def _render_account(
    donor_id: int,
    status: int = 200,
    *,
    notice: str | None = None,
    submitted: tuple[int, str, ActionForm] | None = None,
) -> Response | tuple[str, int]:
    account = load_account(db_session(), donor_id)
    if account is None:
        return _session_ended()
    locale = _locale()
    forms: dict[tuple[int, str], ActionForm] = {}
    for membership in account.memberships:
        for kind in ACTION_FORMS:
            forms[(membership.id, kind)] = _blank_form(kind, membership, locale)
    if submitted is not None:
        membership_id, kind, form = submitted
        form.action_token.data = form.action_token.data or new_action_token()
        forms[(membership_id, kind)] = form
    return render_template(
        "manage/account.html",
        account=account,
        forms=forms,
        is_ended=is_ended,
        interval_labels=INTERVAL_LABELS,
        notice=notice,
        locale=locale,
        sign_out=SignOutForm(),
    ), status


def _blank_form(kind: str, membership: Membership, locale: str) -> ActionForm:
    data: dict[str, Any] = {"action_token": new_action_token()}
    if kind == "change":
        if membership.amount_minor is not None and membership.currency:
            data["amount"] = format_input(membership.amount_minor, membership.currency, locale)
        data["interval"] = membership.interval or "month"
    form = ACTION_FORMS[kind](formdata=None, data=data)
    return form


@bp.get("/account")
def account() -> Response | tuple[str, int]:
    donor_id = _donor_id()
    if donor_id is None:
        return _session_ended()
    return _render_account(donor_id)


@bp.post("/sign-out")
def sign_out() -> Response:
    if not SignOutForm().validate():
        abort(400)
    cookie.pop(DONOR_KEY, None)
    cookie.pop(UNTIL_KEY, None)
    flash(_("You are signed out."), "notice")
    return redirect(url_for("manage.start"), code=303)


def _asked(kind: str, form: ActionForm, membership: Membership) -> ActionRequest | None:
    if isinstance(form, ChangeForm):
        currency = membership.currency or ""
        limits = current_app.config["CURRENCY_LIMITS"].get(currency)
        minor = form.amount_minor(currency, _locale(), limits)
        if minor is None:
            return None
        return ActionRequest(
            "change", {"amount_minor": minor, "currency": currency, "interval": form.interval.data}
        )
    if isinstance(form, CancelForm):
        return ActionRequest("cancel", reason=form.reason.data)
    return ActionRequest("update_card" if kind == "update-card" else kind)


@bp.post("/memberships/<int:membership_id>/<kind>")
def act(membership_id: int, kind: str) -> Response | tuple[str, int]:
    """Cancel at the period's end, resume, change, or update the card."""
    if kind not in ACTION_FORMS:
        abort(404)
    donor_id = _donor_id()
    if donor_id is None:
        return _session_ended()
    session = db_session()
    membership = membership_of(session, donor_id, membership_id)
    if membership is None:
        abort(404)
    form = ACTION_FORMS[kind]()
    asked = _asked(kind, form, membership) if form.validate() else None
    if asked is None:
        return _render_account(donor_id, 400, submitted=(membership.id, kind, form))
    try:
        action = record_action(
            session,
            donor_id=donor_id,
            membership=membership,
            asked=asked,
            form_token=form.action_token.data or "",
            now=utcnow(),
        )
    except ActionRefused as exc:
        session.rollback()
        return _render_account(donor_id, 409, notice=exc.code)
    session.commit()  # the action is on record before Stripe hears of it
    return _send(donor_id, action, membership)


@bp.post("/actions/<int:action_id>/retry")
def retry(action_id: int) -> Response | tuple[str, int]:
    """Send a failed action again, with its own idempotency key."""
    donor_id = _donor_id()
    if donor_id is None:
        return _session_ended()
    # The retry form carries only its CSRF token, which CSRFProtect checked.
    session = db_session()
    action = session.get(MembershipAction, action_id)
    if action is None or action.donor_id != donor_id:
        abort(404)
    membership = membership_of(session, donor_id, action.membership_id)
    if membership is None:
        abort(404)
    return _send(donor_id, action, membership)


def _send(
    donor_id: int, action: MembershipAction, membership: Membership
) -> Response | tuple[str, int]:
    payments = _payments()
    if payments is None:
        return _render_account(donor_id, 503, notice="not_configured")
    session = db_session()
    claimed = claim_action(session, action, utcnow())
    session.commit()  # the claim: a second submit meanwhile sends nothing
    if not claimed:
        return _after(action)
    try:
        send_action(
            session,
            payments,
            action,
            membership,
            settings=current_app.config,
            return_url=current_app.config["PUBLIC_BASE_URL"] + url_for("manage.account"),
            locale=_locale(),
            now=utcnow(),
        )
    except PaymentsError as exc:
        session.commit()  # the failure stays on the row, for a retry
        log.warning("membership action %s not sent: kind=%s", action.id, exc.kind)
        return _render_account(donor_id, 503 if exc.retryable else 502, notice="provider_error")
    session.commit()
    if isinstance(payments, SandboxPayments):
        payments.deliver_pending()
    return _after(action)


def _after(action: MembershipAction) -> Response:
    """Where a submitted change leads: Stripe's portal for a card update
    (once it has its address), else the account page with what happened."""
    if action.kind == "update_card" and action.result_url:
        return redirect(action.result_url, code=303)
    if action.status == "sent":
        flash(
            _("Thank you: your change was sent. It shows here as soon as Stripe confirms it."),
            "done",
        )
    else:
        flash(_("Your change is being sent. Reload this page in a moment."), "notice")
    return redirect(url_for("manage.account"), code=303)
