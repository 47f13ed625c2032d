"""Sending a message: over SMTP when MAIL_SERVER is set (STARTTLS on port 587
or with MAIL_USE_TLS, implicit TLS on 465), otherwise as one RFC 5322 `.eml`
file per message in the mail folder, named after the job's key so a retried
job replaces its own file instead of adding a second.

Never logs a body, a subject or an address. No Flask, no `stripe`.
"""

from __future__ import annotations

import logging
import os
import re
import smtplib
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


@dataclass(frozen=True)
class MailSettings:
    server: str | None
    port: int
    username: str | None
    password: str | None
    sender: str
    use_tls: bool
    timeout_seconds: float
    folder: Path

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], root: Path) -> MailSettings:
        """From the app's settings; a relative MAIL_FOLDER is under `root`."""
        server = settings.get("MAIL_SERVER") or None
        port = int(settings.get("MAIL_PORT") or 25)
        folder = Path(str(settings.get("MAIL_FOLDER") or "instance/mail"))
        sender = (
            settings.get("MAIL_FROM")
            or settings.get("ORGANISATION_CONTACT_EMAIL")
            or "donations@localhost"
        )
        return cls(
            server=str(server) if server else None,
            port=port,
            username=settings.get("MAIL_USERNAME") or None,
            password=settings.get("MAIL_PASSWORD") or None,
            sender=str(sender),
            use_tls=port == 587 or _flag(settings.get("MAIL_USE_TLS")),
            timeout_seconds=float(settings.get("MAIL_TIMEOUT_SECONDS") or 10),
            folder=folder if folder.is_absolute() else root / folder,
        )


def send_message(mail: MailSettings, message: EmailMessage, *, name: str) -> None:
    """Send `message` (its From is set here when missing). `name` (the job's
    key) names the file when there is no SMTP server."""
    if "From" not in message:
        message["From"] = mail.sender
    if mail.server is None:
        path = write_eml(mail.folder, message, name)
        log.info("mail: written to %s", path.name)
        return
    if mail.port == 465:
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(
            mail.server,
            mail.port,
            timeout=mail.timeout_seconds,
            context=ssl.create_default_context(),
        )
    else:
        smtp = smtplib.SMTP(mail.server, mail.port, timeout=mail.timeout_seconds)
    with smtp:
        if mail.use_tls and mail.port != 465:
            smtp.starttls(context=ssl.create_default_context())
        if mail.username and mail.password:
            smtp.login(mail.username, mail.password)
        smtp.send_message(message)
    log.info("mail: sent over SMTP (%s)", name)


def write_eml(folder: Path, message: EmailMessage, name: str) -> Path:
    """Write the message as `<name>.eml` (CRLF line ends, RFC 5322), atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{_UNSAFE.sub('-', name).strip('-') or 'message'}.eml"
    data = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
