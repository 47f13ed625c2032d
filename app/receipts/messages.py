"""The messages themselves: each letter (app.receipts.letters) rendered from
templates/email/<name>.txt and .html in the donor's language, as one
multipart/alternative EmailMessage (plain text first, then HTML).

Strings are marked for gettext (`_` here, `{% trans %}` / `_()` in the
templates) and translated with Babel from translations/ when a catalog exists;
money goes through app.money.format_money and dates through Babel for the
locale. No Flask, no `stripe`; builds messages, never sends them.
"""

from __future__ import annotations

import email.policy
import re
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_date
from babel.support import NullTranslations, Translations
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from app.clock import utcnow
from app.money import format_money
from app.receipts.letters import Organisation, Recipient
from app.settings import ROOT

TRANSLATIONS = ROOT / "translations"
# Lines up to RFC 5322's 998: at 78, Python folds a long subject right after
# "Subject:", and some readers then show it with a leading space.
POLICY = email.policy.default.clone(max_line_length=998)
_NOT_IN_ID = re.compile(r"[^A-Za-z0-9_.-]+")


def _(text: str) -> str:
    """Marks a string for extraction; translated where it is used."""
    return text


# Subjects, translated at rendering time.
SUBJECTS = {
    "receipt": _("Your receipt from %(organisation)s"),
    "refund_note": _("A refund on your gift to %(organisation)s"),
    "payment_failed": _("Your membership payment to %(organisation)s did not go through"),
    "statement": _("Your %(year)s giving statement from %(organisation)s"),
}


FREQUENCIES = {
    "once": _("One-time gift"),
    "month": _("Monthly membership"),
    "year": _("Annual membership"),
    None: _("Membership payment"),
}
DEDICATIONS = {"memory": _("In memory of %(name)s"), "honour": _("In honour of %(name)s")}


@cache
def translations_for(locale: str) -> NullTranslations:
    found = Translations.load(str(TRANSLATIONS), [locale, locale.split("_")[0]], "messages")
    return found


@cache
def environment(locale: str) -> Environment:
    """A Jinja environment per language (its gettext installed once)."""
    env = Environment(
        loader=FileSystemLoader(str(ROOT / "templates")),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        extensions=["jinja2.ext.i18n"],
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
    env.install_gettext_translations(translations_for(locale), newstyle=True)  # type: ignore[attr-defined]
    return env


def gettext(locale: str, text: str, **values: Any) -> str:
    translated: str = translations_for(locale).gettext(text)
    return translated % values if values else translated


def frequency_label(locale: str, kind: str, interval: str | None) -> str:
    text = FREQUENCIES["once"] if kind == "donation" else FREQUENCIES.get(interval)
    return gettext(locale, text or FREQUENCIES[None])


def dedication_label(locale: str, kind: str | None, name: str | None) -> str:
    """What a donor typed, inside a translated sentence: a plain string, which
    the HTML templates escape like any other value."""
    if not name:
        return ""
    return gettext(locale, DEDICATIONS["memory" if kind == "memory" else "honour"], name=name)


def local_date(moment: datetime, zone: ZoneInfo, locale: str) -> str:
    return format_date(moment.astimezone(zone).date(), format="long", locale=locale)


def render(name: str, locale: str, **context: Any) -> tuple[str, str]:
    """The plain text and the HTML of templates/email/<name>.*."""
    env = environment(locale)
    helpers = {
        "money": lambda minor, currency: format_money(minor, currency, locale),
        "frequency": lambda r: frequency_label(locale, r.kind, r.interval),
        "dedication": lambda r: dedication_label(locale, r.dedication_kind, r.dedication_name),
        "locale": locale,
    }
    text = env.get_template(f"email/{name}.txt").render(**helpers, **context)
    html = env.get_template(f"email/{name}.html").render(**helpers, **context)
    return text, html


def build_message(
    name: str,
    recipient: Recipient,
    org: Organisation,
    *,
    key: str,
    subject_values: dict[str, Any] | None = None,
    subject: str | None = None,
    **context: Any,
) -> EmailMessage:
    """One message of kind `name` to `recipient`. Its Message-ID comes from the
    job's `key`, so a message sent again after a crash is recognisably the same.
    `subject` (untranslated) is for messages other packages own; else SUBJECTS."""
    locale = recipient.locale
    org = org.in_language(locale)
    text, html = render(name, locale, org=org, recipient=recipient, **context)
    message = EmailMessage(policy=POLICY)
    message["Subject"] = gettext(
        locale, subject or SUBJECTS[name], organisation=org.name, **(subject_values or {})
    )
    message["To"] = formataddr((recipient.name or "", recipient.email))
    if org.contact_email:
        message["Reply-To"] = org.contact_email
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = f"<{_NOT_IN_ID.sub('.', key)}@{org.mail_domain}>"
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    # After the content: set_content drops every Content-* header.
    message["Content-Language"] = locale.replace("_", "-")
    return message
