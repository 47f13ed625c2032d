"""Login: the password and TOTP steps, throttled per account and per client
address, with exponential delays and lockout.

Every refusal looks the same to the user; only the audit log says why. Never
audits a password or code. May flush, never commits.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.donors import normalise_email
from app.staff.accounts import find_staff
from app.staff.audit import record_audit
from app.staff.models import LoginThrottle, Staff
from app.staff.passwords import dummy_verify, verify_password
from app.staff.totp import verify_totp

TYPED_EMAIL_MAX = 100  # how much of a typed email a failed login keeps


@dataclass(frozen=True)
class LoginPolicy:
    """After `free_failures` failed attempts under a key, each further attempt
    must wait 2^n seconds (capped); after `max_failures` the key is locked for
    `lockout`. Failures older than `lockout` are forgotten."""

    free_failures: int = 3
    max_failures: int = 10
    ip_free_failures: int = 20
    ip_max_failures: int = 50
    max_delay: timedelta = timedelta(seconds=300)
    lockout: timedelta = timedelta(minutes=15)


@dataclass(frozen=True)
class LoginAttempt:
    staff: Staff | None
    reason: str  # "ok", or why it was refused (kept in the audit log only)

    @property
    def ok(self) -> bool:
        return self.reason == "ok"


def account_key(email: str) -> str:
    return "email:" + hashlib.sha256(normalise_email(email).encode()).hexdigest()[:40]


def ip_key(ip: str) -> str:
    return "ip:" + ip[:64]


def _find_throttle(session: Session, key: str) -> LoginThrottle | None:
    return session.scalar(select(LoginThrottle).where(LoginThrottle.key == key).with_for_update())


def _get_throttle(session: Session, key: str) -> LoginThrottle:
    row = _find_throttle(session, key)
    if row is not None:
        return row
    try:
        with session.begin_nested():
            row = LoginThrottle(key=key, failures=0)
            session.add(row)
    except IntegrityError:
        row = _find_throttle(session, key)
        assert row is not None
    return row


def _forget_old(row: LoginThrottle | None, now: datetime, policy: LoginPolicy) -> None:
    if row is None:
        return
    lock_over = row.locked_until is not None and now >= row.locked_until
    stale = (
        row.locked_until is None
        and row.last_failure_at is not None
        and now - row.last_failure_at >= policy.lockout
    )
    if lock_over or stale:
        row.failures = 0
        row.locked_until = None
        row.next_attempt_at = None


def _count_failure(
    session: Session, key: str, now: datetime, *, free: int, most: int, policy: LoginPolicy
) -> bool:
    """One more failure under `key`; True when it has just locked the key."""
    row = _get_throttle(session, key)
    _forget_old(row, now, policy)
    if row.locked_until is not None:
        return False
    row.failures += 1
    row.last_failure_at = now
    if row.failures >= most:
        row.locked_until = now + policy.lockout
        row.next_attempt_at = row.locked_until
        session.flush()
        return True
    if row.failures >= free:
        delay = min(timedelta(seconds=2 ** (row.failures - free)), policy.max_delay)
        row.next_attempt_at = now + delay
    session.flush()
    return False


def _refusal(row: LoginThrottle | None, now: datetime, locked: str, waiting: str) -> str | None:
    if row is None:
        return None
    if row.locked_until is not None and now < row.locked_until:
        return locked
    if row.next_attempt_at is not None and now < row.next_attempt_at:
        return waiting
    return None


def _fail(
    session: Session,
    *,
    email: str,
    ip: str,
    reason: str,
    policy: LoginPolicy,
    count_account: bool,
    count_ip: bool,
    actor: Staff | None = None,
) -> LoginAttempt:
    now = utcnow()
    typed = email.strip()[:TYPED_EMAIL_MAX]
    record_audit(
        session,
        actor=actor,
        action="login_failed",
        detail={"email": typed, "reason": reason},
        ip=ip,
    )
    locks: list[str] = []
    if count_account and _count_failure(
        session,
        account_key(email),
        now,
        free=policy.free_failures,
        most=policy.max_failures,
        policy=policy,
    ):
        locks.append("account")
    if count_ip and _count_failure(
        session,
        ip_key(ip),
        now,
        free=policy.ip_free_failures,
        most=policy.ip_max_failures,
        policy=policy,
    ):
        locks.append("ip")
    for scope in locks:
        record_audit(
            session,
            actor=actor,
            action="lockout",
            detail={
                "scope": scope,
                "email": typed,
                "until": (now + policy.lockout).isoformat(),
            },
            ip=ip,
        )
    return LoginAttempt(None, reason)


def _gate(
    session: Session, email: str, ip: str, policy: LoginPolicy
) -> tuple[str | None, bool, bool]:
    """Whether throttling refuses this attempt before any check: (reason,
    count it against the account, count it against the address)."""
    now = utcnow()
    ip_row = _find_throttle(session, ip_key(ip))
    account_row = _find_throttle(session, account_key(email))
    _forget_old(ip_row, now, policy)
    _forget_old(account_row, now, policy)
    ip_refusal = _refusal(ip_row, now, "ip_locked", "ip_throttled")
    if ip_refusal == "ip_locked":
        return ip_refusal, False, False
    if ip_refusal:
        return ip_refusal, False, True
    account_refusal = _refusal(account_row, now, "account_locked", "throttled")
    if account_refusal == "account_locked":
        return account_refusal, False, True
    if account_refusal:
        return account_refusal, True, True
    return None, False, False


def _clear_account_failures(session: Session, email: str) -> None:
    row = _find_throttle(session, account_key(email))
    if row is not None:
        row.failures = 0
        row.last_failure_at = None
        row.next_attempt_at = None
        row.locked_until = None
        session.flush()


def authenticate(
    session: Session,
    *,
    email: str,
    password: str,
    ip: str,
    hasher: PasswordHasher,
    policy: LoginPolicy,
) -> LoginAttempt:
    """The password step of a login, throttled per account and per address.
    Every refusal looks the same to the caller's user; only the audit log
    (and the returned reason) says why."""
    refusal, count_account, count_ip = _gate(session, email, ip, policy)
    if refusal:
        return _fail(
            session,
            email=email,
            ip=ip,
            reason=refusal,
            policy=policy,
            count_account=count_account,
            count_ip=count_ip,
        )
    staff = find_staff(session, email) if len(email) <= 254 else None
    if staff is None:
        dummy_verify(hasher, password)
        reason = "unknown_email"
    elif not verify_password(hasher, staff, password):
        reason = "bad_password"
    elif not staff.active:
        reason = "disabled"
    else:
        _clear_account_failures(session, email)
        return LoginAttempt(staff, "ok")
    return _fail(
        session,
        email=email,
        ip=ip,
        reason=reason,
        policy=policy,
        count_account=True,
        count_ip=True,
    )


def authenticate_code(
    session: Session, *, staff: Staff, code: str, ip: str, policy: LoginPolicy
) -> LoginAttempt:
    """The TOTP step of a login: throttled with the same counters as passwords."""
    refusal, count_account, count_ip = _gate(session, staff.email, ip, policy)
    reason = refusal
    if reason is None:
        if not staff.active:
            reason, count_account, count_ip = "disabled", True, True
        elif verify_totp(staff, code):
            _clear_account_failures(session, staff.email)
            session.flush()
            return LoginAttempt(staff, "ok")
        else:
            reason, count_account, count_ip = "bad_code", True, True
    return _fail(
        session,
        email=staff.email,
        ip=ip,
        reason=reason,
        policy=policy,
        count_account=count_account,
        count_ip=count_ip,
        actor=staff,
    )


def throttle_state(
    session: Session, *, email: str | None = None, ip: str | None = None
) -> LoginThrottle | None:
    """The throttle row for an account or an address (for admins and tests)."""
    key = account_key(email) if email is not None else ip_key(ip or "")
    return session.scalar(select(LoginThrottle).where(LoginThrottle.key == key))
