"""Magic links: a request (the same work whether or not the email is a
donor's: one look-up, one row, one outbox job), the job that mints the token
and mails the link (only the token's SHA-256 is stored), and opening a link
once, within its lifetime.

Never logs or stores an address or a token. No Flask, no `stripe`; never
commits (the view and the outbox runner do).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.donors import Donor, normalise_email
from app.manage.models import ManageLink
from app.outbox.mail import send_message
from app.outbox.queue import enqueue
from app.outbox.runner import JobContext, JobError
from app.receipts.letters import Organisation, Recipient
from app.receipts.messages import build_message

# secrets.token_urlsafe(32): 43 characters of the URL-safe alphabet.
TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
DEFAULT_LINK_MINUTES = 30


def _(text: str) -> str:
    """Marks a string for extraction; translated where it is used."""
    return text


SUBJECT = _("Your link to manage your giving to %(organisation)s")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def link_lifetime(settings: Mapping[str, Any]) -> timedelta:
    return timedelta(minutes=int(settings.get("MANAGE_LINK_MINUTES") or DEFAULT_LINK_MINUTES))


def request_link(session: Session, email: str, locale: str) -> ManageLink:
    """Record a request and queue its job. An unknown address does exactly the
    same work (its row has no donor), so the answer and its time say nothing
    of whether the address gives to us; its job then sends nothing."""
    donor_id = session.scalar(select(Donor.id).where(Donor.email == normalise_email(email)))
    link = ManageLink(donor_id=donor_id, locale=locale, requested_at=utcnow())
    session.add(link)
    session.flush()
    enqueue(session, f"manage_link:{link.id}", "manage_link", {"link_id": link.id})
    return link


def run_manage_link(session: Session, payload: Mapping[str, Any], ctx: JobContext) -> str | None:
    """The outbox job: mint a token, keep its hash, mail the link. A request
    for an address that is no donor's sends nothing: a stranger's address is
    never mailed by us (no one can use this form to flood an inbox), and the
    page already told the person what to do if no link comes."""
    link = session.get(ManageLink, int(payload["link_id"]))
    if link is None:
        raise JobError(f"no manage link {payload['link_id']}")
    if link.donor_id is None:
        return "no donor has that address: nothing sent"
    if link.used_at is not None:
        return "the link was used already"
    donor = session.get(Donor, link.donor_id)
    if donor is None:
        raise JobError(f"no donor {link.donor_id}")
    token = secrets.token_urlsafe(32)
    now = utcnow()
    link.token_hash = hash_token(token)
    link.issued_at = now
    lifetime = link_lifetime(ctx.settings)
    link.expires_at = now + lifetime
    session.flush()
    org = Organisation.from_settings(ctx.settings)
    key = f"manage_link:{link.id}"
    message = build_message(
        "manage_link",
        Recipient(donor.id, donor.email, donor.name, link.locale),
        org,
        key=key,
        subject=SUBJECT,
        link_url=f"{org.manage_url}/{token}",
        minutes=int(lifetime.total_seconds() // 60),
    )
    send_message(ctx.mail, message, name=key)
    return None


@dataclass(frozen=True)
class LinkCheck:
    """What a token is: valid (with its donor), unknown (never issued, or
    altered), used or expired."""

    state: str
    donor_id: int | None = None


def check_link(session: Session, token: str, now: datetime) -> LinkCheck:
    """Look only: opening the page of a link (as a mail scanner's prefetch
    does) must not use it up."""
    if not TOKEN.fullmatch(token):
        return LinkCheck("unknown")
    link = session.scalars(
        select(ManageLink).where(ManageLink.token_hash == hash_token(token))
    ).first()
    if link is None or link.donor_id is None or link.expires_at is None:
        return LinkCheck("unknown")
    if link.used_at is not None:
        return LinkCheck("used")
    if link.expires_at <= now:
        return LinkCheck("expired")
    return LinkCheck("valid", link.donor_id)


def use_link(session: Session, token: str, now: datetime) -> LinkCheck:
    """Use the link up, once: of two requests at the same moment only one
    finds it unused. Returns the state it was in."""
    found = check_link(session, token, now)
    if found.state != "valid":
        return found
    result = session.execute(
        update(ManageLink)
        .where(
            ManageLink.token_hash == hash_token(token),
            ManageLink.used_at.is_(None),
            ManageLink.expires_at > now,
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        return LinkCheck("used")
    return found


def prune_links(session: Session, *, before: datetime, now: datetime) -> int:
    """Delete the link requests made before `before` that can no longer be
    opened: used, expired, or never issued (an address that was no donor's,
    or a job that never sent one). They serve nothing once a link's lifetime
    is long past, and each names a donor. Returns how many went."""
    result = session.execute(
        delete(ManageLink)
        .where(
            ManageLink.requested_at < before,
            or_(ManageLink.expires_at.is_(None), ManageLink.expires_at < now),
        )
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
